//! The tape: every activation a training forward pass keeps for the backward pass, and the
//! scratch space of the kernels, reused from one step to the next.

use std::any::TypeId;

use rand::SeedableRng;

use crate::limits::reserve_len;
use crate::network::Network;
use crate::ops::batch_norm::Exchange;
use crate::tables::NetRng;
#[doc(no_inline)]
pub use crate::tables::Slot;
use crate::Result;

/// What the tape was last filled by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Recorded {
    /// The network whose forward pass filled it.
    network: TypeId,
    /// The gradient buffer of each value.
    grads: &'static [usize],
    batch: usize,
    train: bool,
    /// 1, or the number of shard tapes the batch was split over (one per thread).
    shards: usize,
}

/// Activations and workspace of one network, kept between its forward and backward passes.
///
/// Make one with [`Tape::new`] and pass it to every training step: its buffers grow to the
/// largest batch seen and are then reused, so a steady-state step allocates nothing.
///
/// The tape holds one activation for each value of the network's graph (its input, and each
/// layer's and each block join's output), and, during a backward pass, one gradient for each
/// value that needs one. Gradients accumulate: a value read by two layers (a residual block's
/// input) receives the sum of both gradients. Values whose gradients are never needed at the
/// same time share a buffer, so a chain of layers needs two gradient buffers in all.
///
/// A tape remembers which network filled it and with how many samples: a backward pass of
/// another network, even one with the same layout, is an error.
///
/// ```
/// use striate::Tape;
/// let tape = Tape::new();
/// assert_eq!(tape.batch(), 0);
/// ```
#[derive(Debug, Default)]
pub struct Tape {
    recorded: Option<Recorded>,
    /// The stamp of the parameters the last forward pass ran with (see `ParamStore`).
    params: Option<crate::params::Stamp>,
    acts: Vec<Vec<f32>>,
    aux: Vec<Vec<f32>>,
    idx: Vec<Vec<u32>>,
    scratch: Vec<f32>,
    /// Gradient buffers, shared by values whose gradients are live at different times.
    grads: Vec<Vec<f32>>,
    /// The whole batch's input gradient, gathered from the shards.
    gathered: Vec<f32>,
    /// One tape per thread when a pass is split over the batch.
    shards: Vec<Tape>,
    /// Dropout's generator of each shard, reseeded from the network's every training pass.
    shard_rngs: Vec<NetRng>,
    /// Parameter gradients of shards 1.. (shard 0 adds into the caller's gradients).
    shard_grads: Vec<Vec<f32>>,
    /// Copies of the running statistics for shards 1.. of a training pass (shard 0 updates
    /// the network's own).
    shard_buffers: Vec<Vec<f32>>,
    /// Where the shards of a training pass exchange batch-norm statistics.
    exchange: Exchange,
    /// One tape for each network nested in this one, in order.
    nested: Vec<Tape>,
    /// The layers with parameters whose weight gradients the last backward pass computed and
    /// skipped.
    weight_grads: WeightGradients,
    /// Each sample's valid steps in a padded batch of sequences, when the pass was given them
    /// (`lengths_given`); kept for the backward pass.
    lengths: Vec<u32>,
    lengths_given: bool,
}

/// How many layers with parameters the last backward pass on a tape computed the weight
/// gradients of, and how many it skipped (frozen layers, see
/// [`Transfer::freeze`](crate::Transfer::freeze)). A layer of a nested network counts as a
/// layer; a pass split over threads counts each layer once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WeightGradients {
    /// Layers whose kernels computed their weight gradients.
    pub computed: usize,
    /// Layers whose weight gradients were not computed.
    pub skipped: usize,
}

/// The buffers of a forward pass split over the batch.
pub(crate) struct ShardForward<'a> {
    /// One tape per shard.
    pub tapes: &'a mut [Tape],
    /// One dropout generator per shard.
    pub rngs: &'a mut [NetRng],
    /// The whole batch's output, gathered from the shards.
    pub output: &'a mut [f32],
    /// Running statistics for shards 1...
    pub buffers: &'a mut [Vec<f32>],
    /// Batch norm's exchange between the shards.
    pub exchange: &'a mut Exchange,
}

/// The buffers of a backward pass split over the batch.
pub(crate) struct ShardBackward<'a> {
    /// The shard tapes of the forward pass.
    pub tapes: &'a mut [Tape],
    /// Zeroed parameter gradients for shards 1...
    pub grads: &'a mut [Vec<f32>],
    /// The whole batch's input gradient, gathered from the shards.
    pub input_grad: &'a mut Vec<f32>,
    /// Batch norm's exchange between the shards.
    pub exchange: &'a mut Exchange,
}

/// The buffers of one layer during the forward pass.
#[derive(Debug)]
pub struct ForwardSlots<'a> {
    /// The layer's input (the value it reads), `n * input len`.
    pub x: &'a [f32],
    /// The layer's output, `n * output len`.
    pub y: &'a mut [f32],
    /// The layer's extra `f32` storage.
    pub aux: &'a mut [f32],
    /// The layer's `u32` storage.
    pub idx: &'a mut [u32],
    /// Kernel workspace shared by all layers.
    pub scratch: &'a mut Vec<f32>,
    /// Each sample's valid steps in a padded batch of sequences, when given.
    pub lengths: Option<&'a [u32]>,
}

/// The buffers of one layer during the backward pass.
#[derive(Debug)]
pub struct BackwardSlots<'a> {
    /// The layer's input as recorded in the forward pass.
    pub x: &'a [f32],
    /// The layer's output as recorded in the forward pass.
    pub y: &'a [f32],
    /// The layer's extra `f32` storage as left by the forward pass.
    pub aux: &'a [f32],
    /// The layer's `u32` storage as left by the forward pass.
    pub idx: &'a [u32],
    /// Gradient of the loss with respect to the layer's output.
    pub d_y: &'a [f32],
    /// Gradient with respect to the layer's input, to be accumulated into (empty when not
    /// asked for).
    pub d_x: &'a mut [f32],
    /// Kernel workspace shared by all layers.
    pub scratch: &'a mut Vec<f32>,
    /// Each sample's valid steps, as the forward pass was given them.
    pub lengths: Option<&'a [u32]>,
}

impl Tape {
    /// An empty tape; it sizes itself on first use.
    pub fn new() -> Tape {
        Tape::default()
    }

    /// The batch size of the last forward pass recorded (0 before any).
    pub fn batch(&self) -> usize {
        self.recorded.map_or(0, |r| r.batch)
    }

    /// True when the last forward pass ran in training mode.
    pub fn is_train(&self) -> bool {
        self.recorded.is_some_and(|r| r.train)
    }

    /// Bytes held by the tape's buffers (capacity, not length).
    pub fn allocated_bytes(&self) -> usize {
        let f = |v: &Vec<f32>| v.capacity() * 4;
        self.shards.iter().map(Tape::allocated_bytes).sum::<usize>()
            + self.shard_grads.iter().map(f).sum::<usize>()
            + self.shard_buffers.iter().map(f).sum::<usize>()
            + self.exchange.allocated_bytes()
            + self.acts.iter().map(f).sum::<usize>()
            + self.aux.iter().map(f).sum::<usize>()
            + self.idx.iter().map(|v| v.capacity() * 4).sum::<usize>()
            + self.grads.iter().map(f).sum::<usize>()
            + self.nested.iter().map(Tape::allocated_bytes).sum::<usize>()
            + f(&self.scratch)
            + f(&self.gathered)
    }

    /// [`Tape::prepare`] after reserving every buffer it sizes, and in training the gradient
    /// buffers of the backward pass, fallibly: the total is checked against
    /// [`Limits::max_alloc_bytes`](crate::Limits) first, and memory is reserved with
    /// `try_reserve`, only where the capacity is short (so a warm tape allocates nothing).
    ///
    /// # Errors
    /// [`Error::Limit`] naming the network and the batch when the buffers would take more
    /// than the bound; [`Error::Allocation`] when the system refuses the memory. The tape's
    /// contents are then unspecified but valid (a later pass sizes it again).
    pub(crate) fn try_prepare<N: Network>(&mut self, n: usize, train: bool) -> Result<()> {
        let what = || format!("the buffers of a pass of {} over {n} samples", N::NAME);
        let layout = N::TAPE;
        let grad_buffers = if train {
            N::GRADS.iter().max().map_or(0, |m| m + 1)
        } else {
            0
        };
        // Saturating: a count that overflows is far above any bound.
        let slots = layout.iter().fold(0usize, |total, slot| {
            let per_sample = slot
                .act
                .saturating_add(slot.aux_per_sample)
                .saturating_add(slot.idx_per_sample);
            total
                .saturating_add(n.saturating_mul(per_sample))
                .saturating_add(slot.aux_fixed)
        });
        let grads = (0..grad_buffers).fold(0usize, |total, b| {
            total.saturating_add(gradient_len::<N>(n, b))
        });
        // f32 and u32 values are four bytes each.
        crate::Limits::global().check_alloc::<f32>(what, slots.saturating_add(grads))?;
        self.acts.resize_with(layout.len(), Vec::new);
        self.aux.resize_with(layout.len(), Vec::new);
        self.idx.resize_with(layout.len(), Vec::new);
        // Within the bound, so none of these products overflows.
        for (i, slot) in layout.iter().enumerate() {
            reserve_len(&mut self.acts[i], n * slot.act, what)?;
            reserve_len(
                &mut self.aux[i],
                n * slot.aux_per_sample + slot.aux_fixed,
                what,
            )?;
            reserve_len(&mut self.idx[i], n * slot.idx_per_sample, what)?;
        }
        if self.grads.len() < grad_buffers {
            self.grads.resize_with(grad_buffers, Vec::new);
        }
        for (b, g) in self.grads.iter_mut().enumerate().take(grad_buffers) {
            reserve_len(g, gradient_len::<N>(n, b), what)?;
        }
        // The kernels' scratch and the tapes of nested networks, as the network declares them.
        N::reserve(self, n, train)?;
        self.prepare::<N>(n, train);
        Ok(())
    }

    /// Reserves `len` values of the kernels' scratch for a pass of `N`, fallibly (checked
    /// against [`Limits::max_alloc_bytes`](crate::Limits) first), so that the kernels, which
    /// grow it to what they need, find the capacity there and allocate nothing. Generated
    /// [`Network::reserve`] calls it.
    ///
    /// # Errors
    /// [`Error::Limit`](crate::Error::Limit) or [`Error::Allocation`](crate::Error::Allocation)
    /// naming the network.
    #[doc(hidden)]
    pub fn reserve_scratch<N: Network>(&mut self, len: usize) -> Result<()> {
        let what = || format!("the kernels' scratch space of a pass of {}", N::NAME);
        crate::Limits::global().check_alloc::<f32>(what, len)?;
        reserve_len(&mut self.scratch, len, what)
    }

    /// Reserves the tape of the `k`-th nested network, `M`, for a pass of `n` samples (its
    /// buffers, gradients, scratch and its own nested tapes), fallibly. Generated
    /// [`Network::reserve`] calls it.
    ///
    /// # Errors
    /// As [`Tape::reserve_scratch`].
    #[doc(hidden)]
    pub fn reserve_nested<M: Network>(&mut self, k: usize, n: usize, train: bool) -> Result<()> {
        if self.nested.len() <= k {
            let what = || format!("the tape of the network nested in {}", M::NAME);
            reserve_len(&mut self.nested, k + 1, what)?;
            self.nested.resize_with(k + 1, Tape::new);
        }
        self.nested[k].try_prepare::<M>(n, train)
    }

    /// Sizes every buffer for network `N` and batch `n`; called before a forward pass.
    #[doc(hidden)]
    pub fn prepare<N: Network>(&mut self, n: usize, train: bool) {
        crate::unoptimized::warn_once();
        self.params = None;
        self.lengths_given = false;
        let layout = N::TAPE;
        self.acts.resize_with(layout.len(), Vec::new);
        self.aux.resize_with(layout.len(), Vec::new);
        self.idx.resize_with(layout.len(), Vec::new);
        for (i, slot) in layout.iter().enumerate() {
            self.acts[i].resize(n * slot.act, 0.0);
            self.aux[i].resize(n * slot.aux_per_sample + slot.aux_fixed, 0.0);
            self.idx[i].resize(n * slot.idx_per_sample, 0);
        }
        let buffers = N::GRADS.iter().max().map_or(0, |m| m + 1);
        if self.grads.len() < buffers {
            self.grads.resize_with(buffers, Vec::new);
        }
        self.recorded = Some(Recorded {
            network: TypeId::of::<N>(),
            grads: N::GRADS,
            batch: n,
            train,
            shards: 1,
        });
    }

    /// The number of shard tapes the last forward pass was split over (1: not split).
    pub fn shards(&self) -> usize {
        self.recorded.map_or(1, |r| r.shards)
    }

    /// Prepares a pass of `n` samples of `N` split over `k` shard tapes; only the output slot
    /// of this tape is used (to gather the shards' outputs).
    ///
    /// # Errors
    /// [`Error::Limit`](crate::Error::Limit) or [`Error::Allocation`](crate::Error::Allocation)
    /// for an output that cannot be had.
    pub(crate) fn prepare_shards<N: Network>(
        &mut self,
        n: usize,
        train: bool,
        k: usize,
    ) -> Result<ShardForward<'_>> {
        let layout = N::TAPE;
        self.acts.resize_with(layout.len(), Vec::new);
        let last = layout.len() - 1;
        let what = || format!("the output of a pass of {} over {n} samples", N::NAME);
        let out = n.saturating_mul(layout[last].act);
        crate::Limits::global().check_alloc::<f32>(what, out)?;
        reserve_len(&mut self.acts[last], out, what)?;
        self.acts[last].resize(out, 0.0);
        self.shards.resize_with(k.max(self.shards.len()), Tape::new);
        self.shard_rngs
            .resize_with(k.max(self.shard_rngs.len()), || NetRng::seed_from_u64(0));
        if self.shard_buffers.len() < k - 1 {
            self.shard_buffers.resize_with(k - 1, Vec::new);
        }
        self.recorded = Some(Recorded {
            network: TypeId::of::<N>(),
            grads: N::GRADS,
            batch: n,
            train,
            shards: k,
        });
        Ok(ShardForward {
            tapes: &mut self.shards[..k],
            rngs: &mut self.shard_rngs[..k],
            output: &mut self.acts[last],
            buffers: &mut self.shard_buffers[..k - 1],
            exchange: &mut self.exchange,
        })
    }

    /// The shard tapes of the last forward pass of `N`, with zeroed gradient buffers of its
    /// parameters for shards 1.., and room for an input gradient of `input_len` values; all
    /// reserved fallibly.
    ///
    /// # Errors
    /// [`Error::Limit`](crate::Error::Limit) or [`Error::Allocation`](crate::Error::Allocation)
    /// when they cannot be had.
    pub(crate) fn shard_backward<N: Network>(
        &mut self,
        input_len: usize,
    ) -> Result<ShardBackward<'_>> {
        let (k, params) = (self.shards(), N::NUM_PARAMS);
        let what = || {
            format!(
                "the gradients of a backward pass of {} split over threads",
                N::NAME
            )
        };
        let total = params.saturating_mul(k - 1).saturating_add(input_len);
        crate::Limits::global().check_alloc::<f32>(what, total)?;
        if self.shard_grads.len() < k - 1 {
            reserve_len(&mut self.shard_grads, k - 1, what)?;
            self.shard_grads.resize_with(k - 1, Vec::new);
        }
        for g in &mut self.shard_grads[..k - 1] {
            reserve_len(g, params, what)?;
            g.clear();
            g.resize(params, 0.0);
        }
        reserve_len(&mut self.gathered, input_len, what)?;
        Ok(ShardBackward {
            tapes: &mut self.shards[..k],
            grads: &mut self.shard_grads[..k - 1],
            input_grad: &mut self.gathered,
            exchange: &mut self.exchange,
        })
    }

    /// Records the stamp of the parameters the forward pass just ran with.
    pub(crate) fn record_params(&mut self, stamp: crate::params::Stamp) {
        self.params = Some(stamp);
    }

    /// The stamp [`Tape::record_params`] recorded, if any.
    pub(crate) fn params_stamp(&self) -> Option<crate::params::Stamp> {
        self.params
    }

    /// True when the tape holds a forward pass of network `N` (and not of another network,
    /// whatever its layout).
    #[doc(hidden)]
    pub fn is_for<N: Network>(&self) -> bool {
        // By type: a constant's address is not unique, so `N::TAPE` may lie elsewhere in
        // another function.
        self.recorded
            .is_some_and(|r| r.network == TypeId::of::<N>())
    }

    /// The input slot (value 0), to copy a batch into.
    #[doc(hidden)]
    pub fn input_mut(&mut self) -> &mut [f32] {
        &mut self.acts[0]
    }

    /// Value `v` (value 0 is the input; the last value is the network's output).
    #[doc(hidden)]
    pub fn output(&self, v: usize) -> &[f32] {
        &self.acts[v]
    }

    /// Moves the last value (the network's output) out of the tape (for one-shot inference).
    #[doc(hidden)]
    pub fn take_output(&mut self) -> Vec<f32> {
        self.acts.last_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The buffers of the layer that computes value `y` from value `x` (`x < y`), for the
    /// forward pass.
    #[doc(hidden)]
    pub fn forward_slots(&mut self, x: usize, y: usize) -> ForwardSlots<'_> {
        let (before, after) = self.acts.split_at_mut(y);
        ForwardSlots {
            x: &before[x],
            y: &mut after[0],
            aux: &mut self.aux[y],
            idx: &mut self.idx[y],
            scratch: &mut self.scratch,
            lengths: self.lengths_given.then_some(&self.lengths[..]),
        }
    }

    /// Value `x` and value `y` (`x < y`), for a join that computes `y` from several values.
    #[doc(hidden)]
    pub fn join_forward(&mut self, x: usize, y: usize) -> (&[f32], &mut [f32]) {
        let (before, after) = self.acts.split_at_mut(y);
        (&before[x], &mut after[0])
    }

    /// The layers whose weight gradients the last backward pass computed and skipped.
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    /// use striate::Transfer;
    ///
    /// network! {
    ///     struct Two { input: [3], fc1: linear(4), relu, fc2: linear(2) }
    /// }
    ///
    /// let mut net = Two::init(0);
    /// net.freeze("fc1")?;
    /// let mut tape = Tape::new();
    /// let x = Array2::<f32>::ones((2, 3));
    /// net.forward_train(x.view(), &mut tape)?;
    /// let mut grads = net.gradients();
    /// net.backward(&mut tape, Array2::ones((2, 2)).view(), &mut grads)?;
    /// assert_eq!((tape.weight_gradients().computed, tape.weight_gradients().skipped), (1, 1));
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn weight_gradients(&self) -> WeightGradients {
        self.weight_grads
    }

    /// Called by the generated backward pass after each layer with parameters: every
    /// parameter gradient from offset `from` of `d_params` on is final. With feature `mpi`,
    /// during the backward pass of a distributed trainer on this tape, the gradient buckets
    /// that covers start their all-reduce; otherwise it does nothing.
    #[doc(hidden)]
    #[inline]
    pub fn gradients_final(&mut self, from: usize, d_params: &[f32]) {
        #[cfg(feature = "mpi")]
        crate::distributed::reducer::gradients_final(self, from, d_params);
        #[cfg(not(feature = "mpi"))]
        let _ = (from, d_params);
    }

    /// Counts one layer with parameters of the backward pass under way.
    #[doc(hidden)]
    #[inline]
    pub fn count_weight_gradient(&mut self, computed: bool) {
        if computed {
            self.weight_grads.computed += 1;
        } else {
            self.weight_grads.skipped += 1;
        }
    }

    /// Adds the counts of a nested network's backward pass.
    pub(crate) fn add_weight_gradients(&mut self, counts: WeightGradients) {
        self.weight_grads.computed += counts.computed;
        self.weight_grads.skipped += counts.skipped;
    }

    /// Sets the counts (of a pass that ran on shard tapes).
    pub(crate) fn set_weight_gradients(&mut self, counts: WeightGradients) {
        self.weight_grads = counts;
    }

    /// Starts a backward pass: the gradient with respect to the last value is `d_out`.
    #[doc(hidden)]
    pub fn begin_backward(&mut self, d_out: &[f32]) {
        self.weight_grads = WeightGradients::default();
        let r = self.recorded.expect("a forward pass was recorded");
        let g = &mut self.grads[r.grads[r.grads.len() - 1]];
        g.clear();
        g.extend_from_slice(d_out);
    }

    /// The buffers of the layer that computed value `y` from value `x`, for the backward pass.
    /// `d_x` is `x`'s gradient, zeroed first when `fresh` (the first gradient it receives), and
    /// empty when `want_dx` is false.
    #[doc(hidden)]
    pub fn backward_slots(
        &mut self,
        x: usize,
        y: usize,
        fresh: bool,
        want_dx: bool,
    ) -> BackwardSlots<'_> {
        let r = self.recorded.expect("a forward pass was recorded");
        let (d_y, d_x): (&[f32], &mut [f32]) = if want_dx {
            grad_pair(&mut self.grads, r.grads, self.acts[x].len(), x, y, fresh)
        } else {
            (&self.grads[r.grads[y]], &mut [])
        };
        BackwardSlots {
            x: &self.acts[x],
            y: &self.acts[y],
            aux: &self.aux[y],
            idx: &self.idx[y],
            d_y,
            d_x,
            scratch: &mut self.scratch,
            lengths: self.lengths_given.then_some(&self.lengths[..]),
        }
    }

    /// Each sample's valid steps that the last forward pass was given, if any.
    pub fn lengths(&self) -> Option<&[u32]> {
        self.lengths_given.then_some(&self.lengths[..])
    }

    /// Records the lengths of the pass being prepared (after [`Tape::prepare`], which clears
    /// them). Allocates only when the batch is larger than any before.
    pub(crate) fn set_lengths(&mut self, lengths: Option<&[u32]>) {
        self.lengths.clear();
        if let Some(l) = lengths {
            self.lengths.extend_from_slice(l);
        }
        self.lengths_given = lengths.is_some();
    }

    /// For a join that computed value `y`: `y`'s gradient and `x`'s (zeroed first when
    /// `fresh`).
    #[doc(hidden)]
    pub fn join_backward(&mut self, x: usize, y: usize, fresh: bool) -> (&[f32], &mut [f32]) {
        let r = self.recorded.expect("a forward pass was recorded");
        grad_pair(&mut self.grads, r.grads, self.acts[x].len(), x, y, fresh)
    }

    /// Value `x`, value `y` and the tape of the `k`-th nested network, for its forward pass.
    #[doc(hidden)]
    pub fn nested_forward_slots(
        &mut self,
        k: usize,
        x: usize,
        y: usize,
    ) -> (&[f32], &mut [f32], &mut Tape) {
        if self.nested.len() <= k {
            self.nested.resize_with(k + 1, Tape::new);
        }
        let (before, after) = self.acts.split_at_mut(y);
        (&before[x], &mut after[0], &mut self.nested[k])
    }

    /// `y`'s gradient, `x`'s (zeroed first when `fresh`; empty unless `want_dx`) and the tape
    /// of the `k`-th nested network, for its backward pass.
    #[doc(hidden)]
    pub fn nested_backward_slots(
        &mut self,
        k: usize,
        x: usize,
        y: usize,
        fresh: bool,
        want_dx: bool,
    ) -> (&[f32], &mut [f32], &mut Tape) {
        let r = self.recorded.expect("a forward pass was recorded");
        let (d_y, d_x): (&[f32], &mut [f32]) = if want_dx {
            grad_pair(&mut self.grads, r.grads, self.acts[x].len(), x, y, fresh)
        } else {
            (&self.grads[r.grads[y]], &mut [])
        };
        (d_y, d_x, &mut self.nested[k])
    }

    /// After a backward pass that asked for it: the gradient with respect to the network's
    /// input.
    #[doc(hidden)]
    pub fn input_grad(&self) -> &[f32] {
        let r = self.recorded.expect("a forward pass was recorded");
        &self.grads[r.grads[0]]
    }
}

/// The gradient buffers of values `y` (read) and `x` (accumulated into) among `grads`, placed
/// by `slots`; when `fresh`, `x`'s gradient starts here and is first zeroed to `x_len` values.
fn grad_pair<'a>(
    grads: &'a mut [Vec<f32>],
    slots: &[usize],
    x_len: usize,
    x: usize,
    y: usize,
    fresh: bool,
) -> (&'a [f32], &'a mut [f32]) {
    let (gx, gy) = (slots[x], slots[y]);
    assert_ne!(gx, gy, "values {x} and {y} share a gradient buffer");
    if fresh {
        let d = &mut grads[gx];
        d.clear();
        d.resize(x_len, 0.0);
    }
    let (lo, hi) = grads.split_at_mut(gx.max(gy));
    if gx < gy {
        (&hi[0], &mut lo[gx])
    } else {
        (&lo[gy], &mut hi[0])
    }
}

/// The length of gradient buffer `buffer` in a backward pass of `N` over `n` samples: the
/// largest value whose gradient it holds (saturating at `usize::MAX`).
fn gradient_len<N: Network>(n: usize, buffer: usize) -> usize {
    N::GRADS
        .iter()
        .zip(N::TAPE)
        .filter(|(&b, _)| b == buffer)
        .map(|(_, slot)| n.saturating_mul(slot.act))
        .max()
        .unwrap_or(0)
}
