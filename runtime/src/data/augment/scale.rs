//! Scaling about the image's centre by a random factor.

use std::ops::RangeInclusive;

use rand::RngCore;

use super::rotate::about;
use super::sample::{check_range, uniform, Affine, ImageShape};
use super::Augment;
use crate::Result;

/// Zooms the image about its centre by a factor drawn uniformly from a range: above 1 it
/// grows (its edges leave the frame), below 1 it shrinks (a border of 0 comes in); resampled
/// bilinearly. The same factor applies to both axes.
///
/// `Scale::default()` draws from `0.9..=1.1`.
///
/// # Example
///
/// ```
/// use striate::data::augment::{Augmentation, Scale};
/// use striate::ndarray::Array4;
///
/// let mut image = Array4::<f32>::zeros((1, 1, 5, 5));
/// image[[0, 0, 2, 3]] = 1.0; // one right of the centre
/// let mut zoom = Augmentation::new(0).then(Scale::factor(2.0..=2.0)?);
/// zoom.apply(image.view_mut(), 0, &[0])?;
/// assert_eq!(image[[0, 0, 2, 4]], 1.0); // now two right of it
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Scale {
    factor: RangeInclusive<f32>,
}

impl Scale {
    /// Factors drawn from `factor`, e.g. `0.9..=1.1`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for an end that is not finite or not above 0,
    /// or a start past the end.
    pub fn factor(factor: RangeInclusive<f32>) -> Result<Self> {
        check_range("scale factor", &factor, 0.0, true)?;
        Ok(Scale { factor })
    }
}

impl Default for Scale {
    fn default() -> Self {
        Scale { factor: 0.9..=1.1 }
    }
}

impl Augment for Scale {
    fn affine(&self, shape: ImageShape, rng: &mut dyn RngCore) -> Option<Affine> {
        let inverse = 1.0 / uniform(rng, &self.factor);
        let (cr, cc) = shape.centre();
        let zoom = Affine::new([[inverse, 0.0], [0.0, inverse]], [0.0, 0.0]);
        Some(about(cr, cc, &zoom))
    }
}
