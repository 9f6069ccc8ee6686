//! What a network learned, as pictures: LeNet-5's first-layer kernels, the feature maps one
//! digit produces at both convolutions, and the receptive field of one unit of conv2 drawn on
//! that digit; then the colour kernels of an AlexNet-style first layer (96 kernels of 11×11×3,
//! stride 4) after 320 steps on coloured stripes the example draws itself, beside the same
//! kernels untrained.
//!
//!     cargo run --release --example visualize [-- --weights FILE --out DIR --threads N]
//!
//! LeNet-5 is trained for three epochs on the built-in digits, or loaded from `--weights` (a file
//! that examples/lenet.rs saved). The PNG files go to `--out` (default `docs/src/images`, which
//! the book and the README show).

use std::path::PathBuf;
use std::process::ExitCode;

use striate::data::Dataset;
use striate::prelude::*;
use striate::train::evaluate;
use striate::visualize::{self, Grid};

#[allow(dead_code)]
#[path = "lenet.rs"]
mod lenet;
use lenet::LeNet5;

network! {
    /// AlexNet's first layer (Krizhevsky et al., 2012: 96 kernels of 11×11×3, stride 4) on
    /// small colour images, with a linear classifier on top.
    pub struct ColourNet {
        input: [3, 67, 67],
        conv1: conv2d(96, kernel = 11, stride = 4) -> [96, 15, 15],
        relu,
        max_pool(3, stride = 2) -> [96, 7, 7],
        flatten,
        fc: linear(4),
    }
}

struct Options {
    weights: Option<PathBuf>,
    out: PathBuf,
    threads: usize,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        weights: None,
        out: PathBuf::from("docs/src/images"),
        threads: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--weights" => o.weights = Some(PathBuf::from(value()?)),
            "--out" => o.out = PathBuf::from(value()?),
            "--threads" => {
                let v = value()?;
                o.threads = v.parse().map_err(|e| format!("--threads {v}: {e}"))?;
            }
            "--help" | "-h" => {
                return Err("usage: visualize [--weights FILE] [--out DIR] [--threads N]".into())
            }
            other => return Err(format!("unknown flag {other}; see --help")),
        }
    }
    Ok(o)
}

/// Coloured stripes, four classes: red against cyan or green against magenta, across or
/// down, at a random phase and width, with noise.
fn stripes(n: usize, seed: u64) -> striate::Result<Dataset> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32) / (1u64 << 31) as f32
    };
    let mut images = Array4::<f32>::zeros((n, 3, 67, 67));
    let mut labels = Vec::with_capacity(n);
    for (s, mut image) in images.outer_iter_mut().enumerate() {
        let class = s % 4;
        let (period, phase) = (6.0 + 10.0 * next(), 20.0 * next());
        let colours: [[f32; 3]; 2] = if class < 2 {
            [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
        } else {
            [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]
        };
        for i in 0..67 {
            for j in 0..67 {
                let along = if class % 2 == 0 { i } else { j } as f32;
                let band = (((along + phase) / period).floor() as i64).rem_euclid(2) as usize;
                for c in 0..3 {
                    image[[c, i, j]] = colours[band][c] + 0.2 * (next() - 0.5);
                }
            }
        }
        labels.push(class);
    }
    Dataset::from_arrays(images, labels, 4)
}

/// Epochs of the colour network.
const EPOCHS: usize = 10;

fn run(o: &Options) -> striate::Result<()> {
    striate::set_threads(o.threads)?;
    std::fs::create_dir_all(&o.out).map_err(|e| striate::Error::Io {
        path: o.out.clone(),
        source: e,
    })?;
    let mnist = Mnist::builtin();
    let mut lenet = LeNet5::init(0);
    match &o.weights {
        Some(path) => lenet.load(path)?,
        None => {
            let mut trainer = Trainer::new(&mut lenet, Sgd::new(0.02).momentum(0.9));
            for epoch in 0..3 {
                trainer.epoch(&mnist.train, 32, epoch, false)?;
            }
        }
    }
    let accuracy = evaluate(&lenet, &mnist.test, 500)?.accuracy();
    println!(
        "LeNet-5: {:.1}% on the {} test digits",
        100.0 * accuracy,
        mnist.test.len()
    );

    let save = |image: &visualize::Image, name: &str| -> striate::Result<()> {
        let path = o.out.join(name);
        image.save(&path)?;
        println!(
            "wrote {} ({}×{})",
            path.display(),
            image.width(),
            image.height()
        );
        Ok(())
    };
    let kernels = Grid {
        columns: Some(6),
        scale: 12,
        gap: 2,
    };
    save(
        &visualize::first_conv_kernels(&lenet, kernels)?,
        "lenet-conv1-kernels.png",
    )?;
    let digit = mnist.test.image(0)?;
    let maps = Grid {
        columns: Some(8),
        scale: 3,
        gap: 2,
    };
    for (layer, image) in visualize::feature_maps(&lenet, digit, maps)? {
        save(&image, &format!("lenet-feature-maps-{layer}.png"))?;
    }
    let conv2 = LeNet5::LAYERS
        .iter()
        .position(|l| l.name == "conv2")
        .expect("LeNet5 has conv2");
    let unit = [5, 3];
    let region = visualize::receptive_field::<LeNet5>(conv2, unit)?;
    println!(
        "unit {unit:?} of conv2 sees rows {}..{} and columns {}..{} of the input ({}×{}; the layer table says {:?})",
        region.top,
        region.top + region.height,
        region.left,
        region.left + region.width,
        region.height,
        region.width,
        LeNet5::LAYERS[conv2].receptive_field
    );
    save(
        &visualize::draw_region(digit, region, 8)?,
        "lenet-receptive-field-conv2.png",
    )?;

    let (train, test) = (stripes(512, 1)?, stripes(200, 2)?);
    let mut colour = ColourNet::init(0);
    // Weight decay wears away what the stripes do not need of the random start, so that what
    // they taught stands out.
    let sgd = Sgd::new(0.01).momentum(0.9).weight_decay(1.0);
    let mut trainer = Trainer::new(&mut colour, sgd);
    for epoch in 0..EPOCHS {
        trainer.epoch(&train, 16, epoch, false)?;
    }
    let accuracy = evaluate(&colour, &test, 100)?.accuracy();
    println!(
        "AlexNet-style conv1 after {EPOCHS} epochs of 512 striped images: {:.1}% on 200 others",
        100.0 * accuracy
    );
    let grid = Grid {
        columns: Some(12),
        scale: 4,
        gap: 2,
    };
    save(
        &visualize::first_conv_kernels(&colour, grid)?,
        "alexnet-conv1-kernels.png",
    )?;
    let random = ColourNet::init(0);
    save(
        &visualize::first_conv_kernels(&random, grid)?,
        "alexnet-conv1-kernels-untrained.png",
    )?;
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("visualize: {e}");
            ExitCode::FAILURE
        }
    }
}
