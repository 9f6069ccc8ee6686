//! Augmenting a batch allocates nothing once the buffers have grown: neither
//! `Augmentation::apply` nor the prefetching worker, counted by a global allocator that
//! counts every allocation on every thread. A test binary of its own, so that no other test
//! allocates while this one counts.

use std::sync::atomic::Ordering;

use striate::data::augment::{Augmentation, Crop, Flip};
use striate::data::Mnist;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::ALLOCATIONS;

fn every_augmentation(seed: u64) -> Augmentation {
    Augmentation::digits(seed)
        .then(Flip::horizontal(0.5).unwrap())
        .then(Flip::vertical(0.5).unwrap())
        .then(Crop::pad(2))
}

#[test]
fn augmenting_batches_allocates_nothing_in_the_steady_state() {
    let data = Mnist::builtin().train.take(320);
    let mut images = data.images().to_owned();
    let indices: Vec<usize> = (0..320).collect();
    let mut augmentation = every_augmentation(1);
    augmentation.apply(images.view_mut(), 0, &indices).unwrap();

    // The counter sees an allocation when there is one.
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    drop(std::hint::black_box(vec![0u8; 16]));
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst) - before, 1);

    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for epoch in 1..4 {
        augmentation
            .apply(images.view_mut(), epoch, &indices)
            .unwrap();
    }
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst) - before, 0, "by apply");

    // Both ways of preparing batches: the kernels' threads (as many as cores) and a worker
    // thread on a spare core (one kernel thread).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for threads in [cores.max(2), 1] {
        striate::set_threads(threads).unwrap();
        let during = augmentation
            .prefetch(&data, &indices, 32, 0, |batches| {
                let mut start = 0;
                let mut checksum = 0.0;
                for (i, batch) in batches.enumerate() {
                    let batch = batch.unwrap();
                    checksum += batch.images_flat()[0];
                    // From the fourth batch on, every buffer has been round once.
                    if i == 3 {
                        start = ALLOCATIONS.load(Ordering::SeqCst);
                    }
                }
                assert!(checksum.is_finite());
                ALLOCATIONS.load(Ordering::SeqCst) - start
            })
            .unwrap();
        assert_eq!(
            during, 0,
            "while prefetching over batches 4 to 10, {threads} threads"
        );
    }
}
