//! Training checkpoints: everything a run needs to go on bit for bit, in one safetensors file.
//!
//! The tensors are the network's weight file (parameters, buffers and batch norm's
//! `num_batches_tracked` counters, under PyTorch's names, as [`Network::save`] writes them) and
//! the optimizer's state as `optimizer.<parameter>.<buffer>` (`optimizer.fc.weight.exp_avg`).
//! The metadata holds `format`, `network` (the network's name) and `trainer`: a JSON object
//! with the epoch and step counts, the position inside an epoch, the seeds, the dropout
//! generator, the optimizer's name, step count and rate, the reduce-on-plateau tracker and the
//! callbacks' states. Floating-point values in it are written as their bits, so that infinity
//! (a plateau's first best) survives and every value comes back exactly.

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ndarray::Ix2;
use serde::{Deserialize, Serialize};

use super::{StepStats, Trainer};
use crate::io::{TensorData, TypedTensor};
use crate::network::checkpoints::{apply_state, batch_count, state_tensors, take_state};
use crate::optim::{LrSchedule, Optimizer, PlateauTracker};
use crate::{Error, NetRng, Network, Result};

/// The `format` metadata of a training checkpoint.
const FORMAT: &str = "striate training checkpoint 1";
/// Checkpoint files are `checkpoint-<steps, 10 digits>.safetensors`.
const PREFIX: &str = "checkpoint-";
const SUFFIX: &str = ".safetensors";
/// The optimizer's tensors are named `optimizer.<parameter>.<buffer>`.
const OPTIMIZER: &str = "optimizer.";

/// Where and how often [`Trainer::fit`] writes training checkpoints (see
/// [`Fit::checkpoints`](super::Fit::checkpoints)), and the files a directory holds.
///
/// `Checkpoints::new(dir)` writes one after every epoch (after the validation, the schedule's
/// update and the callbacks) into `dir`, created if needed, and keeps the last
/// [`DEFAULT_KEEP`](Checkpoints::DEFAULT_KEEP) (3), removing older ones;
/// [`every_steps`](Checkpoints::every_steps) writes one every `n` steps instead, inside epochs
/// too. Each is `checkpoint-<steps>.safetensors` (steps in 10 digits, so that names sort as
/// the run went), written atomically: a run killed at any moment leaves whole checkpoints
/// only. A step that the divergence guard refuses writes none. [`Trainer::resume`] reads a
/// file or the directory's newest.
///
/// # Example
///
/// ```
/// use striate::train::Checkpoints;
///
/// let every_100 = Checkpoints::new("runs/lenet").every_steps(100).keep(5);
/// assert_eq!((every_100.steps(), every_100.kept()), (Some(100), 5));
/// assert_eq!(Checkpoints::new("runs/lenet").kept(), Checkpoints::DEFAULT_KEEP);
/// // A directory that does not exist holds no checkpoints.
/// assert!(Checkpoints::latest("no/such/dir")?.is_none());
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoints {
    dir: PathBuf,
    every_steps: Option<u64>,
    keep: usize,
}

impl Checkpoints {
    /// How many checkpoints are kept unless [`keep`](Checkpoints::keep) says otherwise.
    pub const DEFAULT_KEEP: usize = 3;

    /// Checkpoints after every epoch into `dir`, the last [`Checkpoints::DEFAULT_KEEP`] kept.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Checkpoints {
            dir: dir.into(),
            every_steps: None,
            keep: Self::DEFAULT_KEEP,
        }
    }

    /// A checkpoint every `steps` steps (counted over the whole run, so after steps `steps`,
    /// `2 · steps`, ...) instead of after every epoch. Zero is an [`Error::Config`] when
    /// [`fit`](Trainer::fit) starts.
    pub fn every_steps(self, steps: u64) -> Self {
        Checkpoints {
            every_steps: Some(steps),
            ..self
        }
    }

    /// Keeps the newest `count` checkpoints of the directory, removing older ones after each
    /// write (only files named as checkpoints are ever removed). Zero is an [`Error::Config`]
    /// when [`fit`](Trainer::fit) starts.
    pub fn keep(self, count: usize) -> Self {
        Checkpoints {
            keep: count,
            ..self
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every how many steps a checkpoint is written; `None` for after every epoch.
    pub fn steps(&self) -> Option<u64> {
        self.every_steps
    }

    /// How many checkpoints are kept.
    pub fn kept(&self) -> usize {
        self.keep
    }

    /// The checkpoint files of `dir`, oldest (fewest steps) first; none when `dir` does not
    /// exist. Other files are ignored.
    ///
    /// # Errors
    /// [`Error::Io`] when `dir` exists but cannot be read.
    pub fn list(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        let dir = dir.as_ref();
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(dir, e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name();
            if let Some(steps) = name.to_str().and_then(steps_of) {
                found.push((steps, entry.path()));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, path)| path).collect())
    }

    /// The newest checkpoint of `dir` (the one of the most steps), if any.
    ///
    /// # Errors
    /// As [`list`](Checkpoints::list).
    pub fn latest(dir: impl AsRef<Path>) -> Result<Option<PathBuf>> {
        Ok(Self::list(dir)?.pop())
    }

    /// Checks the settings and makes the directory.
    pub(super) fn prepare(&self) -> Result<()> {
        if self.every_steps == Some(0) {
            return Err(Error::Config {
                name: "checkpoint interval",
                reason: "expected at least 1 step between checkpoints, found 0".into(),
            });
        }
        if self.keep == 0 {
            return Err(Error::Config {
                name: "checkpoints kept",
                reason: "expected at least 1 (the newest), found 0".into(),
            });
        }
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))
    }

    /// Writes the trainer's checkpoint into the directory and removes the ones past
    /// [`kept`](Checkpoints::kept).
    pub(super) fn save<N: Network<OutputDim = Ix2>, O: Optimizer>(
        &self,
        trainer: &Trainer<'_, N, O>,
        position: Option<&EpochPosition>,
        augmentation_seed: Option<u64>,
        callbacks: &[Option<String>],
    ) -> Result<()> {
        let path = self
            .dir
            .join(format!("{PREFIX}{:010}{SUFFIX}", trainer.steps_done));
        write(trainer, &path, position, augmentation_seed, callbacks)?;
        let all = Self::list(&self.dir)?;
        for old in &all[..all.len().saturating_sub(self.keep)] {
            fs::remove_file(old).map_err(|e| Error::io(old, e))?;
        }
        Ok(())
    }
}

/// The step count of a checkpoint's file name, `None` for any other name.
fn steps_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() < 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The checkpoints [`Trainer::fit`] writes every few steps, with the states of its callbacks
/// as of the last epoch's end.
pub(super) struct StepCheckpoints {
    pub(super) config: Checkpoints,
    pub(super) callbacks: Vec<Option<String>>,
}

impl StepCheckpoints {
    /// Whether a checkpoint is due after the step that made the count `steps_done`.
    pub(super) fn due(&self, steps_done: u64) -> bool {
        self.config
            .every_steps
            .is_some_and(|n| steps_done.is_multiple_of(n))
    }

    pub(super) fn write<N: Network<OutputDim = Ix2>, O: Optimizer>(
        &self,
        trainer: &Trainer<'_, N, O>,
        position: Option<&EpochPosition>,
        augmentation_seed: Option<u64>,
    ) -> Result<()> {
        self.config
            .save(trainer, position, augmentation_seed, &self.callbacks)
    }
}

/// What [`Trainer::resume`] read: the file, and where the run it continues had got to.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Resumed {
    /// The checkpoint file (the newest of the directory, when given one).
    pub path: PathBuf,
    /// Epochs finished: the epoch the run goes on with.
    pub epochs_done: usize,
    /// Steps applied: the number of the next step.
    pub steps_done: u64,
    /// Batches of the unfinished epoch already trained (0 at an epoch's end).
    pub batches_into_epoch: usize,
}

/// How far an epoch has got, and what its report has summed so far.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct EpochPosition {
    pub(super) epoch: usize,
    /// The batch size and training-set size the epoch's batches were cut with.
    pub(super) batch: usize,
    pub(super) samples: usize,
    pub(super) batches_done: usize,
    #[serde(with = "f64_bits")]
    pub(super) loss_sum: f64,
    pub(super) correct: usize,
    pub(super) seen: usize,
}

impl EpochPosition {
    pub(super) fn start(epoch: usize, batch: usize, samples: usize) -> Self {
        EpochPosition {
            epoch,
            batch,
            samples,
            batches_done: 0,
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
        }
    }

    pub(super) fn advance(&mut self, step: &StepStats) {
        self.batches_done += 1;
        self.loss_sum += f64::from(step.loss);
        self.correct += step.correct;
        self.seen += step.samples;
    }

    /// `Ok` when the epoch goes on with the batch size and the dataset size it began with.
    pub(super) fn check(&self, batch: usize, samples: usize) -> Result<()> {
        let what = |setting: &str, expected: usize, found: usize| Error::Config {
            name: "resumed epoch",
            reason: format!(
                "epoch {} was checkpointed after {} batches with a {setting} of {expected}, \
                     found {found}; go on with the same {setting}, so that the epoch's \
                     remaining batches are the ones it would have trained",
                self.epoch, self.batches_done
            ),
        };
        if batch != self.batch {
            return Err(what("batch size", self.batch, batch));
        }
        if samples != self.samples {
            return Err(what("training set size", self.samples, samples));
        }
        Ok(())
    }
}

/// The `trainer` metadata of a checkpoint.
#[derive(Serialize, Deserialize)]
struct TrainerState {
    epochs_done: usize,
    steps_done: u64,
    shuffle_seed: u64,
    augmentation_seed: Option<u64>,
    dropout_rng: NetRng,
    optimizer: String,
    optimizer_steps: u64,
    #[serde(with = "f32_bits")]
    lr: f32,
    plateau: Option<PlateauState>,
    position: Option<EpochPosition>,
    callbacks: Vec<Option<String>>,
}

/// A [`PlateauTracker`]'s running state.
#[derive(Serialize, Deserialize)]
struct PlateauState {
    #[serde(with = "f32_bits")]
    lr: f32,
    #[serde(with = "f32_bits")]
    best: f32,
    bad_epochs: usize,
    cooldown_left: usize,
}

/// Writes the trainer's checkpoint to `path`, atomically.
pub(super) fn write<N: Network<OutputDim = Ix2>, O: Optimizer>(
    trainer: &Trainer<'_, N, O>,
    path: &Path,
    position: Option<&EpochPosition>,
    augmentation_seed: Option<u64>,
    callbacks: &[Option<String>],
) -> Result<()> {
    let net: &N = trainer.net;
    let count = batch_count(net);
    let mut tensors = state_tensors(net, &count);
    // The optimizer keeps state for the trainable parameters only.
    let table = crate::network::trainable_table(N::PARAMS, &net.state().frozen);
    let optimizer = trainer.opt.state(&table)?;
    for (name, values) in &optimizer {
        let param = name.rsplit_once('.').map_or("", |(param, _)| param);
        let shape = N::PARAMS
            .iter()
            .find(|p| p.name == param)
            .map_or_else(|| vec![values.len()], |p| p.shape.to_vec());
        tensors.push((format!("{OPTIMIZER}{name}"), shape, TensorData::F32(values)));
    }
    let state = TrainerState {
        epochs_done: trainer.epochs_done,
        steps_done: trainer.steps_done,
        shuffle_seed: trainer.seed,
        augmentation_seed,
        dropout_rng: net.state().rng.clone(),
        optimizer: trainer.opt.name().to_string(),
        optimizer_steps: trainer.opt.steps(),
        lr: trainer.opt.lr(),
        plateau: trainer.plateau.as_ref().map(|t| PlateauState {
            lr: t.lr(),
            best: t.best(),
            bad_epochs: t.bad_epochs(),
            cooldown_left: t.cooldown_left(),
        }),
        position: position.copied(),
        callbacks: callbacks.to_vec(),
    };
    let json = serde_json::to_string(&state)
        .map_err(|e| Error::format(path, format!("the trainer's state is not JSON: {e}")))?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("network".to_string(), N::NAME.to_string()),
        ("trainer".to_string(), json),
        (
            "written_by".to_string(),
            format!("striate {}", env!("CARGO_PKG_VERSION")),
        ),
    ]);
    crate::io::save_typed_tensors(path, &tensors, Some(metadata))
}

/// [`Trainer::resume`]: reads and checks everything, then changes the trainer.
pub(super) fn resume<N: Network<OutputDim = Ix2>, O: Optimizer>(
    trainer: &mut Trainer<'_, N, O>,
    path: &Path,
) -> Result<Resumed> {
    let file = if path.is_dir() {
        Checkpoints::latest(path)?.ok_or_else(|| {
            Error::checkpoint(
                path,
                "directory",
                format!("a file named {PREFIX}<steps>{SUFFIX}"),
                "none",
            )
        })?
    } else {
        path.to_path_buf()
    };
    let path = file.as_path();
    let (tensors, metadata) = crate::io::load_typed_tensors_and_metadata(path)?;
    let meta = |key: &str| metadata.get(key).map(String::as_str);
    if meta("format") != Some(FORMAT) {
        let found = match meta("format") {
            Some(other) => format!("`{other}`"),
            None if meta("network").is_some() => {
                "a weight file without training state (load it with `Network::load`)".into()
            }
            None => "no `format` metadata".into(),
        };
        return Err(Error::checkpoint(
            path,
            "format",
            format!("`{FORMAT}`"),
            found,
        ));
    }
    if meta("network") != Some(N::NAME) {
        return Err(Error::checkpoint(
            path,
            "network",
            format!("`{}`", N::NAME),
            meta("network").map_or("no `network` metadata".into(), |n| format!("`{n}`")),
        ));
    }
    let state: TrainerState =
        serde_json::from_str(meta("trainer").unwrap_or_default()).map_err(|e| {
            Error::checkpoint(
                path,
                "trainer state (the `trainer` metadata)",
                "the JSON object a striate trainer writes",
                format!("text that does not parse as one: {e}"),
            )
        })?;
    let optimizer = trainer.opt.name();
    if state.optimizer != optimizer {
        return Err(Error::checkpoint(
            path,
            "optimizer",
            format!("{optimizer} (this trainer's)"),
            state.optimizer,
        ));
    }
    let seeds = (state.augmentation_seed, trainer.augmentation.is_some());
    if let (Some(_), false) | (None, true) = seeds {
        let said = |augmented: bool| {
            if augmented {
                "a run with augmentation (`Trainer::augment`)"
            } else {
                "a run without augmentation"
            }
        };
        return Err(Error::checkpoint(
            path,
            "augmentation",
            format!("{} (this trainer's)", said(seeds.1)),
            said(seeds.0.is_some()),
        ));
    }
    let plateau = match (&state.plateau, &trainer.schedule) {
        (Some(p), LrSchedule::Plateau(settings)) => Some(
            PlateauTracker::resume(*settings, p.lr, p.best, p.bad_epochs, p.cooldown_left)
                .map_err(|e| {
                    Error::checkpoint(
                        path,
                        "reduce-on-plateau state",
                        "valid settings",
                        e.to_string(),
                    )
                })?,
        ),
        (None, _) => None,
        (Some(_), _) => {
            return Err(Error::checkpoint(
                path,
                "schedule",
                "a schedule without plateau state (this trainer's)",
                "the state of a reduce-on-plateau schedule",
            ))
        }
    };
    if let Some(p) = &state.position {
        let batches = p.samples.div_ceil(p.batch.max(1));
        if p.epoch != state.epochs_done || p.batch == 0 || p.batches_done > batches {
            return Err(Error::checkpoint(
                path,
                "position in the epoch",
                format!(
                    "epoch {} (the one after those done), at most {batches} batches of a size above 0",
                    state.epochs_done
                ),
                format!(
                    "epoch {}, {} batches of {}",
                    p.epoch, p.batches_done, p.batch
                ),
            ));
        }
    }
    if !(state.lr.is_finite() && state.lr >= 0.0) {
        return Err(Error::checkpoint(
            path,
            "learning rate",
            "a finite rate of at least 0",
            state.lr.to_string(),
        ));
    }

    let mut found: HashMap<String, TypedTensor> =
        tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
    let weights = take_state::<N>(path, &mut found)?;
    let mut entries = Vec::with_capacity(found.len());
    let mut names: Vec<String> = found.keys().cloned().collect();
    names.sort();
    for name in names {
        let Some(buffer) = name.strip_prefix(OPTIMIZER) else {
            return Err(Error::checkpoint(
                path,
                format!("tensor `{name}`"),
                format!(
                    "a parameter or buffer of {}, or optimizer state (`{OPTIMIZER}...`)",
                    N::NAME
                ),
                "a tensor of neither",
            ));
        };
        let tensor = found.remove(&name).expect("a key of the map");
        entries.push((buffer.to_string(), tensor.into_f32(path)?.data));
    }

    // Everything is read and checked; the optimizer's `set_state` checks its entries and
    // changes nothing when they do not fit, so it goes first, and what follows cannot fail.
    let frozen = &trainer.net.state().frozen;
    let (table, generation) = (
        crate::network::trainable_table(N::PARAMS, frozen),
        frozen.generation(),
    );
    trainer
        .opt
        .set_state(&table, state.optimizer_steps, &entries)
        .map_err(|e| {
            Error::checkpoint(
                path,
                "optimizer state",
                format!("the state of {optimizer} for the parameters of {}", N::NAME),
                e.to_string(),
            )
        })?;
    trainer.frozen_steps.adopt(generation);
    trainer.opt.set_lr(state.lr);
    apply_state(trainer.net, weights);
    trainer.net.state_mut().rng = state.dropout_rng;
    trainer.epochs_done = state.epochs_done;
    trainer.current_epoch = state.epochs_done;
    trainer.steps_done = state.steps_done;
    trainer.seed = state.shuffle_seed;
    if let (Some(augmentation), Some(seed)) = (&mut trainer.augmentation, state.augmentation_seed) {
        augmentation.set_seed(seed);
    }
    trainer.plateau = plateau;
    trainer.position = state.position;
    trainer.callback_states = state.callbacks;
    Ok(Resumed {
        path: file.clone(),
        epochs_done: state.epochs_done,
        steps_done: state.steps_done,
        batches_into_epoch: state.position.map_or(0, |p| p.batches_done),
    })
}

/// An `f32` as its bits, in the trainer's JSON: exact, and infinity and NaN survive.
mod f32_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &f32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(value.to_bits())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        u32::deserialize(d).map(f32::from_bits)
    }
}

/// An `f64` as its bits, as [`f32_bits`].
mod f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(value.to_bits())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        u64::deserialize(d).map(f64::from_bits)
    }
}
