//! Contrastive divergence: CD-k and persistent CD, with momentum and weight decay, one
//! mini-batch at a time over the kernels' threads, allocating nothing once warm.

use ndarray::ArrayView2;

use super::conditional::{self, Draw, Model};
use super::{check_batch, Rbm};
use crate::ops::linear::{self, LinearGeom};
use crate::ops::parallel::{self, SharedMut};
use crate::{Error, Result};

/// The settings of contrastive-divergence training.
///
/// Each step moves the parameters along `⟨v hᵀ⟩_data − ⟨v hᵀ⟩_model`, the first term with the
/// hidden probabilities of the batch's rows, the second with the visible draws and hidden
/// probabilities at the end of `k` Gibbs steps. The steps start from the batch (CD-k), or, with
/// [`Cd::persistent`], continue chains of [`Cd::batch`] rows kept from the step before (PCD,
/// Tieleman 2008; scikit-learn's `BernoulliRBM`, whose chains start at zero hidden units, as
/// these do). With momentum `μ`, learning rate `η` and weight decay `λ` (on the weights, not
/// the biases), `Δ ← μΔ + η(gradient − λW)`, then `W ← W + Δ`.
///
/// # Example
/// ```
/// use striate::rbm::Cd;
///
/// let cd = Cd::new(0.05).k(1).persistent(true).momentum(0.5).weight_decay(1e-4).batch(20).seed(7);
/// assert!(cd.validate().is_ok());
/// assert!(Cd::new(0.0).validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cd {
    lr: f32,
    k: usize,
    persistent: bool,
    momentum: f32,
    weight_decay: f32,
    batch: usize,
    seed: u64,
}

impl Cd {
    /// CD-1 with learning rate `lr`, no momentum, no weight decay, batches of 10 (scikit-learn's
    /// default), seed 0.
    pub fn new(lr: f32) -> Cd {
        Cd {
            lr,
            k: 1,
            persistent: false,
            momentum: 0.0,
            weight_decay: 0.0,
            batch: 10,
            seed: 0,
        }
    }

    /// Gibbs steps per update (at least 1).
    pub fn k(self, k: usize) -> Cd {
        Cd { k, ..self }
    }

    /// Persistent chains (PCD) instead of chains started at the data (CD-k).
    pub fn persistent(self, persistent: bool) -> Cd {
        Cd { persistent, ..self }
    }

    /// Momentum, in `[0, 1)`.
    pub fn momentum(self, momentum: f32) -> Cd {
        Cd { momentum, ..self }
    }

    /// L2 weight decay on the weights, at least 0.
    pub fn weight_decay(self, weight_decay: f32) -> Cd {
        Cd {
            weight_decay,
            ..self
        }
    }

    /// Samples per mini-batch in [`CdTrainer::epoch`], and the rows of the persistent chains.
    pub fn batch(self, batch: usize) -> Cd {
        Cd { batch, ..self }
    }

    /// The seed of every random draw.
    pub fn seed(self, seed: u64) -> Cd {
        Cd { seed, ..self }
    }

    /// `Ok` when every setting is in its range.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first setting out of range: a learning rate that is not
    /// finite and positive, `k = 0`, a batch of 0, a momentum outside `[0, 1)` or a weight
    /// decay that is negative or not finite.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, reason: String| Err(Error::Config { name, reason });
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(
                "learning rate",
                format!("{} is not finite and positive", self.lr),
            );
        }
        if self.k == 0 {
            return bad(
                "k",
                "contrastive divergence needs at least 1 Gibbs step".into(),
            );
        }
        if self.batch == 0 {
            return bad("batch", "a batch needs at least 1 sample".into());
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", format!("{} is not in [0, 1)", self.momentum));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight decay",
                format!("{} is not finite and at least 0", self.weight_decay),
            );
        }
        Ok(())
    }
}

/// Trains [`Rbm`]s by contrastive divergence: the chains, the momentum and every buffer of a
/// step, reused from step to step.
///
/// A step splits its rows over the kernels' threads ([`crate::ops::parallel::set_threads`]) for
/// the Gibbs steps, and the hidden units for the update; each row draws from its own random
/// stream, so the result does not depend on the thread count.
#[derive(Debug)]
pub struct CdTrainer {
    cd: Cd,
    step: u64,
    /// The hidden draws of the persistent chains, `[batch, H]`; empty before the first step.
    chains: Vec<f32>,
    /// The last update of the weights `[H, V]`, visible and hidden biases (momentum).
    delta_w: Vec<f32>,
    delta_b: Vec<f32>,
    delta_c: Vec<f32>,
    /// The batch's rows, then the chains' visible draws: `[n + m, V]`.
    visible: Vec<f32>,
    /// Hidden probabilities of the batch, `[n, H]`, and of the chains, `[m, H]`.
    hidden_data: Vec<f32>,
    hidden_model: Vec<f32>,
    /// The hidden draws of CD-k's chains, `[n, H]`.
    hidden_draws: Vec<f32>,
    /// One per task: its scaled hidden statistics and its kernels' scratch.
    tasks: Vec<TaskBuffers>,
}

#[derive(Debug, Default)]
struct TaskBuffers {
    d_y: Vec<f32>,
    scratch: Vec<f32>,
}

impl CdTrainer {
    /// A trainer with the settings `cd`.
    ///
    /// # Errors
    /// As [`Cd::validate`].
    pub fn new(cd: Cd) -> Result<CdTrainer> {
        cd.validate()?;
        Ok(CdTrainer {
            cd,
            step: 0,
            chains: Vec::new(),
            delta_w: Vec::new(),
            delta_b: Vec::new(),
            delta_c: Vec::new(),
            visible: Vec::new(),
            hidden_data: Vec::new(),
            hidden_model: Vec::new(),
            hidden_draws: Vec::new(),
            tasks: Vec::new(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &Cd {
        &self.cd
    }

    /// Steps done so far.
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// One update from the mini-batch `batch`, `[n, V]`.
    ///
    /// # Errors
    /// [`Error::Shape`] when the rows do not have `V` values, [`Error::EmptyBatch`] for no
    /// rows, [`Error::NonFinite`] for a NaN or infinite value; nothing changes then.
    pub fn step<const V: usize, const H: usize>(
        &mut self,
        rbm: &mut Rbm<V, H>,
        batch: ArrayView2<'_, f32>,
    ) -> Result<()> {
        check_batch("batch of CdTrainer::step", batch, V)?;
        self.step_unchecked(rbm, batch);
        Ok(())
    }

    /// One pass over `data`, `[N, V]`, in order, in batches of [`Cd::batch`] rows (the last
    /// one smaller when `N` is not a multiple): scikit-learn's `fit` does one such pass per
    /// iteration.
    ///
    /// # Errors
    /// As [`CdTrainer::step`], checked for the whole of `data` before any step.
    pub fn epoch<const V: usize, const H: usize>(
        &mut self,
        rbm: &mut Rbm<V, H>,
        data: ArrayView2<'_, f32>,
    ) -> Result<()> {
        check_batch("data of CdTrainer::epoch", data, V)?;
        for start in (0..data.nrows()).step_by(self.cd.batch) {
            let end = (start + self.cd.batch).min(data.nrows());
            self.step_unchecked(rbm, data.slice(ndarray::s![start..end, ..]));
        }
        Ok(())
    }

    /// [`CdTrainer::step`] on a batch already checked.
    fn step_unchecked<const V: usize, const H: usize>(
        &mut self,
        rbm: &mut Rbm<V, H>,
        batch: ArrayView2<'_, f32>,
    ) {
        let n = batch.nrows();
        let m = if self.cd.persistent { self.cd.batch } else { n };
        self.grow(n, m, V, H);
        for (row, data) in self.visible.chunks_exact_mut(V).zip(batch.rows()) {
            row.iter_mut().zip(data).for_each(|(d, &x)| *d = x);
        }
        self.gibbs_phase(&rbm.model(), n, m);
        self.update(rbm, n, m);
        self.step += 1;
    }

    /// Sizes every buffer for `n` data rows and `m` chains (allocating only when one grows).
    fn grow(&mut self, n: usize, m: usize, v: usize, h: usize) {
        fn fit(buf: &mut Vec<f32>, len: usize) {
            buf.resize(len, 0.0);
        }
        if self.chains.len() != m * h && self.cd.persistent {
            fit(&mut self.chains, m * h);
        }
        fit(&mut self.visible, (n + m) * v);
        fit(&mut self.hidden_data, n * h);
        fit(&mut self.hidden_model, m * h);
        fit(
            &mut self.hidden_draws,
            if self.cd.persistent { 0 } else { n * h },
        );
        if self.cd.momentum > 0.0 || self.cd.weight_decay > 0.0 {
            fit(&mut self.delta_w, h * v);
        }
        fit(&mut self.delta_b, v);
        fit(&mut self.delta_c, h);
        let threads = parallel::threads();
        if self.tasks.len() < threads {
            self.tasks.resize_with(threads, TaskBuffers::default);
        }
    }

    /// The positive statistics of the `n` data rows, then `k` Gibbs steps of the `m` chains,
    /// rows split over the threads.
    fn gibbs_phase(&mut self, model: &Model<'_>, n: usize, m: usize) {
        let (v, h) = (model.visible, model.hidden);
        let (cd, step) = (self.cd, self.step);
        let tasks = parallel::threads().min(n.max(m));
        let (data, chain_visible) = self.visible.split_at_mut(n * v);
        let data = &*data;
        let chain_visible = SharedMut::new(chain_visible);
        let hidden_data = SharedMut::new(&mut self.hidden_data);
        let hidden_model = SharedMut::new(&mut self.hidden_model);
        let chains = if cd.persistent {
            SharedMut::new(&mut self.chains)
        } else {
            SharedMut::new(&mut self.hidden_draws)
        };
        let buffers = SharedMut::new(&mut self.tasks);
        parallel::run(tasks, |t| {
            // Safety: task `t` alone touches its buffers, the rows `part(n, tasks, t)` of the
            // data's buffers and the rows `part(m, tasks, t)` of the chains'; `run` returns
            // before any of them is borrowed again.
            let scratch = &mut unsafe { buffers.slice(t, 1) }[0].scratch;
            let rows = parallel::part(n, tasks, t);
            let h_data = unsafe { hidden_data.slice(rows.start * h, rows.len() * h) };
            let x = &data[rows.start * v..rows.end * v];
            conditional::hidden_means(h_data, x, model, rows.len(), scratch);
            let chains_rows = parallel::part(m, tasks, t);
            let (c0, cn) = (chains_rows.start, chains_rows.len());
            // Safety: as above.
            let chain = unsafe { chains.slice(c0 * h, cn * h) };
            if !cd.persistent {
                chain.copy_from_slice(h_data);
                for (r, row) in chain.chunks_exact_mut(h).enumerate() {
                    let mut rng = conditional::row_rng(cd.seed, step, Draw::DataHidden, c0 + r);
                    conditional::draw_binary(row, &mut rng);
                }
            }
            // Safety: as above.
            let vis = unsafe { chain_visible.slice(c0 * v, cn * v) };
            let h_model = unsafe { hidden_model.slice(c0 * h, cn * h) };
            for k in 0..cd.k {
                conditional::visible_means(vis, chain, model, cn, scratch);
                for (r, row) in vis.chunks_exact_mut(v).enumerate() {
                    let mut rng = conditional::row_rng(cd.seed, step, Draw::Visible(k), c0 + r);
                    conditional::draw_visible(row, model.units, &mut rng);
                }
                conditional::hidden_means(h_model, vis, model, cn, scratch);
                chain.copy_from_slice(h_model);
                for (r, row) in chain.chunks_exact_mut(h).enumerate() {
                    let mut rng = conditional::row_rng(cd.seed, step, Draw::Hidden(k), c0 + r);
                    conditional::draw_binary(row, &mut rng);
                }
            }
        });
    }

    /// The update of every parameter from the statistics of [`CdTrainer::gibbs_phase`], the
    /// hidden units split over the threads.
    fn update<const V: usize, const H: usize>(&mut self, rbm: &mut Rbm<V, H>, n: usize, m: usize) {
        let cd = self.cd;
        let rows = n + m;
        let (pos, neg) = (cd.lr / n as f32, -cd.lr / m as f32);
        let plain = self.delta_w.is_empty();
        let tasks = parallel::threads().min(H);
        let (visible, hidden_data, hidden_model) =
            (&self.visible, &self.hidden_data, &self.hidden_model);
        let w_all = SharedMut::new(&mut rbm.w);
        let c_all = SharedMut::new(&mut rbm.c);
        let delta_w = SharedMut::new(&mut self.delta_w);
        let delta_c = SharedMut::new(&mut self.delta_c);
        let buffers = SharedMut::new(&mut self.tasks);
        parallel::run(tasks, |t| {
            let units = parallel::part(H, tasks, t);
            let (j0, hj) = (units.start, units.len());
            // Safety: task `t` alone touches its buffers and the rows `units` of the weights,
            // the hidden biases and their updates; `run` returns before they are borrowed again.
            let TaskBuffers { d_y, scratch } = &mut unsafe { buffers.slice(t, 1) }[0];
            let w = unsafe { w_all.slice(j0 * V, hj * V) };
            let c = unsafe { c_all.slice(j0, hj) };
            let d_c = unsafe { delta_c.slice(j0, hj) };
            // d_y: (n + m, hj), the scaled statistics of this task's hidden units.
            d_y.resize(rows * hj, 0.0);
            let sources = hidden_data.chunks_exact(H).map(|r| (r, pos));
            let sources = sources.chain(hidden_model.chunks_exact(H).map(|r| (r, neg)));
            for (dst, (src, scale)) in d_y.chunks_exact_mut(hj).zip(sources) {
                for (d, &p) in dst.iter_mut().zip(&src[units.clone()]) {
                    *d = scale * p;
                }
            }
            for (j, d) in d_c.iter_mut().enumerate() {
                let sum: f32 = d_y.iter().skip(j).step_by(hj).sum();
                *d = cd.momentum * *d + sum;
            }
            c.iter_mut().zip(&*d_c).for_each(|(c, d)| *c += d);
            let g = LinearGeom { in_f: V, out_f: hj };
            if plain {
                linear::add_weight_grad(w, d_y, visible, &g, rows, scratch);
                return;
            }
            // Safety: as above.
            let d_w = unsafe { delta_w.slice(j0 * V, hj * V) };
            let decay = cd.lr * cd.weight_decay;
            for (d, &w) in d_w.iter_mut().zip(&*w) {
                *d = cd.momentum * *d - decay * w;
            }
            linear::add_weight_grad(d_w, d_y, visible, &g, rows, scratch);
            w.iter_mut().zip(&*d_w).for_each(|(w, d)| *w += d);
        });
        let (data, model) = self.visible.split_at(n * V);
        for d in self.delta_b.iter_mut() {
            *d *= cd.momentum;
        }
        for (rows, scale) in [(data, pos), (model, neg)] {
            for row in rows.chunks_exact(V) {
                self.delta_b
                    .iter_mut()
                    .zip(row)
                    .for_each(|(d, &x)| *d += scale * x);
            }
        }
        rbm.b
            .iter_mut()
            .zip(&self.delta_b)
            .for_each(|(b, d)| *b += d);
    }
}

/// Here rather than in `tests/`: they set the thread count of one call, which only the crate can.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let data = ndarray::Array2::from_shape_fn((37, 20), |(s, i)| {
            ((s * 7 + i * 3) % 5 < 2) as u8 as f32
        });
        let train = |threads| {
            parallel::with_threads(threads, || {
                let mut rbm = Rbm::<20, 9>::bernoulli(3);
                let cd = Cd::new(0.1)
                    .persistent(true)
                    .batch(8)
                    .momentum(0.5)
                    .weight_decay(1e-3);
                let mut t = CdTrainer::new(cd).unwrap();
                for _ in 0..3 {
                    t.epoch(&mut rbm, data.view()).unwrap();
                }
                rbm
            })
        };
        let (one, two) = (train(1), train(2));
        assert_eq!(one.w, two.w);
        assert_eq!(one.b, two.b);
        assert_eq!(one.c, two.c);
    }
}
