//! Intensity variation: gamma, contrast and brightness, each drawn from a range.

use std::ops::RangeInclusive;

use rand::RngCore;

use super::sample::{check_range, uniform, ImageShape};
use super::Augment;
use crate::ops::isa::{isa_builds, Isa};
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
        let sum = if gamma == 1.0 {
            let mut sum = 0.0f64;
            for (o, &x) in out.iter_mut().zip(input) {
                *o = x.max(0.0);
                sum += f64::from(*o);
            }
            sum
        } else {
            power(Isa::current(), out, input, gamma)
        };
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

isa_builds! {
    /// `out[i] = max(input[i], 0)^gamma`, and their sum, in loops the compiler vectorises:
    /// [`pow`] instead of `f32::powf` (a library call, one pixel at a time), and the sum in
    /// 16 lanes, each chunk of 4,096 pixels' lanes then added in f64 (so that an image of
    /// millions of pixels keeps its mean exact to f32 precision).
    fn power(out: &mut [f32], input: &[f32], gamma: f32) -> f64 {
        for (o, &x) in out.iter_mut().zip(input) {
            *o = pow(x.max(0.0), gamma);
        }
        let mut sum = 0.0f64;
        for chunk in out.chunks(4096) {
            let mut lanes = [0.0f32; 16];
            let mut sixteens = chunk.chunks_exact(16);
            for sixteen in &mut sixteens {
                for (lane, &v) in lanes.iter_mut().zip(sixteen) {
                    *lane += v;
                }
            }
            for (lane, &v) in lanes.iter_mut().zip(sixteens.remainder()) {
                *lane += v;
            }
            sum += lanes.iter().map(|&v| f64::from(v)).sum::<f64>();
        }
        sum
    }
}

/// `x^gamma` for `x >= 0` and `gamma > 0`, as `2^(gamma log2 x)`, each by a polynomial: to
/// a relative error about 1e-6 where `gamma log2 x` is small and below 2e-5 over all `f32`
/// (the test below measures it), results below `2^-125` flushed to 0; 0 and 1 are exact, as is infinity. Branch-free, so that a
/// loop over pixels vectorises.
#[inline(always)]
fn pow(x: f32, gamma: f32) -> f32 {
    const LN2_INV_2: f32 = 2.0 * std::f32::consts::LOG2_E;
    // Subnormal inputs are scaled into the normal range first (2^64 x, and 64 off the
    // exponent), so that the exponent bits below read right.
    let tiny = x < f32::MIN_POSITIVE;
    let scaled = if tiny {
        x * 18_446_744_073_709_551_616.0
    } else {
        x
    };
    let bits = scaled.to_bits();
    // x = 2^e m with m in [sqrt(1/2), sqrt(2)): log2 x = e + log2 m.
    let mut e = ((bits >> 23) & 0xFF) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    if tiny {
        e -= 64;
    }
    // log2 m = 2/ln 2 (t + t^3/3 + t^5/5 + t^7/7 + t^9/9), t = (m - 1)/(m + 1), |t| < 0.172.
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series = 1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0))));
    let y = gamma * (e as f32 + LN2_INV_2 * t * series);
    // 2^y = 2^n 2^f with n = round(y) and f in [-1/2, 1/2]; 2^f by its Taylor series to f^7.
    // Results below 2^-125 become 0, and no step works on subnormal numbers (many times
    // slower on most CPUs); above 2^128 they are infinite.
    let underflow = y < -125.0;
    // Not `clamp`, which keeps a NaN.
    #[allow(clippy::manual_clamp)]
    let y = y.max(-125.0).min(129.0);
    // SAFETY: `y` is within ±129 (a NaN, impossible for `x >= 0`, would become -125).
    let n: i32 = unsafe { (y + if y < 0.0 { -0.5 } else { 0.5 }).to_int_unchecked() };
    let f = y - n as f32;
    let g = f * std::f32::consts::LN_2;
    let p = 1.0
        + g * (1.0
            + g * (0.5
                + g * (1.0 / 6.0
                    + g * (1.0 / 24.0 + g * (1.0 / 120.0 + g * (1.0 / 720.0 + g / 5040.0))))));
    // 2^n as two halves, so that n up to 129 stays within the exponent's range.
    let half = n / 2;
    let two = |k: i32| f32::from_bits(((k + 127).clamp(0, 255) as u32) << 23);
    let result = p * two(half) * two(n - half);
    if x == 0.0 || x == 1.0 || x == f32::INFINITY {
        x
    } else if underflow {
        0.0
    } else {
        result
    }
}

#[cfg(test)]
mod tests {
    use super::pow;

    /// Against `f64::powf`, over pixel values and far beyond, subnormals included.
    #[test]
    fn pow_is_close_to_powf() {
        let mut worst_pixel = 0.0f64;
        let mut worst = 0.0f64;
        for gamma in [0.05f32, 0.5, 0.8, 0.9, 1.1, 1.25, 2.0, 3.7] {
            for i in 0..=20_000 {
                for x in [
                    i as f32 / 20_000.0,
                    1e-40 * i as f32,
                    10f32.powf(-38.0 + i as f32 * 7.6e-3),
                ] {
                    let exact = f64::from(x).powf(f64::from(gamma));
                    if !(4.0 * f64::from(f32::MIN_POSITIVE)..=f64::from(f32::MAX)).contains(&exact)
                    {
                        continue;
                    }
                    let error = ((f64::from(pow(x, gamma)) - exact) / exact).abs();
                    worst = worst.max(error);
                    if (1.0 / 256.0..=1.0).contains(&x) && gamma <= 1.25 {
                        worst_pixel = worst_pixel.max(error);
                    }
                }
            }
        }
        eprintln!("pow: worst {worst:e}, on pixels {worst_pixel:e}");
        assert!(
            worst_pixel < 1.5e-6,
            "worst relative error on pixels {worst_pixel:e}"
        );
        assert!(worst < 2e-5, "worst relative error {worst:e}");
        for gamma in [0.3f32, 1.0, 2.0] {
            assert_eq!(pow(0.0, gamma), 0.0);
            assert_eq!(pow(1.0, gamma), 1.0);
            assert_eq!(pow(f32::INFINITY, gamma), f32::INFINITY);
        }
    }
}
