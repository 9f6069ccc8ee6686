//! Batch norm's count of training batches, PyTorch's `num_batches_tracked`: counted by
//! training-mode forward passes only, written by `save` as an int64 scalar for every batch-norm
//! layer (so PyTorch's `load_state_dict(strict=True)` finds every key), read back by `load`,
//! and a counter of the wrong dtype or shape is an error that changes nothing.

use std::path::{Path, PathBuf};

use striate::io::{load_typed_tensors, save_tensors, save_typed_tensors, LoadedData, TensorData};
use striate::prelude::*;
use striate::Network;

network! {
    /// Two batch-norm layers (2-D and 1-D) and dropout.
    struct Normed {
        input: [1, 6, 6],
        conv: conv2d(3, kernel = 3),
        bn1: batch_norm,
        relu,
        flatten,
        drop: dropout(0.2),
        fc: linear(4),
        bn2: batch_norm,
    }
}

network! {
    /// No batch norm: no counter.
    struct Plain {
        input: [1, 6, 6],
        conv: conv2d(3, kernel = 3),
        relu,
        flatten,
        drop: dropout(0.2),
        fc: linear(4),
    }
}

fn images(n: usize) -> Array4<f32> {
    Array4::from_shape_fn((n, 1, 6, 6), |(b, _, i, j)| {
        ((b * 36 + i * 6 + j) as f32 * 0.43).cos()
    })
}

/// The names of the tensors in the safetensors file at `path`.
fn saved_names(path: &Path) -> Vec<String> {
    load_typed_tensors(path)
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect()
}

/// A path in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!(
            "striate-checkpoints-{}-{name}.safetensors",
            std::process::id()
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn count<N: Network>(net: &N) -> u64 {
    net.state().num_batches_tracked
}

/// `(shape, data)` of the tensor called `name` in the file at `path`.
fn tensor_in(path: &Path, name: &str) -> Option<(Vec<usize>, LoadedData)> {
    load_typed_tensors(path)
        .unwrap()
        .into_iter()
        .find(|t| t.name == name)
        .map(|t| (t.shape, t.data))
}

/// Every tensor of the file at `path` as `save_typed_tensors` takes them, with the counters
/// replaced by `counter(name)` (or dropped when it gives `None`).
fn rewrite(path: &Path, counter: impl Fn(&str) -> Option<(Vec<usize>, TensorData<'static>)>) {
    let tensors = load_typed_tensors(path).unwrap();
    let mut out = Vec::new();
    for t in &tensors {
        if t.name.ends_with(".num_batches_tracked") {
            if let Some((shape, data)) = counter(&t.name) {
                out.push((t.name.clone(), shape, data));
            }
            continue;
        }
        let LoadedData::F32(values) = &t.data else {
            panic!("`{}` is not F32", t.name)
        };
        out.push((t.name.clone(), t.shape.clone(), TensorData::F32(values)));
    }
    save_typed_tensors(path, &out, None).unwrap();
}

#[test]
fn training_passes_count_and_other_passes_do_not() {
    let mut net = Normed::init(1);
    let mut tape = Tape::new();
    assert_eq!(count(&net), 0);
    for k in 1..=4 {
        net.forward_train(images(3).view(), &mut tape).unwrap();
        assert_eq!(count(&net), k);
    }
    net.forward_tape(images(3).view(), &mut tape, Mode::Train)
        .unwrap();
    assert_eq!(count(&net), 5);

    // Evaluation and inference read the running statistics and count nothing.
    net.forward_tape(images(3).view(), &mut tape, Mode::Eval)
        .unwrap();
    net.infer(images(5).view(), &mut tape).unwrap();
    net.forward(images(2).view()).unwrap();
    // Neither does a training pass that fails before it runs.
    assert!(net
        .forward_train(Array4::zeros((0, 1, 6, 6)).view(), &mut tape)
        .is_err());
    assert!(net
        .forward_train(Array4::zeros((2, 1, 6, 5)).view(), &mut tape)
        .is_err());
    // Nor a backward pass.
    let logits = net
        .forward_train(images(3).view(), &mut tape)
        .unwrap()
        .to_owned();
    let (_, d_logits) = cross_entropy(logits.view(), &[0, 1, 2]).unwrap();
    let mut grads = net.gradients();
    net.backward(&mut tape, d_logits.view(), &mut grads)
        .unwrap();
    assert_eq!(count(&net), 6);

    // The trainer's steps are training passes too: one per batch.
    let xs: Vec<f32> = images(10).iter().copied().collect();
    let data =
        striate::data::Dataset::new(xs, (0..10).map(|i| i % 4).collect(), [1, 6, 6], 4).unwrap();
    let mut trainer = striate::train::Trainer::new(&mut net, Sgd::new(0.01));
    trainer.epoch(&data, 4, 0, false).unwrap();
    assert_eq!(
        count(&net),
        6 + 3,
        "10 samples in batches of 4 are 3 batches"
    );
}

#[test]
fn save_writes_the_count_as_an_int64_scalar_for_every_batch_norm_layer() {
    let file = TempFile::new("count");
    let mut net = Normed::init(2);
    let mut tape = Tape::new();
    for _ in 0..3 {
        net.forward_train(images(4).view(), &mut tape).unwrap();
    }
    net.save(&file.0).unwrap();
    for layer in ["bn1", "bn2"] {
        let (shape, data) = tensor_in(&file.0, &format!("{layer}.num_batches_tracked")).unwrap();
        assert!(shape.is_empty(), "{layer}: shape {shape:?}, not a scalar");
        assert_eq!(data, LoadedData::I64(vec![3]), "{layer}");
    }
    // Exactly the keys of PyTorch's state_dict: the parameters, the buffers, the counters.
    let mut names = saved_names(&file.0);
    names.sort();
    let mut expected: Vec<String> = Normed::PARAMS
        .iter()
        .chain(&Normed::BUFFERS)
        .map(|info| info.name.to_string())
        .chain(["bn1", "bn2"].map(|l| format!("{l}.num_batches_tracked")))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn a_network_without_batch_norm_counts_nothing_and_writes_no_counter() {
    let file = TempFile::new("plain");
    let mut net = Plain::init(3);
    let mut tape = Tape::new();
    net.forward_train(images(4).view(), &mut tape).unwrap();
    assert_eq!(count(&net), 0);
    net.save(&file.0).unwrap();
    let names = saved_names(&file.0);
    assert_eq!(names.len(), Plain::PARAMS.len(), "{names:?}");
    assert!(names.iter().all(|n| !n.contains("num_batches_tracked")));
    Plain::init(4).load(&file.0).unwrap();
}

#[test]
fn the_count_round_trips_through_a_file() {
    let file = TempFile::new("round-trip");
    let mut trained = Normed::init(5);
    let mut tape = Tape::new();
    for _ in 0..7 {
        trained.forward_train(images(3).view(), &mut tape).unwrap();
    }
    trained.save(&file.0).unwrap();
    let mut loaded = Normed::init(6);
    loaded.forward_train(images(3).view(), &mut tape).unwrap();
    loaded.load(&file.0).unwrap();
    assert_eq!(count(&loaded), 7);
    assert_eq!(loaded.params(), trained.params());
    assert_eq!(loaded.buffers(), trained.buffers());
    // Training goes on counting from there.
    loaded.forward_train(images(3).view(), &mut tape).unwrap();
    assert_eq!(count(&loaded), 8);
}

#[test]
fn counters_of_shape_one_are_read_and_the_largest_wins() {
    let file = TempFile::new("shape-one");
    Normed::init(7).save(&file.0).unwrap();
    rewrite(&file.0, |name| {
        let value: &'static [i64] = if name.starts_with("bn1") { &[3] } else { &[9] };
        Some((vec![1], TensorData::I64(value)))
    });
    let mut net = Normed::init(8);
    net.load(&file.0).unwrap();
    assert_eq!(count(&net), 9);
}

#[test]
fn a_file_without_counters_loads_with_a_count_of_zero() {
    // As striate wrote files before it kept the count: f32 tensors only.
    let file = TempFile::new("old");
    let source = Normed::init(9);
    let mut tensors = Vec::new();
    for store in [source.params(), source.buffers()] {
        for (info, values) in store.iter() {
            tensors.push((
                info.name.to_string(),
                info.shape.to_vec(),
                values.iter().copied().collect::<Vec<f32>>(),
            ));
        }
    }
    let borrowed: Vec<_> = tensors
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), v.as_slice()))
        .collect();
    save_tensors(&file.0, &borrowed, None).unwrap();

    let mut net = Normed::init(10);
    let mut tape = Tape::new();
    net.forward_train(images(3).view(), &mut tape).unwrap();
    net.load(&file.0).unwrap();
    assert_eq!(count(&net), 0);
    assert_eq!(net.params(), source.params());
}

#[test]
fn a_counter_of_the_wrong_dtype_or_shape_is_an_error_that_changes_nothing() {
    let file = TempFile::new("bad-counter");
    let mut other = Normed::init(11);
    let mut tape = Tape::new();
    other.forward_train(images(3).view(), &mut tape).unwrap();
    other.save(&file.0).unwrap();
    let good = std::fs::read(&file.0).unwrap();

    let mut net = Normed::init(12);
    net.forward_train(images(3).view(), &mut tape).unwrap();
    net.forward_train(images(3).view(), &mut tape).unwrap();
    let (params, buffers) = (net.params().clone(), net.buffers().clone());

    type Bad = (&'static str, Vec<usize>, TensorData<'static>, &'static str);
    let cases: [Bad; 5] = [
        (
            "bn1",
            vec![],
            TensorData::F32(&[1.0]),
            "the file holds F32 of shape []",
        ),
        (
            "bn2",
            vec![2],
            TensorData::I64(&[1, 1]),
            "the file holds I64 of shape [2]",
        ),
        (
            "bn1",
            vec![1, 1],
            TensorData::I64(&[1]),
            "the file holds I64 of shape [1, 1]",
        ),
        (
            "bn2",
            vec![0],
            TensorData::I64(&[]),
            "the file holds I64 of shape [0]",
        ),
        (
            "bn2",
            vec![],
            TensorData::I64(&[-4]),
            "expected a count of batches, at least 0, found -4",
        ),
    ];
    for (layer, shape, data, message) in cases {
        std::fs::write(&file.0, &good).unwrap();
        let bad = format!("{layer}.num_batches_tracked");
        rewrite(&file.0, |name| {
            if name == bad {
                Some((shape.clone(), data))
            } else {
                Some((vec![], TensorData::I64(&[1])))
            }
        });
        let err = net.load(&file.0).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("tensor `{bad}`")), "{text}");
        assert!(text.contains(message), "{text}");
        if message.starts_with("expected a count") {
            assert!(matches!(err, striate::Error::Format { .. }), "{err:?}");
        } else {
            assert!(matches!(err, striate::Error::Load { .. }), "{err:?}");
            assert!(text.contains("expected I64 of shape []"), "{text}");
        }
        assert_eq!(net.params(), &params);
        assert_eq!(net.buffers(), &buffers);
        assert_eq!(count(&net), 2);
    }

    // A counter of a dtype striate does not read (F64), in a file written by hand: it is
    // checked before the tensors that the file lacks.
    let mut header =
        r#"{"bn1.num_batches_tracked":{"dtype":"F64","shape":[],"data_offsets":[0,8]}}"#
            .to_string();
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&2.0f64.to_le_bytes());
    std::fs::write(&file.0, bytes).unwrap();
    let err = net.load(&file.0).unwrap_err();
    assert!(matches!(err, striate::Error::Load { .. }), "{err:?}");
    assert!(
        err.to_string().contains(
            "tensor `bn1.num_batches_tracked`: expected I64 of shape [], the file holds F64 of \
             shape []"
        ),
        "{err}"
    );
    assert_eq!(count(&net), 2);
}
