//! Partial loads: some of a network's tensors from a weight file, possibly under another
//! prefix, all checked before any is written.

use std::collections::HashMap;
use std::path::Path;

use super::{batch_norm_layers, Network};
use crate::io::{LoadedData, TypedTensor};
use crate::{Error, LoadProblem, Result};

/// What a partial load did: the network's tensors it loaded, those of the part it did not find
/// in the file, and the file's tensors it did not use, each sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The network's tensors (parameters, buffers and batch counters) that were loaded, by
    /// their names in the network.
    pub loaded: Vec<String>,
    /// The network's tensors of the part that the file does not have (only a non-strict load
    /// leaves any); they kept their values.
    pub missing: Vec<String>,
    /// The file's tensors that were not loaded, by their names in the file.
    pub unused: Vec<String>,
}

/// Which tensors a partial load moves: the network's tensors under `to` from the file's under
/// `from` (the rest of each name the same), and whether every one of the network's must be
/// there.
pub(crate) struct Selection<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub require_all: bool,
}

/// `name` with the dotted prefix `prefix` removed (`""` matches every name).
fn under<'n>(name: &'n str, prefix: &str) -> Option<&'n str> {
    if prefix.is_empty() {
        return Some(name);
    }
    name.strip_prefix(prefix)?.strip_prefix('.')
}

fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}.{rest}")
    }
}

/// One tensor the network expects: its name, shape and dtype, and where it goes.
struct Expected {
    name: String,
    shape: &'static [usize],
    dtype: &'static str,
    /// `Some((learnable, offset, len))` for a parameter or buffer; `None` for a batch counter.
    slot: Option<(bool, usize, usize)>,
}

fn expected<N: Network>() -> Vec<Expected> {
    let mut out = Vec::new();
    for (table, learnable) in [(N::PARAMS, true), (N::BUFFERS, false)] {
        for info in table {
            out.push(Expected {
                name: info.name.to_string(),
                shape: info.shape,
                dtype: "F32",
                slot: Some((learnable, info.offset, info.len)),
            });
        }
    }
    for layer in batch_norm_layers::<N>() {
        out.push(Expected {
            name: format!("{layer}.num_batches_tracked"),
            shape: &[],
            dtype: "I64",
            slot: None,
        });
    }
    out
}

/// Loads what `selection` selects from the file at `path` into `net`, or nothing when an error
/// is returned.
pub(crate) fn load<N: Network>(
    net: &mut N,
    path: &Path,
    selection: Selection<'_>,
) -> Result<LoadReport> {
    let (tensors, _) = crate::io::load_typed_tensors_and_metadata(path)?;
    let to = selection.to.trim_end_matches('.');
    let from = selection.from.trim_end_matches('.');
    let part: Vec<Expected> = expected::<N>()
        .into_iter()
        .filter(|e| under(&e.name, to).is_some())
        .collect();
    if part.is_empty() {
        let table: Vec<_> = N::PARAMS.iter().chain(N::BUFFERS).copied().collect();
        return Err(super::freeze::unknown(N::NAME, &table, to));
    }
    let mut file: HashMap<&str, &TypedTensor> =
        tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut report = LoadReport::default();
    let mut writes: Vec<(&Expected, &TypedTensor)> = Vec::new();
    for e in &part {
        let rest = under(&e.name, to).expect("filtered above");
        let file_name = join(from, rest);
        let Some(t) = file.remove(file_name.as_str()) else {
            // A batch counter may be absent, as `Network::load` accepts.
            if selection.require_all && e.slot.is_some() {
                return Err(Error::Load {
                    path: path.to_path_buf(),
                    tensor: e.name.clone(),
                    problem: Box::new(LoadProblem::Missing {
                        expected_shape: e.shape.to_vec(),
                        expected_dtype: e.dtype,
                    }),
                });
            }
            report.missing.push(e.name.clone());
            continue;
        };
        check(path, e, t)?;
        writes.push((e, t));
        report.loaded.push(e.name.clone());
    }
    report.unused = file.keys().map(|k| k.to_string()).collect();
    report.unused.sort();
    report.loaded.sort();
    report.missing.sort();
    apply(net, &writes);
    Ok(report)
}

/// `Err` naming the tensor when `t` does not have `e`'s dtype and shape (a counter may have
/// shape `[1]`), or holds a NaN, an infinity or a negative count.
fn check(path: &Path, e: &Expected, t: &TypedTensor) -> Result<()> {
    let counter_shape = e.slot.is_none() && t.shape.as_slice() == [1];
    if t.data.dtype() != e.dtype || (t.shape != e.shape && !counter_shape) {
        return Err(Error::Load {
            path: path.to_path_buf(),
            tensor: e.name.clone(),
            problem: Box::new(LoadProblem::Mismatch {
                expected_shape: e.shape.to_vec(),
                expected_dtype: e.dtype,
                found_shape: t.shape.clone(),
                found_dtype: t.data.dtype().to_string(),
            }),
        });
    }
    match &t.data {
        LoadedData::F32(values) => Error::check_finite(
            values,
            || format!("{}: tensor `{}`", path.display(), t.name),
            "; nothing was loaded",
        ),
        LoadedData::I64(values) if values.iter().any(|&v| v < 0) => Err(Error::format(
            path,
            format!(
                "tensor `{}`: a batch count must not be negative, found {:?}",
                t.name, values
            ),
        )),
        _ => Ok(()),
    }
}

/// Writes the checked tensors; the batch count becomes the largest count loaded, if any.
fn apply<N: Network>(net: &mut N, writes: &[(&Expected, &TypedTensor)]) {
    let state = net.state_mut();
    let mut count = None;
    for (e, t) in writes {
        match (&t.data, e.slot) {
            (LoadedData::F32(values), Some((learnable, offset, len))) => {
                let store = if learnable {
                    &mut state.params
                } else {
                    &mut state.buffers
                };
                store.as_mut_slice()[offset..offset + len].copy_from_slice(values);
            }
            (LoadedData::I64(values), None) => {
                let v = values.first().copied().unwrap_or(0).max(0) as u64;
                count = Some(count.map_or(v, |c: u64| c.max(v)));
            }
            _ => unreachable!("checked: dtype matches slot"),
        }
    }
    if let Some(c) = count {
        state.num_batches_tracked = c;
    }
}
