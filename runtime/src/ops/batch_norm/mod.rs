//! Batch normalisation (1-D over features, 2-D over channels), forward and backward, with
//! PyTorch's semantics.

/// The geometry of one batch-norm layer.
///
/// Statistics are per channel `c`, taken over the batch and the `spatial` positions of each
/// channel (`H*W` after a spatial layer, `1` after a vector layer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormGeom {
    /// Channels (or features).
    pub c: usize,
    /// Positions per channel per sample: `H*W`, or 1 for vectors.
    pub spatial: usize,
    /// Weight of the new batch statistic in the running average (PyTorch: 0.1).
    pub momentum: f32,
    /// Added to the variance before the square root (PyTorch: 1e-5).
    pub eps: f32,
}

/// Training-mode batch norm: normalises each channel by the mean and biased variance of the
/// batch, `y = γ (x - μ) / √(σ² + ε) + β`, and updates the running statistics as PyTorch's
/// `BatchNorm1d`/`BatchNorm2d` do:
/// `running_mean ← (1 - m) running_mean + m μ`,
/// `running_var ← (1 - m) running_var + m σ²·count/(count - 1)` (the unbiased variance), with
/// `count = n·spatial` values per channel.
///
/// `y` is overwritten, and so is `saved`, `(2, C)`: the batch means, then `1/√(σ² + ε)`, for
/// [`backward`]. Statistics are accumulated in `f64`. Where PyTorch raises an error, this does
/// something finite instead: with one value per channel (`count = 1`) the running variance
/// moves towards the biased variance, 0; with none (`count = 0`) the running statistics are
/// left alone and `saved` is filled from them, as by [`forward_eval`].
///
/// # Panics
/// When a slice is shorter than the geometry needs; in debug builds, when any length differs.
///
/// # Example
/// ```
/// use striate_runtime::ops::batch_norm::{forward_train, BatchNormGeom};
///
/// let g = BatchNormGeom { c: 1, spatial: 1, momentum: 0.1, eps: 0.0 };
/// let (mut y, mut saved) = ([0.0; 2], [0.0; 2]);
/// let (mut running_mean, mut running_var) = ([0.0], [1.0]);
/// let x = [1.0, 3.0];
/// forward_train(&mut y, &mut saved, &x, &[1.0], &[0.0], &mut running_mean, &mut running_var, &g, 2);
/// assert_eq!(y, [-1.0, 1.0]);
/// assert_eq!(saved, [2.0, 1.0]); // mean 2, 1/√(biased variance 1)
/// assert_eq!(running_mean, [0.2]);
/// assert_eq!(running_var, [1.1]); // 0.9·1 + 0.1·2 (unbiased variance 2)
/// ```
// The argument list is the calling convention of every generated network.
#[allow(clippy::too_many_arguments)]
pub fn forward_train(
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
    debug_check(y, x, gamma, beta, saved, g, n);
    debug_assert_eq!(running_mean.len(), g.c);
    debug_assert_eq!(running_var.len(), g.c);
    let count = n * g.spatial;
    if count == 0 {
        fill_saved_from_running(saved, running_mean, running_var, g);
        return;
    }
    let momentum = g.momentum as f64;
    let (saved_mean, saved_invstd) = saved.split_at_mut(g.c);
    for ch in 0..g.c {
        let sum: f64 = channel(x, g, n, ch).flatten().map(|&v| v as f64).sum();
        let mean = sum / count as f64;
        let squares: f64 = channel(x, g, n, ch)
            .flatten()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum();
        let var = squares / count as f64;
        let unbiased = if count > 1 {
            squares / (count - 1) as f64
        } else {
            var
        };
        saved_mean[ch] = mean as f32;
        saved_invstd[ch] = (1.0 / (var + g.eps as f64).sqrt()) as f32;
        running_mean[ch] = ((1.0 - momentum) * running_mean[ch] as f64 + momentum * mean) as f32;
        running_var[ch] = ((1.0 - momentum) * running_var[ch] as f64 + momentum * unbiased) as f32;
    }
    normalize(y, x, gamma, beta, saved, g, n);
}

/// Evaluation-mode batch norm: `y = γ (x - running_mean) / √(running_var + ε) + β`.
///
/// `y` is overwritten, and `saved` is set to `running_mean` and `1/√(running_var + ε)`, so
/// that [`backward`] with `batch_stats = false` can follow.
///
/// # Panics
/// When a slice is shorter than the geometry needs; in debug builds, when any length differs.
// The argument list is the calling convention of every generated network.
#[allow(clippy::too_many_arguments)]
pub fn forward_eval(
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
    debug_check(y, x, gamma, beta, saved, g, n);
    fill_saved_from_running(saved, running_mean, running_var, g);
    normalize(y, x, gamma, beta, saved, g, n);
}

/// The gradients of [`forward_train`] (`batch_stats = true`) or [`forward_eval`]
/// (`batch_stats = false`), given the `saved` statistics of that forward. All accumulate.
///
/// With `x̂ = (x - μ)·invstd`: `d_β += Σ d_y`, `d_γ += Σ d_y x̂` (sums over the batch and the
/// spatial positions of each channel), and
/// - with batch statistics, which depend on `x`,
///   `d_x += γ·invstd·(d_y - mean(d_y) - x̂·mean(d_y x̂))`;
/// - with running statistics, which are constants, `d_x += γ·invstd·d_y`.
///
/// # Panics
/// When a slice is shorter than the geometry needs; in debug builds, when any length differs.
// The argument list is the calling convention of every generated network.
#[allow(clippy::too_many_arguments)]
pub fn backward(
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
    debug_check(d_y, x, gamma, d_beta, saved, g, n);
    debug_assert_eq!(d_x.len(), x.len());
    debug_assert_eq!(d_gamma.len(), g.c);
    let (c, s) = (g.c, g.spatial);
    let count = n * s;
    let (mean, invstd) = saved.split_at(c);
    for ch in 0..c {
        let (mu, inv) = (mean[ch], invstd[ch]);
        let (mut sum_dy, mut sum_dy_xhat) = (0.0f64, 0.0f64);
        for (d_y, x) in channel(d_y, g, n, ch).zip(channel(x, g, n, ch)) {
            for (&dy, &x) in d_y.iter().zip(x) {
                sum_dy += dy as f64;
                sum_dy_xhat += dy as f64 * ((x - mu) * inv) as f64;
            }
        }
        d_beta[ch] += sum_dy as f32;
        d_gamma[ch] += sum_dy_xhat as f32;
        let scale = gamma[ch] * inv;
        let (mean_dy, mean_dy_xhat) = if batch_stats && count > 0 {
            (
                (sum_dy / count as f64) as f32,
                (sum_dy_xhat / count as f64) as f32,
            )
        } else {
            (0.0, 0.0)
        };
        for i in 0..n {
            let at = (i * c + ch) * s..(i * c + ch + 1) * s;
            for ((d, &dy), &x) in d_x[at.clone()].iter_mut().zip(&d_y[at.clone()]).zip(&x[at]) {
                let xhat = (x - mu) * inv;
                *d += scale * (dy - mean_dy - xhat * mean_dy_xhat);
            }
        }
    }
}

/// The reference version of [`forward_train`]: the mean and variance by their definitions,
/// element by element, then the formula for `y`. Same outputs and running-statistics update.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
// The argument list is the calling convention of every generated network.
#[allow(clippy::too_many_arguments)]
pub fn forward_train_naive(
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
    debug_check(y, x, gamma, beta, saved, g, n);
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

/// The reference version of [`forward_eval`].
///
/// # Panics
/// When a slice is shorter than the geometry needs.
// The argument list is the calling convention of every generated network.
#[allow(clippy::too_many_arguments)]
pub fn forward_eval_naive(
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
    debug_check(y, x, gamma, beta, saved, g, n);
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

/// The reference version of [`backward`], by the chain rule one step at a time through
/// `x̂`, the variance and the mean (Ioffe and Szegedy, 2015, section 3), in `f64`.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
// The argument list is the calling convention of every generated network.
#[allow(clippy::too_many_arguments)]
pub fn backward_naive(
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
    debug_check(d_y, x, gamma, d_beta, saved, g, n);
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

/// `y = γ (x - μ)·invstd + β` with `μ` and `invstd` taken from `saved`.
fn normalize(
    y: &mut [f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    saved: &[f32],
    g: &BatchNormGeom,
    n: usize,
) {
    let (c, s) = (g.c, g.spatial);
    let (mean, invstd) = saved.split_at(c);
    for i in 0..n {
        for ch in 0..c {
            let at = (i * c + ch) * s..(i * c + ch + 1) * s;
            let (mu, scale, shift) = (mean[ch], gamma[ch] * invstd[ch], beta[ch]);
            for (y, &x) in y[at.clone()].iter_mut().zip(&x[at]) {
                *y = (x - mu) * scale + shift;
            }
        }
    }
}

fn fill_saved_from_running(
    saved: &mut [f32],
    running_mean: &[f32],
    running_var: &[f32],
    g: &BatchNormGeom,
) {
    debug_assert_eq!(running_mean.len(), g.c);
    debug_assert_eq!(running_var.len(), g.c);
    let (mean, invstd) = saved.split_at_mut(g.c);
    mean.copy_from_slice(running_mean);
    for (inv, &var) in invstd.iter_mut().zip(running_var) {
        *inv = (1.0 / (var as f64 + g.eps as f64).sqrt()) as f32;
    }
}

/// The `spatial`-long runs of channel `ch`, one per sample.
fn channel<'a>(
    x: &'a [f32],
    g: &BatchNormGeom,
    n: usize,
    ch: usize,
) -> impl Iterator<Item = &'a [f32]> + 'a {
    let (c, s) = (g.c, g.spatial);
    (0..n).map(move |i| &x[(i * c + ch) * s..(i * c + ch + 1) * s])
}

fn debug_check(
    y: &[f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    saved: &[f32],
    g: &BatchNormGeom,
    n: usize,
) {
    debug_assert_eq!(x.len(), n * g.c * g.spatial, "x length");
    debug_assert_eq!(y.len(), x.len(), "y (or d_y) length");
    debug_assert_eq!(gamma.len(), g.c, "gamma length");
    debug_assert_eq!(beta.len(), g.c, "beta (or d_beta) length");
    debug_assert_eq!(saved.len(), 2 * g.c, "saved length");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{assert_close, check_gradient, dot, rng, uniform};

    /// `(n, c, spatial)`: batch 0 and 1, one value per channel, vectors, feature maps.
    const CASES: &[(usize, usize, usize)] = &[
        (0, 2, 3),
        (1, 3, 1),
        (2, 1, 1),
        (1, 2, 4),
        (4, 3, 1),
        (3, 2, 5),
        (2, 5, 7),
    ];

    fn geom(c: usize, spatial: usize) -> BatchNormGeom {
        BatchNormGeom {
            c,
            spatial,
            momentum: 0.1,
            eps: 1e-5,
        }
    }

    struct Data {
        x: Vec<f32>,
        gamma: Vec<f32>,
        beta: Vec<f32>,
        running_mean: Vec<f32>,
        running_var: Vec<f32>,
    }

    /// Inputs with a per-channel offset, so the mean matters, and a positive running variance.
    fn data(seed: u64, g: &BatchNormGeom, n: usize) -> Data {
        let mut r = rng(seed);
        let mut x = uniform(&mut r, n * g.c * g.spatial);
        for (i, v) in x.iter_mut().enumerate() {
            *v += (i / g.spatial % g.c) as f32 - 1.0;
        }
        Data {
            x,
            gamma: uniform(&mut r, g.c).iter().map(|v| v + 1.5).collect(),
            beta: uniform(&mut r, g.c),
            running_mean: uniform(&mut r, g.c),
            running_var: uniform(&mut r, g.c).iter().map(|v| v + 1.5).collect(),
        }
    }

    #[test]
    fn forward_matches_naive() {
        for (seed, &(n, c, s)) in CASES.iter().enumerate() {
            let g = geom(c, s);
            let d = data(60 + seed as u64, &g, n);
            let len = d.x.len();
            let (mut y, mut saved) = (vec![f32::NAN; len], vec![f32::NAN; 2 * c]);
            let (mut y2, mut saved2) = (vec![f32::NAN; len], vec![f32::NAN; 2 * c]);
            let (mut rm, mut rv) = (d.running_mean.clone(), d.running_var.clone());
            let (mut rm2, mut rv2) = (d.running_mean.clone(), d.running_var.clone());
            let (x, gamma, beta) = (&d.x, &d.gamma, &d.beta);
            forward_train(&mut y, &mut saved, x, gamma, beta, &mut rm, &mut rv, &g, n);
            forward_train_naive(
                &mut y2,
                &mut saved2,
                x,
                gamma,
                beta,
                &mut rm2,
                &mut rv2,
                &g,
                n,
            );
            let what = format!("train {g:?} n {n}");
            assert_close(&format!("{what} y"), &y, &y2, 1e-5);
            assert_close(&format!("{what} saved"), &saved, &saved2, 1e-5);
            assert_close(&format!("{what} running_mean"), &rm, &rm2, 1e-6);
            assert_close(&format!("{what} running_var"), &rv, &rv2, 1e-6);
            assert!(saved.iter().chain(&rm).chain(&rv).all(|v| v.is_finite()));

            y.fill(f32::NAN);
            y2.fill(f32::NAN);
            saved.fill(f32::NAN);
            saved2.fill(f32::NAN);
            forward_eval(&mut y, &mut saved, x, gamma, beta, &rm, &rv, &g, n);
            forward_eval_naive(&mut y2, &mut saved2, x, gamma, beta, &rm, &rv, &g, n);
            assert_close(&format!("eval {g:?} n {n} y"), &y, &y2, 1e-5);
            assert_close(&format!("eval {g:?} n {n} saved"), &saved, &saved2, 1e-6);
        }
    }

    /// Gradients start from random values, so the test also checks that both versions add.
    #[test]
    fn backward_matches_naive() {
        for (seed, &(n, c, s)) in CASES.iter().enumerate() {
            let g = geom(c, s);
            let d = data(70 + seed as u64, &g, n);
            let mut r = rng(80 + seed as u64);
            let d_y = uniform(&mut r, d.x.len());
            let (d_x0, d_gamma0, d_beta0) = (
                uniform(&mut r, d.x.len()),
                uniform(&mut r, c),
                uniform(&mut r, c),
            );
            let (mut y, mut saved) = (vec![0.0; d.x.len()], vec![0.0; 2 * c]);
            let (mut rm, mut rv) = (d.running_mean.clone(), d.running_var.clone());
            for batch_stats in [true, false] {
                if batch_stats {
                    let (x, gamma, beta) = (&d.x, &d.gamma, &d.beta);
                    forward_train(&mut y, &mut saved, x, gamma, beta, &mut rm, &mut rv, &g, n);
                } else {
                    let (x, gamma, beta) = (&d.x, &d.gamma, &d.beta);
                    forward_eval(&mut y, &mut saved, x, gamma, beta, &rm, &rv, &g, n);
                }
                let (mut d_x, mut d_gamma, mut d_beta) =
                    (d_x0.clone(), d_gamma0.clone(), d_beta0.clone());
                let (mut e_x, mut e_gamma, mut e_beta) =
                    (d_x0.clone(), d_gamma0.clone(), d_beta0.clone());
                let (x, gamma) = (&d.x, &d.gamma);
                let (dx, dg, db) = (&mut d_x, &mut d_gamma, &mut d_beta);
                backward(dx, dg, db, &d_y, x, gamma, &saved, &g, n, batch_stats);
                let (ex, eg, eb) = (&mut e_x, &mut e_gamma, &mut e_beta);
                backward_naive(ex, eg, eb, &d_y, x, gamma, &saved, &g, n, batch_stats);
                let what = format!("{g:?} n {n} batch_stats {batch_stats}");
                assert_close(&format!("{what} d_x"), &d_x, &e_x, 1e-4);
                assert_close(&format!("{what} d_gamma"), &d_gamma, &e_gamma, 1e-5);
                assert_close(&format!("{what} d_beta"), &d_beta, &e_beta, 1e-5);
            }
        }
    }

    /// `L = Σ r ⊙ forward_train(x)`, with the batch statistics recomputed at every probe.
    #[test]
    fn train_backward_matches_finite_differences() {
        for (seed, &(n, c, s)) in CASES.iter().enumerate().skip(1) {
            let g = geom(c, s);
            let d = data(90 + seed as u64, &g, n);
            let weights = uniform(&mut rng(100 + seed as u64), d.x.len());
            let (mut y, mut saved) = (vec![0.0; d.x.len()], vec![0.0; 2 * c]);
            let (mut rm, mut rv) = (d.running_mean.clone(), d.running_var.clone());
            let (x, gamma, beta) = (&d.x, &d.gamma, &d.beta);
            forward_train(&mut y, &mut saved, x, gamma, beta, &mut rm, &mut rv, &g, n);
            let (mut d_x, mut d_gamma, mut d_beta) =
                (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
            backward(
                &mut d_x,
                &mut d_gamma,
                &mut d_beta,
                &weights,
                x,
                gamma,
                &saved,
                &g,
                n,
                true,
            );
            let mut loss = |x: &[f32], gamma: &[f32], beta: &[f32]| {
                let mut saved = vec![0.0; 2 * c];
                let (mut rm, mut rv) = (d.running_mean.clone(), d.running_var.clone());
                forward_train(&mut y, &mut saved, x, gamma, beta, &mut rm, &mut rv, &g, n);
                dot(&weights, &y)
            };
            let what = format!("{g:?} n {n}");
            check_gradient(&format!("{what} d_x"), x, &d_x, 1e-2, 1e-2, |v| {
                loss(v, gamma, beta)
            });
            check_gradient(
                &format!("{what} d_gamma"),
                gamma,
                &d_gamma,
                1e-2,
                1e-2,
                |v| loss(x, v, beta),
            );
            check_gradient(&format!("{what} d_beta"), beta, &d_beta, 1e-2, 1e-2, |v| {
                loss(x, gamma, v)
            });
        }
    }

    /// `L = Σ r ⊙ forward_eval(x)`: the running statistics are constants.
    #[test]
    fn eval_backward_matches_finite_differences() {
        for (seed, &(n, c, s)) in CASES.iter().enumerate().skip(1) {
            let g = geom(c, s);
            let d = data(110 + seed as u64, &g, n);
            let weights = uniform(&mut rng(120 + seed as u64), d.x.len());
            let (mut y, mut saved) = (vec![0.0; d.x.len()], vec![0.0; 2 * c]);
            let (x, gamma, beta, rm, rv) =
                (&d.x, &d.gamma, &d.beta, &d.running_mean, &d.running_var);
            forward_eval(&mut y, &mut saved, x, gamma, beta, rm, rv, &g, n);
            let (mut d_x, mut d_gamma, mut d_beta) =
                (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
            backward(
                &mut d_x,
                &mut d_gamma,
                &mut d_beta,
                &weights,
                x,
                gamma,
                &saved,
                &g,
                n,
                false,
            );
            let mut loss = |x: &[f32], gamma: &[f32], beta: &[f32]| {
                let mut saved = vec![0.0; 2 * c];
                forward_eval(&mut y, &mut saved, x, gamma, beta, rm, rv, &g, n);
                dot(&weights, &y)
            };
            let what = format!("{g:?} n {n}");
            check_gradient(&format!("{what} d_x"), x, &d_x, 1e-2, 1e-2, |v| {
                loss(v, gamma, beta)
            });
            check_gradient(
                &format!("{what} d_gamma"),
                gamma,
                &d_gamma,
                1e-2,
                1e-2,
                |v| loss(x, v, beta),
            );
            check_gradient(&format!("{what} d_beta"), beta, &d_beta, 1e-2, 1e-2, |v| {
                loss(x, gamma, v)
            });
        }
    }

    /// Two training steps on the same batch, against numbers worked out by hand from
    /// `torch.nn.BatchNorm2d`'s documented update (momentum 0.1, eps 1e-5, the unbiased
    /// variance in the running average, the biased one in `y`). In PyTorch:
    ///
    /// ```python
    /// bn = torch.nn.BatchNorm2d(2)
    /// with torch.no_grad():
    ///     bn.weight.copy_(torch.tensor([1.0, 2.0])); bn.bias.copy_(torch.tensor([0.0, 0.5]))
    /// x = torch.tensor([[[[1.0, 2.0]], [[0.5, -1.0]]], [[[3.0, 4.0]], [[2.0, 0.5]]]])
    /// y = bn(x)  # bn.running_mean = [0.25, 0.05], bn.running_var = [1.0666667, 1.05]
    /// bn(x)      # bn.running_mean = [0.475, 0.095], bn.running_var = [1.1266667, 1.095]
    /// ```
    ///
    /// Channel 0 holds 1, 2, 3, 4: mean 2.5, biased variance 1.25, unbiased 5/3. Channel 1
    /// holds 0.5, -1, 2, 0.5: mean 0.5, biased variance 1.125, unbiased 1.5.
    #[test]
    fn running_statistics_match_pytorch_by_hand() {
        let g = geom(2, 2);
        let x = [1.0, 2.0, 0.5, -1.0, 3.0, 4.0, 2.0, 0.5];
        let (gamma, beta) = ([1.0, 2.0], [0.0, 0.5]);
        let (mut rm, mut rv) = ([0.0; 2], [1.0; 2]);
        let (mut y, mut saved) = ([f32::NAN; 8], [f32::NAN; 4]);
        forward_train(
            &mut y, &mut saved, &x, &gamma, &beta, &mut rm, &mut rv, &g, 2,
        );
        assert_close("running_mean", &rm, &[0.25, 0.05], 1e-6);
        assert_close("running_var", &rv, &[1.066_666_7, 1.05], 1e-6);
        let invstd = [
            1.0 / (1.25f64 + 1e-5).sqrt(),
            1.0 / (1.125f64 + 1e-5).sqrt(),
        ];
        assert_close(
            "saved",
            &saved,
            &[2.5, 0.5, invstd[0] as f32, invstd[1] as f32],
            1e-6,
        );
        // y = γ (x - μ)/√(σ² + ε) + β
        let expected = [
            -1.341_635_4,
            -0.447_211_8,
            0.5,
            -2.328_414_6,
            0.447_211_8,
            1.341_635_4,
            3.328_414_6,
            0.5,
        ];
        assert_close("y", &y, &expected, 1e-6);
        forward_train(
            &mut y, &mut saved, &x, &gamma, &beta, &mut rm, &mut rv, &g, 2,
        );
        assert_close("running_mean", &rm, &[0.475, 0.095], 1e-6);
        assert_close("running_var", &rv, &[1.126_666_7, 1.095], 1e-6);
    }

    /// With one value per channel the batch variance is 0, and nothing becomes NaN.
    #[test]
    fn one_value_per_channel_stays_finite() {
        let g = geom(3, 1);
        let (mut rm, mut rv) = ([0.0; 3], [1.0; 3]);
        let (mut y, mut saved) = ([f32::NAN; 3], [f32::NAN; 6]);
        let x = [5.0, -1.0, 0.0];
        forward_train(
            &mut y, &mut saved, &x, &[1.0; 3], &[0.5; 3], &mut rm, &mut rv, &g, 1,
        );
        assert_eq!(y, [0.5; 3]);
        assert_close("running_mean", &rm, &[0.5, -0.1, 0.0], 1e-7);
        assert_close("running_var", &rv, &[0.9; 3], 1e-7);
        let mut d_x = [0.0; 3];
        let (mut d_gamma, mut d_beta) = ([0.0; 3], [0.0; 3]);
        backward(
            &mut d_x,
            &mut d_gamma,
            &mut d_beta,
            &[1.0; 3],
            &x,
            &[1.0; 3],
            &saved,
            &g,
            1,
            true,
        );
        assert_eq!((d_x, d_gamma, d_beta), ([0.0; 3], [0.0; 3], [1.0; 3]));
    }
}
