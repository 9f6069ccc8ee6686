//! Data-parallel training over MPI (feature `mpi`), under `mpirun -np 2` and `-np 4`
//! (oversubscribed, on loopback).
//!
//! Each test starts `mpirun` on this test binary itself, with `STRIATE_MPI_WORKER` naming the
//! scenario: the ranks then run [`worker`] (and nothing else), write what they found into a
//! private temporary folder, and the test reads it with mpirun's exit status and output.
//!
//! Without the feature, or without `mpirun` on the path (`.ci/run` installs OpenMPI), the
//! tests say so and pass.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[cfg(feature = "mpi")]
#[path = "common/counting_alloc.rs"]
mod counting_alloc;

/// Why the tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if cfg!(not(feature = "mpi")) {
        return Some("built without feature `mpi` (cargo test --features mpi --test mpi)".into());
    }
    match Command::new("mpirun").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("`mpirun` not found: install openmpi-bin and libopenmpi-dev".into()),
    }
}

/// Says on the terminal why a test is skipped (past the test harness's capture, which keeps
/// the output of passing tests).
fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
}

/// A private folder for one run's results.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("striate-mpi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs scenario `scenario` on `ranks` processes, killed after `limit`; returns mpirun's
/// output and the wall time.
fn mpirun(
    scenario: &str,
    ranks: usize,
    dir: &PathBuf,
    extra: &[&str],
    limit: Duration,
) -> (Output, Duration) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "--oversubscribe",
        "--bind-to",
        "none",
        "-np",
        &ranks.to_string(),
    ])
    .args([
        "--mca",
        "btl",
        "self,tcp",
        "--mca",
        "btl_tcp_if_include",
        "lo",
    ])
    .args(["--mca", "oob_tcp_if_include", "lo"])
    .args(extra)
    .arg(exe)
    .args(["worker", "--exact", "--nocapture", "--test-threads", "1"])
    .env("STRIATE_MPI_WORKER", scenario)
    .env("STRIATE_MPI_OUT", dir)
    // OpenMPI refuses root without these (CI runs as root); harmless otherwise.
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    // Read the pipes on threads, so that a chatty job cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut v).unwrap();
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (output, start.elapsed())
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs an equivalence scenario and checks that every rank wrote its result.
fn equivalence(scenario: &str, ranks: usize) {
    if let Some(why) = unavailable() {
        skip(&format!("mpi {scenario} on {ranks} ranks"), &why);
        return;
    }
    let dir = scratch(&format!("{scenario}-{ranks}"));
    let (out, _) = mpirun(scenario, ranks, &dir, &[], Duration::from_secs(300));
    assert!(out.status.success(), "{}", text(&out));
    for rank in 0..ranks {
        let result = std::fs::read_to_string(dir.join(format!("rank{rank}.txt")))
            .unwrap_or_else(|e| panic!("rank {rank} wrote no result ({e}): {}", text(&out)));
        println!("rank {rank}: {result}");
        assert!(result.starts_with("ok"), "rank {rank}: {result}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_ranks_of_batch_b_train_as_one_process_of_batch_2b() {
    equivalence("equivalence", 2);
}

#[test]
fn four_ranks_of_batch_b_train_as_one_process_of_batch_4b() {
    equivalence("equivalence", 4);
}

#[test]
fn synchronised_batch_norm_trains_as_one_process_on_two_and_four_ranks() {
    equivalence("batch_norm", 2);
    equivalence("batch_norm", 4);
}

/// A rank that dies (or stalls) mid-training: every other rank reports it and the job ends
/// with an error, within the timeout (3 s) and a margin for starting and ending processes.
fn failure(scenario: &str, ranks: usize) {
    if let Some(why) = unavailable() {
        skip(&format!("mpi {scenario} on {ranks} ranks"), &why);
        return;
    }
    let dir = scratch(&format!("{scenario}-{ranks}"));
    // mpirun would end the job itself when a rank exits with an error; told not to, it is
    // left to the surviving ranks to notice.
    let (out, took) = mpirun(
        scenario,
        ranks,
        &dir,
        &["--mca", "orte_abort_on_non_zero_status", "0"],
        Duration::from_secs(120),
    );
    let all = text(&out);
    println!("{scenario} on {ranks} ranks ended after {took:?}\n{all}");
    assert!(!out.status.success(), "{all}");
    assert!(took < Duration::from_secs(60), "took {took:?}: {all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reported: Vec<usize> = (0..ranks)
        .filter(|r| stderr.contains(&format!("striate: rank {r} of {ranks}: ")))
        .collect();
    // The failing rank is the last; the first survivor to give up ends the job, which may
    // stop the others before they print.
    assert!(
        !reported.is_empty() && !reported.contains(&(ranks - 1)),
        "{reported:?}: {all}"
    );
    assert!(stderr.contains("ending the job"), "{all}");
    // No rank got past the failed step.
    for rank in 0..ranks {
        assert!(
            !dir.join(format!("rank{rank}.txt")).exists(),
            "rank {rank} finished: {all}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_rank_that_dies_ends_the_job_on_two_and_four_ranks() {
    failure("die", 2);
    failure("die", 4);
}

#[test]
fn a_rank_that_stalls_ends_the_job_on_two_ranks() {
    failure("stall", 2);
}

/// The ranks' side: runs the scenario `STRIATE_MPI_WORKER` names; without it, does nothing.
#[test]
fn worker() {
    let Ok(scenario) = std::env::var("STRIATE_MPI_WORKER") else {
        return;
    };
    #[cfg(feature = "mpi")]
    ranks::run(
        &scenario,
        PathBuf::from(std::env::var("STRIATE_MPI_OUT").unwrap()),
    );
    #[cfg(not(feature = "mpi"))]
    panic!("scenario {scenario}: built without feature `mpi`");
}

/// The book's example (docs/src/distributed.md, "In your own program"), compiled with the
/// feature; the tests above run the same calls under mpirun.
#[cfg(feature = "mpi")]
#[allow(dead_code)]
fn book_example(
    train: striate::data::Dataset,
    test: striate::data::Dataset,
) -> Result<(), Box<dyn std::error::Error>> {
    type LeNet5 = ranks::Small;
    use striate::distributed::Distributed;
    use striate::prelude::*;

    let dist = Distributed::init()?; // once per process, before training
    striate::set_threads(1)?; // mpirun runs a process per core
    let mut net = LeNet5::init(0);
    let mut trainer = Trainer::new(&mut net, Sgd::new(0.02).momentum(0.9)).distributed(&dist)?;
    trainer.fit(&train, Fit::epochs(12).batch(32).validation(&test))?;
    if dist.is_root() {
        trainer.net().save("lenet.safetensors")?;
    }
    Ok(())
}

#[cfg(feature = "mpi")]
mod ranks {
    use std::path::PathBuf;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use striate::distributed::Distributed;
    use striate::prelude::*;
    use striate::train::Checkpoints;

    network! {
        /// Convolution and two linear layers: several tensors, so several buckets.
        pub struct Small {
            input: [1, 8, 8],
            conv: conv2d(4, kernel = 3), relu,
            max_pool(2),
            flatten,
            fc1: linear(16), relu,
            fc2: linear(3),
        }
    }

    network! {
        /// With batch norm, whose statistics the ranks synchronise.
        pub struct Normed {
            input: [1, 8, 8],
            conv: conv2d(4, kernel = 3), bn: batch_norm, relu,
            flatten,
            fc: linear(3),
        }
    }

    /// 96 samples of three classes: a bright row whose place gives the class, with noise.
    fn data() -> Dataset {
        let n = 96;
        let mut xs = Vec::with_capacity(n * 64);
        let mut ys = Vec::with_capacity(n);
        for i in 0..n {
            let class = i % 3;
            for p in 0..64 {
                let row = p / 8;
                let noise = (((i * 64 + p) * 2_654_435_761) % 1000) as f32 / 1000.0 - 0.5;
                xs.push(if row / 3 == class { 1.0 } else { 0.0 } + 0.3 * noise);
            }
            ys.push(class);
        }
        Dataset::new(xs, ys, [1, 8, 8], 3).unwrap()
    }

    /// Batch per rank: 12 samples a step in all, 8 steps an epoch, on 2 or 4 ranks.
    fn batch(ranks: usize) -> usize {
        12 / ranks
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    pub fn run(scenario: &str, out: PathBuf) {
        striate::set_threads(1).unwrap();
        let dist = Distributed::init()
            .unwrap()
            .timeout(Duration::from_secs(3))
            .bucket_bytes(64);
        let rank = dist.rank();
        let result = match scenario {
            "equivalence" => equivalence(&dist, &out),
            "batch_norm" => batch_norm(&dist),
            "die" | "stall" => fail(&dist, scenario),
            other => panic!("unknown scenario {other}"),
        };
        std::fs::write(out.join(format!("rank{rank}.txt")), result).unwrap();
    }

    /// Every rank starts from its own weights, trains 2 epochs with batch B on its shard
    /// (checkpoints and a log asked of every rank), and must end with the weights of one
    /// process trained from rank 0's weights with batch N·B; only rank 0 wrote files.
    fn equivalence(dist: &Distributed, out: &std::path::Path) -> String {
        let (rank, ranks) = (dist.rank(), dist.size());
        let data = data();
        let mut net = Small::init(100 + rank as u64);
        let own = Small::init(100 + rank as u64);
        let dir = out.join(format!("checkpoints{rank}"));
        let log = out.join(format!("log{rank}.csv"));
        let mut trainer = Trainer::new(&mut net, Sgd::new(0.05).momentum(0.9))
            .shuffle_seed(5)
            .distributed(dist)
            .unwrap();
        let history = trainer
            .fit(
                &data,
                Fit::epochs(2)
                    .batch(batch(ranks))
                    .progress(false)
                    .checkpoints(Checkpoints::new(&dir))
                    .log(&log),
            )
            .unwrap();
        let (buckets, overlapped) = trainer.distributed_buckets().unwrap();
        // Whole tensors of at least 16 values, from the end: fc2, fc1's bias, fc1's weight,
        // conv. The backward pass starts every one, the first three while the layers below
        // still compute.
        assert_eq!(buckets, [(632, 683), (616, 632), (40, 616), (0, 40)]);
        assert_eq!(overlapped, 4);
        drop(trainer);
        if rank != 0 {
            assert!(
                max_diff(
                    own.params().as_slice(),
                    Small::init(100).params().as_slice()
                ) > 0.0
            );
        }

        let mut single = Small::init(100);
        let mut t = Trainer::new(&mut single, Sgd::new(0.05).momentum(0.9)).shuffle_seed(5);
        let reference = t
            .fit(&data, Fit::epochs(2).batch(12).progress(false))
            .unwrap();
        drop(t);
        let diff = max_diff(net.params().as_slice(), single.params().as_slice());
        assert!(diff < 1e-4, "rank {rank}: weights differ by {diff}");
        // The epochs' losses and accuracies are those of the whole job's steps.
        for (a, b) in history.epochs().iter().zip(reference.epochs()) {
            assert!((a.train.loss - b.train.loss).abs() < 1e-4, "{a:?} {b:?}");
            assert!(
                (a.train.accuracy - b.train.accuracy).abs() < 1e-6,
                "{a:?} {b:?}"
            );
        }
        let wrote = dir.exists() && std::fs::read_dir(&dir).unwrap().next().is_some();
        assert_eq!(
            wrote,
            rank == 0,
            "rank {rank}: checkpoints written: {wrote}"
        );
        assert_eq!(log.exists(), rank == 0, "rank {rank}: log");

        // A distributed step allocates nothing once warm (the buckets are allocated once):
        // the quietest of three windows of five steps.
        let mut net = Small::init(0);
        let mut t = Trainer::new(&mut net, Sgd::new(0.05).momentum(0.9))
            .distributed(dist)
            .unwrap();
        let b = batch(ranks);
        let x = data
            .images()
            .slice_move(striate::ndarray::s![..b, .., .., ..]);
        let y = &data.labels()[..b];
        for _ in 0..2 {
            t.step(x.view(), y).unwrap();
        }
        let quietest = (0..3)
            .map(|_| {
                let before = super::counting_alloc::ALLOCATIONS.load(Ordering::SeqCst);
                for _ in 0..5 {
                    t.step(x.view(), y).unwrap();
                }
                super::counting_alloc::ALLOCATIONS.load(Ordering::SeqCst) - before
            })
            .min()
            .unwrap();
        assert_eq!(
            quietest, 0,
            "rank {rank}: allocations in 5 distributed steps"
        );
        format!("ok: weights within {diff:.2e} of one process with batch 12, 0 allocations a step")
    }

    /// With batch norm synchronised, N ranks of batch B end as one process of batch N·B,
    /// running statistics included; without, they do not.
    fn batch_norm(dist: &Distributed) -> String {
        let (rank, ranks) = (dist.rank(), dist.size());
        let data = data();
        let train = |dist: Option<&Distributed>, batch: usize| {
            let mut net = Normed::init(7);
            let mut t = Trainer::new(&mut net, Sgd::new(0.05).momentum(0.9)).shuffle_seed(3);
            if let Some(dist) = dist {
                t = t.distributed(dist).unwrap();
            }
            t.fit(&data, Fit::epochs(2).batch(batch).progress(false))
                .unwrap();
            drop(t);
            net
        };
        let synced = train(Some(&dist.clone().sync_batch_norm(true)), batch(ranks));
        let unsynced = train(Some(dist), batch(ranks));
        let single = train(None, 12);
        let diff = max_diff(synced.params().as_slice(), single.params().as_slice());
        let running = max_diff(synced.buffers().as_slice(), single.buffers().as_slice());
        let apart = max_diff(unsynced.params().as_slice(), single.params().as_slice());
        assert!(
            diff < 1e-4 && running < 1e-4,
            "rank {rank}: {diff} {running}"
        );
        assert!(
            apart > 1e-3,
            "rank {rank}: unsynchronised batch norm within {apart}"
        );
        // More than one thread cannot synchronise batch norm: refused.
        striate::set_threads(2).unwrap();
        let mut net = Normed::init(7);
        let synced = dist.clone().sync_batch_norm(true);
        let mut t = Trainer::new(&mut net, Sgd::new(0.05))
            .distributed(&synced)
            .unwrap();
        let err = t.step(data.images().view(), data.labels()).unwrap_err();
        assert!(err.to_string().contains("one thread per process"), "{err}");
        striate::set_threads(1).unwrap();
        format!("ok: weights within {diff:.2e}, running statistics within {running:.2e}")
    }

    /// The last rank dies (exits at once) or stalls (sleeps) at its fourth step.
    fn fail(dist: &Distributed, how: &str) -> String {
        let (rank, ranks) = (dist.rank(), dist.size());
        let data = data();
        let mut net = Small::init(1);
        let mut t = Trainer::new(&mut net, Sgd::new(0.05))
            .distributed(dist)
            .unwrap();
        let b = batch(ranks);
        for step in 0..8 {
            if rank == ranks - 1 && step == 3 {
                if how == "die" {
                    std::process::exit(3);
                }
                std::thread::sleep(Duration::from_secs(600));
            }
            let x = data.images().slice_move(striate::ndarray::s![
                step * b..(step + 1) * b,
                ..,
                ..,
                ..
            ]);
            let y = &data.labels()[step * b..(step + 1) * b];
            if let Err(e) = t.step(x, y) {
                // The failed step's error names this rank; the job ends when `dist` drops.
                assert!(
                    e.to_string()
                        .starts_with(&format!("rank {rank} of {ranks}: ")),
                    "{e}"
                );
                panic!("rank {rank}: {e}");
            }
        }
        "finished".to_string()
    }
}
