//! Checkpoints and resume: a run stopped and resumed ends with the weights, buffers and
//! optimizer state of a run never stopped, bit for bit, whether it stopped at an epoch's end,
//! inside an epoch, or was killed with SIGKILL in another process; a checkpoint that does not
//! fit is refused and changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use striate::optim::Plateau;
use striate::prelude::*;
use striate::train::Resumed;

#[path = "common/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

network! {
    /// Convolution, batch norm, pooling, dropout and a classifier: every kind of state.
    pub struct Small {
        input: [1, 28, 28],
        conv: conv2d(4, kernel = 4, stride = 3) -> [4, 9, 9],
        bn: batch_norm,
        relu,
        max_pool(3) -> [4, 3, 3],
        flatten,
        drop: dropout(0.2),
        fc: linear(10),
    }
}

network! {
    /// Another network with the same input and output.
    pub struct Other {
        input: [1, 28, 28],
        flatten,
        fc: linear(10),
    }
}

fn digits(n: usize) -> Dataset {
    Mnist::builtin().train.take(n)
}

/// Adam, a cosine schedule, augmentation and a shuffle seed.
fn trainer(net: &mut Small) -> Trainer<'_, Small, Adam> {
    Trainer::new(net, Adam::new(0.01))
        .schedule(LrSchedule::cosine(3, 0.0))
        .augment(Augmentation::digits(5))
        .shuffle_seed(11)
}

/// Everything a run leaves behind, to compare bit for bit.
#[derive(Debug, PartialEq)]
struct Finish {
    params: Vec<u32>,
    buffers: Vec<u32>,
    num_batches_tracked: u64,
    optimizer: Vec<(String, Vec<u32>)>,
    optimizer_steps: u64,
    steps_done: u64,
    dropout_draw: u64,
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn finish<O: Optimizer>(t: &Trainer<'_, Small, O>) -> Finish {
    use rand::RngCore;
    let opt = t.optimizer();
    let optimizer = opt
        .state(t.net().params().table())
        .unwrap()
        .into_iter()
        .map(|(name, values)| (name, bits(values)))
        .collect();
    Finish {
        params: bits(t.net().params().as_slice()),
        buffers: bits(t.net().buffers().as_slice()),
        num_batches_tracked: t.net().state().num_batches_tracked,
        optimizer,
        optimizer_steps: opt.steps(),
        steps_done: t.steps_done(),
        dropout_draw: t.net().state().rng.clone().next_u64(),
    }
}

#[test]
fn a_run_resumed_from_an_epochs_checkpoint_ends_as_one_never_stopped() {
    let data = digits(160);
    let dir = TempDir::new("resume-epochs");
    let mut net = Small::init(1);
    let mut t = trainer(&mut net);
    let options = Fit::epochs(3)
        .batch(16)
        .progress(false)
        .checkpoints(Checkpoints::new(dir.path()).keep(5));
    let whole = t.fit(&data, options).unwrap();
    let expected = finish(&t);
    let files = Checkpoints::list(dir.path()).unwrap();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[0].ends_with("checkpoint-0000000010.safetensors"));

    let mut fresh = Small::init(99);
    let mut t = trainer(&mut fresh);
    let from = t.resume(&files[0]).unwrap();
    assert_eq!(
        (from.epochs_done, from.steps_done, from.batches_into_epoch),
        (1, 10, 0)
    );
    let rest = t
        .fit(&data, Fit::until(3).batch(16).progress(false))
        .unwrap();
    assert_eq!(finish(&t), expected);
    assert_eq!(rest.epochs().len(), 2);
    for (a, b) in rest.epochs().iter().zip(&whole.epochs()[1..]) {
        assert_eq!(
            (a.train.epoch, a.train.loss, a.train.lr),
            (b.train.epoch, b.train.loss, b.train.lr)
        );
    }
    // Until 3 epochs: nothing left to do.
    assert!(t
        .fit(&data, Fit::until(3).batch(16))
        .unwrap()
        .epochs()
        .is_empty());
}

/// Checkpoints every 7 steps (inside epochs), a reduce-on-plateau schedule fed a validation
/// loss, SGD with momentum: resumed from the middle of the second epoch, the run ends the same
/// and the resumed epoch reports what the whole one did.
#[test]
fn a_run_resumed_inside_an_epoch_ends_as_one_never_stopped() {
    let (data, valid) = digits(200).split_stratified(0.2, 3).unwrap();
    fn make(net: &mut Small) -> Trainer<'_, Small, Sgd> {
        let plateau = LrSchedule::Plateau(Plateau {
            patience: 0,
            factor: 0.5,
            ..Plateau::default()
        });
        Trainer::new(net, Sgd::new(0.05).momentum(0.9))
            .schedule(plateau)
            .augment(Augmentation::digits(2))
            .clip_grad_norm(5.0)
    }
    let dir = TempDir::new("resume-steps");
    let options = |v| {
        Fit::until(3)
            .batch(16)
            .validation(v)
            .progress(false)
            .checkpoints(Checkpoints::new(dir.path()).every_steps(7).keep(100))
    };
    let mut net = Small::init(4);
    let mut t = make(&mut net);
    let whole = t.fit(&data, options(&valid)).unwrap();
    let expected = finish(&t);
    // 160 samples in batches of 16: 10 steps an epoch, 30 in all; checkpoints after 7, 14, ...
    let files = Checkpoints::list(dir.path()).unwrap();
    assert_eq!(files.len(), 4, "{files:?}");

    let mut fresh = Small::init(0);
    let mut t = make(&mut fresh);
    let from = t.resume(&files[1]).unwrap();
    assert_eq!(
        (from.epochs_done, from.steps_done, from.batches_into_epoch),
        (1, 14, 4)
    );
    assert!(t.plateau().is_some());
    let rest = t.fit(&data, options(&valid)).unwrap();
    assert_eq!(finish(&t), expected);
    let (a, b) = (&rest.epochs()[0], &whole.epochs()[1]);
    assert_eq!(
        (a.train.epoch, a.train.loss, a.train.accuracy, a.step),
        (b.train.epoch, b.train.loss, b.train.accuracy, b.step)
    );
    assert_eq!(
        a.validation.as_ref().unwrap().loss,
        b.validation.as_ref().unwrap().loss
    );

    // The resumed epoch must go on in batches of the same size.
    let mut other = Small::init(0);
    let mut t = make(&mut other);
    t.resume(dir.path().join(files[1].file_name().unwrap()))
        .unwrap();
    let err = t
        .fit(&data, Fit::until(3).batch(8).progress(false))
        .unwrap_err();
    assert!(
        err.to_string().contains("batch size of 16, found 8"),
        "{err}"
    );
    assert_eq!(t.steps_done(), 14);
}

/// The checkpoint of a network, optimizer or trainer that is not this one, a weight file, a
/// corrupt file and an empty directory are each refused with the error naming the problem,
/// and the trainer, network and optimizer stay as they were.
#[test]
fn checkpoints_that_do_not_fit_are_refused_and_change_nothing() {
    let data = digits(64);
    let dir = TempDir::new("resume-refused");
    let mut net = Small::init(1);
    let mut t = trainer(&mut net);
    t.fit(&data, Fit::epochs(1).batch(16).progress(false))
        .unwrap();
    let good = dir.path().join("good.safetensors");
    t.save_checkpoint(&good).unwrap();
    let weights = dir.path().join("weights.safetensors");
    t.net().save(&weights).unwrap();
    let corrupt = dir.path().join("corrupt.safetensors");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() - 100]).unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();

    let check = |result: striate::Result<Resumed>, what: &str| {
        let err = result.unwrap_err();
        assert!(
            err.to_string().contains(what),
            "expected `{what}` in: {err}"
        );
        err
    };

    let mut other = Other::init(0);
    let before = other.params().as_slice().to_vec();
    let mut to = Trainer::new(&mut other, Adam::new(0.01));
    let err = check(
        to.resume(&good),
        "checkpoint network: expected `Other`, found `Small`",
    );
    assert!(matches!(err, Error::Checkpoint { .. }));
    assert_eq!((to.steps_done(), to.optimizer().steps()), (0, 0));
    assert_eq!(to.net().params().as_slice(), &before[..]);

    let mut fresh = Small::init(2);
    let before = finish(&trainer(&mut fresh));
    let mut by_sgd = Trainer::new(&mut fresh, Sgd::new(0.1)).augment(Augmentation::digits(5));
    check(
        by_sgd.resume(&good),
        "checkpoint optimizer: expected Sgd (this trainer's), found Adam",
    );
    assert_eq!(by_sgd.steps_done(), 0);
    drop(by_sgd);

    let mut t = Trainer::new(&mut fresh, Adam::new(0.01));
    check(t.resume(&good), "checkpoint augmentation");
    drop(t);

    let mut t = trainer(&mut fresh);
    check(t.resume(&weights), "a weight file without training state");
    let err = check(t.resume(&corrupt), "not a valid safetensors file");
    assert!(matches!(err, Error::Format { .. }), "{err:?}");
    check(
        t.resume(&empty),
        "checkpoint directory: expected a file named checkpoint-<steps>.safetensors, found none",
    );
    check(t.resume(dir.path().join("missing")), "missing");
    assert_eq!(finish(&t), before);

    // And the good one resumes.
    t.resume(&good).unwrap();
    assert_eq!(t.steps_done(), 4);
}

// The kill: the test binary runs itself as a child that trains with a checkpoint every few
// steps; the parent kills it with SIGKILL once a checkpoint is on disk, resumes in a second
// child, and compares the final weight file with an uninterrupted child's, byte for byte.

const CHILD: &str = "STRIATE_RESUME_CHILD";

/// What a child does: train `Small` for 4 epochs of 320 digits (80 steps), a checkpoint every
/// 3 steps into `<dir>/checkpoints`, resuming from there if anything is in it, then save the
/// weights to `<dir>/final.safetensors` and print the step it started from.
#[test]
fn resume_child() {
    let Ok(dir) = std::env::var(CHILD) else {
        return; // run as a test of its own: nothing to do
    };
    let dir = PathBuf::from(dir);
    striate::set_threads(1).unwrap();
    let data = digits(320);
    let mut net = Small::init(8);
    let mut t = trainer(&mut net);
    let checkpoints = Checkpoints::new(dir.join("checkpoints"))
        .every_steps(3)
        .keep(2);
    if Checkpoints::latest(checkpoints.dir()).unwrap().is_some() {
        t.resume(checkpoints.dir()).unwrap();
    }
    println!("started at step {}", t.steps_done());
    t.fit(
        &data,
        Fit::until(4)
            .batch(16)
            .progress(false)
            .checkpoints(checkpoints),
    )
    .unwrap();
    t.net().save(dir.join("final.safetensors")).unwrap();
}

fn child(dir: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "resume_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command
}

/// The step a child started from, from its output.
fn started_at(output: &std::process::Output) -> u64 {
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find_map(|l| l.split("started at step ").nth(1))
        .unwrap_or_else(|| panic!("the child printed no start: {text}"));
    line.trim().parse().unwrap()
}

#[test]
fn a_run_killed_with_sigkill_and_resumed_ends_as_one_never_stopped() {
    let whole = TempDir::new("kill-whole");
    let output = child(whole.path()).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(started_at(&output), 0);

    let killed = TempDir::new("kill-resumed");
    let mut running = child(killed.path()).spawn().unwrap();
    let checkpoints = killed.path().join("checkpoints");
    let deadline = Instant::now() + Duration::from_secs(120);
    while Checkpoints::latest(&checkpoints).unwrap().is_none() {
        assert!(Instant::now() < deadline, "no checkpoint after two minutes");
        assert!(
            running.try_wait().unwrap().is_none(),
            "the child ended before a checkpoint"
        );
        std::thread::yield_now();
    }
    running.kill().unwrap(); // SIGKILL
    let status = running.wait().unwrap();
    assert!(
        !status.success(),
        "the child was to be killed mid-run, it finished: {status:?}"
    );
    assert!(!killed.path().join("final.safetensors").exists());

    let output = child(killed.path()).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let from = started_at(&output);
    assert!(from > 0 && from < 80, "resumed from step {from}");
    assert_eq!(
        std::fs::read(killed.path().join("final.safetensors")).unwrap(),
        std::fs::read(whole.path().join("final.safetensors")).unwrap(),
        "the resumed run's weights differ from the uninterrupted run's"
    );
}
