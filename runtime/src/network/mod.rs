//! The trait every `network!` implements, and the types it hands out.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array, ArrayView, ArrayViewD, ArrayViewMutD, Dimension, IxDyn};
use rand::{RngCore, SeedableRng};

use crate::io::{LoadedData, TensorData, TypedTensor};
use crate::ops::parallel::{self, SharedMut};
use crate::params::{Init, ParamInfo, ParamStore};
use crate::summary::Summary;
use crate::tape::{Slot, Tape};
use crate::{Error, Result};

/// The random number generator of dropout masks and initialisation.
pub type NetRng = rand_xoshiro::Xoshiro256PlusPlus;

/// Training or evaluation: dropout is active and batch norm uses batch statistics only in
/// training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Dropout drops, batch norm normalises with batch statistics and updates its running ones.
    Train,
    /// Dropout is the identity, batch norm uses its running statistics.
    Eval,
}

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
    },
}

/// Static facts about one layer, computed by the `network!` macro.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// The layer's name, or `""` for an unnamed layer.
    pub name: &'static str,
    /// The layer kind as written: `conv2d`, `max_pool`, `relu`, ...
    pub kind: &'static str,
    /// The layer as declared, e.g. `conv2d(6, kernel = 5, pad = 2)`.
    pub declaration: &'static str,
    /// Output shape per sample: `[C, H, W]` or `[F]`.
    pub output: &'static [usize],
    /// Learnable parameters.
    pub params: usize,
    /// Height and width of the input region one output unit sees. After `flatten`, the whole
    /// input.
    pub receptive_field: [usize; 2],
    /// Multiply-adds per sample (convolutions and linear layers; 0 for the others).
    pub macs: u64,
}

/// A network's learnable parameters, running statistics, count of training batches and dropout
/// generator.
///
/// The `network!` macro's struct wraps one of these; the [`Network`] trait reaches it through
/// [`Network::state`].
#[derive(Clone, Debug)]
pub struct State {
    /// Learnable parameters (`<layer>.weight`, `<layer>.bias`).
    pub params: ParamStore,
    /// Buffers that are not learned (`<layer>.running_mean`, `<layer>.running_var`).
    pub buffers: ParamStore,
    /// Training-mode forward passes of a network with batch norm: what PyTorch keeps in every
    /// batch-norm layer's `num_batches_tracked` buffer. All of a network's batch-norm layers
    /// see the same passes, so one count serves them all; [`Network::save`] writes it as each
    /// layer's `<layer>.num_batches_tracked` and [`Network::load`] reads it back. A pass counts
    /// once however many threads share its batch. Always 0 for a network without batch norm.
    pub num_batches_tracked: u64,
    /// The generator of dropout masks.
    pub rng: NetRng,
}

impl State {
    /// Parameters and buffers filled as their tables say, drawn from `seed`.
    ///
    /// Weights are drawn in declaration order from one Xoshiro256++ stream seeded with `seed`;
    /// see [`Init`] for the schemes. Dropout's generator is seeded from the same seed. No batch
    /// has been tracked yet.
    pub fn init(params: &'static [ParamInfo], buffers: &'static [ParamInfo], seed: u64) -> State {
        let mut rng = NetRng::seed_from_u64(seed);
        let mut p = ParamStore::zeros(params);
        let mut b = ParamStore::zeros(buffers);
        fill(&mut p, &mut rng);
        fill(&mut b, &mut rng);
        State {
            params: p,
            buffers: b,
            num_batches_tracked: 0,
            rng: NetRng::seed_from_u64(seed ^ 0xD00D_5EED),
        }
    }
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
        } as f32;
        view.mapv_inplace(|_| rng.random_range(-bound..=bound));
    }
}

/// One parameter or buffer, as [`Network::visit`] shows it.
#[derive(Debug)]
pub struct Tensor<'a> {
    /// Its name and shape.
    pub info: &'static ParamInfo,
    /// True for a learnable parameter, false for a buffer (running statistics).
    pub learnable: bool,
    /// Its values.
    pub values: ArrayViewD<'a, f32>,
}

/// One parameter or buffer, as [`Network::visit_mut`] shows it.
#[derive(Debug)]
pub struct TensorMut<'a> {
    /// Its name and shape.
    pub info: &'static ParamInfo,
    /// True for a learnable parameter, false for a buffer (running statistics).
    pub learnable: bool,
    /// Its values, mutably.
    pub values: ArrayViewMutD<'a, f32>,
}

/// Gradients of every parameter (under the parameters' own names) and, optionally, of the input.
///
/// Backward passes **add** into it; call [`Gradients::zero`] between steps.
#[derive(Clone, Debug)]
pub struct Gradients {
    params: ParamStore,
    input: Option<Vec<f32>>,
    input_shape: Vec<usize>,
}

impl Gradients {
    /// Zero gradients for a parameter table; the input gradient is not computed.
    pub fn zeros(table: &'static [ParamInfo]) -> Gradients {
        Gradients {
            params: ParamStore::zeros(table),
            input: None,
            input_shape: Vec::new(),
        }
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

    fn add_input<N: Network>(&mut self, n: usize, grad: &[f32]) {
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

/// A network declared with `network!`: its shapes as constants, its parameters, and its
/// forward and backward passes.
///
/// Everything but the items marked hidden is provided; the macro generates the rest.
///
/// # Threads
///
/// With more than one thread ([`crate::ops::parallel::set_threads`]), a batch of at least
/// eight samples is split into one shard per thread, and each thread runs the whole generated
/// forward and backward pass on its own shard (a tape of its own, inside the caller's
/// [`Tape`]); the shards' parameter gradients are then added in shard order. Results depend
/// on the thread count only, not on timing. Training a network with `batch_norm` is not split,
/// since its statistics are over the whole batch; its kernels still use the threads.
pub trait Network: Sized {
    /// `Ix4` for `[N, C, H, W]` input, `Ix2` for `[N, F]`.
    type InputDim: Dimension;
    /// `Ix4` or `Ix2`, after the last layer.
    type OutputDim: Dimension;

    /// The struct's name.
    const NAME: &'static str;
    /// Input shape per sample: `[C, H, W]` or `[F]`.
    const INPUT_SHAPE: &'static [usize];
    /// Output shape per sample.
    const OUTPUT_SHAPE: &'static [usize];
    /// Learnable parameters in all layers.
    const NUM_PARAMS: usize;
    /// One entry per layer, in order.
    const LAYERS: &'static [LayerInfo];
    /// Learnable parameters: names, shapes, offsets.
    const PARAMS: &'static [ParamInfo];
    /// Running statistics: names, shapes, offsets.
    const BUFFERS: &'static [ParamInfo];
    /// Per-layer tape storage (index 0 is the input).
    #[doc(hidden)]
    const TAPE: &'static [Slot];

    /// The network's parameters, buffers and generator.
    fn state(&self) -> &State;
    /// The same, mutably.
    fn state_mut(&mut self) -> &mut State;
    /// A network around `state` (whose tables must be this network's).
    #[doc(hidden)]
    fn from_state(state: State) -> Self;

    /// The generated forward pass over the tape's slots; the input is already in slot 0.
    #[doc(hidden)]
    fn raw_forward(params: &[f32], pass: Pass<'_>, tape: &mut Tape);

    /// The generated backward pass; the output gradient is already on the tape.
    #[doc(hidden)]
    fn raw_backward(params: &[f32], d_params: &mut [f32], tape: &mut Tape, input_grad: bool);

    /// A network with parameters drawn deterministically from `seed`.
    ///
    /// Convolution and linear weights: He-uniform `U(±√(6/fan_in))` when the next activation
    /// is `relu` or `leaky_relu`, Glorot-uniform `U(±√(6/(fan_in+fan_out)))` otherwise. Biases
    /// and batch-norm shifts 0, batch-norm scales 1, running means 0, running variances 1.
    /// The same seed gives the same network on every machine.
    fn init(seed: u64) -> Self {
        Self::from_state(State::init(Self::PARAMS, Self::BUFFERS, seed))
    }

    /// The per-layer table (Keras-style) with totals; print it with `{}`.
    fn summary() -> Summary {
        Summary::new(Self::NAME, Self::INPUT_SHAPE, Self::LAYERS)
    }

    /// Learnable parameters.
    fn params(&self) -> &ParamStore {
        &self.state().params
    }

    /// Learnable parameters, mutably (for optimizers and loading weights).
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.state_mut().params
    }

    /// Running statistics.
    fn buffers(&self) -> &ParamStore {
        &self.state().buffers
    }

    /// Running statistics, mutably.
    fn buffers_mut(&mut self) -> &mut ParamStore {
        &mut self.state_mut().buffers
    }

    /// Zero gradients with this network's parameter names.
    fn gradients(&self) -> Gradients {
        Gradients::zeros(Self::PARAMS)
    }

    /// Every parameter, then every buffer, by name.
    fn visit(&self, mut f: impl FnMut(Tensor<'_>)) {
        let state = self.state();
        for (info, values) in state.params.iter() {
            f(Tensor {
                info,
                learnable: true,
                values,
            });
        }
        for (info, values) in state.buffers.iter() {
            f(Tensor {
                info,
                learnable: false,
                values,
            });
        }
    }

    /// Every parameter, then every buffer, by name, mutably.
    fn visit_mut(&mut self, mut f: impl FnMut(TensorMut<'_>)) {
        let state = self.state_mut();
        for (info, values) in state.params.iter_mut() {
            f(TensorMut {
                info,
                learnable: true,
                values,
            });
        }
        for (info, values) in state.buffers.iter_mut() {
            f(TensorMut {
                info,
                learnable: false,
                values,
            });
        }
    }

    /// Writes every parameter and buffer, under its PyTorch name, to a safetensors file,
    /// atomically (an earlier file at `path` stays whole if the write fails).
    ///
    /// Each batch-norm layer also gets PyTorch's `<layer>.num_batches_tracked`: an `I64`
    /// scalar (shape `[]`) holding [`State::num_batches_tracked`] (at most `i64::MAX`). The file
    /// therefore has exactly the keys of the equivalent PyTorch module's `state_dict`, which
    /// loads it with `load_state_dict(safetensors.torch.load_file(path), strict=True)`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let state = self.state();
        let count = [i64::try_from(state.num_batches_tracked).unwrap_or(i64::MAX)];
        let mut tensors = Vec::new();
        for store in [&state.params, &state.buffers] {
            for info in store.table() {
                let values = &store.as_slice()[info.offset..info.offset + info.len];
                tensors.push((
                    info.name.to_string(),
                    info.shape.to_vec(),
                    TensorData::F32(values),
                ));
            }
        }
        for layer in batch_norm_layers::<Self>() {
            tensors.push((counter_name(layer), Vec::new(), TensorData::I64(&count)));
        }
        let metadata = HashMap::from([
            ("network".to_string(), Self::NAME.to_string()),
            (
                "written_by".to_string(),
                format!("striate {}", env!("CARGO_PKG_VERSION")),
            ),
        ]);
        crate::io::save_typed_tensors(path.as_ref(), &tensors, Some(metadata))
    }

    /// Reads every parameter and buffer from a safetensors file written by [`Network::save`],
    /// or by PyTorch (`safetensors.torch.save_file(model.state_dict(), path)`) from a module
    /// whose attributes carry the same names. Nothing changes unless every tensor is present
    /// with the right shape and dtype.
    ///
    /// Batch norm's `<layer>.num_batches_tracked` counters (`I64`, shape `[]`, or `[1]` as some
    /// writers store a scalar) set [`State::num_batches_tracked`]. They agree in a file saved
    /// from one network or module; should they differ (layers taken from different
    /// checkpoints), the largest is kept, since the network has one count for all its layers.
    /// A file without them (written by striate before it kept the count) sets the count to 0.
    ///
    /// # Errors
    /// [`Error::Io`] for an unreadable file; [`Error::Format`] naming the tensor when one is
    /// missing, has another shape or dtype, or is not the network's, and when a
    /// `num_batches_tracked` counter is not a non-negative `I64` scalar.
    fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut found: HashMap<String, TypedTensor> = crate::io::load_typed_tensors(path)?
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        let mut batches_tracked = 0;
        for layer in batch_norm_layers::<Self>() {
            if let Some(counter) = found.remove(&counter_name(layer)) {
                batches_tracked = batches_tracked.max(read_counter(path, &counter)?);
            }
        }
        let mut ordered = Vec::new();
        for info in Self::PARAMS.iter().chain(Self::BUFFERS) {
            let t = found.remove(info.name).ok_or_else(|| {
                Error::format(
                    path,
                    format!(
                        "missing tensor `{}` of shape {:?} that {} needs",
                        info.name,
                        info.shape,
                        Self::NAME
                    ),
                )
            })?;
            if t.shape != info.shape {
                return Err(Error::format(
                    path,
                    format!(
                        "tensor `{}`: expected shape {:?}, found {:?}",
                        info.name, info.shape, t.shape
                    ),
                ));
            }
            ordered.push(t.into_f32(path)?);
        }
        if let Some(extra) = found.keys().min() {
            return Err(Error::format(
                path,
                format!(
                    "tensor `{extra}` is not a parameter or buffer of {}; it has: {}",
                    Self::NAME,
                    self.params().known_names()
                ),
            ));
        }
        let state = self.state_mut();
        let (np, nb) = (state.params.table().len(), state.buffers.table().len());
        debug_assert_eq!(np + nb, ordered.len());
        let (p, b) = ordered.split_at(np);
        for (t, info) in p.iter().zip(Self::PARAMS) {
            let dst = &mut state.params.as_mut_slice()[info.offset..info.offset + info.len];
            dst.copy_from_slice(&t.data);
        }
        for (t, info) in b.iter().zip(Self::BUFFERS) {
            let dst = &mut state.buffers.as_mut_slice()[info.offset..info.offset + info.len];
            dst.copy_from_slice(&t.data);
        }
        state.num_batches_tracked = batches_tracked;
        Ok(())
    }

    /// Inference (evaluation mode) on a batch of any size: `[N, ...INPUT_SHAPE]` in,
    /// `[N, ...OUTPUT_SHAPE]` out.
    ///
    /// # Errors
    /// [`Error::Shape`] when the input's per-sample shape is not [`Network::INPUT_SHAPE`].
    fn forward(
        &self,
        x: ArrayView<'_, f32, Self::InputDim>,
    ) -> Result<Array<f32, Self::OutputDim>> {
        let mut tape = Tape::new();
        let n = self.infer(x, &mut tape)?.shape()[0];
        Ok(output_array::<Self>(n, tape.take_output()))
    }

    /// Inference (evaluation mode) that reuses `tape`'s buffers: after the first call with a
    /// given batch size, a call allocates nothing. The output lives on the tape.
    ///
    /// # Errors
    /// [`Error::Shape`] when the input's per-sample shape is not [`Network::INPUT_SHAPE`].
    fn infer<'t>(
        &self,
        x: ArrayView<'_, f32, Self::InputDim>,
        tape: &'t mut Tape,
    ) -> Result<ArrayView<'t, f32, Self::OutputDim>> {
        let state = self.state();
        let pass = Pass::Eval {
            buffers: state.buffers.as_slice(),
        };
        let n = forward_pass::<Self>(state.params.as_slice(), pass, tape, x.into_dyn(), false)?;
        Ok(output_view::<Self>(n, tape.output(Self::LAYERS.len())))
    }

    /// A forward pass that records on `tape` what [`Network::backward`] needs, in `mode`;
    /// returns the output, which lives on the tape.
    ///
    /// A training-mode pass of a network with batch norm adds one to
    /// [`State::num_batches_tracked`], as PyTorch's batch norm does, whatever the thread count.
    ///
    /// # Errors
    /// [`Error::Shape`] for a wrong input shape; [`Error::EmptyBatch`] for an empty batch in
    /// training mode (batch statistics need a sample).
    fn forward_tape<'t>(
        &mut self,
        x: ArrayView<'_, f32, Self::InputDim>,
        tape: &'t mut Tape,
        mode: Mode,
    ) -> Result<ArrayView<'t, f32, Self::OutputDim>> {
        let train = mode == Mode::Train;
        let state = self.state_mut();
        let pass = match mode {
            Mode::Train => Pass::Train {
                buffers: state.buffers.as_mut_slice(),
                rng: &mut state.rng,
            },
            Mode::Eval => Pass::Eval {
                buffers: state.buffers.as_slice(),
            },
        };
        let n = forward_pass::<Self>(state.params.as_slice(), pass, tape, x.into_dyn(), train)?;
        // Counted here, once per call, not in `forward_pass`, which may run a shard per thread.
        if train && batch_norm_layers::<Self>().next().is_some() {
            let count = &mut self.state_mut().num_batches_tracked;
            *count = count.saturating_add(1);
        }
        Ok(output_view::<Self>(n, tape.output(Self::LAYERS.len())))
    }

    /// [`Network::forward_tape`] in training mode.
    ///
    /// # Errors
    /// As [`Network::forward_tape`].
    fn forward_train<'t>(
        &mut self,
        x: ArrayView<'_, f32, Self::InputDim>,
        tape: &'t mut Tape,
    ) -> Result<ArrayView<'t, f32, Self::OutputDim>> {
        self.forward_tape(x, tape, Mode::Train)
    }

    /// Back-propagates `d_out` (the loss gradient with respect to the output of the forward
    /// pass recorded on `tape`), **adding** the gradient of every parameter, summed over the
    /// batch, into `grads` (and of the input, if `grads` asks for it).
    ///
    /// # Errors
    /// [`Error::Tape`] when `tape` holds no forward pass of this network; [`Error::Shape`] when
    /// `d_out` does not have the output's shape or `grads` is for another network.
    fn backward(
        &self,
        tape: &mut Tape,
        d_out: ArrayView<'_, f32, Self::OutputDim>,
        grads: &mut Gradients,
    ) -> Result<()> {
        if !tape.is_for(Self::TAPE) {
            return Err(Error::Tape(format!(
                "backward of {} needs a tape filled by its forward_tape or forward_train",
                Self::NAME
            )));
        }
        let n = tape.batch();
        if d_out.shape()[0] != n || &d_out.shape()[1..] != Self::OUTPUT_SHAPE {
            return Err(Error::shape(
                format!("output gradient of {}", Self::NAME),
                &batch_shape(n, Self::OUTPUT_SHAPE),
                d_out.shape(),
            ));
        }
        if grads.params.len() != Self::NUM_PARAMS || grads.params.table() != Self::PARAMS {
            return Err(Error::shape(
                format!("gradients of {}", Self::NAME),
                &[Self::NUM_PARAMS],
                &[grads.params.len()],
            ));
        }
        let d_out = d_out.as_standard_layout();
        let d_out = d_out.as_slice().expect("standard layout is contiguous");
        let want_input = grads.wants_input();
        let params = self.state().params.as_slice();
        if tape.shards() == 1 {
            tape.begin_backward(d_out);
            Self::raw_backward(params, grads.params.as_mut_slice(), tape, want_input);
            if want_input {
                grads.add_input::<Self>(n, tape.input_grad());
            }
            return Ok(());
        }
        // The batch was split over threads: each shard back-propagates its own samples, shard 0
        // into `grads`, the others into buffers of their own, which are then added in order (so
        // the result depends on the thread count only).
        let shards = tape.shards();
        let parts = tape.shard_backward(Self::NUM_PARAMS);
        let per_out: usize = Self::OUTPUT_SHAPE.iter().product();
        let tapes = SharedMut::new(parts.tapes);
        let extra = SharedMut::new(parts.grads);
        let main = SharedMut::new(grads.params.as_mut_slice());
        parallel::run(shards, |s| {
            let samples = parallel::part(n, shards, s);
            // Safety: task `s` alone touches shard tape `s` and gradient buffer `s` (shard 0:
            // the caller's gradients); `run` returns before any of them is borrowed again.
            let (t, g) = unsafe {
                let t = &mut tapes.slice(s, 1)[0];
                let g: &mut [f32] = if s == 0 {
                    main.slice(0, Self::NUM_PARAMS)
                } else {
                    &mut extra.slice(s - 1, 1)[0]
                };
                (t, g)
            };
            t.begin_backward(&d_out[samples.start * per_out..samples.end * per_out]);
            Self::raw_backward(params, g, t, want_input);
        });
        for g in parts.grads.iter() {
            for (a, b) in grads.params.as_mut_slice().iter_mut().zip(g) {
                *a += b;
            }
        }
        if want_input {
            parts.input_grad.clear();
            for t in parts.tapes.iter() {
                parts.input_grad.extend_from_slice(t.input_grad());
            }
            grads.add_input::<Self>(n, parts.input_grad);
        }
        Ok(())
    }
}

/// The names of `N`'s batch-norm layers: the layers with a `<layer>.running_mean` buffer.
fn batch_norm_layers<N: Network>() -> impl Iterator<Item = &'static str> {
    N::BUFFERS
        .iter()
        .filter_map(|b| b.name.strip_suffix(".running_mean"))
}

/// PyTorch's name for a batch-norm layer's count of training batches.
fn counter_name(layer: &str) -> String {
    format!("{layer}.num_batches_tracked")
}

/// The count a `num_batches_tracked` tensor holds, after checking that it is a non-negative
/// `I64` scalar (shape `[]`, or `[1]`).
fn read_counter(path: &Path, t: &TypedTensor) -> Result<u64> {
    let value = match (&t.data, t.shape.as_slice()) {
        (LoadedData::I64(values), [] | [1]) => values.first().copied(),
        _ => None,
    };
    let Some(value) = value else {
        return Err(Error::format(
            path,
            format!(
                "tensor `{}`: expected dtype I64 and shape [] (or [1]), found dtype {} and shape {:?}",
                t.name,
                t.data.dtype(),
                t.shape
            ),
        ));
    };
    u64::try_from(value).map_err(|_| {
        Error::format(
            path,
            format!(
                "tensor `{}`: expected a count of batches, at least 0, found {value}",
                t.name
            ),
        )
    })
}

fn batch_shape(n: usize, per_sample: &[usize]) -> Vec<usize> {
    let mut s = Vec::with_capacity(per_sample.len() + 1);
    s.push(n);
    s.extend_from_slice(per_sample);
    s
}

/// Samples per thread below which a batch is not split.
const MIN_SHARD: usize = 4;

/// How many shards (one per thread) a pass over `n` samples is split into: whole-network data
/// parallelism, which keeps both cores busy through the many small layers of a network like
/// LeNet-5. Training a network with batch norm is not split, as its statistics are over the
/// whole batch.
fn shard_count<N: Network>(n: usize, train: bool) -> usize {
    let threads = parallel::threads();
    if threads <= 1 || (train && !N::BUFFERS.is_empty()) {
        return 1;
    }
    (n / MIN_SHARD).clamp(1, threads)
}

/// Checks the input and runs the generated forward pass on the tape, or on one shard tape per
/// thread; returns the batch size.
fn forward_pass<N: Network>(
    params: &[f32],
    mut pass: Pass<'_>,
    tape: &mut Tape,
    x: ArrayViewD<'_, f32>,
    train: bool,
) -> Result<usize> {
    let n = check_input::<N>(&x, train)?;
    let shards = shard_count::<N>(n, train);
    if shards == 1 {
        tape.prepare(N::TAPE, n, train);
        copy_into(tape.input_mut(), &x);
        N::raw_forward(params, pass, tape);
        return Ok(n);
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout is contiguous");
    let per_in: usize = N::INPUT_SHAPE.iter().product();
    let per_out: usize = N::OUTPUT_SHAPE.iter().product();
    let parts = tape.prepare_shards(N::TAPE, n, train, shards);
    let eval_buffers: &[f32] = match &mut pass {
        Pass::Eval { buffers } => buffers,
        Pass::Train { rng, .. } => {
            // Each shard draws its dropout masks from its own generator, seeded from the
            // network's, so a step depends only on the seed and the thread count.
            for r in parts.rngs.iter_mut() {
                *r = NetRng::seed_from_u64(rng.next_u64());
            }
            &[]
        }
    };
    let tapes = SharedMut::new(parts.tapes);
    let rngs = SharedMut::new(parts.rngs);
    parallel::run(shards, |s| {
        let samples = parallel::part(n, shards, s);
        // Safety: task `s` alone touches shard tape `s` and generator `s`; `run` returns before
        // either is borrowed again.
        let (t, rng) = unsafe { (&mut tapes.slice(s, 1)[0], &mut rngs.slice(s, 1)[0]) };
        t.prepare(N::TAPE, samples.len(), train);
        t.input_mut()
            .copy_from_slice(&xs[samples.start * per_in..samples.end * per_in]);
        let pass = if train {
            // Only networks without buffers are split in training.
            Pass::Train {
                buffers: &mut [],
                rng,
            }
        } else {
            Pass::Eval {
                buffers: eval_buffers,
            }
        };
        N::raw_forward(params, pass, t);
    });
    let last = N::LAYERS.len();
    for (s, t) in parts.tapes.iter().enumerate() {
        let samples = parallel::part(n, shards, s);
        parts.output[samples.start * per_out..samples.end * per_out]
            .copy_from_slice(t.output(last));
    }
    Ok(n)
}

fn copy_into(dst: &mut [f32], x: &ArrayViewD<'_, f32>) {
    match x.as_slice() {
        Some(src) => dst.copy_from_slice(src),
        None => {
            for (d, s) in dst.iter_mut().zip(x.iter()) {
                *d = *s;
            }
        }
    }
}

/// The batch size of `x`, after checking its per-sample shape (and, for training, that it is
/// not empty).
fn check_input<N: Network>(x: &ArrayViewD<'_, f32>, train: bool) -> Result<usize> {
    let n = x.shape().first().copied().unwrap_or(0);
    if &x.shape()[1..] != N::INPUT_SHAPE {
        return Err(Error::shape(
            format!("input of {}", N::NAME),
            &batch_shape(n, N::INPUT_SHAPE),
            x.shape(),
        ));
    }
    if train && n == 0 {
        return Err(Error::EmptyBatch {
            what: format!("training forward pass of {}", N::NAME),
        });
    }
    Ok(n)
}

/// `[n, ...per_sample]` without allocating (ndarray keeps up to four dimensions inline).
fn batch_dims(n: usize, per_sample: &[usize]) -> IxDyn {
    let mut dims = [0usize; 4];
    if per_sample.len() >= dims.len() {
        return IxDyn(&batch_shape(n, per_sample));
    }
    dims[0] = n;
    dims[1..=per_sample.len()].copy_from_slice(per_sample);
    IxDyn(&dims[..=per_sample.len()])
}

fn output_view<'t, N: Network>(n: usize, out: &'t [f32]) -> ArrayView<'t, f32, N::OutputDim> {
    ArrayView::from_shape(batch_dims(n, N::OUTPUT_SHAPE), out)
        .expect("tape output has the network's output shape")
        .into_dimensionality::<N::OutputDim>()
        .expect("OutputDim matches OUTPUT_SHAPE")
}

fn output_array<N: Network>(n: usize, out: Vec<f32>) -> Array<f32, N::OutputDim> {
    Array::from_shape_vec(batch_dims(n, N::OUTPUT_SHAPE), out)
        .expect("tape output has the network's output shape")
        .into_dimensionality::<N::OutputDim>()
        .expect("OutputDim matches OUTPUT_SHAPE")
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, Ix2};
    use safetensors::{Dtype, SafeTensors};

    use super::*;
    use crate::layers::batch_norm_forward;
    use crate::ops::batch_norm::BatchNormGeom;

    /// `input: [2], bn: batch_norm`, written out as `network!` would generate it (forward only).
    struct Norm {
        state: State,
    }

    static PARAMS: [ParamInfo; 2] = [
        ParamInfo {
            name: "bn.weight",
            shape: &[2],
            offset: 0,
            len: 2,
            init: Init::Ones,
        },
        ParamInfo {
            name: "bn.bias",
            shape: &[2],
            offset: 2,
            len: 2,
            init: Init::Zeros,
        },
    ];
    static BUFFERS: [ParamInfo; 2] = [
        ParamInfo {
            name: "bn.running_mean",
            shape: &[2],
            offset: 0,
            len: 2,
            init: Init::Zeros,
        },
        ParamInfo {
            name: "bn.running_var",
            shape: &[2],
            offset: 2,
            len: 2,
            init: Init::Ones,
        },
    ];
    static LAYERS: [LayerInfo; 1] = [LayerInfo {
        name: "bn",
        kind: "batch_norm",
        declaration: "batch_norm",
        output: &[2],
        params: 4,
        receptive_field: [1, 2],
        macs: 0,
    }];
    static TAPE: [Slot; 2] = [
        Slot::act(2),
        Slot {
            act: 2,
            aux_per_sample: 0,
            aux_fixed: 4,
            idx_per_sample: 0,
        },
    ];
    const GEOM: BatchNormGeom = BatchNormGeom {
        c: 2,
        spatial: 1,
        momentum: 0.1,
        eps: 1e-5,
    };

    impl Network for Norm {
        type InputDim = Ix2;
        type OutputDim = Ix2;
        const NAME: &'static str = "Norm";
        const INPUT_SHAPE: &'static [usize] = &[2];
        const OUTPUT_SHAPE: &'static [usize] = &[2];
        const NUM_PARAMS: usize = 4;
        const LAYERS: &'static [LayerInfo] = &LAYERS;
        const PARAMS: &'static [ParamInfo] = &PARAMS;
        const BUFFERS: &'static [ParamInfo] = &BUFFERS;
        const TAPE: &'static [Slot] = &TAPE;

        fn state(&self) -> &State {
            &self.state
        }
        fn state_mut(&mut self) -> &mut State {
            &mut self.state
        }
        fn from_state(state: State) -> Self {
            Norm { state }
        }
        fn raw_forward(params: &[f32], mut pass: Pass<'_>, tape: &mut Tape) {
            let n = tape.batch();
            let (w, b) = params.split_at(2);
            batch_norm_forward(&mut pass, tape.forward_slots(1), w, b, 0, &GEOM, n);
        }
        fn raw_backward(_: &[f32], _: &mut [f32], _: &mut Tape, _: bool) {
            // These tests never go backward.
        }
    }

    /// After three training passes, the file holds `bn.num_batches_tracked` = 3 as PyTorch
    /// has it (an int64 scalar), beside exactly the other keys of
    /// `torch.nn.BatchNorm1d(2).state_dict()`; evaluation passes do not count.
    #[test]
    fn save_writes_the_count_as_pytorch_does() {
        let path = std::env::temp_dir().join(format!(
            "striate-network-count-{}.safetensors",
            std::process::id()
        ));
        let mut net = Norm::init(0);
        let x = Array2::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as f32);
        let mut tape = Tape::new();
        for _ in 0..3 {
            net.forward_train(x.view(), &mut tape).unwrap();
            net.forward_tape(x.view(), &mut tape, Mode::Eval).unwrap();
            net.infer(x.view(), &mut tape).unwrap();
        }
        assert_eq!(net.state().num_batches_tracked, 3);
        net.save(&path).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut names = file.names();
        names.sort();
        assert_eq!(
            names,
            [
                "bn.bias",
                "bn.num_batches_tracked",
                "bn.running_mean",
                "bn.running_var",
                "bn.weight"
            ]
        );
        let counter = file.tensor("bn.num_batches_tracked").unwrap();
        assert_eq!(counter.dtype(), Dtype::I64);
        assert_eq!(counter.shape(), [0usize; 0]);
        assert_eq!(counter.data(), 3i64.to_le_bytes());
        assert_eq!(file.tensor("bn.running_var").unwrap().dtype(), Dtype::F32);
    }
}
