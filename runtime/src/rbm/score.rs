//! What a machine says about data: free energy, pseudo-likelihood, reconstruction error, and
//! the hidden probabilities as features.

use ndarray::{Array1, Array2, ArrayView2};
use rand::{Rng, SeedableRng};

use super::conditional::{self, log_sigmoid, softplus, Model};
use super::{check_batch, Rbm, Visible};
use crate::ops::activation::Activation;
use crate::ops::linear;
use crate::ops::parallel::{self, SharedMut};
use crate::{Error, NetRng, Result};

impl<const V: usize, const H: usize> Rbm<V, H> {
    /// The free energy of each row of `v` (`[N, V]`): `F(v) = −log Σₕ e^(−E(v, h))`, which is
    /// `−bᵀv − Σⱼ log(1 + e^(cⱼ + Wⱼv))` for binary visible units and
    /// `½‖v − b‖² − Σⱼ log(1 + e^(cⱼ + Wⱼv))` for Gaussian ones; `p(v) = e^(−F(v)) / Z`.
    ///
    /// # Errors
    /// [`Error::Shape`] when the rows do not have `V` values, [`Error::EmptyBatch`] for no
    /// rows, [`Error::NonFinite`] for a NaN or infinite value.
    ///
    /// # Example
    /// ```
    /// use striate::ndarray::arr2;
    /// use striate::rbm::Rbm;
    ///
    /// // With zero weights and biases, every hidden unit contributes −log 2.
    /// let rbm = Rbm::<2, 3>::from_parts(Default::default(), arr2(&[[0.0; 2]; 3]).view(), [0.0; 2][..].into(), [0.0; 3][..].into())?;
    /// let f = rbm.free_energy(arr2(&[[1.0, 0.0]]).view())?;
    /// assert!((f[0] + 3.0 * 2f32.ln()).abs() < 1e-6);
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn free_energy(&self, v: ArrayView2<'_, f32>) -> Result<Array1<f32>> {
        check_batch("input of Rbm::free_energy", v, V)?;
        let v = v.as_standard_layout();
        let v = v.as_slice().expect("standard layout");
        Ok(self.free_energies(v).into())
    }

    /// scikit-learn's pseudo-likelihood (`BernoulliRBM.score_samples`) of each row of `v`:
    /// `V · log σ(F(ṽ) − F(v))`, where `ṽ` is `v` with unit `flipped[s]` of row `s` flipped
    /// (`1 − vᵢ`). It estimates `Σᵢ log p(vᵢ | v₋ᵢ)` from one unit per row (see
    /// [`Rbm::exact_pseudo_likelihood`] for the sum itself). Give scikit-learn's indices to
    /// get its numbers: `np.random.RandomState(random_state).randint(0, V, N)`.
    ///
    /// # Errors
    /// As [`Rbm::free_energy`]; [`Error::Shape`] when `flipped` does not have one index per
    /// row, [`Error::Config`] for an index not below `V` or for Gaussian visible units (whose
    /// values cannot be flipped).
    ///
    /// # Example
    /// ```
    /// use striate::ndarray::arr2;
    /// use striate::rbm::Rbm;
    ///
    /// let rbm = Rbm::<3, 2>::bernoulli(0);
    /// let v = arr2(&[[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]);
    /// let one = rbm.pseudo_likelihood(v.view(), &[0, 2])?;
    /// let all = rbm.exact_pseudo_likelihood(v.view())?;
    /// // Near-zero weights: every unit is a coin toss, log ½ each.
    /// assert!((one[0] - 3.0 * 0.5f32.ln()).abs() < 0.05);
    /// assert!((all[1] - 3.0 * 0.5f32.ln()).abs() < 0.05);
    /// assert!(rbm.pseudo_likelihood(v.view(), &[3, 0]).is_err());
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn pseudo_likelihood(
        &self,
        v: ArrayView2<'_, f32>,
        flipped: &[usize],
    ) -> Result<Array1<f32>> {
        self.check_flippable(v)?;
        if flipped.len() != v.nrows() {
            let what = "flipped units of Rbm::pseudo_likelihood (one per row)";
            return Err(Error::shape(what, &[v.nrows()], &[flipped.len()]));
        }
        if let Some((row, &i)) = flipped.iter().enumerate().find(|&(_, &i)| i >= V) {
            return Err(Error::Config {
                name: "flipped units",
                reason: format!("index {i} of row {row} is not below the {V} visible units"),
            });
        }
        let mut v = v.as_standard_layout().into_owned();
        let x = v.as_slice_mut().expect("standard layout");
        let f = self.free_energies(x);
        for (row, &i) in x.chunks_exact_mut(V).zip(flipped) {
            row[i] = 1.0 - row[i];
        }
        let f_flipped = self.free_energies(x);
        let pl = f.iter().zip(&f_flipped);
        Ok(pl.map(|(f, g)| V as f32 * log_sigmoid(g - f)).collect())
    }

    /// [`Rbm::pseudo_likelihood`] with one unit per row chosen uniformly at random, seeded.
    ///
    /// # Errors
    /// As [`Rbm::pseudo_likelihood`].
    pub fn pseudo_likelihood_seeded(
        &self,
        v: ArrayView2<'_, f32>,
        seed: u64,
    ) -> Result<Array1<f32>> {
        let mut rng = NetRng::seed_from_u64(seed);
        let flipped: Vec<usize> = (0..v.nrows()).map(|_| rng.random_range(0..V)).collect();
        self.pseudo_likelihood(v, &flipped)
    }

    /// The pseudo-likelihood of each row of `v` over every unit: `Σᵢ log p(vᵢ | v₋ᵢ)
    /// = Σᵢ log σ(F(v⁽ⁱ⁾) − F(v))`, `v⁽ⁱ⁾` being `v` with unit `i` flipped. [`Rbm::pseudo_likelihood`]
    /// estimates it from one unit; this costs `V` times as much.
    ///
    /// # Errors
    /// As [`Rbm::free_energy`]; [`Error::Config`] for Gaussian visible units.
    pub fn exact_pseudo_likelihood(&self, v: ArrayView2<'_, f32>) -> Result<Array1<f32>> {
        self.check_flippable(v)?;
        let v = v.as_standard_layout();
        let x = v.as_slice().expect("standard layout");
        let n = v.nrows();
        let inputs = self.hidden_inputs(x, n);
        let mut out = vec![0.0; n];
        let all = SharedMut::new(&mut out);
        let tasks = parallel::threads().min(n);
        parallel::run(tasks, |t| {
            let rows = parallel::part(n, tasks, t);
            // Safety: task `t` alone writes rows `rows`; `run` returns before `out` is read.
            let out = unsafe { all.slice(rows.start, rows.len()) };
            let mut flipped = vec![0.0; H];
            for (o, s) in out.iter_mut().zip(rows) {
                let (v_s, pre) = (&x[s * V..][..V], &inputs[s * H..][..H]);
                let hidden_v: f32 = pre.iter().map(|&p| softplus(p)).sum();
                *o = (0..V)
                    .map(|i| {
                        // Flipping unit i moves each hidden input by ±W[:, i].
                        let sign = 1.0 - 2.0 * v_s[i];
                        let column = self.w.iter().skip(i).step_by(V);
                        for ((d, &p), &w) in flipped.iter_mut().zip(pre).zip(column) {
                            *d = p + sign * w;
                        }
                        let hidden_flipped: f32 = flipped.iter().map(|&p| softplus(p)).sum();
                        // F(v⁽ⁱ⁾) − F(v): the visible term changes by −bᵢ·sign.
                        log_sigmoid(hidden_v - hidden_flipped - self.b[i] * sign)
                    })
                    .sum();
            }
        });
        Ok(out.into())
    }

    /// The mean over the rows of `v` of `‖v − v̂‖²`, where `v̂` are the visible means given the
    /// hidden probabilities given `v` (no random draw).
    ///
    /// # Errors
    /// As [`Rbm::free_energy`].
    pub fn reconstruction_error(&self, v: ArrayView2<'_, f32>) -> Result<f32> {
        check_batch("input of Rbm::reconstruction_error", v, V)?;
        let n = v.nrows();
        let hidden = self.transform(v)?;
        let mut means = vec![0.0; n * V];
        let h = hidden.as_slice().expect("transform's output is contiguous");
        conditional::visible_means(&mut means, h, &self.model(), n, &mut Vec::new());
        let squares: f64 = v
            .iter()
            .zip(&means)
            .map(|(&x, &m)| f64::from(x - m).powi(2))
            .sum();
        Ok((squares / n as f64) as f32)
    }

    /// The hidden units' probabilities `p(hⱼ = 1 | v) = σ(cⱼ + Wⱼv)` of each row of `v`,
    /// `[N, H]`: the features the machine has learnt (scikit-learn's `transform`).
    ///
    /// # Errors
    /// As [`Rbm::free_energy`].
    pub fn transform(&self, v: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_batch("input of Rbm::transform", v, V)?;
        let n = v.nrows();
        let v = v.as_standard_layout();
        let mut h = self.hidden_inputs(v.as_slice().expect("standard layout"), n);
        h.iter_mut()
            .for_each(|x| *x = Activation::Sigmoid.apply(*x));
        Ok(Array2::from_shape_vec((n, H), h).expect("n·H values"))
    }

    /// `Ok` unless `v` is not a batch of rows of `V` values whose units can be flipped.
    fn check_flippable(&self, v: ArrayView2<'_, f32>) -> Result<()> {
        if self.units == Visible::Gaussian {
            return Err(Error::Config {
                name: "visible units",
                reason: "the pseudo-likelihood flips binary units; these are Gaussian".into(),
            });
        }
        check_batch("input of Rbm::pseudo_likelihood", v, V)
    }

    /// The hidden units' inputs `c + Wv` of the `n` rows of `x`, `[n, H]`, the rows split over
    /// the threads.
    fn hidden_inputs(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n * H];
        let all = SharedMut::new(&mut out);
        let tasks = parallel::threads().min(n);
        let model = self.model();
        parallel::run(tasks, |t| {
            let rows = parallel::part(n, tasks, t);
            // Safety: task `t` alone writes rows `rows`; `run` returns before `out` is read.
            let y = unsafe { all.slice(rows.start * H, rows.len() * H) };
            let x = &x[rows.start * V..rows.end * V];
            linear::forward(
                y,
                x,
                model.w,
                Some(model.c),
                &model.geom(),
                rows.len(),
                &mut Vec::new(),
            );
        });
        out
    }

    /// [`Rbm::free_energy`] of the `N` rows of `x`.
    fn free_energies(&self, x: &[f32]) -> Vec<f32> {
        let n = x.len() / V;
        let inputs = self.hidden_inputs(x, n);
        let rows = x.chunks_exact(V).zip(inputs.chunks_exact(H));
        rows.map(|(v, pre)| free_energy_of(&self.model(), v, pre))
            .collect()
    }
}

/// `F(v)` from `v` and its hidden inputs `pre = c + Wv`.
fn free_energy_of(m: &Model<'_>, v: &[f32], pre: &[f32]) -> f32 {
    let visible: f32 = match m.units {
        Visible::Bernoulli => -v.iter().zip(m.b).map(|(v, b)| v * b).sum::<f32>(),
        Visible::Gaussian => {
            0.5 * v
                .iter()
                .zip(m.b)
                .map(|(v, b)| (v - b) * (v - b))
                .sum::<f32>()
        }
    };
    visible - pre.iter().map(|&p| softplus(p)).sum::<f32>()
}
