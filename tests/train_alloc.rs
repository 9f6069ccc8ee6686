//! A training step allocates nothing once warm, with the divergence guard on (its copy of
//! the buffers and the gradient norm it measures) and gradient clipping, and with frozen layers. A test binary of its
//! own, so that no other test allocates while this one counts.

use std::sync::atomic::Ordering;

use striate::prelude::*;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::ALLOCATIONS;

network! {
    /// Convolution, batch norm, dropout: every buffer the guard copies.
    pub struct Normed {
        input: [1, 28, 28],
        conv: conv2d(4, kernel = 4, stride = 3), bn: batch_norm, relu,
        flatten, drop: dropout(0.2),
        fc: linear(10),
    }
}

#[test]
fn a_guarded_training_step_allocates_nothing_once_warm() {
    if !counting_alloc::own_kernels("a_guarded_training_step_allocates_nothing_once_warm") {
        return;
    }
    let data = Mnist::builtin().train.take(32);
    let mut net = Normed::init(0);
    let mut t = Trainer::new(&mut net, Adam::new(1e-3))
        .clip_grad_norm(1.0)
        .divergence_grad_norm(1e6);
    for _ in 0..2 {
        t.step(data.images().view(), data.labels()).unwrap();
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..5 {
        t.step(data.images().view(), data.labels()).unwrap();
    }
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst) - before, 0);
    assert_eq!(t.steps_done(), 7);
    drop(t);

    // With frozen layers too (in this one test, so that no other test allocates meanwhile):
    // batch norm frozen leaves two trainable ranges, gathered into the trainer's buffer;
    // the body frozen with its statistics fixed leaves one.
    use striate::Transfer;
    for frozen in [&["bn"][..], &["conv", "bn"][..]] {
        let mut net = Normed::init(1);
        for name in frozen {
            net.freeze(name).unwrap();
        }
        net.freeze_batch_norm_statistics(frozen.len() == 2);
        let mut t = Trainer::new(&mut net, Adam::new(1e-3)).clip_grad_norm(1.0);
        for _ in 0..2 {
            t.step(data.images().view(), data.labels()).unwrap();
        }
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for _ in 0..5 {
            t.step(data.images().view(), data.labels()).unwrap();
        }
        assert_eq!(ALLOCATIONS.load(Ordering::SeqCst) - before, 0, "{frozen:?}");
    }
}
