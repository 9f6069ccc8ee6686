//! ONNX export: the exported models pass `onnx.checker` and compute in onnxruntime what
//! striate computes, to 1e-5 (relative above 1), for LeNet-5, AlexNet, a network with every
//! image layer kind, ResNet-20, and the sequence kinds (`sequence`: every recurrent cell and
//! option, the reductions over time, sequential MNIST); and a failed export writes nothing.
//!
//! The comparisons run `scripts/onnx_check.py` with the Python of `$STRIATE_ONNX_PYTHON`, which
//! needs `onnx`, `onnxruntime` and `numpy` (`.ci/run` installs them into `target/onnx-venv`);
//! without the variable they are skipped and say so.

use std::path::Path;
use std::process::Command;

use rand::{Rng, SeedableRng};
use striate::ndarray::{Array, ShapeBuilder};
use striate::prelude::*;
use striate::ParamStore;

#[path = "common/temp_dir.rs"]
mod temp_dir;

/// The main example's LeNet-5.
#[allow(dead_code)]
#[path = "../examples/lenet.rs"]
mod lenet;
use lenet::LeNet5;

/// The AlexNet of examples/alexnet.rs, 62 million parameters.
#[allow(dead_code)]
#[path = "../examples/alexnet.rs"]
mod alexnet;
use alexnet::AlexNet;

/// ResNet-20 of examples/resnet.rs: residual blocks with batch norm and projections.
#[allow(dead_code)]
#[path = "../examples/resnet.rs"]
mod resnet;
use resnet::ResNet20;

/// The sequence kinds: rnn, lstm and gru with every option, the reductions over time, layers
/// on every step, and the sequential-MNIST LSTM.
#[path = "onnx/sequence.rs"]
mod sequence;

/// The types striate writes with, to read its models back.
#[path = "../runtime/src/onnx/proto.rs"]
#[allow(clippy::all, missing_docs, dead_code)]
mod proto;

use prost::Message;
use proto::{tensor_proto::DataType, ModelProto};

network! {
    /// A network nested in [`Every`].
    pub struct Stem {
        input: [2, 12, 12],
        conv: conv2d(6, kernel = 3, pad = 1, bias = false),
        bn: batch_norm(eps = 1e-3),
        leaky_relu(0.2),
    }
}

network! {
    /// Every layer kind and block, with the paddings and roundings the language has.
    pub struct Every {
        input: [2, 12, 12],
        stem: Stem -> [6, 12, 12],
        max_pool(3, stride = 2, pad = 1) -> [6, 6, 6],
        res: residual {
            conv1: conv2d(6, kernel = 3, pad = 1), bn1: batch_norm, relu,
            conv2: conv2d(6, kernel = (3, 1), pad = (1, 0)),
        },
        proj: residual(shortcut = { conv: conv2d(8, kernel = 1, stride = 2) }) {
            conv: conv2d(8, kernel = 3, stride = 2, pad = 1), tanh,
        } -> [8, 3, 3],
        up: upsample(2) -> [8, 6, 6],
        mix: concat(a = { deconv: conv_transpose2d(4, kernel = 3, stride = 2, pad = 1, output_pad = 1), avg_pool(2) }, b = {}) -> [12, 6, 6],
        avg_pool(3, stride = 2, pad = 1, floor = true) -> [12, 3, 3],
        smooth: upsample(2, mode = bilinear) -> [12, 6, 6],
        conv: conv2d(4, kernel = 2, stride = 2, floor = true) -> [4, 3, 3],
        sigmoid,
        flatten,
        fc1: linear(20, bias = false),
        bn: batch_norm,
        dropout(0.3),
        reshape([5, 2, 2]),
        deconv: conv_transpose2d(3, kernel = 2, stride = 1, bias = false) -> [3, 3, 3],
        flatten,
        fc2: linear(4),
    }
}

network! {
    /// A network whose last layer is a nested one, which then writes the model's output.
    pub struct EndsNested {
        input: [2, 12, 12],
        mix: concat(a = { conv: conv2d(1, kernel = 1) }, b = {}) -> [3, 12, 12],
        conv: conv2d(2, kernel = 3, pad = 1),
        stem: Stem -> [6, 12, 12],
    }
}

/// Every tensor of `store` whose name ends in `suffix` drawn from `U(range)`.
fn draw(store: &mut ParamStore, suffix: &str, range: std::ops::Range<f32>, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for info in store.table().iter().filter(|p| p.name.ends_with(suffix)) {
        for v in store.get_mut(info.name).unwrap() {
            *v = rng.random_range(range.clone());
        }
    }
}

/// Biases away from 0, so that a bias left out or misplaced shows, and batch norm's
/// statistics, scales and shifts away from 0 and 1, so that evaluation-mode batch norm does
/// something to check.
fn vary(net: &mut impl Network, seed: u64) {
    draw(net.params_mut(), ".bias", -0.5..0.5, seed);
    draw(net.buffers_mut(), ".running_mean", -0.5..0.5, seed + 1);
    draw(net.buffers_mut(), ".running_var", 0.5..2.0, seed + 2);
    let scales: Vec<String> = net
        .buffers()
        .table()
        .iter()
        .filter_map(|b| b.name.strip_suffix(".running_mean"))
        .map(|layer| format!("{layer}.weight"))
        .collect();
    for (k, name) in scales.iter().enumerate() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 3 + k as u64);
        for v in net.params_mut().get_mut(name).unwrap() {
            *v = rng.random_range(0.5..1.5);
        }
    }
}

/// A `.npy` file (format 1.0) of little-endian `f32`.
fn write_npy(path: &Path, shape: &[usize], values: &[f32]) {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}").into_bytes();
    // Magic, version and length take 10 bytes; the header ends in a newline at a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header);
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// The Python with onnx and onnxruntime, or `None` after saying the test is skipped.
fn python(test: &str) -> Option<String> {
    match std::env::var("STRIATE_ONNX_PYTHON") {
        Ok(python) => Some(python),
        Err(_) => {
            println!(
                "skipped {test}: STRIATE_ONNX_PYTHON is not set (a Python with onnx, \
                 onnxruntime and numpy; .ci/run makes one in target/onnx-venv)"
            );
            None
        }
    }
}

/// Exports `net`, runs it in onnxruntime on `x` through scripts/onnx_check.py and compares
/// with `net.forward(x)` to 1e-5 (relative above 1); returns the script's report.
fn check_in_onnxruntime<N: Network>(
    python: &str,
    net: &N,
    x: ArrayView<'_, f32, N::InputDim>,
) -> String {
    check_in_onnxruntime_within(python, net, x, "1e-5")
}

/// [`check_in_onnxruntime`] to `tolerance`.
fn check_in_onnxruntime_within<N: Network>(
    python: &str,
    net: &N,
    x: ArrayView<'_, f32, N::InputDim>,
    tolerance: &str,
) -> String {
    let case = Case::export(net, x);
    let (passed, report) = case.run(python, &case.model, tolerance);
    assert!(passed, "{}:\n{report}", N::NAME);
    assert!(
        report.contains("ok: matches the expected output"),
        "{report}"
    );
    println!("{}:\n{report}", N::NAME);
    report
}

/// An exported model with an input batch and striate's output for it, in a temporary folder.
struct Case {
    _dir: temp_dir::TempDir,
    model: std::path::PathBuf,
    input: std::path::PathBuf,
    expected: std::path::PathBuf,
}

impl Case {
    fn export<N: Network>(net: &N, x: ArrayView<'_, f32, N::InputDim>) -> Case {
        let dir = temp_dir::TempDir::new("onnx");
        let model = dir.path().join("model.onnx");
        net.export_onnx(&model).unwrap();
        let y = net.forward(x.view()).unwrap();
        let (input, expected) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
        write_npy(&input, x.shape(), x.as_slice().unwrap());
        write_npy(&expected, y.shape(), y.as_slice().unwrap());
        Case {
            _dir: dir,
            model,
            input,
            expected,
        }
    }

    /// Runs scripts/onnx_check.py on `model` (the exported one, or a changed copy) with the
    /// case's input and expected output: whether it passed, and its report.
    fn run(&self, python: &str, model: &Path, tolerance: &str) -> (bool, String) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/onnx_check.py");
        let out = Command::new(python)
            .arg(script)
            .arg(model)
            .arg("--input")
            .arg(&self.input)
            .arg("--expected")
            .arg(&self.expected)
            .args(["--tolerance", tolerance])
            .output()
            .unwrap_or_else(|e| panic!("{python} does not run: {e}"));
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), report)
    }
}

/// Values drawn from `U(-1, 1)`.
fn random<Sh: ShapeBuilder>(shape: Sh, seed: u64) -> Array<f32, Sh::Dim> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Array::from_shape_simple_fn(shape, || rng.random_range(-1.0..1.0))
}

#[test]
fn lenet5_runs_in_onnxruntime_as_in_striate() {
    let Some(python) = python("lenet5_runs_in_onnxruntime_as_in_striate") else {
        return;
    };
    let mut net = LeNet5::init(1);
    vary(&mut net, 2);
    check_in_onnxruntime(&python, &net, random((5, 1, 28, 28), 3).view());
}

#[test]
fn alexnet_runs_in_onnxruntime_as_in_striate() {
    let Some(python) = python("alexnet_runs_in_onnxruntime_as_in_striate") else {
        return;
    };
    let mut net = AlexNet::init(4);
    vary(&mut net, 5);
    // AlexNet's conv3-5 (3x3, stride 1, 192-384 channels) run Winograd's F(4x4, 3x3) in
    // striate, whose rounding is about 1e-5 of the largest output (ops/conv2d/winograd.rs):
    // onnxruntime's direct sums differ from them by up to 1.1e-5 here, so 2e-5.
    check_in_onnxruntime_within(&python, &net, random((2, 3, 227, 227), 6).view(), "2e-5");
}

#[test]
fn every_layer_kind_runs_in_onnxruntime_as_in_striate() {
    let Some(python) = python("every_layer_kind_runs_in_onnxruntime_as_in_striate") else {
        return;
    };
    let mut net = Every::init(7);
    vary(&mut net, 8);
    let report = check_in_onnxruntime(&python, &net, random((3, 2, 12, 12), 10).view());
    // The nested network's layers are inlined.
    assert!(report.contains("nodes"), "{report}");
}

#[test]
fn resnet20_runs_in_onnxruntime_as_in_striate() {
    let Some(python) = python("resnet20_runs_in_onnxruntime_as_in_striate") else {
        return;
    };
    let mut net = ResNet20::init(11);
    vary(&mut net, 12);
    check_in_onnxruntime(&python, &net, random((4, 3, 32, 32), 14).view());
}

#[test]
fn a_nested_network_last_writes_the_output() {
    let Some(python) = python("a_nested_network_last_writes_the_output") else {
        return;
    };
    let mut net = EndsNested::init(19);
    vary(&mut net, 20);
    check_in_onnxruntime(&python, &net, random((2, 2, 12, 12), 21).view());
}

/// A batch of one and a batch of 7 run in the same model: the batch size is left free.
#[test]
fn the_batch_size_is_free() {
    let Some(python) = python("the_batch_size_is_free") else {
        return;
    };
    let net = LeNet5::init(15);
    for n in [1, 7] {
        check_in_onnxruntime(&python, &net, random((n, 1, 28, 28), n as u64).view());
    }
}

/// Without `--input`, the script draws a batch from the model's input shape.
#[test]
fn the_script_checks_any_exported_file() {
    let Some(python) = python("the_script_checks_any_exported_file") else {
        return;
    };
    let dir = temp_dir::TempDir::new("onnx-script");
    let model = dir.path().join("every.onnx");
    Every::init(16).export_onnx(&model).unwrap();
    let out = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/onnx_check.py"
        ))
        .arg(&model)
        .args(["--batch", "3"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("input input [3, 2, 12, 12] -> output [3, 4]"),
        "{report}"
    );
    // A wrong expected output fails the check.
    let wrong = dir.path().join("wrong.npy");
    write_npy(&wrong, &[3, 4], &[0.5; 12]);
    let out = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/onnx_check.py"
        ))
        .arg(&model)
        .args(["--batch", "3", "--expected"])
        .arg(&wrong)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A network with a NaN weight is refused, naming it, and the earlier file stays.
#[test]
fn a_diverged_network_is_not_exported() {
    let dir = temp_dir::TempDir::new("onnx-nan");
    let path = dir.path().join("lenet.onnx");
    let mut net = LeNet5::init(17);
    net.export_onnx(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    net.params_mut()
        .get_mut("fc2.bias")
        .unwrap()
        .as_slice_mut()
        .unwrap()[3] = f32::NAN;
    let err = net.export_onnx(&path).unwrap_err();
    assert!(matches!(err, Error::NonFinite { index: 3, .. }), "{err}");
    assert!(err.to_string().contains("fc2.bias"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file is left");
}

network! {
    /// Token ids, embedded and read by a bidirectional GRU.
    struct TokenReader {
        input: tokens[4],
        words: embedding(6, 3),
        rec: gru(5, bidirectional = true),
        last,
        fc: linear(2),
    }
}

/// Token ids (whole numbers in the float input) run through `Cast` and `Gather` in
/// onnxruntime as through striate's embedding, every id of the vocabulary included.
#[test]
fn an_embedding_runs_in_onnxruntime_as_in_striate() {
    let Some(python) = python("an_embedding_runs_in_onnxruntime_as_in_striate") else {
        return;
    };
    let mut net = TokenReader::init(3);
    vary(&mut net, 31);
    let ids = Array::from_shape_fn((3, 4), |(n, t)| ((n * 4 + t * 5) % 6) as f32);
    check_in_onnxruntime(&python, &net, ids.view());
}

/// A directory at the path is an error and stays.
#[test]
fn exporting_onto_a_directory_is_an_error() {
    let dir = temp_dir::TempDir::new("onnx-dir");
    let err = LeNet5::init(18).export_onnx(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(dir.path().is_dir());
}

network! {
    /// Nested in [`Outer`].
    pub struct Inner { input: [2, 6, 6], conv: conv2d(3, kernel = 3, pad = 1, bias = false), bn: batch_norm }
}

network! {
    /// A nested network, a residual block and a classifier.
    pub struct Outer {
        input: [2, 6, 6],
        features: Inner -> [3, 6, 6],
        block: residual { conv: conv2d(3, kernel = 1), relu },
        max_pool(2),
        flatten,
        fc: linear(4),
    }
}

fn decode(bytes: &[u8]) -> ModelProto {
    ModelProto::decode(bytes).expect("a model prost reads back")
}

#[test]
fn the_model_declares_its_opset_input_and_output() {
    let model = decode(&striate::onnx::encode(&Outer::init(0)).unwrap());
    assert_eq!(model.ir_version, Some(striate::onnx::IR_VERSION));
    assert_eq!(model.opset_import.len(), 1);
    assert_eq!(model.opset_import[0].domain.as_deref(), Some(""));
    assert_eq!(model.opset_import[0].version, Some(17));
    let graph = model.graph.unwrap();
    let dims = |v: &proto::ValueInfoProto| -> Vec<String> {
        use proto::tensor_shape_proto::dimension::Value;
        let Some(proto::type_proto::Value::TensorType(t)) =
            v.r#type.as_ref().unwrap().value.as_ref()
        else {
            panic!("a tensor type")
        };
        assert_eq!(t.elem_type, Some(DataType::Float as i32));
        t.shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| match d.value.as_ref().unwrap() {
                Value::DimValue(v) => v.to_string(),
                Value::DimParam(p) => p.clone(),
            })
            .collect()
    };
    assert_eq!(graph.input[0].name.as_deref(), Some("input"));
    assert_eq!(dims(&graph.input[0]), ["N", "2", "6", "6"]);
    assert_eq!(graph.output[0].name.as_deref(), Some("output"));
    assert_eq!(dims(&graph.output[0]), ["N", "4"]);
    // The last node writes the output; the first reads the input (inside the nested network).
    assert_eq!(graph.node.last().unwrap().output, ["output"]);
    assert_eq!(graph.node[0].input[0], "input");
}

/// The nested network is inlined: its nodes in order, its tensors under the layer's name.
#[test]
fn nested_networks_are_inlined_with_their_names() {
    let net = Outer::init(1);
    let graph = decode(&striate::onnx::encode(&net).unwrap()).graph.unwrap();
    let ops: Vec<&str> = graph
        .node
        .iter()
        .map(|n| n.op_type.as_deref().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "Conv",
            "BatchNormalization",
            "Conv",
            "Relu",
            "Add",
            "MaxPool",
            "Flatten",
            "Gemm"
        ]
    );
    let mut names: Vec<&str> = graph
        .initializer
        .iter()
        .map(|t| t.name.as_deref().unwrap())
        .collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = Outer::PARAMS
        .iter()
        .chain(&Outer::BUFFERS)
        .map(|p| p.name)
        .collect();
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert!(names.contains(&"features.bn.running_var"), "{names:?}");
    // The conv without bias reads two inputs; the residual add reads the block's input, which
    // is the nested network's output.
    assert_eq!(graph.node[0].input, ["input", "features.conv.weight"]);
    assert_eq!(graph.node[4].input[1], graph.node[1].output[0]);
    // Every value is written once.
    let mut outputs: Vec<&String> = graph.node.iter().flat_map(|n| &n.output).collect();
    let count = outputs.len();
    outputs.sort();
    outputs.dedup();
    assert_eq!(outputs.len(), count);
}

/// Initializers hold the stores' values, little-endian, with their PyTorch shapes.
#[test]
fn initializers_hold_the_weights() {
    let mut net = Outer::init(2);
    net.buffers_mut()
        .get_mut("features.bn.running_mean")
        .unwrap()
        .fill(0.25);
    let graph = decode(&striate::onnx::encode(&net).unwrap()).graph.unwrap();
    for info in Outer::PARAMS.iter().chain(&Outer::BUFFERS) {
        let t = graph
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(info.name))
            .unwrap();
        let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        assert_eq!(dims, info.shape, "{}", info.name);
        let values: Vec<f32> = t
            .raw_data
            .as_ref()
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let store = if info.name.contains("running") {
            net.buffers()
        } else {
            net.params()
        };
        assert_eq!(
            values,
            store
                .get(info.name)
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            "{}",
            info.name
        );
    }
}
