//! striate against PyTorch 2.15 on the CPU: the same weights (loaded from a PyTorch
//! `state_dict` written as safetensors, which also proves the names and layouts match), the same
//! input, one training-mode forward and backward of the mean cross-entropy. Logits, loss, every
//! parameter gradient, the input gradient, the updated batch-norm running statistics and the
//! evaluation-mode logits must agree.
//!
//! The numbers come from `tests/fixtures/torch_reference.py` (its docstring says how to run it).

use striate::io::{load_typed_tensors, LoadedData};
use striate::prelude::*;
use striate::Network;

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{assert_scaled_close as assert_close, fixture, Case};

#[allow(dead_code)]
#[path = "../examples/lenet.rs"]
mod lenet;

network! {
    /// `Mixed` in torch_reference.py: every layer kind but dropout.
    struct Mixed {
        input: [2, 9, 8],
        c1: conv2d(3, kernel = (3, 2), stride = (2, 1), pad = 1),
        bn1: batch_norm,
        leaky_relu(0.1),
        max_pool((2, 3), stride = 1, pad = 1),
        c2: conv2d(4, kernel = 3, bias = false),
        tanh,
        avg_pool(2, stride = 1),
        sigmoid,
        flatten,
        fc1: linear(7),
        bn2: batch_norm,
        relu,
        fc2: linear(5),
    }
}

network! {
    /// `Residual` in torch_reference.py: identity and projection shortcuts with batch norm.
    struct Residual {
        input: [2, 8, 8],
        conv1: conv2d(4, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
        block1: residual {
            conv1: conv2d(4, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(4, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu,
        block2: residual(shortcut = {
            conv: conv2d(6, kernel = 1, stride = 2, bias = false), bn: batch_norm,
        }) {
            conv1: conv2d(6, kernel = 3, stride = 2, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(6, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu,
        avg_pool(4), flatten, fc: linear(3),
    }
}

network! {
    /// `Stem` in torch_reference.py: the inner network of `Branchy`.
    pub struct Stem {
        input: [2, 8, 8],
        conv: conv2d(4, kernel = 3, pad = 1), relu,
    }
}

network! {
    /// `Branchy` in torch_reference.py: a nested network, a concat block with an empty
    /// branch and a residual inside a branch.
    struct Branchy {
        input: [2, 8, 8],
        stem: Stem -> [4, 8, 8],
        mix: concat(
            a = { conv: conv2d(3, kernel = 1), relu },
            b = { max_pool(3, stride = 1, pad = 1) },
            c = {},
            d = { res: residual { conv: conv2d(4, kernel = 3, pad = 1), tanh } },
        ) -> [15, 8, 8],
        bn: batch_norm,
        avg_pool(8), flatten, fc: linear(3),
    }
}

fn compare<N: Network<OutputDim = ndarray::Ix2>>(name: &str) {
    let mut net = N::init(0);
    net.load(fixture(&format!("{name}_state.safetensors")))
        .unwrap();
    let case = Case::load(&format!("{name}_case.safetensors"));
    let x = case
        .array("x")
        .into_dimensionality::<N::InputDim>()
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
            &format!("grad of {}", info.name),
            ours.as_slice().unwrap(),
            &case.get(&format!("grad.{}", info.name)).data,
        );
    }
    let d_x = grads.input().unwrap();
    assert_close(
        "grad of the input",
        d_x.as_slice().unwrap(),
        &case.get("grad.input").data,
    );
    for info in N::BUFFERS {
        let ours = net.buffers().get(info.name).unwrap();
        assert_close(
            &format!("updated {}", info.name),
            ours.as_slice().unwrap(),
            &case.get(&format!("after.{}", info.name)).data,
        );
    }
    let eval = net.forward(x.view()).unwrap();
    assert_close(
        "evaluation logits",
        eval.as_slice().unwrap(),
        &case.get("eval_logits").data,
    );
}

#[test]
fn lenet_matches_pytorch() {
    compare::<lenet::LeNet5>("lenet");
}

#[test]
fn every_layer_kind_matches_pytorch() {
    compare::<Mixed>("mixed");
}

/// Two residual blocks with batch norm: `block1` adds its input (the identity shortcut);
/// `block2` halves the size with a stride-2 body, (8 + 2*1 - 3)/2 + 1 = 4.5 rounded down to 4
/// as PyTorch does, beside a projection shortcut (a 1x1 stride-2 convolution and batch norm),
/// (8 - 1)/2 + 1 = 4.5 also rounded down. Neither drops an input pixel that a window would
/// read, so neither needs `floor = true`. The reference is `Residual` in torch_reference.py,
/// whose nested modules give the `state_dict` names that striate loads
/// (`block2.shortcut.conv.weight`, `block2.shortcut.bn.running_mean`, ...), written by
///
/// ```text
/// /tmp/torch-venv/bin/python tests/fixtures/torch_reference.py residual
/// ```
#[test]
fn residual_blocks_match_pytorch() {
    compare::<Residual>("residual");
}

/// A network inside a network (`stem: Stem`, its parameters `stem.conv.weight` and
/// `stem.conv.bias`) and a concat block whose four branches read the stem's output: a convolution,
/// a pooling, an empty branch that passes it through and a residual. The stem's output gradient is
/// the sum over five paths: `a`'s convolution, `b`'s pooling, `c`, and the identity and the
/// convolution of `d`'s residual. The reference is `Branchy` in torch_reference.py (`torch.cat` of
/// the branches in the order written), written by
///
/// ```text
/// /tmp/torch-venv/bin/python tests/fixtures/torch_reference.py branchy
/// ```
#[test]
fn concat_and_nested_networks_match_pytorch() {
    compare::<Branchy>("branchy");
}

/// PyTorch's `state_dict` has an int64 `num_batches_tracked` per batch-norm layer, 0 in the
/// fixtures (the modules had not trained when they were saved; the script stores the scalar
/// with shape [1]). Loading it sets the network's count to 0, whatever it was, and one
/// training-mode pass makes it 1, as PyTorch's own counters become after the reference step:
///
/// ```python
/// model = Mixed(); model.train(); model(x)
/// model.bn1.num_batches_tracked.item(), model.bn2.num_batches_tracked.item()  # (1, 1)
/// ```
#[test]
fn pytorch_batch_counters_are_loaded() {
    let case = Case::load("mixed_case.safetensors");
    let x = case
        .array("x")
        .into_dimensionality::<ndarray::Ix4>()
        .unwrap();
    let mut net = Mixed::init(0);
    let mut tape = Tape::new();
    for _ in 0..3 {
        net.forward_train(x.view(), &mut tape).unwrap();
    }
    assert_eq!(net.state().num_batches_tracked, 3);
    let state = load_typed_tensors(&fixture("mixed_state.safetensors")).unwrap();
    let counters: Vec<_> = state
        .iter()
        .filter(|t| t.name.ends_with(".num_batches_tracked"))
        .map(|t| (t.name.as_str(), t.shape.as_slice(), &t.data))
        .collect();
    let zero = LoadedData::I64(vec![0]);
    assert_eq!(
        counters,
        [
            ("bn1.num_batches_tracked", &[1][..], &zero),
            ("bn2.num_batches_tracked", &[1][..], &zero)
        ]
    );
    net.load(fixture("mixed_state.safetensors")).unwrap();
    assert_eq!(net.state().num_batches_tracked, 0);
    net.forward_train(x.view(), &mut tape).unwrap();
    assert_eq!(net.state().num_batches_tracked, 1);

    // LeNet-5 has no batch norm, hence no counters in its file, and no count.
    let mut lenet = lenet::LeNet5::init(0);
    lenet.load(fixture("lenet_state.safetensors")).unwrap();
    assert_eq!(lenet.state().num_batches_tracked, 0);
}
