//! Fully connected layer `y = x Wᵀ + b`, forward and backward.

use super::gemm::{sgemm, Mat, MatMut};

/// The geometry of one linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinearGeom {
    /// Input features `I`.
    pub in_f: usize,
    /// Output features `O`.
    pub out_f: usize,
}

impl LinearGeom {
    /// Weight values, `O*I` (PyTorch's layout `[out, in]`).
    pub const fn weight_len(&self) -> usize {
        self.in_f * self.out_f
    }
}

/// `y = x wᵀ + b`, with `w` in PyTorch's `[out, in]` layout read transposed in place by one
/// `sgemm`. `y` is overwritten.
///
/// # Panics
/// When a slice is shorter than the geometry needs; in debug builds, when any length differs.
///
/// # Example
/// ```
/// use striate_runtime::ops::linear::{forward, LinearGeom};
///
/// let g = LinearGeom { in_f: 3, out_f: 2 };
/// let w = [1.0, 0.0, -1.0, //
///          0.5, 0.5, 0.5];
/// let mut y = [0.0; 2];
/// forward(&mut y, &[1.0, 2.0, 3.0], &w, Some(&[10.0, 0.0]), &g, 1);
/// assert_eq!(y, [8.0, 3.0]);
/// ```
pub fn forward(y: &mut [f32], x: &[f32], w: &[f32], b: Option<&[f32]>, g: &LinearGeom, n: usize) {
    // x: (N, I), w: (O, I), b: (O) -> y: (N, O)
    debug_check(y, x, w, g, n);
    debug_assert!(b.map_or(true, |b| b.len() == g.out_f));
    let beta = match b {
        Some(b) if g.out_f > 0 => {
            for row in y.chunks_exact_mut(g.out_f) {
                row.copy_from_slice(b);
            }
            1.0
        }
        _ => 0.0,
    };
    // y[N, O] (+)= x[N, I] · wᵀ[I, O]
    sgemm(
        1.0,
        Mat::new(x, n, g.in_f),
        Mat::new(w, g.out_f, g.in_f).t(),
        beta,
        MatMut::new(y, n, g.out_f),
    );
}

/// The gradients of [`forward`]: `d_w += d_yᵀ x`, `d_b += Σ_n d_y`, and, when `d_x` is given,
/// `d_x += d_y w`. All three accumulate.
///
/// # Panics
/// When a slice is shorter than the geometry needs; in debug builds, when any length differs.
// The argument list is the calling convention of every generated network.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    d_x: Option<&mut [f32]>,
    d_w: &mut [f32],
    d_b: Option<&mut [f32]>,
    d_y: &[f32],
    x: &[f32],
    w: &[f32],
    g: &LinearGeom,
    n: usize,
) {
    // d_y: (N, O), x: (N, I), w: (O, I) -> d_x: (N, I), d_w: (O, I), d_b: (O)
    debug_check(d_y, x, w, g, n);
    debug_assert_eq!(d_w.len(), g.weight_len());
    let (i_f, o_f) = (g.in_f, g.out_f);
    // d_w[O, I] += d_yᵀ[O, N] · x[N, I]
    sgemm(
        1.0,
        Mat::new(d_y, n, o_f).t(),
        Mat::new(x, n, i_f),
        1.0,
        MatMut::new(d_w, o_f, i_f),
    );
    if let Some(d_b) = d_b {
        debug_assert_eq!(d_b.len(), o_f);
        if o_f > 0 {
            for row in d_y.chunks_exact(o_f) {
                for (d, &v) in d_b.iter_mut().zip(row) {
                    *d += v;
                }
            }
        }
    }
    if let Some(d_x) = d_x {
        debug_assert_eq!(d_x.len(), x.len());
        // d_x[N, I] += d_y[N, O] · w[O, I]
        sgemm(
            1.0,
            Mat::new(d_y, n, o_f),
            Mat::new(w, o_f, i_f),
            1.0,
            MatMut::new(d_x, n, i_f),
        );
    }
}

/// The reference version of [`forward`]: one dot product per output. `y` is overwritten.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
pub fn forward_naive(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &LinearGeom,
    n: usize,
) {
    // x: (N, I), w: (O, I), b: (O) -> y: (N, O)
    debug_check(y, x, w, g, n);
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

/// The reference version of [`backward`]: every output scatters its gradient to the weights,
/// bias and inputs it was computed from. Accumulates, like [`backward`].
///
/// # Panics
/// When a slice is shorter than the geometry needs.
// The argument list is the calling convention of every generated network.
#[allow(clippy::too_many_arguments)]
pub fn backward_naive(
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
    debug_check(d_y, x, w, g, n);
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

fn debug_check(y: &[f32], x: &[f32], w: &[f32], g: &LinearGeom, n: usize) {
    debug_assert_eq!(y.len(), n * g.out_f, "y (or d_y) length");
    debug_assert_eq!(x.len(), n * g.in_f, "x length");
    debug_assert_eq!(w.len(), g.weight_len(), "w length");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{assert_close, check_gradient, dot, rng, uniform};

    /// `(n, in_f, out_f)`: batch 0 and 1, odd sizes, sizes off any kernel tile.
    const CASES: &[(usize, usize, usize)] = &[
        (0, 4, 3),
        (1, 1, 1),
        (1, 7, 5),
        (3, 5, 2),
        (17, 33, 10),
        (8, 120, 84),
    ];

    #[test]
    fn forward_matches_naive() {
        let mut r = rng(20);
        for &(n, in_f, out_f) in CASES {
            let g = LinearGeom { in_f, out_f };
            let x = uniform(&mut r, n * in_f);
            let w = uniform(&mut r, g.weight_len());
            let b = uniform(&mut r, out_f);
            for bias in [None, Some(&b[..])] {
                let mut y = vec![f32::NAN; n * out_f];
                let mut expected = vec![f32::NAN; n * out_f];
                forward(&mut y, &x, &w, bias, &g, n);
                forward_naive(&mut expected, &x, &w, bias, &g, n);
                assert_close(&format!("y {g:?}"), &y, &expected, 1e-5);
            }
        }
    }

    /// Gradients start from random values, so the test also checks that both versions add.
    #[test]
    fn backward_matches_naive() {
        let mut r = rng(21);
        for &(n, in_f, out_f) in CASES {
            let g = LinearGeom { in_f, out_f };
            let x = uniform(&mut r, n * in_f);
            let w = uniform(&mut r, g.weight_len());
            let d_y = uniform(&mut r, n * out_f);
            let (d_x0, d_w0, d_b0) = (
                uniform(&mut r, x.len()),
                uniform(&mut r, w.len()),
                uniform(&mut r, out_f),
            );
            for with_optional in [true, false] {
                let (mut d_x, mut d_w, mut d_b) = (d_x0.clone(), d_w0.clone(), d_b0.clone());
                let (mut e_x, mut e_w, mut e_b) = (d_x0.clone(), d_w0.clone(), d_b0.clone());
                let (fx, fb, nx, nb) = if with_optional {
                    (
                        Some(&mut d_x[..]),
                        Some(&mut d_b[..]),
                        Some(&mut e_x[..]),
                        Some(&mut e_b[..]),
                    )
                } else {
                    (None, None, None, None)
                };
                backward(fx, &mut d_w, fb, &d_y, &x, &w, &g, n);
                backward_naive(nx, &mut e_w, nb, &d_y, &x, &w, &g, n);
                assert_close(&format!("d_x {g:?}"), &d_x, &e_x, 1e-5);
                assert_close(&format!("d_w {g:?}"), &d_w, &e_w, 1e-5);
                assert_close(&format!("d_b {g:?}"), &d_b, &e_b, 1e-5);
                if !with_optional {
                    assert_eq!((d_x, d_b), (d_x0.clone(), d_b0.clone()));
                }
            }
        }
    }

    /// `L = Σ r ⊙ forward(x, w, b)`, differentiated numerically in `x`, `w` and `b`.
    #[test]
    fn backward_matches_finite_differences() {
        let mut r = rng(22);
        for &(n, in_f, out_f) in &CASES[1..5] {
            let g = LinearGeom { in_f, out_f };
            let x = uniform(&mut r, n * in_f);
            let w = uniform(&mut r, g.weight_len());
            let b = uniform(&mut r, out_f);
            let weights = uniform(&mut r, n * out_f);
            let (mut d_x, mut d_w, mut d_b) =
                (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; out_f]);
            backward(
                Some(&mut d_x),
                &mut d_w,
                Some(&mut d_b),
                &weights,
                &x,
                &w,
                &g,
                n,
            );
            let mut y = vec![0.0; n * out_f];
            let mut loss = |x: &[f32], w: &[f32], b: &[f32]| {
                forward(&mut y, x, w, Some(b), &g, n);
                dot(&weights, &y)
            };
            check_gradient("d_x", &x, &d_x, 1e-2, 1e-2, |v| loss(v, &w, &b));
            check_gradient("d_w", &w, &d_w, 1e-2, 1e-2, |v| loss(&x, v, &b));
            check_gradient("d_b", &b, &d_b, 1e-2, 1e-2, |v| loss(&x, &w, v));
        }
    }
}
