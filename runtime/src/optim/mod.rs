//! Optimizers, gradient clipping and learning-rate schedules.
//!
//! Every optimizer updates a flat slice of parameters from a slice of gradients of the same
//! length (a network's [`ParamStore`](crate::ParamStore) and its gradients), with the semantics
//! and defaults of the PyTorch optimizer of the same name:
//!
//! | striate | PyTorch | defaults |
//! | --- | --- | --- |
//! | [`Sgd::new(lr)`](Sgd::new) | `torch.optim.SGD` | no momentum, dampening or weight decay |
//! | [`Adam::default()`](Adam) | `torch.optim.Adam` | lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0 |
//! | [`AdamW::default()`](AdamW) | `torch.optim.AdamW` | as Adam, decoupled weight decay 0.01 |
//! | [`RmsProp::default()`](RmsProp) | `torch.optim.RMSprop` | lr 1e-2, alpha 0.99, eps 1e-8, no momentum, not centered |
//!
//! They share the [`Optimizer`] trait, which [`Trainer`](crate::train::Trainer) is generic
//! over, and which names their state (moments, step count) by parameter so that it can be saved
//! and restored. [`clip_grad_norm`] rescales gradients to a maximum global norm, and
//! [`LrSchedule`] gives the learning rate of each epoch, as PyTorch's schedulers do.
//!
//! # Example
//!
//! ```
//! use striate::optim::{Adam, LrSchedule, Optimizer};
//!
//! let base_lr = 0.1;
//! let schedule = LrSchedule::linear(0.1, 1.0, 3).then(3, LrSchedule::cosine(10, 0.0));
//! schedule.validate()?;
//! let mut adam = Adam::new(base_lr);
//! let mut params = vec![0.5_f32; 4];
//! let mut grads = vec![0.0_f32; 4];
//! for epoch in 0..5 {
//!     adam.set_lr(schedule.lr_at(base_lr, epoch));
//!     grads.fill(1.0); // the backward pass would write these
//!     striate::optim::clip_grad_norm(&mut grads, 1.0)?;
//!     adam.step(&mut params, &grads)?;
//! }
//! assert!(params.iter().all(|&w| w < 0.5));
//! assert_eq!(adam.steps(), 5);
//! # Ok::<(), striate::Error>(())
//! ```

mod adam;
mod clip;
mod plateau;
mod rmsprop;
mod schedule;
mod sgd;
mod state;

pub use adam::{Adam, AdamBase, AdamW};
pub use clip::clip_grad_norm;
pub use plateau::{Plateau, PlateauMode, PlateauTracker, ThresholdMode};
pub use rmsprop::RmsProp;
pub use schedule::LrSchedule;
pub use sgd::Sgd;

use crate::{Error, ParamInfo, Result};

/// What every optimizer does: one update of the parameters from their gradients, a learning
/// rate that a schedule may change, and a state (step count and per-parameter buffers) that can
/// be read and restored by parameter name.
///
/// An optimizer fixes the number of parameters at its first step and allocates its buffers
/// then; later steps allocate nothing.
///
/// # Example
///
/// Code generic over the optimizer, as [`Trainer`](crate::train::Trainer) is:
///
/// ```
/// use striate::optim::{AdamW, Optimizer, RmsProp, Sgd};
///
/// /// Minimises w² / 2, whose gradient is w, for `steps` steps.
/// fn minimise(opt: &mut impl Optimizer, steps: usize) -> striate::Result<f32> {
///     let mut w = [1.0_f32];
///     for _ in 0..steps {
///         let grad = w;
///         opt.step(&mut w, &grad)?;
///     }
///     Ok(w[0])
/// }
///
/// assert!(minimise(&mut Sgd::new(0.1), 100)?.abs() < 1e-3);
/// assert!(minimise(&mut AdamW::new(0.1), 200)?.abs() < 1e-2);
/// assert!(minimise(&mut RmsProp::new(0.01), 200)?.abs() < 1e-2);
/// # Ok::<(), striate::Error>(())
/// ```
pub trait Optimizer {
    /// Updates `params` in place from their gradients `grads`.
    ///
    /// # Errors
    ///
    /// - [`Error::Config`] if the settings are invalid (see [`validate`](Optimizer::validate));
    /// - [`Error::Shape`] if `grads` is not as long as `params`, or if `params` is not as long
    ///   as at the first step.
    ///
    /// Nothing is changed when an error is returned.
    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()>;

    /// The learning rate.
    fn lr(&self) -> f32;

    /// The optimizer's name (`"Adam"`, `"Sgd"`, ...), which training checkpoints record so that
    /// a checkpoint of one optimizer is not loaded into another. Defaults to the type's name.
    fn name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

    /// Changes the learning rate for the following steps, keeping the state (as a
    /// learning-rate schedule does).
    fn set_lr(&mut self, lr: f32);

    /// Checks the settings, with PyTorch's rules.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the setting, the valid range and the value found.
    fn validate(&self) -> Result<()>;

    /// Forgets the state (step count, buffers and parameter count), as a new optimizer would.
    fn reset(&mut self);

    /// The number of steps taken since the optimizer was made or reset.
    fn steps(&self) -> u64;

    /// The names of the per-parameter buffers, PyTorch's names in its `state_dict`
    /// (`"exp_avg"`, `"momentum_buffer"`, ...), in the order [`buffers`](Optimizer::buffers)
    /// gives them. They depend on the settings only.
    fn buffer_names(&self) -> &'static [&'static str];

    /// The per-parameter buffers, one value per parameter each, named as in
    /// [`buffer_names`](Optimizer::buffer_names); empty before the first step.
    fn buffers(&self) -> Vec<(&'static str, &[f32])>;

    /// Replaces the state: `steps` steps taken, and `buffers` in the order of
    /// [`buffer_names`](Optimizer::buffer_names), all of one length, which becomes the
    /// parameter count. With `steps` 0 this is [`reset`](Optimizer::reset), and `buffers`
    /// must be empty.
    ///
    /// [`set_state`](Optimizer::set_state) does the same by parameter name.
    ///
    /// # Errors
    ///
    /// [`Error::Shape`] if the number of buffers is not that of `buffer_names` (or not 0 for
    /// 0 steps), or if they differ in length. Nothing is changed when an error is returned.
    fn load_buffers(&mut self, steps: u64, buffers: &[&[f32]]) -> Result<()>;

    /// The state by parameter name: for each buffer and each parameter of `table` (a
    /// network's [`Network::PARAMS`](crate::Network::PARAMS), or
    /// `net.params().table()`), `"<parameter>.<buffer>"` (`"conv1.weight.exp_avg"`) and that
    /// parameter's slice of the buffer. Empty before the first step. The step count is
    /// [`steps`](Optimizer::steps).
    ///
    /// # Errors
    ///
    /// [`Error::Shape`] if the buffers are not as long as the parameters of `table`.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::optim::{Adam, Optimizer};
    /// use striate::{Init, ParamInfo};
    ///
    /// static TABLE: [ParamInfo; 2] = [
    ///     ParamInfo { name: "fc.weight", shape: &[1, 2], offset: 0, len: 2, init: Init::Zeros },
    ///     ParamInfo { name: "fc.bias", shape: &[1], offset: 2, len: 1, init: Init::Zeros },
    /// ];
    /// let mut adam = Adam::default();
    /// adam.step(&mut [1.0, 2.0, 3.0], &[0.5, 0.5, 0.5])?;
    /// let saved: Vec<(String, Vec<f32>)> =
    ///     adam.state(&TABLE)?.into_iter().map(|(name, v)| (name, v.to_vec())).collect();
    /// let names: Vec<&str> = saved.iter().map(|(name, _)| name.as_str()).collect();
    /// assert_eq!(
    ///     names,
    ///     ["fc.weight.exp_avg", "fc.bias.exp_avg", "fc.weight.exp_avg_sq", "fc.bias.exp_avg_sq"]
    /// );
    ///
    /// // Restored into a new optimizer, it goes on exactly as the first would.
    /// let mut restored = Adam::default();
    /// restored.set_state(&TABLE, adam.steps(), &saved)?;
    /// let (mut a, mut b) = ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]);
    /// adam.step(&mut a, &[0.1, 0.2, 0.3])?;
    /// restored.step(&mut b, &[0.1, 0.2, 0.3])?;
    /// assert_eq!(a, b);
    ///
    /// // A name the optimizer does not have is refused, and nothing changes.
    /// let err = restored.set_state(&TABLE, 1, &[("fc.weight.momentum_buffer", vec![0.0; 2])]);
    /// assert!(matches!(err, Err(striate::Error::UnknownParameter { .. })));
    /// assert_eq!(restored.steps(), 2);
    /// # Ok::<(), striate::Error>(())
    /// ```
    fn state(&self, table: &[ParamInfo]) -> Result<Vec<(String, &[f32])>> {
        state::named(self.buffers(), table)
    }

    /// Restores a state that [`state`](Optimizer::state) gave: `steps` steps taken, and one
    /// entry `"<parameter>.<buffer>"` for each parameter of `table` and each of
    /// [`buffer_names`](Optimizer::buffer_names), in any order, with that parameter's number
    /// of values. With `steps` 0 the optimizer is reset and `entries` must be empty.
    ///
    /// # Errors
    ///
    /// Nothing is changed when an error is returned.
    /// - [`Error::UnknownParameter`] for a name that is not one of the expected ones (they are
    ///   listed in the error);
    /// - [`Error::MissingEntry`] when an expected name has no entry;
    /// - [`Error::Shape`] when an entry's length is not its parameter's.
    fn set_state<S: AsRef<str>, V: AsRef<[f32]>>(
        &mut self,
        table: &[ParamInfo],
        steps: u64,
        entries: &[(S, V)],
    ) -> Result<()>
    where
        Self: Sized,
    {
        let names = if steps == 0 {
            &[][..]
        } else {
            self.buffer_names()
        };
        let flat = state::unnamed(names, table, entries)?;
        let refs: Vec<&[f32]> = flat.iter().map(Vec::as_slice).collect();
        self.load_buffers(steps, &refs)
    }
}

/// `Ok` if `value` is finite and at least 0 (NaN fails), else an [`Error::Config`] for `name`.
fn non_negative(name: &'static str, value: f32) -> Result<()> {
    // Written so that NaN fails too.
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::Config {
            name,
            reason: format!("expected a finite value of at least 0, found {value}"),
        })
    }
}

/// `Ok` if `value` is in `[0, 1)` (NaN fails), else an [`Error::Config`] for `name`.
fn fraction_below_one(name: &'static str, value: f32) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::Config {
            name,
            reason: format!("expected a value in [0, 1), found {value}"),
        })
    }
}

/// Makes room, fallibly, for an optimizer's state buffers of `len` values each (before its
/// first step changes anything), so that a state too large for the machine is an
/// [`Error::Allocation`] and the step changes nothing.
fn reserve_state<'a>(
    optimizer: &'static str,
    buffers: impl IntoIterator<Item = &'a mut Vec<f32>>,
    len: usize,
) -> Result<()> {
    let what = || format!("the state of {optimizer} for {len} parameters");
    for buffer in buffers {
        if buffer.capacity() < len {
            crate::Limits::global().check_alloc::<f32>(what, len)?;
        }
        crate::limits::reserve_len(buffer, len, what)?;
    }
    Ok(())
}
