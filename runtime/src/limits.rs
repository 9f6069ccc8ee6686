//! [`Limits`]: the bounds on what a file or a declaration may make striate allocate, and the
//! fallible allocations that respect them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// Bounds on the memory that a file or a declaration may make striate allocate, in bytes.
///
/// Every allocation whose size comes from outside the program (the dimensions in an IDX
/// header, the offsets in a weight file's header) or from a declaration (a network's
/// parameters, the buffers of a pass over a batch) is checked against one of these bounds
/// before anything is allocated; an excess is an [`Error::Limit`] that names the bound and
/// says how to raise it. Below the bounds, memory is reserved with `try_reserve`, so memory
/// the system refuses is an [`Error::Allocation`], not an abort.
///
/// The defaults ([`Limits::DEFAULT`]) fit a machine with 24 GiB of memory. The bounds in force
/// are process-wide: [`Limits::global`] reads them and [`Limits::set_global`] replaces them,
/// for the calls that start after it.
///
/// | bound | default | what it bounds |
/// | --- | --- | --- |
/// | `max_idx_bytes` | 2 GiB | the data of one IDX file ([`read_idx`](crate::data::read_idx)), decompressed; 8 GiB as `f32` pixels |
/// | `max_weight_file_bytes` | 4 GiB | the data of one weight file ([`io`](crate::io) readers, [`Network::load`](crate::Network::load)) |
/// | `max_header_bytes` | 100 MB | the JSON header of one weight file (safetensors' own bound) |
/// | `max_alloc_bytes` | 16 GiB | a network's parameters ([`Network::try_init`](crate::Network::try_init)), and the buffers of one pass over a batch (activations, masks, pooling winners) |
///
/// # Example
///
/// ```
/// use striate::Limits;
///
/// assert_eq!(Limits::global(), Limits::DEFAULT);
/// // A job that loads a 6 GiB weight file raises that bound, for the whole program.
/// Limits::default().max_weight_file_bytes(6 << 30).set_global();
/// assert_eq!(Limits::global().max_weight_file_bytes, 6 << 30);
/// # Limits::DEFAULT.set_global();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The most data bytes of one IDX file, after decompression.
    pub max_idx_bytes: u64,
    /// The most data bytes of one safetensors weight file (its tensors, after the header).
    pub max_weight_file_bytes: u64,
    /// The most bytes of one weight file's JSON header.
    pub max_header_bytes: u64,
    /// The most bytes of one allocation sized by a declaration: a network's parameters (or
    /// buffers), or the buffers of one pass over a batch.
    pub max_alloc_bytes: u64,
}

impl Limits {
    /// The defaults, which fit a machine with 24 GiB of memory: 2 GiB of IDX data, 4 GiB weight
    /// files, 100 MB headers, 16 GiB allocations.
    pub const DEFAULT: Limits = Limits {
        max_idx_bytes: 2 << 30,
        max_weight_file_bytes: 4 << 30,
        max_header_bytes: 100_000_000,
        max_alloc_bytes: 16 << 30,
    };

    /// The bounds in force for the whole program: [`Limits::DEFAULT`] until
    /// [`Limits::set_global`] changes them.
    pub fn global() -> Limits {
        Limits {
            max_idx_bytes: GLOBAL[0].load(Ordering::Relaxed),
            max_weight_file_bytes: GLOBAL[1].load(Ordering::Relaxed),
            max_header_bytes: GLOBAL[2].load(Ordering::Relaxed),
            max_alloc_bytes: GLOBAL[3].load(Ordering::Relaxed),
        }
    }

    /// Makes these the bounds for the whole program, for every call that starts after this.
    pub fn set_global(self) {
        GLOBAL[0].store(self.max_idx_bytes, Ordering::Relaxed);
        GLOBAL[1].store(self.max_weight_file_bytes, Ordering::Relaxed);
        GLOBAL[2].store(self.max_header_bytes, Ordering::Relaxed);
        GLOBAL[3].store(self.max_alloc_bytes, Ordering::Relaxed);
    }

    /// The same bounds with `bytes` as [`max_idx_bytes`](Limits::max_idx_bytes).
    pub fn max_idx_bytes(mut self, bytes: u64) -> Limits {
        self.max_idx_bytes = bytes;
        self
    }

    /// The same bounds with `bytes` as
    /// [`max_weight_file_bytes`](Limits::max_weight_file_bytes).
    pub fn max_weight_file_bytes(mut self, bytes: u64) -> Limits {
        self.max_weight_file_bytes = bytes;
        self
    }

    /// The same bounds with `bytes` as [`max_header_bytes`](Limits::max_header_bytes).
    pub fn max_header_bytes(mut self, bytes: u64) -> Limits {
        self.max_header_bytes = bytes;
        self
    }

    /// The same bounds with `bytes` as [`max_alloc_bytes`](Limits::max_alloc_bytes).
    pub fn max_alloc_bytes(mut self, bytes: u64) -> Limits {
        self.max_alloc_bytes = bytes;
        self
    }

    /// `Ok` when `found` bytes (`None`: more than a `u64` holds) are within the bound `name`,
    /// whose value is `limit`; otherwise an [`Error::Limit`] for `what`.
    pub(crate) fn check(
        name: &'static str,
        limit: u64,
        what: impl FnOnce() -> String,
        found: Option<u64>,
    ) -> Result<()> {
        match found {
            Some(found) if found <= limit => Ok(()),
            _ => {
                let found = found.unwrap_or(u64::MAX);
                Err(Error::Limit {
                    what: what(),
                    name,
                    limit,
                    found,
                    how_to_raise: raise_hint(name, found),
                })
            }
        }
    }

    /// [`Limits::check`] for `count` values of `T` against `max_alloc_bytes`.
    pub(crate) fn check_alloc<T>(&self, what: impl FnOnce() -> String, count: usize) -> Result<()> {
        let bytes = (count as u128).checked_mul(std::mem::size_of::<T>() as u128);
        Limits::check(
            "max_alloc_bytes",
            self.max_alloc_bytes,
            what,
            bytes.and_then(|b| u64::try_from(b).ok()),
        )
    }
}

impl Default for Limits {
    /// [`Limits::DEFAULT`] (not the bounds in force: see [`Limits::global`]).
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// The code that raises bound `name` to `found` bytes.
pub(crate) fn raise_hint(name: &str, found: u64) -> String {
    format!("raise it with `striate::Limits::global().{name}({found}).set_global()`")
}

static GLOBAL: [AtomicU64; 4] = [
    AtomicU64::new(Limits::DEFAULT.max_idx_bytes),
    AtomicU64::new(Limits::DEFAULT.max_weight_file_bytes),
    AtomicU64::new(Limits::DEFAULT.max_header_bytes),
    AtomicU64::new(Limits::DEFAULT.max_alloc_bytes),
];

/// Makes `v` hold at least `len` values (growing its capacity only, with `try_reserve_exact`),
/// so that a following `resize` to `len` allocates nothing; when the capacity is already there
/// this allocates nothing either. The system's refusal is an [`Error::Allocation`] for `what`.
pub(crate) fn reserve_len<T>(
    v: &mut Vec<T>,
    len: usize,
    what: impl FnOnce() -> String,
) -> Result<()> {
    if v.capacity() >= len {
        return Ok(());
    }
    v.try_reserve_exact(len - v.len())
        .map_err(|_| Error::Allocation {
            what: what(),
            bytes: (len as u64).saturating_mul(std::mem::size_of::<T>() as u64),
        })
}

/// A vector of `len` copies of `value`, allocated fallibly.
pub(crate) fn try_filled<T: Clone>(
    len: usize,
    value: T,
    what: impl FnOnce() -> String,
) -> Result<Vec<T>> {
    let mut v = Vec::new();
    reserve_len(&mut v, len, what)?;
    v.resize(len, value);
    Ok(v)
}

/// The index of the first value of `values` that is NaN or infinite.
///
/// Scans in blocks, each tested with a bitwise fold over the exponents (all ones for a NaN or
/// an infinity) that the compiler vectorises, and looks for the position only in a block that
/// has one. (A sum of `x * 0` does the same test but is not vectorised, since reordering a
/// float sum changes it: 40 ms of every AlexNet training step went to it, checking 62 M
/// gradients.)
pub(crate) fn first_non_finite(values: &[f32]) -> Option<usize> {
    const BLOCK: usize = 256;
    const EXPONENT: u32 = 0x7f80_0000;
    values.chunks(BLOCK).enumerate().find_map(|(b, block)| {
        let finite = block
            .iter()
            .fold(true, |ok, x| ok & (x.to_bits() & EXPONENT != EXPONENT));
        if finite {
            return None;
        }
        block
            .iter()
            .position(|x| !x.is_finite())
            .map(|i| b * BLOCK + i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_non_finite_value_is_found_in_any_block() {
        let mut v = vec![1.5f32; 1000];
        assert_eq!(first_non_finite(&v), None);
        assert_eq!(first_non_finite(&[]), None);
        for (at, bad) in [
            (0, f32::NAN),
            (255, f32::INFINITY),
            (256, -f32::INFINITY),
            (999, f32::NAN),
        ] {
            v[at] = bad;
            assert_eq!(first_non_finite(&v), Some(at));
            v[at] = f32::MAX;
        }
        assert_eq!(first_non_finite(&v), None, "f32::MAX is finite");
    }

    #[test]
    fn an_excess_names_the_bound_and_how_to_raise_it() {
        let err = Limits::DEFAULT
            .max_alloc_bytes(100)
            .check_alloc::<f32>(|| "parameters of Net".to_string(), 26)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameters of Net: 104 bytes needed, more than the limit of 100 bytes \
             (striate::Limits::max_alloc_bytes); raise it with \
             `striate::Limits::global().max_alloc_bytes(104).set_global()`"
        );
        assert!(Limits::DEFAULT
            .max_alloc_bytes(104)
            .check_alloc::<f32>(String::new, 26)
            .is_ok());
        let overflow = Limits::DEFAULT.check_alloc::<f32>(String::new, usize::MAX);
        assert!(matches!(
            overflow,
            Err(Error::Limit {
                found: u64::MAX,
                ..
            })
        ));
    }

    #[test]
    fn reserving_within_the_capacity_allocates_nothing() {
        let mut v: Vec<f32> = Vec::with_capacity(10);
        let before = v.as_ptr();
        reserve_len(&mut v, 10, String::new).unwrap();
        assert_eq!((v.as_ptr(), v.capacity()), (before, 10));
        let refused = reserve_len(&mut v, usize::MAX / 8, || "tape".to_string());
        assert!(
            matches!(refused, Err(Error::Allocation { .. })),
            "{refused:?}"
        );
        assert_eq!(try_filled(3, 7u32, String::new).unwrap(), [7, 7, 7]);
    }
}
