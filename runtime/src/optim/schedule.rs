//! Learning-rate schedules: the learning rate as a function of the epoch.

use super::plateau::Plateau;
use crate::{Error, Result};

/// How the learning rate changes from epoch to epoch, as PyTorch's schedulers of the same names
/// (in their closed form, `_get_closed_form_lr`, where they have one).
///
/// Epochs count from 0; epoch 0 uses the base learning rate (except for a warm-up, which starts
/// below it, and one-cycle, which starts at the peak over `div_factor`). The trainer sets the
/// rate once per epoch; a loop of your own may count steps instead and call
/// [`lr_at`](LrSchedule::lr_at) with the step number (as `OneCycleLR` is usually stepped).
///
/// | variant | PyTorch |
/// | --- | --- |
/// | [`Constant`](LrSchedule::Constant) | no scheduler |
/// | [`Step`](LrSchedule::Step) | `StepLR(step_size, gamma)` |
/// | [`Exponential`](LrSchedule::Exponential) | `ExponentialLR(gamma)` |
/// | [`Cosine`](LrSchedule::Cosine), [`cosine`](LrSchedule::cosine) | `CosineAnnealingLR(T_max, eta_min)` |
/// | [`Linear`](LrSchedule::Linear), [`linear`](LrSchedule::linear) | `LinearLR(start_factor, end_factor, total_iters)`: linear warm-up |
/// | [`OneCycle`](LrSchedule::OneCycle), [`one_cycle`](LrSchedule::one_cycle) | `OneCycleLR(max_lr=base, total_steps)`, cosine annealing, two phases |
/// | [`Plateau`](LrSchedule::Plateau) | `ReduceLROnPlateau`, driven by a metric through a [`PlateauTracker`](super::PlateauTracker) |
/// | [`Sequential`](LrSchedule::Sequential), [`then`](LrSchedule::then) | `SequentialLR(schedulers, milestones)` |
///
/// # Example
///
/// Five epochs of linear warm-up from a tenth of the rate, then cosine annealing to 0 over 20:
///
/// ```
/// use striate::optim::{LrSchedule, Optimizer, Sgd};
///
/// let schedule = LrSchedule::linear(0.1, 1.0, 5).then(5, LrSchedule::cosine(20, 0.0));
/// schedule.validate()?;
/// let base_lr = 0.1;
/// let mut sgd = Sgd::new(base_lr);
/// let mut used = Vec::new();
/// for epoch in 0..30 {
///     sgd.set_lr(schedule.lr_at(base_lr, epoch));
///     used.push(sgd.lr());
///     // ... one epoch of training ...
/// }
/// assert!((used[0] - 0.01).abs() < 1e-8);
/// assert!(used[..5].windows(2).all(|w| w[0] < w[1]), "warming up: {used:?}");
/// assert_eq!(used[5], 0.1);
/// assert!(used[5..26].windows(2).all(|w| w[0] > w[1]), "annealing: {used:?}");
/// assert!(used[25].abs() < 1e-9);
///
/// // The original two: step decay and exponential decay.
/// let step = LrSchedule::Step { step_size: 2, gamma: 0.5 };
/// let rates: Vec<f32> = (0..5).map(|epoch| step.lr_at(0.1, epoch)).collect();
/// assert_eq!(rates, [0.1, 0.1, 0.05, 0.05, 0.025]);
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum LrSchedule {
    /// The base learning rate at every epoch.
    #[default]
    Constant,
    /// `StepLR`: multiply by `gamma` every `step_size` epochs, `base · gamma^⌊epoch / step_size⌋`.
    Step {
        /// Epochs between decays; positive.
        step_size: usize,
        /// The factor applied at each decay; positive.
        gamma: f32,
    },
    /// `ExponentialLR`: multiply by `gamma` every epoch, `base · gamma^epoch`.
    Exponential {
        /// The factor applied each epoch; positive.
        gamma: f32,
    },
    /// `CosineAnnealingLR`: `eta_min + (base − eta_min)·(1 + cos(π·epoch / t_max)) / 2`, from the
    /// base rate at epoch 0 down to `eta_min` at `t_max` (and, as in PyTorch, back up after).
    Cosine {
        /// Epochs from the base rate to `eta_min`; positive.
        t_max: usize,
        /// The lowest rate; finite and at least 0.
        eta_min: f32,
    },
    /// `LinearLR`: the base rate times a factor going linearly from `start_factor` at epoch 0
    /// to `end_factor` at `total_iters`, and staying there. A warm-up when
    /// `start_factor < end_factor`.
    Linear {
        /// The factor at epoch 0, in `(0, 1]`.
        start_factor: f32,
        /// The factor from `total_iters` on, in `[0, 1]`.
        end_factor: f32,
        /// Epochs from the first factor to the last.
        total_iters: usize,
    },
    /// `OneCycleLR` with cosine annealing and two phases, the base rate as `max_lr`: from
    /// `base / div_factor` up to `base` over the first `pct_start` of `total_steps`, then down
    /// to `base / (div_factor · final_div_factor)` at step `total_steps − 1`, and there after.
    /// (PyTorch also cycles the momentum; this schedules the learning rate only.)
    OneCycle {
        /// Steps (or epochs) of the whole cycle; positive.
        total_steps: usize,
        /// The share of the cycle spent rising, in `[0, 1]`.
        pct_start: f32,
        /// The base rate over the starting rate; positive.
        div_factor: f32,
        /// The starting rate over the final rate; positive.
        final_div_factor: f32,
    },
    /// `ReduceLROnPlateau`: the rate is multiplied by `factor` when a metric stops improving.
    /// It depends on the metric, not on the epoch alone: [`Trainer`](crate::train::Trainer)
    /// feeds it the validation loss (or the training loss without a validation set) after
    /// each epoch; a loop of your own uses a [`PlateauTracker`](super::PlateauTracker). [`lr_at`](LrSchedule::lr_at)
    /// gives the base rate.
    Plateau(Plateau),
    /// `SequentialLR`: `schedules[0]` until `milestones[0]`, then `schedules[1]` counting its
    /// epochs from 0 at that milestone, and so on. [`then`](LrSchedule::then) builds one.
    Sequential {
        /// The schedules, one more than the milestones; none of them [`Plateau`](LrSchedule::Plateau).
        schedules: Vec<LrSchedule>,
        /// The epochs at which each next schedule starts, increasing.
        milestones: Vec<usize>,
    },
}

impl LrSchedule {
    /// `CosineAnnealingLR(T_max=t_max, eta_min=eta_min)`.
    pub fn cosine(t_max: usize, eta_min: f32) -> LrSchedule {
        LrSchedule::Cosine { t_max, eta_min }
    }

    /// `LinearLR(start_factor, end_factor, total_iters)`: a linear warm-up over `total_iters`
    /// epochs when `start_factor < end_factor`.
    pub fn linear(start_factor: f32, end_factor: f32, total_iters: usize) -> LrSchedule {
        LrSchedule::Linear {
            start_factor,
            end_factor,
            total_iters,
        }
    }

    /// `OneCycleLR(max_lr=base, total_steps)` with PyTorch's defaults: `pct_start` 0.3,
    /// `div_factor` 25, `final_div_factor` 1e4.
    pub fn one_cycle(total_steps: usize) -> LrSchedule {
        LrSchedule::OneCycle {
            total_steps,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        }
    }

    /// `ReduceLROnPlateau` with PyTorch's defaults ([`Plateau::default`]).
    pub fn reduce_on_plateau() -> LrSchedule {
        LrSchedule::Plateau(Plateau::default())
    }

    /// This schedule until epoch `milestone`, then `next` (from its own epoch 0), as
    /// `SequentialLR`. Chains: `a.then(5, b).then(20, c)` runs `c` from epoch 20.
    pub fn then(self, milestone: usize, next: LrSchedule) -> LrSchedule {
        match self {
            LrSchedule::Sequential {
                mut schedules,
                mut milestones,
            } => {
                schedules.push(next);
                milestones.push(milestone);
                LrSchedule::Sequential {
                    schedules,
                    milestones,
                }
            }
            first => LrSchedule::Sequential {
                schedules: vec![first, next],
                milestones: vec![milestone],
            },
        }
    }

    /// The learning rate at `epoch` for a base learning rate `base_lr`.
    ///
    /// It is computed in `f64` and rounded once, so late epochs do not accumulate the rounding
    /// error of repeated `f32` multiplications. For a schedule that
    /// [`validate`](LrSchedule::validate) rejects, the value is meaningless (a `step_size` of
    /// 0 acts as never decaying) but this does not panic.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::optim::LrSchedule;
    ///
    /// let schedule = LrSchedule::Exponential { gamma: 0.5 };
    /// assert_eq!(schedule.lr_at(0.1, 0), 0.1);
    /// assert_eq!(schedule.lr_at(0.1, 3), 0.0125);
    /// assert_eq!(LrSchedule::cosine(10, 0.0).lr_at(0.1, 5), 0.05);
    /// ```
    pub fn lr_at(&self, base_lr: f32, epoch: usize) -> f32 {
        self.lr_at_f64(f64::from(base_lr), epoch) as f32
    }

    fn lr_at_f64(&self, base: f64, epoch: usize) -> f64 {
        use std::f64::consts::PI;
        match self {
            LrSchedule::Constant | LrSchedule::Plateau(_) => base,
            &LrSchedule::Step { step_size, gamma } => {
                base * powi(gamma, epoch.checked_div(step_size).unwrap_or(0))
            }
            &LrSchedule::Exponential { gamma } => base * powi(gamma, epoch),
            &LrSchedule::Cosine { t_max, eta_min } => {
                let eta_min = f64::from(eta_min);
                let phase = PI * epoch as f64 / t_max.max(1) as f64;
                eta_min + (base - eta_min) * (1.0 + phase.cos()) / 2.0
            }
            &LrSchedule::Linear {
                start_factor,
                end_factor,
                total_iters,
            } => {
                let (start, end) = (f64::from(start_factor), f64::from(end_factor));
                let done = if total_iters == 0 {
                    1.0
                } else {
                    epoch.min(total_iters) as f64 / total_iters as f64
                };
                base * (start + (end - start) * done)
            }
            &LrSchedule::OneCycle {
                total_steps,
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                let initial = base / f64::from(div_factor);
                let last = initial / f64::from(final_div_factor);
                // PyTorch's phase ends, as floats: the peak, then the last step.
                let peak = f64::from(pct_start) * total_steps as f64 - 1.0;
                let end = total_steps as f64 - 1.0;
                let step = epoch as f64;
                let (from, to, pct) = if step <= peak {
                    (initial, base, step / peak)
                } else {
                    (base, last, ((step - peak) / (end - peak)).min(1.0))
                };
                let pct = if pct.is_finite() { pct } else { 1.0 };
                to + (from - to) / 2.0 * ((PI * pct).cos() + 1.0)
            }
            LrSchedule::Sequential {
                schedules,
                milestones,
            } => {
                // PyTorch's `bisect_right`: a milestone's own epoch runs the next schedule.
                let i = milestones.partition_point(|&m| m <= epoch);
                let start = if i == 0 { 0 } else { milestones[i - 1] };
                match schedules.get(i).or(schedules.last()) {
                    Some(s) => s.lr_at_f64(base, epoch - start),
                    None => base,
                }
            }
        }
    }

    /// Checks the schedule's settings.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the setting: a `step_size`, `t_max` or `total_steps` of 0, a
    /// `gamma`, `div_factor` or `final_div_factor` that is not a finite positive number, an
    /// `eta_min` below 0, factors or `pct_start` outside their ranges (see each variant), a
    /// [`Plateau`] with bad settings, or a sequence whose milestones are not one fewer than its
    /// schedules and increasing, or that holds a plateau schedule.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::optim::LrSchedule;
    ///
    /// let err = LrSchedule::Step { step_size: 0, gamma: 0.1 }.validate().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid step_size: expected at least 1 epoch, found 0");
    /// let err = LrSchedule::linear(0.0, 1.0, 5).validate().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid start_factor: expected a value in (0, 1], found 0");
    /// ```
    pub fn validate(&self) -> Result<()> {
        match self {
            LrSchedule::Constant => Ok(()),
            &LrSchedule::Step { step_size, gamma } => {
                at_least_one("step_size", "epoch", step_size)?;
                positive("gamma", gamma)
            }
            &LrSchedule::Exponential { gamma } => positive("gamma", gamma),
            &LrSchedule::Cosine { t_max, eta_min } => {
                at_least_one("t_max", "epoch", t_max)?;
                super::non_negative("eta_min", eta_min)
            }
            &LrSchedule::Linear {
                start_factor,
                end_factor,
                ..
            } => {
                // PyTorch's ranges: (0, 1] and [0, 1], written so that NaN fails.
                if !(start_factor > 0.0 && start_factor <= 1.0) {
                    return Err(range("start_factor", "(0, 1]", start_factor));
                }
                if !(0.0..=1.0).contains(&end_factor) {
                    return Err(range("end_factor", "[0, 1]", end_factor));
                }
                Ok(())
            }
            &LrSchedule::OneCycle {
                total_steps,
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                at_least_one("total_steps", "step", total_steps)?;
                if !(0.0..=1.0).contains(&pct_start) {
                    return Err(range("pct_start", "[0, 1]", pct_start));
                }
                positive("div_factor", div_factor)?;
                positive("final_div_factor", final_div_factor)
            }
            LrSchedule::Plateau(plateau) => plateau.validate(),
            LrSchedule::Sequential {
                schedules,
                milestones,
            } => {
                if milestones.len() + 1 != schedules.len() {
                    return Err(Error::Config {
                        name: "milestones",
                        reason: format!(
                            "expected one fewer milestone than schedules ({}), found {}",
                            schedules.len().saturating_sub(1),
                            milestones.len()
                        ),
                    });
                }
                if let Some(pair) = milestones.windows(2).find(|w| w[0] >= w[1]) {
                    return Err(Error::Config {
                        name: "milestones",
                        reason: format!(
                            "expected increasing epochs, found {} then {}",
                            pair[0], pair[1]
                        ),
                    });
                }
                for schedule in schedules {
                    if let LrSchedule::Plateau(_) = schedule {
                        return Err(Error::Config {
                            name: "schedules",
                            reason: "a plateau schedule depends on a metric and cannot be part \
                                     of a sequence (as in PyTorch's SequentialLR)"
                                .into(),
                        });
                    }
                    schedule.validate()?;
                }
                Ok(())
            }
        }
    }
}

/// `gamma^n` in `f64`. Past `i32::MAX` any gamma other than 1 has long reached 0 or infinity.
fn powi(gamma: f32, n: usize) -> f64 {
    f64::from(gamma).powi(i32::try_from(n).unwrap_or(i32::MAX))
}

fn at_least_one(name: &'static str, unit: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::Config {
            name,
            reason: format!("expected at least 1 {unit}, found 0"),
        });
    }
    Ok(())
}

fn positive(name: &'static str, value: f32) -> Result<()> {
    // Written so that NaN fails too.
    if !(value > 0.0 && value.is_finite()) {
        return Err(Error::Config {
            name,
            reason: format!("expected a finite number above 0, found {value}"),
        });
    }
    Ok(())
}

fn range(name: &'static str, range: &str, value: f32) -> Error {
    Error::Config {
        name,
        reason: format!("expected a value in {range}, found {value}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within a few f32 ulps of `expected`.
    fn assert_close(found: f32, expected: f64) {
        assert!(
            (f64::from(found) - expected).abs() <= 3e-7 * expected.abs(),
            "found {found}, expected {expected}"
        );
    }

    #[test]
    fn constant_ignores_the_epoch() {
        for epoch in [0, 1, 1000, usize::MAX] {
            assert_eq!(LrSchedule::Constant.lr_at(0.05, epoch), 0.05);
        }
        assert_eq!(LrSchedule::default(), LrSchedule::Constant);
    }

    /// PyTorch's `StepLR(step_size=30, gamma=0.1)` docs: 0.05 for epochs 0..30, 0.005 for
    /// 30..60, 0.0005 for 60..90.
    #[test]
    fn step_decays_every_step_size_epochs() {
        let schedule = LrSchedule::Step {
            step_size: 30,
            gamma: 0.1,
        };
        for (epoch, expected) in [
            (0, 0.05),
            (29, 0.05),
            (30, 0.005),
            (59, 0.005),
            (60, 0.0005),
            (89, 0.0005),
        ] {
            assert_close(schedule.lr_at(0.05, epoch), expected);
        }
    }

    #[test]
    fn exponential_decays_every_epoch() {
        let schedule = LrSchedule::Exponential { gamma: 0.9 };
        assert_eq!(schedule.lr_at(0.1, 0), 0.1);
        assert_close(schedule.lr_at(0.1, 1), 0.09);
        // gamma is the f32 nearest 0.9, so compare with its own power.
        assert_close(
            schedule.lr_at(0.1, 50),
            f64::from(0.1f32) * f64::from(0.9f32).powi(50),
        );
        assert_eq!(schedule.lr_at(0.1, usize::MAX), 0.0);
    }

    #[test]
    fn validate_rejects_bad_settings() {
        let bad = [
            (
                LrSchedule::Step {
                    step_size: 0,
                    gamma: 0.1,
                },
                "step_size",
            ),
            (
                LrSchedule::Step {
                    step_size: 1,
                    gamma: 0.0,
                },
                "gamma",
            ),
            (LrSchedule::Exponential { gamma: -0.5 }, "gamma"),
            (LrSchedule::Exponential { gamma: f32::NAN }, "gamma"),
            (
                LrSchedule::Exponential {
                    gamma: f32::INFINITY,
                },
                "gamma",
            ),
        ];
        for (schedule, expected) in bad {
            match schedule.validate() {
                Err(Error::Config { name, .. }) => assert_eq!(name, expected, "{schedule:?}"),
                other => panic!("{schedule:?}: expected a config error, found {other:?}"),
            }
        }
        for good in [
            LrSchedule::Constant,
            LrSchedule::Step {
                step_size: 1,
                gamma: 1.5,
            },
            LrSchedule::Exponential { gamma: 0.99 },
        ] {
            good.validate().unwrap();
        }
    }

    #[test]
    fn invalid_step_size_does_not_panic() {
        let schedule = LrSchedule::Step {
            step_size: 0,
            gamma: 0.1,
        };
        assert_eq!(schedule.lr_at(0.1, 10), 0.1);
    }
}
