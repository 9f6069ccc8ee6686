//! Trains LeNet-5 on MNIST digits: the built-in 8,004 training and 1,996 test digits by
//! default, or a full MNIST directory with `--data DIR`.
//!
//! ```text
//! cargo run --release --example lenet -- [--data DIR] [--epochs N] [--batch N] [--lr X]
//!                                        [--seed N] [--threads N] [--out FILE]
//! ```
//!
//! Prints a progress bar per epoch (loss, accuracy, images/s), the test accuracy after each
//! epoch, the final confusion matrix, and saves the weights (safetensors, PyTorch names).

use std::path::PathBuf;
use std::process::ExitCode;

use striate::prelude::*;
use striate::train::{evaluate, Trainer};

network! {
    /// LeNet-5 (LeCun et al., 1998) with ReLU and max pooling.
    pub struct LeNet5 {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2) -> [6, 28, 28],
        relu,
        max_pool(2),
        conv2: conv2d(16, kernel = 5),
        relu,
        max_pool(2) -> [16, 5, 5],
        flatten,
        fc1: linear(120),
        relu,
        fc2: linear(84),
        relu,
        fc3: linear(10),
    }
}

const USAGE: &str = "usage: lenet [--data DIR] [--epochs N] [--batch N] [--lr X] [--seed N]
             [--threads N] [--out FILE]

  --data DIR    a directory with the four MNIST files (train-images-idx3-ubyte[.gz], ...);
                default: the 10,000 digits built into striate
  --epochs N    passes over the training set (default 12)
  --batch N     samples per step (default 32)
  --lr X        initial learning rate of SGD with momentum 0.9, halved every 4 epochs
                (default 0.02)
  --seed N      seed of the initial weights and of the shuffles (default 1)
  --threads N   threads to split each batch over (default: every core)
  --out FILE    where to save the trained weights (default lenet.safetensors)";

struct Options {
    data: Option<PathBuf>,
    epochs: usize,
    batch: usize,
    lr: f32,
    seed: u64,
    threads: usize,
    out: PathBuf,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        data: None,
        epochs: 12,
        batch: 32,
        lr: 0.02,
        seed: 1,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        out: PathBuf::from("lenet.safetensors"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag}: expected {what}, found `{value}`");
        match flag.as_str() {
            "--data" => o.data = Some(PathBuf::from(&value)),
            "--epochs" => o.epochs = value.parse().map_err(|_| bad("a whole number"))?,
            "--batch" => match value.parse() {
                Ok(b) if b > 0 => o.batch = b,
                _ => return Err(bad("a whole number above 0")),
            },
            "--lr" => match value.parse::<f32>() {
                Ok(lr) if lr > 0.0 && lr.is_finite() => o.lr = lr,
                _ => return Err(bad("a number above 0")),
            },
            "--seed" => o.seed = value.parse().map_err(|_| bad("a whole number"))?,
            "--threads" => match value.parse() {
                Ok(t) if t > 0 => o.threads = t,
                _ => return Err(bad("a whole number above 0")),
            },
            "--out" => o.out = PathBuf::from(&value),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(o)
}

fn run(o: &Options) -> striate::Result<()> {
    striate::set_threads(o.threads);
    let mnist = match &o.data {
        Some(dir) => Mnist::load(dir)?,
        None => Mnist::builtin(),
    };
    let source = match &o.data {
        Some(d) => format!("from {}", d.display()),
        None => "built in".to_string(),
    };
    println!(
        "{} training and {} test digits ({source}), {} thread(s)",
        mnist.train.len(),
        mnist.test.len(),
        o.threads
    );
    println!("{}\n", LeNet5::summary());

    let mut net = LeNet5::init(o.seed);
    let opt = Sgd::new(o.lr).momentum(0.9);
    let mut trainer = Trainer::new(&mut net, opt)
        .schedule(LrSchedule::Step {
            step_size: 4,
            gamma: 0.5,
        })
        .shuffle_seed(o.seed);
    let mut train_seconds = 0.0;
    for epoch in 0..o.epochs {
        let r = trainer.epoch(&mnist.train, o.batch, epoch, true)?;
        train_seconds += r.seconds;
        let test = evaluate(trainer.net(), &mnist.test, 256)?;
        println!(
            "epoch {:>2}/{}  lr {:.4}  loss {:.4}  train acc {:.2}%  test loss {:.4}  test acc {:.2}%  {:.0} img/s",
            epoch + 1,
            o.epochs,
            r.lr,
            r.loss,
            100.0 * r.accuracy,
            test.loss,
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
    println!("\nconfusion matrix:\n{}", test.confusion_table());
    net.save(&o.out)?;
    println!("weights saved to {}", o.out.display());
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
