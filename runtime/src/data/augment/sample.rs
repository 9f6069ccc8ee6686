//! What the augmentations share: the image they work on, bilinear resampling, random draws
//! from a range, and the checks of their settings.

use std::ops::RangeInclusive;

use rand::{Rng, RngCore};

use crate::ops::isa::{isa_builds, Isa};
use crate::{Error, Result};

/// One sample's pixels, `[C, H, W]`, flat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageShape {
    /// Channels.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageShape {
    /// `C*H*W`.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether the image has no pixels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `H*W`, the pixels of one channel.
    pub fn plane(&self) -> usize {
        self.height * self.width
    }

    /// `Ok` for images whose planes the resampling kernels can index: below 2^31 pixels
    /// (8 GiB a channel), with sides below 2^31.
    ///
    /// # Errors
    /// [`Error::Config`] naming the plane's size.
    pub(crate) fn check(&self) -> Result<()> {
        let fits = |n: usize| n < 1 << 31;
        if fits(self.height)
            && fits(self.width)
            && self.height.checked_mul(self.width).is_some_and(fits)
        {
            return Ok(());
        }
        Err(Error::Config {
            name: "augmented image",
            reason: format!(
                "expected planes of fewer than 2^31 pixels, found {} x {}",
                self.height, self.width
            ),
        })
    }

    /// The image's centre, `((H - 1) / 2, (W - 1) / 2)` in (row, column) pixel coordinates,
    /// about which rotation and scaling turn and stretch.
    pub(crate) fn centre(&self) -> (f32, f32) {
        (
            (self.height as f32 - 1.0) / 2.0,
            (self.width as f32 - 1.0) / 2.0,
        )
    }
}

impl From<[usize; 3]> for ImageShape {
    fn from([channels, height, width]: [usize; 3]) -> Self {
        ImageShape {
            channels,
            height,
            width,
        }
    }
}

/// `x.floor()` as an integer, in instructions a vectorised loop keeps in its lanes (neither
/// the library call that `f32::floor` is without SSE4.1 nor a saturating cast's fix-ups):
/// `x` is first clamped to `±2^30` (a NaN to `-2^30`, which `f32::max` drops), far outside
/// any image, so that the truncation is exact and defined.
#[inline(always)]
fn floor(x: f32) -> i32 {
    const FAR: f32 = (1u32 << 30) as f32;
    // Not `clamp`, which keeps a NaN.
    #[allow(clippy::manual_clamp)]
    let x = x.max(-FAR).min(FAR);
    // SAFETY: `x` is finite and within `±2^30`, so its truncation is an `i32`.
    let truncated: i32 = unsafe { x.to_int_unchecked() };
    truncated - i32::from((truncated as f32) > x)
}

/// Reading points are taken this many at a time: one AVX-512 register of `f32`.
const CHUNK: usize = 16;

/// Fills `out` by reading `input` bilinearly at `map(r + Δr, c + Δc)` for each output pixel
/// `(r, c)`, in every channel, with `Δr`, `Δc` from `field` `[2, H, W]` (rows then columns)
/// or 0 without one; pixels outside `input` read as 0. At whole-pixel source positions this
/// copies exactly.
// out, input: (C, H, W); field: (2, H, W)
fn warp(out: &mut [f32], input: &[f32], shape: ImageShape, map: &Affine, field: Option<&[f32]>) {
    let (h, w, plane) = (shape.height, shape.width, shape.plane());
    debug_assert_eq!(out.len(), shape.len());
    debug_assert_eq!(input.len(), shape.len());
    debug_assert!(field.is_none_or(|f| f.len() == 2 * plane));
    if plane == 0 {
        return;
    }
    // The kernels count in 32-bit lanes; `Augmentation::apply` and `prefetch` refuse larger
    // images (`ImageShape::check`), so this is only a guard.
    let (Ok(hi), Ok(wi), true) = (i32::try_from(h), i32::try_from(w), plane < 1 << 31) else {
        return;
    };
    resample(Isa::current(), out, input, hi, wi, map, field);
}

isa_builds! {
    /// [`warp`] on `h x w` planes: a row at a time, [`CHUNK`] reading points at a time,
    /// first their positions, then, for each channel, the reads of all of them at once
    /// (loops the compiler vectorises, with gathers where the instruction set has them).
    fn resample(
        out: &mut [f32],
        input: &[f32],
        h: i32,
        w: i32,
        map: &Affine,
        field: Option<&[f32]>,
    ) {
        let (rows, width) = (h as usize, w as usize);
        let plane = rows * width;
        let [[a, b], [c, d]] = map.matrix;
        let [t0, t1] = map.offset;
        let (mut sr, mut sc) = ([0.0f32; CHUNK], [0.0f32; CHUNK]);
        let mut values = [0.0f32; CHUNK];
        for r in 0..rows {
            for start in (0..width).step_by(CHUNK) {
                let n = CHUNK.min(width - start);
                let at = r * width + start;
                for k in 0..CHUNK {
                    let (mut y, mut x) = (r as f32, (start + k) as f32);
                    if let Some(field) = field {
                        // Past the row's end (k >= n) the reads are of other pixels, or
                        // clamped to the last: in bounds, and their points never stored.
                        let i = (at + k).min(plane - 1);
                        y += field[i];
                        x += field[plane + i];
                    }
                    sr[k] = a * y + b * x + t0;
                    sc[k] = c * y + d * x + t1;
                }
                for (p, o) in input.chunks_exact(plane).zip(out.chunks_exact_mut(plane)) {
                    bilinear(&mut values, p, h, w, &sr, &sc);
                    o[at..at + n].copy_from_slice(&values[..n]);
                }
            }
        }
    }
}

/// `values[k]`: the `h x w` plane `p` read bilinearly at `(sr[k], sc[k])`, neighbours outside
/// the plane reading as 0. Branch-free, in 32-bit lanes: each neighbour's row and column are
/// clamped into the plane (so every read is in bounds) and its value dropped when it lies
/// outside. `h * w` must be below 2^31 (`warp` checks).
#[inline(always)]
fn bilinear(
    values: &mut [f32; CHUNK],
    p: &[f32],
    h: i32,
    w: i32,
    sr: &[f32; CHUNK],
    sc: &[f32; CHUNK],
) {
    assert!(h > 0 && w > 0 && (h as usize) * (w as usize) <= p.len());
    let read = |r: i32, c: i32| -> f32 {
        let inside = r >= 0 && c >= 0 && r < h && c < w;
        let i = r.clamp(0, h - 1) * w + c.clamp(0, w - 1);
        // SAFETY: 0 <= i <= (h - 1) * w + w - 1 < h * w <= p.len(), the row and the column
        // clamped into the plane just above.
        let v = unsafe { *p.get_unchecked(i as usize) };
        if inside {
            v
        } else {
            0.0
        }
    };
    for k in 0..CHUNK {
        let (r0, c0) = (floor(sr[k]), floor(sc[k]));
        let (fr, fc) = (sr[k] - r0 as f32, sc[k] - c0 as f32);
        let (r1, c1) = (r0.wrapping_add(1), c0.wrapping_add(1));
        let (t0, t1, b0, b1) = (read(r0, c0), read(r0, c1), read(r1, c0), read(r1, c1));
        // At a whole-pixel point a fraction is 0 and the read is exact.
        let upper = t0 + fc * (t1 - t0);
        let lower = b0 + fc * (b1 - b0);
        values[k] = upper + fr * (lower - upper);
    }
}

/// An affine map of pixel coordinates, `(row, column) -> M (row, column) + t`: for a step that
/// only moves pixels, where each output pixel reads the input
/// ([`Augment::affine`](super::Augment::affine)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    matrix: [[f32; 2]; 2],
    offset: [f32; 2],
}

impl Affine {
    /// Every pixel reads itself.
    pub const IDENTITY: Affine = Affine {
        matrix: [[1.0, 0.0], [0.0, 1.0]],
        offset: [0.0, 0.0],
    };

    /// `(r, c) -> (m[0][0] r + m[0][1] c + t[0], m[1][0] r + m[1][1] c + t[1])`.
    pub fn new(matrix: [[f32; 2]; 2], offset: [f32; 2]) -> Self {
        Affine { matrix, offset }
    }

    /// `(r, c) -> (r + rows, c + columns)`: each output pixel reads the input `rows` below and
    /// `columns` right of itself, so the image moves up and left.
    pub fn shift(rows: f32, columns: f32) -> Self {
        Affine::new([[1.0, 0.0], [0.0, 1.0]], [rows, columns])
    }

    /// Where the output pixel at `(row, column)` reads the input.
    pub fn map(&self, row: f32, column: f32) -> (f32, f32) {
        let [[a, b], [c, d]] = self.matrix;
        (
            a * row + b * column + self.offset[0],
            c * row + d * column + self.offset[1],
        )
    }

    /// `self` after `inner`: `x -> self.map(inner.map(x))`. Two steps in a row, the first
    /// reading the input at `first` and the second reading the first's output at `second`,
    /// read the input at `first.after(&second)`.
    pub fn after(&self, inner: &Affine) -> Affine {
        let [[a, b], [c, d]] = self.matrix;
        let [[e, f], [g, h]] = inner.matrix;
        let (t0, t1) = self.map(inner.offset[0], inner.offset[1]);
        Affine {
            matrix: [
                [a * e + b * g, a * f + b * h],
                [c * e + d * g, c * f + d * h],
            ],
            offset: [t0, t1],
        }
    }

    /// Fills `out` by reading `input` where this map says, bilinearly.
    pub(crate) fn warp(&self, out: &mut [f32], input: &[f32], shape: ImageShape) {
        warp(out, input, shape, self, None);
    }

    /// Resamples `image` where this map says, using `spare` for the result and swapping the
    /// two, so that `image` holds the result.
    pub(crate) fn warp_in_place(
        &self,
        image: &mut Vec<f32>,
        spare: &mut Vec<f32>,
        shape: ImageShape,
    ) {
        self.warp(spare, image, shape);
        std::mem::swap(image, spare);
    }
}

/// Fills `out` by reading `input` at `before(r + Δr, c + Δc)` for each output pixel `(r, c)`,
/// with `Δr`, `Δc` from `field` `[2, H, W]` (rows then columns): a step that moves pixels
/// along a field, after the affine steps before it, in one resampling.
pub(crate) fn warp_along(
    out: &mut [f32],
    input: &[f32],
    shape: ImageShape,
    field: &[f32],
    before: &Affine,
) {
    warp(out, input, shape, before, Some(field));
}

/// A number drawn uniformly from `range` (its one value when both ends are equal).
pub(crate) fn uniform(rng: &mut dyn RngCore, range: &RangeInclusive<f32>) -> f32 {
    let (lo, hi) = (*range.start(), *range.end());
    if lo == hi {
        // Still draw, so that the draws after this one do not depend on the range.
        let _ = rng.next_u32();
        return lo;
    }
    lo + (hi - lo) * rng.random::<f32>()
}

/// `Ok` for a range of finite numbers with `start <= end`, each at least `min` (and above it
/// when `min_open`); [`Error::Config`] naming `name`, what was expected and what was found.
pub(crate) fn check_range(
    name: &'static str,
    range: &RangeInclusive<f32>,
    min: f32,
    min_open: bool,
) -> Result<()> {
    let (lo, hi) = (*range.start(), *range.end());
    let bound = if min_open { "above" } else { "at least" };
    let problem = if !lo.is_finite() || !hi.is_finite() {
        Some("finite ends".to_string())
    } else if lo > hi {
        Some("start <= end".to_string())
    } else if (min_open && lo <= min) || (!min_open && lo < min) {
        Some(format!("both ends {bound} {min}"))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(expected) => Err(Error::Config {
            name,
            reason: format!("expected a range with {expected}, found {lo:?}..={hi:?}"),
        }),
    }
}

/// `Ok` for a finite number at least `min` (above it when `min_open`).
pub(crate) fn check_number(name: &'static str, value: f32, min: f32, min_open: bool) -> Result<()> {
    check_range(name, &(value..=value), min, min_open).map_err(|_| Error::Config {
        name,
        reason: format!(
            "expected a finite number {} {min}, found {value:?}",
            if min_open { "above" } else { "at least" }
        ),
    })
}
