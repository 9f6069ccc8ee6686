//! A training step of a stacked bidirectional LSTM, backpropagation through all 28 steps with
//! gradient clipping, allocates nothing once warm, with lengths per sample too. A test binary
//! of its own, so that no other test allocates while this one counts.

use std::sync::atomic::Ordering;

use striate::prelude::*;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::ALLOCATIONS;

network! {
    /// Digits read row by row, with every recurrent path: two layers, both directions, a
    /// linear layer on every step and a pooling over time.
    pub struct Rows {
        input: [28, 28],
        lstm: lstm(16, layers = 2, bidirectional = true),
        step: linear(8),
        tanh,
        max_over_time,
        fc: linear(10),
    }
}

#[test]
fn a_recurrent_training_step_allocates_nothing_once_warm() {
    let data = Mnist::builtin().train.take(32);
    let images = data.images().into_shape_with_order((32, 28, 28)).unwrap();
    let mut net = Rows::init(0);
    let mut t = Trainer::new(&mut net, Adam::new(1e-3)).clip_grad_norm(1.0);
    let mut first = None;
    for _ in 0..2 {
        first.get_or_insert(t.step(images.view(), data.labels()).unwrap().loss);
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let mut last = 0.0;
    for _ in 0..5 {
        last = t.step(images.view(), data.labels()).unwrap().loss;
    }
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst) - before, 0);
    // The steps learn: the loss on the same batch falls.
    assert!(last < first.unwrap(), "{first:?} -> {last}");

    // A padded batch, each digit cut to its own number of rows: the same, once warm.
    let lengths: Vec<u32> = (0..32).map(|s| 1 + (s * 7) % 28).collect();
    for _ in 0..2 {
        t.step_lengths(images.view(), data.labels(), &lengths)
            .unwrap();
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..3 {
        t.step_lengths(images.view(), data.labels(), &lengths)
            .unwrap();
    }
    assert_eq!(
        ALLOCATIONS.load(Ordering::SeqCst) - before,
        0,
        "with lengths"
    );
}
