//! The reference versions of the linear layer's kernels, for the tests to compare the fast
//! paths against: one dot product, or one scatter, per output.

use super::LinearGeom;

/// The reference version of [`super::forward`]: one dot product per output. `y` is overwritten.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
pub(super) fn forward_naive(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &LinearGeom,
    n: usize,
) {
    // x: (N, I), w: (O, I), b: (O) -> y: (N, O)
    g.shapes().check_forward("forward_naive", n, y, x, w, b);
    for s in 0..n {
        for o in 0..g.out_f {
            let mut acc = b.map_or(0.0, |b| b[o]);
            for i in 0..g.in_f {
                acc += x[s * g.in_f + i] * w[o * g.in_f + i];
            }
            y[s * g.out_f + o] = acc;
        }
    }
}

/// The reference version of [`super::backward`]: every output scatters its gradient to the weights,
/// bias and inputs it was computed from. Accumulates, like [`super::backward`].
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
    g: &LinearGeom,
    n: usize,
) {
    // d_y: (N, O), x: (N, I), w: (O, I) -> d_x: (N, I), d_w: (O, I), d_b: (O)
    let (kernel, shapes) = ("backward_naive", g.shapes());
    shapes.check_backward(kernel, n, d_x.as_deref(), d_w, d_b.as_deref(), d_y, x, w);
    for s in 0..n {
        for o in 0..g.out_f {
            let grad = d_y[s * g.out_f + o];
            if let Some(d_b) = d_b.as_deref_mut() {
                d_b[o] += grad;
            }
            for i in 0..g.in_f {
                d_w[o * g.in_f + i] += grad * x[s * g.in_f + i];
                if let Some(d_x) = d_x.as_deref_mut() {
                    d_x[s * g.in_f + i] += grad * w[o * g.in_f + i];
                }
            }
        }
    }
}
