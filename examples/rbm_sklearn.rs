//! striate's side of `scripts/sklearn_rbm.py`: trains a 784-256 Bernoulli RBM by PCD on the
//! first `--samples` built-in training digits, binarized (pixel > 0.5), in order, in batches of
//! `--batch`, as scikit-learn's `BernoulliRBM.fit` does, and prints one JSON line per epoch:
//! the training time so far (scoring excluded) and the mean pseudo-likelihood, flipping the
//! units given in `--flips` (the script writes scikit-learn's). `--weights FILE` writes the
//! final weights `[256, 784]`, visible biases and hidden biases as little-endian `f32`, so that
//! the script can score them with scikit-learn itself; `--exact` prints the exact
//! pseudo-likelihood (every unit) of the last epoch too, which takes tens of seconds.
//!
//! ```text
//! cargo run --release --example rbm_sklearn -- --epochs 10 --lr 0.06 --batch 10 --threads 2
//! ```

use std::process::ExitCode;
use std::time::Instant;

use striate::ndarray::Array2;
use striate::prelude::*;
use striate::rbm::{Cd, CdTrainer, Rbm};

const HIDDEN: usize = 256;

struct Options {
    epochs: usize,
    lr: f32,
    batch: usize,
    samples: usize,
    threads: usize,
    seed: u64,
    flips: Option<String>,
    weights: Option<String>,
    exact: bool,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        epochs: 10,
        lr: 0.06,
        batch: 10,
        samples: 8000,
        threads: 2,
        seed: 0,
        flips: None,
        weights: None,
        exact: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--epochs" => o.epochs = value()?.parse().map_err(|e| bad(&e))?,
            "--lr" => o.lr = value()?.parse().map_err(|e| bad(&e))?,
            "--batch" => o.batch = value()?.parse().map_err(|e| bad(&e))?,
            "--samples" => o.samples = value()?.parse().map_err(|e| bad(&e))?,
            "--threads" => o.threads = value()?.parse().map_err(|e| bad(&e))?,
            "--seed" => o.seed = value()?.parse().map_err(|e| bad(&e))?,
            "--flips" => o.flips = Some(value()?),
            "--weights" => o.weights = Some(value()?),
            "--exact" => o.exact = true,
            _ => return Err(format!("unknown flag {flag}; flags: --epochs --lr --batch --samples --threads --seed --flips FILE --weights FILE --exact")),
        }
    }
    Ok(o)
}

fn run(o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    striate::set_threads(o.threads)?;
    let train = Mnist::builtin().train;
    if o.samples > train.len() {
        return Err(format!(
            "--samples {} is more than the {} training digits",
            o.samples,
            train.len()
        )
        .into());
    }
    let images = train.images();
    let pixels = images.as_slice().ok_or("contiguous images")?;
    let data = Array2::from_shape_fn((o.samples, 784), |(s, i)| {
        f32::from(u8::from(pixels[s * 784 + i] > 0.5))
    });
    let flips: Vec<usize> = match &o.flips {
        Some(path) => std::fs::read(path)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .collect(),
        None => Vec::new(),
    };
    let mut rbm = Rbm::<784, HIDDEN>::bernoulli(o.seed);
    let cd = Cd::new(o.lr).persistent(true).batch(o.batch).seed(o.seed);
    let mut trainer = CdTrainer::new(cd)?;
    let mut seconds = 0.0;
    for epoch in 1..=o.epochs {
        let start = Instant::now();
        trainer.epoch(&mut rbm, data.view())?;
        seconds += start.elapsed().as_secs_f64();
        let score = if flips.len() == o.samples {
            rbm.pseudo_likelihood(data.view(), &flips)?
        } else {
            rbm.pseudo_likelihood_seeded(data.view(), o.seed)?
        };
        let pl = score.mean().unwrap_or(f32::NAN);
        println!(
            "{{\"epoch\": {epoch}, \"seconds\": {seconds:.4}, \"pseudo_likelihood\": {pl:.4}}}"
        );
    }
    if o.exact {
        let exact = rbm.exact_pseudo_likelihood(data.view())?;
        let exact = exact.mean().unwrap_or(f32::NAN);
        println!("{{\"exact_pseudo_likelihood\": {exact:.4}}}");
    }
    if let Some(path) = &o.weights {
        let values = (rbm.weights().into_iter())
            .chain(rbm.visible_bias())
            .chain(rbm.hidden_bias());
        let bytes: Vec<u8> = values.flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(path, bytes)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rbm_sklearn: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rbm_sklearn: {e}");
            ExitCode::FAILURE
        }
    }
}
