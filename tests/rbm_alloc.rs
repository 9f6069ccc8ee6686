//! A contrastive-divergence step allocates nothing once warm, on one thread and on two, for CD-k
//! and for persistent CD with momentum and weight decay. A test binary of its own, so that no
//! other test allocates while this one counts.

use std::sync::atomic::Ordering;

use striate::ndarray::Array2;
use striate::rbm::{Cd, CdTrainer, Rbm};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::ALLOCATIONS;

#[test]
fn a_contrastive_divergence_step_allocates_nothing_once_warm() {
    if !counting_alloc::own_kernels("a_contrastive_divergence_step_allocates_nothing_once_warm") {
        return;
    }
    let data = Array2::from_shape_fn((40, 784), |(s, i)| ((s * 31 + i * 7) % 11 < 4) as u8 as f32);
    for threads in [1, 2] {
        striate::set_threads(threads).unwrap();
        for cd in [
            Cd::new(0.05).k(2).batch(20),
            Cd::new(0.05)
                .persistent(true)
                .batch(10)
                .momentum(0.5)
                .weight_decay(1e-4),
        ] {
            let mut rbm = Rbm::<784, 200>::bernoulli(0);
            let mut trainer = CdTrainer::new(cd).unwrap();
            trainer.epoch(&mut rbm, data.view()).unwrap();
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            for _ in 0..3 {
                trainer.epoch(&mut rbm, data.view()).unwrap();
            }
            let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
            assert_eq!(allocations, 0, "{cd:?} at {threads} threads");
        }
    }
}
