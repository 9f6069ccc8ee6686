//! A network's state (parameters, buffers, batch count, generator), how it is first filled,
//! and the views of its tensors that [`Network::visit`](crate::Network::visit) hands out.

use ndarray::{ArrayViewD, ArrayViewMutD};
use rand::SeedableRng;

use crate::params::ParamStore;
use crate::tables::{Init, NetRng, ParamInfo};
use crate::Result;

/// A network's learnable parameters, running statistics, count of training batches and dropout
/// generator.
///
/// The `network!` macro's struct wraps one of these; the [`Network`](crate::Network) trait
/// reaches it through [`Network::state`](crate::Network::state).
#[derive(Clone, Debug)]
pub struct State {
    /// Learnable parameters (`<layer>.weight`, `<layer>.bias`).
    pub params: ParamStore,
    /// Buffers that are not learned (`<layer>.running_mean`, `<layer>.running_var`).
    pub buffers: ParamStore,
    /// Training-mode forward passes of a network with batch norm: what PyTorch keeps in every
    /// batch-norm layer's `num_batches_tracked` buffer. All of a network's batch-norm layers
    /// see the same passes, so one count serves them all; a pass in which every batch-norm
    /// layer keeps its running statistics fixed (frozen, with
    /// [`Transfer::freeze_batch_norm_statistics`](crate::Transfer::freeze_batch_norm_statistics))
    /// does not count, as PyTorch's evaluation mode does not. (With some layers fixed and
    /// others not, the pass counts for all of them, where PyTorch would count it for the others
    /// only.)
    /// [`Network::save`](crate::Network::save) writes it as each layer's
    /// `<layer>.num_batches_tracked` and [`Network::load`](crate::Network::load) reads it back.
    /// A pass counts once however many threads share its batch. Always 0 for a network without batch norm.
    pub num_batches_tracked: u64,
    /// The generator of dropout masks.
    pub rng: NetRng,
    /// The parameters that training leaves unchanged (none at first); see
    /// [`Transfer`](crate::Transfer).
    pub frozen: super::freeze::Frozen,
}

impl State {
    /// Parameters and buffers filled as their tables say, drawn from `seed`.
    ///
    /// Weights are drawn in declaration order from one Xoshiro256++ stream seeded with `seed`;
    /// see [`Init`] for the schemes. Dropout's generator is seeded from the same seed. No batch
    /// has been tracked yet.
    ///
    /// # Panics
    /// When [`State::try_init`] fails.
    pub fn init(params: &'static [ParamInfo], buffers: &'static [ParamInfo], seed: u64) -> State {
        State::try_init(params, buffers, seed).unwrap_or_else(|e| panic!("State::init: {e}"))
    }

    /// [`State::init`], or an error instead of an abort when the memory cannot be had.
    ///
    /// # Errors
    /// As [`ParamStore::try_zeros`], for the parameters or the buffers.
    pub fn try_init(
        params: &'static [ParamInfo],
        buffers: &'static [ParamInfo],
        seed: u64,
    ) -> Result<State> {
        let mut rng = NetRng::seed_from_u64(seed);
        let mut p = ParamStore::try_zeros(params)?;
        let mut b = ParamStore::try_zeros(buffers)?;
        fill(&mut p, &mut rng);
        fill(&mut b, &mut rng);
        Ok(State {
            params: p,
            buffers: b,
            num_batches_tracked: 0,
            rng: NetRng::seed_from_u64(seed ^ 0xD00D_5EED),
            frozen: Default::default(),
        })
    }
}

/// [`Error::NonFinite`](crate::Error::NonFinite) for the first NaN or infinite value among the
/// parameters, then the buffers, of `state`; `what` describes the tensor from its name.
pub(crate) fn check_finite(state: &State, what: &dyn Fn(&str) -> String) -> Result<()> {
    for store in [&state.params, &state.buffers] {
        let values = store.as_slice();
        if let Some(at) = crate::limits::first_non_finite(values) {
            let info = store
                .table()
                .iter()
                .find(|p| (p.offset..p.offset + p.len).contains(&at))
                .expect("the table covers the store");
            return Err(crate::Error::NonFinite {
                what: what(info.name),
                index: at - info.offset,
                value: values[at],
                help: "; the network diverged or was given such values, and nothing was written",
            });
        }
    }
    Ok(())
}

fn fill(store: &mut ParamStore, rng: &mut NetRng) {
    use rand::Rng;
    for (info, mut view) in store.iter_mut() {
        let bound = match info.init {
            Init::Zeros => {
                view.fill(0.0);
                continue;
            }
            Init::Ones => {
                view.fill(1.0);
                continue;
            }
            Init::HeUniform { fan_in } => (6.0 / fan_in.max(1) as f64).sqrt(),
            Init::GlorotUniform { fan_in, fan_out } => {
                (6.0 / (fan_in + fan_out).max(1) as f64).sqrt()
            }
            Init::RecurrentUniform { hidden } => 1.0 / (hidden.max(1) as f64).sqrt(),
            Init::StandardNormal => {
                // Box and Muller: two uniforms in (0, 1] give a standard normal value.
                view.mapv_inplace(|_| {
                    let u: f64 = 1.0 - rng.random::<f64>();
                    let v: f64 = rng.random();
                    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
                });
                continue;
            }
        } as f32;
        view.mapv_inplace(|_| rng.random_range(-bound..=bound));
    }
}

/// One parameter or buffer, as [`Network::visit`](crate::Network::visit) shows it.
#[derive(Debug)]
pub struct Tensor<'a> {
    /// Its name and shape.
    pub info: &'static ParamInfo,
    /// True for a learnable parameter, false for a buffer (running statistics).
    pub learnable: bool,
    /// Its values.
    pub values: ArrayViewD<'a, f32>,
}

/// One parameter or buffer, as [`Network::visit_mut`](crate::Network::visit_mut) shows it.
#[derive(Debug)]
pub struct TensorMut<'a> {
    /// Its name and shape.
    pub info: &'static ParamInfo,
    /// True for a learnable parameter, false for a buffer (running statistics).
    pub learnable: bool,
    /// Its values, mutably.
    pub values: ArrayViewMutD<'a, f32>,
}
