//! What the augmentations share: the image they work on, bilinear resampling, random draws
//! from a range, and the checks of their settings.

use std::ops::RangeInclusive;

use rand::{Rng, RngCore};

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

/// `x.floor()` as an integer, without the library call that `f32::floor` is on CPUs without
/// SSE4.1 (most of the time spent resampling went there); saturates far outside `i32`.
fn floor(x: f32) -> i32 {
    let truncated = x as i32;
    truncated - i32::from((truncated as f32) > x)
}

/// Fills `out` by reading `input` at `source(row, column)`, bilinearly, for every channel;
/// pixels outside `input` read as 0. At whole-pixel source positions this copies exactly.
// out, input: (C, H, W); source: output (row, col) -> input (row, col), real-valued
pub(crate) fn warp(
    out: &mut [f32],
    input: &[f32],
    shape: ImageShape,
    mut source: impl FnMut(usize, usize) -> (f32, f32),
) {
    let (h, w, plane) = (shape.height, shape.width, shape.plane());
    debug_assert_eq!(out.len(), shape.len());
    debug_assert_eq!(input.len(), shape.len());
    // A row is done in chunks: first every reading point of the chunk, then their whole
    // parts and fractions (a loop the compiler vectorises), then the reads, one by one.
    const CHUNK: usize = 16;
    let (mut sr, mut sc) = ([0.0f32; CHUNK], [0.0f32; CHUNK]);
    let (mut r0, mut c0) = ([0i32; CHUNK], [0i32; CHUNK]);
    let (mut fr, mut fc) = ([0.0f32; CHUNK], [0.0f32; CHUNK]);
    for r in 0..h {
        for start in (0..w).step_by(CHUNK) {
            let n = CHUNK.min(w - start);
            for k in 0..n {
                (sr[k], sc[k]) = source(r, start + k);
            }
            for k in 0..CHUNK {
                (r0[k], c0[k]) = (floor(sr[k]), floor(sc[k]));
                (fr[k], fc[k]) = (sr[k] - r0[k] as f32, sc[k] - c0[k] as f32);
            }
            for k in 0..n {
                let at = r * w + start + k;
                let (r0, c0, fr, fc) = (r0[k], c0[k], fr[k], fc[k]);
                let inside = r0 >= 0 && c0 >= 0 && (r0 as usize) + 1 < h && (c0 as usize) + 1 < w;
                if inside {
                    // The four neighbours are pixels of the input: no test per neighbour.
                    // At a whole-pixel point a fraction is 0 and the read is exact.
                    let i = r0 as usize * w + c0 as usize;
                    for ch in 0..shape.channels {
                        let p = &input[ch * plane..(ch + 1) * plane];
                        let (top, bottom) = (&p[i..i + 2], &p[i + w..i + w + 2]);
                        let upper = top[0] + fc * (top[1] - top[0]);
                        let lower = bottom[0] + fc * (bottom[1] - bottom[0]);
                        out[ch * plane + at] = upper + fr * (lower - upper);
                    }
                    continue;
                }
                let weights = [
                    (1.0 - fr) * (1.0 - fc),
                    (1.0 - fr) * fc,
                    fr * (1.0 - fc),
                    fr * fc,
                ];
                let tap = |dr: i32, dc: i32| {
                    let (rr, cc) = (r0.saturating_add(dr), c0.saturating_add(dc));
                    (rr >= 0 && cc >= 0 && (rr as usize) < h && (cc as usize) < w)
                        .then(|| rr as usize * w + cc as usize)
                };
                let taps = [tap(0, 0), tap(0, 1), tap(1, 0), tap(1, 1)];
                for (o, p) in out[at..]
                    .iter_mut()
                    .step_by(plane)
                    .zip(input.chunks_exact(plane))
                {
                    *o = taps
                        .iter()
                        .zip(weights)
                        .filter_map(|(tap, weight)| tap.map(|i| weight * p[i]))
                        .sum();
                }
            }
        }
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
        warp(out, input, shape, |r, c| self.map(r as f32, c as f32));
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
    let (rows, columns) = field.split_at(shape.plane());
    let w = shape.width;
    warp(out, input, shape, |r, c| {
        let i = r * w + c;
        before.map(r as f32 + rows[i], c as f32 + columns[i])
    });
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
