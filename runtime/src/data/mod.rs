//! Data: labelled image sets in memory, batching, and the MNIST digits.
//!
//! - [`Dataset`] holds `N` images, flat `(N, C, H, W)` `f32`, with one class label each, and
//!   cuts them into batches: [`Dataset::gather`] fills reused buffers for training loops,
//!   [`Dataset::batches`] yields owned [`ndarray`] batches for convenience.
//! - [`shuffled_indices`] is the one shuffle, a seeded permutation reproducible outside Rust.
//! - [`Mnist`] reads the MNIST files ([`read_idx`] reads any IDX file of unsigned bytes) and
//!   [`Mnist::builtin`] gives 10,000 real digits shipped inside the library.
//!
//! # Example
//!
//! ```
//! use striate_runtime::data::{Mnist, Order};
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
//! # Ok::<(), striate_runtime::Error>(())
//! ```

mod dataset;
mod idx;
mod mnist;

pub use dataset::{shuffled_indices, Batches, Dataset, Order};
pub use idx::{parse_idx, read_idx, IdxArray};
pub use mnist::Mnist;
