//! Kernels: one file per operation, each forward beside its backward, each with a plain
//! reference version (`*_naive`) that the tests compare the fast path against.
//!
//! Conventions (llm.c's):
//! - every tensor is a flat `f32` slice in row-major, channels-first order: `(N, C, H, W)` for
//!   feature maps, `(N, F)` for vectors; `n` is the batch size, known only at run time;
//! - signatures put outputs first, then inputs, then a small plain struct of the op's geometry;
//! - gradients are named `d_<name>` and **accumulate** (`+=`): clearing them is a separate step;
//! - these are internal kernels: they check lengths with `debug_assert!` only. Shapes are checked
//!   once, at the public entry points of [`crate::Network`].

pub mod activation;
pub mod batch_norm;
pub mod conv2d;
pub mod dropout;
mod isa;
pub mod linear;
pub mod loss;
mod packed;
pub mod parallel;
pub mod pool;
mod window;

#[cfg(test)]
mod test_util;

/// The first `len` values of a kernel's `scratch`, grown to that length first if it is
/// shorter (so it grows on first use only, and is reused after that).
fn grown(scratch: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if scratch.len() < len {
        scratch.resize(len, 0.0);
    }
    &mut scratch[..len]
}
