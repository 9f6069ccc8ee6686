//! The reference versions of the convolution's kernels, for the tests to compare the fast
//! paths against: one sum per output, or one scatter per output, straight from the
//! definition.

use super::Conv2dGeom;

/// The reference version of [`super::forward`]: one direct sum per output, no unfolding, no packing.
/// `y` is overwritten.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
pub(super) fn forward_naive(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &Conv2dGeom,
    n: usize,
) {
    // x: (N, C, H, W), w: (O, C, KH, KW), b: (O) -> y: (N, O, OH, OW)
    g.shapes().check_forward("forward_naive", n, y, x, w, b);
    for i in 0..n {
        for o in 0..g.out_c {
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    let mut acc = b.map_or(0.0, |b| b[o]);
                    for c in 0..g.in_c {
                        for kh in 0..g.k_h {
                            for kw in 0..g.k_w {
                                if let Some(xi) = input_index(g, i, c, oh, ow, kh, kw) {
                                    acc += w[((o * g.in_c + c) * g.k_h + kh) * g.k_w + kw] * x[xi];
                                }
                            }
                        }
                    }
                    y[((i * g.out_c + o) * g.out_h + oh) * g.out_w + ow] = acc;
                }
            }
        }
    }
}

/// The reference version of [`super::backward`]: every output scatters its gradient to the weight,
/// bias and input it was computed from. Accumulates, like [`super::backward`].
///
/// # Panics
/// When a slice is shorter than the geometry needs.
// The argument list of `super::backward`, less the scratch.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_naive(
    mut d_x: Option<&mut [f32]>,
    d_w: &mut [f32],
    mut d_b: Option<&mut [f32]>,
    d_y: &[f32],
    x: &[f32],
    w: &[f32],
    g: &Conv2dGeom,
    n: usize,
) {
    // d_y: (N, O, OH, OW), x: (N, C, H, W), w: (O, C, KH, KW)
    //   -> d_x: (N, C, H, W), d_w: (O, C, KH, KW), d_b: (O)
    let (kernel, shapes) = ("backward_naive", g.shapes());
    shapes.check_backward(kernel, n, d_x.as_deref(), d_w, d_b.as_deref(), d_y, x, w);
    for i in 0..n {
        for o in 0..g.out_c {
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    let grad = d_y[((i * g.out_c + o) * g.out_h + oh) * g.out_w + ow];
                    if let Some(d_b) = d_b.as_deref_mut() {
                        d_b[o] += grad;
                    }
                    for c in 0..g.in_c {
                        for kh in 0..g.k_h {
                            for kw in 0..g.k_w {
                                if let Some(xi) = input_index(g, i, c, oh, ow, kh, kw) {
                                    let wi = ((o * g.in_c + c) * g.k_h + kh) * g.k_w + kw;
                                    d_w[wi] += grad * x[xi];
                                    if let Some(d_x) = d_x.as_deref_mut() {
                                        d_x[xi] += grad * w[wi];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Where in `x` the tap `(c, kh, kw)` of output `(i, ·, oh, ow)` reads, or `None` in padding.
fn input_index(
    g: &Conv2dGeom,
    i: usize,
    c: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
) -> Option<usize> {
    let ih = (oh * g.stride_h + kh).checked_sub(g.pad_h)?;
    let iw = (ow * g.stride_w + kw).checked_sub(g.pad_w)?;
    (ih < g.in_h && iw < g.in_w).then(|| ((i * g.in_c + c) * g.in_h + ih) * g.in_w + iw)
}
