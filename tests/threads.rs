//! Whole-network data parallelism: with two threads a batch is split into one shard per
//! thread, each running the generated forward and backward passes on its own tape. The results
//! must be those of one thread (up to the order in which the shards' gradients are added), and
//! the same from run to run.
//!
//! The thread count is process-wide, so everything here runs in one test function.

use rand::SeedableRng;
use striate::ops::parallel::set_threads;
use striate::prelude::*;
use striate::NetRng;

#[allow(dead_code)]
#[path = "../examples/lenet.rs"]
mod lenet;

network! {
    /// Dropout and average pooling, no batch norm: split in training too.
    struct Dropping {
        input: [2, 12, 12],
        c: conv2d(4, kernel = 3, pad = 1),
        tanh,
        avg_pool(2),
        flatten,
        dropout(0.3),
        fc: linear(5),
    }
}

network! {
    /// Batch norm: split in evaluation and in training (its statistics exchanged).
    struct Normed {
        input: [6],
        fc: linear(4),
        bn: batch_norm,
        relu,
    }
}

network! {
    /// More than 4 M parameters (4.6 M, nearly all in `fc`): not split into shards, its
    /// kernels split each layer instead.
    struct Wide {
        input: [4, 24, 24],
        c: conv2d(8, kernel = 3, pad = 1),
        relu,
        max_pool(2),
        flatten,
        fc: linear(4000),
        relu,
        out: linear(10),
    }
}

fn images(n: usize, shape: (usize, usize, usize)) -> Array4<f32> {
    Array4::from_shape_fn((n, shape.0, shape.1, shape.2), |(b, c, i, j)| {
        ((b * 131 + c * 31 + i * 7 + j) as f32 * 0.61).sin()
    })
}

/// Logits, parameter gradients and input gradient of one training step.
fn step<N: Network<InputDim = ndarray::Ix4, OutputDim = ndarray::Ix2>>(
    net: &mut N,
    x: &Array4<f32>,
    labels: &[usize],
) -> (Array2<f32>, Vec<f32>, Vec<f32>, usize) {
    net.state_mut().rng = NetRng::seed_from_u64(5);
    let mut tape = Tape::new();
    let logits = net.forward_train(x.view(), &mut tape).unwrap().to_owned();
    let (_, d) = cross_entropy(logits.view(), labels).unwrap();
    let mut grads = net.gradients().with_input();
    net.backward(&mut tape, d.view(), &mut grads).unwrap();
    let input = grads.input().unwrap().iter().copied().collect();
    (
        logits,
        grads.params().as_slice().to_vec(),
        input,
        tape.shards(),
    )
}

fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * scale + 1e-6,
            "{what}[{i}]: {x} against {y}"
        );
    }
}

#[test]
fn two_threads_split_the_batch() {
    let x = images(24, (1, 28, 28));
    let labels: Vec<usize> = (0..24).map(|i| i % 10).collect();

    // LeNet-5: one thread against two.
    set_threads(1).unwrap();
    let (logits1, grads1, input1, shards1) = step(&mut lenet::LeNet5::init(3), &x, &labels);
    set_threads(2).unwrap();
    let (logits2, grads2, input2, shards2) = step(&mut lenet::LeNet5::init(3), &x, &labels);
    assert_eq!((shards1, shards2), (1, 2));
    assert_close(
        "logits",
        logits2.as_slice().unwrap(),
        logits1.as_slice().unwrap(),
    );
    assert_close("parameter gradients", &grads2, &grads1);
    assert_close("input gradient", &input2, &input1);
    // The same again, to the bit.
    let again = step(&mut lenet::LeNet5::init(3), &x, &labels);
    assert_eq!((again.0, again.1), (logits2, grads2));

    // Inference: split, and the same as one sample at a time.
    let net = lenet::LeNet5::init(4);
    let mut tape = Tape::new();
    let all = net.infer(x.view(), &mut tape).unwrap().to_owned();
    assert_eq!(tape.shards(), 2);
    let one = net.forward(x.slice(ndarray::s![7..8, .., .., ..])).unwrap();
    assert_close(
        "sample 7",
        one.as_slice().unwrap(),
        all.row(7).as_slice().unwrap(),
    );

    // Dropout with two shards: deterministic for a seed, and the gradient is that of the
    // masks drawn (a finite difference with the same masks).
    let x = images(16, (2, 12, 12));
    let labels: Vec<usize> = (0..16).map(|i| i % 5).collect();
    let mut net = Dropping::init(9);
    let (logits, grads, _, shards) = step(&mut net, &x, &labels);
    assert_eq!(shards, 2);
    assert_eq!(step(&mut net, &x, &labels).0, logits);
    let loss_at = |net: &mut Dropping| {
        net.state_mut().rng = NetRng::seed_from_u64(5);
        let mut tape = Tape::new();
        let logits = net.forward_train(x.view(), &mut tape).unwrap().to_owned();
        cross_entropy(logits.view(), &labels).unwrap().0 as f64
    };
    for i in [0, 17, 35, 40, 200, 300] {
        let eps = 1e-2;
        let orig = net.params().as_slice()[i];
        net.params_mut().as_mut_slice()[i] = orig + eps;
        let plus = loss_at(&mut net);
        net.params_mut().as_mut_slice()[i] = orig - eps;
        let minus = loss_at(&mut net);
        net.params_mut().as_mut_slice()[i] = orig;
        let numeric = (plus - minus) / (2.0 * eps as f64);
        assert!(
            (numeric - grads[i] as f64).abs() < 1e-2 * (1.0 + numeric.abs()),
            "parameter {i}: finite difference {numeric}, backward {}",
            grads[i]
        );
    }

    // Batch norm: training is split too (the shards exchange per-channel sums, so the
    // statistics are the whole batch's), and so is evaluation.
    let mut net = Normed::init(1);
    let v = Array2::from_shape_fn((16, 6), |(b, i)| (b * 6 + i) as f32 * 0.1);
    let mut tape = Tape::new();
    net.forward_train(v.view(), &mut tape).unwrap();
    assert_eq!(tape.shards(), 2);
    net.forward_tape(v.view(), &mut tape, Mode::Eval).unwrap();
    assert_eq!(tape.shards(), 2);
    // Its count of training batches (PyTorch's `num_batches_tracked`) counts the batch once,
    // and the split evaluation pass not at all.
    assert_eq!(net.state().num_batches_tracked, 1);
    // A network without batch norm counts nothing, its training batch split or not.
    let mut dropping = Dropping::init(9);
    assert_eq!(step(&mut dropping, &images(16, (2, 12, 12)), &labels).3, 2);
    assert_eq!(dropping.state().num_batches_tracked, 0);

    // A network of more than 4 M parameters is not split into shards (each would have a
    // gradient buffer as large as the network's): the kernels split each layer, with the
    // results of one thread (up to the order in which the convolution's per-thread weight
    // gradients are added), and the same from run to run.
    let x = images(16, (4, 24, 24));
    let labels: Vec<usize> = (0..16).map(|i| i % 10).collect();
    set_threads(1).unwrap();
    let (logits1, grads1, input1, _) = step(&mut Wide::init(2), &x, &labels);
    set_threads(2).unwrap();
    let (logits2, grads2, input2, shards) = step(&mut Wide::init(2), &x, &labels);
    assert_eq!(shards, 1);
    assert_close(
        "logits",
        logits2.as_slice().unwrap(),
        logits1.as_slice().unwrap(),
    );
    assert_close("parameter gradients", &grads2, &grads1);
    assert_close("input gradient", &input2, &input1);
    let again = step(&mut Wide::init(2), &x, &labels);
    assert_eq!((again.0, again.1, again.2), (logits2, grads2, input2));
    set_threads(1).unwrap();
}
