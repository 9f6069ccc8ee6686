//! The adding problem of Hochreiter and Schmidhuber (1997), the classic test of long-term
//! memory: each step carries a random number in [0, 1] and a marker, exactly two steps are
//! marked (one in each half of the sequence), and the target, read after the last step, is
//! the sum of the two marked numbers. Trained with the mean squared error.
//!
//! Always predicting 1.0 (the mean of the sum) scores the variance of the sum, 2/12 ≈ 0.167;
//! a network that found the two numbers scores far below it. Each of `rnn`, `lstm` and `gru`
//! (32 hidden units, then `last` and `linear(1)`) trains at each sequence length on fresh
//! batches, and is tested on 1,000 sequences it never saw.
//!
//! ```text
//! cargo run --release --example adding_problem -- --quick   # T = 10, 25, 50, 1,500 steps
//! cargo run --release --example adding_problem -- --full    # T = 10, 25, 50, 100, 3,000 steps
//! ```
//!
//! `--lengths 10,200`, `--steps N`, `--lr X` and `--cells rnn,gru` choose other runs (the
//! lengths declared are 10, 25, 50, 100 and 200). It prints one line per network and length,
//! and then the table of test errors that docs/src/recurrent.md and the README show.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use striate::ndarray::{Array3, Ix2, Ix3};
use striate::prelude::*;

/// Declares, for one sequence length, one network of each cell.
macro_rules! networks {
    ($($t:literal => $rnn:ident, $lstm:ident, $gru:ident;)*) => {
        $(
            network! {
                /// A plain tanh RNN reading the sequence, its last state into one output.
                struct $rnn { input: [$t, 2], rec: rnn(32), last, fc: linear(1) }
            }
            network! {
                /// The same with an LSTM.
                struct $lstm { input: [$t, 2], rec: lstm(32), last, fc: linear(1) }
            }
            network! {
                /// The same with a GRU.
                struct $gru { input: [$t, 2], rec: gru(32), last, fc: linear(1) }
            }
        )*
    };
}

networks! {
    10 => Rnn10, Lstm10, Gru10;
    25 => Rnn25, Lstm25, Gru25;
    50 => Rnn50, Lstm50, Gru50;
    100 => Rnn100, Lstm100, Gru100;
    200 => Rnn200, Lstm200, Gru200;
}

/// The error of always predicting the mean sum, 1.0: the variance of a sum of two U(0, 1).
const BASELINE: f32 = 2.0 / 12.0;

/// A test error below this counts as solved.
const SOLVED: f32 = 0.01;

/// `n` sequences of `t` steps `[value, marker]`, and their targets `[n, 1]`.
fn batch(rng: &mut impl Rng, n: usize, t: usize) -> (Array3<f32>, Array2<f32>) {
    let mut x = Array3::<f32>::zeros((n, t, 2));
    let mut y = Array2::<f32>::zeros((n, 1));
    for s in 0..n {
        for k in 0..t {
            x[[s, k, 0]] = rng.random::<f32>();
        }
        // One marker in each half, as in Hochreiter and Schmidhuber's version with a target
        // that depends on both ends of the sequence.
        let first = rng.random_range(0..t / 2);
        let second = rng.random_range(t / 2..t);
        for k in [first, second] {
            x[[s, k, 1]] = 1.0;
            y[[s, 0]] += x[[s, k, 0]];
        }
    }
    (x, y)
}

/// The mean squared error of `net` on a test set.
fn test_error<N: Network<InputDim = Ix3, OutputDim = Ix2>>(
    net: &N,
    x: &Array3<f32>,
    y: &Array2<f32>,
) -> striate::Result<f32> {
    let out = net.forward(x.view())?;
    Ok((&out - y).mapv(|d| d * d).mean().unwrap_or(f32::NAN))
}

/// One training run: `steps` Adam steps (learning rate `lr`) on fresh batches of 64; the test
/// error after it.
fn train<N: Network<InputDim = Ix3, OutputDim = Ix2>>(
    t: usize,
    steps: usize,
    lr: f32,
    seed: u64,
) -> striate::Result<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut test_rng = rand::rngs::StdRng::seed_from_u64(1_000 + t as u64);
    let (test_x, test_y) = batch(&mut test_rng, 1_000, t);
    let mut net = N::init(seed);
    let mut trainer = Trainer::new(&mut net, Adam::new(lr)).clip_grad_norm(1.0);
    for _ in 0..steps {
        let (x, y) = batch(&mut rng, 64, t);
        trainer.step_to(x.view(), y.view(), Loss::Mse)?;
    }
    test_error(trainer.net(), &test_x, &test_y)
}

/// The value after `--name` on the command line, parsed.
fn option<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1)?.parse().ok()
}

fn main() -> striate::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--full");
    let (mut lengths, mut steps): (Vec<usize>, usize) = if full {
        (vec![10, 25, 50, 100], 3_000)
    } else {
        (vec![10, 25, 50], 1_500)
    };
    if let Some(list) = option::<String>(&args, "--lengths") {
        lengths = list.split(',').filter_map(|t| t.parse().ok()).collect();
    }
    steps = option(&args, "--steps").unwrap_or(steps);
    let lr: f32 = option(&args, "--lr").unwrap_or(3e-3);
    let cells: Vec<String> = option::<String>(&args, "--cells")
        .unwrap_or_else(|| "rnn,lstm,gru".into())
        .split(',')
        .filter(|c| ["rnn", "lstm", "gru"].contains(c))
        .map(str::to_string)
        .collect();
    println!(
        "adding problem: {steps} steps of batch 64 per run, Adam at {lr}; baseline MSE {BASELINE:.3}, solved below {SOLVED}"
    );
    let mut table = Vec::new();
    for &t in &lengths {
        if ![10, 25, 50, 100, 200].contains(&t) {
            println!("T = {t} skipped: the lengths declared are 10, 25, 50, 100 and 200");
            continue;
        }
        let mut row = Vec::new();
        for cell in &cells {
            let start = Instant::now();
            let run = match (cell.as_str(), t) {
                ("rnn", 10) => train::<Rnn10>,
                ("lstm", 10) => train::<Lstm10>,
                ("gru", 10) => train::<Gru10>,
                ("rnn", 25) => train::<Rnn25>,
                ("lstm", 25) => train::<Lstm25>,
                ("gru", 25) => train::<Gru25>,
                ("rnn", 50) => train::<Rnn50>,
                ("lstm", 50) => train::<Lstm50>,
                ("gru", 50) => train::<Gru50>,
                ("rnn", 100) => train::<Rnn100>,
                ("lstm", 100) => train::<Lstm100>,
                ("gru", 100) => train::<Gru100>,
                ("rnn", _) => train::<Rnn200>,
                ("lstm", _) => train::<Lstm200>,
                _ => train::<Gru200>,
            };
            let mse = run(t, steps, lr, 7)?;
            let verdict = if mse < SOLVED {
                "learns"
            } else if mse > 0.5 * BASELINE {
                "fails"
            } else {
                "partly"
            };
            println!(
                "T = {t:>3}, {cell:>4}: test MSE {mse:.4} ({verdict}), {:.1} s",
                start.elapsed().as_secs_f64()
            );
            row.push(format!("{mse:.4} ({verdict})"));
        }
        table.push((t, row));
    }
    println!(
        "\n| T | {} |\n| --- |{}",
        cells.join(" | "),
        " --- |".repeat(cells.len())
    );
    for (t, row) in table {
        println!("| {t} | {} |", row.join(" | "));
    }
    Ok(())
}
