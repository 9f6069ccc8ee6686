//! Kernels: one module per operation, each forward beside its backward. The large ones are
//! folders split along the lines they already had: `conv2d/` (`direct.rs`, `implicit.rs`) and
//! `linear/` (`dot.rs`, `loops.rs`). Each operation keeps a plain reference version of its
//! kernels in its `reference` module, compiled for tests only, which its `tests` compare the
//! fast paths against.
//!
//! Conventions (llm.c's):
//! - every tensor is a flat `f32` slice in row-major, channels-first order: `(N, C, H, W)` for
//!   feature maps, `(N, F)` for vectors; `n` is the batch size, known only at run time;
//! - signatures put outputs first, then inputs, then a small plain struct of the op's geometry;
//! - gradients are named `d_<name>` and **accumulate** (`+=`): clearing them is a separate step;
//! - every public kernel checks the length of each slice it is given against `n` and its
//!   geometry with `assert!`, in release builds too, before it writes anything, and panics
//!   with the slice's name, its length and the length expected (its `# Panics` section lists
//!   them). The checks look at lengths only, a few multiplications per call. They are what
//!   keeps the kernels sound: the kernels hand parts of their outputs to their threads
//!   through a shared pointer ([`parallel`]'s `SharedMut`, which checks each range against
//!   the slice it was made from as well). Shapes given by users are checked, with typed
//!   errors, at the public entry points of [`crate::Network`];
//! - one place, `isa.rs`, detects the CPU's features and chooses the instruction set every
//!   kernel runs; each kernel asks it once per call.

pub mod activation;
pub mod batch_norm;
pub mod conv2d;
pub mod conv_transpose2d;
pub mod dropout;
pub mod embedding;
pub(crate) mod isa;
pub mod join;
pub mod linear;
pub mod loss;
mod packed;
pub mod parallel;
pub mod pool;
pub mod recurrent;
pub mod sequence;
pub mod upsample;
mod window;

#[cfg(test)]
mod test_util;

/// The kernels this process runs, chosen once for its CPU: what [`kernels`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kernels {
    /// striate's own packed product and kernels, built for AVX-512 (with AVX2 and FMA).
    Avx512,
    /// striate's own packed product and kernels, built for AVX2 and FMA.
    Avx2Fma,
    /// The matrixmultiply crate's products (its own kernels: NEON on aarch64; SSE2, AVX or
    /// FMA on x86) and the portable build of every other kernel: on any other CPU, or on any
    /// CPU when the environment variable `STRIATE_MATRIXMULTIPLY` is `1` when a kernel first
    /// runs. matrixmultiply allocates a packing buffer in every product, so
    /// on this path a training step allocates; with striate's own kernels it does not.
    Matrixmultiply,
    /// striate's own portable products: only the runtime's own tests choose them.
    Portable,
}

impl std::fmt::Display for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kernels::Avx512 => "AVX-512",
            Kernels::Avx2Fma => "AVX2+FMA",
            Kernels::Matrixmultiply => "matrixmultiply",
            Kernels::Portable => "portable",
        })
    }
}

/// The kernels every layer runs in this process (detected once, then kept).
///
/// # Example
/// ```
/// use striate::ops::{kernels, Kernels};
///
/// let k = kernels();
/// println!("kernels: {k}");
/// if cfg!(not(target_arch = "x86_64")) {
///     assert_eq!(k, Kernels::Matrixmultiply);
/// }
/// ```
pub fn kernels() -> Kernels {
    match isa::Isa::current() {
        isa::Isa::Avx512 => Kernels::Avx512,
        isa::Isa::Avx2Fma => Kernels::Avx2Fma,
        isa::Isa::Generic => Kernels::Matrixmultiply,
        isa::Isa::Plain => Kernels::Portable,
    }
}

/// The first `len` values of a kernel's `scratch`, grown to that length first if it is
/// shorter (so it grows on first use only, and is reused after that).
fn grown(scratch: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if scratch.len() < len {
        scratch.resize(len, 0.0);
    }
    &mut scratch[..len]
}

/// Panics unless slice `name` of `kernel` has `len` values, the product of `dims`, times `n`
/// for a batch: "conv2d::forward: y has 100 values, expected 4704 (n = 2 x [6, 28, 28])".
#[track_caller]
#[inline]
fn check_len(kernel: &str, name: &str, len: usize, n: Option<usize>, dims: &[usize]) {
    let expected = dims
        .iter()
        .try_fold(n.unwrap_or(1), |product, &d| product.checked_mul(d));
    if expected != Some(len) {
        wrong_len(kernel, name, len, expected, n, dims);
    }
}

/// The panic of [`check_len`], kept out of line so that the check stays small.
#[cold]
#[inline(never)]
#[track_caller]
fn wrong_len(
    kernel: &str,
    name: &str,
    len: usize,
    expected: Option<usize>,
    n: Option<usize>,
    dims: &[usize],
) -> ! {
    let shape = match n {
        Some(n) => format!("n = {n} x {dims:?}"),
        None => format!("{dims:?}"),
    };
    match expected {
        Some(expected) => {
            panic!("{kernel}: {name} has {len} values, expected {expected} ({shape})")
        }
        None => panic!("{kernel}: {name} would need {shape} values, more than a usize counts"),
    }
}

/// Panics unless slice `name` of `kernel` has as many values as slice `like`, which has
/// `expected`: the elementwise kernels, which have no geometry.
#[track_caller]
#[inline]
fn check_same(kernel: &str, name: &str, len: usize, like: &str, expected: usize) {
    if len != expected {
        wrong_same(kernel, name, len, like, expected);
    }
}

/// The panic of [`check_same`].
#[cold]
#[inline(never)]
#[track_caller]
fn wrong_same(kernel: &str, name: &str, len: usize, like: &str, expected: usize) -> ! {
    panic!("{kernel}: {name} has {len} values, expected {expected} (as many as {like})")
}

/// [`check_len`] for several slices of the same shape.
#[track_caller]
#[inline]
fn check_lens(kernel: &str, slices: &[(&str, usize)], n: Option<usize>, dims: &[usize]) {
    for &(name, len) in slices {
        check_len(kernel, name, len, n, dims);
    }
}

/// The per-sample input and output shapes and the weight shape of a layer with weights and
/// an optional bias of one value per output channel (`output[0]`): the convolution and the
/// linear layer, whose kernels share one calling convention.
struct LayerShapes<const I: usize, const O: usize, const W: usize> {
    input: [usize; I],
    output: [usize; O],
    weights: [usize; W],
}

impl<const I: usize, const O: usize, const W: usize> LayerShapes<I, O, W> {
    /// Panics unless the slices of `forward(y, x, w, b, ..)` at batch size `n` have these
    /// shapes.
    #[track_caller]
    fn check_forward(
        &self,
        kernel: &str,
        n: usize,
        y: &[f32],
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
    ) {
        check_len(kernel, "y", y.len(), Some(n), &self.output);
        self.check_inputs(kernel, n, x, w);
        self.check_bias(kernel, "b", b);
    }

    /// Panics unless the slices of `backward(d_x, d_w, d_b, d_y, x, w, ..)` at batch size `n`
    /// have these shapes.
    // The slices of a backward pass, plus the kernel's name and the batch size.
    #[allow(clippy::too_many_arguments)]
    #[track_caller]
    fn check_backward(
        &self,
        kernel: &str,
        n: usize,
        d_x: Option<&[f32]>,
        d_w: &[f32],
        d_b: Option<&[f32]>,
        d_y: &[f32],
        x: &[f32],
        w: &[f32],
    ) {
        if let Some(d_x) = d_x {
            check_len(kernel, "d_x", d_x.len(), Some(n), &self.input);
        }
        check_len(kernel, "d_w", d_w.len(), None, &self.weights);
        self.check_bias(kernel, "d_b", d_b);
        check_len(kernel, "d_y", d_y.len(), Some(n), &self.output);
        self.check_inputs(kernel, n, x, w);
    }

    /// Panics unless the slices of `backward_input(d_x, d_y, w, ..)` at batch size `n` have
    /// these shapes.
    #[track_caller]
    fn check_backward_input(&self, kernel: &str, n: usize, d_x: &[f32], d_y: &[f32], w: &[f32]) {
        check_len(kernel, "d_x", d_x.len(), Some(n), &self.input);
        check_len(kernel, "d_y", d_y.len(), Some(n), &self.output);
        check_len(kernel, "w", w.len(), None, &self.weights);
    }

    #[track_caller]
    fn check_inputs(&self, kernel: &str, n: usize, x: &[f32], w: &[f32]) {
        check_len(kernel, "x", x.len(), Some(n), &self.input);
        check_len(kernel, "w", w.len(), None, &self.weights);
    }

    #[track_caller]
    fn check_bias(&self, kernel: &str, name: &str, b: Option<&[f32]>) {
        if let Some(b) = b {
            check_len(kernel, name, b.len(), None, &self.output[..1]);
        }
    }
}
