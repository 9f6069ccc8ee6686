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
    /// None of our builds: the matrix products go to the matrixmultiply crate, which picks
    /// its own kernels (NEON on aarch64; SSE2, AVX or FMA on x86), and every other kernel runs
    /// the portable code. The choice on CPUs other than x86-64 with AVX2 and FMA, and on any
    /// CPU when the environment variable `STRIATE_MATRIXMULTIPLY` is `1` when the CPU is
    /// first asked.
    Generic,
    /// Our portable code, products included (rounded separately, no fused multiply-add): the
    /// reference the tests check the other builds against, chosen only by a test's ceiling.
    #[cfg_attr(not(test), allow(dead_code))]
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

/// Defines `fn $name(isa: Isa, args..) -> R` with the body given, compiled once per instruction
/// set: the body, as an `#[inline(always)]` function, is inlined into a `#[target_feature]`
/// function of each build, so that the compiler vectorises its loops with that build's
/// registers (an elementwise or summing loop of the portable code gets 128-bit SSE2), and
/// `isa` picks the build. The results are the portable code's: Rust neither fuses a product
/// and a sum nor reorders additions on its own, whichever the build.
macro_rules! isa_builds {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        // The arguments are the kernel's own.
        #[allow(clippy::too_many_arguments)]
        $vis fn $name(isa: $crate::ops::isa::Isa, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body
            /// The AVX-512 build.
            ///
            /// # Safety
            /// The CPU must support AVX-512F, AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }
            /// The AVX2 build.
            ///
            /// # Safety
            /// The CPU must support AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }
            match isa {
                #[cfg(target_arch = "x86_64")]
                // Safety: `Isa::current` returns `Avx512` only on a CPU with AVX-512F, AVX2
                // and FMA.
                $crate::ops::isa::Isa::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // Safety: `Isa::current` returns `Avx2Fma` only on a CPU with AVX2 and FMA.
                $crate::ops::isa::Isa::Avx2Fma => unsafe { avx2($($arg),*) },
                _ => portable($($arg),*),
            }
        }
    };
}
pub(crate) use isa_builds;

/// Asks the CPU (and the environment, once: `STRIATE_MATRIXMULTIPLY=1` forces
/// [`Isa::Generic`], so that every kernel can be tested and measured on that path).
fn detect() -> Isa {
    if std::env::var_os("STRIATE_MATRIXMULTIPLY").is_some_and(|v| v == "1") {
        return Isa::Generic;
    }
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
    Isa::Generic
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
        for ceiling in [Isa::Generic, Isa::Plain, Isa::Avx2Fma, Isa::Avx512] {
            let isa = with_ceiling(ceiling, Isa::current);
            assert_eq!(isa, best.min(ceiling));
        }
        assert_eq!(Isa::current(), best);
    }
}
