//! Partial loads, their errors, the manifest and a pretrained body under a new head.

use striate::io::{save_tensors, save_typed_tensors, TensorData};
use striate::prelude::*;
use striate::{LoadProblem, Transfer};

#[path = "common/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

#[path = "common/transfer_nets.rs"]
mod nets;
use nets::{tensor, Classifier, LeNet5, LeNetFeatures, Small};

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

/// Every kind of load error, strict or partial, names the tensor, what the network expects
/// (shape and dtype) and what the file holds, and leaves the network as it was even when
/// earlier tensors fitted.
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
    // The strict `load` names the same problem, and loads nothing either.
    let strict = |net: &mut Small, path: &std::path::Path| -> (String, LoadProblem) {
        let err = net.load(path).unwrap_err();
        let Error::Load {
            tensor, problem, ..
        } = err
        else {
            panic!("{err}")
        };
        assert_eq!(net.params().as_slice(), before);
        assert_eq!(net.buffers().as_slice(), before_buffers);
        (tensor, *problem)
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
    assert_eq!(
        strict(&mut net, &path),
        (tensor.clone(), (**problem).clone())
    );

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
    let mismatch = LoadProblem::Mismatch {
        expected_shape: vec![3, 5],
        expected_dtype: "F32",
        found_shape: vec![5, 3],
        found_dtype: "F32".into(),
    };
    assert_eq!(strict(&mut net, &path), ("fc2.weight".into(), mismatch));

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
    assert_eq!(
        strict(&mut net, &path),
        ("fc2.bias".into(), (**problem).clone())
    );

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
    let (tensor, problem) = strict(&mut net, &path);
    assert_eq!(tensor, "fc3.weight");
    assert!(
        matches!(&problem, LoadProblem::Unused { closest } if closest.contains(&"fc2.weight".to_string())),
        "{problem}"
    );

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
