//! Upsampling by a whole factor, nearest-neighbour or bilinear (PyTorch's `Upsample` with
//! `scale_factor = f` and, for bilinear, its default `align_corners = False`), forward and
//! backward.

use super::check_len;

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

/// How an output value is made from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpsampleMode {
    /// The input value whose cell the output lies in, `x[⌊i/f⌋, ⌊j/f⌋]`.
    Nearest,
    /// The four nearest input values, weighted by distance, the output's centre placed at
    /// `(i + ½)/f - ½` on the input (PyTorch's `align_corners = False`) and clamped to it.
    Bilinear,
}

/// The geometry of one upsampling layer, per sample: `[C, H, W]` to `[C, f·H, f·W]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UpsampleGeom {
    /// Channels `C`.
    pub c: usize,
    /// Input height `H`.
    pub in_h: usize,
    /// Input width `W`.
    pub in_w: usize,
    /// The factor `f` along both axes.
    pub factor: usize,
    /// Nearest or bilinear.
    pub mode: UpsampleMode,
}

impl UpsampleGeom {
    /// `input = [C, H, W]` upsampled `factor` times along both axes.
    pub const fn new(input: [usize; 3], factor: usize, mode: UpsampleMode) -> Self {
        UpsampleGeom {
            c: input[0],
            in_h: input[1],
            in_w: input[2],
            factor,
            mode,
        }
    }

    /// Output height `f·H`.
    pub const fn out_h(&self) -> usize {
        self.in_h * self.factor
    }

    /// Output width `f·W`.
    pub const fn out_w(&self) -> usize {
        self.in_w * self.factor
    }

    /// Input values per sample.
    pub const fn in_len(&self) -> usize {
        self.c * self.in_h * self.in_w
    }

    /// Output values per sample.
    pub const fn out_len(&self) -> usize {
        self.c * self.out_h() * self.out_w()
    }

    #[track_caller]
    fn check(&self, kernel: &str, n: usize, input: (&str, usize), output: (&str, usize)) {
        check_len(
            kernel,
            input.0,
            input.1,
            Some(n),
            &[self.c, self.in_h, self.in_w],
        );
        check_len(
            kernel,
            output.0,
            output.1,
            Some(n),
            &[self.c, self.out_h(), self.out_w()],
        );
    }
}

/// Where output index `i` of an axis of `size` inputs reads, bilinearly: the lower input
/// index, the upper one and the upper one's weight.
fn bilinear_tap(i: usize, factor: usize, size: usize) -> (usize, usize, f32) {
    let src = ((i as f32 + 0.5) / factor as f32 - 0.5).max(0.0);
    let lo = (src as usize).min(size - 1);
    let hi = (lo + 1).min(size - 1);
    (lo, hi, src - lo as f32)
}

/// `y = upsample(x)` for each channel of each sample; `y` is overwritten.
///
/// # Panics
/// Unless `x` has `n·C·H·W` values and `y` `n·C·fH·fW`.
///
/// # Example
/// ```
/// use striate::ops::upsample::{forward, UpsampleGeom, UpsampleMode};
///
/// let g = UpsampleGeom::new([1, 1, 2], 2, UpsampleMode::Bilinear);
/// let mut y = [0.0; 8];
/// forward(&mut y, &[0.0, 4.0], &g, 1);
/// assert_eq!(&y[..4], &[0.0, 1.0, 3.0, 4.0]);
/// ```
pub fn forward(y: &mut [f32], x: &[f32], g: &UpsampleGeom, n: usize) {
    // x: (N, C, H, W) -> y: (N, C, fH, fW)
    g.check("upsample::forward", n, ("x", x.len()), ("y", y.len()));
    let (f, ow) = (g.factor, g.out_w());
    let planes = y
        .chunks_exact_mut(g.out_h() * ow)
        .zip(x.chunks_exact(g.in_h * g.in_w));
    for (y_p, x_p) in planes {
        for (i, y_row) in y_p.chunks_exact_mut(ow).enumerate() {
            match g.mode {
                UpsampleMode::Nearest => {
                    let x_row = &x_p[(i / f) * g.in_w..][..g.in_w];
                    for (y_run, &v) in y_row.chunks_exact_mut(f).zip(x_row) {
                        y_run.fill(v);
                    }
                }
                UpsampleMode::Bilinear => {
                    let (h0, h1, lh) = bilinear_tap(i, f, g.in_h);
                    let (r0, r1) = (&x_p[h0 * g.in_w..][..g.in_w], &x_p[h1 * g.in_w..][..g.in_w]);
                    for (j, out) in y_row.iter_mut().enumerate() {
                        let (w0, w1, lw) = bilinear_tap(j, f, g.in_w);
                        let top = r0[w0] + lw * (r0[w1] - r0[w0]);
                        let bottom = r1[w0] + lw * (r1[w1] - r1[w0]);
                        *out = top + lh * (bottom - top);
                    }
                }
            }
        }
    }
}

/// `d_x += upsampleᵀ(d_y)`: each output's gradient goes back to the inputs it was made from,
/// with the same weights.
///
/// # Panics
/// Unless `d_x` has `n·C·H·W` values and `d_y` `n·C·fH·fW`.
pub fn backward(d_x: &mut [f32], d_y: &[f32], g: &UpsampleGeom, n: usize) {
    // d_y: (N, C, fH, fW) -> d_x: (N, C, H, W), accumulated
    g.check(
        "upsample::backward",
        n,
        ("d_x", d_x.len()),
        ("d_y", d_y.len()),
    );
    let (f, ow) = (g.factor, g.out_w());
    let planes = d_x
        .chunks_exact_mut(g.in_h * g.in_w)
        .zip(d_y.chunks_exact(g.out_h() * ow));
    for (d_x_p, d_y_p) in planes {
        for (i, d_y_row) in d_y_p.chunks_exact(ow).enumerate() {
            match g.mode {
                UpsampleMode::Nearest => {
                    let d_x_row = &mut d_x_p[(i / f) * g.in_w..][..g.in_w];
                    for (d, run) in d_x_row.iter_mut().zip(d_y_row.chunks_exact(f)) {
                        *d += run.iter().sum::<f32>();
                    }
                }
                UpsampleMode::Bilinear => {
                    let (h0, h1, lh) = bilinear_tap(i, f, g.in_h);
                    for (j, &d) in d_y_row.iter().enumerate() {
                        let (w0, w1, lw) = bilinear_tap(j, f, g.in_w);
                        let (top, bottom) = (d * (1.0 - lh), d * lh);
                        d_x_p[h0 * g.in_w + w0] += top * (1.0 - lw);
                        d_x_p[h0 * g.in_w + w1] += top * lw;
                        d_x_p[h1 * g.in_w + w0] += bottom * (1.0 - lw);
                        d_x_p[h1 * g.in_w + w1] += bottom * lw;
                    }
                }
            }
        }
    }
}
