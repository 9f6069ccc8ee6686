//! The generated API: shapes checked at run time with errors naming both shapes, batches of any
//! size, train and eval modes, deterministic initialisation, parameters by name, weight files.

use striate::prelude::*;
use striate::Network;

network! {
    /// A small convolutional classifier with every mode-dependent layer.
    pub struct Small {
        input: [1, 8, 8],
        conv: conv2d(4, kernel = 3, pad = 1),
        bn: batch_norm,
        relu,
        max_pool(2),
        flatten,
        drop: dropout(0.5),
        fc: linear(3),
    }
}

fn batch(n: usize) -> Array4<f32> {
    Array4::from_shape_fn((n, 1, 8, 8), |(b, _, i, j)| {
        ((b * 64 + i * 8 + j) as f32 * 0.37).sin()
    })
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("striate-api-{}-{name}", std::process::id()))
}

#[test]
fn wrong_input_shape_is_an_error_naming_both_shapes() {
    let net = Small::init(0);
    let err = net.forward(Array4::zeros((5, 1, 8, 9)).view()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input of Small: expected shape [5, 1, 8, 8], found [5, 1, 8, 9]"
    );
    assert!(matches!(err, striate::Error::Shape { .. }));
}

#[test]
fn any_batch_size() {
    let net = Small::init(0);
    for n in [0, 1, 3, 64] {
        assert_eq!(net.forward(batch(n).view()).unwrap().shape(), &[n, 3]);
    }
    // One sample alone gives what it gives inside a batch (evaluation mode).
    let all = net.forward(batch(4).view()).unwrap();
    let one = net
        .forward(batch(4).slice(ndarray::s![2..3, .., .., ..]))
        .unwrap();
    for (a, b) in all.row(2).iter().zip(one.row(0)) {
        assert!((a - b).abs() < 1e-5);
    }
}

#[test]
fn inference_reuses_its_tape() {
    let net = Small::init(2);
    let mut tape = Tape::new();
    let x = batch(5);
    let first = net.infer(x.view(), &mut tape).unwrap().to_owned();
    let bytes = tape.allocated_bytes();
    let second = net.infer(x.view(), &mut tape).unwrap().to_owned();
    assert_eq!(first, second);
    assert_eq!(first, net.forward(x.view()).unwrap());
    assert_eq!(tape.allocated_bytes(), bytes, "a warm tape does not grow");
    let err = net
        .infer(Array4::zeros((1, 2, 8, 8)).view(), &mut tape)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "input of Small: expected shape [1, 1, 8, 8], found [1, 2, 8, 8]"
    );
}

#[test]
fn non_contiguous_input() {
    let net = Small::init(0);
    let x = batch(6);
    let strided = x.slice(ndarray::s![..;2, .., .., ..]);
    let copied = strided.to_owned();
    assert_eq!(
        net.forward(strided).unwrap(),
        net.forward(copied.view()).unwrap()
    );
}

#[test]
fn same_seed_same_network() {
    assert_eq!(Small::init(7).params(), Small::init(7).params());
    assert_ne!(Small::init(7).params(), Small::init(8).params());
    let net = Small::init(7);
    assert!(net
        .params()
        .get("bn.weight")
        .unwrap()
        .iter()
        .all(|v| *v == 1.0));
    assert!(net
        .buffers()
        .get("bn.running_var")
        .unwrap()
        .iter()
        .all(|v| *v == 1.0));
    assert!(net
        .params()
        .get("conv.bias")
        .unwrap()
        .iter()
        .all(|v| *v == 0.0));
    // He-uniform bound for conv (fan-in 9, ReLU follows): sqrt(6/9).
    let bound = (6.0f32 / 9.0).sqrt();
    let w = net.params().get("conv.weight").unwrap();
    assert!(w.iter().all(|v| v.abs() <= bound) && w.iter().any(|v| v.abs() > bound / 2.0));
}

#[test]
fn train_and_eval_modes() {
    let mut net = Small::init(1);
    let x = batch(8);
    let mut tape = Tape::new();
    let eval_a = net
        .forward_tape(x.view(), &mut tape, Mode::Eval)
        .unwrap()
        .to_owned();
    let eval_b = net.forward(x.view()).unwrap();
    assert_eq!(
        eval_a, eval_b,
        "evaluation is deterministic and leaves no trace"
    );
    let before = net.buffers().clone();
    let train_a = net.forward_train(x.view(), &mut tape).unwrap().to_owned();
    let train_b = net.forward_train(x.view(), &mut tape).unwrap().to_owned();
    assert_ne!(
        train_a, train_b,
        "dropout draws a new mask every training pass"
    );
    assert_ne!(
        net.buffers(),
        &before,
        "training updates the running statistics"
    );
    // PyTorch's momentum 0.1: running_mean = 0.9 * 0 + 0.1 * batch mean, twice.
    let mean = net.buffers().get("bn.running_mean").unwrap().to_owned();
    assert!(mean.iter().any(|v| v.abs() > 1e-4));
    assert!(net
        .forward_train(Array4::zeros((0, 1, 8, 8)).view(), &mut tape)
        .is_err());
}

#[test]
fn backward_checks_its_inputs() {
    let mut net = Small::init(0);
    let mut grads = net.gradients();
    let mut tape = Tape::new();
    let d = Array2::<f32>::zeros((4, 3));
    let err = net.backward(&mut tape, d.view(), &mut grads).unwrap_err();
    assert!(
        err.to_string()
            .contains("needs a tape filled by its forward"),
        "{err}"
    );
    net.forward_train(batch(4).view(), &mut tape).unwrap();
    let err = net
        .backward(&mut tape, Array2::zeros((3, 3)).view(), &mut grads)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "output gradient of Small: expected shape [4, 3], found [3, 3]"
    );
    net.backward(&mut tape, d.view(), &mut grads).unwrap();
    assert!(grads.input().is_none());
    assert_eq!(grads.get("fc.weight").unwrap().shape(), &[3, 64]);
}

#[test]
fn parameters_by_name() {
    let mut net = Small::init(0);
    let names: Vec<&str> = Small::PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "conv.weight",
            "conv.bias",
            "bn.weight",
            "bn.bias",
            "fc.weight",
            "fc.bias"
        ]
    );
    let buffers: Vec<&str> = Small::BUFFERS.iter().map(|p| p.name).collect();
    assert_eq!(buffers, ["bn.running_mean", "bn.running_var"]);
    let mut seen = Vec::new();
    net.visit_mut(|mut t| {
        seen.push((t.info.name, t.learnable, t.values.shape().to_vec()));
        if t.info.name == "fc.bias" {
            t.values.fill(2.5);
        }
    });
    assert_eq!(seen.len(), 8);
    assert_eq!(seen[0], ("conv.weight", true, vec![4, 1, 3, 3]));
    assert_eq!(seen[7], ("bn.running_var", false, vec![4]));
    assert!(net
        .params()
        .get("fc.bias")
        .unwrap()
        .iter()
        .all(|v| *v == 2.5));
    let err = net
        .params_mut()
        .set("fc.bias", Array1::zeros(4).into_dyn().view())
        .unwrap_err();
    assert_eq!(err.to_string(), "fc.bias: expected shape [3], found [4]");
    let err = net
        .params_mut()
        .set("fc.gamma", Array1::zeros(3).into_dyn().view())
        .unwrap_err();
    assert!(
        err.to_string().starts_with("unknown parameter `fc.gamma`"),
        "{err}"
    );
}

#[test]
fn weights_round_trip_through_a_file() {
    let path = temp_path("round-trip.safetensors");
    let mut trained = Small::init(3);
    let mut tape = Tape::new();
    trained.forward_train(batch(4).view(), &mut tape).unwrap();
    trained.save(&path).unwrap();
    let mut loaded = Small::init(4);
    loaded.load(&path).unwrap();
    assert_eq!(loaded.params(), trained.params());
    assert_eq!(loaded.buffers(), trained.buffers());
    assert_eq!(
        loaded.forward(batch(2).view()).unwrap(),
        trained.forward(batch(2).view()).unwrap()
    );
    std::fs::remove_file(&path).unwrap();
}

network! {
    struct Other {
        input: [1, 8, 8],
        conv: conv2d(5, kernel = 3, pad = 1),
        flatten,
        fc: linear(3),
    }
}

#[test]
fn loading_the_wrong_file_is_an_error_and_changes_nothing() {
    let path = temp_path("other.safetensors");
    Other::init(0).save(&path).unwrap();
    let mut net = Small::init(0);
    let before = net.params().clone();
    let err = net.load_unchecked(&path).unwrap_err().to_string();
    assert!(
        err.contains(
            "tensor `conv.weight`: expected F32 of shape [4, 1, 3, 3], the file holds F32 of shape [5, 1, 3, 3]"
        ),
        "{err}"
    );
    assert_eq!(net.params(), &before);
    std::fs::write(&path, b"not a weight file").unwrap();
    let err = net.load(&path).unwrap_err();
    assert!(matches!(err, striate::Error::Format { .. }), "{err}");
    std::fs::remove_file(&path).unwrap();
    let err = net.load(&path).unwrap_err();
    assert!(matches!(err, striate::Error::Io { .. }), "{err}");
}

/// The same layers as `Small`: the same tensor names and shapes, another network.
mod twin {
    use striate::prelude::*;

    network! {
        pub struct Twin {
            input: [1, 8, 8],
            conv: conv2d(4, kernel = 3, pad = 1),
            bn: batch_norm,
            tanh,
            avg_pool(2),
            flatten,
            drop: dropout(0.5),
            fc: linear(3),
        }
    }

    network! {
        /// 38,282 parameters, as in the issue that asked for a short `{:?}`.
        pub struct Wide {
            input: [38281],
            fc: linear(1),
        }
    }

    /// Another network called `Small`, of another size.
    pub mod same_name {
        use striate::prelude::*;

        network! {
            pub struct Small {
                input: [1, 8, 8],
                flatten,
                fc: linear(3),
            }
        }
    }
}

#[test]
fn a_file_of_another_network_with_the_same_tensors_is_refused_unless_asked() {
    let path = temp_path("twin.safetensors");
    let twin = twin::Twin::init(5);
    twin.save(&path).unwrap();
    let mut net = Small::init(0);
    let before = net.params().clone();
    let err = net.load(&path).unwrap_err();
    assert!(matches!(err, striate::Error::Format { .. }), "{err}");
    assert!(
        err.to_string().ends_with(
            "written by the network `Twin`, not `Small` (the file's metadata says so); `load_unchecked` loads it anyway when every tensor's name and shape fit"
        ),
        "{err}"
    );
    assert_eq!(net.params(), &before);
    net.load_unchecked(&path).unwrap();
    assert_eq!(net.params().as_slice(), twin.params().as_slice());
    // A file that names no network (as PyTorch writes them) is checked by its tensors alone.
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = twin
        .params()
        .iter()
        .chain(twin.buffers().iter())
        .map(|(info, v)| {
            (
                info.name.to_string(),
                info.shape.to_vec(),
                v.iter().copied().collect(),
            )
        })
        .collect();
    let borrowed: Vec<_> = tensors
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), v.as_slice()))
        .collect();
    striate::io::save_tensors(&path, &borrowed, None).unwrap();
    Small::init(1).load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn backward_with_another_networks_gradients_names_both() {
    let mut net = Small::init(0);
    let mut tape = Tape::new();
    let d = Array2::<f32>::zeros((2, 3));
    net.forward_train(batch(2).view(), &mut tape).unwrap();
    // The same size: only the names tell them apart.
    let mut grads = twin::Twin::init(0).gradients();
    assert_eq!(grads.params().len(), Small::NUM_PARAMS);
    let err = net.backward(&mut tape, d.view(), &mut grads).unwrap_err();
    assert!(matches!(err, striate::Error::OtherNetworksGradients { .. }));
    assert_eq!(
        err.to_string(),
        "backward of Small was given the gradients of Twin; make them with `gradients()` of the network whose backward pass fills them"
    );
    // Two networks called `Small`: their paths.
    let mut grads = twin::same_name::Small::init(0).gradients();
    let err = net.backward(&mut tape, d.view(), &mut grads).unwrap_err();
    assert_eq!(
        err.to_string(),
        "backward of api::Small was given the gradients of api::twin::same_name::Small; make them with `gradients()` of the network whose backward pass fills them"
    );
    net.backward(&mut tape, d.view(), &mut net.gradients())
        .unwrap();
}

#[test]
fn debug_shows_a_summary_not_the_weights() {
    let net = Small::init(0);
    let text = format!("{net:?}");
    assert_eq!(
        text,
        "Small { params: 243, buffers: 8, num_batches_tracked: 0, .. }"
    );
    assert_eq!(Small::NUM_PARAMS, 243);
    // Thousands separators, as `summary()` prints them.
    let text = format!("{:?}", twin::Wide::init(0));
    assert_eq!(
        text,
        "Wide { params: 38,282, buffers: 0, num_batches_tracked: 0, .. }"
    );
}

#[test]
fn summary_as_a_method_and_as_an_associated_function() {
    let net = Small::init(0);
    assert_eq!(net.summary().to_string(), Small::summary().to_string());
    assert_eq!(net.summary().total_params(), Small::NUM_PARAMS);
    fn generic<N: Network>(net: &N) -> (String, String) {
        (net.summary().to_string(), N::summary().to_string())
    }
    let (a, b) = generic(&net);
    assert_eq!(a, b);
}

#[test]
fn the_prelude_has_ndarrays_slice_macro() {
    let x = batch(4);
    assert_eq!(x.slice(s![1..3, .., .., ..]).shape(), &[2, 1, 8, 8]);
}

network! {
    /// A convolutional body with no classifier: its output is a feature map, not class scores.
    pub struct Body {
        input: [1, 8, 8],
        conv: conv2d(2, kernel = 3),
    }
}

#[test]
fn predict_is_the_argmax_and_predict_proba_the_softmax_of_forward() {
    let net = Small::init(4);
    let x = batch(6);
    let logits = net.forward(x.view()).unwrap();
    let classes = net.predict(x.view()).unwrap();
    let expected: Vec<usize> = logits
        .rows()
        .into_iter()
        .map(|row| {
            (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap()
        })
        .collect();
    assert_eq!(classes, expected);
    let probs = net.predict_proba(x.view()).unwrap();
    assert_eq!(probs, softmax(logits.view()));
    for row in probs.rows() {
        assert!((row.sum() - 1.0).abs() < 1e-5, "{row}");
    }
    // Evaluation mode: dropout is off, so the same input gives the same answer.
    assert_eq!(net.predict_proba(x.view()).unwrap(), probs);
    assert!(net.predict(batch(0).view()).unwrap().is_empty());
}

#[test]
fn predict_errors_name_both_shapes() {
    let net = Small::init(0);
    let err = net.predict(Array4::zeros((2, 1, 8, 7)).view()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input of Small: expected shape [2, 1, 8, 8], found [2, 1, 8, 7]"
    );
    let body = Body::init(0);
    let err = body.predict(batch(2).view()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "output of Body for predict (one score per class): expected shape [72], found [2, 6, 6]"
    );
    let err = body.predict_proba(batch(2).view()).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("output of Body for predict_proba"));
}

network! {
    /// A layer named with a raw identifier (`type` is a keyword).
    pub struct RawNames {
        input: [4],
        r#type: linear(2),
        r#match: residual { r#fn: linear(2) },
    }
}

/// A raw identifier's parameters are saved under the name without `r#`, as PyTorch names them
/// (issue 13, item 15).
#[test]
fn raw_identifiers_name_parameters_without_their_prefix() {
    let names: Vec<&str> = RawNames::PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "type.weight",
            "type.bias",
            "match.fn.weight",
            "match.fn.bias"
        ]
    );
}

/// A training step given bad labels (one past the last class, or one label too few) fails
/// before it changes anything: batch norm's running statistics and batch count, the weights
/// and the dropout generator are as they were, so the next good step gives exactly what it
/// gives on a network that never saw the bad ones (issue 13, item 9).
#[test]
fn a_failed_training_step_changes_nothing() {
    use striate::train::Trainer;
    let x = batch(4);
    let mut net = Small::init(3);
    let mut fresh = Small::init(3);
    let mut trainer = Trainer::new(&mut net, Sgd::new(0.1));
    let before = format!("{:?}", trainer.net().state());
    for (labels, expected) in [
        (&[0, 1, 3, 2][..], "label 3 at position 2 is out of range"),
        (&[0, 1, 2][..], "expected 4 labels"),
    ] {
        let err = trainer.step(x.view(), labels).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        assert_eq!(format!("{:?}", trainer.net().state()), before);
    }
    let good = [0, 1, 2, 1];
    let stats = trainer.step(x.view(), &good).unwrap();
    let mut other = Trainer::new(&mut fresh, Sgd::new(0.1));
    let expected = other.step(x.view(), &good).unwrap();
    assert_eq!(stats.loss.to_bits(), expected.loss.to_bits());
    assert_eq!(net.params().as_slice(), fresh.params().as_slice());
    assert_eq!(net.state().buffers, fresh.state().buffers);
}

/// `backward` refuses a tape recorded by another network of the same type, by a copy, or
/// before the parameters changed, whose gradients would be wrong, and takes one recorded
/// again afterwards (issue 13, item 10).
#[test]
fn backward_refuses_a_stale_tape() {
    let x = batch(2);
    let d_out = Array2::<f32>::ones((2, 3));
    let mut net = Small::init(1);
    let mut grads = net.gradients();
    let mut tape = Tape::new();
    net.forward_train(x.view(), &mut tape).unwrap();
    let mut other = Small::init(1);
    let err = other
        .backward(&mut tape, d_out.view(), &mut grads)
        .unwrap_err();
    assert!(
        err.to_string().contains("another network of the same type"),
        "{err}"
    );
    let copy = net.clone();
    let err = copy
        .backward(&mut tape, d_out.view(), &mut grads)
        .unwrap_err();
    assert!(err.to_string().contains("or a copy of this one"), "{err}");
    net.params_mut().as_mut_slice()[0] += 1.0;
    let err = net
        .backward(&mut tape, d_out.view(), &mut grads)
        .unwrap_err();
    assert!(
        err.to_string().contains("before its parameters changed"),
        "{err}"
    );
    net.forward_train(x.view(), &mut tape).unwrap();
    net.backward(&mut tape, d_out.view(), &mut grads).unwrap();
    other.forward_train(x.view(), &mut tape).unwrap();
    other.backward(&mut tape, d_out.view(), &mut grads).unwrap();
}
