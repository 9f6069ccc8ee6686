//! Restricted Boltzmann machines on the built-in digits: a 784-500 machine trained by PCD,
//! pictures of its filters and of Gibbs chains, and greedy layer-wise pretraining of a
//! 784-500-500 network fine-tuned as a classifier on a few labelled digits, beside the same
//! network from random initialisation.
//!
//! ```text
//! cargo run --release --example rbm -- [--epochs 8] [--labelled 500] [--seeds 3]
//!     [--threads 2] [--out docs/src/images]
//! ```
//!
//! The pictures are `rbm-filters.png` (one tile per hidden unit: its 784 weights, grey zero,
//! light positive, dark negative) and `rbm-samples.png` (chains from test digits after 0, 1, 10,
//! 100 and 1000 Gibbs steps, then chains from noise after 1000), written to `--out`.

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;
use std::time::Instant;

use striate::ndarray::{s, Array2, ArrayView2};
use striate::prelude::*;
use striate::rbm::{Cd, CdTrainer, Rbm};

network! {
    /// The classifier both initialisations fine-tune: the two pretrained layers and a softmax.
    pub struct Mlp {
        input: [1, 28, 28],
        flatten,
        fc1: linear(500), sigmoid,
        fc2: linear(500), sigmoid,
        fc3: linear(10),
    }
}

struct Options {
    epochs: usize,
    labelled: usize,
    seeds: u64,
    threads: usize,
    out: String,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        epochs: 8,
        labelled: 500,
        seeds: 3,
        threads: 2,
        out: "docs/src/images".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--epochs" => o.epochs = number(value()?)?,
            "--labelled" => o.labelled = number(value()?)?,
            "--seeds" => o.seeds = number(value()?)? as u64,
            "--threads" => o.threads = number(value()?)?,
            "--out" => o.out = value()?,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; flags: --epochs --labelled --seeds --threads --out"
                ))
            }
        }
    }
    Ok(o)
}

/// The images of `data` as rows of 784 pixels in `[0, 1]`.
fn rows(data: &Dataset) -> Array2<f32> {
    let images = data.images();
    let n = images.shape()[0];
    images.to_shape((n, 784)).expect("28x28 images").to_owned()
}

/// `epochs` of PCD (batches of 20, momentum 0.5, a little weight decay), printing the
/// reconstruction error.
fn train<const V: usize, const H: usize>(
    name: &str,
    data: ArrayView2<'_, f32>,
    epochs: usize,
) -> Result<Rbm<V, H>, Error> {
    let mut rbm = Rbm::<V, H>::bernoulli(1);
    let cd = Cd::new(0.05)
        .persistent(true)
        .batch(20)
        .momentum(0.5)
        .weight_decay(1e-4)
        .seed(2);
    let mut trainer = CdTrainer::new(cd)?;
    let start = Instant::now();
    for epoch in 1..=epochs {
        trainer.epoch(&mut rbm, data)?;
        let error = rbm.reconstruction_error(data)?;
        println!(
            "{name} epoch {epoch}: reconstruction error {error:.2} ({:.1} s)",
            start.elapsed().as_secs_f64()
        );
    }
    Ok(rbm)
}

/// A grey PNG of `tiles` (each `side × side` values, scaled by `scale(tile)` to `[0, 1]`), `columns`
/// to a row.
fn write_tiles(
    path: &str,
    tiles: &[Vec<f32>],
    columns: usize,
    scale: impl Fn(&[f32]) -> (f32, f32),
) -> Result<(), Box<dyn std::error::Error>> {
    const SIDE: usize = 28;
    const GAP: usize = 2;
    let rows = tiles.len().div_ceil(columns);
    let cell = SIDE + GAP;
    let (width, height) = (columns * cell + GAP, rows * cell + GAP);
    let mut pixels = vec![255u8; width * height];
    for (t, tile) in tiles.iter().enumerate() {
        let (top, left) = (GAP + (t / columns) * cell, GAP + (t % columns) * cell);
        let (low, high) = scale(tile);
        for (i, &v) in tile.iter().enumerate() {
            let grey = ((v - low) / (high - low).max(1e-6)).clamp(0.0, 1.0);
            pixels[(top + i / SIDE) * width + left + i % SIDE] = (grey * 255.0).round() as u8;
        }
    }
    let mut encoder = png::Encoder::new(
        BufWriter::new(File::create(path)?),
        width as u32,
        height as u32,
    );
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&pixels)?;
    println!("wrote {path} ({width}x{height})");
    Ok(())
}

/// The filters, and chains from ten test digits and from noise.
fn pictures(
    rbm: &Rbm<784, 500>,
    test: ArrayView2<'_, f32>,
    out: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let filters: Vec<Vec<f32>> = rbm
        .weights()
        .rows()
        .into_iter()
        .map(|r| r.to_vec())
        .collect();
    // Each filter on its own symmetric scale, zero grey.
    let symmetric = |t: &[f32]| {
        let m = t.iter().fold(0f32, |m, &v| m.max(v.abs()));
        (-m, m)
    };
    write_tiles(&format!("{out}/rbm-filters.png"), &filters, 25, symmetric)?;
    let start = test.slice(s![..10, ..]).to_owned();
    let mut columns = vec![start.clone()];
    let mut state = start;
    let mut done = 0;
    for (seed, k) in [(1, 1), (2, 9), (3, 90), (4, 900)] {
        let chains = rbm.gibbs(state.view(), k, seed)?;
        done += k;
        println!("chains from test digits: {done} Gibbs steps");
        columns.push(chains.means.clone());
        state = chains.samples;
    }
    columns.push(rbm.dream(10, 1000, 5)?.means);
    // One row per chain, one column per picture.
    let tiles: Vec<Vec<f32>> = (0..10)
        .flat_map(|r| columns.iter().map(move |c| c.row(r).to_vec()))
        .collect();
    write_tiles(
        &format!("{out}/rbm-samples.png"),
        &tiles,
        columns.len(),
        |_| (0.0, 1.0),
    )
}

/// Test accuracy (percent) of `net` after fine-tuning on `labelled`: Adam, 30 epochs.
fn fine_tune(mut net: Mlp, labelled: &Dataset, test: &Dataset, seed: u64) -> Result<f32, Error> {
    let mut trainer = Trainer::new(&mut net, Adam::new(1e-3)).shuffle_seed(seed);
    for epoch in 0..30 {
        trainer.epoch(labelled, 32, epoch, false)?;
    }
    Ok(100.0 * evaluate(trainer.net(), test, 256)?.accuracy())
}

fn run(o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    striate::set_threads(o.threads)?;
    let mnist = Mnist::builtin();
    let (train_rows, test_rows) = (rows(&mnist.train), rows(&mnist.test));
    let start = Instant::now();
    // Layer 1 on every training image (no labels), layer 2 on layer 1's features.
    let rbm1 = train::<784, 500>("rbm 784-500", train_rows.view(), o.epochs)?;
    std::fs::create_dir_all(&o.out)?;
    pictures(&rbm1, test_rows.view(), &o.out)?;
    let features = rbm1.transform(train_rows.view())?;
    let rbm2 = train::<500, 500>("rbm 500-500", features.view(), o.epochs)?;
    println!("pretraining: {:.1} s", start.elapsed().as_secs_f64());

    println!("\n| seed | random init: test accuracy | RBM-pretrained: test accuracy |");
    println!("|---:|---:|---:|");
    let (mut random_sum, mut pretrained_sum) = (0.0, 0.0);
    for seed in 0..o.seeds {
        let (labelled, _) = mnist
            .train
            .split_stratified(1.0 - o.labelled as f64 / mnist.train.len() as f64, seed)?;
        let random = fine_tune(Mlp::init(seed), &labelled, &mnist.test, seed)?;
        let mut net = Mlp::init(seed);
        rbm1.init_linear(&mut net, "fc1")?;
        rbm2.init_linear(&mut net, "fc2")?;
        let pretrained = fine_tune(net, &labelled, &mnist.test, seed)?;
        println!("| {seed} | {random:.1}% | {pretrained:.1}% |");
        random_sum += random;
        pretrained_sum += pretrained;
    }
    let n = o.seeds as f32;
    println!(
        "| mean | {:.1}% | {:.1}% |",
        random_sum / n,
        pretrained_sum / n
    );
    println!(
        "\n784-500-500 sigmoid MLP, {} labelled training digits, {} test digits; total {:.1} s at {} threads",
        o.labelled,
        mnist.test.len(),
        start.elapsed().as_secs_f64(),
        o.threads
    );
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rbm: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rbm: {e}");
            ExitCode::FAILURE
        }
    }
}
