//! Transfer learning on any network: freezing parameters, partial loads and the manifest.

use std::path::Path;

use super::freeze::{self, Frozen};
use super::manifest::Manifest;
use super::partial::{self, LoadReport, Selection};
use super::Network;
use crate::{Error, Result};

/// Freezing, partial loading and the weight-file manifest, for every [`Network`] (the prelude
/// brings it into scope).
///
/// # Freezing
///
/// A frozen parameter never changes in training: the backward pass does not compute its
/// gradient (which stays 0) and stops at the lowest layer that still learns, and the
/// [`Trainer`](crate::train::Trainer)'s optimizer neither updates it nor keeps state for it.
/// Names are a layer (`conv1`), a prefix (`features` or `features.`: a nested network or a
/// block) or one tensor (`fc.bias`); [`Transfer::freeze_first`] freezes the first layers with
/// parameters.
///
/// By default, batch norm in a frozen part still normalises a training batch with the batch's
/// statistics and updates its running statistics, as PyTorch does for parameters with
/// `requires_grad = False` while the module trains. [`Transfer::freeze_batch_norm_statistics`]
/// keeps it in evaluation mode instead, as fine-tuning on little data usually wants (and as
/// Keras does for a layer with `trainable = False`): it normalises with its running statistics,
/// which stay as they are, and its backward pass treats them as constants.
///
/// # Example
/// ```
/// use striate::prelude::*;
///
/// network! {
///     struct Net { input: [1, 6, 6], conv: conv2d(2, kernel = 3), relu, flatten, fc: linear(3) }
/// }
///
/// let mut net = Net::init(0);
/// net.freeze("conv")?;
/// let before = net.params().get("conv.weight").unwrap().to_owned();
/// let x = Array4::<f32>::from_shape_fn((4, 1, 6, 6), |(n, _, i, j)| (n + i * j) as f32 / 10.0);
/// let mut trainer = Trainer::new(&mut net, Sgd::new(0.1));
/// trainer.step(x.view(), &[0, 1, 2, 0])?;
/// assert_eq!(net.params().get("conv.weight").unwrap(), before);
///
/// let err = net.freeze("cnov").unwrap_err();
/// assert!(err.to_string().contains("the closest names are: conv"), "{err}");
/// # Ok::<(), striate::Error>(())
/// ```
pub trait Transfer: Network {
    /// The tensors this network's weight file holds, as a constant; see [`Manifest`].
    const MANIFEST: Manifest = Manifest {
        network: Self::NAME,
        params: Self::PARAMS,
        buffers: Self::BUFFERS,
    };

    /// Freezes the parameters that `name` selects (a layer, a prefix or one tensor); returns
    /// how many tensors it selects.
    ///
    /// # Errors
    /// [`Error::UnknownName`] listing the closest names when it selects none; nothing changes.
    fn freeze(&mut self, name: &str) -> Result<usize> {
        set_frozen(self, name, true)
    }

    /// Lets the parameters that `name` selects learn again.
    ///
    /// # Errors
    /// As [`Transfer::freeze`].
    fn unfreeze(&mut self, name: &str) -> Result<usize> {
        set_frozen(self, name, false)
    }

    /// Freezes the first `n` layers with parameters, in the order they run (through nested
    /// networks: `features.conv1` and `features.conv2` are two), as "bottom n layers frozen".
    ///
    /// # Errors
    /// [`Error::Config`] when the network has fewer such layers, naming them; nothing changes.
    fn freeze_first(&mut self, n: usize) -> Result<()> {
        let layers = param_layers::<Self>();
        if n > layers.len() {
            return Err(Error::Config {
                name: "freeze_first",
                reason: format!(
                    "{} has {} layers with parameters ({}), not {n}",
                    Self::NAME,
                    layers.len(),
                    layers.join(", ")
                ),
            });
        }
        for layer in &layers[..n] {
            self.freeze(layer)?;
        }
        Ok(())
    }

    /// Whether batch norm whose parameters are frozen keeps its running statistics fixed
    /// and normalises with them in training too (`true`), or trains as an unfrozen one does,
    /// with batch statistics (`false`, the default, as PyTorch).
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    ///
    /// network! {
    ///     struct Net { input: [2, 4, 4], conv: conv2d(3, kernel = 3), bn: batch_norm, relu, flatten, fc: linear(2) }
    /// }
    ///
    /// let mut net = Net::init(0);
    /// net.freeze("bn")?;
    /// net.freeze_batch_norm_statistics(true);
    /// let x = Array4::<f32>::from_shape_fn((3, 2, 4, 4), |(n, c, i, j)| (n + c + i * j) as f32);
    /// let mut tape = Tape::new();
    /// net.forward_train(x.view(), &mut tape)?;
    /// assert_eq!(net.buffers().get("bn.running_mean").unwrap().sum(), 0.0);
    /// # Ok::<(), striate::Error>(())
    /// ```
    fn freeze_batch_norm_statistics(&mut self, fixed: bool) {
        self.state_mut().frozen.set_batch_norm_eval(fixed);
    }

    /// One update by `opt` of the parameters that are not frozen, from `grads`, for a training
    /// loop written by hand (the [`Trainer`](crate::train::Trainer) does this itself): the
    /// optimizer sees, and keeps state for, the trainable values only, so that weight decay
    /// does not move a frozen parameter either. Use one optimizer per frozen set: its state
    /// has one value per trainable parameter. When the trainable values are not contiguous
    /// they are gathered into a buffer of this call's own.
    ///
    /// # Errors
    /// As [`Optimizer::step`](crate::optim::Optimizer::step).
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    ///
    /// network! {
    ///     struct Two { input: [3], fc1: linear(4), relu, fc2: linear(2) }
    /// }
    ///
    /// let mut net = Two::init(0);
    /// net.freeze("fc1")?;
    /// let before = net.params().get("fc1.weight").unwrap().to_owned();
    /// let mut adamw = AdamW::new(0.1); // decoupled weight decay 0.01
    /// let mut grads = net.gradients();
    /// grads.params_mut().as_mut_slice().fill(1.0);
    /// net.step_trainable(&mut adamw, &grads)?;
    /// assert_eq!(net.params().get("fc1.weight").unwrap(), before);
    /// assert_eq!(adamw.buffers()[0].1.len(), 4 * 2 + 2);
    /// # Ok::<(), striate::Error>(())
    /// ```
    fn step_trainable<O: crate::optim::Optimizer>(
        &mut self,
        opt: &mut O,
        grads: &crate::Gradients,
    ) -> Result<()> {
        let state = self.state_mut();
        freeze::step_trainable(
            opt,
            &state.frozen,
            state.params.as_mut_slice(),
            grads.params().as_slice(),
            &mut Vec::new(),
        )
    }

    /// Lets every parameter learn.
    fn unfreeze_all(&mut self) {
        let frozen = &mut self.state_mut().frozen;
        for i in 0..Self::PARAMS.len() {
            frozen.set(Self::PARAMS, i, false);
        }
    }

    /// Which parameters are frozen.
    fn frozen(&self) -> &Frozen {
        &self.state().frozen
    }

    /// The names of the frozen tensors, in table order.
    fn frozen_names(&self) -> Vec<&'static str> {
        let frozen = self.frozen();
        (Self::PARAMS.iter().enumerate())
            .filter(|(i, _)| frozen.is_frozen(*i))
            .map(|(_, p)| p.name)
            .collect()
    }

    /// Loads only the tensors under `prefix` (a layer, block or nested network), each from
    /// the file's tensor of the same name; the file's other tensors are not read into the
    /// network. Every tensor under `prefix` must be in the file. Any network's file is
    /// accepted.
    ///
    /// # Errors
    /// As [`Transfer::load_renamed`].
    fn load_prefix(&mut self, path: impl AsRef<Path>, prefix: &str) -> Result<LoadReport> {
        self.load_renamed(path, prefix, prefix)
    }

    /// Loads the network's tensors under `to` from the file's under `from`, the rest of each
    /// name the same: `load_renamed(path, "", "features")` reads `conv1.weight` of a file saved
    /// by `LeNet5` into `features.conv1.weight`. Every tensor under `to` must be in the file;
    /// the file's other tensors are reported as unused. Any network's file is accepted.
    ///
    /// # Errors
    /// [`Error::UnknownName`] when the network has nothing under `to`; [`Error::Load`] naming
    /// the tensor, the expected shape and dtype and what the file holds, when one is missing or
    /// differs; [`Error::NonFinite`] for a NaN or infinite value; [`Error::Io`] and
    /// [`Error::Format`] for a file that cannot be read. Nothing is loaded then.
    fn load_renamed(&mut self, path: impl AsRef<Path>, from: &str, to: &str) -> Result<LoadReport> {
        let selection = Selection {
            from,
            to,
            require_all: true,
        };
        partial::load(self, path.as_ref(), selection)
    }

    /// Loads a pretrained network `M`'s file into the part of this network under `prefix`
    /// (where `M`, or a network with `M`'s first layers, is nested): its tensors are checked
    /// against `M`'s [`Transfer::MANIFEST`] first, then the part gets those it has, and the
    /// head of `M` (the tensors the part lacks) is reported unused. One call replaces the head
    /// of a pretrained network.
    ///
    /// # Errors
    /// As [`Manifest::check`] for `M`, then as [`Transfer::load_renamed`].
    fn load_pretrained<M: Network>(
        &mut self,
        path: impl AsRef<Path>,
        prefix: &str,
    ) -> Result<LoadReport> {
        let path = path.as_ref();
        M::MANIFEST.check(path)?;
        self.load_renamed(path, "", prefix)
    }

    /// Loads every tensor the file and the network share, and reports exactly which were
    /// loaded, which of the network's are not in the file (they keep their values) and which
    /// of the file's the network lacks. Any network's file is accepted.
    ///
    /// # Errors
    /// As [`Transfer::load_renamed`], except that a missing tensor is reported, not an error:
    /// a shared tensor with another shape or dtype is still [`Error::Load`].
    fn load_non_strict(&mut self, path: impl AsRef<Path>) -> Result<LoadReport> {
        let selection = Selection {
            from: "",
            to: "",
            require_all: false,
        };
        partial::load(self, path.as_ref(), selection)
    }
}

impl<N: Network> Transfer for N {}

fn set_frozen<N: Network>(net: &mut N, name: &str, frozen: bool) -> Result<usize> {
    let chosen = freeze::select(N::NAME, N::PARAMS, name)?;
    let set = &mut net.state_mut().frozen;
    for &i in &chosen {
        set.set(N::PARAMS, i, frozen);
    }
    Ok(chosen.len())
}

/// The layers with parameters, in order: the names of `N`'s parameters without their last
/// part (`features.conv1` of `features.conv1.weight`), each once.
fn param_layers<N: Network>() -> Vec<&'static str> {
    let mut layers: Vec<&'static str> = Vec::new();
    for p in N::PARAMS {
        let layer = p.name.rsplit_once('.').map_or(p.name, |(l, _)| l);
        if !layers.contains(&layer) {
            layers.push(layer);
        }
    }
    layers
}
