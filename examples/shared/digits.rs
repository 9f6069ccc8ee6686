//! What the examples that train on MNIST digits share (`lenet`, `resnet_digits`): their
//! flags, loading the digits, the epoch loop with a test evaluation after each epoch, and the
//! exit code. Each example brings its network, its defaults and what it does at the end.

use std::path::PathBuf;
use std::process::ExitCode;

use striate::data::augment::{Rotate, Scale, Translate};
use striate::ndarray::Ix2;
use striate::optim::Plateau;
use striate::prelude::*;
use striate::train::{evaluate, Evaluation, Trainer};

/// The flags, with the example's defaults where not given.
pub struct Options {
    pub data: Option<PathBuf>,
    pub epochs: usize,
    pub batch: usize,
    /// `None`: the example's rate for SGD, 1e-3 for the others.
    pub lr: Option<f32>,
    pub optimizer: OptimizerKind,
    pub schedule: ScheduleKind,
    pub seed: u64,
    pub threads: usize,
    pub out: Option<PathBuf>,
    /// `--augment digits|affine`: train on `Augmentation::digits(seed)` of each batch, or on
    /// its affine steps alone (translation, rotation, scaling; one resampling, no elastic
    /// field, no intensity), the cheaper pipeline BENCHMARKS.md compares.
    pub augment: Option<AugmentKind>,
    /// `--checkpoint DIR`: a training checkpoint there after every epoch.
    pub checkpoint: Option<PathBuf>,
    /// `--resume`: go on from the newest checkpoint of `--checkpoint DIR`, if any.
    pub resume: bool,
    /// `--log FILE`: the metrics log (CSV, or JSON lines for `.jsonl`).
    pub log: Option<PathBuf>,
    /// `--distributed`: this process is one rank of an MPI job (feature `mpi`).
    pub distributed: bool,
    /// The MPI job, made by `main` before `run` and dropped after it.
    #[cfg(feature = "mpi")]
    pub dist: Option<striate::distributed::Distributed>,
}

impl Options {
    /// Whether this process prints: rank 0, or any process when not distributed.
    pub fn is_root(&self) -> bool {
        #[cfg(feature = "mpi")]
        if let Some(dist) = &self.dist {
            return dist.is_root();
        }
        true
    }
}

/// `--optimizer`.
/// The augmentation pipeline of `--augment`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AugmentKind {
    /// `Augmentation::digits`: every step the lecture names that suits digits.
    Digits,
    /// Its affine steps alone: translation, rotation and scaling.
    Affine,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    Sgd,
    Adam,
    AdamW,
    RmsProp,
}

/// `--schedule`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// Halved every `halve_every` epochs (the default).
    Step,
    Cosine,
    OneCycle,
    Plateau,
    WarmupCosine,
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
        lr: None,
        optimizer: OptimizerKind::Sgd,
        schedule: ScheduleKind::Step,
        seed: 1,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        out: d.out.map(PathBuf::from),
        augment: None,
        checkpoint: None,
        resume: false,
        log: None,
        distributed: false,
        #[cfg(feature = "mpi")]
        dist: None,
    };
    let mut threads_given = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        if flag == "--resume" {
            o.resume = true;
            continue;
        }
        if flag == "--distributed" {
            if cfg!(not(feature = "mpi")) {
                return Err(
                    "--distributed needs MPI: build with `--features mpi` and run \
                            under mpirun (see the book's distributed page)"
                        .into(),
                );
            }
            o.distributed = true;
            continue;
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
                Ok(lr) if lr > 0.0 && lr.is_finite() => o.lr = Some(lr),
                _ => return Err(bad("a number above 0")),
            },
            "--seed" => o.seed = value.parse().map_err(|_| bad("a whole number"))?,
            "--threads" => match value.parse() {
                Ok(t) if t > 0 => {
                    o.threads = t;
                    threads_given = true;
                }
                _ => return Err(bad("a whole number above 0")),
            },
            "--out" => o.out = Some(PathBuf::from(&value)),
            "--augment" => match value.as_str() {
                "digits" => o.augment = Some(AugmentKind::Digits),
                "affine" => o.augment = Some(AugmentKind::Affine),
                "none" => o.augment = None,
                _ => return Err(bad("`digits`, `affine` or `none`")),
            },
            "--optimizer" => {
                o.optimizer = match value.as_str() {
                    "sgd" => OptimizerKind::Sgd,
                    "adam" => OptimizerKind::Adam,
                    "adamw" => OptimizerKind::AdamW,
                    "rmsprop" => OptimizerKind::RmsProp,
                    _ => return Err(bad("one of `sgd`, `adam`, `adamw`, `rmsprop`")),
                }
            }
            "--schedule" => {
                o.schedule = match value.as_str() {
                    "step" => ScheduleKind::Step,
                    "cosine" => ScheduleKind::Cosine,
                    "onecycle" => ScheduleKind::OneCycle,
                    "plateau" => ScheduleKind::Plateau,
                    "warmup-cosine" => ScheduleKind::WarmupCosine,
                    _ => {
                        return Err(bad(
                            "one of `step`, `cosine`, `onecycle`, `plateau`, `warmup-cosine`",
                        ))
                    }
                }
            }
            "--checkpoint" => o.checkpoint = Some(PathBuf::from(&value)),
            "--log" => o.log = Some(PathBuf::from(&value)),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if o.resume && o.checkpoint.is_none() {
        return Err("--resume needs --checkpoint DIR, the directory to resume from".into());
    }
    if o.lr.is_none() && o.optimizer == OptimizerKind::Sgd {
        o.lr = Some(d.lr);
    }
    if o.distributed && !threads_given {
        // One thread per process: mpirun starts a process per core.
        o.threads = 1;
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
    if o.is_root() {
        println!(
            "{} training and {} test digits ({source}), {} thread(s){}",
            mnist.train.len(),
            mnist.test.len(),
            o.threads,
            ranks(o)
        );
        println!("{}\n", N::summary());
    }
    Ok(mnist)
}

/// `" per process, N processes (batch B each)"` for a distributed run.
fn ranks(o: &Options) -> String {
    #[cfg(feature = "mpi")]
    if let Some(dist) = &o.dist {
        return format!(
            " per process, {} processes over MPI (batch {} each, {} a step)",
            dist.size(),
            o.batch,
            o.batch * dist.size()
        );
    }
    let _ = o;
    String::new()
}

/// Trains `net` with the optimizer and schedule of the flags (by default SGD with momentum
/// 0.9, the learning rate halved every `halve_every` epochs), evaluating on the test digits
/// after each epoch, writing checkpoints and the metrics log if asked, resuming if asked;
/// returns the final evaluation and the seconds spent training.
pub fn train<N: Network<OutputDim = Ix2>>(
    net: &mut N,
    mnist: &Mnist,
    o: &Options,
    halve_every: usize,
) -> striate::Result<(Evaluation, f64)> {
    let lr = o.lr.unwrap_or(1e-3);
    match o.optimizer {
        OptimizerKind::Sgd => train_with(net, mnist, o, halve_every, Sgd::new(lr).momentum(0.9)),
        OptimizerKind::Adam => train_with(net, mnist, o, halve_every, Adam::new(lr)),
        OptimizerKind::AdamW => train_with(net, mnist, o, halve_every, AdamW::new(lr)),
        OptimizerKind::RmsProp => train_with(net, mnist, o, halve_every, RmsProp::new(lr)),
    }
}

fn train_with<N: Network<OutputDim = Ix2>, O: Optimizer>(
    net: &mut N,
    mnist: &Mnist,
    o: &Options,
    halve_every: usize,
    opt: O,
) -> striate::Result<(Evaluation, f64)> {
    let steps_per_epoch = mnist.train.len().div_ceil(o.batch);
    let schedule = match o.schedule {
        ScheduleKind::Step => LrSchedule::Step {
            step_size: halve_every,
            gamma: 0.5,
        },
        ScheduleKind::Cosine => LrSchedule::cosine(o.epochs, 0.0),
        ScheduleKind::OneCycle => LrSchedule::one_cycle(o.epochs.max(1) * steps_per_epoch),
        ScheduleKind::Plateau => LrSchedule::Plateau(Plateau {
            patience: 1,
            factor: 0.5,
            ..Plateau::default()
        }),
        ScheduleKind::WarmupCosine => LrSchedule::linear(0.1, 1.0, 1).then(
            1,
            LrSchedule::cosine(o.epochs.saturating_sub(1).max(1), 0.0),
        ),
    };
    let mut trainer = Trainer::new(net, opt)
        .schedule(schedule)
        .shuffle_seed(o.seed);
    #[cfg(feature = "mpi")]
    if let Some(dist) = &o.dist {
        // Rank 0's weights to every rank; each rank then trains on its shard of every epoch.
        trainer = trainer.distributed(dist)?;
    }
    if o.schedule == ScheduleKind::OneCycle {
        trainer = trainer.schedule_per_step();
    }
    match o.augment {
        Some(AugmentKind::Digits) => trainer = trainer.augment(Augmentation::digits(o.seed)),
        Some(AugmentKind::Affine) => {
            let affine = Augmentation::new(o.seed)
                .then(Translate::default())
                .then(Rotate::default())
                .then(Scale::default());
            trainer = trainer.augment(affine);
        }
        None => {}
    }
    let mut fit = Fit::until(o.epochs)
        .batch(o.batch)
        .validation(&mnist.test)
        .summary(false)
        .callback(PrintEpoch {
            epochs: o.epochs,
            show: o.is_root(),
        });
    if let Some(dir) = &o.checkpoint {
        if o.resume && Checkpoints::latest(dir)?.is_some() {
            let from = trainer.resume(dir)?;
            o.is_root().then(|| {
                println!(
                    "resumed from {} ({} epochs, {} steps done)",
                    from.path.display(),
                    from.epochs_done,
                    from.steps_done
                )
            });
        }
        fit = fit.checkpoints(Checkpoints::new(dir));
    }
    if let Some(log) = &o.log {
        fit = fit.log(log);
    }
    let history = trainer.fit(&mnist.train, fit)?;
    let train_seconds: f64 = history.epochs().iter().map(|e| e.train.seconds).sum();
    let test = evaluate(trainer.net(), &mnist.test, 256)?;
    if o.is_root() {
        println!(
            "\nfinal test accuracy: {:.2}% ({} of {}), {:.1} s of training",
            100.0 * test.accuracy(),
            test.correct,
            test.total,
            train_seconds
        );
    }
    Ok((test, train_seconds))
}

/// Prints each epoch's line: rate, training loss and accuracy, test loss and accuracy, speed.
struct PrintEpoch {
    epochs: usize,
    /// False on the ranks other than 0 of a distributed run.
    show: bool,
}

impl Callback for PrintEpoch {
    fn on_epoch_end(&mut self, end: &EpochEnd<'_>) -> striate::Result<Control> {
        if !self.show {
            return Ok(Control::Continue);
        }
        let (r, test) = (&end.record().train, end.record().validation.as_ref());
        let test = test.expect("fit evaluates the test digits");
        println!(
            "epoch {:>2}/{}  lr {:.4}  loss {:.4}  train acc {:.2}%  test loss {:.4}  test acc {:.2}%  {:.0} img/s",
            r.epoch + 1,
            self.epochs,
            r.lr,
            r.loss,
            100.0 * r.accuracy,
            test.loss,
            100.0 * test.accuracy(),
            r.images_per_sec
        );
        Ok(Control::Continue)
    }
}

/// The flags of training that every digits example takes, shown after its own `usage`.
const TRAINING_FLAGS: &str =
    "  --optimizer O SGD with momentum 0.9 (`sgd`, the default), `adam`, `adamw` or `rmsprop`
                (these three at --lr 1e-3 unless given)
  --schedule S  the learning rate's schedule: `step` (the default: halved as above),
                `cosine` (to 0 over the epochs), `onecycle` (per step), `plateau` (halved
                when the test loss stops falling for an epoch), `warmup-cosine` (one epoch
                of linear warm-up from a tenth, then cosine)
  --checkpoint DIR  a training checkpoint after every epoch in DIR (the last 3 kept)
  --resume      go on from the newest checkpoint in --checkpoint DIR, if there is one, to
                --epochs epochs in all; the weights end as those of a run never stopped
  --log FILE    a metrics log, one row per epoch: CSV for FILE.csv, JSON lines for .jsonl
  --distributed this process is one rank of an MPI job (build with --features mpi, run as
                `mpirun -np N cargo run --release --features mpi --example lenet --
                --distributed`): rank 0's weights go to every rank, each trains on its
                shard of every epoch with --batch samples a step, the gradients are
                averaged, and only rank 0 prints and writes; one thread per process
                unless --threads";

/// Parses the flags and runs `run`: exit code 0, 2 for a bad flag (with `usage`), 1 when
/// `run` fails.
pub fn main(
    usage: &str,
    defaults: &Defaults,
    run: impl FnOnce(&Options) -> striate::Result<()>,
) -> ExitCode {
    #[allow(unused_mut)]
    let mut options = match parse_args(defaults) {
        Ok(o) => o,
        Err(msg) if msg.is_empty() => {
            println!("{usage}\n{TRAINING_FLAGS}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n\n{usage}\n{TRAINING_FLAGS}");
            return ExitCode::from(2);
        }
    };
    #[cfg(feature = "mpi")]
    if options.distributed {
        match striate::distributed::Distributed::init() {
            Ok(dist) => options.dist = Some(dist),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
