//! Data-parallel scaling (feature `mpi`): training steps of LeNet-5 or ResNet-20 with a global
//! batch of 64, on one process with its threads, or on `N` MPI ranks of `64 / N` samples each.
//!
//! ```text
//! cargo build --release --features mpi --example scaling
//! target/release/examples/scaling lenet --threads 2                      # 1 process x 2 threads
//! mpirun -np 2 target/release/examples/scaling lenet --threads 1 --distributed   # 2 x 1
//! ```
//!
//! Modes `lenet` and `resnet` (the bench protocol's `train` and `resnet` networks, random
//! images, SGD at 0.01 with momentum 0.9, `Trainer::step`); `summary` prints the parameter
//! counts and bytes all-reduced per step of LeNet-5, ResNet-20 and AlexNet. Rank 0 prints one
//! `RESULT {json}` line: the median step's milliseconds, images per second of the whole job,
//! and its heap allocations per timed step.

use std::sync::atomic::Ordering;
use std::time::Instant;

use striate::distributed::Distributed;
use striate::ndarray::{Array4, Ix2, Ix4};
use striate::prelude::*;

#[allow(dead_code)]
#[path = "alexnet.rs"]
mod alexnet;
#[allow(dead_code)]
#[path = "lenet.rs"]
mod lenet;
#[allow(dead_code)]
#[path = "resnet.rs"]
mod resnet;

/// The system allocator, counting allocations (to show a distributed step allocates nothing).
#[path = "../tests/common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::ALLOCATIONS;

/// The job's global batch.
const GLOBAL_BATCH: usize = 64;

struct Options {
    mode: String,
    threads: usize,
    steps: usize,
    distributed: bool,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        mode: String::new(),
        threads: 1,
        steps: 0,
        distributed: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--distributed" => o.distributed = true,
            "--threads" | "--steps" => {
                let v = args.next().ok_or(format!("{a} needs a value"))?;
                let v: usize = v
                    .parse()
                    .map_err(|_| format!("{a}: expected a whole number, found {v}"))?;
                if a == "--threads" {
                    o.threads = v.max(1);
                } else {
                    o.steps = v;
                }
            }
            m if !m.starts_with("--") => o.mode = m.to_string(),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(o)
}

/// Times `steps` training steps of `net` after a warm-up; rank 0 prints the result.
fn steps<N: Network<InputDim = Ix4, OutputDim = Ix2>>(
    mut net: N,
    o: &Options,
    dist: Option<&Distributed>,
    default_steps: usize,
) -> striate::Result<()> {
    let ranks = dist.map_or(1, Distributed::size);
    let rank = dist.map_or(0, Distributed::rank);
    let batch = GLOBAL_BATCH / ranks;
    let [c, h, w] = N::INPUT_SHAPE else {
        unreachable!("an image network")
    };
    // Each rank its own images, from a generator seeded by the rank.
    let mut state = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(rank as u64 + 1);
    let x = Array4::from_shape_fn((batch, *c, *h, *w), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    });
    let classes = N::OUTPUT_SHAPE[0];
    let y: Vec<usize> = (0..batch).map(|i| (3 * i + rank) % classes).collect();
    let mut trainer = Trainer::new(&mut net, Sgd::new(0.01).momentum(0.9));
    if let Some(dist) = dist {
        trainer = trainer.distributed(dist)?;
    }
    for _ in 0..3 {
        trainer.step(x.view(), &y)?;
    }
    let n = if o.steps > 0 { o.steps } else { default_steps };
    let mut times = Vec::with_capacity(n);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut loss = 0.0;
    for _ in 0..n {
        let start = Instant::now();
        loss = trainer.step(x.view(), &y)?.loss;
        times.push(start.elapsed().as_secs_f64());
    }
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    if rank == 0 {
        println!(
            "RESULT {{\"mode\": \"{}\", \"processes\": {ranks}, \"threads\": {}, \"batch_per_process\": {batch}, \"steps\": {n}, \"ms_per_step\": {:.3}, \"min_ms\": {:.3}, \"max_ms\": {:.3}, \"img_per_s\": {:.1}, \"allocs_per_step\": {}, \"last_loss\": {loss:.4}}}",
            o.mode,
            o.threads,
            median * 1e3,
            times[0] * 1e3,
            times[times.len() - 1] * 1e3,
            GLOBAL_BATCH as f64 / median,
            allocs as f64 / n as f64,
        );
    }
    Ok(())
}

/// Parameter counts and gradient bytes per step (`f32`) of the three networks.
fn summary() {
    for (name, params) in [
        ("LeNet-5", lenet::LeNet5::NUM_PARAMS),
        ("ResNet-20", resnet::ResNet20::NUM_PARAMS),
        ("AlexNet", alexnet::AlexNet::NUM_PARAMS),
    ] {
        println!(
            "{name}: {params} parameters, {} bytes all-reduced per step",
            4 * params
        );
    }
}

fn run(o: &Options) -> striate::Result<()> {
    striate::set_threads(o.threads)?;
    let dist = if o.distributed {
        Some(Distributed::init()?)
    } else {
        None
    };
    match o.mode.as_str() {
        "lenet" => steps(lenet::LeNet5::init(42), o, dist.as_ref(), 200),
        "resnet" => steps(resnet::ResNet20::init(0), o, dist.as_ref(), 20),
        "summary" => {
            summary();
            Ok(())
        }
        other => Err(striate::Error::Config {
            name: "mode",
            reason: format!("expected lenet, resnet or summary, found `{other}`"),
        }),
    }
}

fn main() -> std::process::ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("scaling: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scaling: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
