//! [`Trainer::fit`]: several epochs with an optional validation set after each, and the
//! history it returns.

use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use ndarray::Ix2;

use super::callbacks::{Callback, Control, EpochEnd, FitStart};
use super::checkpoint::{Checkpoints, StepCheckpoints};
use super::log::{LogFormat, MetricsLog};
use super::{check_data, evaluate, EpochReport, Evaluation, Trainer};
use crate::data::augment::Augmentation;
use crate::data::Dataset;
use crate::optim::Optimizer;
use crate::{Error, Network, Result};

/// How [`Trainer::fit`] trains: the number of epochs, the batch size, a validation set,
/// whether to show progress, and what to write and run along the way: a metrics log,
/// checkpoints and callbacks.
///
/// `Fit::default()` is 10 epochs in batches of 32, no validation set, progress shown on a
/// terminal, no log, checkpoints or callbacks. Start from [`Fit::epochs(n)`](Fit::epochs), the
/// defaults with `n` epochs (or [`Fit::until(n)`](Fit::until), until `n` epochs are done in
/// all), and change the rest with [`batch`](Fit::batch), [`validation`](Fit::validation),
/// [`progress`](Fit::progress), [`log`](Fit::log), [`checkpoints`](Fit::checkpoints) and
/// [`callback`](Fit::callback).
///
/// # Example
///
/// ```
/// use striate::prelude::*;
/// use striate::train::{Checkpoints, EarlyStopping, Metric};
///
/// let valid = Mnist::builtin().test.take(100);
/// let options = Fit::epochs(5).batch(64).validation(&valid).progress(false);
/// assert_eq!((options.epoch_count(), options.batch_size()), (5, 64));
/// assert_eq!(Fit::default().epoch_count(), 10);
///
/// // Everything at once: a CSV log, a checkpoint every 100 steps, early stopping.
/// let options = Fit::until(20)
///     .validation(&valid)
///     .log("runs/metrics.csv")
///     .checkpoints(Checkpoints::new("runs/checkpoints").every_steps(100))
///     .callback(EarlyStopping::new(Metric::ValidationAccuracy).patience(4));
/// assert_eq!(options.epoch_count(), 20);
/// ```
pub struct Fit<'v> {
    epochs: Epochs,
    batch: usize,
    validation: Option<&'v Dataset>,
    progress: bool,
    summary: bool,
    log: Option<(PathBuf, Option<LogFormat>)>,
    checkpoints: Option<Checkpoints>,
    callbacks: Vec<Box<dyn Callback + 'v>>,
}

/// How many epochs [`Fit`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Epochs {
    /// This many, numbered on from the trainer's.
    More(usize),
    /// Until the trainer has done this many in all.
    Until(usize),
}

impl fmt::Debug for Fit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fit")
            .field("epochs", &self.epochs)
            .field("batch", &self.batch)
            .field("validation", &self.validation.map(Dataset::len))
            .field("progress", &self.progress)
            .field("summary", &self.summary)
            .field("log", &self.log)
            .field("checkpoints", &self.checkpoints)
            .field("callbacks", &self.callbacks.len())
            .finish()
    }
}

impl Default for Fit<'_> {
    fn default() -> Self {
        Fit {
            epochs: Epochs::More(10),
            batch: 32,
            validation: None,
            progress: true,
            summary: true,
            log: None,
            checkpoints: None,
            callbacks: Vec::new(),
        }
    }
}

impl<'v> Fit<'v> {
    /// The defaults, with `epochs` epochs.
    pub fn epochs(epochs: usize) -> Fit<'v> {
        Fit {
            epochs: Epochs::More(epochs),
            ..Fit::default()
        }
    }

    /// The defaults, training until the trainer has done `epochs` epochs in all (none if it
    /// already has): what a resumed run asks for, so that it ends where the run it continues
    /// would have ended. An epoch that a checkpoint stopped inside counts as not done.
    pub fn until(epochs: usize) -> Fit<'v> {
        Fit {
            epochs: Epochs::Until(epochs),
            ..Fit::default()
        }
    }

    /// Batches of `batch` samples (the last one smaller when `batch` does not divide the
    /// training set); evaluation on the validation set uses the same size.
    pub fn batch(self, batch: usize) -> Self {
        Fit { batch, ..self }
    }

    /// Evaluates the network on `data` after every epoch (in evaluation mode, without
    /// training on it).
    pub fn validation(self, data: &'v Dataset) -> Self {
        Fit {
            validation: Some(data),
            ..self
        }
    }

    /// Whether to show a progress bar during each epoch and a line after it, on standard
    /// error when it is a terminal (default `true`; nothing is shown elsewhere).
    pub fn progress(self, progress: bool) -> Self {
        Fit { progress, ..self }
    }

    /// Whether the line after each epoch is shown with the progress bar (default `true`);
    /// `false` keeps the bar for a program that prints its own line from a
    /// [`Callback`](crate::train::Callback).
    pub fn summary(self, summary: bool) -> Self {
        Fit { summary, ..self }
    }

    /// Writes a metrics log to `path`, one row per epoch, flushed as each epoch ends (a killed
    /// run's log holds its finished epochs): `epoch` (from 0), `step` (steps done at its
    /// end), `lr` (its first step's rate), `loss`, `accuracy`, `val_loss` and `val_accuracy`
    /// (empty, or `null`, without a validation set), `seconds` (validation included) and
    /// `images_per_sec` (training). CSV for a `.csv` file, JSON lines for `.jsonl`, `.ndjson`
    /// or `.json` ([`LogFormat::from_path`]; any other name is an [`Error::Config`] when
    /// `fit` starts).
    ///
    /// A fit that starts at epoch 0 begins the file afresh; one that goes on from epoch `e`
    /// (resumed, or a second `fit`) keeps its rows of epochs before `e` and replaces the rest.
    pub fn log(self, path: impl Into<PathBuf>) -> Self {
        Fit {
            log: Some((path.into(), None)),
            ..self
        }
    }

    /// [`log`](Fit::log) in the format given, whatever the file's name.
    pub fn log_as(self, path: impl Into<PathBuf>, format: LogFormat) -> Self {
        Fit {
            log: Some((path.into(), Some(format))),
            ..self
        }
    }

    /// Writes training checkpoints as `checkpoints` says (after every epoch, or every few
    /// steps, keeping the newest few), for [`Trainer::resume`].
    pub fn checkpoints(self, checkpoints: Checkpoints) -> Self {
        Fit {
            checkpoints: Some(checkpoints),
            ..self
        }
    }

    /// Runs `callback` after every epoch, after those registered before it. Give a callback
    /// by value, or as `&mut callback` to read it after `fit` (the best epoch of an
    /// [`EarlyStopping`](super::EarlyStopping), say).
    pub fn callback(mut self, callback: impl Callback + 'v) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// The number of epochs (with [`Fit::until`], the count to reach).
    pub fn epoch_count(&self) -> usize {
        match self.epochs {
            Epochs::More(n) | Epochs::Until(n) => n,
        }
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch
    }
}

/// What one epoch of [`Trainer::fit`] measured.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EpochRecord {
    /// The training pass: epoch number, mean loss, training accuracy, learning rate, time.
    pub train: EpochReport,
    /// Loss, accuracy and confusion matrix on the validation set, if [`Fit::validation`]
    /// gave one.
    pub validation: Option<Evaluation>,
    /// Wall-clock seconds of the epoch, validation included.
    pub seconds: f64,
    /// Steps done by the epoch's end, over the whole run ([`Trainer::steps_done`]).
    pub step: u64,
}

/// What [`Trainer::fit`] measured, one [`EpochRecord`] per epoch, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    epochs: Vec<EpochRecord>,
    stopped_early: Option<usize>,
}

impl History {
    /// Every epoch's record, in order.
    pub fn epochs(&self) -> &[EpochRecord] {
        &self.epochs
    }

    /// The last epoch's record (`None` after zero epochs).
    pub fn last(&self) -> Option<&EpochRecord> {
        self.epochs.last()
    }

    /// The mean training loss of each epoch.
    pub fn losses(&self) -> Vec<f32> {
        self.epochs.iter().map(|e| e.train.loss).collect()
    }

    /// The epoch after which a [`Callback`] stopped training, if one did.
    pub fn stopped_early(&self) -> Option<usize> {
        self.stopped_early
    }

    /// The validation accuracy of each epoch (empty without a validation set).
    pub fn validation_accuracies(&self) -> Vec<f32> {
        self.epochs
            .iter()
            .filter_map(|e| e.validation.as_ref().map(Evaluation::accuracy))
            .collect()
    }
}

impl<N: Network<OutputDim = Ix2>, O: Optimizer> Trainer<'_, N, O> {
    /// Trains for [`Fit::epochs`] epochs over `train` in shuffled batches, evaluating on the
    /// validation set after each epoch if one is given; returns what every epoch measured.
    ///
    /// Epochs are numbered on from the trainer's last one ([`Trainer::epochs_done`]), so a
    /// second `fit` continues the learning-rate schedule and the shuffles where the first
    /// stopped, and a fit after [`Trainer::resume`] where the checkpoint was written. Each
    /// epoch is a [`Trainer::epoch`] followed by [`Trainer::report_metric`] with the
    /// validation loss (the training loss without a validation set), then the callbacks, the
    /// metrics log's row and the epoch's checkpoint; the same network trained by `fit` or by a
    /// hand-written loop over those ends with the same parameters.
    ///
    /// # Errors
    /// Checked before the first epoch: [`Error::Config`] for a zero batch, an invalid
    /// schedule, optimizer or clipping bound, a log file of no known format, checkpoint
    /// settings of zero, a callback's refusal ([`Callback::on_fit_start`]) or callbacks that
    /// do not match the states a resumed checkpoint holds; [`Error::Shape`] when the training
    /// or the validation set does not fit the network (its samples are not the network's
    /// input, or it has more classes than the network has outputs); [`Error::Io`] when the
    /// log or the checkpoint directory cannot be written. During training:
    /// [`Error::Diverged`] from the divergence guard (see
    /// [`Trainer::guard_divergence`]; the epochs before it keep their log rows and
    /// checkpoints), and errors of callbacks and writes.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::prelude::*;
    ///
    /// network! {
    ///     struct Digits { input: [1, 28, 28], flatten, fc: linear(10) }
    /// }
    ///
    /// let mnist = Mnist::builtin();
    /// let (train, valid) = mnist.train.take(1_000).split_stratified(0.2, 1)?;
    /// let mut net = Digits::init(0);
    /// let mut trainer = Trainer::new(&mut net, Sgd::new(0.1));
    /// let history = trainer.fit(&train, Fit::epochs(3).validation(&valid))?;
    ///
    /// assert_eq!(history.epochs().len(), 3);
    /// let last = history.last().unwrap();
    /// assert!(last.train.loss < history.epochs()[0].train.loss);
    /// assert!(last.validation.as_ref().unwrap().accuracy() > 0.7);
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn fit(&mut self, train: &Dataset, mut options: Fit<'_>) -> Result<History> {
        Error::check_batch(options.batch)?;
        self.check_settings()?;
        check_data::<N>(train)?;
        if let Some(valid) = options.validation {
            check_data::<N>(valid)?;
        }
        let first_epoch = self.epochs_done;
        if let Some(p) = &self.position {
            if p.epoch == first_epoch {
                p.check(options.batch, train.len())?;
            }
        }
        let end_epoch = match options.epochs {
            Epochs::More(n) => first_epoch.saturating_add(n),
            Epochs::Until(n) => n.max(first_epoch),
        };
        // Distributed, only rank 0 shows progress and writes the log and the checkpoints.
        if !super::distributed::is_root(&self.distributed) {
            options.progress = false;
            options.log = None;
            options.checkpoints = None;
        }
        let log_format = match &options.log {
            Some((_, Some(format))) => Some(*format),
            Some((path, None)) => Some(LogFormat::from_path(path)?),
            None => None,
        };
        if let Some(checkpoints) = &options.checkpoints {
            checkpoints.prepare()?;
        }
        self.restore_callbacks(&mut options.callbacks)?;
        let start = FitStart {
            first_epoch,
            end_epoch,
            validation: options.validation.is_some(),
        };
        for callback in &mut options.callbacks {
            callback.on_fit_start(&start)?;
        }
        let mut log = match (&options.log, log_format) {
            (Some((path, _)), Some(format)) => Some(MetricsLog::open(path, format, first_epoch)?),
            _ => None,
        };
        let every_steps = options.checkpoints.clone().filter(|c| c.steps().is_some());
        self.step_checkpoints = every_steps.map(|config| StepCheckpoints {
            config,
            callbacks: callback_states(&options.callbacks),
        });
        let result = self.fit_epochs(train, &mut options, end_epoch, log.as_mut());
        self.step_checkpoints = None;
        result
    }

    /// Puts the states of a resumed checkpoint's callbacks into `callbacks`.
    fn restore_callbacks(&mut self, callbacks: &mut [Box<dyn Callback + '_>]) -> Result<()> {
        let states = std::mem::take(&mut self.callback_states);
        if states.is_empty() {
            return Ok(());
        }
        if states.len() != callbacks.len() {
            let count = states.len();
            self.callback_states = states;
            return Err(Error::Config {
                name: "callbacks",
                reason: format!(
                    "the resumed checkpoint holds the states of {count} callbacks, this fit \
                     has {}; register the callbacks of the run that wrote it, in its order",
                    callbacks.len()
                ),
            });
        }
        for (callback, state) in callbacks.iter_mut().zip(&states) {
            if let Some(state) = state {
                callback.restore(state)?;
            }
        }
        Ok(())
    }

    fn fit_epochs(
        &mut self,
        train: &Dataset,
        options: &mut Fit<'_>,
        end_epoch: usize,
        mut log: Option<&mut MetricsLog>,
    ) -> Result<History> {
        let show = options.progress && std::io::stderr().is_terminal();
        let mut history = History::default();
        while self.epochs_done < end_epoch {
            let start = Instant::now();
            let report = self.epoch(train, options.batch, self.epochs_done(), show)?;
            let validation = options
                .validation
                .map(|valid| evaluate(self.net(), valid, options.batch))
                .transpose()?;
            let metric = validation.as_ref().map_or(report.loss, |v| v.loss);
            self.report_metric(metric)?;
            let record = EpochRecord {
                train: report,
                validation,
                seconds: start.elapsed().as_secs_f64(),
                step: self.steps_done,
            };
            let mut stop = false;
            let end = EpochEnd::new(&record, &*self.net);
            for callback in &mut options.callbacks {
                stop |= callback.on_epoch_end(&end)? == Control::Stop;
            }
            if let Some(log) = log.as_deref_mut() {
                log.write(&record)?;
            }
            let states = callback_states(&options.callbacks);
            match &options.checkpoints {
                Some(c) if c.steps().is_none() => {
                    let seed = self.augmentation.as_ref().map(Augmentation::seed);
                    c.save(self, None, seed, &states)?;
                }
                _ => {}
            }
            if let Some(steps) = &mut self.step_checkpoints {
                steps.callbacks = states;
            }
            if show && options.summary {
                eprintln!(
                    "{}",
                    summary_line(&record, self.epochs_done(), options.batch)
                );
            }
            history.epochs.push(record);
            if stop {
                history.stopped_early = Some(self.epochs_done - 1);
                break;
            }
        }
        Ok(history)
    }
}

/// What each callback would keep in a checkpoint.
fn callback_states(callbacks: &[Box<dyn Callback + '_>]) -> Vec<Option<String>> {
    callbacks.iter().map(|c| c.state()).collect()
}

/// `epoch 3: lr 1.000e-2, loss 0.4112, accuracy 88.20 %, validation loss 0.3901, accuracy
/// 89.00 % (1.2 s, batch 32)`.
fn summary_line(record: &EpochRecord, epochs_done: usize, batch: usize) -> String {
    let t = &record.train;
    let mut line = format!(
        "epoch {epochs_done}: lr {:.3e}, loss {:.4}, accuracy {:.2} %",
        t.lr,
        t.loss,
        100.0 * t.accuracy
    );
    if let Some(v) = &record.validation {
        line.push_str(&format!(
            ", validation loss {:.4}, accuracy {:.2} %",
            v.loss,
            100.0 * v.accuracy()
        ));
    }
    line.push_str(&format!(" ({:.1} s, batch {})", record.seconds, batch));
    line
}
