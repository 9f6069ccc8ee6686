#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use striate_macros::network;
pub use striate_runtime::{data, io, ops, optim, train};
pub use striate_runtime::{
    Error, Gradients, Init, LayerInfo, Mode, NetRng, Network, ParamInfo, ParamStore, Result, State,
    Summary, Tape, Tensor, TensorMut,
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
pub use striate_runtime::ops::parallel::{set_threads, threads};
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
        Array, Array1, Array2, Array4, ArrayView, ArrayView2, ArrayView4, Axis,
    };
    #[doc(no_inline)]
    pub use striate_runtime::optim::{LrSchedule, Sgd};
    #[doc(no_inline)]
    pub use striate_runtime::train::{evaluate, Fit, Trainer};
    #[doc(no_inline)]
    pub use striate_runtime::{cross_entropy, softmax, Error, Gradients, Mode, Network, Tape};
}
