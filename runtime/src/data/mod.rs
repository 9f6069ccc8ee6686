//! Data: labelled image sets in memory, loading, standardising, splitting and batching.
//!
//! - [`Dataset`] holds `N` images, flat `(N, C, H, W)` `f32`, with one class label each. Make
//!   one from arrays ([`Dataset::from_arrays`]), from a pair of IDX files of any names, any
//!   channel count and any class count ([`Dataset::load_idx`]), or from a flat buffer
//!   ([`Dataset::new`]).
//! - [`Normalize`] standardises each channel with the training set's mean and standard
//!   deviation; [`Dataset::split`] and [`Dataset::split_stratified`] hold out a seeded random
//!   validation set.
//! - [`Dataset::gather`] fills reused batch buffers for training loops, [`Dataset::batches`]
//!   yields owned [`ndarray`] batches for convenience; [`shuffled_indices`] is the one
//!   shuffle, a seeded permutation reproducible outside Rust.
//! - [`augment`] changes training images at random, batch by batch, seeded: translation,
//!   rotation, scaling, flips, elastic deformation, intensity and crops, in a pipeline.
//! - [`Mnist`] reads the MNIST files ([`read_idx`] reads any IDX file of unsigned bytes) and
//!   [`Mnist::builtin`] gives 10,000 real digits shipped inside the library.
//!
//! The book's page "Your own data" has the whole path from IDX files to predictions.
//!
//! # Example
//!
//! ```
//! use striate::data::{Mnist, Order};
//!
//! let mnist = Mnist::builtin();
//! let quick = mnist.train.take(100);
//! for (epoch, seed) in (0..2).zip(100u64..) {
//!     for (x, y) in quick.batches(32, Order::Shuffled { seed })? {
//!         assert_eq!(x.shape()[1..], [1, 28, 28]);
//!         assert_eq!(x.shape()[0], y.len());
//!         assert!(y.iter().all(|&digit| digit < 10), "epoch {epoch}");
//!     }
//! }
//! # Ok::<(), striate::Error>(())
//! ```

pub mod augment;
mod dataset;
mod from_idx;
mod idx;
mod mnist;
mod normalize;
mod split;

pub use dataset::{shuffled_indices, Batches, Dataset, Order};
pub use idx::{parse_idx, read_idx, read_idx_limited, IdxArray, MAX_IDX_BYTES};
pub use mnist::Mnist;
pub use normalize::Normalize;
