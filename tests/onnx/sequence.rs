//! The sequence kinds in onnxruntime: `rnn` (tanh and ReLU), `lstm` and `gru`, each alone,
//! stacked, bidirectional and both, compared on their whole output sequences; `last`,
//! `final_state`, `mean_over_time` and `max_over_time`; linear layers, activations, dropout
//! and a residual block on every step; and the sequential-MNIST LSTM. The gates' weights
//! differ from gate to gate, and the same models with PyTorch's gate order left in, or a GRU
//! without `linear_before_reset`, fail the comparison, so the reordering is what makes them
//! pass.

use prost::Message;
use striate::ndarray::Ix3;
use striate::prelude::*;

use super::proto::ModelProto;
use super::{check_in_onnxruntime, decode, python, random, vary, Case};

/// The sequential-MNIST LSTM of examples/sequential_mnist.rs.
#[allow(dead_code)]
#[path = "../../examples/sequential_mnist.rs"]
mod sequential_mnist;
use sequential_mnist::RowReader;

/// Declares one network per recurrent layer, reading `[6, 3]` and giving the layer's whole
/// output sequence, so that every step of every direction is compared.
macro_rules! recurrent_networks {
    ($($name:ident { $($layer:tt)* })*) => {$(
        network! {
            #[doc = concat!("`", stringify!($($layer)*), "` on `[6, 3]`.")]
            pub struct $name { input: [6, 3], $($layer)* }
        }
    )*};
}

recurrent_networks! {
    RnnTanh { rec: rnn(5) }
    RnnTanhStacked { rec: rnn(5, layers = 3) }
    RnnTanhBi { rec: rnn(5, bidirectional = true) }
    RnnTanhStackedBi { rec: rnn(5, layers = 2, bidirectional = true) }
    RnnRelu { rec: rnn(5, activation = relu) }
    RnnReluStacked { rec: rnn(5, activation = relu, layers = 3) }
    RnnReluBi { rec: rnn(5, activation = relu, bidirectional = true) }
    RnnReluStackedBi { rec: rnn(5, activation = relu, layers = 2, bidirectional = true) }
    Lstm { rec: lstm(5) }
    LstmStacked { rec: lstm(5, layers = 3) }
    LstmBi { rec: lstm(5, bidirectional = true) }
    LstmStackedBi { rec: lstm(5, layers = 2, bidirectional = true) }
    Gru { rec: gru(5) }
    GruStacked { rec: gru(5, layers = 3) }
    GruBi { rec: gru(5, bidirectional = true) }
    GruStackedBi { rec: gru(5, layers = 2, bidirectional = true) }
}

/// Offsets added to each gate's biases and scales of each gate's weights: gate `k` of every
/// recurrent tensor differs from the others, so that a gate read in another's place changes
/// the output.
const GATE_OFFSETS: [f32; 4] = [0.5, -0.7, 0.3, -0.2];
const GATE_SCALES: [f32; 4] = [1.6, 0.6, 1.2, 0.9];

/// Makes the gates of every recurrent tensor of `net` (with `gates` gates) differ.
fn distinct_gates(net: &mut impl Network, gates: usize) {
    let names: Vec<&'static str> = net.params().table().iter().map(|p| p.name).collect();
    for name in names {
        let is_bias = name.contains(".bias_ih_") || name.contains(".bias_hh_");
        let is_weight = name.contains(".weight_ih_") || name.contains(".weight_hh_");
        if !is_bias && !is_weight {
            continue;
        }
        let mut values = net.params_mut().get_mut(name).unwrap();
        let values = values.as_slice_mut().unwrap();
        let block = values.len() / gates;
        for (k, gate) in values.chunks_exact_mut(block).enumerate() {
            for v in gate {
                *v = if is_bias {
                    *v + GATE_OFFSETS[k]
                } else {
                    *v * GATE_SCALES[k]
                };
            }
        }
    }
}

/// Exports `net` with distinct gates and compares it with striate on 4 sequences.
fn check_recurrent<N: Network<InputDim = Ix3>>(python: &str, gates: usize, seed: u64) {
    let mut net = N::init(seed);
    distinct_gates(&mut net, gates);
    let report = check_in_onnxruntime(python, &net, random((4, 6, 3), seed + 1).view());
    assert!(report.contains("-> output [4, 6, "), "{report}");
}

#[test]
fn rnn_tanh_runs_in_onnxruntime_as_in_striate() {
    let Some(python) = python("rnn_tanh_runs_in_onnxruntime_as_in_striate") else {
        return;
    };
    check_recurrent::<RnnTanh>(&python, 1, 30);
    check_recurrent::<RnnTanhStacked>(&python, 1, 31);
    check_recurrent::<RnnTanhBi>(&python, 1, 32);
    check_recurrent::<RnnTanhStackedBi>(&python, 1, 33);
}

#[test]
fn rnn_relu_runs_in_onnxruntime_as_in_striate() {
    let Some(python) = python("rnn_relu_runs_in_onnxruntime_as_in_striate") else {
        return;
    };
    check_recurrent::<RnnRelu>(&python, 1, 34);
    check_recurrent::<RnnReluStacked>(&python, 1, 35);
    check_recurrent::<RnnReluBi>(&python, 1, 36);
    check_recurrent::<RnnReluStackedBi>(&python, 1, 37);
}

#[test]
fn lstm_runs_in_onnxruntime_as_in_striate() {
    let Some(python) = python("lstm_runs_in_onnxruntime_as_in_striate") else {
        return;
    };
    check_recurrent::<Lstm>(&python, 4, 38);
    check_recurrent::<LstmStacked>(&python, 4, 39);
    check_recurrent::<LstmBi>(&python, 4, 40);
    check_recurrent::<LstmStackedBi>(&python, 4, 41);
}

#[test]
fn gru_runs_in_onnxruntime_as_in_striate() {
    let Some(python) = python("gru_runs_in_onnxruntime_as_in_striate") else {
        return;
    };
    check_recurrent::<Gru>(&python, 3, 42);
    check_recurrent::<GruStacked>(&python, 3, 43);
    check_recurrent::<GruBi>(&python, 3, 44);
    check_recurrent::<GruStackedBi>(&python, 3, 45);
}

/// The initializer `name` of `model`, as `f32`s.
fn initializer(model: &ModelProto, name: &str) -> Vec<f32> {
    let graph = model.graph.as_ref().unwrap();
    let t = graph
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no initializer {name}"));
    t.raw_data
        .as_ref()
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn set_initializer(model: &mut ModelProto, name: &str, values: &[f32]) {
    let graph = model.graph.as_mut().unwrap();
    let t = graph
        .initializer
        .iter_mut()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap();
    assert_eq!(t.raw_data.as_ref().unwrap().len(), 4 * values.len());
    t.raw_data = Some(values.iter().flat_map(|v| v.to_le_bytes()).collect());
}

/// The parameter `name` of `net`, as a vector.
fn param(net: &impl Network, name: &str) -> Vec<f32> {
    net.params().get(name).unwrap().iter().copied().collect()
}

/// Gate `k` of `values`, a tensor of `gates` gates.
fn gate(values: &[f32], gates: usize, k: usize) -> &[f32] {
    let block = values.len() / gates;
    &values[k * block..][..block]
}

/// The model holds ONNX's gate orders, read back without Python: the LSTM's `W`, `R` and `B`
/// are PyTorch's `i, o, f, g` blocks (ONNX's `i, o, f, c`), both directions stacked; the GRU's
/// PyTorch's `z, r, n` (ONNX's `z, r, h`), with `linear_before_reset = 1`.
#[test]
fn recurrent_weights_are_in_onnx_gate_order() {
    let net = LstmBi::init(50);
    let model = decode(&striate::onnx::encode(&net).unwrap());
    let (w, r, b) = (
        initializer(&model, "rec.W_l0"),
        initializer(&model, "rec.R_l0"),
        initializer(&model, "rec.B_l0"),
    );
    // Two directions of 4 gates: ONNX's gate k of direction d is block 4d + k.
    for (d, tail) in ["l0", "l0_reverse"].into_iter().enumerate() {
        let w_ih = param(&net, &format!("rec.weight_ih_{tail}"));
        let w_hh = param(&net, &format!("rec.weight_hh_{tail}"));
        let (b_ih, b_hh) = (
            param(&net, &format!("rec.bias_ih_{tail}")),
            param(&net, &format!("rec.bias_hh_{tail}")),
        );
        // PyTorch: i 0, f 1, g 2, o 3; ONNX: i, o, f, c.
        for (onnx, torch) in [(0, 0), (1, 3), (2, 1), (3, 2)] {
            assert_eq!(gate(&w, 8, 4 * d + onnx), gate(&w_ih, 4, torch));
            assert_eq!(gate(&r, 8, 4 * d + onnx), gate(&w_hh, 4, torch));
            // B is W_b then R_b per direction: 8 blocks each.
            assert_eq!(gate(&b, 16, 8 * d + onnx), gate(&b_ih, 4, torch));
            assert_eq!(gate(&b, 16, 8 * d + 4 + onnx), gate(&b_hh, 4, torch));
        }
    }

    let net = Gru::init(51);
    let model = decode(&striate::onnx::encode(&net).unwrap());
    let (w, b) = (
        initializer(&model, "rec.W_l0"),
        initializer(&model, "rec.B_l0"),
    );
    let (w_ih, b_hh) = (
        param(&net, "rec.weight_ih_l0"),
        param(&net, "rec.bias_hh_l0"),
    );
    // PyTorch: r 0, z 1, n 2; ONNX: z, r, h.
    for (onnx, torch) in [(0, 1), (1, 0), (2, 2)] {
        assert_eq!(gate(&w, 3, onnx), gate(&w_ih, 3, torch));
        assert_eq!(gate(&b, 6, 3 + onnx), gate(&b_hh, 3, torch));
    }
    let node = &model.graph.as_ref().unwrap().node;
    let gru = node
        .iter()
        .find(|n| n.op_type.as_deref() == Some("GRU"))
        .unwrap();
    let reset = gru
        .attribute
        .iter()
        .find(|a| a.name.as_deref() == Some("linear_before_reset"))
        .unwrap();
    assert_eq!(reset.i, Some(1));
}

/// One ONNX node per stacked layer, between transposes to and from time-major order.
#[test]
fn a_stacked_layer_is_one_node_per_layer() {
    let model = decode(&striate::onnx::encode(&LstmStacked::init(52)).unwrap());
    let ops: Vec<&str> = model
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type.as_deref().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "Transpose",
            "LSTM",
            "Transpose",
            "Reshape",
            "LSTM",
            "Transpose",
            "Reshape",
            "LSTM",
            "Transpose",
            "Reshape"
        ]
    );
}

/// The weights of `net`'s layer `rec` in PyTorch's gate order, as ONNX's `W`, `R` and `B` of
/// stacked layer `l` would hold them without the reordering.
fn torch_order(net: &impl Network, l: usize, directions: usize) -> [Vec<f32>; 3] {
    let (mut w, mut r, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for d in 0..directions {
        let tail = format!("l{l}{}", if d == 1 { "_reverse" } else { "" });
        w.extend(param(net, &format!("rec.weight_ih_{tail}")));
        r.extend(param(net, &format!("rec.weight_hh_{tail}")));
        b.extend(param(net, &format!("rec.bias_ih_{tail}")));
        b.extend(param(net, &format!("rec.bias_hh_{tail}")));
    }
    [w, r, b]
}

/// `case`'s model changed by `change`, run against striate's output: whether it still passes.
fn passes_when_changed(
    python: &str,
    case: &Case,
    change: impl FnOnce(&mut ModelProto),
) -> (bool, String) {
    let mut model = decode(&std::fs::read(&case.model).unwrap());
    change(&mut model);
    let changed = case.model.with_file_name("changed.onnx");
    std::fs::write(&changed, model.encode_to_vec()).unwrap();
    case.run(python, &changed, "1e-5")
}

/// The reordering is what makes the LSTM and the GRU agree: the same models with PyTorch's
/// gate order left in the weights fail the comparison, and so does the GRU with
/// `linear_before_reset = 0` (ONNX's default, which resets before the product).
#[test]
fn without_the_reordering_the_gated_layers_disagree() {
    let Some(python) = python("without_the_reordering_the_gated_layers_disagree") else {
        return;
    };
    let mut lstm = LstmStackedBi::init(53);
    distinct_gates(&mut lstm, 4);
    let mut gru = GruStackedBi::init(54);
    distinct_gates(&mut gru, 3);
    let x = random((3, 6, 3), 55);
    let (lstm_case, gru_case) = (Case::export(&lstm, x.view()), Case::export(&gru, x.view()));
    let lstm_torch = [torch_order(&lstm, 0, 2), torch_order(&lstm, 1, 2)];
    let gru_torch = [torch_order(&gru, 0, 2), torch_order(&gru, 1, 2)];
    for (case, torch) in [(&lstm_case, &lstm_torch), (&gru_case, &gru_torch)] {
        let (passed, report) = case.run(&python, &case.model, "1e-5");
        assert!(passed, "the exported model passes:\n{report}");
        let (passed, report) = passes_when_changed(&python, case, |model| {
            for (l, [w, r, b]) in torch.iter().enumerate() {
                set_initializer(model, &format!("rec.W_l{l}"), w);
                set_initializer(model, &format!("rec.R_l{l}"), r);
                set_initializer(model, &format!("rec.B_l{l}"), b);
            }
        });
        assert!(!passed, "PyTorch's gate order passes too:\n{report}");
        assert!(report.contains("failed: at"), "{report}");
        println!("PyTorch's gate order:\n{report}");
    }
    let (passed, report) = passes_when_changed(&python, &gru_case, |model| {
        for node in &mut model.graph.as_mut().unwrap().node {
            for a in &mut node.attribute {
                if a.name.as_deref() == Some("linear_before_reset") {
                    a.i = Some(0);
                }
            }
        }
    });
    assert!(!passed, "linear_before_reset = 0 passes too:\n{report}");
    assert!(report.contains("failed: at"), "{report}");
    println!("linear_before_reset = 0:\n{report}");
}

network! {
    /// Every reduction over time of a bidirectional LSTM's output, side by side: `last` takes
    /// both halves from the last step, `final_state` the backward half from the first.
    pub struct Reductions {
        input: [7, 3],
        rec: lstm(4, bidirectional = true),
        tanh,
        heads: concat(a = { last }, b = { final_state }, c = { mean_over_time }, d = { max_over_time }) -> [32],
    }
}

network! {
    /// `final_state` of a stacked bidirectional GRU: `torch.cat([h_n[-2], h_n[-1]], 1)`.
    pub struct StackedState {
        input: [5, 4],
        rec: gru(3, layers = 2, bidirectional = true),
        final_state -> [6],
    }
}

network! {
    /// Layers on every step of a sequence made from a feature map: linear (with and without
    /// bias), the activations, dropout and a residual block, around a ReLU RNN, then a
    /// flattened sequence classified.
    pub struct PerStep {
        input: [1, 6, 4],
        reshape([6, 4]),
        fc1: linear(5) -> [6, 5],
        relu,
        dropout(0.2),
        res: residual { fc: linear(5), leaky_relu(0.1) },
        rec: rnn(3, activation = relu, bidirectional = true) -> [6, 6],
        proj: linear(2, bias = false) -> [6, 2],
        sigmoid,
        flatten,
        fc2: linear(3),
    }
}

#[test]
fn the_reductions_over_time_run_in_onnxruntime_as_in_striate() {
    let Some(python) = python("the_reductions_over_time_run_in_onnxruntime_as_in_striate") else {
        return;
    };
    let mut net = Reductions::init(60);
    distinct_gates(&mut net, 4);
    check_in_onnxruntime(&python, &net, random((5, 7, 3), 61).view());
    let mut net = StackedState::init(62);
    distinct_gates(&mut net, 3);
    check_in_onnxruntime(&python, &net, random((5, 5, 4), 63).view());
}

#[test]
fn layers_on_every_step_run_in_onnxruntime_as_in_striate() {
    let Some(python) = python("layers_on_every_step_run_in_onnxruntime_as_in_striate") else {
        return;
    };
    let mut net = PerStep::init(64);
    vary(&mut net, 65);
    check_in_onnxruntime(&python, &net, random((4, 1, 6, 4), 66).view());
}

/// A linear layer on a sequence is `MatMul` by its transposed weight (`Gemm` takes matrices
/// only), its initializer under its own name and shape.
#[test]
fn a_linear_layer_on_every_step_is_a_matmul() {
    let model = decode(&striate::onnx::encode(&PerStep::init(67)).unwrap());
    let graph = model.graph.as_ref().unwrap();
    let ops: Vec<&str> = graph
        .node
        .iter()
        .map(|n| n.op_type.as_deref().unwrap())
        .collect();
    assert_eq!(&ops[..4], ["Reshape", "Transpose", "MatMul", "Add"]);
    assert_eq!(graph.node[1].input, ["fc1.weight"]);
    assert_eq!(graph.node[3].input[1], "fc1.bias");
    assert_eq!(ops.last(), Some(&"Gemm"));
    let weight = graph
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some("fc1.weight"))
        .unwrap();
    assert_eq!(weight.dims, [5, 4]);
}

#[test]
fn sequential_mnist_runs_in_onnxruntime_as_in_striate() {
    let Some(python) = python("sequential_mnist_runs_in_onnxruntime_as_in_striate") else {
        return;
    };
    let mut net = RowReader::init(68);
    vary(&mut net, 69);
    distinct_gates(&mut net, 4);
    let report = check_in_onnxruntime(&python, &net, random((3, 28, 28), 70).view());
    assert!(
        report.contains("input input [3, 28, 28] -> output [3, 10]"),
        "{report}"
    );
}
