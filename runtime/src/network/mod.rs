//! The trait every `network!` implements, and the types it hands out.

pub(crate) mod checkpoints;
mod freeze;
mod gradients;
mod manifest;
pub(crate) mod nested;
mod partial;
mod sharding;
mod state;
mod transfer;

use std::path::Path;

use ndarray::{Array, Array2, ArrayView, ArrayView2, ArrayViewD, Dimension, IxDyn};

use crate::params::ParamStore;
use crate::scores::{argmax_rows, softmax};
use crate::summary::Summary;
use crate::tables::{ParamInfo, Slot};
use crate::tape::Tape;
use crate::{Error, Result};

#[doc(no_inline)]
pub use crate::tables::{LayerInfo, NetRng, Pass};
pub use freeze::Frozen;
#[doc(hidden)]
pub use freeze::FrozenView;
pub(crate) use freeze::{trainable_table, FrozenSteps};
pub use gradients::Gradients;
pub use manifest::{Manifest, ManifestEntry};
pub use partial::LoadReport;
pub(crate) use state::check_finite;
pub use state::{State, Tensor, TensorMut};
pub use transfer::Transfer;

/// What [`Network::load_with`] checks beyond the tensors' names, shapes and dtypes, which it
/// always checks. [`LoadOptions::new`] checks everything, as [`Network::load`] does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Load a file whose metadata names another network ([`Network::load_unchecked`]).
    pub any_network: bool,
    /// Load NaN and infinite values instead of refusing them with [`Error::NonFinite`].
    pub allow_non_finite: bool,
}

impl LoadOptions {
    /// Every check on: the file must be this network's (or name none) and every value
    /// finite.
    pub fn new() -> LoadOptions {
        LoadOptions::default()
    }

    /// Also load a file whose metadata names another network.
    pub fn any_network(mut self) -> LoadOptions {
        self.any_network = true;
        self
    }

    /// Also load NaN and infinite values (to inspect a run that diverged).
    pub fn allow_non_finite(mut self) -> LoadOptions {
        self.allow_non_finite = true;
        self
    }
}

/// Training or evaluation: dropout is active and batch norm uses batch statistics only in
/// training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Dropout drops, batch norm normalises with batch statistics and updates its running ones.
    Train,
    /// Dropout is the identity, batch norm uses its running statistics.
    Eval,
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
/// on the thread count only, not on timing. Training with `batch_norm` is split too: its
/// kernels exchange per-channel sums between the shards, so its statistics are those of the
/// whole batch. When the threads are busy with another call, a pass runs unsplit.
pub trait Network: Sized + 'static {
    /// `Ix4` for `[N, C, H, W]` input, `Ix2` for `[N, F]`.
    type InputDim: Dimension;
    /// `Ix4` or `Ix2`, after the last layer.
    type OutputDim: Dimension;
    /// The input shape per sample as a type, [`Shape3<C, H, W>`](crate::Shape3) or
    /// [`Shape1<F>`](crate::Shape1): a network used as a layer of another is checked against
    /// it when the outer network compiles.
    type InputShape: Default;
    /// The output shape per sample as a type.
    type OutputShape: Default;

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
    /// Tape storage of each value of the graph (index 0 is the input).
    #[doc(hidden)]
    const TAPE: &'static [Slot];
    /// The gradient buffer of each value during the backward pass (values whose gradients are
    /// never needed at once share one).
    #[doc(hidden)]
    const GRADS: &'static [usize];
    /// The receptive field of one output unit on the input, and the distance between
    /// neighbouring units, along each axis (for a network nested in another).
    #[doc(hidden)]
    const RECEPTIVE: [striate_geometry::Receptive; 2];

    /// For a network whose input is token ids (`input: tokens[T]`), the vocabulary of the
    /// embedding that reads them: every input value must be a whole number in `0..TOKENS`, which
    /// every pass checks ([`Error::TokenOutOfRange`]). 0 for any other input.
    const TOKENS: usize = 0;

    /// How each entry of [`Network::LAYERS`] is written as ONNX (see [`crate::onnx`]).
    #[doc(hidden)]
    const ONNX: &'static [&'static dyn crate::onnx::Export] = &[];

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

    /// The generated backward pass; the output gradient is already on the tape. It skips the
    /// weight gradients of the layers `frozen` covers, and every layer below the lowest one
    /// that learns, unless `input_grad`.
    #[doc(hidden)]
    fn raw_backward(
        params: &[f32],
        d_params: &mut [f32],
        tape: &mut Tape,
        input_grad: bool,
        frozen: FrozenView<'_>,
    );

    /// Reserves, fallibly, what the generated passes over `n` samples grow on the tape beyond
    /// its slots: the kernels' scratch and the tapes of nested networks. Called before every
    /// pass, so that an allocation the system refuses is an error, not an abort, and a warm
    /// tape allocates nothing.
    #[doc(hidden)]
    fn reserve(tape: &mut Tape, n: usize, train: bool) -> Result<()> {
        let _ = (tape, n, train);
        Ok(())
    }

    /// A network with parameters drawn deterministically from `seed`.
    ///
    /// Convolution and linear weights: He-uniform `U(±√(6/fan_in))` when the next activation
    /// is `relu` or `leaky_relu`, Glorot-uniform `U(±√(6/(fan_in+fan_out)))` otherwise. Biases
    /// and batch-norm shifts 0, batch-norm scales 1, running means 0, running variances 1.
    /// The same seed gives the same network on every machine.
    ///
    /// The `network!` macro refuses, at compile time, a network whose parameters cannot be
    /// addressed (more than 2^36 values in all); [`Network::try_init`] is this function for a
    /// network too large for the machine it runs on.
    ///
    /// # Panics
    /// When [`Network::try_init`] fails: the parameters take more than
    /// [`Limits::max_alloc_bytes`](crate::Limits) (16 GiB by default), or the system refuses
    /// the memory. The message names the network, the bound and how to raise it.
    fn init(seed: u64) -> Self {
        Self::try_init(seed).unwrap_or_else(|e| panic!("{}::init: {e}", Self::NAME))
    }

    /// [`Network::init`], with an error instead of a panic when the parameters and buffers
    /// cannot be allocated.
    ///
    /// # Errors
    /// [`Error::Limit`] naming the network when its parameters and buffers take more than
    /// [`Limits::max_alloc_bytes`](crate::Limits) (nothing is allocated then);
    /// [`Error::Allocation`] when the system refuses the memory below that bound.
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    ///
    /// // 2^32 weights: 16 GiB, more than the default bound of 16 GiB with the biases.
    /// network! {
    ///     struct Wide { input: [65536], fc: linear(65536) }
    /// }
    ///
    /// let err = Wide::try_init(0).unwrap_err();
    /// assert!(matches!(err, Error::Limit { name: "max_alloc_bytes", .. }), "{err}");
    /// assert!(err.to_string().starts_with("the parameters of Wide"), "{err}");
    /// ```
    fn try_init(seed: u64) -> Result<Self> {
        let values = crate::compose::table_len(Self::PARAMS)
            .saturating_add(crate::compose::table_len(Self::BUFFERS));
        crate::Limits::global().check_alloc::<f32>(
            || format!("the parameters of {} ({values} values)", Self::NAME),
            values,
        )?;
        Ok(Self::from_state(State::try_init(
            Self::PARAMS,
            Self::BUFFERS,
            seed,
        )?))
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

    /// Zero gradients with this network's parameter names, for its [`Network::backward`]
    /// (another network's backward pass rejects them, naming both networks).
    ///
    /// # Panics
    /// When [`Network::try_gradients`] fails: they would take more than
    /// [`Limits::max_alloc_bytes`](crate::Limits), or the system refuses the memory.
    fn gradients(&self) -> Gradients {
        self.try_gradients()
            .unwrap_or_else(|e| panic!("{}::gradients: {e}", Self::NAME))
    }

    /// [`Network::gradients`], with an error instead of a panic when they cannot be allocated.
    ///
    /// # Errors
    /// [`Error::Limit`] when they would take more than
    /// [`Limits::max_alloc_bytes`](crate::Limits); [`Error::Allocation`] when the system
    /// refuses the memory.
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    ///
    /// network! {
    ///     struct Small { input: [4], fc: linear(2) }
    /// }
    ///
    /// let net = Small::init(0);
    /// let grads = net.try_gradients()?;
    /// assert_eq!(grads.params().len(), Small::NUM_PARAMS);
    /// # Ok::<(), striate::Error>(())
    /// ```
    fn try_gradients(&self) -> Result<Gradients> {
        Gradients::of::<Self>()
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
    ///
    /// A network with a NaN or infinite parameter or buffer (one that diverged) is refused,
    /// with [`Error::NonFinite`] naming the tensor and the index, and an earlier file at `path`
    /// stays as it was: such weights are of no use, and writing them would replace the last
    /// good checkpoint.
    fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        state::check_finite(self.state(), &|name| {
            format!(
                "{}: parameter `{name}` of {} to save",
                path.display(),
                Self::NAME
            )
        })?;
        checkpoints::save(self, path)
    }

    /// Writes the network with its weights as an ONNX model (operator set
    /// [`onnx::OPSET`](crate::onnx::OPSET) = 17), atomically: an earlier file at `path`
    /// stays whole if the export fails.
    ///
    /// The model computes [`Network::forward`] in evaluation mode, for any batch size: its
    /// input is `input`, `[N, ..]` with [`Network::INPUT_SHAPE`] per sample, and its output
    /// `output`. [`crate::onnx`] lists the operator of each layer kind.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written; [`Error::NonFinite`] when a parameter
    /// or buffer is NaN or infinite; [`Error::Export`] when a layer's kind has no ONNX form
    /// yet, or the model would be 2 GiB or more (a protobuf file's limit). Nothing is written
    /// then.
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    ///
    /// network! {
    ///     pub struct LeNet5 {
    ///         input: [1, 28, 28],
    ///         conv1: conv2d(6, kernel = 5, pad = 2), relu, max_pool(2),
    ///         conv2: conv2d(16, kernel = 5), relu, max_pool(2),
    ///         flatten,
    ///         fc1: linear(120), relu,
    ///         fc2: linear(84), relu,
    ///         fc3: linear(10),
    ///     }
    /// }
    ///
    /// let dir = std::env::temp_dir().join(format!("striate-doc-onnx-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("lenet5.onnx");
    /// LeNet5::init(0).export_onnx(&path)?;
    /// // python -c "import onnxruntime as ort, numpy as np; print(ort.InferenceSession('lenet5.onnx')
    /// //     .run(None, {'input': np.zeros((1, 1, 28, 28), np.float32)})[0])"
    /// assert!(std::fs::metadata(&path)?.len() > 4 * 61_706);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn export_onnx(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::onnx::export(self, path.as_ref())
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
    /// A file that [`Network::save`] wrote for another network is refused even when its
    /// tensors have this network's names and shapes, since their values would then be loaded
    /// into layers they were not trained for: `save` records the network's name in the file's
    /// metadata (`"network"`). [`Network::load_unchecked`] skips that check (a network that was
    /// renamed). A file without the entry (PyTorch's) is checked by its tensors alone.
    ///
    /// # Errors
    /// [`Error::Io`] for an unreadable file; [`Error::Format`] when it is not a safetensors
    /// file or its metadata names another network; [`Error::Load`] naming the tensor when
    /// one is missing, has another shape or dtype (a `num_batches_tracked` counter is an
    /// `I64` scalar), or is not the network's, with what the network expects (shape and
    /// dtype) and what the file holds ([`LoadProblem`](crate::LoadProblem)); [`Error::Format`]
    /// when a counter is negative.
    ///
    /// A tensor with a NaN or infinite value is refused ([`Error::NonFinite`], naming the
    /// tensor and the index); [`Network::load_with`] and
    /// [`LoadOptions::allow_non_finite`] accept it.
    fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.load_with(path, LoadOptions::new())
    }

    /// [`Network::load`] without checking which network the file's metadata names: any file
    /// whose tensors have this network's names, shapes and dtypes loads.
    ///
    /// # Errors
    /// As [`Network::load`], except for the network's name.
    fn load_unchecked(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.load_with(path, LoadOptions::new().any_network())
    }

    /// [`Network::load`] with the checks that `options` asks for.
    ///
    /// # Errors
    /// As [`Network::load`], less the checks that `options` turns off.
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    /// use striate::LoadOptions;
    ///
    /// network! {
    ///     struct Tiny { input: [2], fc: linear(1) }
    /// }
    ///
    /// let path = std::env::temp_dir().join(format!("striate-doc-nan-{}.safetensors", std::process::id()));
    /// let weight = [f32::NAN, 1.0];
    /// striate::io::save_tensors(
    ///     &path,
    ///     &[("fc.weight".into(), vec![1, 2], &weight[..]), ("fc.bias".into(), vec![1], &[0.0][..])],
    ///     None,
    /// )?;
    /// let mut net = Tiny::init(0);
    /// let err = net.load(&path).unwrap_err();
    /// assert!(matches!(err, Error::NonFinite { index: 0, .. }), "{err}");
    /// net.load_with(&path, LoadOptions::new().allow_non_finite())?;
    /// assert!(net.params().as_slice()[0].is_nan());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn load_with(&mut self, path: impl AsRef<Path>, options: LoadOptions) -> Result<()> {
        let owner = if options.any_network {
            checkpoints::Owner::Any
        } else {
            checkpoints::Owner::This
        };
        checkpoints::load(self, path.as_ref(), owner, options.allow_non_finite)
    }

    /// Copies every parameter and buffer of `part`, a network used as a layer of this one
    /// under the name `prefix` (`features: LeNetFeatures` is `"features"`), into this
    /// network: train the body on its own, then build a classifier around it and give it the
    /// trained body. All or nothing.
    ///
    /// The book's page on networks inside networks has a tested example (written with the
    /// `striate` crate's `network!`, which this crate's documentation cannot use).
    ///
    /// # Errors
    /// [`Error::UnknownParameter`] when this network has no `<prefix>.<name>` for one of
    /// `part`'s tensors; [`Error::Shape`] when one has another shape. Nothing changes then.
    fn set_part<M: Network>(&mut self, prefix: &str, part: &M) -> Result<()> {
        let pairs = part_pairs::<Self, M>(prefix)?;
        let flipped = pairs.into_iter().map(|(inner, outer, l)| (outer, inner, l));
        copy_pairs(part.state(), self.state_mut(), flipped);
        Ok(())
    }

    /// The network `M` used as a layer of this one under the name `prefix`, as a network of its
    /// own: its parameters and buffers copied out (see [`Network::set_part`]).
    ///
    /// # Errors
    /// As [`Network::set_part`].
    fn part<M: Network>(&self, prefix: &str) -> Result<M> {
        let pairs = part_pairs::<Self, M>(prefix)?;
        let mut part = M::init(0);
        copy_pairs(self.state(), part.state_mut(), pairs.into_iter());
        if !M::BUFFERS.is_empty() {
            part.state_mut().num_batches_tracked = self.state().num_batches_tracked;
        }
        Ok(part)
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

    /// The predicted class of each sample of a batch `[N, ...INPUT_SHAPE]`: the index of its
    /// largest output (the first one on a tie), in evaluation mode. For a classifier, whose
    /// output is one score (logit) per class.
    ///
    /// # Errors
    /// [`Error::Shape`] when the input's per-sample shape is not [`Network::INPUT_SHAPE`], or
    /// when the network's output is not a vector of class scores `[K]`.
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    ///
    /// network! {
    ///     struct Classifier { input: [1, 4, 4], flatten, fc: linear(3) }
    /// }
    ///
    /// let net = Classifier::init(0);
    /// let images = Array4::<f32>::from_shape_fn((5, 1, 4, 4), |(n, _, i, j)| (n + i * j) as f32);
    /// let classes = net.predict(images.view())?;
    /// assert_eq!(classes.len(), 5);
    /// assert!(classes.iter().all(|&class| class < 3));
    ///
    /// // The class with the largest probability.
    /// let probs = net.predict_proba(images.view())?;
    /// assert_eq!(probs.shape(), [5, 3]);
    /// for (row, &class) in probs.rows().into_iter().zip(&classes) {
    ///     assert!(row.iter().all(|&p| p <= row[class]));
    ///     assert!((row.sum() - 1.0).abs() < 1e-5);
    /// }
    /// # Ok::<(), striate::Error>(())
    /// ```
    fn predict(&self, x: ArrayView<'_, f32, Self::InputDim>) -> Result<Vec<usize>> {
        let classes = class_count::<Self>("predict")?;
        let out = self.forward(x)?;
        let logits = out.as_slice().expect("forward's output is contiguous");
        Ok(argmax_rows(logits, classes).collect())
    }

    /// The class probabilities of each sample of a batch `[N, ...INPUT_SHAPE]`: the
    /// [`softmax`] of its outputs, `[N, K]`, in evaluation mode. Each row sums
    /// to 1; its largest entry is the class [`Network::predict`] gives.
    ///
    /// # Errors
    /// As [`Network::predict`].
    fn predict_proba(&self, x: ArrayView<'_, f32, Self::InputDim>) -> Result<Array2<f32>> {
        let classes = class_count::<Self>("predict_proba")?;
        let out = self.forward(x)?;
        let n = out.shape()[0];
        let logits = out.as_slice().expect("forward's output is contiguous");
        let logits =
            ArrayView2::from_shape((n, classes), logits).expect("a classifier's output is [N, K]");
        Ok(softmax(logits))
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
        let n = eval_pass(self, x.into_dyn(), tape, None)?;
        Ok(output_view::<Self>(n, tape.output(Self::LAYERS.len())))
    }

    /// Inference (evaluation mode) on a padded batch of sequences, `lengths[s]` valid steps
    /// in sample `s` (PyTorch's `pack_padded_sequence`): recurrent layers read only the valid
    /// steps (a backward direction starts at the last of them) and give zeros at the padding,
    /// `last` and `final_state` read each sample's last valid step, and the poolings over time
    /// pool the valid steps only. What the padding holds changes nothing.
    ///
    /// # Errors
    /// As [`Network::forward`]; [`Error::Shape`] for a count of lengths that is not the batch
    /// size, [`Error::LengthOutOfRange`] for a length that is not in `1..=T`, and
    /// [`Error::Config`] for a network whose input is not a sequence.
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    /// use striate::ndarray::Array3;
    ///
    /// network! {
    ///     struct Reader { input: [4, 2], rec: gru(3), last, fc: linear(2) }
    /// }
    ///
    /// let net = Reader::init(0);
    /// let mut x = Array3::<f32>::from_elem((2, 4, 2), 0.5);
    /// let padded = net.forward_lengths(x.view(), &[4, 2])?;
    /// // The padding of the second sample is ignored, whatever it holds.
    /// x[[1, 3, 0]] = 100.0;
    /// assert_eq!(net.forward_lengths(x.view(), &[4, 2])?.row(1), padded.row(1));
    /// assert!(net.forward_lengths(x.view(), &[4, 5]).is_err());
    /// # Ok::<(), striate::Error>(())
    /// ```
    fn forward_lengths(
        &self,
        x: ArrayView<'_, f32, Self::InputDim>,
        lengths: &[u32],
    ) -> Result<Array<f32, Self::OutputDim>> {
        let mut tape = Tape::new();
        let n = eval_pass(self, x.into_dyn(), &mut tape, Some(lengths))?;
        Ok(output_array::<Self>(n, tape.take_output()))
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
        let n = tape_pass(self, x.into_dyn(), tape, mode, None)?;
        Ok(output_view::<Self>(n, tape.output(Self::LAYERS.len())))
    }

    /// [`Network::forward_tape`] on a padded batch of sequences, `lengths[s]` valid steps in
    /// sample `s`, as [`Network::forward_lengths`] reads them. The tape keeps the lengths, so
    /// that [`Network::backward`] sends no gradient into the padding.
    ///
    /// # Errors
    /// As [`Network::forward_tape`] and [`Network::forward_lengths`].
    fn forward_tape_lengths<'t>(
        &mut self,
        x: ArrayView<'_, f32, Self::InputDim>,
        lengths: &[u32],
        tape: &'t mut Tape,
        mode: Mode,
    ) -> Result<ArrayView<'t, f32, Self::OutputDim>> {
        let n = tape_pass(self, x.into_dyn(), tape, mode, Some(lengths))?;
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
    /// [`Error::Tape`] when `tape` holds no forward pass of this network, or one recorded by
    /// another instance of it or before its parameters changed;
    /// [`Error::OtherNetworksGradients`] when `grads` were made by another network's
    /// [`Network::gradients`]; [`Error::Shape`]
    /// when `d_out` does not have the output's shape, or `grads` (made by
    /// [`Gradients::zeros`]) have another parameter table; [`Error::Allocation`] or
    /// [`Error::Limit`] when the buffers of a backward pass split over threads, or the input
    /// gradient, cannot be had (nothing is added into `grads` then).
    fn backward(
        &self,
        tape: &mut Tape,
        d_out: ArrayView<'_, f32, Self::OutputDim>,
        grads: &mut Gradients,
    ) -> Result<()> {
        if !tape.is_for::<Self>() {
            return Err(Error::Tape(format!(
                "backward of {} needs a tape filled by its forward_tape or forward_train",
                Self::NAME
            )));
        }
        let (now, recorded) = (self.params().stamp(), tape.params_stamp());
        if recorded != Some(now) {
            let why = match recorded {
                Some(r) if r.same_store(now) => {
                    "before its parameters changed (an optimizer step, a load, or an edit)"
                }
                Some(_) => "by another network of the same type (or a copy of this one)",
                None => "by a forward pass that does not record its parameters",
            };
            return Err(Error::Tape(format!(
                "backward of {} was given a tape recorded {why}; its gradients would be wrong: run forward_train again with these parameters",
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
        grads.check_owner::<Self>()?;
        if grads.params().len() != Self::NUM_PARAMS || grads.params().table() != Self::PARAMS {
            return Err(Error::shape(
                format!("gradients of {}", Self::NAME),
                &[Self::NUM_PARAMS],
                &[grads.params().len()],
            ));
        }
        let d_out = d_out.as_standard_layout();
        let d_out = d_out.as_slice().expect("standard layout is contiguous");
        let state = self.state();
        sharding::backward_pass::<Self>(
            state.params.as_slice(),
            state.frozen.view(),
            tape,
            d_out,
            grads,
            n,
        )?;
        // A frozen layer above one that learns passes its input gradient on, and its kernel
        // computes the weight gradient with it; a frozen parameter's gradient is 0 all the same.
        let d_params = grads.params_mut().as_mut_slice();
        for &(a, b) in state.frozen.ranges() {
            d_params[a..b].fill(0.0);
        }
        Ok(())
    }
}

/// An inference pass (with the lengths of a padded batch, if any) on `tape`; the batch size.
fn eval_pass<N: Network>(
    net: &N,
    x: ArrayViewD<'_, f32>,
    tape: &mut Tape,
    lengths: Option<&[u32]>,
) -> Result<usize> {
    let state = net.state();
    let pass = Pass::Eval {
        buffers: state.buffers.as_slice(),
    };
    sharding::forward_pass::<N>(state.params.as_slice(), pass, tape, x, false, lengths)
}

/// The forward pass of [`Network::forward_tape`] (with the lengths of a padded batch, if any),
/// recorded on `tape`; the batch size.
fn tape_pass<N: Network>(
    net: &mut N,
    x: ArrayViewD<'_, f32>,
    tape: &mut Tape,
    mode: Mode,
    lengths: Option<&[u32]>,
) -> Result<usize> {
    let train = mode == Mode::Train;
    let state = net.state_mut();
    let pass = match mode {
        Mode::Train => Pass::Train {
            buffers: state.buffers.as_mut_slice(),
            rng: &mut state.rng,
            frozen: state.frozen.view(),
        },
        Mode::Eval => Pass::Eval {
            buffers: state.buffers.as_slice(),
        },
    };
    let n = sharding::forward_pass::<N>(state.params.as_slice(), pass, tape, x, train, lengths)?;
    // Counted here, once per call, not in `forward_pass`, which may run a shard per thread.
    if train && uses_batch_statistics::<N>(net.state().frozen.view()) {
        let count = &mut net.state_mut().num_batches_tracked;
        *count = count.saturating_add(1);
    }
    tape.record_params(net.params().stamp());
    Ok(n)
}

/// Checks the lengths of a padded batch of `n` sequences for network `N`: one per sample, each
/// in `1..=T`.
pub(super) fn check_lengths<N: Network>(lengths: &[u32], n: usize) -> Result<()> {
    let steps = match *N::INPUT_SHAPE {
        [t, _] => t,
        [t] if N::TOKENS > 0 => t,
        _ => {
            return Err(Error::Config {
                name: "lengths",
                reason: format!(
                    "the input of {} is {:?}, not a sequence [steps, features] or token ids, so it has no steps to count",
                    N::NAME,
                    N::INPUT_SHAPE
                ),
            })
        }
    };
    if lengths.len() != n {
        return Err(Error::shape(
            format!("lengths of a batch of {}", N::NAME),
            &[n],
            &[lengths.len()],
        ));
    }
    match lengths.iter().position(|&l| l == 0 || l as usize > steps) {
        Some(index) => Err(Error::LengthOutOfRange {
            what: format!("lengths of a batch of {}", N::NAME),
            index,
            length: lengths[index] as usize,
            steps,
        }),
        None => Ok(()),
    }
}

/// `K` for a network whose output is a vector of `K` class scores; otherwise an error saying
/// that `what` needs one.
fn class_count<N: Network>(what: &str) -> Result<usize> {
    match *N::OUTPUT_SHAPE {
        [classes] => Ok(classes),
        ref other => Err(Error::shape(
            format!("output of {} for {what} (one score per class)", N::NAME),
            &[other.iter().product()],
            other,
        )),
    }
}

/// The methods of every network that [`Network`] has as associated functions, so that both
/// `net.summary()` and `Net::summary()` work (the prelude brings it into scope).
///
/// A network that `network!` declares also has `summary()` as an associated function of its
/// own, which is what `Net::summary()` calls.
pub trait NetworkExt: Network {
    /// [`Network::summary`], called on a network: the per-layer table with totals.
    fn summary(&self) -> Summary {
        <Self as Network>::summary()
    }
}

impl<N: Network> NetworkExt for N {}

/// What `{:?}` of a network prints: its name, the sizes of its parameters and buffers and its
/// count of training batches, never the values (which [`Network::params`] shows).
#[doc(hidden)]
pub fn debug_network<N: Network>(net: &N, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    use striate_geometry::Thousands;
    let state = net.state();
    f.debug_struct(N::NAME)
        .field(
            "params",
            &format_args!("{}", Thousands(state.params.len() as u64)),
        )
        .field(
            "buffers",
            &format_args!("{}", Thousands(state.buffers.len() as u64)),
        )
        .field("num_batches_tracked", &state.num_batches_tracked)
        .finish_non_exhaustive()
}

/// The names of `N`'s batch-norm layers: the layers with a `<layer>.running_mean` buffer.
fn batch_norm_layers<N: Network>() -> impl Iterator<Item = &'static str> {
    N::BUFFERS
        .iter()
        .filter_map(|b| b.name.strip_suffix(".running_mean"))
}

/// Whether a training pass of `N` normalises with batch statistics in some batch-norm layer,
/// and so counts in [`State::num_batches_tracked`]: a layer does unless it is frozen and
/// frozen batch norm keeps its running statistics
/// ([`Transfer::freeze_batch_norm_statistics`](crate::Transfer::freeze_batch_norm_statistics)),
/// when, as in PyTorch's evaluation mode, its count stays.
fn uses_batch_statistics<N: Network>(frozen: FrozenView<'_>) -> bool {
    batch_norm_layers::<N>().any(|layer| {
        let param = |suffix: &str| {
            N::PARAMS.iter().find(|p| {
                p.name
                    .strip_suffix(suffix)
                    .and_then(|l| l.strip_suffix('.'))
                    == Some(layer)
            })
        };
        match (param("weight"), param("bias")) {
            (Some(w), Some(b)) => {
                let (start, end) = (
                    w.offset.min(b.offset),
                    (w.offset + w.len).max(b.offset + b.len),
                );
                !frozen.fixes_statistics(start, end)
            }
            _ => true,
        }
    })
}

/// A tensor's entry in a nested network, its entry in the outer one, and whether it is a
/// parameter (else a buffer).
type PartPair = (&'static ParamInfo, &'static ParamInfo, bool);

/// Copies each `(to, from, learnable)` tensor of `from` into `to`.
fn copy_pairs(from: &State, to: &mut State, pairs: impl Iterator<Item = PartPair>) {
    for (dst_info, src_info, learnable) in pairs {
        let (src, dst) = if learnable {
            (&from.params, &mut to.params)
        } else {
            (&from.buffers, &mut to.buffers)
        };
        dst.as_mut_slice()[dst_info.offset..dst_info.offset + dst_info.len]
            .copy_from_slice(&src.as_slice()[src_info.offset..src_info.offset + src_info.len]);
    }
}

/// For each tensor of `M`, the pair with `<prefix>.<name>` in `N`, after checking that every
/// one exists with the same shape.
fn part_pairs<N: Network, M: Network>(prefix: &str) -> Result<Vec<PartPair>> {
    let mut pairs = Vec::new();
    for (inner_table, outer_table, learnable) in [
        (M::PARAMS, N::PARAMS, true),
        (M::BUFFERS, N::BUFFERS, false),
    ] {
        for inner in inner_table {
            let name = format!("{prefix}.{}", inner.name);
            let Some(outer) = outer_table.iter().find(|p| p.name == name) else {
                let known: Vec<&str> = outer_table.iter().map(|p| p.name).collect();
                return Err(Error::UnknownParameter {
                    name,
                    known: known.join(", "),
                });
            };
            if outer.shape != inner.shape {
                return Err(Error::shape(
                    format!("{name} of {}", N::NAME),
                    inner.shape,
                    outer.shape,
                ));
            }
            pairs.push((inner, outer, learnable));
        }
    }
    Ok(pairs)
}

fn batch_shape(n: usize, per_sample: &[usize]) -> Vec<usize> {
    let mut s = Vec::with_capacity(per_sample.len() + 1);
    s.push(n);
    s.extend_from_slice(per_sample);
    s
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
    if N::TOKENS > 0 {
        let what = || format!("input of {}", N::NAME);
        crate::ops::embedding::check_ids_with(what, x.iter().copied(), N::TOKENS)?;
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

pub(crate) fn output_view<'t, N: Network>(
    n: usize,
    out: &'t [f32],
) -> ArrayView<'t, f32, N::OutputDim> {
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
