#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

/// Declares a network: a struct whose layers' shapes the compiler checks, with its forward and
/// backward passes generated.
///
/// The struct implements [`Network`]. Its shapes and sizes are constants, and a shape mistake
/// is a compile error pointing at the layer, with the arithmetic and a fix that compiles.
///
/// # The language
///
/// ```text
/// network  := attribute* visibility "struct" NAME "{" item ("," item)* ","? "}"
/// item     := "input" ":" "[" dims "]"
///           | (NAME ":")? layer ("->" "[" dims "]")?
/// layer    := KIND ("(" argument ("," argument)* ","? ")")?
///           | "residual" ("(" "shortcut" "=" block ")")? block
///           | "concat" "(" NAME "=" block ("," NAME "=" block)* ")"
///           | NETWORK                          (another network, as a layer)
/// block    := "{" item ("," item)* ","? "}"
/// argument := (NAME "=")? value                value := integer | number | true | false | (h, w)
/// ```
///
/// - **Input**: `input: [C, H, W]` (channels first, no batch dimension), `input: [T, F]` for
///   sequences, `input: [F]` for vectors, or `input: tokens[T]` for token ids (which
///   `embedding(vocab, dim)` reads), first and once.
/// - **Layers**: `conv2d(out_channels, kernel = k, stride = s, pad = p, bias = b, floor = f)`,
///   `max_pool(k, stride = s, pad = p, floor = f)`, `avg_pool(..)` (the same arguments),
///   `linear(out_features, bias = b)`, `relu`, `leaky_relu(slope)`, `tanh`, `sigmoid`,
///   `dropout(p)`, `batch_norm(momentum = m, eps = e)`, `flatten`; for decoders
///   `conv_transpose2d(out_channels, kernel = k, stride = s, pad = p, output_pad = q)`,
///   `upsample(factor, mode = nearest | bilinear)` and `reshape([dims])`. A window, stride or padding
///   is an integer or a pair `(height, width)`.
/// - **Arguments**: the first may go unnamed, the others are named. The input's size is never
///   an argument: each layer takes its channels or features from the layer before
///   (`conv2d(16, kernel = 3, pad = 1)`, not PyTorch's `Conv2d(1, 16, 3, padding=1)`).
/// - **Names**: a layer with parameters is named (`conv1: conv2d(..)`); its parameters are
///   `conv1.weight` and `conv1.bias`, PyTorch's names and layouts, in weight files too.
/// - **Shape hints**: `-> [6, 28, 28]` after a layer or block asserts its output shape per
///   sample; a mismatch is a compile error showing how the size came about.
/// - **Sizes**: every spatial output is `(W + 2P - F)/S + 1`. A size that is not whole is
///   rounded down only when what is left over is padding or a gap the stride skips;
///   otherwise it is an error, unless the layer says `floor = true`.
/// - **Blocks**: `residual { .. }` adds its body's output to its input (through the
///   `shortcut = { .. }` projection when given); `concat(a = { .. }, b = { .. })` runs the
///   branches on the same input and joins their outputs along the channels (`{}` is the input
///   itself). Blocks nest, and the names inside are prefixed (`block1.conv1.weight`).
/// - **Nesting**: a network declared elsewhere is a layer (`features: LeNetFeatures`, or a
///   path such as `self::Features`), checked against the input and output shapes it declares.
///
/// # Example
///
/// ```
/// use striate::prelude::*;
///
/// network! {
///     /// A convolutional body, trainable on its own.
///     pub struct Body {
///         input: [1, 28, 28],
///         conv1: conv2d(8, kernel = 3, pad = 1), relu,
///         max_pool(2) -> [8, 14, 14],
///     }
/// }
///
/// network! {
///     /// The body, a residual block, a concat block and a classifier.
///     pub struct Net {
///         input: [1, 28, 28],
///         body: Body -> [8, 14, 14],
///         block: residual {
///             conv: conv2d(8, kernel = 3, pad = 1), bn: batch_norm, relu,
///         },
///         mix: concat(a = { conv: conv2d(4, kernel = 1) }, b = {}) -> [12, 14, 14],
///         avg_pool(2),
///         flatten,
///         drop: dropout(0.25),
///         fc: linear(10),
///     }
/// }
///
/// assert_eq!(Net::OUTPUT_SHAPE, [10]);
/// assert_eq!(Net::PARAMS[0].name, "body.conv1.weight");
/// assert!(Net::PARAMS.iter().any(|p| p.name == "mix.a.conv.weight"));
/// let net = Net::init(0);
/// let out = net.forward(Array4::<f32>::zeros((2, 1, 28, 28)).view())?;
/// assert_eq!(out.shape(), &[2, 10]);
/// # Ok::<(), striate::Error>(())
/// ```
///
/// The full reference is the book: its pages on the language, blocks, networks inside
/// networks, the generated API and every compile error (`docs/src/` beside this crate's
/// README, listed under [Documentation](crate#documentation)).
pub use striate_macros::network;
/// Data-parallel training over MPI (feature `mpi`).
#[cfg(feature = "mpi")]
pub use striate_runtime::distributed;
pub use striate_runtime::{data, io, onnx, ops, optim, plot, rbm, train, visualize};
pub use striate_runtime::{
    Error, Frozen, Gradients, Init, LayerInfo, Limits, LoadOptions, LoadProblem, LoadReport,
    Manifest, ManifestEntry, Mode, NetRng, Network, NetworkExt, ParamInfo, ParamStore, Result,
    State, Summary, Tape, Tensor, TensorMut, Transfer,
};

// Inlined, so that its items are documented as `striate::geometry::...`.
#[doc(inline)]
pub use striate_runtime::geometry;

// Inlined, so that it is documented as `striate::softmax`.
pub use striate_runtime::softmax;

/// ndarray, re-exported so that generated code and users name the same version.
pub use striate_runtime::ndarray;

// Documented in the modules they come from (`ops::parallel`, `train`); here for short paths.
#[doc(no_inline)]
pub use striate_runtime::ops::parallel::{max_threads, set_threads, threads};
#[doc(no_inline)]
pub use striate_runtime::train::cross_entropy;

// Hidden: the items above give every runtime item one documented path. `runtime` keeps old
// code compiling; `__private` is what the code `network!` generates names; `Pass` and `Slot`
// appear only in the hidden items of `Network`.
#[doc(hidden)]
pub use striate_runtime as runtime;
#[doc(hidden)]
pub use striate_runtime::__generated as __private;
#[doc(hidden)]
pub use striate_runtime::{Pass, Slot};

/// What most programs need: the macro, the trait, data, training and inference, and ndarray's
/// arrays.
///
/// A training step and inference on LeNet-5, with its shapes as constants:
///
/// ```
/// use striate::prelude::*;
///
/// network! {
///     /// LeNet-5 (LeCun et al., 1998) with ReLU and max pooling.
///     pub struct LeNet5 {
///         input: [1, 28, 28],
///         conv1: conv2d(6, kernel = 5, pad = 2) -> [6, 28, 28],
///         relu,
///         max_pool(2),
///         conv2: conv2d(16, kernel = 5),
///         relu,
///         max_pool(2) -> [16, 5, 5],
///         flatten,
///         fc1: linear(120),
///         relu,
///         fc2: linear(84),
///         relu,
///         fc3: linear(10),
///     }
/// }
///
/// // Shapes and sizes are constants.
/// const PARAMS: usize = LeNet5::NUM_PARAMS;
/// assert_eq!(PARAMS, 61_706);
/// assert_eq!(LeNet5::LAYERS[0].receptive_field, [5, 5]);
///
/// // One training step on a batch of 8 random images.
/// let mut net = LeNet5::init(42);
/// let x = Array4::<f32>::from_elem((8, 1, 28, 28), 0.5);
/// let labels = [0, 1, 2, 3, 4, 5, 6, 7];
/// let mut tape = Tape::new();
/// let mut grads = net.gradients();
/// let mut opt = Sgd::new(0.01).momentum(0.9);
/// let logits = net.forward_train(x.view(), &mut tape)?;
/// let (loss, d_logits) = cross_entropy(logits, &labels)?;
/// net.backward(&mut tape, d_logits.view(), &mut grads)?;
/// opt.step(net.params_mut().as_mut_slice(), grads.params().as_slice())?;
/// assert!(loss > 0.0);
///
/// // Inference on a batch of any size; a wrong shape is an error naming both shapes.
/// let out = net.forward(x.view())?;
/// assert_eq!(out.shape(), &[8, 10]);
/// let wrong = Array4::<f32>::zeros((2, 3, 28, 28));
/// assert_eq!(
///     net.forward(wrong.view()).unwrap_err().to_string(),
///     "input of LeNet5: expected shape [2, 1, 28, 28], found [2, 3, 28, 28]"
/// );
/// # Ok::<(), striate::Error>(())
/// ```
pub mod prelude {
    #[doc(no_inline)]
    pub use crate::network;
    #[doc(no_inline)]
    pub use striate_runtime::data::augment::Augmentation;
    pub use striate_runtime::data::{Dataset, Mnist, Normalize};
    #[doc(no_inline)]
    pub use striate_runtime::ndarray::{
        s, Array, Array1, Array2, Array4, ArrayView, ArrayView2, ArrayView4, Axis,
    };
    #[doc(no_inline)]
    pub use striate_runtime::optim::{Adam, AdamW, LrSchedule, Optimizer, RmsProp, Sgd};
    #[doc(no_inline)]
    pub use striate_runtime::rbm::{Cd, CdTrainer, Rbm};
    #[doc(no_inline)]
    pub use striate_runtime::train::{
        evaluate, Callback, Checkpoints, Control, EarlyStopping, EpochEnd, Fit, Loss, Metric,
        SaveBest, Trainer,
    };
    #[doc(no_inline)]
    pub use striate_runtime::{
        cross_entropy, softmax, Error, Gradients, Mode, Network, NetworkExt, Tape, Transfer,
    };
}
