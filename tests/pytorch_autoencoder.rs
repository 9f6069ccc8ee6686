//! The decoder's layers against PyTorch: `reshape`, nearest and bilinear `upsample` and
//! `conv_transpose2d` (with output padding, non-square kernels and strides, padding wider than
//! the kernel, and without bias), in one denoising training step of binary cross-entropy with
//! logits against a clean target. Output, loss, every parameter gradient and the input
//! gradient must agree, and the mean squared error too.
//!
//! The numbers come from `Autoencoder` in `tests/fixtures/torch_reference.py`, written by
//!
//! ```text
//! PATH=/tmp/torch-venv/bin:$PATH python tests/fixtures/torch_reference.py autoencoder
//! ```

use striate::prelude::*;
use striate::train::reconstruction_loss;
use striate::Network;

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{assert_scaled_close as assert_close, fixture, Case};

network! {
    /// `Autoencoder` in torch_reference.py.
    struct Autoencoder {
        input: [2, 6, 6],
        enc: conv2d(4, kernel = 3, stride = 2, pad = 1), relu,
        flatten,
        fc: linear(12), tanh,
        reshape([3, 2, 2]),
        upsample(2) -> [3, 4, 4],
        d1: conv_transpose2d(4, kernel = (3, 2), stride = (2, 1), pad = (1, 0), output_pad = (1, 0))
            -> [4, 8, 5],
        sigmoid,
        upsample(2, mode = bilinear) -> [4, 16, 10],
        d2: conv_transpose2d(2, kernel = 3, pad = (6, 3), bias = false) -> [2, 6, 6],
    }
}

#[test]
fn decoder_layers_match_pytorch() {
    let mut net = Autoencoder::init(0);
    net.load(fixture("autoencoder_state.safetensors")).unwrap();
    let case = Case::load("autoencoder_case.safetensors");
    let x = case
        .array("x")
        .into_dimensionality::<ndarray::Ix4>()
        .unwrap();
    let target = case.array("target");
    let mut tape = Tape::new();
    let output = net.forward_train(x.view(), &mut tape).unwrap();
    assert_close(
        "output",
        output.as_slice().unwrap(),
        &case.get("output").data,
    );
    let (mse, _) = reconstruction_loss(output.into_dyn(), target.view(), Loss::Mse).unwrap();
    assert_close("mse", &[mse], &case.get("mse").data);
    let output = net.forward_train(x.view(), &mut tape).unwrap();
    let (loss, d_out) =
        reconstruction_loss(output.into_dyn(), target.view(), Loss::BceWithLogits).unwrap();
    assert_close("loss", &[loss], &case.get("loss").data);
    let mut grads = net.gradients().with_input();
    let d_out = d_out.into_dimensionality::<ndarray::Ix4>().unwrap();
    net.backward(&mut tape, d_out.view(), &mut grads).unwrap();
    for info in Autoencoder::PARAMS {
        assert_close(
            &format!("grad of {}", info.name),
            grads.get(info.name).unwrap().as_slice().unwrap(),
            &case.get(&format!("grad.{}", info.name)).data,
        );
    }
    assert_close(
        "grad of the input",
        grads.input().unwrap().as_slice().unwrap(),
        &case.get("grad.input").data,
    );
}

/// A target of another shape is a typed error naming both shapes, from the loss and from the
/// training step.
#[test]
fn a_target_of_the_wrong_shape_is_an_error() {
    let mut net = Autoencoder::init(0);
    let x = Array4::<f32>::zeros((3, 2, 6, 6));
    let wrong = Array4::<f32>::zeros((3, 2, 6, 5));
    let mut trainer = Trainer::new(&mut net, Sgd::new(0.1));
    let err = trainer
        .step_reconstruct(x.view(), wrong.view(), Loss::Mse)
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Shape { .. }), "{text}");
    assert!(
        text.contains("[3, 2, 6, 6]") && text.contains("[3, 2, 6, 5]"),
        "{text}"
    );
    assert_eq!(trainer.steps_done(), 0);
    let err = reconstruction_loss(
        x.view().into_dyn(),
        wrong.view().into_dyn(),
        Loss::BceWithLogits,
    )
    .unwrap_err();
    assert!(err.to_string().contains("[3, 2, 6, 5]"), "{err}");
}
