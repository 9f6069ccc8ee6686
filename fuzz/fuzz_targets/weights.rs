//! The weight-file loader, `Network::load` and `Network::load_unchecked`, into a small network
//! with convolution, batch norm (so buffers and `num_batches_tracked`) and linear layers.
//!
//! The first byte picks the mode and the loader:
//! - bit 0 clear: the rest of the input is the file, as it is (the seeds include a real saved
//!   file, so libFuzzer's own mutations start from a valid one);
//! - bit 0 set: the rest is read with `arbitrary` as a list of edits (bit flips, byte writes,
//!   cuts, insertions, a new header length, text spliced into the JSON header) applied to a
//!   file that `save` wrote for this network, so that most inputs get past the header;
//! - bit 1 picks `load_unchecked` over `load`.
//!
//! Checked: nothing panics or aborts, and a load that fails changes nothing (every parameter
//! and buffer, bit for bit, and the batch counter).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use striate::prelude::*;
use striate::Network;

network! {
    /// Convolution, batch norm on images and on vectors, linear layers with and without bias.
    pub struct Small {
        input: [2, 6, 6],
        conv: conv2d(3, kernel = 3, pad = 1),
        bn: batch_norm,
        relu,
        max_pool(2),
        flatten,
        fc1: linear(5),
        bn1: batch_norm,
        fc2: linear(2, bias = false),
    }
}

struct Scratch {
    /// Rewritten by every run.
    path: PathBuf,
    /// What `save` writes for `Small::init(1)` with a nonzero batch counter.
    valid: Vec<u8>,
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let dir = striate_fuzz::scratch_dir("weights");
        let valid_path = dir.join("valid.safetensors");
        let mut net = Small::init(1);
        net.state_mut().num_batches_tracked = 3;
        net.save(&valid_path).expect("save the valid file");
        let valid = std::fs::read(&valid_path).expect("read the valid file back");
        let path = dir.join("input.safetensors");
        Scratch { path, valid }
    })
}

/// One edit of the valid file. Positions wrap around the current length.
#[derive(Arbitrary, Debug)]
enum Edit {
    FlipBit {
        at: u32,
        bit: u8,
    },
    SetByte {
        at: u32,
        value: u8,
    },
    Truncate {
        len: u32,
    },
    Insert {
        at: u32,
        bytes: Vec<u8>,
    },
    Remove {
        at: u32,
        len: u16,
    },
    /// The 8-byte little-endian header length that opens a safetensors file.
    HeaderLen {
        len: u64,
    },
    /// Replaces bytes of the JSON header (after the length) with text, so that numbers,
    /// names, dtypes and offsets change while the header mostly stays JSON.
    SpliceHeader {
        at: u16,
        cut: u8,
        text: String,
    },
}

fn apply(file: &mut Vec<u8>, edit: Edit) {
    let wrap = |at: u32, len: usize| if len == 0 { 0 } else { at as usize % len };
    match edit {
        Edit::FlipBit { at, bit } => {
            if !file.is_empty() {
                let i = wrap(at, file.len());
                file[i] ^= 1 << (bit % 8);
            }
        }
        Edit::SetByte { at, value } => {
            if !file.is_empty() {
                let i = wrap(at, file.len());
                file[i] = value;
            }
        }
        Edit::Truncate { len } => file.truncate(wrap(len, file.len() + 1)),
        Edit::Insert { at, bytes } => {
            let i = wrap(at, file.len() + 1);
            file.splice(i..i, bytes);
        }
        Edit::Remove { at, len } => {
            let i = wrap(at, file.len() + 1);
            let end = (i + len as usize).min(file.len());
            file.drain(i..end);
        }
        Edit::HeaderLen { len } => {
            if file.len() >= 8 {
                file[..8].copy_from_slice(&len.to_le_bytes());
            }
        }
        Edit::SpliceHeader { at, cut, text } => {
            let header_end = file
                .get(..8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| n.checked_add(8))
                .unwrap_or(0)
                .min(file.len());
            if header_end > 8 {
                let i = 8 + at as usize % (header_end - 8);
                let end = (i + cut as usize).min(header_end);
                file.splice(i..end, text.into_bytes());
            }
        }
    }
}

/// Every value of the network, bit for bit, with the batch counter.
fn snapshot(net: &Small) -> (Vec<(String, Vec<u32>)>, u64) {
    let mut values = Vec::new();
    net.visit(|t| {
        values.push((
            t.info.name.to_string(),
            t.values.iter().map(|v| v.to_bits()).collect(),
        ));
    });
    (values, net.state().num_batches_tracked)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let scratch = scratch();
    let file = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut file = scratch.valid.clone();
        let mut u = Unstructured::new(rest);
        let Ok(edits) = u.arbitrary_iter::<Edit>() else {
            return;
        };
        for edit in edits.take(16) {
            let Ok(edit) = edit else { break };
            apply(&mut file, edit);
        }
        file
    };
    std::fs::write(&scratch.path, &file).expect("write the scratch file");

    let mut net = Small::init(2);
    let before = snapshot(&net);
    let result = if mode & 2 == 0 {
        net.load(&scratch.path)
    } else {
        net.load_unchecked(&scratch.path)
    };
    if let Err(e) = result {
        // Formatting the error must not panic either.
        let _ = e.to_string();
        assert!(
            snapshot(&net) == before,
            "a failed load changed the network: {e}"
        );
    }
});
