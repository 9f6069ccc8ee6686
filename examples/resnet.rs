//! Declares ResNet-20 (He et al., 2016, the CIFAR variant) for 32x32 colour images, prints its
//! summary and parameter count, then times training steps (forward, cross-entropy, backward,
//! SGD with momentum) on a batch of random images and prints the median.
//!
//! ```text
//! cargo run --release --example resnet [-- --batch B] [--steps S] [--threads N]
//! ```
//!
//! `--batch` images per step (default 64), `--steps` timed steps after two to warm up
//! (default 10), `--threads` (default 1). The network is the protocol's (`../shared/bench/
//! PROTOCOL.md`) and `torch_peer.py`'s, parameter for parameter and name for name; the bench
//! program's `resnet` mode shares this declaration.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use striate::prelude::*;
use striate::train::Trainer;

network! {
    /// ResNet-20 for [3, 32, 32] images and 10 classes: three stages of three basic blocks
    /// (16, 32 and 64 channels), projection shortcuts where the shape changes.
    pub struct ResNet20 {
        input: [3, 32, 32],
        conv1: conv2d(16, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
        block1: residual {
            conv1: conv2d(16, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(16, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu,
        block2: residual {
            conv1: conv2d(16, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(16, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu,
        block3: residual {
            conv1: conv2d(16, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(16, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu -> [16, 32, 32],
        block4: residual(shortcut = {
            conv: conv2d(32, kernel = 1, stride = 2, bias = false), bn: batch_norm,
        }) {
            conv1: conv2d(32, kernel = 3, stride = 2, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(32, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu,
        block5: residual {
            conv1: conv2d(32, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(32, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu,
        block6: residual {
            conv1: conv2d(32, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(32, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu -> [32, 16, 16],
        block7: residual(shortcut = {
            conv: conv2d(64, kernel = 1, stride = 2, bias = false), bn: batch_norm,
        }) {
            conv1: conv2d(64, kernel = 3, stride = 2, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(64, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu,
        block8: residual {
            conv1: conv2d(64, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(64, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu,
        block9: residual {
            conv1: conv2d(64, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(64, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu -> [64, 8, 8],
        avg_pool(8),
        flatten,
        fc: linear(10),
    }
}

// PyTorch's count for this network (`sum(p.numel() for p in ResNet20().parameters())`).
const _: () = assert!(ResNet20::NUM_PARAMS == 272_474);

/// `--batch`, `--steps` and `--threads`, in this order, with their defaults.
const FLAGS: [(&str, usize); 3] = [("--batch", 64), ("--steps", 10), ("--threads", 1)];

/// The values of [`FLAGS`] given on the command line, each a positive number, or the defaults.
fn parse_args() -> Result<[usize; 3], String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut values = FLAGS.map(|(_, default)| default);
    for pair in args.chunks(2) {
        let Some(i) = FLAGS.iter().position(|(flag, _)| *flag == pair[0]) else {
            let names: Vec<&str> = FLAGS.iter().map(|(flag, _)| *flag).collect();
            return Err(format!(
                "unknown argument `{}`; expected one of: {}",
                pair[0],
                names.join(", ")
            ));
        };
        values[i] = pair
            .get(1)
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{} needs a positive number", pair[0]))?;
    }
    Ok(values)
}

/// Milliseconds of each of `steps` training steps (cross-entropy, SGD with learning rate 0.01
/// and momentum 0.9) on `batch` random images, sorted, after two steps to warm up (the first
/// sizes the tape and the gradients).
fn time_training(net: &mut ResNet20, batch: usize, steps: usize) -> striate::Result<Vec<f64>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let x = Array4::from_shape_fn((batch, 3, 32, 32), |_| rng.random::<f32>());
    let labels: Vec<usize> = (0..batch).map(|i| i * 3 % 10).collect();
    let mut trainer = Trainer::new(net, Sgd::new(0.01).momentum(0.9));
    for _ in 0..2 {
        trainer.step(x.view(), &labels)?;
    }
    let mut times: Vec<f64> = (0..steps)
        .map(|_| {
            let start = Instant::now();
            trainer.step(x.view(), &labels)?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<striate::Result<_>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times)
}

fn main() -> striate::Result<()> {
    let [batch, steps, threads] = parse_args().unwrap_or_else(|e| {
        eprintln!("resnet: {e}");
        std::process::exit(2);
    });
    striate::set_threads(threads)?;
    let summary = ResNet20::summary();
    println!(
        "{summary}
"
    );
    println!(
        "{} parameters, PyTorch's count for the same network (checked at compile time); \
         {} multiply-adds per image",
        ResNet20::NUM_PARAMS,
        summary.total_macs()
    );

    let mut net = ResNet20::init(0);
    let times = time_training(&mut net, batch, steps)?;
    let median = 0.5 * (times[(steps - 1) / 2] + times[steps / 2]);
    println!(
        "training step on {batch} images, {threads} thread(s): median {median:.1} ms of {steps} \
         (fastest {:.1}, slowest {:.1}), {:.0} images/s",
        times[0],
        times[steps - 1],
        batch as f64 / median * 1e3
    );
    Ok(())
}
