//! Elastic deformation (Simard, Steinkraus and Platt, 2003): a random displacement field,
//! smoothed by a Gaussian, scaled, and the image resampled along it.

use rand::RngCore;

use super::sample::{check_number, warp_along, Affine, ImageShape};
use super::Augment;
use crate::Result;

/// Moves each pixel by its own small displacement, smooth across the image, as a hand
/// wobbles: Simard, Steinkraus and Platt, "Best practices for convolutional neural networks
/// applied to visual document analysis" (ICDAR 2003), section 2.
///
/// For each sample, a displacement `Δx`, `Δy` is drawn uniformly from `[-1, 1)` at every
/// pixel, each field is convolved with a Gaussian of standard deviation `sigma` pixels
/// (normalised to sum 1, cut at 3 sigma, zero beyond the border), then multiplied by `alpha`;
/// the output pixel at `(r, c)` is the input read bilinearly at `(r + Δy, c + Δx)`. A small
/// `sigma` gives a random, noisy field; a large one a field close to a translation.
/// `alpha = 0` is the identity.
///
/// `Elastic::default()` is the paper's choice for MNIST: `alpha = 34`, `sigma = 4`.
///
/// # Example
///
/// ```
/// use striate::data::augment::{Augmentation, Elastic};
/// use striate::data::Mnist;
///
/// let digits = Mnist::builtin().test.take(4);
/// let mut images = digits.images().to_owned();
/// let mut wobble = Augmentation::new(3).then(Elastic::new(34.0, 4.0)?);
/// wobble.apply(images.view_mut(), 0, &[0, 1, 2, 3])?;
/// assert_ne!(images, digits.images());
///
/// assert!(Elastic::new(34.0, 0.0).is_err()); // sigma must be above 0
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Elastic {
    alpha: f32,
    sigma: f32,
    /// The Gaussian's taps, `kernel[k]` for offsets `-radius..=radius`, summing to 1.
    kernel: Vec<f32>,
}

impl Elastic {
    /// A field smoothed by a Gaussian of width `sigma` pixels and scaled by `alpha`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) unless `alpha` is finite and at least 0, and
    /// `sigma` finite, above 0 and at most 1000.
    pub fn new(alpha: f32, sigma: f32) -> Result<Self> {
        check_number("elastic alpha", alpha, 0.0, false)?;
        check_number("elastic sigma", sigma, 0.0, true)?;
        if sigma > 1000.0 {
            return Err(crate::Error::Config {
                name: "elastic sigma",
                reason: format!("expected a width of at most 1000 pixels, found {sigma:?}"),
            });
        }
        let radius = (3.0 * sigma).ceil() as isize;
        let mut kernel: Vec<f32> = (-radius..=radius)
            .map(|k| (-((k * k) as f32) / (2.0 * sigma * sigma)).exp())
            .collect();
        let sum: f32 = kernel.iter().sum();
        kernel.iter_mut().for_each(|v| *v /= sum);
        Ok(Elastic {
            alpha,
            sigma,
            kernel,
        })
    }

    /// The scale of the displacements, in pixels.
    pub fn alpha(&self) -> f32 {
        self.alpha
    }

    /// The width of the smoothing Gaussian, in pixels.
    pub fn sigma(&self) -> f32 {
        self.sigma
    }
}

impl Default for Elastic {
    fn default() -> Self {
        Elastic::new(34.0, 4.0).expect("the paper's settings are valid")
    }
}

/// Smooths an `h x w` field in place by the separable `kernel` (taps for offsets
/// `-radius..=radius`), zero beyond the border: along columns, then, transposed, along what
/// were the rows, then transposed back. Along columns, a tap is one pass over the whole
/// field, long enough for the compiler's vectorised loop to pay.
fn smooth(field: &mut [f32], tmp: &mut [f32], kernel: &[f32], h: usize, w: usize) {
    smooth_columns(tmp, field, kernel, h, w);
    transpose(field, tmp, h, w);
    smooth_columns(tmp, field, kernel, w, h);
    transpose(field, tmp, w, h);
}

/// `out[r][c] = Σ_k kernel[k] field[r + k - radius][c]` over an `h x w` field, zero outside.
fn smooth_columns(out: &mut [f32], field: &[f32], kernel: &[f32], h: usize, w: usize) {
    let radius = (kernel.len() / 2) as isize;
    out.fill(0.0);
    for (k, &weight) in kernel.iter().enumerate() {
        let offset = k as isize - radius;
        // Rows r with 0 <= r + offset < h.
        let first = (-offset).clamp(0, h as isize) as usize;
        let end = (h as isize - offset).clamp(0, h as isize) as usize;
        if first >= end {
            continue;
        }
        let from = (first as isize + offset) as usize;
        let reads = &field[from * w..(from + end - first) * w];
        for (o, &x) in out[first * w..end * w].iter_mut().zip(reads) {
            *o += weight * x;
        }
    }
}

/// `out` `[w, h]` is `field` `[h, w]` transposed.
fn transpose(out: &mut [f32], field: &[f32], h: usize, w: usize) {
    for (r, line) in field.chunks_exact(w).enumerate() {
        for (c, &v) in line.iter().enumerate() {
            out[c * h + r] = v;
        }
    }
}

/// Uniform numbers in `[-1, 1)`, two from each 64 random bits (24 bits each, as many as an
/// `f32` holds).
fn fill_uniform(field: &mut [f32], rng: &mut dyn RngCore) {
    const SCALE: f32 = 2.0 / (1u32 << 24) as f32;
    for pair in field.chunks_mut(2) {
        let bits = rng.next_u64();
        let halves = [(bits >> 40) as u32, ((bits >> 8) & 0xFF_FFFF) as u32];
        for (v, half) in pair.iter_mut().zip(halves) {
            *v = half as f32 * SCALE - 1.0;
        }
    }
}

impl Elastic {
    /// Fills `field` `[2, H, W]` with this sample's displacements, rows then columns, using
    /// `tmp` (`H*W` values) for the smoothing.
    fn fill_field(
        &self,
        field: &mut [f32],
        tmp: &mut [f32],
        shape: ImageShape,
        rng: &mut dyn RngCore,
    ) {
        let (h, w) = (shape.height, shape.width);
        for displacement in field.chunks_exact_mut(shape.plane()) {
            fill_uniform(displacement, rng);
            smooth(displacement, tmp, &self.kernel, h, w);
            displacement.iter_mut().for_each(|v| *v *= self.alpha);
        }
    }
}

impl Augment for Elastic {
    fn apply(
        &self,
        out: &mut [f32],
        input: &[f32],
        shape: ImageShape,
        rng: &mut dyn RngCore,
        scratch: &mut Vec<f32>,
    ) {
        scratch.resize(3 * shape.plane(), 0.0);
        let (field, tmp) = scratch.split_at_mut(2 * shape.plane());
        self.fill_field(field, tmp, shape, rng);
        warp_along(out, input, shape, field, &Affine::IDENTITY);
    }

    fn displacement(
        &self,
        field: &mut [f32],
        shape: ImageShape,
        rng: &mut dyn RngCore,
        scratch: &mut Vec<f32>,
    ) -> bool {
        scratch.resize(shape.plane(), 0.0);
        self.fill_field(field, scratch, shape, rng);
        true
    }
}
