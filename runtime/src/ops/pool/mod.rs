//! Max and average pooling, forward and backward.

use super::window::inputs_read;
use striate_geometry::{output_size_2d, Rounding, SizeError};

/// The geometry of one pooling layer, per sample (channels pass through unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dGeom {
    /// Channels `C`.
    pub c: usize,
    /// Input height `H`.
    pub in_h: usize,
    /// Input width `W`.
    pub in_w: usize,
    /// Window height.
    pub k_h: usize,
    /// Window width.
    pub k_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Padding above and below (padded cells never win a max and count as zeros in an average,
    /// as PyTorch's `count_include_pad = True`).
    pub pad_h: usize,
    /// Padding left and right.
    pub pad_w: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
}

impl Pool2dGeom {
    /// The geometry of pooling `input = [C, H, W]` with a window `kernel`, `stride`, `pad`.
    ///
    /// # Errors
    /// When the window does not fit or (with [`Rounding::Exact`]) does not tile the input.
    pub const fn try_new(
        input: [usize; 3],
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        rounding: Rounding,
    ) -> Result<Self, SizeError> {
        let [out_h, out_w] =
            match output_size_2d([input[1], input[2]], kernel, stride, pad, rounding) {
                Ok(v) => v,
                Err(e) => return Err(e),
            };
        Ok(Pool2dGeom {
            c: input[0],
            in_h: input[1],
            in_w: input[2],
            k_h: kernel[0],
            k_w: kernel[1],
            stride_h: stride[0],
            stride_w: stride[1],
            pad_h: pad[0],
            pad_w: pad[1],
            out_h,
            out_w,
        })
    }

    /// [`Pool2dGeom::try_new`] for `const` items the macro has already validated.
    ///
    /// # Panics
    /// When the geometry is invalid (in a `const`, that is a compile error).
    pub const fn new(
        input: [usize; 3],
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        rounding: Rounding,
    ) -> Self {
        match Self::try_new(input, kernel, stride, pad, rounding) {
            Ok(g) => g,
            Err(_) => panic!("invalid pooling geometry"),
        }
    }

    /// Input values per sample, `C*H*W`.
    pub const fn in_len(&self) -> usize {
        self.c * self.in_h * self.in_w
    }

    /// Output values per sample, `C*OH*OW`.
    pub const fn out_len(&self) -> usize {
        self.c * self.out_h * self.out_w
    }
}

/// The `argmax` entry of a max-pooling window that lies wholly in the padding (possible only
/// when a pad is at least the window size): such a window outputs 0 and passes no gradient.
pub const EMPTY_WINDOW: u32 = u32::MAX;

/// Max pooling: `y[n,c,i,j] = max` of the window's real input cells; padded cells never win.
///
/// `y` and `argmax` are overwritten. `argmax` records, for [`max_backward`], where each maximum
/// was found, as an index into the sample's own `(C, H, W)` block (`c·H·W + h·W + w`), or
/// [`EMPTY_WINDOW`]. As in PyTorch, ties go to the first cell in row-major window order and a
/// NaN wins (the last NaN of the window, if there are several).
///
/// # Panics
/// When a slice is shorter than the geometry needs; in debug builds, when any length differs
/// or a sample has more than `u32::MAX` values.
///
/// # Example
/// ```
/// use striate_geometry::Rounding;
/// use striate_runtime::ops::pool::{max_forward, Pool2dGeom};
///
/// let g = Pool2dGeom::new([1, 2, 4], [2, 2], [2, 2], [0, 0], Rounding::Exact);
/// let x = [1.0, 5.0, 2.0, 0.0, //
///          3.0, 4.0, 8.0, 8.0];
/// let (mut y, mut argmax) = ([0.0; 2], [0; 2]);
/// max_forward(&mut y, &mut argmax, &x, &g, 1);
/// assert_eq!(y, [5.0, 8.0]);
/// assert_eq!(argmax, [1, 6]);
/// ```
pub fn max_forward(y: &mut [f32], argmax: &mut [u32], x: &[f32], g: &Pool2dGeom, n: usize) {
    // x: (N, C, H, W) -> y: (N, C, OH, OW), argmax: (N, C, OH, OW)
    debug_check(y, x, g, n);
    debug_assert_eq!(argmax.len(), y.len());
    debug_assert!(u32::try_from(g.in_len()).is_ok_and(|len| len < EMPTY_WINDOW));
    if g.pad_h == 0 && g.pad_w == 0 {
        // Every window lies wholly inside the input: no clipping, and for LeNet's 2×2 windows
        // a loop the compiler unrolls.
        if (g.k_h, g.k_w, g.stride_h, g.stride_w) == (2, 2, 2, 2) {
            max_forward_2x2(y, argmax, x, g, n);
        } else if (g.k_h, g.k_w) == (2, 2) {
            max_forward_unpadded::<2, 2>(y, argmax, x, g, n);
        } else {
            max_forward_unpadded::<0, 0>(y, argmax, x, g, n);
        }
        return;
    }
    let (plane, area, in_w) = (g.in_h * g.in_w, g.out_h * g.out_w, g.in_w);
    for p in 0..n * g.c {
        let x_p = &x[p * plane..(p + 1) * plane];
        // Offset of this channel's plane within its sample.
        let base = (p % g.c) * plane;
        let y_p = &mut y[p * area..(p + 1) * area];
        let argmax_p = &mut argmax[p * area..(p + 1) * area];
        for oh in 0..g.out_h {
            let rows = inputs_read(oh, g.k_h, g.pad_h, g.stride_h, g.in_h);
            for ow in 0..g.out_w {
                let cols = inputs_read(ow, g.k_w, g.pad_w, g.stride_w, in_w);
                let out = oh * g.out_w + ow;
                if rows.is_empty() || cols.is_empty() {
                    y_p[out] = 0.0;
                    argmax_p[out] = EMPTY_WINDOW;
                    continue;
                }
                let mut best_at = rows.start * in_w + cols.start;
                let mut best = x_p[best_at];
                for ih in rows.clone() {
                    let row = &x_p[ih * in_w..(ih + 1) * in_w];
                    for (iw, &v) in row[cols.clone()].iter().enumerate() {
                        if v > best || v.is_nan() {
                            best = v;
                            best_at = ih * in_w + cols.start + iw;
                        }
                    }
                }
                y_p[out] = best;
                argmax_p[out] = (base + best_at) as u32;
            }
        }
    }
}

/// [`max_forward`] for 2×2 windows with stride 2 and no padding (LeNet's, VGG's): each output
/// row reads two input rows pairwise, with no index arithmetic in the inner loop.
fn max_forward_2x2(y: &mut [f32], argmax: &mut [u32], x: &[f32], g: &Pool2dGeom, n: usize) {
    // x: (N, C, H, W) -> y: (N, C, H/2, W/2), argmax: (N, C, H/2, W/2)
    let (plane, area, in_w, out_w) = (g.in_h * g.in_w, g.out_h * g.out_w, g.in_w, g.out_w);
    if plane == 0 || area == 0 {
        return;
    }
    let planes = x.chunks_exact(plane).take(n * g.c);
    let outs = y.chunks_exact_mut(area).zip(argmax.chunks_exact_mut(area));
    for (p, (x_p, (y_p, argmax_p))) in planes.zip(outs).enumerate() {
        let base = ((p % g.c) * plane) as u32;
        let rows = y_p
            .chunks_exact_mut(out_w)
            .zip(argmax_p.chunks_exact_mut(out_w));
        for (oh, (y_row, a_row)) in rows.enumerate() {
            let top = 2 * oh * in_w;
            let r0 = &x_p[top..top + 2 * out_w];
            let r1 = &x_p[top + in_w..top + in_w + 2 * out_w];
            let cells = r0.chunks_exact(2).zip(r1.chunks_exact(2));
            for (ow, ((y_o, a_o), (c0, c1))) in y_row.iter_mut().zip(a_row).zip(cells).enumerate() {
                // Row-major window order; a later cell wins when greater, or NaN.
                let at = base + top as u32 + 2 * ow as u32;
                let (mut best, mut best_at) = (c0[0], at);
                for (v, v_at) in [
                    (c0[1], at + 1),
                    (c1[0], at + in_w as u32),
                    (c1[1], at + in_w as u32 + 1),
                ] {
                    let wins = v > best || v.is_nan();
                    best = if wins { v } else { best };
                    best_at = if wins { v_at } else { best_at };
                }
                *y_o = best;
                *a_o = best_at;
            }
        }
    }
}

/// [`max_forward`] without padding, for windows of `KH×KW` (or, when both are 0, of the
/// geometry's size): the same winners, found without clipping any window.
fn max_forward_unpadded<const KH: usize, const KW: usize>(
    y: &mut [f32],
    argmax: &mut [u32],
    x: &[f32],
    g: &Pool2dGeom,
    n: usize,
) {
    // x: (N, C, H, W) -> y: (N, C, OH, OW), argmax: (N, C, OH, OW)
    let (k_h, k_w) = if KH == 0 { (g.k_h, g.k_w) } else { (KH, KW) };
    debug_assert_eq!((k_h, k_w), (g.k_h, g.k_w));
    debug_assert!(g.pad_h == 0 && g.pad_w == 0);
    let (plane, area, in_w) = (g.in_h * g.in_w, g.out_h * g.out_w, g.in_w);
    if plane == 0 || area == 0 {
        return;
    }
    let planes = x.chunks_exact(plane).take(n * g.c);
    let outs = y.chunks_exact_mut(area).zip(argmax.chunks_exact_mut(area));
    for (p, (x_p, (y_p, argmax_p))) in planes.zip(outs).enumerate() {
        let base = (p % g.c) * plane;
        for oh in 0..g.out_h {
            let top = oh * g.stride_h * in_w;
            let y_row = &mut y_p[oh * g.out_w..(oh + 1) * g.out_w];
            let a_row = &mut argmax_p[oh * g.out_w..(oh + 1) * g.out_w];
            for (ow, (y_o, a_o)) in y_row.iter_mut().zip(a_row).enumerate() {
                let corner = top + ow * g.stride_w;
                let mut best_at = corner;
                let mut best = x_p[corner];
                for kh in 0..k_h {
                    let start = corner + kh * in_w;
                    for (kw, &v) in x_p[start..start + k_w].iter().enumerate() {
                        // The same rule as the general path: later cells win only when
                        // greater, or NaN. Written as selects, not a branch: on real data
                        // which cell wins is unpredictable.
                        let wins = v > best || v.is_nan();
                        best = if wins { v } else { best };
                        best_at = if wins { start + kw } else { best_at };
                    }
                }
                *y_o = best;
                *a_o = (base + best_at) as u32;
            }
        }
    }
}

/// The gradient of [`max_forward`]: each output's gradient is added to the input cell that won
/// its window, as recorded in `argmax`. Accumulates into `d_x`.
///
/// # Panics
/// When a slice is shorter than the geometry needs or an `argmax` entry points outside its
/// sample; in debug builds, when any length differs.
pub fn max_backward(d_x: &mut [f32], d_y: &[f32], argmax: &[u32], g: &Pool2dGeom, n: usize) {
    // d_y: (N, C, OH, OW), argmax: (N, C, OH, OW) -> d_x: (N, C, H, W)
    debug_check(d_y, d_x, g, n);
    debug_assert_eq!(argmax.len(), d_y.len());
    let (in_len, out_len) = (g.in_len(), g.out_len());
    for i in 0..n {
        let d_x_n = &mut d_x[i * in_len..(i + 1) * in_len];
        let outputs = i * out_len..(i + 1) * out_len;
        for (&grad, &at) in d_y[outputs.clone()].iter().zip(&argmax[outputs]) {
            if at != EMPTY_WINDOW {
                d_x_n[at as usize] += grad;
            }
        }
    }
}

/// Average pooling: `y[n,c,i,j] = (Σ window) / (KH·KW)`, padded cells counting as zeros
/// (PyTorch's `count_include_pad = True`). `y` is overwritten.
///
/// # Panics
/// When a slice is shorter than the geometry needs; in debug builds, when any length differs.
pub fn avg_forward(y: &mut [f32], x: &[f32], g: &Pool2dGeom, n: usize) {
    // x: (N, C, H, W) -> y: (N, C, OH, OW)
    debug_check(y, x, g, n);
    let (plane, area, in_w) = (g.in_h * g.in_w, g.out_h * g.out_w, g.in_w);
    let scale = 1.0 / (g.k_h * g.k_w) as f32;
    for p in 0..n * g.c {
        let x_p = &x[p * plane..(p + 1) * plane];
        let y_p = &mut y[p * area..(p + 1) * area];
        for oh in 0..g.out_h {
            let rows = inputs_read(oh, g.k_h, g.pad_h, g.stride_h, g.in_h);
            for ow in 0..g.out_w {
                let cols = inputs_read(ow, g.k_w, g.pad_w, g.stride_w, in_w);
                let mut sum = 0.0;
                for ih in rows.clone() {
                    sum += x_p[ih * in_w..(ih + 1) * in_w][cols.clone()]
                        .iter()
                        .sum::<f32>();
                }
                y_p[oh * g.out_w + ow] = sum * scale;
            }
        }
    }
}

/// The gradient of [`avg_forward`]: each output's gradient, divided by `KH·KW`, is added to
/// every real cell of its window. Accumulates into `d_x`.
///
/// # Panics
/// When a slice is shorter than the geometry needs; in debug builds, when any length differs.
pub fn avg_backward(d_x: &mut [f32], d_y: &[f32], g: &Pool2dGeom, n: usize) {
    // d_y: (N, C, OH, OW) -> d_x: (N, C, H, W)
    debug_check(d_y, d_x, g, n);
    let (plane, area, in_w) = (g.in_h * g.in_w, g.out_h * g.out_w, g.in_w);
    let scale = 1.0 / (g.k_h * g.k_w) as f32;
    for p in 0..n * g.c {
        let d_x_p = &mut d_x[p * plane..(p + 1) * plane];
        let d_y_p = &d_y[p * area..(p + 1) * area];
        for oh in 0..g.out_h {
            let rows = inputs_read(oh, g.k_h, g.pad_h, g.stride_h, g.in_h);
            for ow in 0..g.out_w {
                let cols = inputs_read(ow, g.k_w, g.pad_w, g.stride_w, in_w);
                let grad = d_y_p[oh * g.out_w + ow] * scale;
                for ih in rows.clone() {
                    for d in &mut d_x_p[ih * in_w..(ih + 1) * in_w][cols.clone()] {
                        *d += grad;
                    }
                }
            }
        }
    }
}

/// The reference version of [`max_forward`], without the `argmax` record: every window tap
/// checked against the padding one by one. `y` is overwritten.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
pub fn max_forward_naive(y: &mut [f32], x: &[f32], g: &Pool2dGeom, n: usize) {
    // x: (N, C, H, W) -> y: (N, C, OH, OW)
    debug_check(y, x, g, n);
    for (out, y_out) in y.iter_mut().enumerate() {
        *y_out = window_max_naive(x, g, out).map_or(0.0, |at| x[at]);
    }
}

/// The reference version of [`max_backward`]: finds each window's winner again from `x` and
/// adds the output's gradient to it. Accumulates into `d_x`.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
pub fn max_backward_naive(d_x: &mut [f32], d_y: &[f32], x: &[f32], g: &Pool2dGeom, n: usize) {
    // d_y: (N, C, OH, OW), x: (N, C, H, W) -> d_x: (N, C, H, W)
    debug_check(d_y, x, g, n);
    debug_assert_eq!(d_x.len(), x.len());
    for (out, &grad) in d_y.iter().enumerate() {
        if let Some(at) = window_max_naive(x, g, out) {
            d_x[at] += grad;
        }
    }
}

/// The reference version of [`avg_forward`]. `y` is overwritten.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
pub fn avg_forward_naive(y: &mut [f32], x: &[f32], g: &Pool2dGeom, n: usize) {
    // x: (N, C, H, W) -> y: (N, C, OH, OW)
    debug_check(y, x, g, n);
    for (out, y_out) in y.iter_mut().enumerate() {
        let sum: f32 = window_naive(g, out).map(|at| x[at]).sum();
        *y_out = sum / (g.k_h * g.k_w) as f32;
    }
}

/// The reference version of [`avg_backward`]. Accumulates into `d_x`.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
pub fn avg_backward_naive(d_x: &mut [f32], d_y: &[f32], g: &Pool2dGeom, n: usize) {
    // d_y: (N, C, OH, OW) -> d_x: (N, C, H, W)
    debug_check(d_y, d_x, g, n);
    for (out, &grad) in d_y.iter().enumerate() {
        for at in window_naive(g, out) {
            d_x[at] += grad / (g.k_h * g.k_w) as f32;
        }
    }
}

/// The batch-wide indices of the real input cells in the window of output `out` (a batch-wide
/// index into `(N, C, OH, OW)`), in row-major window order.
fn window_naive(g: &Pool2dGeom, out: usize) -> impl Iterator<Item = usize> + '_ {
    let (plane, ow) = (out / (g.out_h * g.out_w), out % g.out_w);
    let oh = out / g.out_w % g.out_h;
    (0..g.k_h).flat_map(move |kh| {
        (0..g.k_w).filter_map(move |kw| {
            let ih = (oh * g.stride_h + kh).checked_sub(g.pad_h)?;
            let iw = (ow * g.stride_w + kw).checked_sub(g.pad_w)?;
            (ih < g.in_h && iw < g.in_w).then_some((plane * g.in_h + ih) * g.in_w + iw)
        })
    })
}

/// Where the maximum of output `out`'s window lies in `x`, by the rules of [`max_forward`].
fn window_max_naive(x: &[f32], g: &Pool2dGeom, out: usize) -> Option<usize> {
    window_naive(g, out).reduce(|best, at| {
        if x[at] > x[best] || x[at].is_nan() {
            at
        } else {
            best
        }
    })
}

fn debug_check(y: &[f32], x: &[f32], g: &Pool2dGeom, n: usize) {
    debug_assert_eq!(y.len(), n * g.out_len(), "y (or d_y) length");
    debug_assert_eq!(x.len(), n * g.in_len(), "x (or d_x) length");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{assert_close, check_gradient, dot, rng, uniform};
    use rand::seq::SliceRandom;
    use rand::Rng;

    type Case = (usize, [usize; 3], [usize; 2], [usize; 2], [usize; 2]);

    /// `(n, [C, H, W], [KH, KW], [SH, SW], [PH, PW])`: batch 0 and 1, odd sizes, strides 1-3,
    /// pads 0-2, non-square windows, overlapping windows, and windows wholly in the padding.
    const CASES: &[Case] = &[
        (0, [2, 4, 4], [2, 2], [2, 2], [0, 0]),
        (1, [1, 1, 1], [1, 1], [1, 1], [0, 0]),
        (2, [3, 6, 6], [2, 2], [2, 2], [0, 0]),
        (3, [2, 7, 5], [3, 2], [2, 1], [1, 1]),
        (2, [2, 9, 8], [3, 3], [3, 2], [1, 0]),
        (1, [3, 5, 7], [2, 5], [1, 3], [1, 2]),
        (1, [2, 4, 4], [1, 1], [2, 2], [1, 1]),
        (2, [5, 13, 11], [3, 3], [2, 2], [1, 1]),
    ];

    fn geom(case: &Case) -> Pool2dGeom {
        let &(_, input, kernel, stride, pad) = case;
        Pool2dGeom::new(input, kernel, stride, pad, Rounding::Floor)
    }

    /// Distinct values at least 0.1 apart, shuffled, so a finite-difference step of 0.01
    /// never changes which cell wins a window.
    fn distinct(r: &mut impl Rng, len: usize) -> Vec<f32> {
        let mut x: Vec<f32> = (0..len)
            .map(|i| i as f32 * 0.1 - len as f32 * 0.05)
            .collect();
        x.shuffle(r);
        x
    }

    #[test]
    fn max_matches_naive() {
        let mut r = rng(10);
        for case in CASES {
            let (g, n) = (geom(case), case.0);
            // Few distinct values, so that windows have ties.
            let x: Vec<f32> = (0..n * g.in_len())
                .map(|_| r.random_range(0..4) as f32)
                .collect();
            let mut y = vec![f32::NAN; n * g.out_len()];
            let mut argmax = vec![12345; y.len()];
            let mut expected = vec![f32::NAN; y.len()];
            max_forward(&mut y, &mut argmax, &x, &g, n);
            max_forward_naive(&mut expected, &x, &g, n);
            assert_eq!(y, expected, "{g:?}");

            let d_y = uniform(&mut r, y.len());
            let mut d_x = uniform(&mut r, x.len());
            let mut d_x_naive = d_x.clone();
            max_backward(&mut d_x, &d_y, &argmax, &g, n);
            max_backward_naive(&mut d_x_naive, &d_y, &x, &g, n);
            assert_eq!(d_x, d_x_naive, "{g:?}");
        }
    }

    #[test]
    fn avg_matches_naive() {
        let mut r = rng(11);
        for case in CASES {
            let (g, n) = (geom(case), case.0);
            let x = uniform(&mut r, n * g.in_len());
            let mut y = vec![f32::NAN; n * g.out_len()];
            let mut expected = vec![f32::NAN; y.len()];
            avg_forward(&mut y, &x, &g, n);
            avg_forward_naive(&mut expected, &x, &g, n);
            assert_close(&format!("y {g:?}"), &y, &expected, 1e-6);

            let d_y = uniform(&mut r, y.len());
            let mut d_x = uniform(&mut r, x.len());
            let mut d_x_naive = d_x.clone();
            avg_backward(&mut d_x, &d_y, &g, n);
            avg_backward_naive(&mut d_x_naive, &d_y, &g, n);
            assert_close(&format!("d_x {g:?}"), &d_x, &d_x_naive, 1e-6);
        }
    }

    #[test]
    fn max_backward_matches_finite_differences() {
        let mut r = rng(12);
        for case in &CASES[1..] {
            let (g, n) = (geom(case), case.0);
            let x = distinct(&mut r, n * g.in_len());
            let weights = uniform(&mut r, n * g.out_len());
            let (mut y, mut argmax) = (vec![0.0; weights.len()], vec![0; weights.len()]);
            max_forward(&mut y, &mut argmax, &x, &g, n);
            let mut d_x = vec![0.0; x.len()];
            max_backward(&mut d_x, &weights, &argmax, &g, n);
            check_gradient("d_x", &x, &d_x, 1e-2, 1e-3, |x| {
                max_forward(&mut y, &mut argmax, x, &g, n);
                dot(&weights, &y)
            });
        }
    }

    #[test]
    fn avg_backward_matches_finite_differences() {
        let mut r = rng(13);
        for case in &CASES[1..] {
            let (g, n) = (geom(case), case.0);
            let x = uniform(&mut r, n * g.in_len());
            let weights = uniform(&mut r, n * g.out_len());
            let mut d_x = vec![0.0; x.len()];
            avg_backward(&mut d_x, &weights, &g, n);
            let mut y = vec![0.0; weights.len()];
            check_gradient("d_x", &x, &d_x, 1e-2, 1e-3, |x| {
                avg_forward(&mut y, x, &g, n);
                dot(&weights, &y)
            });
        }
    }

    /// Ties go to the first cell in row-major order; the argmax of the second sample counts
    /// from that sample's start.
    #[test]
    fn ties_go_to_the_first_cell() {
        let g = Pool2dGeom::new([2, 3, 3], [2, 2], [1, 1], [1, 1], Rounding::Exact);
        let x = vec![1.0; 2 * g.in_len()];
        let mut y = vec![f32::NAN; 2 * g.out_len()];
        let mut argmax = vec![0; y.len()];
        max_forward(&mut y, &mut argmax, &x, &g, 2);
        assert!(y.iter().all(|&v| v == 1.0));
        // First real cell of each 2×2 window over the 3×3 plane padded by one.
        let plane = [0, 0, 1, 2, 0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8];
        let expected: Vec<u32> = (0..4)
            .flat_map(|c| plane.map(|a| a + 9 * (c % 2)))
            .collect();
        assert_eq!(argmax, expected);
    }

    /// A NaN wins its window (the last one, when there are several), as in PyTorch.
    #[test]
    fn nan_wins() {
        let g = Pool2dGeom::new([1, 2, 4], [2, 2], [2, 2], [0, 0], Rounding::Exact);
        let x = [1.0, f32::NAN, 7.0, f32::NAN, 9.0, 0.0, f32::NAN, 8.0];
        let (mut y, mut argmax) = ([0.0; 2], [0; 2]);
        max_forward(&mut y, &mut argmax, &x, &g, 1);
        assert!(y[0].is_nan() && y[1].is_nan());
        assert_eq!(argmax, [1, 6]);
        let mut naive = [0.0; 2];
        max_forward_naive(&mut naive, &x, &g, 1);
        assert!(naive[0].is_nan() && naive[1].is_nan());
    }

    /// Padding counts as zeros in an average: a 2×2 window over a 2×2 plane of ones padded by
    /// one sees one real cell. `nn.AvgPool2d(2, 2, padding=1)(torch.ones(1, 1, 2, 2))` is 0.25
    /// everywhere.
    #[test]
    fn average_counts_padding_as_zeros() {
        let g = Pool2dGeom::new([1, 2, 2], [2, 2], [2, 2], [1, 1], Rounding::Exact);
        let mut y = [f32::NAN; 4];
        avg_forward(&mut y, &[1.0; 4], &g, 1);
        assert_eq!(y, [0.25; 4]);
        let mut d_x = [1.0; 4];
        avg_backward(&mut d_x, &[1.0, 2.0, 3.0, 4.0], &g, 1);
        assert_eq!(d_x, [1.25, 1.5, 1.75, 2.0]);
    }

    /// A window wholly in the padding outputs 0 and passes no gradient.
    #[test]
    fn empty_windows() {
        let g = Pool2dGeom::new([1, 2, 2], [1, 1], [2, 2], [1, 1], Rounding::Floor);
        let x = [-1.0, -2.0, -3.0, -4.0];
        let (mut y, mut argmax) = ([f32::NAN; 4], [0; 4]);
        max_forward(&mut y, &mut argmax, &x, &g, 1);
        assert_eq!(y, [0.0, 0.0, 0.0, -4.0]);
        assert_eq!(argmax, [EMPTY_WINDOW, EMPTY_WINDOW, EMPTY_WINDOW, 3]);
        let mut d_x = [0.0; 4];
        max_backward(&mut d_x, &[1.0; 4], &argmax, &g, 1);
        assert_eq!(d_x, [0.0, 0.0, 0.0, 1.0]);
    }
}
