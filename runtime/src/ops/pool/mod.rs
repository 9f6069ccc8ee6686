//! Max and average pooling, forward and backward.

use super::check_lens;
use super::parallel::{self, SharedMut};
use super::window::inputs_read;
use striate_geometry::{output_size_2d, Rounding, SizeError};

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

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

    /// Panics unless the slices of `kernel` at batch size `n`, given by their names and
    /// lengths, hold `n` samples: of inputs, `(C, H, W)`, and of outputs, `(C, OH, OW)`.
    #[track_caller]
    fn check(&self, kernel: &str, n: usize, inputs: &[(&str, usize)], outputs: &[(&str, usize)]) {
        check_lens(kernel, outputs, Some(n), &[self.c, self.out_h, self.out_w]);
        check_lens(kernel, inputs, Some(n), &[self.c, self.in_h, self.in_w]);
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
/// Unless `x` has `n·C·H·W` values, and `y` and `argmax` `n·C·OH·OW` each; or when a sample
/// has `u32::MAX` values or more (checked before anything is written, in release builds too).
///
/// # Example
/// ```
/// use striate::geometry::Rounding;
/// use striate::ops::pool::{max_forward, Pool2dGeom};
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
    let outputs = [("y", y.len()), ("argmax", argmax.len())];
    g.check("pool::max_forward", n, &[("x", x.len())], &outputs);
    assert!(
        u32::try_from(g.in_len()).is_ok_and(|len| len < EMPTY_WINDOW),
        "pool::max_forward: a sample of {} values is too large for u32 indices",
        g.in_len()
    );
    let tasks = sample_tasks(g, n);
    if tasks > 1 {
        let (in_len, out_len) = (g.in_len(), g.out_len());
        let (y_all, argmax_all) = (SharedMut::new(y), SharedMut::new(argmax));
        parallel::run(tasks, |t| {
            let samples = parallel::part(n, tasks, t);
            let (at, len) = (samples.start * out_len, samples.len() * out_len);
            // Safety: task `t` alone touches its samples' outputs; `run` returns before `y`
            // and `argmax` are borrowed again.
            let (y_t, argmax_t) = unsafe { (y_all.slice(at, len), argmax_all.slice(at, len)) };
            let x_t = &x[samples.start * in_len..samples.end * in_len];
            max_forward_samples(y_t, argmax_t, x_t, g, samples.len());
        });
        return;
    }
    max_forward_samples(y, argmax, x, g, n);
}

/// Values a pooling call reads from which its samples are split over the threads (AlexNet's
/// first pooling at batch 16 reads 4.6 M).
const MIN_SPLIT_VALUES: usize = 1 << 18;

/// Tasks a pooling call over `n` samples of `g` is split into, by samples: each sample's
/// outputs (and its `argmax`, whose indices are within the sample) are the same however the
/// batch is split.
fn sample_tasks(g: &Pool2dGeom, n: usize) -> usize {
    if n.saturating_mul(g.in_len()) >= MIN_SPLIT_VALUES {
        n.min(parallel::threads()).max(1)
    } else {
        1
    }
}

/// [`max_forward`] on one thread, its arguments checked.
fn max_forward_samples(y: &mut [f32], argmax: &mut [u32], x: &[f32], g: &Pool2dGeom, n: usize) {
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
/// Unless `d_x` has `n·C·H·W` values, and `d_y` and `argmax` `n·C·OH·OW` each (checked before
/// anything is written, in release builds too); or when an `argmax` entry points outside its
/// sample.
pub fn max_backward(d_x: &mut [f32], d_y: &[f32], argmax: &[u32], g: &Pool2dGeom, n: usize) {
    // d_y: (N, C, OH, OW), argmax: (N, C, OH, OW) -> d_x: (N, C, H, W)
    let outputs = [("d_y", d_y.len()), ("argmax", argmax.len())];
    g.check("pool::max_backward", n, &[("d_x", d_x.len())], &outputs);
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let tasks = sample_tasks(g, n);
    if tasks > 1 {
        let d_x_all = SharedMut::new(d_x);
        parallel::run(tasks, |t| {
            let samples = parallel::part(n, tasks, t);
            // Safety: task `t` alone touches its samples' input gradients; `run` returns
            // before `d_x` is borrowed again.
            let d_x_t = unsafe { d_x_all.slice(samples.start * in_len, samples.len() * in_len) };
            let outputs = samples.start * out_len..samples.end * out_len;
            let (d_y_t, argmax_t) = (&d_y[outputs.clone()], &argmax[outputs]);
            max_backward_samples(d_x_t, d_y_t, argmax_t, g, samples.len());
        });
        return;
    }
    max_backward_samples(d_x, d_y, argmax, g, n);
}

/// [`max_backward`] on one thread, its arguments checked.
fn max_backward_samples(d_x: &mut [f32], d_y: &[f32], argmax: &[u32], g: &Pool2dGeom, n: usize) {
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
/// Unless `x` has `n·C·H·W` values and `y` `n·C·OH·OW` (checked before anything is written,
/// in release builds too).
pub fn avg_forward(y: &mut [f32], x: &[f32], g: &Pool2dGeom, n: usize) {
    // x: (N, C, H, W) -> y: (N, C, OH, OW)
    g.check("pool::avg_forward", n, &[("x", x.len())], &[("y", y.len())]);
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
/// Unless `d_x` has `n·C·H·W` values and `d_y` `n·C·OH·OW` (checked before anything is
/// written, in release builds too).
pub fn avg_backward(d_x: &mut [f32], d_y: &[f32], g: &Pool2dGeom, n: usize) {
    // d_y: (N, C, OH, OW) -> d_x: (N, C, H, W)
    g.check(
        "pool::avg_backward",
        n,
        &[("d_x", d_x.len())],
        &[("d_y", d_y.len())],
    );
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
