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
}

/// `Result<T, striate::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
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

    pub(crate) fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
