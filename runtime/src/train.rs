//! The training loop: mini-batch training over a [`Dataset`] with any [`Optimizer`], a
//! learning-rate schedule and a progress bar, and evaluation with a confusion matrix.
//!
//! [`Trainer::fit`] is the easy path: epochs, batch size and a validation set in, a
//! per-epoch [`History`] out. [`Trainer::epoch`] runs one epoch, for a loop of your own;
//! inside it, evaluate through [`Trainer::net`] (the trainer holds the network mutably).
//!
//! ```
//! use striate::prelude::*;
//! use striate::train::{evaluate, Fit, Trainer};
//!
//! network! {
//!     /// Two numbers in, two classes out.
//!     struct Tiny { input: [1, 1, 2], flatten, fc: linear(2) }
//! }
//!
//! // Points left of zero are class 0, right of zero class 1.
//! let xs: Vec<f32> = (0..200).flat_map(|i| [i as f32 / 100.0 - 1.0, 0.5]).collect();
//! let ys: Vec<usize> = (0..200).map(|i| usize::from(i >= 100)).collect();
//! let data = Dataset::new(xs, ys, [1, 1, 2], 2)?;
//! let (train, valid) = data.split_stratified(0.2, 7)?;
//!
//! let mut net = Tiny::init(0);
//! let mut trainer = Trainer::new(&mut net, Sgd::new(0.5).momentum(0.9));
//! let history = trainer.fit(&train, Fit::epochs(10).batch(20).validation(&valid))?;
//! let last = history.last().unwrap();
//! assert!(last.validation.as_ref().unwrap().accuracy() > 0.95, "{last:?}");
//!
//! // The same by hand, going on from epoch 10, with an evaluation after each epoch.
//! for epoch in 10..15 {
//!     let report = trainer.epoch(&train, 20, epoch, false)?;
//!     let eval = evaluate(trainer.net(), &valid, 64)?;
//!     println!("epoch {epoch}: loss {:.3}, validation {:.1} %", report.loss, 100.0 * eval.accuracy());
//! }
//! assert!(evaluate(&net, &data, 64)?.accuracy() > 0.95);
//! # Ok::<(), striate::Error>(())
//! ```

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, ArrayView, ArrayView2, ArrayViewD, Ix2, IxDyn};

use crate::data::augment::Augmentation;
use crate::data::{shuffled_indices, Dataset};
use crate::ops::loss::{check_labels, softmax_cross_entropy};
use crate::optim::{clip_grad_norm, LrSchedule, Optimizer, PlateauTracker, Sgd};
use crate::scores::argmax_rows;
use crate::{Error, Gradients, NetRng, Network, Result, Tape};

mod callbacks;
mod checkpoint;
mod distributed;
mod fit;
mod log;
mod reconstruct;

pub use crate::error::Divergence;
pub use crate::ops::loss::Loss;
pub use callbacks::{Callback, Control, EarlyStopping, EpochEnd, FitStart, Metric, SaveBest};
pub use checkpoint::{Checkpoints, Resumed};
pub use fit::{EpochRecord, Fit, History};
pub use log::LogFormat;
pub use reconstruct::{reconstruction_loss, Reconstructs, SameShape};

use checkpoint::{EpochPosition, StepCheckpoints};

/// Mean softmax cross-entropy of `logits` `[N, K]` against class `labels`, and its gradient
/// with respect to the logits (already divided by `N`).
///
/// Allocates the gradient; [`Trainer`] reuses one instead.
///
/// # Errors
/// [`Error::LabelCount`], [`Error::LabelOutOfRange`] or [`Error::EmptyBatch`]; and
/// [`Error::NonFinite`] for a NaN or infinite logit, naming its sample and class, where the
/// loss would be NaN. (A training step does not check: its divergence guard reports a NaN
/// loss as [`Error::Diverged`], with the step and the learning rate.)
///
/// ```
/// use striate::{cross_entropy, ndarray::array};
/// let (loss, d) = cross_entropy(array![[0.0f32, 0.0]].view(), &[1])?;
/// assert!((loss - std::f32::consts::LN_2).abs() < 1e-6);
/// assert_eq!(d, array![[0.5f32, -0.5]]);
///
/// let nan = cross_entropy(array![[0.0f32, f32::NAN]].view(), &[1]);
/// assert!(matches!(nan, Err(striate::Error::NonFinite { index: 1, .. })));
/// # Ok::<(), striate::Error>(())
/// ```
pub fn cross_entropy(logits: ArrayView2<'_, f32>, labels: &[usize]) -> Result<(f32, Array2<f32>)> {
    let logits = logits.as_standard_layout();
    let (n, k) = logits.dim();
    let flat = logits.as_slice().expect("standard layout is contiguous");
    crate::ops::loss::check_finite_logits(flat, k)?;
    let mut d = Array2::zeros((n, k));
    let loss = softmax_cross_entropy(
        d.as_slice_mut().expect("fresh array is contiguous"),
        logits.as_slice().expect("standard layout is contiguous"),
        labels,
        k,
    )?;
    Ok((loss, d))
}

/// What one training step measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Mean loss over the batch.
    pub loss: f32,
    /// Samples whose largest logit was their label.
    pub correct: usize,
    /// Samples in the batch.
    pub samples: usize,
}

/// What one epoch measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochReport {
    /// The epoch (from 0).
    pub epoch: usize,
    /// Mean of the batches' losses.
    pub loss: f32,
    /// Share of training samples classified right while training.
    pub accuracy: f32,
    /// Learning rate used (its first step's, when the schedule counts steps).
    pub lr: f32,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_sec: f64,
}

/// The result of [`evaluate`]: loss, accuracy and confusion matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean loss over the samples.
    pub loss: f32,
    /// Samples classified right.
    pub correct: usize,
    /// Samples seen.
    pub total: usize,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

impl Evaluation {
    /// `correct / total` (0 for no samples).
    pub fn accuracy(&self) -> f32 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f32 / self.total as f32
        }
    }

    /// The confusion matrix as a text table, rows the true class, columns the prediction.
    pub fn confusion_table(&self) -> String {
        let k = self.confusion.len();
        let width = self
            .confusion
            .iter()
            .flatten()
            .map(|v| v.to_string().len())
            .max()
            .unwrap_or(1)
            .max(k.to_string().len());
        let mut out = format!("{:>6} | predicted\n", "true");
        out.push_str(&format!("{:>6} |", ""));
        for c in 0..k {
            out.push_str(&format!(" {c:>width$}"));
        }
        out.push('\n');
        out.push_str(&format!(
            "{}-+{}\n",
            "-".repeat(6),
            "-".repeat(k * (width + 1))
        ));
        for (t, row) in self.confusion.iter().enumerate() {
            out.push_str(&format!("{t:>6} |"));
            for v in row {
                out.push_str(&format!(" {v:>width$}"));
            }
            out.push('\n');
        }
        out
    }
}

fn input_view<'a, N: Network>(x: &'a [f32], n: usize) -> Result<ArrayView<'a, f32, N::InputDim>> {
    let mut shape = vec![n];
    shape.extend_from_slice(N::INPUT_SHAPE);
    let view = ArrayViewD::from_shape(IxDyn(&shape), x).map_err(|_| Error::Shape {
        what: format!("batch for {}", N::NAME),
        expected: shape.clone(),
        found: vec![x.len()],
    })?;
    view.into_dimensionality::<N::InputDim>()
        .map_err(|_| Error::shape(format!("batch for {}", N::NAME), &shape, &[x.len()]))
}

fn check_data<N: Network>(data: &Dataset) -> Result<usize> {
    // An empty dataset would report a loss and an accuracy of 0 for every epoch.
    if data.is_empty() {
        return Err(Error::EmptyBatch {
            what: format!(
                "dataset for {} (training and evaluation need at least one sample)",
                N::NAME
            ),
        });
    }
    let per_sample: usize = N::INPUT_SHAPE.iter().product();
    if data.sample_len() != per_sample {
        return Err(Error::shape(
            format!("samples of the dataset for {}", N::NAME),
            N::INPUT_SHAPE,
            &data.sample_shape(),
        ));
    }
    let classes = N::OUTPUT_SHAPE.iter().product::<usize>();
    if N::OUTPUT_SHAPE.len() != 1 || classes < data.classes() {
        return Err(Error::shape(
            format!("output of {} (one logit per class of the dataset)", N::NAME),
            &[data.classes()],
            N::OUTPUT_SHAPE,
        ));
    }
    Ok(classes)
}

/// Classifies every sample of `data` in batches of `batch` (evaluation mode) and counts.
///
/// # Errors
/// [`Error::Shape`] when the dataset's samples are not the network's input or its classes do not
/// fit its output; [`Error::Config`] for a zero batch; [`Error::EmptyBatch`] for a dataset
/// without samples.
pub fn evaluate<N: Network<OutputDim = Ix2>>(
    net: &N,
    data: &Dataset,
    batch: usize,
) -> Result<Evaluation> {
    Error::check_batch(batch)?;
    let classes = check_data::<N>(data)?;
    let mut confusion = vec![vec![0; classes]; classes];
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let mut d_logits = Vec::new();
    let mut loss_sum = 0.0f64;
    let mut correct = 0;
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch) {
        data.gather(chunk, &mut x, &mut y)?;
        let logits = net.forward(input_view::<N>(&x, chunk.len())?)?;
        let logits = logits.as_slice().expect("fresh output is contiguous");
        d_logits.resize(logits.len(), 0.0);
        loss_sum +=
            softmax_cross_entropy(&mut d_logits, logits, &y, classes)? as f64 * chunk.len() as f64;
        for (pred, &truth) in argmax_rows(logits, classes).zip(&y) {
            confusion[truth][pred] += 1;
            correct += usize::from(pred == truth);
        }
    }
    // `check_data` refused an empty dataset.
    let total = data.len();
    Ok(Evaluation {
        loss: (loss_sum / total as f64) as f32,
        correct,
        total,
        confusion,
    })
}

/// Trains a classifier with softmax cross-entropy and an [`Optimizer`] (`O`, [`Sgd`] unless
/// said otherwise), reusing every buffer from one step to the next.
///
/// Each epoch sets the optimizer's learning rate from the [`schedule`](Trainer::schedule);
/// [`clip_grad_norm`](Trainer::clip_grad_norm) bounds the gradients' global norm before
/// each update.
///
/// It holds the network mutably for as long as it lives: reach the network through
/// [`net`](Trainer::net) and [`net_mut`](Trainer::net_mut), the optimizer through
/// [`optimizer`](Trainer::optimizer) and [`optimizer_mut`](Trainer::optimizer_mut), and end
/// the borrow with [`into_inner`](Trainer::into_inner) or by dropping the trainer. The
/// [module's example](crate::train) trains with [`fit`](Trainer::fit) and by hand.
///
/// # Example
///
/// AdamW with a warm-up and cosine annealing, and gradients clipped to norm 1:
///
/// ```
/// use striate::optim::LrSchedule;
/// use striate::prelude::*;
///
/// network! {
///     struct Classifier { input: [1, 4, 4], flatten, fc: linear(2) }
/// }
///
/// let images: Vec<f32> = (0..128).map(|i| if (i / 16) % 2 == 0 { 0.0 } else { 1.0 }).collect();
/// let data = Dataset::new(images, vec![0, 1, 0, 1, 0, 1, 0, 1], [1, 4, 4], 2)?;
/// let mut net = Classifier::init(0);
/// let schedule = LrSchedule::linear(0.2, 1.0, 2).then(2, LrSchedule::cosine(4, 0.0));
/// let mut trainer = Trainer::new(&mut net, AdamW::new(0.05))
///     .schedule(schedule)
///     .clip_grad_norm(1.0);
/// let history = trainer.fit(&data, Fit::epochs(6).batch(4).progress(false))?;
/// let rates: Vec<f32> = history.epochs().iter().map(|e| e.train.lr).collect();
/// assert!((rates[0] - 0.01).abs() < 1e-9 && rates[2] == 0.05 && rates[5] < 0.01, "{rates:?}");
/// assert_eq!(trainer.optimizer().steps(), 12);
/// assert!(history.last().unwrap().train.accuracy == 1.0);
/// # Ok::<(), striate::Error>(())
/// ```
pub struct Trainer<'n, N: Network, O: Optimizer = Sgd> {
    net: &'n mut N,
    /// Epochs run so far: the number of the next epoch [`Trainer::fit`] runs.
    epochs_done: usize,
    opt: O,
    base_lr: f32,
    schedule: LrSchedule,
    /// The running reduce-on-plateau state, for an [`LrSchedule::Plateau`] schedule.
    plateau: Option<PlateauTracker>,
    /// The bound on the gradients' global norm, if any.
    max_grad_norm: Option<f32>,
    /// Whether the schedule counts steps (true) or epochs (false).
    schedule_per_step: bool,
    /// Shuffles of epoch `e` use `seed + e`.
    seed: u64,
    /// Applied to every training batch ([`Augmentation::prefetch`]).
    augmentation: Option<Augmentation>,
    /// Steps applied so far, over every epoch.
    steps_done: u64,
    /// The epoch the steps belong to: the one [`Trainer::epoch`] runs, else the next one.
    current_epoch: usize,
    /// Whether a non-finite loss or gradient norm stops training ([`Error::Diverged`]).
    guard: bool,
    /// The gradient norm past which a step counts as diverged, if any.
    divergence_grad_norm: Option<f32>,
    /// What a step that diverges puts back: batch norm's running statistics, the batch count
    /// and the dropout generator from before its forward pass.
    before_step: BeforeStep,
    /// Where a checkpoint read by [`Trainer::resume`] stopped inside an epoch.
    position: Option<EpochPosition>,
    /// The checkpoints [`Trainer::fit`] writes every few steps, while it runs.
    step_checkpoints: Option<StepCheckpoints>,
    /// Callback states read by [`Trainer::resume`], for the next [`Trainer::fit`].
    callback_states: Vec<Option<String>>,
    tape: Tape,
    grads: Gradients,
    d_logits: Array2<f32>,
    /// The output gradient of [`Trainer::step_to`], grown once.
    d_out: Vec<f32>,
    x: Vec<f32>,
    y: Vec<usize>,
    /// Steps the trainable parameters only (see `Transfer::freeze`).
    frozen_steps: crate::network::FrozenSteps,
    /// Data-parallel training's side, when [`Trainer::distributed`] attached one (feature
    /// `mpi`).
    distributed: Option<distributed::Attached>,
}

impl<'n, N: Network, O: Optimizer> Trainer<'n, N, O> {
    /// A trainer for `net` with `opt`; constant learning rate (the optimizer's), shuffle seed 0,
    /// no gradient clipping.
    ///
    /// # Panics
    /// When [`Trainer::try_new`] fails: the network's gradients cannot be allocated.
    pub fn new(net: &'n mut N, opt: O) -> Self {
        Self::try_new(net, opt).unwrap_or_else(|e| panic!("Trainer::new for {}: {e}", N::NAME))
    }

    /// [`Trainer::new`], with an error instead of a panic when the gradients (one value per
    /// parameter) cannot be allocated.
    ///
    /// # Errors
    /// [`Error::Limit`] when they would take more than
    /// [`Limits::max_alloc_bytes`](crate::Limits); [`Error::Allocation`] when the system
    /// refuses the memory.
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    ///
    /// network! {
    ///     struct Small { input: [4], fc: linear(2) }
    /// }
    ///
    /// let mut net = Small::init(0);
    /// let trainer = Trainer::try_new(&mut net, Sgd::new(0.1))?;
    /// assert_eq!(trainer.steps_done(), 0);
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn try_new(net: &'n mut N, opt: O) -> Result<Self> {
        let grads = net.try_gradients()?;
        let frozen_steps = crate::network::FrozenSteps::new(net.state().frozen.generation());
        Ok(Trainer {
            base_lr: opt.lr(),
            net,
            epochs_done: 0,
            opt,
            schedule: LrSchedule::Constant,
            plateau: None,
            max_grad_norm: None,
            schedule_per_step: false,
            seed: 0,
            augmentation: None,
            steps_done: 0,
            current_epoch: 0,
            guard: true,
            divergence_grad_norm: None,
            before_step: BeforeStep::default(),
            position: None,
            step_checkpoints: None,
            callback_states: Vec::new(),
            tape: Tape::new(),
            grads,
            d_logits: Array2::zeros((0, 0)),
            d_out: Vec::new(),
            x: Vec::new(),
            y: Vec::new(),
            frozen_steps,
            distributed: None,
        })
    }

    /// Trains data-parallel over MPI (feature `mpi`), as one rank of `dist`'s job: rank 0's
    /// parameters and buffers are first broadcast to every rank; then each
    /// [`epoch`](Trainer::epoch) visits this rank's shard of the shuffled order (PyTorch's
    /// `DistributedSampler`, see [`crate::distributed::shard`]), each step averages the
    /// gradients over the ranks (in buckets started during the backward pass) and reports
    /// the whole step's loss and accuracy, and only rank 0 shows progress and writes logs and
    /// checkpoints. With batch `B` on each of `N` ranks, the weights follow those of one
    /// process training with batch `N·B` (batch norm aside, unless
    /// [`sync_batch_norm`](crate::distributed::Distributed::sync_batch_norm)). See
    /// [`crate::distributed`].
    ///
    /// The all-reduce overlaps the backward pass when the pass is not split over threads
    /// (one thread per process, the usual way to run MPI); split, it starts after the pass.
    ///
    /// # Errors
    /// [`Error::Distributed`] when the broadcast fails or times out.
    #[cfg(feature = "mpi")]
    pub fn distributed(mut self, dist: &crate::distributed::Distributed) -> Result<Self> {
        self.distributed = Some(distributed::Attached::new(dist, &mut *self.net)?);
        Ok(self)
    }

    /// The gradient buckets of a distributed trainer, `(start, end)` offsets in the order
    /// their all-reduce starts, and how many the last step started during its backward pass.
    #[cfg(feature = "mpi")]
    pub fn distributed_buckets(&self) -> Option<(Vec<(usize, usize)>, usize)> {
        let reducer = distributed::reducer(&self.distributed)?;
        Some((reducer.ranges().collect(), reducer.overlapped()))
    }

    /// Sets the learning rate of each epoch by `schedule`, from the optimizer's rate when the
    /// trainer was made. With [`LrSchedule::Plateau`], [`fit`](Trainer::fit) reports the
    /// validation loss (or the training loss without a validation set) after each epoch; a
    /// loop over [`epoch`](Trainer::epoch) reports a metric with
    /// [`report_metric`](Trainer::report_metric).
    pub fn schedule(mut self, schedule: LrSchedule) -> Self {
        self.schedule = schedule;
        self.plateau = None;
        self
    }

    /// Counts the schedule in steps rather than epochs: before every step the rate becomes
    /// `schedule.lr_at(base, step)`, `step` counting the batches from the first epoch on
    /// (`epoch · batches per epoch + batch`), as a PyTorch scheduler stepped after every batch
    /// (the usual way to run [`LrSchedule::OneCycle`], whose `total_steps` is then epochs
    /// times batches). A [`LrSchedule::Plateau`] schedule still changes the rate once per epoch.
    pub fn schedule_per_step(mut self) -> Self {
        self.schedule_per_step = true;
        self
    }

    /// Scales the gradients of each step so that their global L2 norm is at most `max_norm`,
    /// as [`clip_grad_norm`] does, before the optimizer's update. A negative or NaN bound is an
    /// [`Error::Config`] from the first step.
    pub fn clip_grad_norm(mut self, max_norm: f32) -> Self {
        self.max_grad_norm = Some(max_norm);
        self
    }

    /// Turns the divergence guard on (the default) or off. With it on, a step whose loss is NaN
    /// or infinite, whose gradients are not all finite, or whose gradients' global norm passes
    /// the bound of [`divergence_grad_norm`](Trainer::divergence_grad_norm), is not applied,
    /// and [`step`](Trainer::step), [`epoch`](Trainer::epoch) and [`fit`](Trainer::fit)
    /// return [`Error::Diverged`] naming the step and the learning rate.
    ///
    /// The checks come before the optimizer's update, so a refused step never lands: the
    /// parameters and the optimizer's state are those of the last good step, and batch norm's
    /// running statistics, its batch count and the dropout generator, which the forward pass
    /// moves, are put back (the trainer copies them before every forward pass; they are a few
    /// values per channel). The loss is computed anyway; the gradients are scanned for NaN and
    /// infinity (a few microseconds for LeNet-5), or their norm is measured when clipping or
    /// a bound is set. No copy of the parameters is kept, as none is needed for a step that
    /// is refused before its update; what the checks cannot see is an update that overflows
    /// from finite gradients (gradients near `f32::MAX / lr`), which a bound on the gradient
    /// norm catches. With the guard off, a NaN loss goes on to the optimizer, whose own check refuses
    /// non-finite gradients ([`Error::NonFinite`](crate::Error::NonFinite)), changing nothing.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::prelude::*;
    ///
    /// network! {
    ///     struct Deep {
    ///         input: [1, 4, 4], flatten,
    ///         fc1: linear(32), relu, fc2: linear(32), relu, fc3: linear(2),
    ///     }
    /// }
    ///
    /// let images: Vec<f32> = (0..128).map(|i| (i % 7) as f32).collect();
    /// let data = Dataset::new(images, vec![0, 1, 0, 1, 0, 1, 0, 1], [1, 4, 4], 2)?;
    /// let mut net = Deep::init(0);
    /// let mut trainer = Trainer::new(&mut net, Sgd::new(1e4).momentum(0.9));
    /// let err = trainer.fit(&data, Fit::epochs(20).batch(4).progress(false)).unwrap_err();
    /// let Error::Diverged { step, lr, .. } = &err else { panic!("{err}") };
    /// assert_eq!(*lr, 1e4);
    /// assert_eq!(trainer.steps_done(), *step); // the steps before it were applied, not this one
    /// assert!(err.to_string().contains("try a lower learning rate, such as 1e3"), "{err}");
    /// assert!(trainer.net().params().as_slice().iter().all(|w| w.is_finite()));
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn guard_divergence(mut self, on: bool) -> Self {
        self.guard = on;
        self
    }

    /// With the divergence guard on, also refuses a step whose gradients' global L2 norm
    /// (before clipping) is above `max_norm`, with [`Error::Diverged`]. Measuring the norm
    /// reads every gradient once per step. A negative or NaN bound is an [`Error::Config`]
    /// from the first step.
    pub fn divergence_grad_norm(mut self, max_norm: f32) -> Self {
        self.divergence_grad_norm = Some(max_norm);
        self
    }

    /// The steps applied so far, over every epoch (a step refused by the divergence guard is
    /// not counted): the number of the next step.
    pub fn steps_done(&self) -> u64 {
        self.steps_done
    }

    /// Reports the metric of the epoch just ended to a reduce-on-plateau schedule, which sets
    /// the rate of the next epoch from it; with any other schedule this does nothing.
    /// [`fit`](Trainer::fit) calls it after every epoch.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the plateau's settings are invalid.
    pub fn report_metric(&mut self, metric: f32) -> Result<()> {
        if let Some(tracker) = self.plateau_tracker()? {
            tracker.observe(metric);
        }
        Ok(())
    }

    /// The learning rate at `epoch` (at step `epoch` when the schedule counts steps, see
    /// [`schedule_per_step`](Trainer::schedule_per_step)); with a reduce-on-plateau schedule,
    /// the rate the next epoch runs at, whatever `epoch` is.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the schedule is invalid.
    pub fn lr_for(&mut self, epoch: usize) -> Result<f32> {
        self.schedule.validate()?;
        Ok(match self.plateau_tracker()? {
            Some(tracker) => tracker.lr(),
            None => self.schedule.lr_at(self.base_lr, epoch),
        })
    }

    /// The running reduce-on-plateau state (best metric, bad epochs, cooldown, rate), once an
    /// [`LrSchedule::Plateau`] schedule has started; `None` otherwise.
    pub fn plateau(&self) -> Option<&PlateauTracker> {
        self.plateau.as_ref()
    }

    /// Checks the schedule, the optimizer's settings and the clipping bound.
    fn check_settings(&self) -> Result<()> {
        self.schedule.validate()?;
        self.opt.validate()?;
        for max_norm in [self.max_grad_norm, self.divergence_grad_norm]
            .into_iter()
            .flatten()
        {
            clip_grad_norm(&mut [], max_norm)?;
        }
        Ok(())
    }

    /// The reduce-on-plateau state, started at the base rate on first use; `None` for other
    /// schedules.
    fn plateau_tracker(&mut self) -> Result<Option<&mut PlateauTracker>> {
        let LrSchedule::Plateau(plateau) = self.schedule else {
            return Ok(None);
        };
        if self.plateau.is_none() {
            self.plateau = Some(PlateauTracker::new(plateau, self.base_lr)?);
        }
        Ok(self.plateau.as_mut())
    }

    /// The base of the shuffle seeds: epoch `e` visits the samples in the order
    /// [`shuffled_indices(len, seed + e)`](shuffled_indices).
    pub fn shuffle_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Augments every training batch with `augmentation` (as epoch `e`, for epoch `e`), on a
    /// worker thread that prepares the next batches while the network trains when a core is
    /// spare, else on the kernels' threads as each batch is needed
    /// ([`Augmentation::prefetch`]); [`evaluate`] and validation sets are never augmented.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::data::augment::{Augmentation, Rotate, Translate};
    /// use striate::prelude::*;
    ///
    /// network! {
    ///     struct Digits { input: [1, 28, 28], flatten, fc: linear(10) }
    /// }
    ///
    /// let (train, test) = Mnist::builtin().train.take(1_000).split_stratified(0.2, 1)?;
    /// let augmentation = Augmentation::new(3)
    ///     .then(Translate::pixels(-1.0..=1.0)?)
    ///     .then(Rotate::degrees(-10.0..=10.0)?);
    /// let mut net = Digits::init(0);
    /// let mut trainer = Trainer::new(&mut net, Sgd::new(0.1)).augment(augmentation);
    /// trainer.fit(&train, Fit::epochs(3).progress(false))?;
    /// assert!(evaluate(&net, &test, 64)?.accuracy() > 0.7);
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn augment(mut self, augmentation: Augmentation) -> Self {
        self.augmentation = Some(augmentation);
        self
    }

    /// The augmentation of the training batches, if [`augment`](Trainer::augment) set one.
    pub fn augmentation(&self) -> Option<&Augmentation> {
        self.augmentation.as_ref()
    }

    /// The network being trained, for evaluating it between epochs without ending the
    /// trainer's borrow: `evaluate(trainer.net(), &test, 256)`, `trainer.net().save(path)`.
    pub fn net(&self) -> &N {
        self.net
    }

    /// The network being trained, mutably (to load weights into it between epochs, say).
    pub fn net_mut(&mut self) -> &mut N {
        self.net
    }

    /// Ends the trainer, handing back the network it borrowed, for as long as the original
    /// borrow lasts.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::prelude::*;
    ///
    /// network! {
    ///     struct Classifier { input: [1, 4, 4], flatten, fc: linear(2) }
    /// }
    ///
    /// let data = Dataset::new(vec![0.5; 64], vec![0, 1, 0, 1], [1, 4, 4], 2)?;
    /// let mut net = Classifier::init(0);
    /// let mut trainer = Trainer::new(&mut net, Sgd::new(0.1).momentum(0.9));
    /// trainer.optimizer_mut().reset(); // the optimizer's state, reached through the trainer
    /// trainer.fit(&data, Fit::epochs(2).batch(2).progress(false))?;
    /// assert_eq!(trainer.epochs_done(), 2);
    /// assert_eq!(trainer.optimizer().lr(), 0.1);
    /// let net: &mut Classifier = trainer.into_inner();
    /// assert_eq!(net.predict(data.images())?.len(), 4);
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn into_inner(self) -> &'n mut N {
        self.net
    }

    /// The optimizer, with its learning rate and state.
    pub fn optimizer(&self) -> &O {
        &self.opt
    }

    /// The optimizer, mutably. Each epoch sets its learning rate from the schedule (the base
    /// rate being the optimizer's when the trainer was made), so a rate set here lasts until
    /// the next epoch begins.
    pub fn optimizer_mut(&mut self) -> &mut O {
        &mut self.opt
    }

    /// The number of epochs run so far: one more than the last epoch number given to
    /// [`epoch`](Trainer::epoch), and the number of the next epoch [`fit`](Trainer::fit)
    /// runs.
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    /// The second half of every training step, from the output gradient `d_out` of a batch
    /// of `n` whose loss is `loss`: the divergence guard's checks, the backward pass, gradient
    /// clipping and the optimizer's update.
    ///
    /// Distributed, the gradients are averaged over the ranks, and the loss checked by the
    /// guard and returned is the whole step's (as are `correct` and the sample count).
    fn backward_and_update(
        &mut self,
        d_out: &[f32],
        n: usize,
        loss: f32,
        correct: usize,
    ) -> Result<StepStats> {
        // Distributed, every rank decides on the loss of the whole step, after the all-reduce.
        let local = self.distributed.is_none();
        if self.guard && local && !loss.is_finite() {
            return Err(self.diverged(Divergence::Loss(loss)));
        }
        self.grads.zero();
        let d_out = crate::network::output_view::<N>(n, d_out);
        // The tape's address: the reducer hears the final gradients of this tape's pass only.
        let tape: *const Tape = &self.tape;
        let backward =
            distributed::backward(&mut self.distributed, tape, (loss, correct, n), || {
                self.net.backward(&mut self.tape, d_out, &mut self.grads)
            });
        if let Err(e) = backward {
            // The backward pass's buffers could not be had: with the guard on, the forward
            // pass's side effects are put back too, so that the failed step changes nothing.
            if self.guard {
                self.before_step.restore(self.net.state_mut());
            }
            return Err(e);
        }
        let mut stats = StepStats {
            loss,
            correct,
            samples: n,
        };
        if let Some((loss, correct, samples)) = distributed::finish(
            &mut self.distributed,
            self.grads.params_mut().as_mut_slice(),
            self.net.state().frozen.ranges(),
        )? {
            stats = StepStats {
                loss,
                correct,
                samples,
            };
            if self.guard && !loss.is_finite() {
                return Err(self.diverged(Divergence::Loss(loss)));
            }
        }
        let bound = self.divergence_grad_norm.filter(|_| self.guard);
        if self.max_grad_norm.is_some() || bound.is_some() {
            // An infinite bound never clips: it only measures.
            let clip = self.max_grad_norm.unwrap_or(f32::INFINITY);
            let norm = clip_grad_norm(self.grads.params_mut().as_mut_slice(), clip)?;
            let bound = bound.unwrap_or(f32::INFINITY);
            // Written so that a NaN norm is refused too.
            if self.guard && !(norm <= bound && norm.is_finite()) {
                return Err(self.diverged(Divergence::GradNorm { norm, bound }));
            }
        } else if self.guard && !all_finite(self.grads.params().as_slice()) {
            // A finite loss can come with overflowing gradients (LeNet-5 at a rate of 1e4 with
            // momentum does it); the norm is measured only to say so.
            let norm = clip_grad_norm(self.grads.params_mut().as_mut_slice(), f32::INFINITY)?;
            return Err(self.diverged(Divergence::GradNorm {
                norm,
                bound: f32::INFINITY,
            }));
        }
        let state = self.net.state_mut();
        self.frozen_steps.step(
            &mut self.opt,
            &state.frozen,
            state.params.as_mut_slice(),
            self.grads.params().as_slice(),
        )?;
        self.steps_done += 1;
        Ok(stats)
    }

    /// Puts back what the refused step's forward pass moved and describes the step.
    fn diverged(&mut self, cause: Divergence) -> Error {
        self.before_step.restore(self.net.state_mut());
        Error::Diverged {
            step: self.steps_done,
            epoch: self.current_epoch,
            lr: self.opt.lr(),
            cause,
        }
    }
}

impl<'n, N: Network<OutputDim = Ix2>, O: Optimizer> Trainer<'n, N, O> {
    /// One training step on a batch: forward, loss, backward, gradient clipping (if set) and
    /// the optimizer's update, with the divergence guard's checks before the update (see
    /// [`guard_divergence`](Trainer::guard_divergence)).
    ///
    /// # Errors
    /// Shape errors for a batch that is not the network's input, label errors from the loss,
    /// [`Error::Config`] for invalid optimizer settings or clipping bound, all before anything
    /// changes; [`Error::Diverged`] for a step the guard refuses, which changes nothing either.
    pub fn step(
        &mut self,
        x: ArrayView<'_, f32, N::InputDim>,
        labels: &[usize],
    ) -> Result<StepStats> {
        self.step_with(x, labels, None)
    }

    /// [`step`](Trainer::step) on a padded batch of sequences, `lengths[s]` valid steps in
    /// sample `s`, read as [`Network::forward_lengths`] reads them: the padding changes
    /// neither the loss nor any gradient.
    ///
    /// # Errors
    /// As [`step`](Trainer::step) and [`Network::forward_lengths`], before anything changes.
    pub fn step_lengths(
        &mut self,
        x: ArrayView<'_, f32, N::InputDim>,
        labels: &[usize],
        lengths: &[u32],
    ) -> Result<StepStats> {
        self.step_with(x, labels, Some(lengths))
    }

    fn step_with(
        &mut self,
        x: ArrayView<'_, f32, N::InputDim>,
        labels: &[usize],
        lengths: Option<&[u32]>,
    ) -> Result<StepStats> {
        // Everything that can fail is checked before the forward pass, which moves batch
        // norm's running statistics and the dropout generator: a failed step changes nothing.
        self.check_settings()?;
        distributed::check(&self.distributed)?;
        let classes: usize = N::OUTPUT_SHAPE.iter().product();
        check_labels(labels, x.shape()[0], classes, "training step")?;
        if self.guard {
            self.before_step.save(self.net.state());
        }
        let logits = distributed::forward(&self.distributed, || match lengths {
            Some(lengths) => {
                self.net
                    .forward_tape_lengths(x, lengths, &mut self.tape, crate::Mode::Train)
            }
            None => self.net.forward_train(x, &mut self.tape),
        })?;
        let (n, k) = logits.dim();
        if self.d_logits.dim() != (n, k) {
            self.d_logits = Array2::zeros((n, k));
        }
        let loss = softmax_cross_entropy(
            self.d_logits
                .as_slice_mut()
                .expect("owned array is contiguous"),
            logits.as_slice().expect("tape output is contiguous"),
            labels,
            k,
        )?;
        let correct = argmax_rows(logits.as_slice().expect("tape output is contiguous"), k)
            .zip(labels)
            .filter(|(p, t)| p == *t)
            .count();
        // Taken out for the update (which needs the trainer mutably) and put back: no copy.
        let d_logits = std::mem::take(&mut self.d_logits);
        let result = self.backward_and_update(
            d_logits.as_slice().expect("owned array is contiguous"),
            n,
            loss,
            correct,
        );
        self.d_logits = d_logits;
        result
    }

    /// One pass over `data` in shuffled batches of `batch` (the last, partial batch included),
    /// with a progress bar on the terminal when `progress` is true. `epoch` (from 0) sets the
    /// learning rate from the schedule, the shuffle seed and the augmentation's epoch;
    /// [`fit`](Trainer::fit) counts epochs for you.
    ///
    /// After [`resume`](Trainer::resume) from a checkpoint written inside epoch `epoch`, the
    /// pass goes on from the checkpoint's batch (and its report covers the whole epoch); any
    /// other epoch forgets that position.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero batch, an invalid schedule, optimizer or clipping bound;
    /// shape errors when the dataset does not fit the network; [`Error::Config`] (`resumed
    /// epoch`) when a resumed position inside this epoch was written with another batch size
    /// or dataset size; [`Error::Diverged`] from a step (the steps before it stay applied).
    pub fn epoch(
        &mut self,
        data: &Dataset,
        batch: usize,
        epoch: usize,
        progress: bool,
    ) -> Result<EpochReport> {
        Error::check_batch(batch)?;
        self.check_settings()?;
        check_data::<N>(data)?;
        let position = match self.position.take() {
            Some(p) if p.epoch == epoch => {
                if let Err(e) = p.check(batch, data.len()) {
                    self.position = Some(p);
                    return Err(e);
                }
                p
            }
            _ => EpochPosition::start(epoch, batch, data.len()),
        };
        let order = shuffled_indices(data.len(), self.seed.wrapping_add(epoch as u64));
        // Distributed, this rank's shard of it.
        let order = distributed::epoch_order(&mut self.distributed, order);
        let progress = progress && distributed::is_root(&self.distributed);
        let steps = order.len().div_ceil(batch);
        let per_step = self.schedule_per_step && !matches!(self.schedule, LrSchedule::Plateau(_));
        let first_step = epoch.saturating_mul(steps);
        let lr = self.lr_for(if per_step { first_step } else { epoch })?;
        self.opt.set_lr(lr);
        self.current_epoch = epoch;
        let bar = if progress {
            let bar = ProgressBar::new(steps as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("epoch {}", epoch + 1));
            bar.set_position(position.batches_done as u64);
            bar
        } else {
            ProgressBar::hidden()
        };
        let start = Instant::now();
        let skip = position.batches_done;
        let mut at = position;
        let mut x = std::mem::take(&mut self.x);
        let mut y = std::mem::take(&mut self.y);
        let mut augmentation = self.augmentation.take();
        let augmentation_seed = augmentation.as_ref().map(Augmentation::seed);
        let mut on_batch = |j: usize, x: &[f32], y: &[usize]| {
            let i = skip + j;
            if per_step {
                let lr = self
                    .schedule
                    .lr_at(self.base_lr, first_step.saturating_add(i));
                self.opt.set_lr(lr);
            }
            let stats = self.step(input_view::<N>(x, y.len())?, y)?;
            at.advance(&stats);
            if self
                .step_checkpoints
                .as_ref()
                .is_some_and(|c| c.due(self.steps_done))
            {
                let due = self.step_checkpoints.take().expect("checked just above");
                let written = due.write(self, Some(&at), augmentation_seed);
                self.step_checkpoints = Some(due);
                written?;
            }
            bar.inc(1);
            if i.is_multiple_of(8) || i + 1 == steps {
                let secs = start.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "lr {:.3e}  loss {:.4}  acc {:.2}%  {:.0} img/s",
                    self.opt.lr(),
                    at.loss_sum / (i + 1) as f64,
                    100.0 * at.correct as f64 / at.seen as f64,
                    (at.seen - position.seen) as f64 / secs
                ));
            }
            Ok::<(), Error>(())
        };
        let rest = order.get(skip.saturating_mul(batch)..).unwrap_or_default();
        let result = match augmentation.as_mut() {
            None => rest.chunks(batch).enumerate().try_for_each(|(j, chunk)| {
                data.gather(chunk, &mut x, &mut y)?;
                on_batch(j, &x, &y)
            }),
            Some(augmentation) => augmentation
                .prefetch(data, rest, batch, epoch, |batches| {
                    batches.enumerate().try_for_each(|(j, batch)| {
                        let batch = batch?;
                        on_batch(j, batch.images_flat(), batch.labels())
                    })
                })
                .and_then(|result| result),
        };
        self.augmentation = augmentation;
        self.x = x;
        self.y = y;
        bar.finish_and_clear();
        result?;
        self.epochs_done = epoch + 1;
        self.current_epoch = epoch + 1;
        let seconds = start.elapsed().as_secs_f64();
        // `check_data` refused an empty dataset, so the epoch has at least one step.
        Ok(EpochReport {
            epoch,
            loss: (at.loss_sum / steps as f64) as f32,
            accuracy: at.correct as f32 / at.seen as f32,
            lr,
            seconds,
            images_per_sec: (at.seen - position.seen) as f64 / seconds.max(1e-9),
        })
    }

    /// Writes a checkpoint of the whole training state to `path` (atomically: a file already
    /// there stays whole until the new one replaces it): parameters, buffers, the optimizer's
    /// state, the schedule's position, the epoch and step counts and every generator. It is
    /// what [`Checkpoints`] writes during [`fit`](Trainer::fit) (without the states of fit's
    /// callbacks, which this trainer does not hold), and what [`resume`](Trainer::resume)
    /// reads. A distributed trainer (feature `mpi`) writes on rank 0 only: the other ranks
    /// hold the same state and return `Ok` without writing.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        // Distributed, every rank holds the same state: rank 0 writes it.
        if !distributed::is_root(&self.distributed) {
            return Ok(());
        }
        let seed = self.augmentation.as_ref().map(Augmentation::seed);
        checkpoint::write(self, path.as_ref(), self.position.as_ref(), seed, &[])
    }

    /// Continues a run from a checkpoint: a file [`save_checkpoint`](Trainer::save_checkpoint)
    /// or [`Checkpoints`] wrote, or a directory of them (the one of the most steps is read).
    ///
    /// Build the trainer as the run was built (network, optimizer, schedule, augmentation,
    /// clipping), then resume: the parameters, buffers, optimizer state, schedule position
    /// (a reduce-on-plateau tracker included), epoch and step counts, the shuffle and
    /// augmentation seeds and the dropout generator become the checkpoint's, and the next
    /// [`fit`](Trainer::fit) or [`epoch`](Trainer::epoch) goes on from where it was written,
    /// inside an epoch too. With the same thread count, the run then ends with exactly the
    /// weights of a run never stopped.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Format`] when it is not a
    /// safetensors file; [`Error::Checkpoint`] naming what does not fit when it is not a
    /// checkpoint, was written by another network (by name, or by a tensor's name or shape),
    /// another optimizer, or a trainer with (or without) augmentation or a reduce-on-plateau
    /// schedule where this one has none (or one), or a directory holds no checkpoint.
    /// Everything is checked before anything changes: on an error, the network, optimizer
    /// and trainer are as they were.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::prelude::*;
    /// use striate::train::Checkpoints;
    ///
    /// network! {
    ///     struct Classifier { input: [1, 4, 4], flatten, fc: linear(2) }
    /// }
    ///
    /// let images: Vec<f32> = (0..128).map(|i| if (i / 16) % 2 == 0 { 0.0 } else { 1.0 }).collect();
    /// let data = Dataset::new(images, vec![0, 1, 0, 1, 0, 1, 0, 1], [1, 4, 4], 2)?;
    /// let dir = std::env::temp_dir().join(format!("striate-doc-resume-{}", std::process::id()));
    ///
    /// // A run of 4 epochs, checkpointed after each; the last two kept.
    /// let mut net = Classifier::init(0);
    /// let options = Fit::epochs(4).batch(2).checkpoints(Checkpoints::new(&dir).keep(2));
    /// Trainer::new(&mut net, Adam::new(0.01)).fit(&data, options)?;
    /// let files = Checkpoints::list(&dir)?;
    /// assert_eq!(files.len(), 2);
    ///
    /// // Another process picks up from epoch 3 and trains until 4 epochs are done.
    /// let mut resumed = Classifier::init(7);
    /// let mut trainer = Trainer::new(&mut resumed, Adam::new(0.01));
    /// let from = trainer.resume(&files[0])?;
    /// assert_eq!((from.epochs_done, from.steps_done), (3, 12));
    /// trainer.fit(&data, Fit::until(4).batch(2))?;
    /// assert_eq!(resumed.params().as_slice(), net.params().as_slice());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resume(&mut self, path: impl AsRef<Path>) -> Result<Resumed> {
        checkpoint::resume(self, path.as_ref())
    }
}

/// What a training step's forward pass changes besides its outputs, copied before it so that
/// a step the divergence guard refuses can be undone; the buffer grows once, at the first step.
#[derive(Default)]
struct BeforeStep {
    buffers: Vec<f32>,
    num_batches_tracked: u64,
    rng: Option<NetRng>,
}

impl BeforeStep {
    fn save(&mut self, state: &crate::State) {
        self.buffers.clear();
        self.buffers.extend_from_slice(state.buffers.as_slice());
        self.num_batches_tracked = state.num_batches_tracked;
        self.rng = Some(state.rng.clone());
    }

    fn restore(&self, state: &mut crate::State) {
        if let Some(rng) = &self.rng {
            state.buffers.as_mut_slice().copy_from_slice(&self.buffers);
            state.num_batches_tracked = self.num_batches_tracked;
            state.rng = rng.clone();
        }
    }
}

/// Whether every value is finite: a scan of the exponent bits that the compiler vectorises,
/// a few microseconds for LeNet-5's 61,706 gradients.
fn all_finite(values: &[f32]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    values.chunks(256).all(|chunk| {
        chunk
            .iter()
            .fold(true, |ok, v| ok & (v.to_bits() & EXPONENT != EXPONENT))
    })
}
