//! [`Trainer::fit`]: several epochs with an optional validation set after each, and the
//! history it returns.

use std::io::IsTerminal;
use std::time::Instant;

use ndarray::Ix2;

use super::{check_data, evaluate, EpochReport, Evaluation, Trainer};
use crate::data::Dataset;
use crate::optim::Optimizer;
use crate::{Error, Network, Result};

/// How [`Trainer::fit`] trains: the number of epochs, the batch size, a validation set and
/// whether to show progress.
///
/// `Fit::default()` is 10 epochs in batches of 32, no validation set, progress shown on a
/// terminal. Start from [`Fit::epochs(n)`](Fit::epochs), the defaults with `n` epochs, and
/// change the rest with [`batch`](Fit::batch), [`validation`](Fit::validation) and
/// [`progress`](Fit::progress).
///
/// # Example
///
/// ```
/// use striate::prelude::*;
///
/// let valid = Mnist::builtin().test.take(100);
/// let options = Fit::epochs(5).batch(64).validation(&valid).progress(false);
/// assert_eq!((options.epoch_count(), options.batch_size()), (5, 64));
/// assert_eq!(Fit::default().epoch_count(), 10);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Fit<'v> {
    epochs: usize,
    batch: usize,
    validation: Option<&'v Dataset>,
    progress: bool,
}

impl Default for Fit<'_> {
    fn default() -> Self {
        Fit {
            epochs: 10,
            batch: 32,
            validation: None,
            progress: true,
        }
    }
}

impl<'v> Fit<'v> {
    /// The defaults, with `epochs` epochs.
    pub fn epochs(epochs: usize) -> Fit<'v> {
        Fit {
            epochs,
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

    /// The number of epochs.
    pub fn epoch_count(&self) -> usize {
        self.epochs
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
}

/// What [`Trainer::fit`] measured, one [`EpochRecord`] per epoch, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    epochs: Vec<EpochRecord>,
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
    /// stopped. Each epoch is a [`Trainer::epoch`] followed by
    /// [`Trainer::report_metric`] with the validation loss (the training loss without a
    /// validation set); the same network trained by `fit` or by a hand-written loop over
    /// those ends with the same parameters.
    ///
    /// # Errors
    /// Checked before the first epoch: [`Error::Config`] for a zero batch, an invalid
    /// schedule, optimizer or clipping bound; [`Error::Shape`] when the training or the validation set does not fit the
    /// network (its samples are not the network's input, or it has more classes than the
    /// network has outputs).
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
    pub fn fit(&mut self, train: &Dataset, options: Fit<'_>) -> Result<History> {
        Error::check_batch(options.batch)?;
        self.check_settings()?;
        check_data::<N>(train)?;
        if let Some(valid) = options.validation {
            check_data::<N>(valid)?;
        }
        let show = options.progress && std::io::stderr().is_terminal();
        let mut history = History::default();
        for _ in 0..options.epochs {
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
            };
            if show {
                eprintln!("{}", summary_line(&record, self.epochs_done(), options));
            }
            history.epochs.push(record);
        }
        Ok(history)
    }
}

/// `epoch 3: lr 1.000e-2, loss 0.4112, accuracy 88.20 %, validation loss 0.3901, accuracy
/// 89.00 % (1.2 s, batch 32)`.
fn summary_line(record: &EpochRecord, epochs_done: usize, options: Fit<'_>) -> String {
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
    line.push_str(&format!(
        " ({:.1} s, batch {})",
        record.seconds, options.batch
    ));
    line
}
