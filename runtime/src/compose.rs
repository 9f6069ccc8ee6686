//! `const fn`s that build an outer network's tables from those of the networks nested in it:
//! the generated code of `features: LeNetFeatures` knows the inner network only by its type,
//! so its parameter names (`features.conv1.weight`), offsets, multiply-adds and receptive field
//! are computed at compile time from the inner network's constants.
//!
//! Generated code calls these; users need not.

use striate_geometry::Receptive;

use crate::tables::{LayerInfo, ParamInfo};

/// Bytes of all of `table`'s names, each with `prefix` before it.
#[doc(hidden)]
pub const fn names_len(prefix: &str, table: &[ParamInfo]) -> usize {
    let mut total = 0;
    let mut i = 0;
    while i < table.len() {
        total += prefix.len() + table[i].name.len();
        i += 1;
    }
    total
}

/// All of `table`'s names, each with `prefix` before it, one after the other.
///
/// # Panics
/// At compile time, when `L` is not [`names_len`].
#[doc(hidden)]
pub const fn names<const L: usize>(prefix: &str, table: &[ParamInfo]) -> [u8; L] {
    let mut out = [0u8; L];
    let mut at = 0;
    let mut i = 0;
    while i < table.len() {
        at = copy(&mut out, at, prefix.as_bytes());
        at = copy(&mut out, at, table[i].name.as_bytes());
        i += 1;
    }
    assert!(at == L, "names: wrong length");
    out
}

const fn copy(out: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    let mut j = 0;
    while j < bytes.len() {
        out[at + j] = bytes[j];
        j += 1;
    }
    at + bytes.len()
}

/// Writes `table`'s entries into `out` from index `i`, renamed with the names [`names`] made
/// (`prefix_len` bytes of prefix each) and moved by `offset` in the store; returns the next
/// free index.
///
/// # Panics
/// At compile time, when `out` is too short or `names` does not hold the names.
#[doc(hidden)]
pub const fn append(
    out: &mut [ParamInfo],
    mut i: usize,
    table: &'static [ParamInfo],
    names: &'static [u8],
    prefix_len: usize,
    offset: usize,
) -> usize {
    let mut at = 0;
    let mut j = 0;
    while j < table.len() {
        let len = prefix_len + table[j].name.len();
        let (_, rest) = names.split_at(at);
        let (bytes, _) = rest.split_at(len);
        let name = match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(_) => panic!("append: a name is not UTF-8"),
        };
        out[i] = ParamInfo {
            name,
            offset: table[j].offset + offset,
            ..table[j]
        };
        at += len;
        i += 1;
        j += 1;
    }
    i
}

/// A placeholder entry, overwritten by the tables' builders.
#[doc(hidden)]
pub const EMPTY: ParamInfo = ParamInfo {
    name: "",
    shape: &[],
    offset: 0,
    len: 0,
    init: crate::tables::Init::Zeros,
};

/// Values in a parameter or buffer table.
#[doc(hidden)]
pub const fn table_len(table: &[ParamInfo]) -> usize {
    match table.last() {
        Some(p) => p.offset + p.len,
        None => 0,
    }
}

/// Multiply-adds per sample of all of `layers`.
#[doc(hidden)]
pub const fn total_macs(layers: &[LayerInfo]) -> u64 {
    let mut total: u64 = 0;
    let mut i = 0;
    while i < layers.len() {
        total = total.saturating_add(layers[i].macs);
        i += 1;
    }
    total
}

/// The receptive field after a window of `(kernel, stride)` along each axis.
#[doc(hidden)]
pub const fn windowed(r: [Receptive; 2], steps: [[usize; 2]; 2]) -> [Receptive; 2] {
    [
        r[0].window(steps[0][0], steps[0][1]),
        r[1].window(steps[1][0], steps[1][1]),
    ]
}

/// The larger of two receptive fields, axis by axis (where branches meet).
#[doc(hidden)]
pub const fn widest(a: [Receptive; 2], b: [Receptive; 2]) -> [Receptive; 2] {
    let mut out = a;
    let mut k = 0;
    while k < 2 {
        if b[k].field > out[k].field {
            out[k].field = b[k].field;
        }
        if b[k].jump > out[k].jump {
            out[k].jump = b[k].jump;
        }
        k += 1;
    }
    out
}

/// The receptive field after a nested network whose own output units see `inner` of its input.
#[doc(hidden)]
pub const fn through(outer: [Receptive; 2], inner: [Receptive; 2]) -> [Receptive; 2] {
    let mut out = outer;
    let mut k = 0;
    while k < 2 {
        out[k] = Receptive {
            field: outer[k].field.saturating_add(
                inner[k]
                    .field
                    .saturating_sub(1)
                    .saturating_mul(outer[k].jump),
            ),
            jump: outer[k].jump.saturating_mul(inner[k].jump),
        };
        k += 1;
    }
    out
}

/// `[height, width]` of a receptive field.
#[doc(hidden)]
pub const fn fields(r: [Receptive; 2]) -> [usize; 2] {
    [r[0].field, r[1].field]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::Init;

    static INNER: [ParamInfo; 2] = [
        ParamInfo {
            name: "conv.weight",
            shape: &[4, 2, 3, 3],
            offset: 0,
            len: 72,
            init: Init::HeUniform { fan_in: 18 },
        },
        ParamInfo {
            name: "conv.bias",
            shape: &[4],
            offset: 72,
            len: 4,
            init: Init::Zeros,
        },
    ];
    const LEN: usize = names_len("stem.", &INNER);
    const NAMES: [u8; LEN] = names("stem.", &INNER);
    const OUTER: [ParamInfo; 3] = {
        let mut out = [EMPTY; 3];
        out[0] = ParamInfo {
            name: "fc.weight",
            shape: &[2],
            offset: 0,
            len: 2,
            init: Init::Zeros,
        };
        let i = append(&mut out, 1, &INNER, &NAMES, 5, 2);
        assert!(i == 3);
        out
    };

    #[test]
    fn nested_tables_are_renamed_and_moved() {
        assert_eq!(OUTER[1].name, "stem.conv.weight");
        assert_eq!(OUTER[1].offset, 2);
        assert_eq!(OUTER[2].name, "stem.conv.bias");
        assert_eq!(OUTER[2].offset, 74);
        assert_eq!(OUTER[2].shape, [4]);
        assert_eq!(table_len(&OUTER), 78);
    }

    #[test]
    fn receptive_fields_compose() {
        let r = windowed([Receptive::INPUT; 2], [[5, 1], [5, 1]]);
        let r = windowed(r, [[2, 2], [2, 2]]);
        // LeNet-5's first stage (field 6, jump 2) followed by a stage that sees 5 of its units
        // with jump 1 ...
        let inner = windowed([Receptive::INPUT; 2], [[5, 1], [5, 1]]);
        assert_eq!(fields(through(r, inner)), [14, 14]);
        assert_eq!(fields(widest(r, inner)), [6, 6]);
    }
}
