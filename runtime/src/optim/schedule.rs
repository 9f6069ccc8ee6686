//! Learning-rate schedules: the learning rate as a function of the epoch.

use crate::{Error, Result};

/// How the learning rate changes from epoch to epoch, as PyTorch's schedulers of the same names
/// (in their closed form, `_get_closed_form_lr`).
///
/// Epochs count from 0; epoch 0 uses the base learning rate.
///
/// # Example
///
/// ```
/// use striate::optim::{LrSchedule, Sgd};
///
/// let schedule = LrSchedule::Step { step_size: 2, gamma: 0.5 };
/// schedule.validate()?;
/// let base_lr = 0.1;
/// let mut sgd = Sgd::new(base_lr);
/// let mut used = Vec::new();
/// for epoch in 0..5 {
///     sgd.set_lr(schedule.lr_at(base_lr, epoch));
///     used.push(sgd.lr());
///     // ... one epoch of training ...
/// }
/// assert_eq!(used, [0.1, 0.1, 0.05, 0.05, 0.025]);
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
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
}

impl LrSchedule {
    /// The learning rate at `epoch` for a base learning rate `base_lr`.
    ///
    /// The power is taken in `f64` and rounded once, so late epochs do not accumulate the
    /// rounding error of repeated `f32` multiplications. For a schedule that
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
    /// ```
    pub fn lr_at(&self, base_lr: f32, epoch: usize) -> f32 {
        let (gamma, decays) = match *self {
            LrSchedule::Constant => return base_lr,
            LrSchedule::Step { step_size, gamma } => {
                (gamma, epoch.checked_div(step_size).unwrap_or(0))
            }
            LrSchedule::Exponential { gamma } => (gamma, epoch),
        };
        // Past i32::MAX decays any gamma other than 1 has long reached 0 or infinity.
        let decays = i32::try_from(decays).unwrap_or(i32::MAX);
        (f64::from(base_lr) * f64::from(gamma).powi(decays)) as f32
    }

    /// Checks the schedule's settings.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `step_size` is 0 or `gamma` is not a finite positive number.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::optim::LrSchedule;
    ///
    /// let err = LrSchedule::Step { step_size: 0, gamma: 0.1 }.validate().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid step_size: expected at least 1 epoch, found 0");
    /// ```
    pub fn validate(&self) -> Result<()> {
        let gamma = match *self {
            LrSchedule::Constant => return Ok(()),
            LrSchedule::Step { step_size: 0, .. } => {
                return Err(Error::Config {
                    name: "step_size",
                    reason: "expected at least 1 epoch, found 0".into(),
                })
            }
            LrSchedule::Step { gamma, .. } | LrSchedule::Exponential { gamma } => gamma,
        };
        // Written so that NaN fails too.
        if !(gamma > 0.0 && gamma.is_finite()) {
            return Err(Error::Config {
                name: "gamma",
                reason: format!("expected a finite number above 0, found {gamma}"),
            });
        }
        Ok(())
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
