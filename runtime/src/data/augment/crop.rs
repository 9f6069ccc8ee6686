//! Random crop with padding: the image framed by zeros, then cut back to its size at a random
//! place.

use rand::{Rng, RngCore};

use super::sample::{Affine, ImageShape};
use super::Augment;

/// Pads the image with `pad` zeros on every side and cuts an image of the original size from
/// a place drawn uniformly: a shift by whole pixels, from `-pad` to `pad` along each axis,
/// that keeps the size (the crop of Krizhevsky et al. 2012 and of the CIFAR ResNets, with
/// `pad = 4`).
///
/// `Crop::default()` pads by 2.
///
/// # Example
///
/// ```
/// use striate::data::augment::{Augmentation, Crop};
/// use striate::ndarray::Array4;
///
/// let mut images = Array4::<f32>::ones((2, 3, 8, 8));
/// let mut crop = Augmentation::new(1).then(Crop::pad(4));
/// crop.apply(images.view_mut(), 0, &[0, 1])?;
/// assert_eq!(images.shape(), [2, 3, 8, 8]);
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pad: usize,
}

impl Crop {
    /// Pads by `pad` pixels on every side before cropping; 0 changes nothing.
    pub fn pad(pad: usize) -> Self {
        Crop { pad }
    }
}

impl Default for Crop {
    fn default() -> Self {
        Crop { pad: 2 }
    }
}

impl Augment for Crop {
    fn affine(&self, _shape: ImageShape, rng: &mut dyn RngCore) -> Option<Affine> {
        // The crop's top-left corner in the padded image, 0..=2 pad, less the padding: the
        // output pixel (r, c) reads the input at (r + dy, c + dx), zero outside it.
        let pad = self.pad as i64;
        let dy = (rng.random_range(0..=2 * pad) - pad) as f32;
        let dx = (rng.random_range(0..=2 * pad) - pad) as f32;
        Some(Affine::shift(dy, dx))
    }
}
