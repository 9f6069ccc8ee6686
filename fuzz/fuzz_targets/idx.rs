//! The IDX reader from arbitrary bytes, raw or gzip-compressed (the reader recognises gzip by
//! its magic `1f 8b`; the seeds have both).
//!
//! Each input is parsed in memory (`parse_idx`) and from a file (`read_idx_limited`, once with
//! the default limit and once with a small one). Checked: nothing panics or aborts; an array
//! that is returned holds exactly the product of its dimensions; the file and the in-memory
//! readers agree; a small limit is never exceeded.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use striate::data::{parse_idx, read_idx_limited, IdxArray, MAX_IDX_BYTES};

/// The file every run rewrites.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| striate_fuzz::scratch_dir("idx").join("input.idx"))
}

/// The limit of the second file read: small enough that inputs of libFuzzer's sizes reach it.
const SMALL_LIMIT: u64 = 1000;

fn well_formed(array: &IdxArray) {
    let product = array
        .dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .expect("the dimensions of an array that was read multiply without overflow");
    assert_eq!(array.data.len(), product, "dims {:?}", array.dims);
}

fuzz_target!(|data: &[u8]| {
    let in_memory = parse_idx(data, "fuzz input");
    if let Ok(array) = &in_memory {
        well_formed(array);
    }

    let path = scratch();
    std::fs::write(path, data).expect("write the scratch file");
    let from_file = read_idx_limited(path, MAX_IDX_BYTES);
    match (&in_memory, &from_file) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the file and the in-memory reader differ"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("parse_idx gave {a:?} but read_idx_limited gave {b:?}"),
    }

    match read_idx_limited(path, SMALL_LIMIT) {
        Ok(array) => {
            well_formed(&array);
            assert!(array.data.len() as u64 <= SMALL_LIMIT);
            assert_eq!(from_file.as_ref().ok(), Some(&array));
        }
        Err(e) => {
            // Under the limit, the small-limit read fails exactly when the other one does.
            if let Ok(array) = &from_file {
                assert!(array.data.len() as u64 > SMALL_LIMIT, "{e}");
            }
        }
    }
});
