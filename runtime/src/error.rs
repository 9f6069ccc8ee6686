//! The one error type of the runtime.

use std::path::PathBuf;

/// Everything that can go wrong at run time: a wrong-shaped array, a bad file, a bad label.
///
/// Every variant names what was expected and what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An array does not have the shape an operation needs.
    #[error("{what}: expected shape {expected:?}, found {found:?}")]
    Shape {
        /// What the array is (`"input of LeNet5"`, `"d_logits"`, ...).
        what: String,
        /// The shape that was expected; `0` stands for "any batch size" where noted in `what`.
        expected: Vec<usize>,
        /// The shape that was given.
        found: Vec<usize>,
    },
    /// A batch of size zero was given where at least one sample is needed.
    #[error("{what}: the batch is empty")]
    EmptyBatch {
        /// What the batch is for.
        what: String,
    },
    /// A class label is not below the number of classes.
    #[error(
        "label {label} at position {index} is out of range: expected a label below {classes}, \
         the number of classes"
    )]
    LabelOutOfRange {
        /// The bad label.
        label: usize,
        /// Its position in the batch.
        index: usize,
        /// The number of classes (valid labels are `0..classes`).
        classes: usize,
    },
    /// A token id given to a network whose input is token ids (`input: tokens[T]`) is not a
    /// whole number in `0..vocab`.
    #[error(
        "{what}: expected token ids, whole numbers in 0..{vocab} (the embedding's vocabulary), \
         found {found} at index {index}"
    )]
    TokenOutOfRange {
        /// What was checked (`input of Net`).
        what: String,
        /// The bad value.
        found: f32,
        /// Its index among the input's values, in standard order.
        index: usize,
        /// The vocabulary (valid ids are `0..vocab`).
        vocab: usize,
    },
    /// A sample's length in a padded batch of sequences is not in `1..=T`.
    #[error("{what}: expected lengths in 1..={steps} (the steps of the input), found {length} at position {index}")]
    LengthOutOfRange {
        /// What was checked.
        what: String,
        /// The position of the bad length in the batch.
        index: usize,
        /// The bad length.
        length: usize,
        /// The input's steps `T`.
        steps: usize,
    },
    /// The number of labels differs from the number of samples.
    #[error("expected {expected} labels (one per sample), found {found}")]
    LabelCount {
        /// Samples in the batch.
        expected: usize,
        /// Labels given.
        found: usize,
    },
    /// A parameter or buffer name that the network does not have.
    #[error("unknown parameter `{name}`; the network has: {known}")]
    UnknownParameter {
        /// The name asked for.
        name: String,
        /// The valid names, comma-separated.
        known: String,
    },
    /// A layer, prefix or parameter name that the network does not have (given to
    /// [`Transfer::freeze`](crate::Transfer::freeze) and the partial loads).
    #[error("{network} has no layer or parameter `{name}`; the closest names are: {}", .closest.join(", "))]
    UnknownName {
        /// The network.
        network: &'static str,
        /// The name asked for.
        name: String,
        /// The network's layer, prefix and tensor names nearest to it, nearest first.
        closest: Vec<String>,
    },
    /// A weight file's tensor does not fit the network it is loaded into; nothing was
    /// loaded.
    #[error("{path}: tensor `{tensor}`: {problem}")]
    Load {
        /// The file.
        path: PathBuf,
        /// The tensor's name in the network (for [`LoadProblem::Unused`], in the file).
        tensor: String,
        /// What the network expects and what the file holds (boxed, to keep `Error` small).
        problem: Box<LoadProblem>,
    },
    /// An entry that is needed is not among those given (a buffer of an optimizer's state).
    #[error("{what}: `{name}` is missing; expected one entry for each of: {expected}")]
    MissingEntry {
        /// The name that has no entry.
        name: String,
        /// What the entries are for.
        what: String,
        /// Every name expected, comma-separated.
        expected: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its contents are not what they should be.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was expected and what was found.
        reason: String,
    },
    /// A file or a declaration asks for more than a bound of [`Limits`](crate::Limits) allows:
    /// an IDX file's data, a weight file or its header, a network's parameters, or a pass's
    /// buffers. Nothing was allocated for it.
    #[error(
        "{what}: {found} bytes needed, more than the limit of {limit} bytes \
         (striate::Limits::{name}); {how_to_raise}"
    )]
    Limit {
        /// What was to be read or allocated (`"the data of /data/train.idx"`, ...).
        what: String,
        /// The field of [`Limits`](crate::Limits) that bounds it (`"max_alloc_bytes"`).
        name: &'static str,
        /// The bound in force, in bytes.
        limit: u64,
        /// What was needed, in bytes (`u64::MAX` when it does not even fit in a `u64`).
        found: u64,
        /// How to allow more, as code to write.
        how_to_raise: String,
    },
    /// The system refused memory below the bounds of [`Limits`](crate::Limits): the machine
    /// does not have it. Nothing was changed.
    #[error(
        "{what}: the system could not allocate {bytes} bytes; use a smaller batch or network, \
         or a machine with more memory"
    )]
    Allocation {
        /// What the memory was for.
        what: String,
        /// How much was asked for, in bytes.
        bytes: u64,
    },
    /// A value that must be finite is NaN or infinite (a weight read from a file, a pixel of a
    /// dataset, a gradient given to an optimizer, a logit given to a loss).
    #[error("{what}: expected finite values, found {value} at index {index}{help}")]
    NonFinite {
        /// Where the value is (`"tensor `fc.weight` of w.safetensors"`, `"pixels"`, ...).
        what: String,
        /// Its position, counted from 0 in row-major order.
        index: usize,
        /// The value (NaN, inf or -inf).
        value: f32,
        /// How to accept such values where that is possible, starting with `"; "`, or empty.
        help: &'static str,
    },
    /// A tape was used with a network or a step it was not recorded for.
    #[error("tape: {0}")]
    Tape(String),
    /// A chart could not be drawn ([`crate::plot`]); the message is the plotting library's.
    #[error("plot: {0}")]
    Plot(String),
    /// A backward pass was given the gradients that another network's
    /// [`Network::gradients`](crate::Network::gradients) made.
    #[error("backward of {network} was given the gradients of {other}; make them with `gradients()` of the network whose backward pass fills them")]
    OtherNetworksGradients {
        /// The network whose backward pass ran (its full type path when both have one name).
        network: &'static str,
        /// The network the gradients were made for.
        other: &'static str,
    },
    /// A setting is out of its valid range (a learning rate below zero, a batch size of zero, ...).
    #[error("invalid {name}: {reason}")]
    Config {
        /// The setting.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A collective operation of data-parallel training failed or timed out (feature `mpi`):
    /// another rank has failed, stalled or left. The job ends (`MPI_Abort`) when the
    /// [`Distributed`](crate::distributed::Distributed) is dropped.
    #[cfg(feature = "mpi")]
    #[error("rank {rank} of {size}: {what}: {reason}")]
    Distributed {
        /// This process's rank.
        rank: usize,
        /// The number of ranks.
        size: usize,
        /// The operation (`"all-reduce of the gradients of step 12"`).
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// Training diverged: a step's loss was NaN or infinite, or its gradients' global norm was
    /// not finite or passed the bound set with
    /// [`Trainer::divergence_grad_norm`](crate::train::Trainer::divergence_grad_norm). The step
    /// was not applied: the parameters, the optimizer's state, batch norm's running statistics
    /// and the dropout generator are as they were before it.
    #[error(
        "training diverged at step {step} (epoch {epoch}, learning rate {lr:e}): {cause}; the \
         update was not applied, so the weights are those before this step; try a lower \
         learning rate, such as {:e}", .lr / 10.0
    )]
    Diverged {
        /// The step that diverged, counted from 0 over the whole run
        /// ([`Trainer::steps_done`](crate::train::Trainer::steps_done) before it).
        step: u64,
        /// The epoch it belongs to (from 0).
        epoch: usize,
        /// The learning rate of that step.
        lr: f32,
        /// What was out of bounds.
        cause: Divergence,
    },
    /// A network could not be written as an ONNX model ([`crate::onnx`]): a layer has no ONNX
    /// form yet, or the model is larger than a protobuf file holds. Nothing was written.
    #[error("ONNX export of {network}: {reason}")]
    Export {
        /// The network exported.
        network: &'static str,
        /// What is missing or too large, and what would be needed.
        reason: String,
    },
    /// A training checkpoint does not fit the network, optimizer or trainer it is loaded into,
    /// or its contents are inconsistent; nothing was changed.
    #[error("{path}: checkpoint {what}: expected {expected}, found {found}")]
    Checkpoint {
        /// The checkpoint file (or the directory searched for one).
        path: PathBuf,
        /// What does not fit (`"network"`, `"tensor `fc.weight`"`, `"optimizer"`, ...).
        what: String,
        /// What the trainer (or the format) expects.
        expected: String,
        /// What the checkpoint holds.
        found: String,
    },
}

/// How a tensor of a weight file does not fit, in [`Error::Load`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadProblem {
    /// The network needs it and the file does not have it.
    Missing {
        /// The shape the network expects.
        expected_shape: Vec<usize>,
        /// The dtype the network expects (`"F32"`, or `"I64"` for a batch counter).
        expected_dtype: &'static str,
    },
    /// The file has it with another shape or dtype.
    Mismatch {
        /// The shape the network expects.
        expected_shape: Vec<usize>,
        /// The dtype the network expects.
        expected_dtype: &'static str,
        /// The shape in the file.
        found_shape: Vec<usize>,
        /// The dtype in the file, as safetensors spells it.
        found_dtype: String,
    },
    /// A strict load found a tensor the network (or the part loaded) does not have.
    Unused {
        /// The tensors it could have been, nearest first.
        closest: Vec<String>,
    },
}

impl std::fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadProblem::Missing {
                expected_shape,
                expected_dtype,
            } => write!(
                f,
                "missing from the file; expected {expected_dtype} of shape {expected_shape:?}"
            ),
            LoadProblem::Mismatch {
                expected_shape,
                expected_dtype,
                found_shape,
                found_dtype,
            } => write!(
                f,
                "expected {expected_dtype} of shape {expected_shape:?}, the file holds \
                 {found_dtype} of shape {found_shape:?}"
            ),
            LoadProblem::Unused { closest } => write!(
                f,
                "not a tensor of the network (a strict load uses every tensor); the closest \
                 are: {}; a non-strict load skips it",
                closest.join(", ")
            ),
        }
    }
}

/// What made a training step count as diverged, in [`Error::Diverged`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Divergence {
    /// The batch's loss was NaN or infinite.
    Loss(f32),
    /// The gradients' global L2 norm was NaN or infinite, or above `bound`.
    GradNorm {
        /// The norm, before any clipping.
        norm: f32,
        /// The bound it passed (infinite when only a non-finite norm is refused).
        bound: f32,
    },
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Divergence::Loss(loss) => write!(f, "the loss is {loss}"),
            Divergence::GradNorm { norm, bound } if bound.is_finite() => write!(
                f,
                "the gradients' global norm is {norm:e}, above the bound {bound:e}"
            ),
            Divergence::GradNorm { norm, .. } => {
                write!(f, "the gradients' global norm is {norm}")
            }
        }
    }
}

/// `Result<T, striate::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// [`Error::Load`] for tensor `tensor` of the file at `path`.
    pub(crate) fn load(path: &std::path::Path, tensor: &str, problem: LoadProblem) -> Error {
        Error::Load {
            path: path.to_path_buf(),
            tensor: tensor.to_string(),
            problem: Box::new(problem),
        }
    }

    pub(crate) fn shape(what: impl Into<String>, expected: &[usize], found: &[usize]) -> Self {
        Error::Shape {
            what: what.into(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        }
    }

    /// `Ok` for a batch of at least one sample, [`Error::Config`] otherwise.
    pub(crate) fn check_batch(batch: usize) -> Result<()> {
        if batch == 0 {
            return Err(Error::Config {
                name: "batch size",
                reason: "must be at least 1, found 0".to_string(),
            });
        }
        Ok(())
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn checkpoint(
        path: impl Into<PathBuf>,
        what: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Error::Checkpoint {
            path: path.into(),
            what: what.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// [`Error::NonFinite`] for the first value of `values` that is NaN or infinite, if any.
    pub(crate) fn check_finite(
        values: &[f32],
        what: impl FnOnce() -> String,
        help: &'static str,
    ) -> Result<()> {
        match crate::limits::first_non_finite(values) {
            None => Ok(()),
            Some(index) => Err(Error::NonFinite {
                what: what(),
                index,
                value: values[index],
                help,
            }),
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
