//! What the examples that train on MNIST digits share (`lenet`, `resnet_digits`): their
//! flags, loading the digits, the epoch loop with a test evaluation after each epoch, and the
//! exit code. Each example brings its network, its defaults and what it does at the end.

use std::path::PathBuf;
use std::process::ExitCode;

use striate::ndarray::Ix2;
use striate::prelude::*;
use striate::train::{evaluate, Evaluation, Trainer};

/// The flags, with the example's defaults where not given.
pub struct Options {
    pub data: Option<PathBuf>,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
    pub threads: usize,
    pub out: Option<PathBuf>,
    /// `--augment digits`: train on `Augmentation::digits(seed)` of each batch.
    pub augment: bool,
}

/// An example's defaults: epochs, learning rate, where the weights go (`None`: not saved
/// unless `--out` is given), and every how many epochs the learning rate halves.
pub struct Defaults {
    pub epochs: usize,
    pub lr: f32,
    pub out: Option<&'static str>,
    pub halve_every: usize,
}

/// The command line, or `Err("")` for `--help`, or the message of a bad flag.
fn parse_args(d: &Defaults) -> Result<Options, String> {
    let mut o = Options {
        data: None,
        epochs: d.epochs,
        batch: 32,
        lr: d.lr,
        seed: 1,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        out: d.out.map(PathBuf::from),
        augment: false,
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
            "--out" => o.out = Some(PathBuf::from(&value)),
            "--augment" => match value.as_str() {
                "digits" => o.augment = true,
                "none" => o.augment = false,
                _ => return Err(bad("`digits` or `none`")),
            },
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(o)
}

/// Sets the threads, loads the digits and prints what was loaded and the network's summary.
pub fn load<N: Network>(o: &Options) -> striate::Result<Mnist> {
    striate::set_threads(o.threads)?;
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
    println!("{}\n", N::summary());
    Ok(mnist)
}

/// Trains `net` with SGD (momentum 0.9, the learning rate halved every `halve_every` epochs),
/// evaluating on the test digits after each epoch; returns the final evaluation and the
/// seconds spent training.
pub fn train<N: Network<OutputDim = Ix2>>(
    net: &mut N,
    mnist: &Mnist,
    o: &Options,
    halve_every: usize,
) -> striate::Result<(Evaluation, f64)> {
    let opt = Sgd::new(o.lr).momentum(0.9);
    let mut trainer = Trainer::new(net, opt)
        .schedule(LrSchedule::Step {
            step_size: halve_every,
            gamma: 0.5,
        })
        .shuffle_seed(o.seed);
    if o.augment {
        trainer = trainer.augment(Augmentation::digits(o.seed));
    }
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
    let test = evaluate(net, &mnist.test, 256)?;
    println!(
        "\nfinal test accuracy: {:.2}% ({} of {}), {:.1} s of training",
        100.0 * test.accuracy(),
        test.correct,
        test.total,
        train_seconds
    );
    Ok((test, train_seconds))
}

/// Parses the flags and runs `run`: exit code 0, 2 for a bad flag (with `usage`), 1 when
/// `run` fails.
pub fn main(
    usage: &str,
    defaults: &Defaults,
    run: impl FnOnce(&Options) -> striate::Result<()>,
) -> ExitCode {
    let options = match parse_args(defaults) {
        Ok(o) => o,
        Err(msg) if msg.is_empty() => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n\n{usage}");
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
