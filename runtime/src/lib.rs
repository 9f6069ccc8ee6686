//! The runtime of [striate](https://docs.rs/striate): CPU kernels, the [`Network`] trait that
//! every `network!` implements, losses, optimizers, data loading, the training loop and weight
//! files.
//!
//! Most users reach all of this through the `striate` crate and its prelude; the pieces are
//! public so that a training loop can be written by hand.
#![warn(missing_docs)]

pub mod data;
mod error;
pub mod io;
pub mod layers;
pub mod network;
pub mod ops;
pub mod optim;
mod params;
mod summary;
pub mod tape;
pub mod train;

pub use error::{Error, Result};
pub use network::{Gradients, LayerInfo, Mode, NetRng, Network, Pass, State, Tensor, TensorMut};
pub use params::{Init, ParamInfo, ParamStore};
pub use striate_geometry as geometry;
pub use summary::Summary;
pub use tape::{Slot, Tape};
pub use train::cross_entropy;

/// ndarray, re-exported so that generated code and users name the same version.
pub use ndarray;
