//! The tables the `network!` macro emits as constants (layers, parameters and buffers, tape
//! slots), and the two plain types its generated passes are handed (the pass and its generator).
//!
//! This module imports nothing from the crate: the trait, the tape and the summary read it, so
//! it is the bottom layer of the module graph.

/// The random number generator of dropout masks and initialisation.
pub type NetRng = rand_xoshiro::Xoshiro256PlusPlus;

/// What a forward pass may touch besides the parameters.
#[doc(hidden)]
#[derive(Debug)]
pub enum Pass<'a> {
    /// Inference: buffers are read only.
    Eval {
        /// Running statistics.
        buffers: &'a [f32],
    },
    /// Training: running statistics are updated and dropout draws masks.
    Train {
        /// Running statistics.
        buffers: &'a mut [f32],
        /// Dropout's generator.
        rng: &'a mut NetRng,
        /// The frozen parameters, for batch norm that keeps its statistics when frozen.
        frozen: FrozenView<'a>,
    },
}

/// The frozen ranges as a generated backward pass sees them: those of its own network, whose
/// value 0 is value `base` of the outermost network's store.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FrozenView<'a> {
    ranges: &'a [(usize, usize)],
    base: usize,
    batch_norm_eval: bool,
}

impl<'a> FrozenView<'a> {
    /// Nothing frozen.
    pub const NONE: FrozenView<'static> = FrozenView {
        ranges: &[],
        base: 0,
        batch_norm_eval: false,
    };

    /// The view of sorted, merged frozen ranges `(start, end)` of a parameter store.
    pub fn new(ranges: &'a [(usize, usize)], batch_norm_eval: bool) -> FrozenView<'a> {
        FrozenView {
            ranges,
            base: 0,
            batch_norm_eval,
        }
    }

    /// True when a batch-norm layer whose parameters are `start..end` normalises with its
    /// running statistics and leaves them fixed, in training too: they are frozen, and
    /// frozen batch norm is asked to stay in evaluation mode.
    #[inline]
    pub fn fixes_statistics(&self, start: usize, end: usize) -> bool {
        self.batch_norm_eval && self.covers(start, end)
    }

    /// True when every value in `start..end` is frozen (true for an empty range).
    #[inline]
    pub fn covers(&self, start: usize, end: usize) -> bool {
        if start >= end {
            return true;
        }
        let (a, b) = (self.base + start, self.base + end);
        let i = self.ranges.partition_point(|r| r.1 <= a);
        self.ranges.get(i).is_some_and(|r| r.0 <= a && b <= r.1)
    }

    /// The view of a network nested at value `at` of this one.
    #[inline]
    pub fn shifted(&self, at: usize) -> FrozenView<'a> {
        FrozenView {
            base: self.base + at,
            ..*self
        }
    }
}

/// Static facts about one layer, or one join of a block, computed by the `network!` macro.
///
/// A network is a graph of values: value 0 is its input, and entry `i` of
/// [`Network::LAYERS`](crate::Network::LAYERS) computes value `i + 1` from the values in
/// [`inputs`](LayerInfo::inputs). In a chain, entry `i` reads value `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// The layer's dotted name (`conv1`, `block1.conv1`), or `""` for an unnamed layer; for a
    /// join, the block's name.
    pub name: &'static str,
    /// The layer kind as written: `conv2d`, `max_pool`, `relu`, ...; `add` where a residual
    /// block's branches are summed, `concat` where a concat block's are joined.
    pub kind: &'static str,
    /// The layer as declared, e.g. `conv2d(6, kernel = 5, pad = 2)`; for a join, what it joins
    /// (`body + input`, `body + shortcut`, `a | b`).
    pub declaration: &'static str,
    /// The values it reads: 0 is the network's input, `j` the output of entry `j - 1`.
    pub inputs: &'static [usize],
    /// Output shape per sample: `[C, H, W]` or `[F]`.
    pub output: &'static [usize],
    /// Learnable parameters.
    pub params: usize,
    /// Height and width of the input region one output unit sees. After `flatten`, the whole
    /// input.
    pub receptive_field: [usize; 2],
    /// Multiply-adds per sample (convolutions and linear layers; 0 for the others).
    pub macs: u64,
    /// How many blocks it sits in (0 at the top level), for indented tables.
    pub depth: usize,
    /// Why its output size was rounded down (what was left over was padding or a stride gap,
    /// or `floor = true` asked for it), or `""`.
    pub note: &'static str,
}

/// How a parameter or buffer is filled by [`crate::Network::init`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros (biases, batch-norm shift, running mean).
    Zeros,
    /// All ones (batch-norm scale, running variance).
    Ones,
    /// He (Kaiming) uniform, `U(±√(6/fan_in))`: for weights followed by a ReLU-like activation.
    HeUniform {
        /// Inputs feeding one output unit.
        fan_in: usize,
    },
    /// Glorot (Xavier) uniform, `U(±√(6/(fan_in + fan_out)))`: for weights followed by
    /// `tanh`, `sigmoid` or nothing.
    GlorotUniform {
        /// Inputs feeding one output unit.
        fan_in: usize,
        /// Outputs fed by one input unit.
        fan_out: usize,
    },
    /// PyTorch's start for every weight and bias of `nn.RNN`, `nn.LSTM` and `nn.GRU`,
    /// `U(±1/√hidden)`.
    RecurrentUniform {
        /// Hidden units per direction.
        hidden: usize,
    },
    /// PyTorch's start for `nn.Embedding`'s weight, the standard normal `N(0, 1)`.
    StandardNormal,
}

/// Where one parameter or buffer lives in its [`ParamStore`](crate::ParamStore), and how it is
/// initialised.
///
/// The `network!` macro emits a `const` table of these; names follow PyTorch's `state_dict`
/// (`conv1.weight`, `bn1.running_var`, ...), shapes PyTorch's layouts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamInfo {
    /// `<layer>.<weight|bias|running_mean|running_var>`.
    pub name: &'static str,
    /// PyTorch layout: conv weight `[out, in, kh, kw]`, linear weight `[out, in]`, others `[n]`.
    pub shape: &'static [usize],
    /// Offset of the first value in the flat store.
    pub offset: usize,
    /// Number of values (the product of `shape`).
    pub len: usize,
    /// Initial values.
    pub init: Init,
}

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

/// A network's per-sample shape `[C, H, W]` as a type, for checks between networks: a network
/// used as a layer of another must receive exactly its input shape, and the compiler says so
/// with both shapes (`expected Shape3<6, 14, 14>, found Shape3<16, 5, 5>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape3<const C: usize, const H: usize, const W: usize>;

/// A network's per-sample shape `[T, F]`, a sequence, as a type; see [`Shape3`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape2<const T: usize, const F: usize>;

/// A network's per-sample shape `[F]` as a type; see [`Shape3`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape1<const F: usize>;
