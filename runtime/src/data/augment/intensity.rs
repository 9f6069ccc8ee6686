//! Intensity variation: gamma, contrast and brightness, each drawn from a range.

use std::ops::RangeInclusive;

use rand::RngCore;

use super::sample::{check_range, uniform, ImageShape};
use super::Augment;
use crate::Result;

/// Varies the pixels' values, for pixels in `[0, 1]` (as [`Mnist`](crate::data::Mnist)
/// gives them): with `gamma`, `contrast` and `brightness` drawn from their ranges, once per
/// sample, every pixel becomes
///
/// `clamp((x^gamma - m) * contrast + m + brightness, 0, 1)`,
///
/// with `m` the mean of the sample's `x^gamma`. So gamma below 1 brightens the mid-tones,
/// contrast above 1 spreads the values from their mean, and brightness adds to every pixel.
/// Negative pixels read as 0.
///
/// `Intensity::default()` draws brightness from `-0.1..=0.1`, contrast from `0.8..=1.2` and
/// gamma from `0.8..=1.25`; `Intensity::new(0.0..=0.0, 1.0..=1.0, 1.0..=1.0)` changes no
/// pixel in `[0, 1]`.
///
/// # Example
///
/// ```
/// use striate::data::augment::{Augmentation, Intensity};
/// use striate::ndarray::array;
///
/// let mut image = array![[[[0.25f32, 0.75]]]];
/// let brighter = Intensity::new(0.1..=0.1, 1.0..=1.0, 1.0..=1.0)?;
/// Augmentation::new(0).then(brighter).apply(image.view_mut(), 0, &[0])?;
/// assert!((image[[0, 0, 0, 0]] - 0.35).abs() < 1e-6 && (image[[0, 0, 0, 1]] - 0.85).abs() < 1e-6);
///
/// assert!(Intensity::new(0.0..=0.0, 1.0..=1.0, 0.0..=2.0).is_err()); // gamma must be above 0
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Intensity {
    brightness: RangeInclusive<f32>,
    contrast: RangeInclusive<f32>,
    gamma: RangeInclusive<f32>,
}

impl Intensity {
    /// Brightness (added), contrast (a factor about the mean) and gamma (a power) drawn from
    /// these ranges.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for an end that is not finite, a start past
    /// the end, a contrast below 0 or a gamma not above 0.
    pub fn new(
        brightness: RangeInclusive<f32>,
        contrast: RangeInclusive<f32>,
        gamma: RangeInclusive<f32>,
    ) -> Result<Self> {
        check_range("brightness", &brightness, f32::MIN, false)?;
        check_range("contrast", &contrast, 0.0, false)?;
        check_range("gamma", &gamma, 0.0, true)?;
        Ok(Intensity {
            brightness,
            contrast,
            gamma,
        })
    }
}

impl Default for Intensity {
    fn default() -> Self {
        Intensity {
            brightness: -0.1..=0.1,
            contrast: 0.8..=1.2,
            gamma: 0.8..=1.25,
        }
    }
}

impl Augment for Intensity {
    fn apply(
        &self,
        out: &mut [f32],
        input: &[f32],
        _shape: ImageShape,
        rng: &mut dyn RngCore,
        _scratch: &mut Vec<f32>,
    ) {
        let gamma = uniform(rng, &self.gamma);
        let contrast = uniform(rng, &self.contrast);
        let brightness = uniform(rng, &self.brightness);
        let mut sum = 0.0f64;
        for (o, &x) in out.iter_mut().zip(input) {
            let x = x.max(0.0);
            // 0 and 1 are their own powers: most of a digit is 0, and `powf` is slow.
            *o = if gamma == 1.0 || x == 0.0 || x == 1.0 {
                x
            } else {
                x.powf(gamma)
            };
            sum += f64::from(*o);
        }
        let mean = (sum / out.len().max(1) as f64) as f32;
        if contrast == 1.0 && brightness == 0.0 {
            out.iter_mut().for_each(|o| *o = o.clamp(0.0, 1.0));
            return;
        }
        for o in out.iter_mut() {
            *o = ((*o - mean) * contrast + mean + brightness).clamp(0.0, 1.0);
        }
    }
}
