//! Reduce-on-plateau: the learning rate falls when a metric stops improving.

use super::non_negative;
use crate::{Error, Result};

/// Whether a smaller or a larger metric is better.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlateauMode {
    /// Lower is better (a loss); PyTorch's `mode="min"`.
    #[default]
    Min,
    /// Higher is better (an accuracy); PyTorch's `mode="max"`.
    Max,
}

/// How [`Plateau::threshold`] measures a significant improvement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Better than the best by a factor: `best·(1 ∓ threshold)`; PyTorch's `"rel"`.
    #[default]
    Rel,
    /// Better than the best by an amount: `best ∓ threshold`; PyTorch's `"abs"`.
    Abs,
}

/// The settings of `torch.optim.lr_scheduler.ReduceLROnPlateau`, with its defaults:
/// mode min, factor 0.1, patience 10, threshold 1e-4 (relative), cooldown 0, `min_lr` 0 and
/// eps 1e-8.
///
/// After each epoch the metric is compared with the best so far. Once it has not improved
/// significantly for more than `patience` epochs, the rate becomes `max(lr·factor, min_lr)`
/// (unless that changes it by no more than `eps`) and `cooldown` epochs pass before bad
/// epochs count again. A [`PlateauTracker`] runs it; [`LrSchedule::Plateau`](super::LrSchedule::Plateau)
/// makes the trainer run one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plateau {
    /// Whether lower or higher metrics are better.
    pub mode: PlateauMode,
    /// The factor the rate is multiplied by, in `[0, 1)`.
    pub factor: f32,
    /// Epochs without improvement tolerated before the rate falls.
    pub patience: usize,
    /// How much better than the best a metric must be to count; at least 0.
    pub threshold: f32,
    /// Whether `threshold` is relative or absolute.
    pub threshold_mode: ThresholdMode,
    /// Epochs after a reduction during which bad epochs are not counted.
    pub cooldown: usize,
    /// The rate never falls below this; at least 0.
    pub min_lr: f32,
    /// A reduction smaller than this is skipped; at least 0.
    pub eps: f32,
}

impl Default for Plateau {
    fn default() -> Self {
        Plateau {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

impl Plateau {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `factor` is outside `[0, 1)` (PyTorch refuses a factor of 1 or
    /// more), or `threshold`, `min_lr` or `eps` is negative or not finite.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.factor) {
            return Err(Error::Config {
                name: "factor",
                reason: format!("expected a value in [0, 1), found {}", self.factor),
            });
        }
        non_negative("threshold", self.threshold)?;
        non_negative("min_lr", self.min_lr)?;
        non_negative("eps", self.eps)
    }

    /// True if `metric` is a significant improvement on `best`.
    fn is_better(&self, metric: f64, best: f64) -> bool {
        let t = f64::from(self.threshold);
        match (self.mode, self.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => metric < best * (1.0 - t),
            (PlateauMode::Min, ThresholdMode::Abs) => metric < best - t,
            (PlateauMode::Max, ThresholdMode::Rel) => metric > best * (1.0 + t),
            (PlateauMode::Max, ThresholdMode::Abs) => metric > best + t,
        }
    }
}

/// A running [`Plateau`]: feed it the metric after each epoch with
/// [`observe`](PlateauTracker::observe), and train the next epoch at [`lr`](PlateauTracker::lr).
/// The same algorithm as PyTorch's `ReduceLROnPlateau.step(metric)`.
///
/// # Example
///
/// ```
/// use striate::optim::{Plateau, PlateauTracker};
///
/// let plateau = Plateau { patience: 1, factor: 0.5, ..Plateau::default() };
/// let mut tracker = PlateauTracker::new(plateau, 0.1)?;
/// let mut rates = Vec::new();
/// for loss in [1.0, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8] {
///     // ... one epoch of training at tracker.lr() ...
///     rates.push(tracker.observe(loss));
/// }
/// assert_eq!(rates, [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]);
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct PlateauTracker {
    plateau: Plateau,
    // Kept in f32, as the getters give them, so that a resumed tracker is exactly the same;
    // the arithmetic is in f64.
    lr: f32,
    best: f32,
    bad_epochs: usize,
    cooldown_left: usize,
}

impl PlateauTracker {
    /// A tracker starting at learning rate `lr`, with no metric seen yet.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `plateau` is invalid ([`Plateau::validate`]).
    pub fn new(plateau: Plateau, lr: f32) -> Result<PlateauTracker> {
        plateau.validate()?;
        Ok(PlateauTracker {
            plateau,
            lr,
            best: match plateau.mode {
                PlateauMode::Min => f32::INFINITY,
                PlateauMode::Max => f32::NEG_INFINITY,
            },
            bad_epochs: 0,
            cooldown_left: 0,
        })
    }

    /// The learning rate for the next epoch.
    pub fn lr(&self) -> f32 {
        self.lr
    }

    /// Epochs since the last significant improvement (reset by a reduction and in cooldown).
    pub fn bad_epochs(&self) -> usize {
        self.bad_epochs
    }

    /// The best metric so far (infinite, of the wrong sign, before the first).
    pub fn best(&self) -> f32 {
        self.best
    }

    /// Epochs of cooldown left, during which bad epochs are not counted.
    pub fn cooldown_left(&self) -> usize {
        self.cooldown_left
    }

    /// The settings.
    pub fn plateau(&self) -> &Plateau {
        &self.plateau
    }

    /// A tracker in the state that [`lr`](PlateauTracker::lr), [`best`](PlateauTracker::best),
    /// [`bad_epochs`](PlateauTracker::bad_epochs) and
    /// [`cooldown_left`](PlateauTracker::cooldown_left) gave, to go on where a saved run
    /// stopped.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `plateau` is invalid, or `lr` is negative or not finite.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::optim::{Plateau, PlateauTracker};
    ///
    /// let plateau = Plateau { patience: 0, cooldown: 1, ..Plateau::default() };
    /// let mut run = PlateauTracker::new(plateau, 0.1)?;
    /// run.observe(1.0);
    /// run.observe(2.0);
    /// let mut resumed = PlateauTracker::resume(
    ///     *run.plateau(),
    ///     run.lr(),
    ///     run.best(),
    ///     run.bad_epochs(),
    ///     run.cooldown_left(),
    /// )?;
    /// for metric in [3.0, 0.5, 4.0, 5.0] {
    ///     assert_eq!(run.observe(metric), resumed.observe(metric));
    /// }
    /// assert_eq!(run, resumed);
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn resume(
        plateau: Plateau,
        lr: f32,
        best: f32,
        bad_epochs: usize,
        cooldown_left: usize,
    ) -> Result<PlateauTracker> {
        non_negative("learning rate", lr)?;
        Ok(PlateauTracker {
            best,
            bad_epochs,
            cooldown_left,
            ..PlateauTracker::new(plateau, lr)?
        })
    }

    /// Takes the metric of the epoch just ended and returns the learning rate for the next.
    /// A NaN metric is never an improvement.
    pub fn observe(&mut self, metric: f32) -> f32 {
        if self
            .plateau
            .is_better(f64::from(metric), f64::from(self.best))
        {
            self.best = metric;
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            self.bad_epochs = 0;
        }
        if self.bad_epochs > self.plateau.patience {
            let lr = f64::from(self.lr);
            let reduced = (lr * f64::from(self.plateau.factor)).max(f64::from(self.plateau.min_lr));
            if lr - reduced > f64::from(self.plateau.eps) {
                self.lr = reduced as f32;
            }
            self.cooldown_left = self.plateau.cooldown;
            self.bad_epochs = 0;
        }
        self.lr()
    }
}
