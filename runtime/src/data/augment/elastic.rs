//! Elastic deformation (Simard, Steinkraus and Platt, 2003): a random displacement field,
//! smoothed by a Gaussian, scaled, and the image resampled along it.

use rand::RngCore;

use super::sample::{check_number, warp_along, Affine, ImageShape};
use super::Augment;
use crate::ops::isa::{isa_builds, Isa};
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
    /// The Gaussian's taps, `kernel[k]` for offsets `-radius..=radius`, summing to 1, each
    /// times `sqrt(alpha)`: smoothing along both axes scales the field by `alpha`.
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
        let scale = alpha.sqrt() / sum;
        kernel.iter_mut().for_each(|v| *v *= scale);
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

/// Lanes of the smoothing loops (one AVX-512 register of `f32`): the noise is laid out at a
/// width that is a whole number of them.
const LANES: usize = 16;

/// The noise at `index` of a field whose 64 random bits are `seed`: uniform in `[-1, 1)`,
/// 24 bits (as many as an `f32` holds) of a 32-bit mix of the two (MurmurHash3's
/// finaliser). A function of the index rather than a sequence, so that a whole field is
/// drawn in one vectorised loop.
#[inline(always)]
fn noise(seed: u64, index: u32) -> f32 {
    const SCALE: f32 = 2.0 / (1u32 << 24) as f32;
    let mut x = (index ^ (seed >> 32) as u32).wrapping_mul(0x9E37_79B9) ^ seed as u32;
    x = (x ^ (x >> 16)).wrapping_mul(0x85EB_CA6B);
    x = (x ^ (x >> 13)).wrapping_mul(0xC2B2_AE35);
    x ^= x >> 16;
    (x >> 8) as f32 * SCALE - 1.0
}

/// Rows smoothed at once, so that their sums are independent chains of additions rather
/// than one chain waiting on each addition's latency.
const QUAD: usize = 4;

/// Zero rows above and below each field the column pass reads: as many as a group of
/// [`QUAD`] rows can reach past the field's edge.
const PAD: usize = QUAD - 1;

isa_builds! {
    /// Fills the `h x w` `field` with noise drawn from `seed`, smoothed by the separable
    /// `kernel` (taps for offsets `-radius..=radius`), zero beyond the border: along the
    /// columns, then along the rows. `tmp` holds [`Elastic::scratch`] values.
    fn smooth_noise(field: &mut [f32], tmp: &mut [f32], kernel: &[f32], h: usize, w: usize, seed: u64) {
        // The column pass reads rows padded to whole registers, `PAD` zero rows above and
        // below.
        let ws = w.next_multiple_of(LANES);
        let (drawn, rest) = tmp.split_at_mut((h + 2 * PAD) * ws);
        let (columns, rows) = rest.split_at_mut(h * ws);
        // The noise: the columns past `w` are 0, and never read into the field.
        drawn.fill(0.0);
        for (r, line) in drawn[PAD * ws..(PAD + h) * ws].chunks_exact_mut(ws).enumerate() {
            for (c, v) in line.iter_mut().enumerate() {
                let value = noise(seed, (r * w + c) as u32);
                *v = if c < w { value } else { 0.0 };
            }
        }
        smooth_columns(columns, drawn, kernel, h, ws);
        smooth_rows(field, columns, rows, kernel, h, w);
    }
}

/// `out[r][c] = Σ_k kernel[k] field[r][c + k - radius]` for the `h x w` `out`, zero outside,
/// from `field`'s rows of `w.next_multiple_of(LANES)`: [`QUAD`] rows at a time, each copied
/// between [`LANES`] zeros on either side into `copies`, [`LANES`] outputs of each at a time.
#[inline(always)]
fn smooth_rows(
    out: &mut [f32],
    field: &[f32],
    copies: &mut [f32],
    kernel: &[f32],
    h: usize,
    w: usize,
) {
    let (taps, radius) = (kernel.len(), kernel.len() / 2);
    let (ws, span) = (w.next_multiple_of(LANES), w + 2 * LANES);
    let copies = &mut copies[..QUAD * span];
    copies.fill(0.0);
    for r in (0..h).step_by(QUAD) {
        let group = QUAD.min(h - r);
        for (q, copy) in copies.chunks_exact_mut(span).enumerate().take(group) {
            copy[LANES..LANES + w].copy_from_slice(&field[(r + q) * ws..][..w]);
        }
        for cb in (0..w).step_by(LANES) {
            // Tap k of output cb + j reads copy[LANES + cb + j + k - radius]; the taps before
            // `first` and from `end` read only the zeros (or not even those).
            let first = (radius + 1).saturating_sub(cb + LANES);
            let end = taps.min(radius + w - cb);
            let mut sums = [[0.0f32; LANES]; QUAD];
            for (k, &weight) in kernel.iter().enumerate().take(end).skip(first) {
                let from = LANES + cb + k - radius;
                for (sum, copy) in sums.iter_mut().zip(copies.chunks_exact(span)) {
                    for (s, &x) in sum.iter_mut().zip(&copy[from..from + LANES]) {
                        *s += weight * x;
                    }
                }
            }
            let n = LANES.min(w - cb);
            for (q, sum) in sums.iter().enumerate().take(group) {
                out[(r + q) * w + cb..][..n].copy_from_slice(&sum[..n]);
            }
        }
    }
}

/// `out[r][c] = Σ_k kernel[k] field[r + k - radius][c]` over `rows` rows of `width` (a
/// multiple of [`LANES`]) values, zero outside; `field` holds [`PAD`] zero rows above and
/// below them. Each output's taps are summed in order in a register, [`LANES`] outputs of
/// each of [`QUAD`] rows at a time.
#[inline(always)]
fn smooth_columns(out: &mut [f32], field: &[f32], kernel: &[f32], rows: usize, width: usize) {
    let (taps, radius) = (kernel.len(), kernel.len() / 2);
    for r in (0..rows).step_by(QUAD) {
        // The taps that reach a row of the field from one of the group's rows; the others
        // would read zeros. Tap k of row r + q reads padded row r + q + k + PAD - radius,
        // from q + PAD - (QUAD - 1) >= 0 to below rows + 2 PAD.
        let first = radius.saturating_sub(r + QUAD - 1);
        let end = taps.min(rows + radius - r);
        for cb in (0..width).step_by(LANES) {
            let mut sums = [[0.0f32; LANES]; QUAD];
            for (k, &weight) in kernel.iter().enumerate().take(end).skip(first) {
                for (q, sum) in sums.iter_mut().enumerate() {
                    let from = (r + q + k + PAD - radius) * width + cb;
                    for (s, &x) in sum.iter_mut().zip(&field[from..from + LANES]) {
                        *s += weight * x;
                    }
                }
            }
            for (q, sum) in sums.iter().enumerate().take(rows - r) {
                out[(r + q) * width + cb..][..LANES].copy_from_slice(sum);
            }
        }
    }
}

impl Elastic {
    /// How many values of scratch [`smooth_noise`] needs for a field of `shape`.
    fn scratch(shape: ImageShape) -> usize {
        let ws = shape.width.next_multiple_of(LANES);
        (2 * shape.height + 2 * PAD) * ws + QUAD * (shape.width + 2 * LANES)
    }

    /// Fills `field` `[2, H, W]` with this sample's displacements, rows then columns, using
    /// `tmp` ([`Elastic::scratch`] values) for the smoothing.
    fn fill_field(
        &self,
        field: &mut [f32],
        tmp: &mut [f32],
        shape: ImageShape,
        rng: &mut dyn RngCore,
    ) {
        let (h, w) = (shape.height, shape.width);
        let isa = Isa::current();
        for displacement in field.chunks_exact_mut(shape.plane()) {
            let seed = rng.next_u64();
            smooth_noise(isa, displacement, tmp, &self.kernel, h, w, seed);
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
        scratch.resize(2 * shape.plane() + Elastic::scratch(shape), 0.0);
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
        scratch.resize(Elastic::scratch(shape), 0.0);
        self.fill_field(field, scratch, shape, rng);
        true
    }
}
