//! The tape: every activation a training forward pass keeps for the backward pass, and the
//! scratch space of the kernels, reused from one step to the next.

use rand::SeedableRng;

use crate::network::NetRng;

/// The storage one layer needs on the tape, per sample unless said otherwise.
///
/// The `network!` macro emits one per layer (plus one for the input, at index 0) as a `const`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Output values per sample (for index 0: input values per sample).
    pub act: usize,
    /// Extra `f32` values per sample (a dropout mask).
    pub aux_per_sample: usize,
    /// Extra `f32` values per batch (batch-norm statistics).
    pub aux_fixed: usize,
    /// `u32` values per sample (max-pooling winners).
    pub idx_per_sample: usize,
}

impl Slot {
    /// A slot that holds only the layer's output.
    pub const fn act(act: usize) -> Slot {
        Slot {
            act,
            aux_per_sample: 0,
            aux_fixed: 0,
            idx_per_sample: 0,
        }
    }
}

/// What the tape was last filled by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Recorded {
    layout: &'static [Slot],
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
/// ```
/// use striate_runtime::Tape;
/// let tape = Tape::new();
/// assert_eq!(tape.batch(), 0);
/// ```
#[derive(Debug, Default)]
pub struct Tape {
    recorded: Option<Recorded>,
    acts: Vec<Vec<f32>>,
    aux: Vec<Vec<f32>>,
    idx: Vec<Vec<u32>>,
    scratch: Vec<f32>,
    grad_out: Vec<f32>,
    grad_in: Vec<f32>,
    /// One tape per thread when a pass is split over the batch.
    shards: Vec<Tape>,
    /// Dropout's generator of each shard, reseeded from the network's every training pass.
    shard_rngs: Vec<NetRng>,
    /// Parameter gradients of shards 1.. (shard 0 adds into the caller's gradients).
    shard_grads: Vec<Vec<f32>>,
}

/// The buffers of a forward pass split over the batch.
pub(crate) struct ShardForward<'a> {
    /// One tape per shard.
    pub tapes: &'a mut [Tape],
    /// One dropout generator per shard.
    pub rngs: &'a mut [NetRng],
    /// The whole batch's output, gathered from the shards.
    pub output: &'a mut [f32],
}

/// The buffers of a backward pass split over the batch.
pub(crate) struct ShardBackward<'a> {
    /// The shard tapes of the forward pass.
    pub tapes: &'a mut [Tape],
    /// Zeroed parameter gradients for shards 1...
    pub grads: &'a mut [Vec<f32>],
    /// The whole batch's input gradient, gathered from the shards.
    pub input_grad: &'a mut Vec<f32>,
}

/// The buffers of one layer during the forward pass.
#[derive(Debug)]
pub struct ForwardSlots<'a> {
    /// The layer's input (the previous layer's output), `n * input len`.
    pub x: &'a [f32],
    /// The layer's output, `n * output len`.
    pub y: &'a mut [f32],
    /// The layer's extra `f32` storage.
    pub aux: &'a mut [f32],
    /// The layer's `u32` storage.
    pub idx: &'a mut [u32],
    /// Kernel workspace shared by all layers.
    pub scratch: &'a mut Vec<f32>,
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
    /// Gradient with respect to the layer's input: zeroed, to be accumulated into.
    pub d_x: &'a mut [f32],
    /// Kernel workspace shared by all layers.
    pub scratch: &'a mut Vec<f32>,
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
            + self.acts.iter().map(f).sum::<usize>()
            + self.aux.iter().map(f).sum::<usize>()
            + self.idx.iter().map(|v| v.capacity() * 4).sum::<usize>()
            + f(&self.scratch)
            + f(&self.grad_out)
            + f(&self.grad_in)
    }

    /// Sizes every buffer for `layout` and batch `n`; called before a forward pass.
    #[doc(hidden)]
    pub fn prepare(&mut self, layout: &'static [Slot], n: usize, train: bool) {
        self.acts.resize_with(layout.len(), Vec::new);
        self.aux.resize_with(layout.len(), Vec::new);
        self.idx.resize_with(layout.len(), Vec::new);
        for (i, slot) in layout.iter().enumerate() {
            self.acts[i].resize(n * slot.act, 0.0);
            self.aux[i].resize(n * slot.aux_per_sample + slot.aux_fixed, 0.0);
            self.idx[i].resize(n * slot.idx_per_sample, 0);
        }
        self.recorded = Some(Recorded {
            layout,
            batch: n,
            train,
            shards: 1,
        });
    }

    /// The number of shard tapes the last forward pass was split over (1: not split).
    pub fn shards(&self) -> usize {
        self.recorded.map_or(1, |r| r.shards)
    }

    /// Prepares a pass of `n` samples split over `k` shard tapes; only the output slot of this
    /// tape is used (to gather the shards' outputs).
    pub(crate) fn prepare_shards(
        &mut self,
        layout: &'static [Slot],
        n: usize,
        train: bool,
        k: usize,
    ) -> ShardForward<'_> {
        self.acts.resize_with(layout.len(), Vec::new);
        let last = layout.len() - 1;
        self.acts[last].resize(n * layout[last].act, 0.0);
        self.shards.resize_with(k.max(self.shards.len()), Tape::new);
        self.shard_rngs
            .resize_with(k.max(self.shard_rngs.len()), || NetRng::seed_from_u64(0));
        self.recorded = Some(Recorded {
            layout,
            batch: n,
            train,
            shards: k,
        });
        ShardForward {
            tapes: &mut self.shards[..k],
            rngs: &mut self.shard_rngs[..k],
            output: &mut self.acts[last],
        }
    }

    /// The shard tapes of the last forward pass, with `params`-long zeroed gradient buffers
    /// for shards 1...
    pub(crate) fn shard_backward(&mut self, params: usize) -> ShardBackward<'_> {
        let k = self.shards();
        if self.shard_grads.len() < k - 1 {
            self.shard_grads.resize_with(k - 1, Vec::new);
        }
        for g in &mut self.shard_grads[..k - 1] {
            g.clear();
            g.resize(params, 0.0);
        }
        ShardBackward {
            tapes: &mut self.shards[..k],
            grads: &mut self.shard_grads[..k - 1],
            input_grad: &mut self.grad_out,
        }
    }

    /// True when the tape was last prepared for `layout`.
    #[doc(hidden)]
    pub fn is_for(&self, layout: &'static [Slot]) -> bool {
        self.recorded
            .is_some_and(|r| std::ptr::eq(r.layout, layout) || r.layout == layout)
    }

    /// The input slot (index 0), to copy a batch into.
    #[doc(hidden)]
    pub fn input_mut(&mut self) -> &mut [f32] {
        &mut self.acts[0]
    }

    /// The output of layer `i` (the last layer's output is the network's output).
    #[doc(hidden)]
    pub fn output(&self, i: usize) -> &[f32] {
        &self.acts[i]
    }

    /// Moves the last layer's output out of the tape (for one-shot inference).
    #[doc(hidden)]
    pub fn take_output(&mut self) -> Vec<f32> {
        self.acts.last_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The buffers of layer `i` (1-based: slot 0 is the input) for the forward pass.
    #[doc(hidden)]
    pub fn forward_slots(&mut self, i: usize) -> ForwardSlots<'_> {
        let (before, after) = self.acts.split_at_mut(i);
        ForwardSlots {
            x: &before[i - 1],
            y: &mut after[0],
            aux: &mut self.aux[i],
            idx: &mut self.idx[i],
            scratch: &mut self.scratch,
        }
    }

    /// Starts a backward pass: the gradient with respect to the last output is `d_out`.
    #[doc(hidden)]
    pub fn begin_backward(&mut self, d_out: &[f32]) {
        self.grad_out.clear();
        self.grad_out.extend_from_slice(d_out);
    }

    /// The buffers of layer `i` for the backward pass; `d_x` comes zeroed.
    #[doc(hidden)]
    pub fn backward_slots(&mut self, i: usize) -> BackwardSlots<'_> {
        let in_len = self.acts[i - 1].len();
        self.grad_in.clear();
        self.grad_in.resize(in_len, 0.0);
        BackwardSlots {
            x: &self.acts[i - 1],
            y: &self.acts[i],
            aux: &self.aux[i],
            idx: &self.idx[i],
            d_y: &self.grad_out,
            d_x: &mut self.grad_in,
            scratch: &mut self.scratch,
        }
    }

    /// Makes the gradient just computed for a layer's input the output gradient of the layer
    /// before it.
    #[doc(hidden)]
    pub fn swap_grads(&mut self) {
        std::mem::swap(&mut self.grad_out, &mut self.grad_in);
    }

    /// After a backward pass: the gradient with respect to the network's input.
    #[doc(hidden)]
    pub fn input_grad(&self) -> &[f32] {
        &self.grad_out
    }
}
