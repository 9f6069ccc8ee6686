//! Transfer learning: frozen parameters, partial loads, the manifest and a replaced head.

use striate::io::{save_tensors, save_typed_tensors, TensorData};
use striate::prelude::*;
use striate::{LoadProblem, Transfer};

#[path = "common/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

network! {
    /// LeNet-5 as in examples/lenet.rs.
    pub struct LeNet5 {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2), relu, max_pool(2),
        conv2: conv2d(16, kernel = 5), relu, max_pool(2),
        flatten,
        fc1: linear(120), relu,
        fc2: linear(84), relu,
        fc3: linear(10),
    }
}

network! {
    /// LeNet-5's convolutional body.
    pub struct LeNetFeatures {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2), relu, max_pool(2),
        conv2: conv2d(16, kernel = 5), relu, max_pool(2),
    }
}

network! {
    /// The body under a fresh head.
    pub struct Classifier {
        input: [1, 28, 28],
        features: LeNetFeatures -> [16, 5, 5],
        flatten,
        fc: linear(5),
    }
}

network! {
    /// Small, with batch norm, for quick steps.
    pub struct Small {
        input: [1, 6, 6],
        conv: conv2d(3, kernel = 3), bn: batch_norm, relu,
        flatten,
        fc1: linear(5), relu,
        fc2: linear(3),
    }
}

fn images(n: usize, c: usize, h: usize, seed: usize) -> Array4<f32> {
    Array4::from_shape_fn((n, c, h, h), |(s, ch, i, j)| {
        (((s * 7 + ch * 3 + i * 5 + j * 11 + seed) % 17) as f32) / 17.0 - 0.4
    })
}

fn labels(n: usize, k: usize) -> Vec<usize> {
    (0..n).map(|i| (i * 3 + 1) % k).collect()
}

fn tensor(net: &impl Network, name: &str) -> Vec<f32> {
    net.params().get(name).unwrap().iter().copied().collect()
}

#[test]
fn a_frozen_layer_is_bit_identical_after_steps_while_the_others_change() {
    for adam in [false, true] {
        let mut net = Small::init(3);
        assert_eq!(net.freeze("conv").unwrap(), 2);
        net.freeze("fc1.bias").unwrap();
        let before: Vec<Vec<f32>> = Small::PARAMS.iter().map(|p| tensor(&net, p.name)).collect();
        let x = images(8, 1, 6, 0);
        let y = labels(8, 3);
        if adam {
            let mut trainer = Trainer::new(&mut net, Adam::new(0.01));
            for _ in 0..3 {
                trainer.step(x.view(), &y).unwrap();
            }
            // Adam keeps moments for the trainable values only.
            let trainable = Small::NUM_PARAMS - 3 * 9 - 3 - 5;
            let buffers = trainer.optimizer_mut().buffers();
            assert!(
                buffers.iter().all(|(_, b)| b.len() == trainable),
                "{buffers:?}"
            );
        } else {
            let mut trainer = Trainer::new(&mut net, Sgd::new(0.1).momentum(0.9));
            for _ in 0..3 {
                trainer.step(x.view(), &y).unwrap();
            }
        }
        for (p, old) in Small::PARAMS.iter().zip(&before) {
            let now = tensor(&net, p.name);
            let frozen = matches!(p.name, "conv.weight" | "conv.bias" | "fc1.bias");
            let same = now.iter().zip(old).all(|(a, b)| a.to_bits() == b.to_bits());
            assert_eq!(same, frozen, "{} (adam: {adam})", p.name);
        }
        assert_eq!(net.frozen_names(), ["conv.weight", "conv.bias", "fc1.bias"]);
    }
}

/// Gradients with a frozen body: the body's weight gradients are skipped (counted on the tape)
/// and 0, and the head's are bit-identical to those of the network with nothing frozen.
#[test]
fn a_frozen_body_skips_its_weight_gradients() {
    let x = images(3, 1, 28, 1);
    let d_out = Array2::<f32>::from_shape_fn((3, 5), |(i, j)| (i as f32 - j as f32) / 7.0);
    let run = |net: &mut Classifier| {
        let mut tape = Tape::new();
        net.forward_train(x.view(), &mut tape).unwrap();
        let mut grads = net.gradients();
        net.backward(&mut tape, d_out.view(), &mut grads).unwrap();
        (grads, tape.weight_gradients())
    };
    let mut net = Classifier::init(5);
    let (all, counts) = run(&mut net);
    assert_eq!((counts.computed, counts.skipped), (3, 0));
    net.freeze("features").unwrap();
    let (head_only, counts) = run(&mut net);
    assert_eq!((counts.computed, counts.skipped), (1, 2));
    for p in Classifier::PARAMS {
        let (a, b) = (all.get(p.name).unwrap(), head_only.get(p.name).unwrap());
        if p.name.starts_with("features.") {
            assert!(b.iter().all(|&v| v == 0.0), "{}", p.name);
            assert!(a.iter().any(|&v| v != 0.0), "{}", p.name);
        } else {
            assert_eq!(a, b, "{}", p.name);
        }
    }

    // The bottom layer frozen: only it is skipped; the second still gets its gradient through
    // the first's output, exactly as before.
    net.unfreeze_all();
    net.freeze_first(1).unwrap();
    assert_eq!(
        net.frozen_names(),
        ["features.conv1.weight", "features.conv1.bias"]
    );
    let (bottom, counts) = run(&mut net);
    assert_eq!((counts.computed, counts.skipped), (2, 1));
    assert_eq!(
        bottom.get("features.conv2.weight"),
        all.get("features.conv2.weight")
    );

    // Asking for the input gradient runs the whole pass, but the frozen gradients stay 0.
    net.freeze("features").unwrap();
    let mut tape = Tape::new();
    net.forward_train(x.view(), &mut tape).unwrap();
    let mut grads = net.gradients().with_input();
    net.backward(&mut tape, d_out.view(), &mut grads).unwrap();
    assert_eq!(tape.weight_gradients().computed, 3);
    assert!(grads
        .get("features.conv1.weight")
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
    let mut unfrozen = Classifier::init(5);
    let mut tape = Tape::new();
    unfrozen.forward_train(x.view(), &mut tape).unwrap();
    let mut want = unfrozen.gradients().with_input();
    unfrozen
        .backward(&mut tape, d_out.view(), &mut want)
        .unwrap();
    assert_eq!(grads.input(), want.input());
}

/// A frozen layer above one that learns passes its gradient on: the one below gets exactly
/// the gradient it gets with nothing frozen.
#[test]
fn a_frozen_layer_above_a_learning_one_passes_the_gradient_on() {
    let x = images(4, 1, 6, 2);
    let d_out = Array2::<f32>::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f32 / 5.0 - 1.0);
    let grads_of = |net: &mut Small| {
        let mut tape = Tape::new();
        net.forward_train(x.view(), &mut tape).unwrap();
        let mut g = net.gradients();
        net.backward(&mut tape, d_out.view(), &mut g).unwrap();
        (g, tape.weight_gradients())
    };
    let mut net = Small::init(1);
    let (all, _) = grads_of(&mut net.clone());
    net.freeze("fc2").unwrap();
    let (g, counts) = grads_of(&mut net);
    assert_eq!((counts.computed, counts.skipped), (4, 0));
    assert!(g.get("fc2.weight").unwrap().iter().all(|&v| v == 0.0));
    assert_eq!(g.get("conv.weight"), all.get("conv.weight"));
    assert_eq!(g.get("fc1.weight"), all.get("fc1.weight"));
}

#[test]
fn unknown_names_list_the_closest() {
    let mut net = Classifier::init(0);
    let err = net.freeze("featurs").unwrap_err();
    let Error::UnknownName {
        network,
        name,
        closest,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((*network, name.as_str()), ("Classifier", "featurs"));
    assert_eq!(closest[0], "features");
    assert_eq!(
        err.to_string(),
        format!(
            "Classifier has no layer or parameter `featurs`; the closest names are: {}",
            closest.join(", ")
        )
    );
    assert!(net.freeze("").is_err());
    assert!(net.frozen().is_empty());
    let err = net.freeze_first(4).unwrap_err();
    assert!(
        err.to_string().contains(
            "Classifier has 3 layers with parameters (features.conv1, features.conv2, fc), not 4"
        ),
        "{err}"
    );
}

/// The head replaced: a file saved by `LeNet5` loaded into `Classifier.features` in one call,
/// checked against `LeNet5`'s manifest first.
#[test]
fn a_pretrained_body_loads_under_a_new_head() {
    let dir = TempDir::new("transfer-head");
    let path = dir.path().join("lenet.safetensors");
    let pretrained = LeNet5::init(7);
    pretrained.save(&path).unwrap();
    let mut net = Classifier::init(8);
    let head = tensor(&net, "fc.weight");
    let report = net.load_pretrained::<LeNet5>(&path, "features").unwrap();
    assert_eq!(
        report.loaded,
        [
            "features.conv1.bias",
            "features.conv1.weight",
            "features.conv2.bias",
            "features.conv2.weight"
        ]
    );
    assert!(report.missing.is_empty());
    assert_eq!(
        report.unused,
        [
            "fc1.bias",
            "fc1.weight",
            "fc2.bias",
            "fc2.weight",
            "fc3.bias",
            "fc3.weight"
        ]
    );
    assert_eq!(
        tensor(&net, "features.conv2.weight"),
        tensor(&pretrained, "conv2.weight")
    );
    assert_eq!(tensor(&net, "fc.weight"), head);
    // The same body, as a network of its own.
    let body: LeNetFeatures = net.part("features").unwrap();
    assert_eq!(
        tensor(&body, "conv1.weight"),
        tensor(&pretrained, "conv1.weight")
    );

    // The manifest refuses a file of another network before reading it into this one.
    let err = net
        .load_pretrained::<Classifier>(&path, "features")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("written by the network `LeNet5`, not `Classifier`"),
        "{err}"
    );
}

#[test]
fn prefix_and_renamed_loads_move_only_their_part() {
    let dir = TempDir::new("transfer-prefix");
    let path = dir.path().join("classifier.safetensors");
    let source = Classifier::init(1);
    source.save(&path).unwrap();

    let mut net = Classifier::init(2);
    let head = tensor(&net, "fc.weight");
    let report = net.load_prefix(&path, "features.conv2").unwrap();
    assert_eq!(
        report.loaded,
        ["features.conv2.bias", "features.conv2.weight"]
    );
    assert_eq!(report.unused.len(), 4);
    assert_eq!(
        tensor(&net, "features.conv2.weight"),
        tensor(&source, "features.conv2.weight")
    );
    assert_ne!(
        tensor(&net, "features.conv1.weight"),
        tensor(&source, "features.conv1.weight")
    );
    assert_eq!(tensor(&net, "fc.weight"), head);

    // The body of a Classifier's file as a network of its own: `features.` renamed to nothing.
    let mut body = LeNetFeatures::init(3);
    let report = body.load_renamed(&path, "features", "").unwrap();
    assert_eq!(report.loaded.len(), 4);
    assert_eq!(report.unused, ["fc.bias", "fc.weight"]);
    assert_eq!(
        tensor(&body, "conv1.weight"),
        tensor(&source, "features.conv1.weight")
    );

    // A prefix the network lacks.
    let err = net.load_prefix(&path, "feature").unwrap_err();
    assert!(matches!(err, Error::UnknownName { .. }), "{err}");
}

#[test]
fn a_non_strict_load_reports_loaded_missing_and_unused() {
    let dir = TempDir::new("transfer-lenient");
    let path = dir.path().join("lenet.safetensors");
    let source = LeNet5::init(4);
    source.save(&path).unwrap();
    // A network sharing LeNet-5's convolutions and first layer, but with a 5-way head.
    network! {
        struct Five {
            input: [1, 28, 28],
            conv1: conv2d(6, kernel = 5, pad = 2), relu, max_pool(2),
            conv2: conv2d(16, kernel = 5), relu, max_pool(2),
            flatten,
            fc1: linear(120), relu,
            head: linear(5),
        }
    }
    let mut net = Five::init(5);
    let head = tensor(&net, "head.weight");
    let report = net.load_non_strict(&path).unwrap();
    assert_eq!(report.loaded.len(), 6);
    assert_eq!(report.missing, ["head.bias", "head.weight"]);
    assert_eq!(
        report.unused,
        ["fc2.bias", "fc2.weight", "fc3.bias", "fc3.weight"]
    );
    assert_eq!(tensor(&net, "fc1.weight"), tensor(&source, "fc1.weight"));
    assert_eq!(tensor(&net, "head.weight"), head);
    // The strict load refuses the same file.
    assert!(net.load_unchecked(&path).is_err());
}

/// A tensor to write: its name, shape and values.
type Named = (String, Vec<usize>, Vec<f32>);

/// Every kind of load error names the tensor, what the network expects and what the file
/// holds, and leaves the network as it was even when earlier tensors fitted.
#[test]
fn every_load_error_names_the_tensor_and_loads_nothing() {
    let dir = TempDir::new("transfer-errors");
    let source = Small::init(9);
    let mut net = Small::init(10);
    let before = net.params().as_slice().to_vec();
    let before_buffers = net.buffers().as_slice().to_vec();
    let all: Vec<Named> = Small::PARAMS
        .iter()
        .chain(Small::BUFFERS.iter())
        .map(|p| {
            let values = match source.params().get(p.name) {
                Some(v) => v.iter().copied().collect(),
                None => source
                    .buffers()
                    .get(p.name)
                    .unwrap()
                    .iter()
                    .copied()
                    .collect(),
            };
            (p.name.to_string(), p.shape.to_vec(), values)
        })
        .collect();
    let write = |name: &str, edit: &dyn Fn(&mut Vec<Named>)| {
        let mut tensors = all.clone();
        edit(&mut tensors);
        let path = dir.path().join(name);
        let views: Vec<(String, Vec<usize>, &[f32])> = tensors
            .iter()
            .map(|(n, s, v)| (n.clone(), s.clone(), &v[..]))
            .collect();
        save_tensors(&path, &views, None).unwrap();
        path
    };
    let unchanged = |net: &Small| {
        assert_eq!(net.params().as_slice(), before);
        assert_eq!(net.buffers().as_slice(), before_buffers);
    };

    // Missing (the last parameter, so that the others fitted first).
    let path = write("missing.safetensors", &|t| {
        t.retain(|(n, _, _)| n != "fc2.bias")
    });
    let err = net.load_prefix(&path, "fc2").unwrap_err();
    let Error::Load {
        tensor, problem, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(tensor, "fc2.bias");
    assert_eq!(
        **problem,
        LoadProblem::Missing {
            expected_shape: vec![3],
            expected_dtype: "F32"
        }
    );
    assert!(
        err.to_string()
            .ends_with("tensor `fc2.bias`: missing from the file; expected F32 of shape [3]"),
        "{err}"
    );
    unchanged(&net);

    // Another shape.
    let path = write("shape.safetensors", &|t| {
        let w = t.iter_mut().find(|(n, _, _)| n == "fc2.weight").unwrap();
        w.1 = vec![5, 3];
    });
    let err = net.load_non_strict(&path).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "tensor `fc2.weight`: expected F32 of shape [3, 5], the file holds F32 of shape [5, 3]"
        ),
        "{err}"
    );
    unchanged(&net);

    // Another dtype.
    let path = dir.path().join("dtype.safetensors");
    let ints = [1i64; 3];
    let mut typed: Vec<(String, Vec<usize>, TensorData<'_>)> = all
        .iter()
        .filter(|(n, _, _)| n != "fc2.bias")
        .map(|(n, s, v)| (n.clone(), s.clone(), TensorData::F32(v)))
        .collect();
    typed.push(("fc2.bias".into(), vec![3], TensorData::I64(&ints)));
    save_typed_tensors(&path, &typed, None).unwrap();
    let err = net.load_non_strict(&path).unwrap_err();
    let Error::Load { problem, .. } = &err else {
        panic!("{err}")
    };
    let LoadProblem::Mismatch { found_dtype, .. } = &**problem else {
        panic!("{err}")
    };
    assert_eq!(found_dtype, "I64");
    unchanged(&net);

    // A NaN.
    let path = write("nan.safetensors", &|t| {
        t.last_mut().unwrap().2[0] = f32::NAN
    });
    let err = net.load_non_strict(&path).unwrap_err();
    assert!(matches!(err, Error::NonFinite { .. }), "{err}");
    unchanged(&net);

    // A tensor the network lacks: the manifest check says which, and which it could be.
    let path = write("extra.safetensors", &|t| {
        t.push(("fc3.weight".into(), vec![1], vec![0.0]));
    });
    let err = Small::MANIFEST.check(&path).unwrap_err();
    let Error::Load {
        tensor, problem, ..
    } = &err
    else {
        panic!("{err}")
    };
    let LoadProblem::Unused { closest } = &**problem else {
        panic!("{err}")
    };
    assert_eq!(tensor, "fc3.weight");
    assert!(closest.contains(&"fc2.weight".to_string()), "{closest:?}");

    // An unreadable file.
    let err = net
        .load_non_strict(dir.path().join("absent.safetensors"))
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    unchanged(&net);

    // The complete file loads, and its batch counter with it.
    let path = dir.path().join("whole.safetensors");
    source.save(&path).unwrap();
    let report = net.load_non_strict(&path).unwrap();
    assert!(report.missing.is_empty() && report.unused.is_empty());
    assert_eq!(
        report.loaded.len(),
        Small::PARAMS.len() + Small::BUFFERS.len() + 1
    );
    assert_eq!(net.params(), source.params());
}

/// The manifest holds every tensor of the file `save` writes, and the check, which reads the
/// header only, rejects the files of other networks, whether their metadata says so or not.
#[test]
fn the_manifest_check_rejects_another_networks_file() {
    let dir = TempDir::new("transfer-manifest");
    let path = dir.path().join("small.safetensors");
    Small::init(0).save(&path).unwrap();
    Small::MANIFEST.check(&path).unwrap();
    let names: Vec<String> = Small::MANIFEST
        .entries()
        .map(|e| e.name.into_owned())
        .collect();
    let mut in_file: Vec<String> = striate::io::read_tensor_infos(&path)
        .unwrap()
        .0
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    in_file.sort();
    assert_eq!(sorted, in_file);
    assert!(names.contains(&"bn.num_batches_tracked".to_string()));

    let err = Classifier::MANIFEST.check(&path).unwrap_err();
    assert!(
        err.to_string()
            .contains("written by the network `Small`, not `Classifier`"),
        "{err}"
    );

    // A file without metadata (as PyTorch writes it) is judged by its tensors.
    let lenet = dir.path().join("lenet.safetensors");
    let net = LeNet5::init(0);
    let tensors: Vec<(String, Vec<usize>, &[f32])> = LeNet5::PARAMS
        .iter()
        .map(|p| {
            let v = &net.params().as_slice()[p.offset..p.offset + p.len];
            (p.name.to_string(), p.shape.to_vec(), v)
        })
        .collect();
    save_tensors(&lenet, &tensors, None).unwrap();
    LeNet5::MANIFEST.check(&lenet).unwrap();
    let err = Classifier::MANIFEST.check(&lenet).unwrap_err();
    let Error::Load {
        tensor, problem, ..
    } = &err
    else {
        panic!("{err}")
    };
    let LoadProblem::Missing {
        expected_shape,
        expected_dtype,
    } = &**problem
    else {
        panic!("{err}")
    };
    assert_eq!(tensor, "features.conv1.weight");
    assert_eq!(
        (expected_shape.as_slice(), *expected_dtype),
        (&[6, 1, 5, 5][..], "F32")
    );
}

/// Frozen batch norm asked to keep its statistics: in a training pass it leaves them as they
/// are and normalises with them, so the gradients of the layers that learn are those of an
/// evaluation-mode pass; by default it trains with batch statistics, as PyTorch does.
#[test]
fn frozen_batch_norm_can_keep_its_running_statistics() {
    let x = images(5, 1, 6, 4);
    let d_out = Array2::<f32>::from_shape_fn((5, 3), |(i, j)| (i + 2 * j) as f32 / 9.0 - 0.5);
    let grads_of = |net: &mut Small, mode: Mode| {
        let mut tape = Tape::new();
        net.forward_tape(x.view(), &mut tape, mode).unwrap();
        let mut g = net.gradients();
        net.backward(&mut tape, d_out.view(), &mut g).unwrap();
        g
    };
    let mut net = Small::init(6);
    net.buffers_mut().as_mut_slice()[..3].copy_from_slice(&[0.1, -0.2, 0.3]);
    let statistics = net.buffers().as_slice().to_vec();
    let eval = grads_of(&mut net.clone(), Mode::Eval);
    net.freeze("bn").unwrap();
    assert!(!net.frozen().batch_norm_eval());
    grads_of(&mut net.clone(), Mode::Train);
    let mut moved = net.clone();
    grads_of(&mut moved, Mode::Train);
    assert_ne!(moved.buffers().as_slice(), statistics);

    net.freeze_batch_norm_statistics(true);
    let g = grads_of(&mut net, Mode::Train);
    assert_eq!(net.buffers().as_slice(), statistics);
    for name in ["conv.weight", "conv.bias", "fc1.weight", "fc2.weight"] {
        assert_eq!(g.get(name), eval.get(name), "{name}");
    }
    assert!(g.get("bn.weight").unwrap().iter().all(|&v| v == 0.0));
}

/// A training checkpoint of a network with frozen layers keeps the optimizer's state of the
/// trainable parameters only, and training resumed from it goes on exactly as it would have.
#[test]
fn training_checkpoints_keep_the_state_of_the_trainable_parameters() {
    let dir = TempDir::new("transfer-checkpoint");
    let path = dir.path().join("step.safetensors");
    let x = images(6, 1, 6, 5);
    let y = labels(6, 3);
    let mut net = Small::init(2);
    net.freeze("conv").unwrap();
    net.freeze("fc2.bias").unwrap();
    let mut resumed = net.clone();
    let mut trainer = Trainer::new(&mut net, Adam::new(0.01));
    trainer.step(x.view(), &y).unwrap();
    trainer.save_checkpoint(&path).unwrap();
    trainer.step(x.view(), &y).unwrap();
    drop(trainer);
    let names = striate::io::read_tensor_infos(&path).unwrap().0;
    let optimizer: Vec<&str> = names
        .iter()
        .filter_map(|t| t.name.strip_prefix("optimizer."))
        .collect();
    assert!(optimizer.contains(&"fc1.weight.exp_avg"), "{optimizer:?}");
    assert!(!optimizer
        .iter()
        .any(|n| n.starts_with("conv.") || n.starts_with("fc2.bias")));

    let mut again = Trainer::new(&mut resumed, Adam::new(0.01));
    again.resume(&path).unwrap();
    again.step(x.view(), &y).unwrap();
    drop(again);
    assert_eq!(resumed.params(), net.params());
}
