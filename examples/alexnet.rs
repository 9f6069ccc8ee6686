//! Declares AlexNet (Krizhevsky et al., 2012, single-tower form) for 227x227 colour images,
//! prints its summary and the facts that the summary makes plain, then times one forward pass
//! on a random image (the median of five, after a warm-up).
//!
//! `cargo run --release --example alexnet [-- --threads N] [--train-batch B]`: with N threads,
//! each layer splits the one image's output channels (or outputs) between them. With
//! `--train-batch B`, it then times training steps (forward, backward, SGD with momentum) on a
//! batch of B random images and prints the median of five after a warm-up, the figure that
//! `scripts/torch_alexnet.py` gives for PyTorch (see BENCHMARKS.md).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use striate::prelude::*;

network! {
    /// AlexNet for [3, 227, 227] images and 1,000 classes.
    pub struct AlexNet {
        input: [3, 227, 227],
        conv1: conv2d(96, kernel = 11, stride = 4) -> [96, 55, 55],
        relu,
        max_pool(3, stride = 2) -> [96, 27, 27],
        conv2: conv2d(256, kernel = 5, pad = 2) -> [256, 27, 27],
        relu,
        max_pool(3, stride = 2) -> [256, 13, 13],
        conv3: conv2d(384, kernel = 3, pad = 1),
        relu,
        conv4: conv2d(384, kernel = 3, pad = 1),
        relu,
        conv5: conv2d(256, kernel = 3, pad = 1),
        relu,
        max_pool(3, stride = 2) -> [256, 6, 6],
        flatten,
        fc6: linear(4096),
        relu,
        dropout(0.5),
        fc7: linear(4096),
        relu,
        dropout(0.5),
        fc8: linear(1000),
    }
}

/// `1234567` -> `1,234,567`.
fn commas(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The value of `flag N` (a positive number), if given.
fn number_flag(flag: &str) -> Result<Option<usize>, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .map(Some)
            .ok_or_else(|| format!("{flag} needs a positive number")),
    }
}

/// Median time of five training steps on `batch` random images, after one to warm up.
fn time_training(net: &mut AlexNet, batch: usize) -> striate::Result<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let x = Array4::from_shape_fn((batch, 3, 227, 227), |_| rng.random::<f32>());
    let labels: Vec<usize> = (0..batch).map(|i| i * 7 % 1000).collect();
    let mut tape = Tape::new();
    let mut grads = net.gradients();
    let mut sgd = Sgd::new(0.01).momentum(0.9);
    let mut times = Vec::new();
    for step in 0..6 {
        let start = Instant::now();
        grads.zero();
        let logits = net.forward_train(x.view(), &mut tape)?;
        let (_, d_logits) = cross_entropy(logits, &labels)?;
        net.backward(&mut tape, d_logits.view(), &mut grads)?;
        sgd.step(net.params_mut().as_mut_slice(), grads.params().as_slice())?;
        if step > 0 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[2])
}

fn main() -> striate::Result<()> {
    let (threads, train_batch) = match (number_flag("--threads"), number_flag("--train-batch")) {
        (Ok(threads), Ok(batch)) => (threads.unwrap_or(1), batch),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("alexnet: {e}");
            std::process::exit(2);
        }
    };
    striate::set_threads(threads)?;
    println!("{}\n", AlexNet::summary());

    let conv1 = &AlexNet::LAYERS[0];
    let neurons: usize = conv1.output.iter().product();
    let weights = AlexNet::PARAMS[0].len;
    let biases = AlexNet::PARAMS[1].len;
    let fan_in = weights / biases;
    println!(
        "conv1 gives {:?}: {} neurons, {} parameters ({} weights and {} biases)",
        conv1.output,
        commas(neurons as u64),
        commas(conv1.params as u64),
        commas(weights as u64),
        biases
    );
    println!(
        "without weight sharing each neuron would need its own {} weights and bias: {} x {} = {}",
        fan_in,
        commas(neurons as u64),
        fan_in + 1,
        commas((neurons * (fan_in + 1)) as u64)
    );
    println!(
        "the whole network has {} parameters",
        commas(AlexNet::NUM_PARAMS as u64)
    );
    let last_pool = AlexNet::LAYERS
        .iter()
        .rev()
        .find(|l| l.kind == "max_pool")
        .expect("AlexNet pools");
    println!(
        "the last pooling layer sees {}x{} input pixels (its receptive field)\n",
        last_pool.receptive_field[0], last_pool.receptive_field[1]
    );

    let start = Instant::now();
    let mut net = AlexNet::init(0);
    println!("initialised in {:.2} s", start.elapsed().as_secs_f64());
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let image = Array4::from_shape_fn((1, 3, 227, 227), |_| rng.random::<f32>());
    let _ = net.forward(image.view())?; // warm-up: page in the weights
    let mut times = Vec::new();
    let mut logits = None;
    for _ in 0..5 {
        let start = Instant::now();
        logits = Some(net.forward(image.view())?);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let (ms, logits) = (times[2], logits.expect("five passes"));
    let best = logits
        .row(0)
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        );
    println!(
        "one forward pass on a random image, {threads} thread(s): {ms:.1} ms ({:.1} GFLOP/s); \
         top class {} (untrained)",
        2.0 * AlexNet::summary().total_macs() as f64 / (ms * 1e6),
        best.0
    );
    if let Some(batch) = train_batch {
        let ms = time_training(&mut net, batch)?;
        println!(
            "training step on {batch} images, {threads} thread(s): median {ms:.0} ms \
             ({:.1} images/s)",
            batch as f64 / ms * 1e3
        );
    }
    Ok(())
}
