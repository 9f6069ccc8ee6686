//! Callbacks of [`Trainer::fit`](super::Trainer::fit): code run after every epoch that may
//! stop training, with early stopping and saving the best weights built in.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::EpochRecord;
use crate::optim::PlateauMode;
use crate::{Error, Network, ParamStore, Result};

/// What a [`Callback`] tells [`Trainer::fit`](super::Trainer::fit) after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on with the next epoch.
    Continue,
    /// Stop after this epoch (its checkpoint and log row are still written).
    Stop,
}

/// What [`Trainer::fit`](super::Trainer::fit) is about to do, for
/// [`Callback::on_fit_start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FitStart {
    /// The first epoch it runs (from 0; more than 0 when a trainer goes on, or resumed).
    pub first_epoch: usize,
    /// The epoch it stops before, unless a callback stops it sooner.
    pub end_epoch: usize,
    /// Whether it evaluates a validation set after every epoch.
    pub validation: bool,
}

/// The end of an epoch of [`Trainer::fit`](super::Trainer::fit), for
/// [`Callback::on_epoch_end`]: what the epoch measured, and the network.
pub struct EpochEnd<'a> {
    record: &'a EpochRecord,
    net: &'a dyn Weights,
}

/// The network, for a callback that keeps or reads its weights.
trait Weights {
    fn save(&self, path: &Path) -> Result<()>;
    fn params(&self) -> &ParamStore;
    fn buffers(&self) -> &ParamStore;
    fn name(&self) -> &'static str;
}

impl<N: Network> Weights for N {
    fn save(&self, path: &Path) -> Result<()> {
        Network::save(self, path)
    }
    fn params(&self) -> &ParamStore {
        Network::params(self)
    }
    fn buffers(&self) -> &ParamStore {
        Network::buffers(self)
    }
    fn name(&self) -> &'static str {
        N::NAME
    }
}

impl<'a> EpochEnd<'a> {
    pub(super) fn new<N: Network>(record: &'a EpochRecord, net: &'a N) -> Self {
        EpochEnd { record, net }
    }

    /// What the epoch measured.
    pub fn record(&self) -> &EpochRecord {
        self.record
    }

    /// The epoch (from 0).
    pub fn epoch(&self) -> usize {
        self.record.train.epoch
    }

    /// `metric`'s value this epoch; `None` for a validation metric without a validation set.
    pub fn metric(&self, metric: Metric) -> Option<f32> {
        let v = self.record.validation.as_ref();
        match metric {
            Metric::TrainLoss => Some(self.record.train.loss),
            Metric::TrainAccuracy => Some(self.record.train.accuracy),
            Metric::ValidationLoss => v.map(|v| v.loss),
            Metric::ValidationAccuracy => v.map(|v| v.accuracy()),
        }
    }

    /// Saves the network's weights to `path`, as [`Network::save`] does (atomically).
    ///
    /// # Errors
    /// As [`Network::save`].
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        self.net.save(path.as_ref())
    }

    /// The network's parameters.
    pub fn params(&self) -> &ParamStore {
        self.net.params()
    }

    /// The network's buffers (batch norm's running statistics).
    pub fn buffers(&self) -> &ParamStore {
        self.net.buffers()
    }

    /// The network's name.
    pub fn network(&self) -> &'static str {
        self.net.name()
    }
}

/// Code that [`Trainer::fit`](super::Trainer::fit) runs after every epoch, registered with
/// [`Fit::callback`](super::Fit::callback): it sees what the epoch measured and the network,
/// and may stop training.
///
/// After each epoch, `fit` evaluates the validation set, updates the schedule, then calls
/// every callback in the order they were registered (all of them, even when one says
/// [`Control::Stop`]), then writes the metrics log's row and the checkpoint, and stops if any
/// callback said so. A callback with state that should survive a resume gives it as text from
/// [`state`](Callback::state); checkpoints keep it and [`restore`](Callback::restore) gets it
/// back in the resumed run.
///
/// # Example
///
/// A callback that stops once the training accuracy reaches a target:
///
/// ```
/// use striate::prelude::*;
/// use striate::train::{Callback, Control, EpochEnd, Metric};
///
/// struct StopAt(f32);
///
/// impl Callback for StopAt {
///     fn on_epoch_end(&mut self, end: &EpochEnd<'_>) -> striate::Result<Control> {
///         let reached = end.metric(Metric::TrainAccuracy).is_some_and(|a| a >= self.0);
///         Ok(if reached { Control::Stop } else { Control::Continue })
///     }
/// }
///
/// network! {
///     struct Classifier { input: [1, 4, 4], flatten, fc: linear(2) }
/// }
///
/// let images: Vec<f32> = (0..128).map(|i| if (i / 16) % 2 == 0 { 0.0 } else { 1.0 }).collect();
/// let data = Dataset::new(images, vec![0, 1, 0, 1, 0, 1, 0, 1], [1, 4, 4], 2)?;
/// let mut net = Classifier::init(0);
/// let mut trainer = Trainer::new(&mut net, Sgd::new(0.5));
/// let history = trainer.fit(&data, Fit::epochs(50).batch(2).callback(StopAt(1.0)))?;
/// assert!(history.epochs().len() < 50);
/// assert_eq!(history.stopped_early(), Some(history.epochs().len() - 1));
/// # Ok::<(), striate::Error>(())
/// ```
pub trait Callback {
    /// Called once before the first epoch; an error stops `fit` before it trains (a callback
    /// that needs a validation set says so here).
    ///
    /// # Errors
    /// Whatever the callback refuses, typically [`Error::Config`].
    fn on_fit_start(&mut self, start: &FitStart) -> Result<()> {
        let _ = start;
        Ok(())
    }

    /// Called after every epoch.
    ///
    /// # Errors
    /// An error ends `fit` with it (this epoch's checkpoint is not written).
    fn on_epoch_end(&mut self, end: &EpochEnd<'_>) -> Result<Control>;

    /// The callback's state, as text for a checkpoint (JSON, say); `None` (the default) for a
    /// callback without state.
    fn state(&self) -> Option<String> {
        None
    }

    /// Puts back a state that [`state`](Callback::state) gave, when a run resumes.
    ///
    /// # Errors
    /// [`Error::Config`] (or another) when the text is not a state of this callback.
    fn restore(&mut self, state: &str) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

impl<C: Callback + ?Sized> Callback for &mut C {
    fn on_fit_start(&mut self, start: &FitStart) -> Result<()> {
        (**self).on_fit_start(start)
    }
    fn on_epoch_end(&mut self, end: &EpochEnd<'_>) -> Result<Control> {
        (**self).on_epoch_end(end)
    }
    fn state(&self) -> Option<String> {
        (**self).state()
    }
    fn restore(&mut self, state: &str) -> Result<()> {
        (**self).restore(state)
    }
}

/// A number each epoch of [`Trainer::fit`](super::Trainer::fit) measures, for
/// [`EarlyStopping`] and [`SaveBest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// The mean training loss.
    TrainLoss,
    /// The training accuracy.
    TrainAccuracy,
    /// The validation loss ([`Fit::validation`](super::Fit::validation) needed).
    ValidationLoss,
    /// The validation accuracy ([`Fit::validation`](super::Fit::validation) needed).
    ValidationAccuracy,
}

impl Metric {
    /// Whether lower is better (losses) or higher (accuracies).
    pub fn mode(self) -> PlateauMode {
        match self {
            Metric::TrainLoss | Metric::ValidationLoss => PlateauMode::Min,
            Metric::TrainAccuracy | Metric::ValidationAccuracy => PlateauMode::Max,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Metric::TrainLoss => "the training loss",
            Metric::TrainAccuracy => "the training accuracy",
            Metric::ValidationLoss => "the validation loss",
            Metric::ValidationAccuracy => "the validation accuracy",
        }
    }

    fn needs_validation(self) -> bool {
        matches!(self, Metric::ValidationLoss | Metric::ValidationAccuracy)
    }
}

/// The best value of a metric so far, as [`EarlyStopping`] and [`SaveBest`] track it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Best {
    metric: Metric,
    mode: PlateauMode,
    min_delta: f32,
    state: BestState,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct BestState {
    /// The best value and its epoch, as bits (exact, NaN-free JSON).
    best: Option<(u32, usize)>,
    /// Epochs since the best one.
    wait: usize,
    stopped: Option<usize>,
}

impl Best {
    fn new(metric: Metric) -> Self {
        Best {
            metric,
            mode: metric.mode(),
            min_delta: 0.0,
            state: BestState::default(),
        }
    }

    fn check(&self, what: &'static str, start: &FitStart) -> Result<()> {
        if !(self.min_delta >= 0.0 && self.min_delta.is_finite()) {
            return Err(Error::Config {
                name: "min_delta",
                reason: format!(
                    "expected a finite value of at least 0, found {}",
                    self.min_delta
                ),
            });
        }
        if self.metric.needs_validation() && !start.validation {
            return Err(Error::Config {
                name: what,
                reason: format!(
                    "it watches {}, but fit has no validation set; give one with \
                     `Fit::validation`, or watch a training metric",
                    self.metric.name()
                ),
            });
        }
        Ok(())
    }

    /// Records this epoch's value; true when it is the best so far (by more than
    /// `min_delta`). A NaN value is never the best.
    fn observe(&mut self, end: &EpochEnd<'_>) -> Result<bool> {
        let value = end.metric(self.metric).ok_or_else(|| Error::Config {
            name: "monitored metric",
            reason: format!("{} was not measured this epoch", self.metric.name()),
        })?;
        let better = match self.state.best {
            None => !value.is_nan(),
            Some((bits, _)) => {
                let best = f32::from_bits(bits);
                match self.mode {
                    PlateauMode::Min => value < best - self.min_delta,
                    PlateauMode::Max => value > best + self.min_delta,
                }
            }
        };
        if better {
            self.state.best = Some((value.to_bits(), end.epoch()));
            self.state.wait = 0;
        } else {
            self.state.wait += 1;
        }
        Ok(better)
    }

    fn best(&self) -> Option<(f32, usize)> {
        self.state
            .best
            .map(|(bits, epoch)| (f32::from_bits(bits), epoch))
    }

    fn saved(&self) -> Option<String> {
        serde_json::to_string(&self.state).ok()
    }

    fn load(&mut self, what: &'static str, text: &str) -> Result<()> {
        self.state = serde_json::from_str(text).map_err(|e| Error::Config {
            name: what,
            reason: format!("the checkpoint's state `{text}` is not this callback's: {e}"),
        })?;
        Ok(())
    }
}

/// Stops training when a metric has not improved for `patience` epochs, as Keras'
/// `EarlyStopping` and Lightning's do.
///
/// An epoch improves on the best so far when its value is lower by more than
/// [`min_delta`](EarlyStopping::min_delta) (higher, for accuracies; see
/// [`mode`](EarlyStopping::mode)). Defaults: patience 3, `min_delta` 0, the mode the metric
/// implies. The weights stay those of the last epoch; pair it with [`SaveBest`] to keep the
/// best ones.
///
/// # Example
///
/// ```
/// use striate::prelude::*;
/// use striate::train::{EarlyStopping, Metric, SaveBest};
///
/// network! {
///     struct Digits { input: [1, 28, 28], flatten, fc: linear(10) }
/// }
///
/// let (train, valid) = Mnist::builtin().train.take(600).split_stratified(0.2, 1)?;
/// let best = std::env::temp_dir().join(format!("striate-doc-best-{}.safetensors", std::process::id()));
/// let mut stop = EarlyStopping::new(Metric::ValidationLoss).patience(2).min_delta(1e-3);
/// let mut net = Digits::init(0);
/// let mut trainer = Trainer::new(&mut net, Sgd::new(0.5));
/// let options = Fit::epochs(40)
///     .validation(&valid)
///     .callback(&mut stop)
///     .callback(SaveBest::new(&best, Metric::ValidationLoss));
/// let history = trainer.fit(&train, options)?;
///
/// let (loss, epoch) = stop.best().unwrap();
/// assert_eq!(history.epochs()[epoch].validation.as_ref().unwrap().loss, loss);
/// if let Some(stopped) = stop.stopped_epoch() {
///     assert_eq!(stopped, epoch + 2); // two epochs without improvement
/// }
/// let mut best_net = Digits::init(1);
/// best_net.load(&best)?;
/// assert_eq!(evaluate(&best_net, &valid, 32)?.loss, loss); // the batch fit evaluates with
/// # std::fs::remove_file(&best).unwrap();
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct EarlyStopping {
    best: Best,
    patience: usize,
}

impl EarlyStopping {
    /// Watches `metric`, with patience 3 and `min_delta` 0.
    pub fn new(metric: Metric) -> Self {
        EarlyStopping {
            best: Best::new(metric),
            patience: 3,
        }
    }

    /// Stops after `epochs` epochs in a row without improvement (0 and 1 both stop at the
    /// first, as in Keras).
    pub fn patience(self, epochs: usize) -> Self {
        EarlyStopping {
            patience: epochs,
            ..self
        }
    }

    /// The least change that counts as an improvement (default 0). A negative or non-finite
    /// value is an [`Error::Config`] when `fit` starts.
    pub fn min_delta(mut self, delta: f32) -> Self {
        self.best.min_delta = delta;
        self
    }

    /// Whether lower ([`PlateauMode::Min`]) or higher ([`PlateauMode::Max`]) is better,
    /// instead of what the metric implies ([`Metric::mode`]).
    pub fn mode(mut self, mode: PlateauMode) -> Self {
        self.best.mode = mode;
        self
    }

    /// The best value so far and its epoch.
    pub fn best(&self) -> Option<(f32, usize)> {
        self.best.best()
    }

    /// The epoch after which it stopped training, if it did.
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.best.state.stopped
    }
}

impl Callback for EarlyStopping {
    fn on_fit_start(&mut self, start: &FitStart) -> Result<()> {
        self.best.check("early stopping", start)
    }

    fn on_epoch_end(&mut self, end: &EpochEnd<'_>) -> Result<Control> {
        let better = self.best.observe(end)?;
        if !better && self.best.state.wait >= self.patience {
            self.best.state.stopped = Some(end.epoch());
            return Ok(Control::Stop);
        }
        Ok(Control::Continue)
    }

    fn state(&self) -> Option<String> {
        self.best.saved()
    }

    fn restore(&mut self, state: &str) -> Result<()> {
        self.best.load("early stopping", state)
    }
}

/// Saves the network's weights to a file whenever a metric reaches its best so far (as
/// Keras' `ModelCheckpoint(save_best_only=True)`), with [`Network::save`]: atomically, so the
/// file always holds whole weights of the best epoch yet. Load them with [`Network::load`].
///
/// See [`EarlyStopping`] for an example.
#[derive(Clone, Debug, PartialEq)]
pub struct SaveBest {
    path: PathBuf,
    best: Best,
}

impl SaveBest {
    /// Saves to `path` whenever `metric` improves (lower for losses, higher for accuracies).
    pub fn new(path: impl Into<PathBuf>, metric: Metric) -> Self {
        SaveBest {
            path: path.into(),
            best: Best::new(metric),
        }
    }

    /// Whether lower or higher is better, instead of what the metric implies.
    pub fn mode(mut self, mode: PlateauMode) -> Self {
        self.best.mode = mode;
        self
    }

    /// The least change that counts as an improvement (default 0).
    pub fn min_delta(mut self, delta: f32) -> Self {
        self.best.min_delta = delta;
        self
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The best value so far and its epoch: the weights in the file.
    pub fn best(&self) -> Option<(f32, usize)> {
        self.best.best()
    }
}

impl Callback for SaveBest {
    fn on_fit_start(&mut self, start: &FitStart) -> Result<()> {
        self.best.check("best weights", start)
    }

    fn on_epoch_end(&mut self, end: &EpochEnd<'_>) -> Result<Control> {
        if self.best.observe(end)? {
            end.save_weights(&self.path)?;
        }
        Ok(Control::Continue)
    }

    fn state(&self) -> Option<String> {
        self.best.saved()
    }

    fn restore(&mut self, state: &str) -> Result<()> {
        self.best.load("best weights", state)
    }
}
