//! A head fine-tuned on a frozen body against PyTorch doing the same steps from the same
//! weights: the numbers come from `tests/fixtures/torch_transfer.py` (its docstring says how to
//! run it), which freezes the body with `requires_grad_(False)` and gives the optimizer the
//! head's parameters only.

use striate::prelude::*;
use striate::Transfer;

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{assert_close, fixture, Case};

network! {
    /// `Features` in torch_transfer.py.
    pub struct Features {
        input: [1, 10, 10],
        conv1: conv2d(4, kernel = 3, pad = 1), bn1: batch_norm, relu, max_pool(2),
        conv2: conv2d(6, kernel = 3), relu,
    }
}

network! {
    /// `Tuned` in torch_transfer.py.
    pub struct Tuned {
        input: [1, 10, 10],
        features: Features -> [6, 3, 3],
        flatten,
        fc: linear(3),
    }
}

fn fine_tune<O: Optimizer>(opt: O, prefix: &str) {
    let case = Case::load("transfer_case.safetensors");
    let mut net = Tuned::init(0);
    net.load(fixture("transfer_state.safetensors")).unwrap();
    net.freeze("features").unwrap();
    let body: Vec<f32> = net.params().as_slice()[..Features::NUM_PARAMS].to_vec();
    let mut trainer = Trainer::new(&mut net, opt);
    let mut losses = Vec::new();
    for step in 0..4 {
        let x = case.array(&format!("x.{step}"));
        let x = x.into_dimensionality::<ndarray::Ix4>().unwrap();
        let labels: Vec<usize> = case
            .get(&format!("labels.{step}"))
            .data
            .iter()
            .map(|&l| l as usize)
            .collect();
        losses.push(trainer.step(x.view(), &labels).unwrap().loss);
    }
    let expected = |name: &str| case.get(&format!("{prefix}.{name}")).data.clone();
    assert_close(
        &format!("{prefix} losses"),
        &losses,
        &expected("loss"),
        1e-5,
    );
    for name in [
        "fc.weight",
        "fc.bias",
        "features.bn1.running_mean",
        "features.bn1.running_var",
    ] {
        let ours = net.params().get(name).or_else(|| net.buffers().get(name));
        let ours: Vec<f32> = ours.unwrap().iter().copied().collect();
        assert_close(&format!("{prefix} {name}"), &ours, &expected(name), 1e-5);
    }
    assert_eq!(
        net.params().as_slice()[..Features::NUM_PARAMS],
        body[..],
        "the body changed"
    );
    assert_eq!(net.state().num_batches_tracked, 4);
}

#[test]
fn sgd_with_momentum_on_a_frozen_body_matches_pytorch() {
    fine_tune(Sgd::new(0.1).momentum(0.9).weight_decay(1e-3), "sgd");
}

#[test]
fn adam_on_a_frozen_body_matches_pytorch() {
    fine_tune(Adam::new(0.01), "adam");
}
