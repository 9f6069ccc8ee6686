//! The gradients a backward pass adds into.

use std::any::TypeId;

use ndarray::{ArrayViewD, IxDyn};

use super::{batch_shape, Network};
use crate::params::ParamStore;
use crate::tables::ParamInfo;

/// Gradients of every parameter (under the parameters' own names) and, optionally, of the input.
///
/// Backward passes **add** into it; call [`Gradients::zero`] between steps.
#[derive(Clone, Debug)]
pub struct Gradients {
    params: ParamStore,
    input: Option<Vec<f32>>,
    input_shape: Vec<usize>,
    /// The network they were made for by [`Network::gradients`]: its type, name and full
    /// type name, so that giving them to another network is an error naming both.
    network: Option<(TypeId, &'static str, &'static str)>,
}

impl Gradients {
    /// Zero gradients for a parameter table; the input gradient is not computed.
    pub fn zeros(table: &'static [ParamInfo]) -> Gradients {
        Gradients {
            params: ParamStore::zeros(table),
            input: None,
            input_shape: Vec::new(),
            network: None,
        }
    }

    /// Zero gradients for `N`, which a backward pass of another network rejects by name.
    pub(super) fn of<N: Network>() -> crate::Result<Gradients> {
        let mut g = Gradients {
            params: ParamStore::try_zeros(N::PARAMS)?,
            input: None,
            input_shape: Vec::new(),
            network: None,
        };
        g.network = Some((TypeId::of::<N>(), N::NAME, std::any::type_name::<N>()));
        Ok(g)
    }

    /// Makes room, fallibly, for an input gradient of `len` values, when one is computed.
    pub(super) fn reserve_input(&mut self, len: usize) -> crate::Result<()> {
        match &mut self.input {
            Some(buf) => crate::limits::reserve_len(buf, len, || {
                format!("an input gradient of {len} values")
            }),
            None => Ok(()),
        }
    }

    /// `Err` naming both networks when these gradients were made for a network other than
    /// `N`.
    pub(super) fn check_owner<N: Network>(&self) -> crate::Result<()> {
        let Some((id, name, full)) = self.network else {
            return Ok(());
        };
        if id == TypeId::of::<N>() {
            return Ok(());
        }
        // Two networks of the same name in different modules: their paths tell them apart.
        let (network, other) = if name == N::NAME {
            (std::any::type_name::<N>(), full)
        } else {
            (N::NAME, name)
        };
        Err(crate::Error::OtherNetworksGradients { network, other })
    }

    /// Also compute the gradient with respect to the network's input (costs one more
    /// convolution backward for networks that start with one).
    pub fn with_input(mut self) -> Gradients {
        self.input = Some(Vec::new());
        self
    }

    /// True when the input gradient is computed.
    pub fn wants_input(&self) -> bool {
        self.input.is_some()
    }

    /// The gradient of the parameter called `name`, in that parameter's shape.
    pub fn get(&self, name: &str) -> Option<ArrayViewD<'_, f32>> {
        self.params.get(name)
    }

    /// All parameter gradients, in the same flat layout as the parameters.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// All parameter gradients, mutably.
    pub fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.params
    }

    /// The gradient with respect to the input batch, `[N, ...]`, when asked for with
    /// [`Gradients::with_input`] and after a backward pass.
    pub fn input(&self) -> Option<ArrayViewD<'_, f32>> {
        let data = self.input.as_ref()?;
        if self.input_shape.is_empty() {
            return None;
        }
        ArrayViewD::from_shape(IxDyn(&self.input_shape), data).ok()
    }

    /// Sets every gradient to zero.
    pub fn zero(&mut self) {
        self.params.zero();
        if let Some(v) = &mut self.input {
            v.fill(0.0);
        }
    }

    /// Adds `grad`, the input gradient of a batch of `n` samples of `N`, resizing the buffer
    /// (to zeros) when the batch shape changed.
    pub(super) fn add_input<N: Network>(&mut self, n: usize, grad: &[f32]) {
        let Some(buf) = &mut self.input else { return };
        let same_shape =
            self.input_shape.first() == Some(&n) && self.input_shape[1..] == *N::INPUT_SHAPE;
        if !same_shape || buf.len() != grad.len() {
            buf.clear();
            buf.resize(grad.len(), 0.0);
            self.input_shape = batch_shape(n, N::INPUT_SHAPE);
        }
        for (b, g) in buf.iter_mut().zip(grad) {
            *b += g;
        }
    }
}
