//! The reference versions of the batch-norm kernels, for the tests to compare the fast paths
//! against: each statistic and each gradient by its definition, element by element, in `f64`.

use super::BatchNormGeom;

/// The reference version of [`super::forward_train`]: the mean and variance by their definitions,
/// element by element, then the formula for `y`. Same outputs and running-statistics update.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
// The argument list of the kernel it stands for.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_train_naive(
    y: &mut [f32],
    saved: &mut [f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    g: &BatchNormGeom,
    n: usize,
) {
    // x: (N, C, S), gamma, beta, running_mean, running_var: (C) -> y: (N, C, S), saved: (2, C)
    let (c, s) = (g.c, g.spatial);
    let count = (n * s) as f64;
    let m = g.momentum as f64;
    for ch in 0..c {
        let (mean, var) = if n * s == 0 {
            (running_mean[ch] as f64, running_var[ch] as f64)
        } else {
            let mut sum = 0.0;
            for i in 0..n {
                for p in 0..s {
                    sum += x[(i * c + ch) * s + p] as f64;
                }
            }
            let mean = sum / count;
            let mut squares = 0.0;
            for i in 0..n {
                for p in 0..s {
                    squares += (x[(i * c + ch) * s + p] as f64 - mean).powi(2);
                }
            }
            let unbiased = squares / (count - 1.0).max(1.0);
            running_mean[ch] = ((1.0 - m) * running_mean[ch] as f64 + m * mean) as f32;
            running_var[ch] = ((1.0 - m) * running_var[ch] as f64 + m * unbiased) as f32;
            (mean, squares / count)
        };
        let invstd = 1.0 / (var + g.eps as f64).sqrt();
        saved[ch] = mean as f32;
        saved[c + ch] = invstd as f32;
        for i in 0..n {
            for p in 0..s {
                let at = (i * c + ch) * s + p;
                y[at] =
                    (gamma[ch] as f64 * (x[at] as f64 - mean) * invstd + beta[ch] as f64) as f32;
            }
        }
    }
}

/// The reference version of [`super::forward_eval`].
///
/// # Panics
/// When a slice is shorter than the geometry needs.
// The argument list of the kernel it stands for.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_eval_naive(
    y: &mut [f32],
    saved: &mut [f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    g: &BatchNormGeom,
    n: usize,
) {
    // x: (N, C, S), gamma, beta, running_mean, running_var: (C) -> y: (N, C, S), saved: (2, C)
    let (c, s) = (g.c, g.spatial);
    for ch in 0..c {
        let mean = running_mean[ch] as f64;
        let invstd = 1.0 / (running_var[ch] as f64 + g.eps as f64).sqrt();
        saved[ch] = mean as f32;
        saved[c + ch] = invstd as f32;
        for i in 0..n {
            for p in 0..s {
                let at = (i * c + ch) * s + p;
                y[at] =
                    (gamma[ch] as f64 * (x[at] as f64 - mean) * invstd + beta[ch] as f64) as f32;
            }
        }
    }
}

/// The reference version of [`super::backward`], by the chain rule one step at a time through
/// `x̂`, the variance and the mean (Ioffe and Szegedy, 2015, section 3), in `f64`.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
// The argument list of the kernel it stands for.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_naive(
    d_x: &mut [f32],
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    gamma: &[f32],
    saved: &[f32],
    g: &BatchNormGeom,
    n: usize,
    batch_stats: bool,
) {
    // d_y: (N, C, S), x: (N, C, S), gamma: (C), saved: (2, C)
    //   -> d_x: (N, C, S), d_gamma, d_beta: (C)
    let (c, s) = (g.c, g.spatial);
    let count = (n * s) as f64;
    let at = |i: usize, ch: usize, p: usize| (i * c + ch) * s + p;
    for ch in 0..c {
        let mean = saved[ch] as f64;
        let invstd = saved[c + ch] as f64;
        let gamma = gamma[ch] as f64;
        let (mut d_var, mut d_mean, mut sum_centered) = (0.0, 0.0, 0.0);
        let (mut sum_dy, mut sum_dy_xhat) = (0.0, 0.0);
        for i in 0..n {
            for p in 0..s {
                let (dy, centered) = (d_y[at(i, ch, p)] as f64, x[at(i, ch, p)] as f64 - mean);
                sum_dy += dy;
                sum_dy_xhat += dy * centered * invstd;
                let d_xhat = dy * gamma;
                // ∂x̂/∂σ² = -(x - μ)/2 · (σ² + ε)^(-3/2)
                d_var += d_xhat * centered * -0.5 * invstd.powi(3);
                d_mean -= d_xhat * invstd;
                sum_centered += centered;
            }
        }
        // ∂σ²/∂μ = -2 Σ(x - μ)/count, zero up to rounding.
        d_mean += d_var * -2.0 * sum_centered / count.max(1.0);
        d_beta[ch] += sum_dy as f32;
        d_gamma[ch] += sum_dy_xhat as f32;
        for i in 0..n {
            for p in 0..s {
                let (dy, centered) = (d_y[at(i, ch, p)] as f64, x[at(i, ch, p)] as f64 - mean);
                let through_xhat = dy * gamma * invstd;
                let through_stats = if batch_stats {
                    d_var * 2.0 * centered / count + d_mean / count
                } else {
                    0.0
                };
                d_x[at(i, ch, p)] += (through_xhat + through_stats) as f32;
            }
        }
    }
}
