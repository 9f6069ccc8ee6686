//! striate's recurrent layers against PyTorch 2.x on the CPU: `nn.RNN`, `nn.LSTM` and `nn.GRU`
//! (stacked, bidirectional) with the same weights, loaded by name from their `state_dict`s
//! (`rec.weight_ih_l0`, `rec.bias_hh_l1_reverse`, ...), which proves that the names, gate
//! orders and layouts match. Each gives PyTorch's output sequence and final hidden states, and
//! after a reduction over time and a linear layer its logits, its mean cross-entropy, every
//! parameter gradient and the input gradient.
//!
//! The numbers come from `tests/fixtures/torch_recurrent.py`:
//!
//! ```text
//! /tmp/torch-venv/bin/python tests/fixtures/torch_recurrent.py
//! ```

use striate::prelude::*;
use striate::Network;

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{assert_scaled_close as assert_close, fixture, Case};

network! {
    /// `Head(nn.RNN(4, 6, num_layers=2, nonlinearity="relu", bidirectional=True), "last")`.
    struct RnnHead {
        input: [5, 4],
        rec: rnn(6, activation = relu, layers = 2, bidirectional = true) -> [5, 12],
        last,
        fc: linear(3),
    }
}

network! {
    /// Its recurrent layer alone.
    struct RnnSeq {
        input: [5, 4],
        rec: rnn(6, activation = relu, layers = 2, bidirectional = true),
    }
}

network! {
    /// `Head(nn.LSTM(4, 5, num_layers=2, bidirectional=True), "final_state")`.
    struct LstmHead {
        input: [5, 4],
        rec: lstm(5, layers = 2, bidirectional = true),
        final_state -> [10],
        fc: linear(3),
    }
}

network! {
    /// Its recurrent layer alone.
    struct LstmSeq {
        input: [5, 4],
        rec: lstm(5, layers = 2, bidirectional = true),
    }
}

network! {
    /// Its recurrent layer and `final_state`: `torch.cat([h_n[-2], h_n[-1]], 1)`.
    struct LstmState {
        input: [5, 4],
        rec: lstm(5, layers = 2, bidirectional = true),
        final_state,
    }
}

network! {
    /// `Head(nn.GRU(4, 6, num_layers=2, bidirectional=True), "mean")`.
    struct GruHead {
        input: [5, 4],
        rec: gru(6, layers = 2, bidirectional = true),
        mean_over_time,
        fc: linear(3),
    }
}

network! {
    /// Its recurrent layer alone.
    struct GruSeq {
        input: [5, 4],
        rec: gru(6, layers = 2, bidirectional = true),
    }
}

network! {
    /// `Head(nn.LSTM(4, 7), "max", step=nn.Linear(7, 5))`: a linear layer on every step.
    struct LstmSteps {
        input: [5, 4],
        rec: lstm(7),
        step: linear(5) -> [5, 5],
        max_over_time,
        fc: linear(3),
    }
}

network! {
    /// Its recurrent layer alone.
    struct LstmStepsSeq {
        input: [5, 4],
        rec: lstm(7),
    }
}

/// The head's logits, loss, every parameter gradient and the input gradient.
fn compare_head<N: Network<InputDim = ndarray::Ix3, OutputDim = ndarray::Ix2>>(name: &str) -> Case {
    let mut net = N::init(0);
    net.load(fixture(&format!("recurrent_{name}_state.safetensors")))
        .unwrap();
    let case = Case::load(&format!("recurrent_{name}_case.safetensors"));
    let x = case
        .array("x")
        .into_dimensionality::<ndarray::Ix3>()
        .unwrap();
    let labels: Vec<usize> = case
        .get("labels")
        .data
        .iter()
        .map(|v| *v as usize)
        .collect();
    let mut tape = Tape::new();
    let logits = net.forward_train(x.view(), &mut tape).unwrap();
    assert_close(
        "logits",
        logits.as_slice().unwrap(),
        &case.get("logits").data,
    );
    let (loss, d_logits) = cross_entropy(logits, &labels).unwrap();
    assert_close("loss", &[loss], &case.get("loss").data);
    let mut grads = net.gradients().with_input();
    net.backward(&mut tape, d_logits.view(), &mut grads)
        .unwrap();
    for info in N::PARAMS {
        let ours = grads.get(info.name).unwrap();
        assert_close(
            &format!("{name}: grad of {}", info.name),
            ours.as_slice().unwrap(),
            &case.get(&format!("grad.{}", info.name)).data,
        );
    }
    assert_close(
        &format!("{name}: grad of the input"),
        grads.input().unwrap().as_slice().unwrap(),
        &case.get("grad.input").data,
    );
    case
}

/// The recurrent layer's output sequence, loaded from the head's state (its `fc` ignored).
fn compare_sequence<N: Network<InputDim = ndarray::Ix3, OutputDim = ndarray::Ix3>>(name: &str) {
    let mut net = N::init(0);
    net.load_non_strict(fixture(&format!("recurrent_{name}_state.safetensors")))
        .unwrap();
    let case = Case::load(&format!("recurrent_{name}_case.safetensors"));
    let x = case
        .array("x")
        .into_dimensionality::<ndarray::Ix3>()
        .unwrap();
    let out = net.forward(x.view()).unwrap();
    assert_close(
        &format!("{name}: output"),
        out.as_slice().unwrap(),
        &case.get("out").data,
    );
}

#[test]
fn a_stacked_bidirectional_relu_rnn_matches_pytorch() {
    compare_head::<RnnHead>("rnn");
    compare_sequence::<RnnSeq>("rnn");
}

#[test]
fn a_stacked_bidirectional_lstm_matches_pytorch() {
    let case = compare_head::<LstmHead>("lstm");
    compare_sequence::<LstmSeq>("lstm");
    // h_n is (layers·directions, N, H): the last layer's two directions, side by side.
    let mut net = LstmState::init(0);
    net.load_non_strict(fixture("recurrent_lstm_state.safetensors"))
        .unwrap();
    let x = case
        .array("x")
        .into_dimensionality::<ndarray::Ix3>()
        .unwrap();
    let ours = net.forward(x.view()).unwrap();
    let h_n = case.array("h_n");
    let (n, h) = (h_n.shape()[1], h_n.shape()[2]);
    let mut want = Vec::new();
    for s in 0..n {
        for d in [2, 3] {
            want.extend((0..h).map(|j| h_n[[d, s, j]]));
        }
    }
    assert_close("final states", ours.as_slice().unwrap(), &want);
}

#[test]
fn a_stacked_bidirectional_gru_matches_pytorch() {
    compare_head::<GruHead>("gru");
    compare_sequence::<GruSeq>("gru");
}

#[test]
fn a_linear_layer_on_every_step_matches_pytorch() {
    compare_head::<LstmSteps>("lstm_steps");
    compare_sequence::<LstmStepsSeq>("lstm_steps");
}

/// The names are PyTorch's, in `state_dict` order.
#[test]
fn parameter_names_are_pytorchs() {
    let names: Vec<&str> = GruSeq::PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(
        &names[..8],
        [
            "rec.weight_ih_l0",
            "rec.weight_hh_l0",
            "rec.bias_ih_l0",
            "rec.bias_hh_l0",
            "rec.weight_ih_l0_reverse",
            "rec.weight_hh_l0_reverse",
            "rec.bias_ih_l0_reverse",
            "rec.bias_hh_l0_reverse",
        ]
    );
    assert_eq!(GruSeq::PARAMS[8].name, "rec.weight_ih_l1");
    assert_eq!(GruSeq::PARAMS[8].shape, [18, 12]);
}

network! {
    /// `nn.Embedding(11, 4)`, `nn.GRU(4, 6)` read at its last step, `fc`.
    struct Embedded {
        input: tokens[5],
        embedding: embedding(11, 4),
        rec: gru(6),
        last,
        fc: linear(3),
    }
}

/// Token ids through an embedding: PyTorch's logits, loss and every gradient, the
/// embedding's included (a scatter-add, with repeated ids).
#[test]
fn an_embedding_matches_pytorch() {
    let mut net = Embedded::init(0);
    net.load(fixture("recurrent_embedding_state.safetensors"))
        .unwrap();
    assert_eq!(Embedded::PARAMS[0].name, "embedding.weight");
    assert_eq!(Embedded::PARAMS[0].shape, [11, 4]);
    let case = Case::load("recurrent_embedding_case.safetensors");
    let ids = case
        .array("ids")
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    let labels: Vec<usize> = case
        .get("labels")
        .data
        .iter()
        .map(|v| *v as usize)
        .collect();
    let mut tape = Tape::new();
    let logits = net.forward_train(ids.view(), &mut tape).unwrap();
    assert_close(
        "logits",
        logits.as_slice().unwrap(),
        &case.get("logits").data,
    );
    let (loss, d_logits) = cross_entropy(logits, &labels).unwrap();
    assert_close("loss", &[loss], &case.get("loss").data);
    let mut grads = net.gradients();
    net.backward(&mut tape, d_logits.view(), &mut grads)
        .unwrap();
    for info in Embedded::PARAMS {
        assert_close(
            &format!("grad of {}", info.name),
            grads.get(info.name).unwrap().as_slice().unwrap(),
            &case.get(&format!("grad.{}", info.name)).data,
        );
    }
}

network! {
    /// `Packed(nn.LSTM(4, 5, num_layers=2, bidirectional=True), "last")`.
    struct PackedLstm {
        input: [5, 4],
        rec: lstm(5, layers = 2, bidirectional = true),
        last,
        fc: linear(3),
    }
}

network! {
    /// Its recurrent layer alone.
    struct PackedLstmSeq {
        input: [5, 4],
        rec: lstm(5, layers = 2, bidirectional = true),
    }
}

network! {
    /// `Packed(nn.GRU(4, 4, bidirectional=True), "mean")`.
    struct PackedGru {
        input: [5, 4],
        rec: gru(4, bidirectional = true),
        mean_over_time,
        fc: linear(3),
    }
}

network! {
    /// Its recurrent layer alone.
    struct PackedGruSeq {
        input: [5, 4],
        rec: gru(4, bidirectional = true),
    }
}

/// A padded batch with lengths against PyTorch's `pack_padded_sequence`: the padded output
/// (zeros at the padding), the logits, the loss, every gradient and the input gradient (zero at
/// the padding, which holds 50s that must change nothing), in training through
/// `forward_tape_lengths` and `Trainer::step_lengths`.
fn compare_packed<H, S>(name: &str)
where
    H: Network<InputDim = ndarray::Ix3, OutputDim = ndarray::Ix2>,
    S: Network<InputDim = ndarray::Ix3, OutputDim = ndarray::Ix3>,
{
    let case = Case::load(&format!("recurrent_packed_{name}_case.safetensors"));
    let state = fixture(&format!("recurrent_packed_{name}_state.safetensors"));
    let x = case
        .array("x")
        .into_dimensionality::<ndarray::Ix3>()
        .unwrap();
    let lengths: Vec<u32> = case.get("lengths").data.iter().map(|v| *v as u32).collect();
    let labels: Vec<usize> = case
        .get("labels")
        .data
        .iter()
        .map(|v| *v as usize)
        .collect();
    let mut seq = S::init(0);
    seq.load_non_strict(&state).unwrap();
    let out = seq.forward_lengths(x.view(), &lengths).unwrap();
    assert_close(
        &format!("{name}: padded output"),
        out.as_slice().unwrap(),
        &case.get("out").data,
    );

    let mut net = H::init(0);
    net.load(&state).unwrap();
    let mut tape = Tape::new();
    let logits = net
        .forward_tape_lengths(x.view(), &lengths, &mut tape, Mode::Train)
        .unwrap();
    assert_close(
        &format!("{name}: logits"),
        logits.as_slice().unwrap(),
        &case.get("logits").data,
    );
    let (loss, d_logits) = cross_entropy(logits, &labels).unwrap();
    assert_close(&format!("{name}: loss"), &[loss], &case.get("loss").data);
    let mut grads = net.gradients().with_input();
    net.backward(&mut tape, d_logits.view(), &mut grads)
        .unwrap();
    for info in H::PARAMS {
        assert_close(
            &format!("{name}: grad of {}", info.name),
            grads.get(info.name).unwrap().as_slice().unwrap(),
            &case.get(&format!("grad.{}", info.name)).data,
        );
    }
    assert_close(
        &format!("{name}: grad of the input"),
        grads.input().unwrap().as_slice().unwrap(),
        &case.get("grad.input").data,
    );
    // The trainer's step with lengths computes the same loss.
    let mut trainer = Trainer::new(&mut net, Sgd::new(0.0));
    let stats = trainer.step_lengths(x.view(), &labels, &lengths).unwrap();
    assert_close(
        &format!("{name}: step"),
        &[stats.loss],
        &case.get("loss").data,
    );
}

#[test]
fn a_padded_batch_with_lengths_matches_pytorchs_packed_sequences() {
    compare_packed::<PackedLstm, PackedLstmSeq>("lstm");
    compare_packed::<PackedGru, PackedGruSeq>("gru");
}

/// Lengths that do not fit the batch are typed errors naming what was expected.
#[test]
fn bad_lengths_are_typed_errors() {
    let net = PackedGru::init(0);
    let x = ndarray::Array3::<f32>::zeros((3, 5, 4));
    let err = net.forward_lengths(x.view(), &[5, 2]).unwrap_err();
    assert!(matches!(err, striate::Error::Shape { .. }), "{err}");
    assert!(
        err.to_string().contains("[3]") && err.to_string().contains("[2]"),
        "{err}"
    );
    for bad in [0, 6] {
        match net.forward_lengths(x.view(), &[5, bad, 1]) {
            Err(striate::Error::LengthOutOfRange {
                index: 1,
                length,
                steps: 5,
                ..
            }) => assert_eq!(length, bad as usize),
            other => panic!("{bad}: {other:?}"),
        }
    }
    network! {
        struct Flat { input: [4], fc: linear(2) }
    }
    let flat = Flat::init(0);
    let err = flat
        .forward_lengths(ndarray::Array2::zeros((1, 4)).view(), &[1])
        .unwrap_err();
    assert!(err.to_string().contains("not a sequence"), "{err}");
}
