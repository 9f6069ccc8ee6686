//! Restricted Boltzmann machines: a layer of `V` visible units and `H` hidden units, both sizes
//! constants checked by the compiler, trained by contrastive divergence (CD-k) or persistent
//! contrastive divergence (PCD) rather than backpropagation.
//!
//! The energy of a visible vector `v` and a hidden vector `h ∈ {0, 1}ᴴ` is
//! `E(v, h) = −bᵀv − cᵀh − hᵀWv` for binary visible units ([`Visible::Bernoulli`]) and
//! `E(v, h) = ½‖v − b‖² − cᵀh − hᵀWv` for real ones with unit variance
//! ([`Visible::Gaussian`]); `p(v, h) = e^(−E(v, h)) / Z`. `W` is `[H, V]`, the layout of a
//! linear layer's `weight` `[out, in]`, so a trained machine gives a `network!`'s `linear`
//! layer its initial weights by name ([`Rbm::init_linear`]).
//!
//! - [`Cd`] holds the training settings and [`CdTrainer`] trains, one mini-batch or one
//!   epoch at a time, with the linear layer's products and the kernels' threads, allocating
//!   nothing once warm.
//! - [`Rbm::free_energy`], [`Rbm::pseudo_likelihood`] (scikit-learn's `score_samples`),
//!   [`Rbm::exact_pseudo_likelihood`] and [`Rbm::reconstruction_error`] measure a machine;
//!   [`Rbm::transform`] gives the hidden units' probabilities as features.
//! - [`Rbm::gibbs`] and [`Rbm::dream`] run Gibbs chains from data or from noise.
//!
//! # Example
//! ```
//! use striate::prelude::*;
//! use striate::rbm::{Cd, CdTrainer, Rbm};
//!
//! let data = Array2::from_shape_fn((40, 6), |(s, i)| ((s + i) % 2) as f32);
//! let mut rbm = Rbm::<6, 4>::bernoulli(0);
//! let mut trainer = CdTrainer::new(Cd::new(0.1).persistent(true).batch(10).seed(1))?;
//! for _ in 0..5 {
//!     trainer.epoch(&mut rbm, data.view())?;
//! }
//! let features = rbm.transform(data.view())?;
//! assert_eq!(features.shape(), [40, 4]);
//! let score = rbm.pseudo_likelihood_seeded(data.view(), 0)?;
//! assert!(score.iter().all(|&s| s <= 0.0));
//! # Ok::<(), striate::Error>(())
//! ```

mod conditional;
mod sample;
mod score;
mod train;

pub use sample::Gibbs;
pub use train::{Cd, CdTrainer};

use ndarray::{ArrayView1, ArrayView2};
use rand::SeedableRng;

use crate::{Error, NetRng, Network, Result};
use conditional::Model;

/// The kind of the visible units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Visible {
    /// Binary units, `p(vᵢ = 1 | h) = σ(bᵢ + Wᵢᵀh)`: images binarized or scaled to `[0, 1]`
    /// (the default).
    #[default]
    Bernoulli,
    /// Real units of unit variance, `vᵢ | h ~ N(bᵢ + Wᵢᵀh, 1)`: standardise the data first.
    Gaussian,
}

/// A restricted Boltzmann machine with `V` visible and `H` hidden units (binary hidden units).
///
/// The weights are `[H, V]` (a linear layer `V -> H`'s `weight`), the visible biases `[V]`
/// and the hidden biases `[H]`.
///
/// # Example
/// ```
/// use striate::rbm::{Rbm, Visible};
///
/// let rbm = Rbm::<784, 500>::bernoulli(0);
/// assert_eq!(rbm.weights().shape(), [500, 784]);
/// assert_eq!(rbm.units(), Visible::Bernoulli);
/// assert_eq!(Rbm::<784, 500>::VISIBLE, 784);
/// ```
#[derive(Clone, PartialEq)]
pub struct Rbm<const V: usize, const H: usize> {
    units: Visible,
    /// `[H, V]`, row-major.
    w: Vec<f32>,
    /// Visible biases `b`.
    b: Vec<f32>,
    /// Hidden biases `c`.
    c: Vec<f32>,
}

impl<const V: usize, const H: usize> std::fmt::Debug for Rbm<V, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rbm<{V}, {H}> {{ units: {:?} }}", self.units)
    }
}

impl<const V: usize, const H: usize> Rbm<V, H> {
    /// Visible units.
    pub const VISIBLE: usize = V;
    /// Hidden units.
    pub const HIDDEN: usize = H;
    /// Refuses a machine without units when it is compiled.
    const HAS_UNITS: () = assert!(V > 0 && H > 0, "an Rbm needs visible and hidden units");

    /// A machine with weights drawn from `N(0, 0.01²)` (scikit-learn's `BernoulliRBM`) and
    /// zero biases, seeded.
    pub fn new(units: Visible, seed: u64) -> Rbm<V, H> {
        let () = Self::HAS_UNITS;
        let mut rng = NetRng::seed_from_u64(seed);
        let w = (0..V * H)
            .map(|_| 0.01 * conditional::standard_normal(&mut rng))
            .collect();
        Rbm {
            units,
            w,
            b: vec![0.0; V],
            c: vec![0.0; H],
        }
    }

    /// [`Rbm::new`] with binary visible units.
    pub fn bernoulli(seed: u64) -> Rbm<V, H> {
        Self::new(Visible::Bernoulli, seed)
    }

    /// [`Rbm::new`] with real visible units of unit variance.
    pub fn gaussian(seed: u64) -> Rbm<V, H> {
        Self::new(Visible::Gaussian, seed)
    }

    /// A machine with the given weights `[H, V]`, visible biases `[V]` and hidden biases `[H]`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the array of the wrong shape; [`Error::NonFinite`] for a NaN or
    /// infinite value.
    ///
    /// # Example
    /// ```
    /// use striate::ndarray::{arr1, arr2};
    /// use striate::rbm::{Rbm, Visible};
    ///
    /// let w = arr2(&[[1.0, -1.0, 0.5]]);
    /// let rbm = Rbm::<3, 1>::from_parts(Visible::Bernoulli, w.view(), arr1(&[0.0; 3]).view(), arr1(&[0.1]).view())?;
    /// assert_eq!(rbm.hidden_bias()[0], 0.1);
    /// assert!(Rbm::<2, 1>::from_parts(Visible::Bernoulli, w.view(), arr1(&[0.0; 2]).view(), arr1(&[0.0]).view()).is_err());
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn from_parts(
        units: Visible,
        weights: ArrayView2<'_, f32>,
        visible_bias: ArrayView1<'_, f32>,
        hidden_bias: ArrayView1<'_, f32>,
    ) -> Result<Rbm<V, H>> {
        let () = Self::HAS_UNITS;
        let parts = [
            ("weights of the Rbm", weights.shape(), vec![H, V]),
            ("visible biases of the Rbm", visible_bias.shape(), vec![V]),
            ("hidden biases of the Rbm", hidden_bias.shape(), vec![H]),
        ];
        for (what, found, expected) in parts {
            if found != expected.as_slice() {
                return Err(Error::shape(what, &expected, found));
            }
        }
        let w: Vec<f32> = weights.iter().copied().collect();
        let b: Vec<f32> = visible_bias.to_vec();
        let c: Vec<f32> = hidden_bias.to_vec();
        for (what, values) in [
            ("weights", &w),
            ("visible biases", &b),
            ("hidden biases", &c),
        ] {
            check_finite(what, values.iter().copied())?;
        }
        Ok(Rbm { units, w, b, c })
    }

    /// The kind of the visible units.
    pub fn units(&self) -> Visible {
        self.units
    }

    /// The weights, `[H, V]`.
    pub fn weights(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((H, V), &self.w).expect("the weights hold H·V values")
    }

    /// The visible biases `b`, `[V]`.
    pub fn visible_bias(&self) -> ArrayView1<'_, f32> {
        ArrayView1::from(&self.b[..])
    }

    /// The hidden biases `c`, `[H]`.
    pub fn hidden_bias(&self) -> ArrayView1<'_, f32> {
        ArrayView1::from(&self.c[..])
    }

    /// Gives the `linear` layer `layer` of `net` this machine's weights and hidden biases:
    /// `<layer>.weight` `[H, V]` and `<layer>.bias` `[H]`, so that the layer computes the
    /// hidden units' input `Wv + c` (follow it with `sigmoid` to get [`Rbm::transform`]).
    /// Both or neither are written.
    ///
    /// # Errors
    /// [`Error::UnknownParameter`] when `net` has no `<layer>.weight` or `<layer>.bias`;
    /// [`Error::Shape`] when the layer is not `V -> H`. Nothing changes then.
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    /// use striate::rbm::Rbm;
    ///
    /// network! {
    ///     struct Mlp { input: [6], fc1: linear(4), sigmoid, fc2: linear(2) }
    /// }
    ///
    /// let rbm = Rbm::<6, 4>::bernoulli(0);
    /// let mut net = Mlp::init(0);
    /// rbm.init_linear(&mut net, "fc1")?;
    /// assert_eq!(net.params().get("fc1.weight").unwrap(), rbm.weights().into_dyn());
    /// assert!(rbm.init_linear(&mut net, "fc2").is_err());
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn init_linear<N: Network>(&self, net: &mut N, layer: &str) -> Result<()> {
        let weight = format!("{layer}.weight");
        let bias = format!("{layer}.bias");
        let params = net.params_mut();
        for (name, shape) in [(&weight, &[H, V][..]), (&bias, &[H][..])] {
            let info = params.info(name).ok_or_else(|| Error::UnknownParameter {
                name: name.clone(),
                known: params.known_names(),
            })?;
            if info.shape != shape {
                return Err(Error::shape(
                    format!("`{name}` for Rbm<{V}, {H}>"),
                    info.shape,
                    shape,
                ));
            }
        }
        params.set(&weight, self.weights().into_dyn())?;
        params.set(&bias, self.hidden_bias().into_dyn())
    }

    /// The machine's parameters as the kernels read them.
    fn model(&self) -> Model<'_> {
        Model {
            units: self.units,
            w: &self.w,
            b: &self.b,
            c: &self.c,
            visible: V,
            hidden: H,
        }
    }
}

/// `Ok` unless `data` is not `[N, V]` with `N ≥ 1` and finite values.
fn check_batch(what: &str, data: ArrayView2<'_, f32>, visible: usize) -> Result<()> {
    if data.ncols() != visible {
        return Err(Error::shape(
            format!("{what} (0 = any number of samples)"),
            &[0, visible],
            data.shape(),
        ));
    }
    if data.nrows() == 0 {
        return Err(Error::EmptyBatch {
            what: what.to_string(),
        });
    }
    check_finite(what, data.iter().copied())
}

/// `Ok` unless one of `values` is NaN or infinite.
fn check_finite(what: &str, values: impl Iterator<Item = f32>) -> Result<()> {
    for (index, value) in values.enumerate() {
        if !value.is_finite() {
            return Err(Error::NonFinite {
                what: what.to_string(),
                index,
                value,
                help: "",
            });
        }
    }
    Ok(())
}
