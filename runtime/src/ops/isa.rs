//! The one place that detects the CPU's features and chooses the instruction set every kernel
//! is compiled for (matrixmultiply's way): [`Isa::current`]. The CPU is asked once, and the
//! answer kept; no kernel calls `is_x86_feature_detected!` itself.
//!
//! Each kernel reads [`Isa::current`] once per call, on the calling thread, and passes it down
//! to the `#[target_feature]` builds it dispatches to, so that every task of one call runs the
//! same build. Tests can lower the choice, per test thread (`with_ceiling`), to check the
//! other builds of the same code on a machine that has the better instruction sets.

use std::sync::OnceLock;

/// An instruction-set level a kernel may be compiled for, weakest first (so `a <= b` when
/// whatever runs on `a` may run on `b`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
// Elsewhere than on x86-64 only `Plain` is ever chosen; the others still name the builds.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) enum Isa {
    /// Neither AVX2 nor FMA: the portable code, products and sums rounded separately.
    Plain,
    /// AVX2 and FMA.
    Avx2Fma,
    /// AVX-512F, with AVX2 and FMA.
    Avx512,
}

impl Isa {
    /// The instruction set the kernels use: the best this CPU has (detected once), or lower
    /// where a test says so (`with_ceiling`).
    ///
    /// `Isa::Avx512` is returned only on a CPU with AVX-512F, AVX2 and FMA, and `Isa::Avx2Fma`
    /// only on one with AVX2 and FMA: the `unsafe` calls of `#[target_feature]` functions
    /// rest on that.
    #[inline]
    pub(crate) fn current() -> Isa {
        static CPU: OnceLock<Isa> = OnceLock::new();
        let cpu = *CPU.get_or_init(detect);
        #[cfg(test)]
        {
            cpu.min(CEILING.with(std::cell::Cell::get))
        }
        #[cfg(not(test))]
        {
            cpu
        }
    }
}

/// Asks the CPU.
fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2_fma = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if avx2_fma && is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if avx2_fma {
            return Isa::Avx2Fma;
        }
    }
    Isa::Plain
}

#[cfg(test)]
thread_local! {
    /// The best instruction set [`Isa::current`] may return on this thread.
    static CEILING: std::cell::Cell<Isa> = const { std::cell::Cell::new(Isa::Avx512) };
}

/// Runs `f` with the kernels called from this thread using at most `ceiling`.
#[cfg(test)]
pub(crate) fn with_ceiling<R>(ceiling: Isa, f: impl FnOnce() -> R) -> R {
    let before = CEILING.with(|c| c.replace(ceiling));
    let r = f();
    CEILING.with(|c| c.set(before));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ceiling lowers the choice and nothing else: it never raises it above the CPU's.
    #[test]
    fn a_ceiling_only_lowers() {
        let best = Isa::current();
        for ceiling in [Isa::Plain, Isa::Avx2Fma, Isa::Avx512] {
            let isa = with_ceiling(ceiling, Isa::current);
            assert_eq!(isa, best.min(ceiling));
        }
        assert_eq!(Isa::current(), best);
    }
}
