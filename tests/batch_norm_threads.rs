//! Training with batch norm split over threads: each thread runs the pass on its shard of the
//! batch, and batch norm's kernels exchange per-channel sums between the shards, so its
//! statistics are still those of the whole batch. A few SGD steps at two threads must give
//! what one thread gives (up to the order in which sums are added), the same to the bit from
//! run to run, count each pass once in `num_batches_tracked`, and allocate nothing once warm.
//!
//! The thread count is process-wide, so everything here runs in one test function.

use std::sync::atomic::Ordering;

use striate::ops::loss::softmax_cross_entropy;
use striate::prelude::*;
use striate::set_threads;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::ALLOCATIONS;

network! {
    /// Convolution, batch norm over channels, ReLU, a linear head.
    struct ConvNormed {
        input: [3, 8, 8],
        conv: conv2d(4, kernel = 3, pad = 1),
        bn: batch_norm,
        relu,
        flatten,
        fc: linear(5),
    }
}

network! {
    /// A normalised stem, a residual block with batch norm inside, and batch norm over the
    /// features of a vector layer.
    struct ResidualNormed {
        input: [3, 8, 8],
        stem: conv2d(4, kernel = 3, pad = 1),
        bn: batch_norm,
        relu,
        block: residual { conv: conv2d(4, kernel = 3, pad = 1), bn: batch_norm, relu },
        avg_pool(2),
        flatten,
        hidden: linear(12),
        bn_hidden: batch_norm(momentum = 0.3),
        relu,
        fc: linear(5),
    }
}

network! {
    /// A body with batch norm, to be nested.
    struct NormedBody {
        input: [3, 8, 8],
        conv: conv2d(6, kernel = 3, pad = 1),
        bn: batch_norm,
        relu,
    }
}

network! {
    /// Batch norm inside a nested network.
    struct NestedNormed {
        input: [3, 8, 8],
        body: NormedBody -> [6, 8, 8],
        max_pool(2),
        flatten,
        fc: linear(5),
    }
}

/// Samples per batch: odd, so that the two shards differ in size.
const BATCH: usize = 19;
const STEPS: usize = 4;

/// Images whose channels have different means, which drift over the batch (so the two
/// shards' statistics differ).
fn images(n: usize) -> Array4<f32> {
    Array4::from_shape_fn((n, 3, 8, 8), |(b, c, i, j)| {
        ((b * 131 + c * 31 + i * 7 + j) as f32 * 0.61).sin() + c as f32 * 0.5 + b as f32 * 0.05
    })
}

/// What a few SGD steps leave behind.
#[derive(Debug, PartialEq)]
struct Run {
    losses: Vec<f32>,
    params: Vec<f32>,
    buffers: Vec<f32>,
    /// The input gradient of the last step.
    input_grad: Vec<f32>,
    num_batches_tracked: u64,
    shards: usize,
    /// Allocations in the steps after the first two.
    allocations: u64,
}

fn train<N: Network<InputDim = ndarray::Ix4, OutputDim = ndarray::Ix2>>(
    x: &Array4<f32>,
    labels: &[usize],
) -> Run {
    let mut net = N::init(7);
    let mut tape = Tape::new();
    let mut grads = net.gradients().with_input();
    let mut opt = Sgd::new(0.05).momentum(0.9);
    let (n, classes) = (x.shape()[0], N::OUTPUT_SHAPE[0]);
    let mut d_logits = vec![0.0; n * classes];
    let mut losses = Vec::with_capacity(STEPS);
    let mut before = 0;
    for step in 0..STEPS {
        if step == 2 {
            before = ALLOCATIONS.load(Ordering::Relaxed);
        }
        let logits = net.forward_train(x.view(), &mut tape).unwrap();
        let logits = logits.as_slice().unwrap();
        let loss = softmax_cross_entropy(&mut d_logits, logits, labels, classes).unwrap();
        grads.zero();
        let d = ArrayView2::from_shape((n, classes), &d_logits).unwrap();
        net.backward(&mut tape, d, &mut grads).unwrap();
        opt.step(net.params_mut().as_mut_slice(), grads.params().as_slice())
            .unwrap();
        losses.push(loss);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    Run {
        losses,
        params: net.params().as_slice().to_vec(),
        buffers: net.buffers().as_slice().to_vec(),
        input_grad: grads.input().unwrap().iter().copied().collect(),
        num_batches_tracked: net.state().num_batches_tracked,
        shards: tape.shards(),
        allocations,
    }
}

fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}");
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * scale,
            "{what}[{i}]: {x} against {y} (scale {scale})"
        );
    }
}

/// Two threads against one, and two threads against themselves.
fn check<N: Network<InputDim = ndarray::Ix4, OutputDim = ndarray::Ix2>>(name: &str) {
    let x = images(BATCH);
    let labels: Vec<usize> = (0..BATCH).map(|i| i * 3 % 5).collect();
    set_threads(1).unwrap();
    let one = train::<N>(&x, &labels);
    set_threads(2).unwrap();
    let two = train::<N>(&x, &labels);
    let again = train::<N>(&x, &labels);
    assert_eq!((one.shards, two.shards), (1, 2), "{name}: shards");
    assert_close(&format!("{name} losses"), &two.losses, &one.losses);
    assert_close(&format!("{name} parameters"), &two.params, &one.params);
    assert_close(
        &format!("{name} running statistics"),
        &two.buffers,
        &one.buffers,
    );
    assert_close(
        &format!("{name} input gradient"),
        &two.input_grad,
        &one.input_grad,
    );
    // The running statistics moved: the exchange did not leave them at their initial values.
    assert!(
        one.buffers.iter().any(|&v| v != 0.0 && v != 1.0),
        "{name}: running statistics"
    );
    // One count per training pass, whatever the thread count.
    assert_eq!(one.num_batches_tracked, STEPS as u64, "{name}");
    assert_eq!(two.num_batches_tracked, STEPS as u64, "{name}");
    if counting_alloc::own_kernels(name) {
        assert_eq!(
            one.allocations, 0,
            "{name}: allocations per step, one thread"
        );
        assert_eq!(
            two.allocations, 0,
            "{name}: allocations per step, two threads"
        );
    }
    // The same to the bit, run after run.
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&again.losses), bits(&two.losses), "{name}");
    assert_eq!(bits(&again.params), bits(&two.params), "{name}");
    assert_eq!(bits(&again.buffers), bits(&two.buffers), "{name}");
    assert_eq!(bits(&again.input_grad), bits(&two.input_grad), "{name}");

    // Two threads of the caller's training at once: the pool serves one split pass at a
    // time, so a pass that finds it busy runs unsplit, and a backward pass waits for it; no
    // pass hangs, and each gives what one thread gives.
    let both: Vec<Run> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| train::<N>(&x, &labels)))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for run in &both {
        assert_close(
            &format!("{name} concurrent parameters"),
            &run.params,
            &one.params,
        );
        assert_close(
            &format!("{name} concurrent buffers"),
            &run.buffers,
            &one.buffers,
        );
        assert_eq!(run.num_batches_tracked, STEPS as u64, "{name}");
    }
    set_threads(1).unwrap();
}

#[test]
fn batch_norm_training_splits_over_threads() {
    // The allocation counter sees every thread, the test harness's too, which may still be
    // allocating as this test starts; a first run, not counted, gives it time to be done.
    set_threads(1).unwrap();
    train::<ConvNormed>(&images(BATCH), &[0; BATCH]);
    check::<ConvNormed>("conv, batch norm");
    check::<ResidualNormed>("residual");
    check::<NestedNormed>("nested");
}
