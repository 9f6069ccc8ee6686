//! The runtime of [striate](https://docs.rs/striate): CPU kernels, the [`Network`] trait that
//! every `network!` implements, losses, optimizers, data loading, the training loop and weight
//! files.
//!
//! Most users reach all of this through the `striate` crate and its prelude; the pieces are
//! public so that a training loop can be written by hand.
#![warn(missing_docs)]

mod compose;
pub mod data;
#[cfg(feature = "mpi")]
pub mod distributed;
mod error;
pub mod io;
#[doc(hidden)]
pub mod layers;
mod limits;
pub mod network;
pub mod onnx;
pub mod ops;
pub mod optim;
mod params;
pub mod plot;
pub mod rbm;
mod scores;
mod summary;
mod tables;
pub mod tape;
pub mod train;
#[doc(hidden)]
pub mod unoptimized;
pub mod visualize;

pub use error::{Error, LoadProblem, Result};
pub use limits::Limits;
pub use network::{
    Frozen, Gradients, LoadOptions, LoadReport, Manifest, ManifestEntry, Mode, Network, NetworkExt,
    State, Tensor, TensorMut, Transfer,
};
pub use params::ParamStore;
pub use scores::softmax;
pub use striate_geometry as geometry;
pub use summary::Summary;
pub use tables::{Init, LayerInfo, NetRng, ParamInfo, Pass, Shape1, Shape2, Shape3, Slot};
pub use tape::Tape;
pub use train::cross_entropy;

/// ndarray, re-exported so that generated code and users name the same version.
pub use ndarray;

/// Everything the code that `network!` generates names, behind one path
/// (`::striate::__private::...`), laid out as the runtime is (`ops::conv2d`, `layers`,
/// `geometry::Rounding`, `ndarray::Ix4`). Not part of the documented API: it changes with the
/// macro.
#[doc(hidden)]
pub mod __generated {
    pub use crate::compose::*;
    pub use crate::layers;
    pub use crate::network::debug_network;
    pub use crate::network::nested::{nested_backward, nested_forward};
    pub use crate::network::FrozenView;
    pub use crate::onnx;
    pub use crate::tables::{Init, LayerInfo, ParamInfo, Pass, Shape1, Shape2, Shape3, Slot};
    pub use crate::{Error, Network, State, Summary, Tape};

    /// The kernels of the layer kinds.
    pub mod ops {
        pub use crate::ops::{
            activation, batch_norm, conv2d, conv_transpose2d, dropout, embedding, join, linear,
            pool, recurrent, sequence, upsample,
        };
    }

    /// The rounding rule of a layer's geometry.
    pub mod geometry {
        pub use striate_geometry::{Receptive, Rounding};
    }

    /// The dimension types of the `Network` impl.
    pub mod ndarray {
        pub use ndarray::{Ix2, Ix3, Ix4, IxDyn};
    }
}
