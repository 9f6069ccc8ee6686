//! Helpers shared by the kernels' tests: seeded random data, closeness checks and a
//! finite-difference gradient check.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A deterministic generator, so a failing test fails the same way every time.
pub(crate) fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// `len` values uniform in `[-1, 1)`.
pub(crate) fn uniform(rng: &mut impl Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Asserts `|a - b| <= tol * max(1, |b|)` element by element, naming the first bad index.
#[track_caller]
pub(crate) fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let ok = (x - y).abs() <= tol * y.abs().max(1.0);
        assert!(ok, "{what}[{i}]: {x} vs {y} (tol {tol})");
    }
}

/// `Σ rᵢ yᵢ` in `f64`: the scalar whose gradient with respect to `y` is `r`. Contracting an
/// output with random weights `r` and feeding `d_y = r` to a backward checks every output's
/// gradient at once.
pub(crate) fn dot(r: &[f32], y: &[f32]) -> f64 {
    assert_eq!(r.len(), y.len());
    r.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Compares `analytic`, the gradient of `loss` at `x`, with central differences
/// `(loss(x + εeᵢ) - loss(x - εeᵢ)) / 2ε`, allowing `tol * max(1, |analytic|)` per element.
#[track_caller]
pub(crate) fn check_gradient(
    what: &str,
    x: &[f32],
    analytic: &[f32],
    eps: f32,
    tol: f64,
    mut loss: impl FnMut(&[f32]) -> f64,
) {
    assert_eq!(x.len(), analytic.len(), "{what}: lengths differ");
    let mut probe = x.to_vec();
    for i in 0..x.len() {
        probe[i] = x[i] + eps;
        let plus = loss(&probe);
        probe[i] = x[i] - eps;
        let minus = loss(&probe);
        probe[i] = x[i];
        // The step actually taken, after rounding x ± ε to f32.
        let step = (x[i] + eps) as f64 - (x[i] - eps) as f64;
        let numeric = (plus - minus) / step;
        let exact = analytic[i] as f64;
        assert!(
            (numeric - exact).abs() <= tol * exact.abs().max(1.0),
            "{what}[{i}]: finite difference {numeric} vs backward {exact}"
        );
    }
}

/// Runs `step` (a forward and a backward pass, say) once, then twice more, and asserts that
/// the scratch it grew the first time was neither grown nor moved after that.
#[track_caller]
pub(crate) fn assert_scratch_reused(mut step: impl FnMut(&mut Vec<f32>)) {
    let mut scratch = Vec::new();
    step(&mut scratch);
    let (ptr, cap) = (scratch.as_ptr(), scratch.capacity());
    assert!(cap > 0, "the step used no scratch");
    for _ in 0..2 {
        step(&mut scratch);
    }
    assert_eq!((scratch.as_ptr(), scratch.capacity()), (ptr, cap));
}

/// Runs `f` once with the kernels limited to each instruction set, plain code first: on this
/// CPU's best and on each weaker one (a set the CPU lacks runs as its best, so its case is run
/// again rather than skipped).
pub(crate) fn on_every_isa(mut f: impl FnMut(crate::ops::isa::Isa)) {
    use crate::ops::isa::{with_ceiling, Isa};
    for ceiling in [Isa::Generic, Isa::Plain, Isa::Avx2Fma, Isa::Avx512] {
        with_ceiling(ceiling, || f(Isa::current()));
    }
}

/// The case count of a property test: `default`, or `PROPTEST_CASES` when set, for a longer
/// run (`PROPTEST_CASES=5000 cargo test -p striate-runtime --lib properties`).
pub(crate) fn property_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// On every instruction set: runs `pass` (a layer's forward and backward passes) on an empty
/// scratch and checks that it grew to at most `needed()`, what a tape reserves for the layer.
pub(crate) fn assert_scratch_within(
    what: &str,
    needed: impl Fn() -> usize,
    mut pass: impl FnMut(&mut Vec<f32>),
) {
    on_every_isa(|_| {
        let mut scratch = Vec::new();
        pass(&mut scratch);
        let needed = needed();
        assert!(
            scratch.len() <= needed,
            "{what}: {} > {needed}",
            scratch.len()
        );
    });
}

/// Asserts that `alone`, a kernel's input gradient on its own (a frozen layer's), adds the same
/// bits into a copy of `d_x0` as `whole`, the kernel's whole backward pass, does into another.
pub(crate) fn assert_input_gradient_alone(
    what: &str,
    d_x0: &[f32],
    scratch: &mut Vec<f32>,
    whole: impl FnOnce(&mut [f32], &mut Vec<f32>),
    alone: impl FnOnce(&mut [f32], &mut Vec<f32>),
) {
    let (mut a, mut b) = (d_x0.to_vec(), d_x0.to_vec());
    whole(&mut a, scratch);
    alone(&mut b, scratch);
    assert_eq!(
        b, a,
        "{what}: the input gradient alone differs from backward's"
    );
}
