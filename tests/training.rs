//! A short real training run: LeNet-5 on the built-in MNIST digits.

use striate::prelude::*;
use striate::train::{evaluate, Trainer};

#[allow(dead_code)]
#[path = "../examples/lenet.rs"]
mod lenet;
use lenet::LeNet5;

/// Two epochs over the 8,004 training digits reach at least 95% on the 1,996 test digits
/// (the example's full 12 epochs reach 98.5%); the untrained network is at chance.
#[test]
fn lenet_learns_the_builtin_digits() {
    let mnist = Mnist::builtin();
    let mut net = LeNet5::init(1);
    let before = evaluate(&net, &mnist.test, 500).unwrap();
    assert!(before.accuracy() < 0.2, "untrained: {}", before.accuracy());
    let mut trainer = Trainer::new(&mut net, Sgd::new(0.02).momentum(0.9)).shuffle_seed(1);
    let first = trainer.epoch(&mnist.train, 32, 0, false).unwrap();
    let second = trainer.epoch(&mnist.train, 32, 1, false).unwrap();
    assert!(
        second.loss < first.loss,
        "{} then {}",
        first.loss,
        second.loss
    );
    let after = evaluate(&net, &mnist.test, 500).unwrap();
    assert!(
        after.accuracy() >= 0.95,
        "after two epochs: {}",
        after.accuracy()
    );
    assert_eq!(after.total, 1996);
    let diagonal: usize = (0..10).map(|c| after.confusion[c][c]).sum();
    assert_eq!(diagonal, after.correct);
}
