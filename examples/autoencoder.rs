//! A convolutional denoising autoencoder on the built-in digits: noise is added to each
//! input, and the network is trained to give back the clean digit (binary cross-entropy
//! with logits against it). After each epoch it prints the reconstruction error on the test
//! digits, and at the end it writes two pictures:
//!
//! - `autoencoder_digits.png`: for a few test digits, the noisy input, the reconstruction and
//!   the original, one row each;
//! - `autoencoder_codes.png`: the 2-D codes of the test digits from a variant whose bottleneck
//!   has two units, coloured by digit.
//!
//! ```text
//! cargo run --release --example autoencoder -- [--epochs 15] [--code-epochs 20] [--threads N] [--out docs/src/images]
//! ```
//!
//! The decoder must end at the input's shape: `Trainer::step_reconstruct` only accepts a
//! network whose output shape the compiler has proved equal to its input shape.

use std::path::PathBuf;
use std::process::ExitCode;

use rand::{Rng, SeedableRng};
use striate::data::Dataset;
use striate::ndarray::Ix4;
use striate::plot::{save_image_grid, ScatterChart};
use striate::prelude::*;
use striate::train::Reconstructs;

network! {
    /// The denoising autoencoder: two stride-2 convolutions down to 32 maps of 7x7, two
    /// transposed convolutions back up to the digit. Its output is a logit per pixel.
    pub struct DenoisingAe {
        input: [1, 28, 28],
        enc1: conv2d(16, kernel = 3, stride = 2, pad = 1) -> [16, 14, 14],
        relu,
        enc2: conv2d(32, kernel = 3, stride = 2, pad = 1) -> [32, 7, 7],
        relu,
        dec1: conv_transpose2d(16, kernel = 3, stride = 2, pad = 1, output_pad = 1) -> [16, 14, 14],
        relu,
        dec2: conv_transpose2d(1, kernel = 3, stride = 2, pad = 1, output_pad = 1) -> [1, 28, 28],
    }
}

network! {
    /// The encoder of the 2-unit variant: a digit to a point of the plane.
    pub struct Encoder2 {
        input: [1, 28, 28],
        enc1: conv2d(16, kernel = 3, stride = 2, pad = 1), relu,
        enc2: conv2d(32, kernel = 3, stride = 2, pad = 1), relu,
        flatten,
        code: linear(2) -> [2],
    }
}

network! {
    /// Its decoder: a point back to a digit, through a reshape to 32 maps of 7x7.
    pub struct Decoder2 {
        input: [2],
        expand: linear(1568), relu,
        reshape([32, 7, 7]),
        dec1: conv_transpose2d(16, kernel = 3, stride = 2, pad = 1, output_pad = 1), relu,
        dec2: conv_transpose2d(1, kernel = 3, stride = 2, pad = 1, output_pad = 1) -> [1, 28, 28],
    }
}

network! {
    /// The 2-unit autoencoder: the encoder and the decoder as its two layers.
    pub struct CodeAe {
        input: [1, 28, 28],
        encoder: Encoder2 -> [2],
        decoder: Decoder2 -> [1, 28, 28],
    }
}

/// How strong the noise is: each pixel gets `N(0, NOISE²)`, then is clamped to `[0, 1]`.
const NOISE: f32 = 0.5;

struct Options {
    epochs: usize,
    code_epochs: usize,
    threads: usize,
    out: PathBuf,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        epochs: 15,
        code_epochs: 20,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        out: PathBuf::from("docs/src/images"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--epochs" => o.epochs = number(value()?)?,
            "--code-epochs" => o.code_epochs = number(value()?)?,
            "--threads" => o.threads = number(value()?)?,
            "--out" => o.out = PathBuf::from(value()?),
            _ => {
                return Err(format!(
                "unknown flag {flag}; flags: --epochs N, --code-epochs N, --threads N, --out DIR"
            ))
            }
        }
    }
    Ok(o)
}

/// `clean` with Gaussian noise, clamped to `[0, 1]`, written into `noisy`.
fn add_noise(noisy: &mut [f32], clean: &[f32], rng: &mut impl Rng) {
    for (n, &c) in noisy.iter_mut().zip(clean) {
        // Box-Muller: a standard normal from two uniforms.
        let (u, v): (f32, f32) = (rng.random_range(f32::EPSILON..1.0), rng.random());
        let z = (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos();
        *n = (c + NOISE * z).clamp(0.0, 1.0);
    }
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// One epoch of denoising training in batches of 64; returns the mean training loss.
fn train_epoch<N: Reconstructs<InputDim = Ix4>>(
    trainer: &mut Trainer<'_, N, Adam>,
    data: &Dataset,
    epoch: usize,
    rng: &mut impl Rng,
) -> Result<f32, Error> {
    let order = striate::data::shuffled_indices(data.len(), epoch as u64);
    let (mut clean, mut labels, mut noisy) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sum, mut batches) = (0.0, 0);
    for chunk in order.chunks(64) {
        data.gather(chunk, &mut clean, &mut labels)?;
        noisy.resize(clean.len(), 0.0);
        add_noise(&mut noisy, &clean, rng);
        let shape = (chunk.len(), 1, 28, 28);
        let x = ArrayView4::from_shape(shape, &noisy).expect("a batch of digits");
        let target = ArrayView4::from_shape(shape, &clean).expect("a batch of digits");
        sum += trainer
            .step_reconstruct(x, target, Loss::BceWithLogits)?
            .loss;
        batches += 1;
    }
    Ok(sum / batches as f32)
}

/// The test digits with noise (the same noise every epoch: seed 7).
fn noisy_copy(test: &Dataset) -> Array4<f32> {
    let clean = test.images();
    let mut noisy = Array4::zeros(clean.raw_dim());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let clean_flat = clean.as_standard_layout();
    add_noise(
        noisy.as_slice_mut().expect("fresh array"),
        clean_flat.as_slice().expect("standard layout"),
        &mut rng,
    );
    noisy
}

/// The reconstructions (probabilities) of `input`, and their mean squared error per pixel
/// against the clean test digits.
fn reconstruct<N: Network<InputDim = Ix4, OutputDim = Ix4>>(
    net: &N,
    input: &Array4<f32>,
    clean: &Dataset,
) -> Result<(Array4<f32>, f32), Error> {
    let out = net.forward(input.view())?.mapv(sigmoid);
    let mse = (&out - &clean.images())
        .mapv(|d| d * d)
        .mean()
        .unwrap_or(f32::NAN);
    Ok((out, mse))
}

fn run(o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    striate::set_threads(o.threads)?;
    std::fs::create_dir_all(&o.out)?;
    let digits = Mnist::builtin();
    let (train, test) = (&digits.train, &digits.test);
    let noisy_test = noisy_copy(test);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let noisy_mse = (&noisy_test - &test.images())
        .mapv(|d| d * d)
        .mean()
        .unwrap_or(f32::NAN);
    println!("{}", DenoisingAe::summary());
    println!("test MSE of the noisy input itself (noise sigma {NOISE}): {noisy_mse:.4}");

    let mut net = DenoisingAe::init(1);
    let mut trainer = Trainer::new(&mut net, Adam::new(2e-3));
    for epoch in 0..o.epochs {
        let start = std::time::Instant::now();
        let loss = train_epoch(&mut trainer, train, epoch, &mut rng)?;
        let (_, mse) = reconstruct(trainer.net(), &noisy_test, test)?;
        println!(
            "epoch {:>2}: train BCE {loss:.4}, test reconstruction MSE {mse:.4} ({:.1} s)",
            epoch + 1,
            start.elapsed().as_secs_f64()
        );
    }
    let (out, mse) = reconstruct(&net, &noisy_test, test)?;
    println!("final test reconstruction MSE: {mse:.4} (noisy input: {noisy_mse:.4})");
    let shown: Vec<usize> = (0..10)
        .map(|d| test.labels().iter().position(|&l| l == d).unwrap_or(0))
        .collect();
    let flat = |a: &Array4<f32>, i: usize| {
        a.index_axis(Axis(0), i)
            .to_owned()
            .into_raw_vec_and_offset()
            .0
    };
    let clean = test.images().to_owned();
    let rows: Vec<Vec<Vec<f32>>> = [&noisy_test, &out, &clean]
        .iter()
        .map(|a| shown.iter().map(|&i| flat(a, i)).collect())
        .collect();
    let rows: Vec<Vec<&[f32]>> = rows
        .iter()
        .map(|r| r.iter().map(Vec::as_slice).collect())
        .collect();
    let digits_png = o.out.join("autoencoder_digits.png");
    save_image_grid(&digits_png, &rows, 28, 28, 3)?;
    println!(
        "wrote {} (rows: noisy, reconstruction, original)",
        digits_png.display()
    );

    let mut codes_net = CodeAe::init(2);
    let mut trainer = Trainer::new(&mut codes_net, Adam::new(2e-3));
    for epoch in 0..o.code_epochs {
        let loss = train_epoch(&mut trainer, train, epoch, &mut rng)?;
        let (_, mse) = reconstruct(trainer.net(), &noisy_test, test)?;
        println!(
            "2-unit code, epoch {:>2}: train BCE {loss:.4}, test reconstruction MSE {mse:.4}",
            epoch + 1
        );
    }
    let encoder: Encoder2 = codes_net.part("encoder")?;
    let codes = encoder.forward(test.images())?;
    let mut chart = ScatterChart::new("2-D codes of the test digits").labels("code 1", "code 2");
    for d in 0..10 {
        let points = test
            .labels()
            .iter()
            .enumerate()
            .filter(|(_, &l)| l == d)
            .map(|(i, _)| (f64::from(codes[[i, 0]]), f64::from(codes[[i, 1]])))
            .collect();
        chart = chart.class(d.to_string(), points);
    }
    let codes_png = o.out.join("autoencoder_codes.png");
    chart.save(&codes_png)?;
    println!("wrote {}", codes_png.display());
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("autoencoder: {msg}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("autoencoder: {e}");
            ExitCode::FAILURE
        }
    }
}
