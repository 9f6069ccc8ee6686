//! The thread count may change while kernels run: another thread calling `set_threads`
//! between two of a convolution's reads of the count must not make it cut its scratch for more
//! tasks than it sized it for, so each kernel call reads the count once. The window for that
//! was a few instructions wide, too narrow for this test to hit reliably; what it checks is
//! that results stay right (within the rounding that different splits give) and nothing
//! panics while the count keeps changing.
//!
//! The count is process-wide, so this runs in its own test binary, in one test function.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use striate::ops::parallel::set_threads;
use striate::prelude::*;

network! {
    /// A packed convolution (stride 2, 20 channels), a direct one and a linear layer.
    struct Mixed {
        input: [3, 21, 21],
        c1: conv2d(20, kernel = 3, stride = 2, pad = 1),
        relu,
        c2: conv2d(6, kernel = 3, pad = 1),
        flatten,
        fc: linear(10),
    }
}

fn images(n: usize) -> Array4<f32> {
    Array4::from_shape_fn((n, 3, 21, 21), |(b, c, i, j)| {
        ((b * 131 + c * 31 + i * 7 + j) as f32 * 0.37).sin()
    })
}

/// Logits and the first layer's weight gradient of one training step.
fn step(
    net: &mut Mixed,
    x: &Array4<f32>,
    labels: &[usize],
    tape: &mut Tape,
) -> (Vec<f32>, Vec<f32>) {
    let logits = net.forward_train(x.view(), tape).unwrap().to_owned();
    let (_, d) = cross_entropy(logits.view(), labels).unwrap();
    let mut grads = net.gradients();
    net.backward(tape, d.view(), &mut grads).unwrap();
    let first = Mixed::PARAMS[0].len;
    (
        logits.iter().copied().collect(),
        grads.params().as_slice()[..first].to_vec(),
    )
}

#[test]
fn changing_the_thread_count_while_kernels_run() {
    let mut net = Mixed::init(3);
    let cases: Vec<(Array4<f32>, Vec<usize>)> = [1, 2, 5]
        .into_iter()
        .map(|n| (images(n), (0..n).map(|i| i % 10).collect()))
        .collect();
    set_threads(1).unwrap();
    let mut tape = Tape::new();
    let expected: Vec<_> = cases
        .iter()
        .map(|(x, y)| step(&mut net, x, y, &mut tape))
        .collect();

    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                set_threads([1, 3, 2][i % 3]).unwrap();
                i += 1;
                std::thread::yield_now();
            }
        });
        let start = Instant::now();
        let mut tapes = [Tape::new(), Tape::new()];
        while start.elapsed() < Duration::from_millis(400) {
            for ((x, y), (logits, d_w)) in cases.iter().zip(&expected) {
                for tape in &mut tapes {
                    let (l, g) = step(&mut net, x, y, tape);
                    // Sums split differently by different thread counts: close, not equal.
                    for (a, b) in l.iter().zip(logits).chain(g.iter().zip(d_w)) {
                        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
                    }
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    set_threads(1).unwrap();
}
