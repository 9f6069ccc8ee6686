//! The reference versions of the pooling kernels, for the tests to compare the fast paths
//! against: every window tap checked against the padding one by one.

use super::Pool2dGeom;

/// The reference version of [`super::max_forward`], without the `argmax` record: every window tap
/// checked against the padding one by one. `y` is overwritten.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
pub(super) fn max_forward_naive(y: &mut [f32], x: &[f32], g: &Pool2dGeom, n: usize) {
    // x: (N, C, H, W) -> y: (N, C, OH, OW)
    g.check("max_forward_naive", n, &[("x", x.len())], &[("y", y.len())]);
    for (out, y_out) in y.iter_mut().enumerate() {
        *y_out = window_max_naive(x, g, out).map_or(0.0, |at| x[at]);
    }
}

/// The reference version of [`super::max_backward`]: finds each window's winner again from `x` and
/// adds the output's gradient to it. Accumulates into `d_x`.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
pub(super) fn max_backward_naive(
    d_x: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    g: &Pool2dGeom,
    n: usize,
) {
    // d_y: (N, C, OH, OW), x: (N, C, H, W) -> d_x: (N, C, H, W)
    let inputs = [("d_x", d_x.len()), ("x", x.len())];
    g.check("max_backward_naive", n, &inputs, &[("d_y", d_y.len())]);
    for (out, &grad) in d_y.iter().enumerate() {
        if let Some(at) = window_max_naive(x, g, out) {
            d_x[at] += grad;
        }
    }
}

/// The reference version of [`super::avg_forward`]. `y` is overwritten.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
pub(super) fn avg_forward_naive(y: &mut [f32], x: &[f32], g: &Pool2dGeom, n: usize) {
    // x: (N, C, H, W) -> y: (N, C, OH, OW)
    g.check("avg_forward_naive", n, &[("x", x.len())], &[("y", y.len())]);
    for (out, y_out) in y.iter_mut().enumerate() {
        let sum: f32 = window_naive(g, out).map(|at| x[at]).sum();
        *y_out = sum / (g.k_h * g.k_w) as f32;
    }
}

/// The reference version of [`super::avg_backward`]. Accumulates into `d_x`.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
pub(super) fn avg_backward_naive(d_x: &mut [f32], d_y: &[f32], g: &Pool2dGeom, n: usize) {
    // d_y: (N, C, OH, OW) -> d_x: (N, C, H, W)
    g.check(
        "avg_backward_naive",
        n,
        &[("d_x", d_x.len())],
        &[("d_y", d_y.len())],
    );
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

/// Where the maximum of output `out`'s window lies in `x`, by the rules of [`super::max_forward`].
fn window_max_naive(x: &[f32], g: &Pool2dGeom, out: usize) -> Option<usize> {
    window_naive(g, out).reduce(|best, at| {
        if x[at] > x[best] || x[at].is_nan() {
            at
        } else {
            best
        }
    })
}
