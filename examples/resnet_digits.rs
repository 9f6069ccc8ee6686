//! Trains a small residual network on MNIST digits: the built-in 8,004 training and 1,996 test
//! digits by default, or a full MNIST directory with `--data DIR`.
//!
//! ```text
//! cargo run --release --example resnet_digits -- [--data DIR] [--epochs N] [--batch N]
//!                                                [--lr X] [--seed N] [--threads N] [--out FILE]
//! ```
//!
//! The network is ResNet-20's pattern at digit size: a convolution stem, then three basic blocks
//! (batch norm after each convolution; the second halves the size and doubles the channels,
//! with a projection shortcut), global average pooling and one linear layer. Prints the test
//! accuracy after each epoch and at the end, with the training time, for comparison with
//! `cargo run --release --example lenet`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use striate::prelude::*;
use striate::train::{evaluate, Trainer};

network! {
    /// A residual network for [1, 28, 28] digits: 16 channels at 14x14, 32 at 7x7.
    pub struct DigitsResNet {
        input: [1, 28, 28],
        conv1: conv2d(16, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
        max_pool(2) -> [16, 14, 14],
        block1: residual {
            conv1: conv2d(16, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(16, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu,
        block2: residual(shortcut = {
            conv: conv2d(32, kernel = 1, stride = 2, bias = false), bn: batch_norm,
        }) {
            conv1: conv2d(32, kernel = 3, stride = 2, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(32, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu -> [32, 7, 7],
        block3: residual {
            conv1: conv2d(32, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(32, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu,
        avg_pool(7),
        flatten,
        fc: linear(10),
    }
}

const USAGE: &str = "usage: resnet_digits [--data DIR] [--epochs N] [--batch N] [--lr X] [--seed N]
                     [--threads N] [--out FILE]

  --data DIR    a directory with the four MNIST files (train-images-idx3-ubyte[.gz], ...);
                default: the 10,000 digits built into striate
  --epochs N    passes over the training set (default 10)
  --batch N     samples per step (default 32)
  --lr X        initial learning rate of SGD with momentum 0.9, halved every 3 epochs
                (default 0.1)
  --seed N      seed of the initial weights and of the shuffles (default 1)
  --threads N   threads for the kernels (default: every core)
  --out FILE    save the trained weights there (safetensors, PyTorch names; default: not saved)";

const FLAGS: [&str; 7] = [
    "--data",
    "--epochs",
    "--batch",
    "--lr",
    "--seed",
    "--threads",
    "--out",
];

struct Options {
    data: Option<PathBuf>,
    epochs: usize,
    batch: usize,
    lr: f32,
    seed: u64,
    threads: usize,
    out: Option<PathBuf>,
}

/// The value given for `flag`, parsed and accepted by `ok`, or `default` when not given.
fn flag<T: FromStr>(
    args: &[String],
    flag: &str,
    default: T,
    ok: impl Fn(&T) -> bool,
    what: &str,
) -> Result<T, String> {
    let Some(pair) = args.chunks(2).find(|pair| pair[0] == flag) else {
        return Ok(default);
    };
    pair[1]
        .parse()
        .ok()
        .filter(ok)
        .ok_or_else(|| format!("{flag}: expected {what}, found `{}`", pair[1]))
}

fn parse_args() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        return Err(String::new());
    }
    for pair in args.chunks(2) {
        if !FLAGS.contains(&pair[0].as_str()) {
            return Err(format!("unknown flag {}", pair[0]));
        }
        if pair.len() < 2 {
            return Err(format!("{} needs a value", pair[0]));
        }
    }
    let path = |flag: &str| {
        let pair = args.chunks(2).find(|pair| pair[0] == flag);
        pair.map(|pair| PathBuf::from(&pair[1]))
    };
    let whole = "a whole number";
    let positive = "a whole number above 0";
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Options {
        data: path("--data"),
        epochs: flag(&args, "--epochs", 10, |_| true, whole)?,
        batch: flag(&args, "--batch", 32, |&b| b > 0, positive)?,
        lr: flag(
            &args,
            "--lr",
            0.1,
            |lr: &f32| lr.is_finite() && *lr > 0.0,
            "a number above 0",
        )?,
        seed: flag(&args, "--seed", 1, |_| true, whole)?,
        threads: flag(&args, "--threads", cores, |&t| t > 0, positive)?,
        out: path("--out"),
    })
}

fn run(o: &Options) -> striate::Result<()> {
    striate::set_threads(o.threads);
    let mnist = match &o.data {
        Some(dir) => Mnist::load(dir)?,
        None => Mnist::builtin(),
    };
    println!(
        "{} training and {} test digits, {} thread(s)",
        mnist.train.len(),
        mnist.test.len(),
        o.threads
    );
    println!("{}\n", DigitsResNet::summary());

    let mut net = DigitsResNet::init(o.seed);
    let opt = Sgd::new(o.lr).momentum(0.9);
    let mut trainer = Trainer::new(&mut net, opt)
        .schedule(LrSchedule::Step {
            step_size: 3,
            gamma: 0.5,
        })
        .shuffle_seed(o.seed);
    let mut train_seconds = 0.0;
    for epoch in 0..o.epochs {
        let r = trainer.epoch(&mnist.train, o.batch, epoch, true)?;
        train_seconds += r.seconds;
        let test = evaluate(trainer.net(), &mnist.test, 256)?;
        println!(
            "epoch {:>2}/{}  lr {:.4}  loss {:.4}  train acc {:.2}%  test acc {:.2}%  {:.0} img/s",
            epoch + 1,
            o.epochs,
            r.lr,
            r.loss,
            100.0 * r.accuracy,
            100.0 * test.accuracy(),
            r.images_per_sec
        );
    }
    let test = evaluate(&net, &mnist.test, 256)?;
    println!(
        "\nfinal test accuracy: {:.2}% ({} of {}), {:.1} s of training",
        100.0 * test.accuracy(),
        test.correct,
        test.total,
        train_seconds
    );
    if let Some(out) = &o.out {
        net.save(out)?;
        println!("weights saved to {}", out.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
