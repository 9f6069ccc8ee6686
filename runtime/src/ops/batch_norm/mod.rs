//! Batch normalisation (1-D over features, 2-D over channels), forward and backward, with
//! PyTorch's semantics.

use super::{check_len, check_lens};

mod exchange;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

pub(crate) use exchange::Exchange;
use exchange::Shard;

use super::isa::{isa_builds, Isa};

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

impl BatchNormGeom {
    /// Panics unless the slices of `kernel` at batch size `n`, given by their names and
    /// lengths, have the lengths they need: `batch` ones `n` samples of `(C, spatial)`,
    /// `channels` ones `C` values, and `saved` `(2, C)`.
    #[track_caller]
    fn check(
        &self,
        kernel: &str,
        n: usize,
        batch: &[(&str, usize)],
        channels: &[(&str, usize)],
        saved: usize,
    ) {
        check_lens(kernel, batch, Some(n), &[self.c, self.spatial]);
        check_lens(kernel, channels, None, &[self.c]);
        check_len(kernel, "saved", saved, None, &[2, self.c]);
    }
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
/// In one shard of a training pass split over threads, `x` is the shard's part of the batch
/// and the statistics are still those of the whole batch: the shards exchange their means and
/// sums of squared deviations and combine them in shard order.
///
/// # Panics
/// Unless `x` and `y` have `n·C·spatial` values each, `gamma`, `beta`, `running_mean` and
/// `running_var` `C` each, and `saved` `2·C` (checked before anything is written, in release
/// builds too).
///
/// # Example
/// ```
/// use striate::ops::batch_norm::{forward_train, BatchNormGeom};
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
    let kernel = "batch_norm::forward_train";
    check_forward(
        kernel,
        g,
        n,
        y,
        saved,
        x,
        gamma,
        beta,
        running_mean,
        running_var,
    );
    let isa = Isa::current();
    exchange::with_shard(|shard| {
        let stats = Statistics {
            saved: &mut *saved,
            running_mean,
            running_var,
        };
        match shard {
            None => stats.of_batch(x, g, n, isa),
            Some(shard) => stats.of_shards(&shard, x, g, n, isa),
        }
    });
    normalize(isa, y, x, gamma, beta, saved, g, n);
}

/// Where [`forward_train`] puts the statistics of the batch.
struct Statistics<'a> {
    saved: &'a mut [f32],
    running_mean: &'a mut [f32],
    running_var: &'a mut [f32],
}

impl Statistics<'_> {
    /// From the `n` samples of `x`, the whole batch (of every rank, when data-parallel
    /// training synchronises batch norm: feature `mpi`).
    fn of_batch(self, x: &[f32], g: &BatchNormGeom, n: usize, isa: Isa) {
        #[cfg(feature = "mpi")]
        let Some(stats) = self.of_ranks(x, g, n, isa) else {
            return;
        };
        #[cfg(not(feature = "mpi"))]
        let stats = self;
        let count = n * g.spatial;
        if count == 0 {
            fill_saved_from_running(stats.saved, stats.running_mean, stats.running_var, g);
            return;
        }
        let (saved_mean, saved_invstd) = stats.saved.split_at_mut(g.c);
        for ch in 0..g.c {
            let (mean, m2) = moments(isa, x, g, n, ch);
            let (mean_ch, invstd_ch) = (&mut saved_mean[ch], &mut saved_invstd[ch]);
            let running = (&mut stats.running_mean[ch], &mut stats.running_var[ch]);
            record(mean_ch, invstd_ch, running, (count as f64, mean, m2), g);
        }
    }

    /// With batch norm synchronised across ranks, from every rank's moments, combined in
    /// rank order; gives `self` back when it is not (or the exchange failed).
    #[cfg(feature = "mpi")]
    fn of_ranks(self, x: &[f32], g: &BatchNormGeom, n: usize, isa: Isa) -> Option<Self> {
        if !crate::distributed::batch_norm::active() {
            return Some(self);
        }
        let width = 1 + 2 * g.c;
        let mut this = Some(self);
        crate::distributed::batch_norm::gather(
            width,
            |values| local_moments(x, g, n, isa, |i, v| values[i] = v),
            |all| {
                let this = this.take().expect("read once");
                this.record_parts(all.len() / width, |r, i| all[r * width + i], g);
            },
        );
        this
    }

    /// From every shard's moments, combined in shard order with Chan et al.'s pairwise formula
    /// (a shard's `n` samples of `x` are its part of the batch). Each shard moves its own
    /// running statistics: shard 0's are the network's, the others' are copies of them.
    fn of_shards(self, shard: &Shard<'_>, x: &[f32], g: &BatchNormGeom, n: usize, isa: Isa) {
        let round = shard.round(1 + 2 * g.c);
        local_moments(x, g, n, isa, |i, v| round.publish(i, v));
        let all = round.wait();
        self.record_parts(all.shards(), |s, i| all.get(s, i), g);
    }

    /// Records the statistics of `parts` parts of the batch (shards or ranks), combined in
    /// order; `get(part, i)` is value `i` that [`local_moments`] gave for the part.
    fn record_parts(self, parts: usize, get: impl Fn(usize, usize) -> f64, g: &BatchNormGeom) {
        let total: f64 = (0..parts).map(|s| get(s, 0)).sum();
        if total == 0.0 {
            fill_saved_from_running(self.saved, self.running_mean, self.running_var, g);
            return;
        }
        let (saved_mean, saved_invstd) = self.saved.split_at_mut(g.c);
        for ch in 0..g.c {
            let whole = (0..parts)
                .map(|s| (get(s, 0), get(s, 1 + 2 * ch), get(s, 2 + 2 * ch)))
                .fold((0.0, 0.0, 0.0), combine);
            let (mean_ch, invstd_ch) = (&mut saved_mean[ch], &mut saved_invstd[ch]);
            let running = (&mut self.running_mean[ch], &mut self.running_var[ch]);
            record(mean_ch, invstd_ch, running, whole, g);
        }
    }
}

/// One part's moments, as `put(i, value)`: its count of values per channel (`i` 0), then the
/// mean and M2 of each channel (`1 + 2·ch`, `2 + 2·ch`).
fn local_moments(
    x: &[f32],
    g: &BatchNormGeom,
    n: usize,
    isa: Isa,
    mut put: impl FnMut(usize, f64),
) {
    let count = n * g.spatial;
    put(0, count as f64);
    for ch in 0..g.c {
        let (mean, m2) = if count > 0 {
            moments(isa, x, g, n, ch)
        } else {
            (0.0, 0.0)
        };
        put(1 + 2 * ch, mean);
        put(2 + 2 * ch, m2);
    }
}

/// The `(count, mean, M2)` of two sets of values together, from those of each (Chan, Golub
/// and LeVeque's pairwise formula, which needs no second pass and loses little precision).
fn combine(a: (f64, f64, f64), b: (f64, f64, f64)) -> (f64, f64, f64) {
    let ((count_a, mean_a, m2_a), (count_b, mean_b, m2_b)) = (a, b);
    if count_b == 0.0 {
        return a;
    }
    if count_a == 0.0 {
        return b;
    }
    let count = count_a + count_b;
    let delta = mean_b - mean_a;
    let mean = mean_a + delta * (count_b / count);
    let m2 = m2_a + m2_b + delta * delta * (count_a * count_b / count);
    (count, mean, m2)
}

isa_builds! {
    /// Mean and M2 (the sum of squared deviations from the mean) of channel `ch` of `n > 0`
    /// samples, in `f64`, in two passes.
    fn moments(x: &[f32], g: &BatchNormGeom, n: usize, ch: usize) -> (f64, f64) {
        let count = (n * g.spatial) as f64;
        let sum = lane_sum(channel(x, g, n, ch), |v| v as f64);
        let mean = sum / count;
        let m2 = lane_sum(channel(x, g, n, ch), |v| (v as f64 - mean).powi(2));
        (mean, m2)
    }
}

/// Independent partial sums, so that the compiler can keep several in a vector register
/// (one running sum is a chain of dependent additions, 4-5 cycles each).
const LANES: usize = 8;

/// `Σ f(v)` over `rows`, in f64, summed in [`LANES`] interleaved parts.
#[inline(always)]
fn lane_sum<'a>(rows: impl Iterator<Item = &'a [f32]>, f: impl Fn(f32) -> f64) -> f64 {
    // The rows' last few values go to a sum of their own: added into the lanes, by a
    // varying index, they keep the compiler from holding the lanes in one vector register.
    let (mut acc, mut tail) = ([0.0f64; LANES], 0.0f64);
    for row in rows {
        let chunks = row.chunks_exact(LANES);
        let rest = chunks.remainder();
        for chunk in chunks {
            for (a, &v) in acc.iter_mut().zip(chunk) {
                *a += f(v);
            }
        }
        for &v in rest {
            tail += f(v);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `Σ f(a, b)` over pairs of rows, as [`lane_sum`].
#[inline(always)]
fn lane_sum2<'a>(
    rows: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    f: impl Fn(f32, f32) -> f64,
) -> f64 {
    let (mut acc, mut tail) = ([0.0f64; LANES], 0.0f64);
    for (ra, rb) in rows {
        let (ca, cb) = (ra.chunks_exact(LANES), rb.chunks_exact(LANES));
        let (rest_a, rest_b) = (ca.remainder(), cb.remainder());
        for (xa, xb) in ca.zip(cb) {
            for k in 0..LANES {
                acc[k] += f(xa[k], xb[k]);
            }
        }
        for (&a, &b) in rest_a.iter().zip(rest_b) {
            tail += f(a, b);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Saves one channel's batch mean and `1/√(σ² + ε)`, and moves its running statistics, from
/// the `(count, mean, M2)` of its values (`count > 0`).
fn record(
    saved_mean: &mut f32,
    saved_invstd: &mut f32,
    (running_mean, running_var): (&mut f32, &mut f32),
    (count, mean, m2): (f64, f64, f64),
    g: &BatchNormGeom,
) {
    let momentum = g.momentum as f64;
    let var = m2 / count;
    let unbiased = if count > 1.0 { m2 / (count - 1.0) } else { var };
    *saved_mean = mean as f32;
    *saved_invstd = (1.0 / (var + g.eps as f64).sqrt()) as f32;
    *running_mean = ((1.0 - momentum) * *running_mean as f64 + momentum * mean) as f32;
    *running_var = ((1.0 - momentum) * *running_var as f64 + momentum * unbiased) as f32;
}

/// Evaluation-mode batch norm: `y = γ (x - running_mean) / √(running_var + ε) + β`.
///
/// `y` is overwritten, and `saved` is set to `running_mean` and `1/√(running_var + ε)`, so
/// that [`backward`] with `batch_stats = false` can follow.
///
/// # Panics
/// Unless `x` and `y` have `n·C·spatial` values each, `gamma`, `beta`, `running_mean` and
/// `running_var` `C` each, and `saved` `2·C` (checked before anything is written, in release
/// builds too).
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
    let kernel = "batch_norm::forward_eval";
    check_forward(
        kernel,
        g,
        n,
        y,
        saved,
        x,
        gamma,
        beta,
        running_mean,
        running_var,
    );
    fill_saved_from_running(saved, running_mean, running_var, g);
    normalize(Isa::current(), y, x, gamma, beta, saved, g, n);
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
/// In one shard of a training pass split over threads, the means are over the whole batch
/// (the shards exchange their sums), while `d_γ` and `d_β` receive the shard's own sums.
///
/// # Panics
/// Unless `d_x`, `d_y` and `x` have `n·C·spatial` values each, `d_gamma`, `d_beta` and `gamma`
/// `C` each, and `saved` `2·C` (checked before anything is written, in release builds too).
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
    g.check(
        "batch_norm::backward",
        n,
        &[("d_x", d_x.len()), ("d_y", d_y.len()), ("x", x.len())],
        &[
            ("d_gamma", d_gamma.len()),
            ("d_beta", d_beta.len()),
            ("gamma", gamma.len()),
        ],
        saved.len(),
    );
    let slices = Slices {
        d_x,
        d_gamma,
        d_beta,
        d_y,
        x,
        gamma,
        saved,
    };
    let isa = Isa::current();
    exchange::with_shard(|shard| match shard {
        Some(shard) if batch_stats => slices.backward_shard(&shard, g, n, isa),
        _ => slices.backward_batch(g, n, batch_stats, isa),
    });
}

/// The slices of [`backward`].
struct Slices<'a> {
    d_x: &'a mut [f32],
    d_gamma: &'a mut [f32],
    d_beta: &'a mut [f32],
    d_y: &'a [f32],
    x: &'a [f32],
    gamma: &'a [f32],
    saved: &'a [f32],
}

impl Slices<'_> {
    /// Over the `n` samples of the whole batch.
    fn backward_batch(self, g: &BatchNormGeom, n: usize, batch_stats: bool, isa: Isa) {
        #[cfg(feature = "mpi")]
        if batch_stats && crate::distributed::batch_norm::active() {
            self.backward_ranks(g, n, isa);
            return;
        }
        let count = n * g.spatial;
        for ch in 0..g.c {
            let (sum_dy, sum_dy_xhat) = sums(isa, self.d_y, self.x, self.saved, g, n, ch);
            self.d_beta[ch] += sum_dy as f32;
            self.d_gamma[ch] += sum_dy_xhat as f32;
            let means = if batch_stats && count > 0 {
                (
                    (sum_dy / count as f64) as f32,
                    (sum_dy_xhat / count as f64) as f32,
                )
            } else {
                (0.0, 0.0)
            };
            add_input_grad(
                isa, self.d_x, self.d_y, self.x, self.saved, self.gamma, g, n, ch, means,
            );
        }
    }

    /// Over this rank's `n` samples, with batch norm synchronised across ranks: as
    /// [`Slices::backward_shard`], the ranks exchanging their sums (by all-gather, added in
    /// rank order). Should the exchange fail, the input gradient is left unwritten: the job
    /// is then ending.
    #[cfg(feature = "mpi")]
    fn backward_ranks(self, g: &BatchNormGeom, n: usize, isa: Isa) {
        let width = 1 + 2 * g.c;
        let s = self;
        crate::distributed::batch_norm::gather(
            width,
            |values| {
                values[0] = (n * g.spatial) as f64;
                for ch in 0..g.c {
                    let (sum_dy, sum_dy_xhat) = sums(isa, s.d_y, s.x, s.saved, g, n, ch);
                    s.d_beta[ch] += sum_dy as f32;
                    s.d_gamma[ch] += sum_dy_xhat as f32;
                    values[1 + 2 * ch] = sum_dy;
                    values[2 + 2 * ch] = sum_dy_xhat;
                }
            },
            |all| {
                let ranks = all.len() / width;
                let total: f64 = (0..ranks).map(|r| all[r * width]).sum();
                for ch in 0..g.c {
                    let (mut sum_dy, mut sum_dy_xhat) = (0.0f64, 0.0f64);
                    for r in 0..ranks {
                        sum_dy += all[r * width + 1 + 2 * ch];
                        sum_dy_xhat += all[r * width + 2 + 2 * ch];
                    }
                    let means = if total > 0.0 {
                        ((sum_dy / total) as f32, (sum_dy_xhat / total) as f32)
                    } else {
                        (0.0, 0.0)
                    };
                    add_input_grad(isa, s.d_x, s.d_y, s.x, s.saved, s.gamma, g, n, ch, means);
                }
            },
        );
    }

    /// Over a shard's `n` samples, with batch statistics: the input gradient needs the sums
    /// over the whole batch, which the shards exchange (their count of values per channel,
    /// then `Σ d_y` and `Σ d_y x̂` per channel) and add in shard order. `d_γ` and `d_β` take
    /// the shard's own sums; the shards' parameter gradients are added afterwards.
    fn backward_shard(self, shard: &Shard<'_>, g: &BatchNormGeom, n: usize, isa: Isa) {
        let round = shard.round(1 + 2 * g.c);
        round.publish(0, (n * g.spatial) as f64);
        for ch in 0..g.c {
            let (sum_dy, sum_dy_xhat) = sums(isa, self.d_y, self.x, self.saved, g, n, ch);
            self.d_beta[ch] += sum_dy as f32;
            self.d_gamma[ch] += sum_dy_xhat as f32;
            round.publish(1 + 2 * ch, sum_dy);
            round.publish(2 + 2 * ch, sum_dy_xhat);
        }
        let all = round.wait();
        let total: f64 = (0..all.shards()).map(|s| all.get(s, 0)).sum();
        for ch in 0..g.c {
            let (mut sum_dy, mut sum_dy_xhat) = (0.0f64, 0.0f64);
            for s in 0..all.shards() {
                sum_dy += all.get(s, 1 + 2 * ch);
                sum_dy_xhat += all.get(s, 2 + 2 * ch);
            }
            let means = if total > 0.0 {
                ((sum_dy / total) as f32, (sum_dy_xhat / total) as f32)
            } else {
                (0.0, 0.0)
            };
            add_input_grad(
                isa, self.d_x, self.d_y, self.x, self.saved, self.gamma, g, n, ch, means,
            );
        }
    }
}

isa_builds! {
    /// `Σ d_y` and `Σ d_y x̂` over channel `ch` of the `n` samples, in `f64`.
    fn sums(
        d_y: &[f32],
        x: &[f32],
        saved: &[f32],
        g: &BatchNormGeom,
        n: usize,
        ch: usize,
    ) -> (f64, f64) {
        let (mu, inv) = (saved[ch], saved[g.c + ch]);
        // Two passes, one sum each: summed together, the compiler pairs the two sums' lanes in
        // 128-bit registers and gives up on whole vectors (about 7x slower).
        let sum_dy = lane_sum(channel(d_y, g, n, ch), |dy| dy as f64);
        let d_y_x = channel(d_y, g, n, ch).zip(channel(x, g, n, ch));
        let sum_dy_xhat = lane_sum2(d_y_x, |dy, x| dy as f64 * ((x - mu) * inv) as f64);
        (sum_dy, sum_dy_xhat)
    }
}

isa_builds! {
    /// `d_x += γ·invstd·(d_y - mean(d_y) - x̂·mean(d_y x̂))` over channel `ch`, given the two
    /// means (zeros with running statistics).
    fn add_input_grad(
        d_x: &mut [f32],
        d_y: &[f32],
        x: &[f32],
        saved: &[f32],
        gamma: &[f32],
        g: &BatchNormGeom,
        n: usize,
        ch: usize,
        means: (f32, f32),
    ) {
        let ((c, s), (mean_dy, mean_dy_xhat)) = ((g.c, g.spatial), means);
        let (mu, inv) = (saved[ch], saved[c + ch]);
        let scale = gamma[ch] * inv;
        for i in 0..n {
            let at = (i * c + ch) * s..(i * c + ch + 1) * s;
            let d_x = &mut d_x[at.clone()];
            for ((d, &dy), &x) in d_x.iter_mut().zip(&d_y[at.clone()]).zip(&x[at]) {
                let xhat = (x - mu) * inv;
                *d += scale * (dy - mean_dy - xhat * mean_dy_xhat);
            }
        }
    }
}

/// The checks of [`forward_train`] and [`forward_eval`] (`kernel`), which take the same slices.
// The slices of a forward pass, plus the kernel's name, the geometry and the batch size.
#[allow(clippy::too_many_arguments)]
#[track_caller]
fn check_forward(
    kernel: &str,
    g: &BatchNormGeom,
    n: usize,
    y: &[f32],
    saved: &[f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
) {
    let channels = [
        ("gamma", gamma.len()),
        ("beta", beta.len()),
        ("running_mean", running_mean.len()),
        ("running_var", running_var.len()),
    ];
    g.check(
        kernel,
        n,
        &[("y", y.len()), ("x", x.len())],
        &channels,
        saved.len(),
    );
}

isa_builds! {
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
#[inline(always)]
fn channel<'a>(
    x: &'a [f32],
    g: &BatchNormGeom,
    n: usize,
    ch: usize,
) -> impl Iterator<Item = &'a [f32]> + 'a {
    let (c, s) = (g.c, g.spatial);
    (0..n).map(move |i| &x[(i * c + ch) * s..(i * c + ch + 1) * s])
}
