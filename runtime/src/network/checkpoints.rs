//! Checkpoints: a network's parameters and buffers as a safetensors file with PyTorch's names,
//! batch norm's `num_batches_tracked` counters included.

use std::collections::HashMap;
use std::path::Path;

use super::{batch_norm_layers, Network};
use crate::io::{LoadedData, LoadedTensor, TensorData, TypedTensor};
use crate::{Error, LoadProblem, Result};

/// [`Network::save`].
pub(super) fn save<N: Network>(net: &N, path: &Path) -> Result<()> {
    let count = batch_count(net);
    let tensors = state_tensors(net, &count);
    let metadata = HashMap::from([
        ("network".to_string(), N::NAME.to_string()),
        (
            "written_by".to_string(),
            format!("striate {}", env!("CARGO_PKG_VERSION")),
        ),
    ]);
    crate::io::save_typed_tensors(path, &tensors, Some(metadata))
}

/// The network's `num_batches_tracked`, as the `I64` tensor [`state_tensors`] writes.
pub(crate) fn batch_count<N: Network>(net: &N) -> [i64; 1] {
    [i64::try_from(net.state().num_batches_tracked).unwrap_or(i64::MAX)]
}

/// The network's parameters and buffers under their names, and one `num_batches_tracked`
/// counter (`count`, from [`batch_count`]) per batch-norm layer: the tensors of its weight file.
pub(crate) fn state_tensors<'a, N: Network>(
    net: &'a N,
    count: &'a [i64; 1],
) -> Vec<(String, Vec<usize>, TensorData<'a>)> {
    let state = net.state();
    let mut tensors = Vec::new();
    for store in [&state.params, &state.buffers] {
        for info in store.table() {
            let values = &store.as_slice()[info.offset..info.offset + info.len];
            tensors.push((
                info.name.to_string(),
                info.shape.to_vec(),
                TensorData::F32(values),
            ));
        }
    }
    for layer in batch_norm_layers::<N>() {
        tensors.push((counter_name(layer), Vec::new(), TensorData::I64(count)));
    }
    tensors
}

/// A network's state read from a file and checked, not yet written into the network.
pub(crate) struct CheckedState {
    /// Parameters then buffers, in table order.
    tensors: Vec<LoadedTensor>,
    batches_tracked: u64,
}

/// Which networks' files [`load`] accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// Only files whose metadata names this network, or names none (PyTorch's).
    This,
    /// Any file whose tensors fit.
    Any,
}

/// [`Network::load`] and [`Network::load_unchecked`].
pub(super) fn load<N: Network>(
    net: &mut N,
    path: &Path,
    owner: Owner,
    allow_non_finite: bool,
) -> Result<()> {
    let (tensors, metadata) = crate::io::load_typed_tensors_and_metadata(path)?;
    if !allow_non_finite {
        refuse_non_finite(path, &tensors)?;
    }
    if owner == Owner::This {
        if let Some(writer) = metadata.get("network").filter(|w| *w != N::NAME) {
            return Err(Error::format(
                path,
                format!(
                    "written by the network `{writer}`, not `{}` (the file's metadata says so); `load_unchecked` loads it anyway when every tensor's name and shape fit",
                    N::NAME
                ),
            ));
        }
    }
    let mut found: HashMap<String, TypedTensor> =
        tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
    let checked = take_state::<N>(path, &mut found)?;
    if let Some(extra) = found.keys().min() {
        let names: Vec<&str> = N::PARAMS.iter().chain(N::BUFFERS).map(|t| t.name).collect();
        return Err(Error::load(
            path,
            extra,
            LoadProblem::Unused {
                closest: super::freeze::closest(extra, &names, 3),
            },
        ));
    }
    apply_state(net, checked);
    Ok(())
}

/// Takes the tensors of `N`'s parameters, buffers and batch counters out of `found` and checks
/// their shapes; the others stay in `found`.
pub(crate) fn take_state<N: Network>(
    path: &Path,
    found: &mut HashMap<String, TypedTensor>,
) -> Result<CheckedState> {
    let mut batches_tracked = 0;
    for layer in batch_norm_layers::<N>() {
        if let Some(counter) = found.remove(&counter_name(layer)) {
            batches_tracked = batches_tracked.max(read_counter(path, &counter)?);
        }
    }
    let mut ordered = Vec::new();
    for info in N::PARAMS.iter().chain(N::BUFFERS) {
        let t = found.remove(info.name).ok_or_else(|| {
            Error::load(
                path,
                info.name,
                LoadProblem::Missing {
                    expected_shape: info.shape.to_vec(),
                    expected_dtype: "F32",
                },
            )
        })?;
        if t.shape != info.shape || t.data.dtype() != "F32" {
            return Err(mismatch(path, info.name, info.shape, "F32", &t));
        }
        ordered.push(t.into_f32(path)?);
    }
    Ok(CheckedState {
        tensors: ordered,
        batches_tracked,
    })
}

/// Writes a state that [`take_state`] checked into the network.
pub(crate) fn apply_state<N: Network>(net: &mut N, checked: CheckedState) {
    let CheckedState {
        tensors: ordered,
        batches_tracked,
    } = checked;
    let state = net.state_mut();
    let (np, nb) = (state.params.table().len(), state.buffers.table().len());
    debug_assert_eq!(np + nb, ordered.len());
    let (p, b) = ordered.split_at(np);
    for (t, info) in p.iter().zip(N::PARAMS) {
        let dst = &mut state.params.as_mut_slice()[info.offset..info.offset + info.len];
        dst.copy_from_slice(&t.data);
    }
    for (t, info) in b.iter().zip(N::BUFFERS) {
        let dst = &mut state.buffers.as_mut_slice()[info.offset..info.offset + info.len];
        dst.copy_from_slice(&t.data);
    }
    state.num_batches_tracked = batches_tracked;
}

/// [`Error::NonFinite`] for the first NaN or infinite value of an `F32` tensor, in file order.
fn refuse_non_finite(path: &Path, tensors: &[TypedTensor]) -> Result<()> {
    for t in tensors {
        if let LoadedData::F32(values) = &t.data {
            Error::check_finite(
                values,
                || format!("{}: tensor `{}`", path.display(), t.name),
                "; nothing was loaded (`load_with(path, LoadOptions::new().allow_non_finite())` \
                 loads such values)",
            )?;
        }
    }
    Ok(())
}

/// [`Error::Load`]: tensor `name` should be `dtype` of `shape`, and the file holds `t`.
fn mismatch(
    path: &Path,
    name: &str,
    shape: &[usize],
    dtype: &'static str,
    t: &TypedTensor,
) -> Error {
    Error::load(
        path,
        name,
        LoadProblem::Mismatch {
            expected_shape: shape.to_vec(),
            expected_dtype: dtype,
            found_shape: t.shape.clone(),
            found_dtype: t.data.dtype().to_string(),
        },
    )
}

/// PyTorch's name for a batch-norm layer's count of training batches.
fn counter_name(layer: &str) -> String {
    format!("{layer}.num_batches_tracked")
}

/// The count a `num_batches_tracked` tensor holds, after checking that it is a non-negative
/// `I64` scalar (shape `[]`, or `[1]`).
fn read_counter(path: &Path, t: &TypedTensor) -> Result<u64> {
    let value = match (&t.data, t.shape.as_slice()) {
        (LoadedData::I64(values), [] | [1]) => values.first().copied(),
        _ => None,
    };
    let Some(value) = value else {
        // The shape `[1]` is accepted too, as some writers store a scalar.
        return Err(mismatch(path, &t.name, &[], "I64", t));
    };
    u64::try_from(value).map_err(|_| {
        Error::format(
            path,
            format!(
                "tensor `{}`: expected a count of batches, at least 0, found {value}",
                t.name
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, Ix2};
    use safetensors::{Dtype, SafeTensors};

    use super::*;
    use crate::layers::batch_norm_forward;
    use crate::network::{Mode, State};
    use crate::ops::batch_norm::BatchNormGeom;
    use crate::tables::{Init, LayerInfo, ParamInfo, Pass, Slot};
    use crate::tape::Tape;

    /// `input: [2], bn: batch_norm`, written out as `network!` would generate it (forward only).
    struct Norm {
        state: State,
    }

    static PARAMS: [ParamInfo; 2] = [
        ParamInfo {
            name: "bn.weight",
            shape: &[2],
            offset: 0,
            len: 2,
            init: Init::Ones,
        },
        ParamInfo {
            name: "bn.bias",
            shape: &[2],
            offset: 2,
            len: 2,
            init: Init::Zeros,
        },
    ];
    static BUFFERS: [ParamInfo; 2] = [
        ParamInfo {
            name: "bn.running_mean",
            shape: &[2],
            offset: 0,
            len: 2,
            init: Init::Zeros,
        },
        ParamInfo {
            name: "bn.running_var",
            shape: &[2],
            offset: 2,
            len: 2,
            init: Init::Ones,
        },
    ];
    static LAYERS: [LayerInfo; 1] = [LayerInfo {
        name: "bn",
        kind: "batch_norm",
        declaration: "batch_norm",
        output: &[2],
        params: 4,
        receptive_field: [1, 2],
        macs: 0,
        inputs: &[0],
        depth: 0,
        note: "",
    }];
    static TAPE: [Slot; 2] = [
        Slot::act(2),
        Slot {
            act: 2,
            aux_per_sample: 0,
            aux_fixed: 4,
            idx_per_sample: 0,
        },
    ];
    const GEOM: BatchNormGeom = BatchNormGeom {
        c: 2,
        spatial: 1,
        momentum: 0.1,
        eps: 1e-5,
    };

    impl Network for Norm {
        type InputDim = Ix2;
        type OutputDim = Ix2;
        type InputShape = crate::Shape1<2>;
        type OutputShape = crate::Shape1<2>;
        const NAME: &'static str = "Norm";
        const INPUT_SHAPE: &'static [usize] = &[2];
        const OUTPUT_SHAPE: &'static [usize] = &[2];
        const NUM_PARAMS: usize = 4;
        const LAYERS: &'static [LayerInfo] = &LAYERS;
        const PARAMS: &'static [ParamInfo] = &PARAMS;
        const BUFFERS: &'static [ParamInfo] = &BUFFERS;
        const TAPE: &'static [Slot] = &TAPE;
        const GRADS: &'static [usize] = &[0, 1];
        const RECEPTIVE: [striate_geometry::Receptive; 2] = [striate_geometry::Receptive::INPUT; 2];

        fn state(&self) -> &State {
            &self.state
        }
        fn state_mut(&mut self) -> &mut State {
            &mut self.state
        }
        fn from_state(state: State) -> Self {
            Norm { state }
        }
        fn raw_forward(params: &[f32], mut pass: Pass<'_>, tape: &mut Tape) {
            let n = tape.batch();
            let (w, b) = params.split_at(2);
            batch_norm_forward(&mut pass, tape.forward_slots(0, 1), w, b, 0, 0, &GEOM, n);
        }
        fn raw_backward(
            _: &[f32],
            _: &mut [f32],
            _: &mut Tape,
            _: bool,
            _: crate::network::FrozenView<'_>,
        ) {
            // These tests never go backward.
        }
    }

    /// After three training passes, the file holds `bn.num_batches_tracked` = 3 as PyTorch
    /// has it (an int64 scalar), beside exactly the other keys of
    /// `torch.nn.BatchNorm1d(2).state_dict()`; evaluation passes do not count.
    #[test]
    fn save_writes_the_count_as_pytorch_does() {
        let path = std::env::temp_dir().join(format!(
            "striate-network-count-{}.safetensors",
            std::process::id()
        ));
        let mut net = Norm::init(0);
        let x = Array2::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as f32);
        let mut tape = Tape::new();
        for _ in 0..3 {
            net.forward_train(x.view(), &mut tape).unwrap();
            net.forward_tape(x.view(), &mut tape, Mode::Eval).unwrap();
            net.infer(x.view(), &mut tape).unwrap();
        }
        assert_eq!(net.state().num_batches_tracked, 3);
        net.save(&path).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut names = file.names();
        names.sort();
        assert_eq!(
            names,
            [
                "bn.bias",
                "bn.num_batches_tracked",
                "bn.running_mean",
                "bn.running_var",
                "bn.weight"
            ]
        );
        let counter = file.tensor("bn.num_batches_tracked").unwrap();
        assert_eq!(counter.dtype(), Dtype::I64);
        assert_eq!(counter.shape(), [0usize; 0]);
        assert_eq!(counter.data(), 3i64.to_le_bytes());
        assert_eq!(file.tensor("bn.running_var").unwrap().dtype(), Dtype::F32);
    }
}
