//! Which instruction-set build of a kernel may run. The CPU decides (`is_x86_feature_detected!`
//! at the call site); tests can lower the ceiling, per test thread, to check the other builds
//! of the same code on a machine that has the better instruction sets.

/// Whether the build for instruction-set level `level` (1: AVX-512, 2: AVX2 and FMA) may be
/// used, as far as tests are concerned; outside tests always true.
#[inline(always)]
pub(crate) fn allowed(level: u8) -> bool {
    #[cfg(test)]
    {
        level >= MIN_ISA.with(std::cell::Cell::get)
    }
    #[cfg(not(test))]
    {
        let _ = level;
        true
    }
}

#[cfg(test)]
thread_local! {
    /// The lowest level [`allowed`] allows: 0 allows all, 3 only the plain code.
    pub(crate) static MIN_ISA: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}
