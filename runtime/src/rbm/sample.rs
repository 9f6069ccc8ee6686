//! Gibbs chains: `h ~ p(h | v)`, then `v ~ p(v | h)`, `k` times, from data or from noise.

use ndarray::{Array2, ArrayView2};

use super::conditional::{self, Draw};
use super::{check_batch, Rbm, Visible};
use crate::ops::parallel::{self, SharedMut};
use crate::{Error, Result};

/// Where Gibbs chains end: the last visible draws and the means they were drawn from (the
/// means are the smoother picture).
#[derive(Clone, Debug, PartialEq)]
pub struct Gibbs {
    /// The visible draws after the last step, `[N, V]`.
    pub samples: Array2<f32>,
    /// The means of `p(v | h)` at the last step, `[N, V]`.
    pub means: Array2<f32>,
}

impl<const V: usize, const H: usize> Rbm<V, H> {
    /// Runs one Gibbs chain from each row of `v` (`[N, V]`) for `k` steps, each step drawing
    /// the hidden units given the visible ones and then the visible units given the hidden ones,
    /// seeded (each chain has its own random stream, whatever the thread count).
    ///
    /// # Errors
    /// As [`Rbm::free_energy`]; [`Error::Config`] when `k` is 0.
    ///
    /// # Example
    /// ```
    /// use striate::ndarray::Array2;
    /// use striate::rbm::Rbm;
    ///
    /// let rbm = Rbm::<5, 3>::bernoulli(0);
    /// let chains = rbm.gibbs(Array2::ones((4, 5)).view(), 10, 1)?;
    /// assert_eq!(chains.samples.shape(), [4, 5]);
    /// assert!(chains.samples.iter().all(|&x| x == 0.0 || x == 1.0));
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn gibbs(&self, v: ArrayView2<'_, f32>, k: usize, seed: u64) -> Result<Gibbs> {
        check_batch("start of Rbm::gibbs", v, V)?;
        check_steps(k)?;
        Ok(self.chains(v.as_standard_layout().into_owned(), k, seed))
    }

    /// Runs `n` Gibbs chains for `k` steps from noise: visible units drawn at random (binary
    /// units with probability ½, Gaussian ones from `N(0, 1)`), then as [`Rbm::gibbs`]. With
    /// enough steps, the rows are draws from the machine's distribution `p(v)`.
    ///
    /// # Errors
    /// [`Error::EmptyBatch`] when `n` is 0, [`Error::Config`] when `k` is 0.
    ///
    /// # Example
    /// ```
    /// use striate::rbm::Rbm;
    ///
    /// let dreams = Rbm::<784, 100>::bernoulli(0).dream(16, 100, 7)?;
    /// assert_eq!(dreams.means.shape(), [16, 784]);
    /// assert!(Rbm::<784, 100>::bernoulli(0).dream(16, 0, 7).is_err());
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn dream(&self, n: usize, k: usize, seed: u64) -> Result<Gibbs> {
        if n == 0 {
            return Err(Error::EmptyBatch {
                what: "chains of Rbm::dream".into(),
            });
        }
        check_steps(k)?;
        let mut start = Array2::zeros((n, V));
        for (r, row) in start.rows_mut().into_iter().enumerate() {
            let mut rng = conditional::row_rng(seed, u64::MAX, Draw::Noise, r);
            let row = row.into_slice().expect("a row of a standard-layout array");
            match self.units {
                Visible::Bernoulli => {
                    row.fill(0.5);
                    conditional::draw_binary(row, &mut rng);
                }
                Visible::Gaussian => conditional::draw_visible(row, self.units, &mut rng),
            }
        }
        Ok(self.chains(start, k, seed))
    }

    /// `k` Gibbs steps from the rows of `visible`, rows split over the threads.
    fn chains(&self, mut visible: Array2<f32>, k: usize, seed: u64) -> Gibbs {
        let n = visible.nrows();
        let mut means = Array2::zeros((n, V));
        let model = self.model();
        let tasks = parallel::threads().min(n);
        let draws = SharedMut::new(visible.as_slice_mut().expect("standard layout"));
        let all_means = SharedMut::new(means.as_slice_mut().expect("standard layout"));
        parallel::run(tasks, |t| {
            let rows = parallel::part(n, tasks, t);
            let (r0, len) = (rows.start, rows.len());
            // Safety: task `t` alone touches rows `rows`; `run` returns before they are read.
            let v = unsafe { draws.slice(r0 * V, len * V) };
            let means = unsafe { all_means.slice(r0 * V, len * V) };
            let (mut h, mut scratch) = (vec![0.0; len * H], Vec::new());
            for step in 0..k {
                conditional::hidden_means(&mut h, v, &model, len, &mut scratch);
                for (r, row) in h.chunks_exact_mut(H).enumerate() {
                    let mut rng = conditional::row_rng(seed, step as u64, Draw::Hidden(0), r0 + r);
                    conditional::draw_binary(row, &mut rng);
                }
                conditional::visible_means(means, &h, &model, len, &mut scratch);
                v.copy_from_slice(means);
                for (r, row) in v.chunks_exact_mut(V).enumerate() {
                    let mut rng = conditional::row_rng(seed, step as u64, Draw::Visible(0), r0 + r);
                    conditional::draw_visible(row, model.units, &mut rng);
                }
            }
        });
        Gibbs {
            samples: visible,
            means,
        }
    }
}

/// `Ok` unless a chain is asked for no steps.
fn check_steps(k: usize) -> Result<()> {
    if k == 0 {
        return Err(Error::Config {
            name: "k",
            reason: "a Gibbs chain needs at least 1 step".into(),
        });
    }
    Ok(())
}
