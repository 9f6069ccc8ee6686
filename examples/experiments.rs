//! The lecture's six claims about training, measured on the built-in digits with small
//! networks over several seeds: activations, batch normalization, dropout, data
//! augmentation, the learning rate and the mini-batch size.
//!
//! ```text
//! cargo run --release --example experiments -- [--seeds N] [--out DIR] [--only CLAIM]
//!                                              [--threads N] [--quick]
//! ```
//!
//! Each claim prints its settings and a Markdown table of the mean ± standard deviation
//! (least–greatest) over the seeds, and writes its curves, averaged over the seeds, as a
//! PNG into the output folder; `results.md` there collects every table. The default run
//! takes about a quarter of an hour on two cores; `--quick` runs a much smaller version of
//! each experiment, to check that they all work.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use striate::prelude::*;

#[path = "experiments/claims.rs"]
mod claims;
#[path = "experiments/report.rs"]
mod report;
#[path = "experiments/runs.rs"]
mod runs;

const USAGE: &str =
    "usage: experiments [--seeds N] [--out DIR] [--only CLAIM] [--threads N] [--quick]

  --seeds N     seeds 1..=N for every setting (default 3)
  --out DIR     where the PNG curves and results.md go (default experiments)
  --only CLAIM  one claim: activations, batch-norm, dropout, augmentation, learning-rate,
                batch-size, or its number 1-6 (default: all six)
  --threads N   threads to split each batch over (default 2)
  --quick       a much smaller version of every experiment, for a smoke test";

/// The claims, in order: their names for `--only` and what measures them.
const CLAIMS: [(&str, Claim); 6] = [
    ("activations", claims::activations),
    ("batch-norm", claims::batch_norm),
    ("dropout", claims::dropout),
    ("augmentation", claims::augmentation),
    ("learning-rate", claims::learning_rate),
    ("batch-size", claims::batch_size),
];

type Claim = fn(&Settings, &Mnist, &mut report::Report) -> striate::Result<()>;

/// The flags.
pub struct Settings {
    seeds: u64,
    out: PathBuf,
    only: Option<usize>,
    threads: usize,
    quick: bool,
}

impl Settings {
    /// `quick` under `--quick`, `full` otherwise.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// The seeds of every setting.
    pub fn seeds(&self) -> impl Iterator<Item = u64> {
        1..=self.seeds
    }

    /// The training digits of the small-training-set claims (dropout and augmentation).
    pub fn small_train(&self) -> usize {
        self.pick(200, 1_000)
    }

    /// The settings' line on the seeds.
    pub fn seed_line(&self) -> String {
        format!(
            "seeds 1 to {} (initial weights, shuffles, dropout and augmentation); mean ± standard deviation (least–greatest) over them",
            self.seeds
        )
    }
}

/// The command line, or `Err("")` for `--help`, or the message of a bad flag.
fn parse_args() -> Result<Settings, String> {
    let mut s = Settings {
        seeds: 3,
        out: PathBuf::from("experiments"),
        only: None,
        threads: 2,
        quick: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--help" | "-h" => return Err(String::new()),
            "--quick" => {
                s.quick = true;
                continue;
            }
            _ => {}
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag}: expected {what}, found `{value}`");
        let positive = || match value.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad("a whole number above 0")),
        };
        match flag.as_str() {
            "--seeds" => s.seeds = positive()? as u64,
            "--threads" => s.threads = positive()?,
            "--out" => s.out = PathBuf::from(&value),
            "--only" => {
                let by_number = value.parse::<usize>().ok().filter(|n| (1..=6).contains(n));
                let by_name = CLAIMS.iter().position(|(name, _)| *name == value);
                let claim = by_number.map(|n| n - 1).or(by_name);
                s.only = Some(claim.ok_or_else(|| bad("a claim's name or number 1-6"))?);
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(s)
}

fn run(s: &Settings) -> striate::Result<()> {
    let start = Instant::now();
    striate::set_threads(s.threads)?;
    let mnist = Mnist::builtin();
    let mut report = report::Report::new(&s.out)?;
    let mut flags = String::new();
    if s.quick {
        flags.push_str(" --quick");
    }
    if let Some(i) = s.only {
        flags.push_str(&format!(" --only {}", CLAIMS[i].0));
    }
    if !flags.is_empty() {
        flags.insert_str(0, " --");
    }
    let preamble = format!(
        "# Experiments\n\n`cargo run --release --example experiments{flags}` on {} training and {} test digits (built in), {} thread(s), seeds 1 to {}.",
        mnist.train.len(),
        mnist.test.len(),
        s.threads,
        s.seeds,
    );
    println!("{preamble}");
    for (i, (name, claim)) in CLAIMS.iter().enumerate() {
        if s.only.is_some_and(|only| only != i) {
            continue;
        }
        let claim_start = Instant::now();
        claim(s, &mnist, &mut report)?;
        report.note(&format!(
            "({name}: {:.0} s)",
            claim_start.elapsed().as_secs_f64()
        ));
    }
    report.note(&format!("Total: {:.0} s.", start.elapsed().as_secs_f64()));
    let path = report.finish(&preamble)?;
    println!("tables written to {}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    let settings = match parse_args() {
        Ok(s) => s,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
