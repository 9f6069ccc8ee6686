//! Reflection: the image mirrored left to right, or top to bottom, with a probability.

use rand::{Rng, RngCore};

use super::sample::{check_number, Affine, ImageShape};
use super::Augment;
use crate::{Error, Result};

/// Mirrors the image, left to right ([`Flip::horizontal`]) or top to bottom
/// ([`Flip::vertical`]), each sample with probability `p`.
///
/// For digits a mirrored image is seldom the same digit; this suits photographs (a mirrored
/// cat is a cat). `Flip::default()` is a horizontal flip with probability 0.5.
///
/// # Example
///
/// ```
/// use striate::data::augment::{Augmentation, Flip};
/// use striate::ndarray::array;
///
/// let mut image = array![[[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]]];
/// let mut mirror = Augmentation::new(0).then(Flip::horizontal(1.0)?);
/// mirror.apply(image.view_mut(), 0, &[0])?;
/// assert_eq!(image, array![[[[3.0f32, 2.0, 1.0], [6.0, 5.0, 4.0]]]]);
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flip {
    axis: Axis,
    probability: f32,
}

/// Which way a [`Flip`] mirrors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Axis {
    /// Columns reversed.
    Horizontal,
    /// Rows reversed.
    Vertical,
}

impl Flip {
    /// Mirrors left to right (reverses each row) with probability `p`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) unless `0 <= p <= 1`.
    pub fn horizontal(p: f32) -> Result<Self> {
        Flip::new(Axis::Horizontal, p)
    }

    /// Mirrors top to bottom (reverses the order of the rows) with probability `p`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) unless `0 <= p <= 1`.
    pub fn vertical(p: f32) -> Result<Self> {
        Flip::new(Axis::Vertical, p)
    }

    fn new(axis: Axis, probability: f32) -> Result<Self> {
        check_number("flip probability", probability, 0.0, false)?;
        if probability > 1.0 {
            return Err(Error::Config {
                name: "flip probability",
                reason: format!("expected a probability from 0 to 1, found {probability:?}"),
            });
        }
        Ok(Flip { axis, probability })
    }
}

impl Default for Flip {
    fn default() -> Self {
        Flip {
            axis: Axis::Horizontal,
            probability: 0.5,
        }
    }
}

impl Augment for Flip {
    fn affine(&self, shape: ImageShape, rng: &mut dyn RngCore) -> Option<Affine> {
        // `random::<f32>()` is below 1, so a probability of 1 always flips and 0 never does.
        if rng.random::<f32>() >= self.probability {
            return Some(Affine::IDENTITY);
        }
        let (last_row, last_column) = (shape.height as f32 - 1.0, shape.width as f32 - 1.0);
        Some(match self.axis {
            Axis::Horizontal => Affine::new([[1.0, 0.0], [0.0, -1.0]], [0.0, last_column]),
            Axis::Vertical => Affine::new([[-1.0, 0.0], [0.0, 1.0]], [last_row, 0.0]),
        })
    }
}
