//! Translation: the image shifted by a random offset, in pixels, along each axis.

use std::ops::RangeInclusive;

use rand::RngCore;

use super::sample::{check_range, uniform, Affine, ImageShape};
use super::Augment;
use crate::Result;

/// Shifts the image by `dx` columns (right for positive) and `dy` rows (down for positive),
/// each drawn uniformly and independently from the same range; pixels shifted in are 0.
///
/// Shifts need not be whole: between pixels the image is resampled bilinearly. A whole-pixel
/// shift moves every pixel exactly. `Translate::default()` shifts by up to 2 pixels either
/// way.
///
/// # Example
///
/// ```
/// use striate::data::augment::{Augmentation, Translate};
/// use striate::ndarray::Array4;
///
/// let mut image = Array4::<f32>::zeros((1, 1, 5, 5));
/// image[[0, 0, 1, 1]] = 1.0;
/// let mut shift = Augmentation::new(0).then(Translate::pixels(2.0..=2.0)?);
/// shift.apply(image.view_mut(), 0, &[0])?;
/// assert_eq!(image[[0, 0, 3, 3]], 1.0); // two down, two right
/// assert_eq!(image.sum(), 1.0);
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Translate {
    pixels: RangeInclusive<f32>,
}

impl Translate {
    /// Shifts drawn from `pixels` along each axis, e.g. `-2.0..=2.0`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for an end that is not finite, or a start
    /// past the end.
    pub fn pixels(pixels: RangeInclusive<f32>) -> Result<Self> {
        check_range("translation in pixels", &pixels, f32::MIN, false)?;
        Ok(Translate { pixels })
    }
}

impl Default for Translate {
    fn default() -> Self {
        Translate { pixels: -2.0..=2.0 }
    }
}

impl Augment for Translate {
    fn affine(&self, _shape: ImageShape, rng: &mut dyn RngCore) -> Option<Affine> {
        let dx = uniform(rng, &self.pixels);
        let dy = uniform(rng, &self.pixels);
        Some(Affine::shift(-dy, -dx))
    }
}
