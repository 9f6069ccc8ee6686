//! Rotation about the image's centre by a random angle.

use std::ops::RangeInclusive;

use rand::RngCore;

use super::sample::{check_range, uniform, Affine, ImageShape};
use super::Augment;
use crate::Result;

/// Turns the image about its centre by an angle drawn uniformly from a range of degrees,
/// counter-clockwise as the image is seen (row 0 at the top) for positive angles; resampled
/// bilinearly, corners turned in from outside are 0.
///
/// `Rotate::default()` turns by up to 15 degrees either way.
///
/// # Example
///
/// A quarter turn counter-clockwise moves the pixel right of the centre to above it:
///
/// ```
/// use striate::data::augment::{Augmentation, Rotate};
/// use striate::ndarray::Array4;
///
/// let mut image = Array4::<f32>::zeros((1, 1, 5, 5));
/// image[[0, 0, 2, 4]] = 1.0; // centre row, last column
/// let mut turn = Augmentation::new(0).then(Rotate::degrees(90.0..=90.0)?);
/// turn.apply(image.view_mut(), 0, &[0])?;
/// assert!((image[[0, 0, 0, 2]] - 1.0).abs() < 1e-5); // top row, centre column
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Rotate {
    degrees: RangeInclusive<f32>,
}

impl Rotate {
    /// Angles drawn from `degrees`, e.g. `-15.0..=15.0`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for an end that is not finite, or a start
    /// past the end.
    pub fn degrees(degrees: RangeInclusive<f32>) -> Result<Self> {
        check_range("rotation in degrees", &degrees, f32::MIN, false)?;
        Ok(Rotate { degrees })
    }
}

impl Default for Rotate {
    fn default() -> Self {
        Rotate {
            degrees: -15.0..=15.0,
        }
    }
}

impl Augment for Rotate {
    fn affine(&self, shape: ImageShape, rng: &mut dyn RngCore) -> Option<Affine> {
        let angle = f64::from(uniform(rng, &self.degrees)).to_radians();
        let (sin, cos) = (angle.sin() as f32, angle.cos() as f32);
        let (cr, cc) = shape.centre();
        // With rows pointing down, a counter-clockwise turn by t takes the offset (dy, dx)
        // from the centre to (dy cos t - dx sin t, dx cos t + dy sin t); the output reads the
        // input at the inverse, (dy cos t + dx sin t, dx cos t - dy sin t).
        let turn = Affine::new([[cos, sin], [-sin, cos]], [0.0, 0.0]);
        Some(about(cr, cc, &turn))
    }
}

/// `map` about the point `(cr, cc)` instead of the origin.
pub(super) fn about(cr: f32, cc: f32, map: &Affine) -> Affine {
    Affine::shift(cr, cc)
        .after(map)
        .after(&Affine::shift(-cr, -cc))
}
