//! Transfer learning as the lecture describes it: LeNet-5 pretrained on the digits 0-4, its
//! last layer cut off and replaced by a fresh five-way head for the digits 5-9, fine-tuned on
//! a few images per class with the body frozen, with only its two convolutions frozen, and with
//! nothing frozen, beside the same network trained from scratch on the same images.
//!
//!     cargo run --release --example transfer [-- --seeds N --per-class A,B --steps N --threads N]
//!
//! Prints one row per training set size and set-up: the test accuracy on the digits 5-9 (mean
//! and spread over the seeds, each seed drawing its own training images and head), and the
//! milliseconds of one training step (body frozen: its weight gradients are skipped).
//! The book's transfer-learning page shows a run.

use std::process::ExitCode;
use std::time::Instant;

use striate::data::Dataset;
use striate::prelude::*;
use striate::train::evaluate;

network! {
    /// LeNet-5 without its last layer: what is transferred.
    pub struct LeNetBody {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2), relu, max_pool(2),
        conv2: conv2d(16, kernel = 5), relu, max_pool(2),
        flatten,
        fc1: linear(120), relu,
        fc2: linear(84), relu,
    }
}

network! {
    /// LeNet-5 (as examples/lenet.rs) with a five-way output: pretrained on the digits 0-4.
    pub struct LeNet5 {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2), relu, max_pool(2),
        conv2: conv2d(16, kernel = 5), relu, max_pool(2),
        flatten,
        fc1: linear(120), relu,
        fc2: linear(84), relu,
        fc3: linear(5),
    }
}

network! {
    /// The pretrained body under a fresh head, for the digits 5-9.
    pub struct Tuned {
        input: [1, 28, 28],
        body: LeNetBody -> [84],
        head: linear(5),
    }
}

/// What a fine-tuning run starts from and what it trains.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// The pretrained body, frozen: only the head learns.
    BodyFrozen,
    /// The pretrained body with its two convolutions frozen.
    ConvsFrozen,
    /// The pretrained body, everything learns.
    NothingFrozen,
    /// No pretrained weights: the same network from its initialisation.
    Scratch,
}

impl Setup {
    const ALL: [Setup; 4] = [
        Setup::BodyFrozen,
        Setup::ConvsFrozen,
        Setup::NothingFrozen,
        Setup::Scratch,
    ];

    fn name(self) -> &'static str {
        match self {
            Setup::BodyFrozen => "pretrained, body frozen",
            Setup::ConvsFrozen => "pretrained, conv1-2 frozen",
            Setup::NothingFrozen => "pretrained, nothing frozen",
            Setup::Scratch => "from scratch",
        }
    }
}

struct Options {
    seeds: u64,
    per_class: Vec<usize>,
    steps: usize,
    threads: usize,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        seeds: 10,
        per_class: vec![10, 50],
        steps: 300,
        threads: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--seeds" => o.seeds = number(value()?)? as u64,
            "--steps" => o.steps = number(value()?)?,
            "--threads" => o.threads = number(value()?)?,
            "--per-class" => {
                o.per_class = value()?
                    .split(',')
                    .map(|v| number(v.to_string()))
                    .collect::<Result<_, _>>()?
            }
            "--help" | "-h" => {
                return Err(
                    "usage: transfer [--seeds N] [--per-class A,B,..] [--steps N] [--threads N]"
                        .into(),
                )
            }
            other => return Err(format!("unknown flag {other}; see --help")),
        }
    }
    if o.seeds == 0 || o.steps == 0 || o.per_class.contains(&0) {
        return Err("--seeds, --steps and --per-class must be at least 1".into());
    }
    Ok(o)
}

/// The samples of `data` whose labels are in `classes`, relabelled `0..`, at most `per_class`
/// of each (drawn with `seed`), or all of them.
fn digits(
    data: &Dataset,
    classes: std::ops::Range<usize>,
    per_class: Option<usize>,
    seed: u64,
) -> striate::Result<Dataset> {
    let order = striate::data::shuffled_indices(data.len(), seed);
    let mut taken = vec![0usize; classes.len()];
    let mut indices = Vec::new();
    for i in order {
        let label = data.labels()[i];
        if classes.contains(&label) && per_class.is_none_or(|k| taken[label - classes.start] < k) {
            taken[label - classes.start] += 1;
            indices.push(i);
        }
    }
    indices.sort_unstable();
    let subset = data.subset(&indices)?;
    let labels: Vec<usize> = subset.labels().iter().map(|l| l - classes.start).collect();
    Dataset::from_arrays(subset.images().to_owned(), labels, classes.len())
}

/// Trains `net` for `steps` steps of batches of 10 (SGD, momentum 0.9); returns the mean
/// milliseconds a step took.
fn train<N: Network<InputDim = striate::ndarray::Ix4, OutputDim = striate::ndarray::Ix2>>(
    net: &mut N,
    data: &Dataset,
    steps: usize,
    lr: f32,
    seed: u64,
) -> striate::Result<f64> {
    let batch = 10.min(data.len());
    let per_epoch = data.len().div_ceil(batch);
    let mut trainer = Trainer::new(net, Sgd::new(lr).momentum(0.9));
    let start = Instant::now();
    let mut done = 0;
    let mut epoch = 0;
    while done < steps {
        let order = striate::data::shuffled_indices(data.len(), seed + epoch as u64);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for chunk in order.chunks(batch).take(steps - done) {
            data.gather(chunk, &mut x, &mut y)?;
            let images = ArrayView4::from_shape((y.len(), 1, 28, 28), &x[..]).expect("gathered");
            trainer.step(images, &y)?;
        }
        done += per_epoch.min(steps - done);
        epoch += 1;
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / steps as f64)
}

fn mean_and_spread(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn run(o: &Options) -> striate::Result<()> {
    striate::set_threads(o.threads)?;
    let mnist = Mnist::builtin();
    let (pre_train, pre_test) = (
        digits(&mnist.train, 0..5, None, 0)?,
        digits(&mnist.test, 0..5, None, 0)?,
    );
    let new_test = digits(&mnist.test, 5..10, None, 0)?;
    let start = Instant::now();
    let mut lenet = LeNet5::init(0);
    train(
        &mut lenet,
        &pre_train,
        3 * pre_train.len().div_ceil(10),
        0.01,
        0,
    )?;
    let accuracy = evaluate(&lenet, &pre_test, 500)?.accuracy();
    println!(
        "pretrained LeNet-5 on the {} training digits 0-4 for 3 epochs in {:.1} s: {:.1}% on their {} test digits",
        pre_train.len(),
        start.elapsed().as_secs_f64(),
        100.0 * accuracy,
        pre_test.len()
    );
    let dir = std::env::temp_dir().join(format!("striate-transfer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| striate::Error::Io {
        path: dir.clone(),
        source: e,
    })?;
    let pretrained = dir.join("lenet5-digits-0-4.safetensors");
    lenet.save(&pretrained)?;

    println!(
        "\nfine-tuned on the digits 5-9 for {} steps of 10 images, tested on their {} test digits; {} seeds\n",
        o.steps,
        new_test.len(),
        o.seeds
    );
    println!("| images per class | set-up | test accuracy (mean ± sd) | ms per step |");
    println!("| --- | --- | --- | --- |");
    for &k in &o.per_class {
        for setup in Setup::ALL {
            let (mut accuracies, mut ms) = (Vec::new(), Vec::new());
            for seed in 0..o.seeds {
                let data = digits(&mnist.train, 5..10, Some(k), 100 + seed)?;
                let mut net = Tuned::init(1000 + seed);
                if setup != Setup::Scratch {
                    let report = net.load_pretrained::<LeNet5>(&pretrained, "body")?;
                    debug_assert_eq!(report.unused, ["fc3.bias", "fc3.weight"]);
                }
                match setup {
                    Setup::BodyFrozen => {
                        net.freeze("body")?;
                    }
                    Setup::ConvsFrozen => net.freeze_first(2)?,
                    Setup::NothingFrozen | Setup::Scratch => {}
                }
                ms.push(train(&mut net, &data, o.steps, 0.01, seed)?);
                accuracies.push(100.0 * f64::from(evaluate(&net, &new_test, 500)?.accuracy()));
            }
            let (acc, sd) = mean_and_spread(&accuracies);
            let (step, step_sd) = mean_and_spread(&ms);
            println!(
                "| {k} | {} | {acc:.1}% ± {sd:.1} | {step:.2} ± {step_sd:.2} |",
                setup.name()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
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
            eprintln!("transfer: {e}");
            ExitCode::FAILURE
        }
    }
}
