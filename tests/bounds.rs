//! Bounded resources and non-finite values, through the public API (issue 13, items 7, 8 and
//! 14): networks too large for the machine are errors, never aborts; weight files are read as
//! their headers say, and a failed load changes nothing; NaN and infinite values are refused
//! where they would poison a network.

#[path = "common/temp_dir.rs"]
mod temp_dir;

use std::sync::Mutex;

use striate::io::{save_tensors, save_typed_tensors, TensorData};
use striate::prelude::*;
use striate::{Limits, LoadOptions};
use temp_dir::TempDir;

/// The tests that change the process-wide [`Limits`] take this, and so do those that need the
/// defaults in force, so that none sees another's bounds.
static LIMITS: Mutex<()> = Mutex::new(());

fn limits_lock() -> std::sync::MutexGuard<'static, ()> {
    LIMITS.lock().unwrap_or_else(|e| e.into_inner())
}

network! {
    /// 2^32 weights and 2^16 biases: 16 GiB and 256 KiB, past the default bound of 16 GiB.
    struct Wide { input: [65536], fc: linear(65536) }
}

network! {
    /// 2^34 weights: 64 GiB, more than this machine has.
    struct Wider { input: [262144], fc: linear(65536) }
}

network! {
    /// The second example: 10^10 values per sample, 40 GB for the input alone.
    struct Huge { input: [1, 100000, 100000], relu }
}

network! {
    struct Small {
        input: [1, 6, 6],
        conv: conv2d(2, kernel = 3), bn: batch_norm, relu,
        flatten,
        fc: linear(3),
    }
}

network! {
    /// Few values per sample (4,160 on the tape) and a large kernel scratch: the packed
    /// weights (262,144 values) of a convolution whose 8x8 kernel covers the whole input.
    pub struct WholeWindow {
        input: [64, 8, 8],
        conv: conv2d(64, kernel = 8) -> [64, 1, 1],
        relu,
    }
}

network! {
    /// The same convolution inside another network: its scratch is on a tape of its own.
    struct Outer {
        input: [64, 8, 8],
        body: WholeWindow -> [64, 1, 1],
        flatten,
        fc: linear(2),
    }
}

/// Whether the system refuses, at once, a single allocation of `bytes`: Linux's default
/// heuristic overcommit (mode 0) and strict accounting (mode 2) refuse one larger than the
/// memory and swap; mode 1 grants anything, and a test that relies on the refusal is skipped.
fn system_refuses(bytes: u64) -> bool {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mode = read("/proc/sys/vm/overcommit_memory");
    let kib = |key: &str| {
        read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    let total = kib("MemTotal:")
        .zip(kib("SwapTotal:"))
        .map(|(m, s)| (m + s) * 1024);
    let refuses = matches!(mode.trim(), "0" | "2") && total.is_some_and(|t| t < bytes / 2);
    if !refuses {
        eprintln!("overcommit mode {mode:?}, memory {total:?}: the refusal case is skipped");
    }
    refuses
}

/// `init` of a network the macro accepts but the machine cannot hold: `try_init` returns
/// the bound (nothing allocated), `init` panics with the same message instead of aborting, and
/// with the bound raised the system's refusal is an `Error::Allocation` (issue 13, item 8).
#[test]
fn networks_too_large_to_init_are_errors() {
    let _guard = limits_lock();
    match Wide::try_init(0) {
        Err(Error::Limit {
            name: "max_alloc_bytes",
            limit,
            found,
            how_to_raise,
            ..
        }) => {
            assert_eq!(limit, Limits::DEFAULT.max_alloc_bytes);
            assert_eq!(found, ((1u64 << 32) + (1 << 16)) * 4);
            assert!(
                how_to_raise.contains("Limits::global().max_alloc_bytes("),
                "{how_to_raise}"
            );
        }
        Err(other) => panic!("expected a limit error, found {other}"),
        Ok(_) => panic!("a 16 GiB network was allocated"),
    }
    let panicked = std::panic::catch_unwind(|| Wide::init(0)).unwrap_err();
    let message = panicked.downcast_ref::<String>().unwrap();
    assert!(
        message.starts_with("Wide::init: the parameters of Wide"),
        "{message}"
    );

    if system_refuses(64 << 30) {
        Limits::default().max_alloc_bytes(u64::MAX).set_global();
        let refused = Wider::try_init(0);
        Limits::DEFAULT.set_global();
        match refused {
            Err(Error::Allocation { bytes, .. }) => {
                assert_eq!(bytes, ((1u64 << 34) + (1 << 16)) * 4)
            }
            Err(other) => panic!("expected an allocation error, found {other}"),
            Ok(_) => panic!("a 64 GiB network was allocated"),
        }
    }
}

/// `forward` of `input: [1, 100000, 100000], relu` on a broadcast input (one value seen as
/// 10^10) returns the bound instead of aborting on 80 GB of buffers, in one thread and split
/// over two; with the bound raised, the system's refusal (issue 13, item 8).
#[test]
fn passes_too_large_for_memory_are_errors() {
    let _guard = limits_lock();
    let net = Huge::init(0);
    let one = Array4::<f32>::zeros((1, 1, 1, 1));
    for (samples, threads) in [(1, 1), (8, 2)] {
        striate::set_threads(threads).unwrap();
        let x = one.broadcast((samples, 1, 100_000, 100_000)).unwrap();
        let result = net.forward(x);
        striate::set_threads(1).unwrap();
        match result {
            Err(
                err @ Error::Limit {
                    name: "max_alloc_bytes",
                    ..
                },
            ) => {
                assert!(err.to_string().contains("a pass of Huge over"), "{err}");
            }
            Err(other) => panic!("expected a limit error, found {other}"),
            Ok(_) => panic!("a pass of 80 GB ran"),
        }
    }
    if system_refuses(80 << 30) {
        Limits::default().max_alloc_bytes(u64::MAX).set_global();
        let x = one.broadcast((1, 1, 100_000, 100_000)).unwrap();
        let refused = net.forward(x);
        Limits::DEFAULT.set_global();
        assert!(
            matches!(refused, Err(Error::Allocation { .. })),
            "{refused:?}"
        );
    }
    // The bound in force is the one set: a small one refuses a small pass.
    Limits::default().max_alloc_bytes(1000).set_global();
    let small = Small::init(0);
    let refused = small.forward(Array4::zeros((8, 1, 6, 6)).view());
    Limits::DEFAULT.set_global();
    assert!(
        matches!(refused, Err(Error::Limit { limit: 1000, .. })),
        "{refused:?}"
    );
    assert!(small.forward(Array4::zeros((8, 1, 6, 6)).view()).is_ok());
}

fn bits(net: &impl Network) -> Vec<u32> {
    let mut all = Vec::new();
    net.visit(|t| all.extend(t.values.iter().map(|v| v.to_bits())));
    all
}

/// A load that fails, from a truncated, an overlong, a non-regular or a non-finite file,
/// leaves every parameter, buffer and the batch count as they were (issue 13, item 7).
#[test]
fn failed_loads_change_nothing() {
    let _guard = limits_lock();
    let dir = TempDir::new("bounds-load");
    let good = dir.path().join("good.safetensors");
    let mut trained = Small::init(1);
    trained.state_mut().num_batches_tracked = 5;
    trained.save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let mut net = Small::init(2);
    let before = bits(&net);
    let bad = dir.path().join("bad.safetensors");
    let mut cases: Vec<Vec<u8>> = vec![
        bytes[..bytes.len() - 1].to_vec(),
        bytes[..bytes.len() / 2].to_vec(),
        [&bytes[..], b"extra"].concat(),
    ];
    // The first value of the first F32 tensor made infinite.
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut inf = bytes.clone();
    // The file's first tensor is batch norm's I64 counter (8 bytes), then F32 tensors.
    inf[header_end + 8..header_end + 12].copy_from_slice(&f32::INFINITY.to_le_bytes());
    cases.push(inf.clone());
    for case in cases {
        std::fs::write(&bad, &case).unwrap();
        assert!(net.load(&bad).is_err(), "{} bytes loaded", case.len());
        assert_eq!(bits(&net), before);
        assert_eq!(net.state().num_batches_tracked, 0);
    }
    std::fs::write(&bad, &inf).unwrap();
    match net.load(&bad).unwrap_err() {
        Error::NonFinite {
            what,
            index: 0,
            value,
            ..
        } => {
            assert!(value.is_infinite());
            assert!(what.contains("tensor `bn.bias`"), "{what}");
        }
        other => panic!("expected a non-finite error, found {other}"),
    }
    net.load_with(&bad, LoadOptions::new().allow_non_finite())
        .unwrap();
    assert!(net.params().get("bn.bias").unwrap()[0].is_infinite());
    net.load(&good).unwrap();
    assert_eq!(bits(&net), bits(&trained));
    assert_eq!(net.state().num_batches_tracked, 5);
}

/// Saving a network with a NaN weight is refused and the earlier file stays; a file of
/// finite values written by another tool (as PyTorch's are) loads as before (issue 13, item
/// 14).
#[test]
fn non_finite_weights_are_not_saved() {
    let dir = TempDir::new("bounds-save");
    let path = dir.path().join("w.safetensors");
    let net = Small::init(3);
    net.save(&path).unwrap();
    let saved = std::fs::read(&path).unwrap();
    let mut diverged = net.clone();
    diverged.params_mut().get_mut("fc.weight").unwrap()[[2, 7]] = f32::NAN;
    match diverged.save(&path).unwrap_err() {
        Error::NonFinite { what, index, .. } => {
            assert_eq!(index, 2 * 32 + 7);
            assert!(what.contains("parameter `fc.weight` of Small"), "{what}");
        }
        other => panic!("expected a non-finite error, found {other}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), saved);

    // Written tensor by tensor, as another tool would, with finite values: loads.
    let mut tensors = Vec::new();
    let mut values = Vec::new();
    net.visit(|t| {
        values.push((
            t.info.name.to_string(),
            t.info.shape.to_vec(),
            t.values.iter().copied().collect::<Vec<f32>>(),
        ))
    });
    for (name, shape, v) in &values {
        tensors.push((name.clone(), shape.clone(), TensorData::F32(v)));
    }
    tensors.push((
        "bn.num_batches_tracked".into(),
        vec![],
        TensorData::I64(&[0]),
    ));
    let other = dir.path().join("other.safetensors");
    save_typed_tensors(&other, &tensors, None).unwrap();
    let mut loaded = Small::init(4);
    loaded.load(&other).unwrap();
    assert_eq!(bits(&loaded), bits(&net));
    // The plain readers keep every value as it is, NaN included.
    save_tensors(&other, &[("x".into(), vec![1], &[f32::NAN][..])], None).unwrap();
    assert!(striate::io::load_tensors(&other).unwrap()[0].data[0].is_nan());
}

/// An optimizer refuses NaN or infinite gradients, naming the first, and changes nothing;
/// a dataset refuses NaN pixels, naming where (issue 13, item 14).
#[test]
fn non_finite_gradients_and_pixels_are_refused() {
    let mut params = [1.0f32, 2.0, 3.0];
    let bad = [0.5f32, f32::NAN, 0.5];
    let mut sgd = Sgd::new(0.1).momentum(0.9);
    match sgd.step(&mut params, &bad).unwrap_err() {
        Error::NonFinite { what, index: 1, .. } => assert_eq!(what, "SGD gradients"),
        other => panic!("expected a non-finite error, found {other}"),
    }
    assert_eq!(params, [1.0, 2.0, 3.0]);
    assert_eq!(sgd.steps(), 0);
    let mut adam = Adam::default();
    let inf = [f32::NEG_INFINITY, 0.0, 0.0];
    assert!(matches!(
        adam.step(&mut params, &inf),
        Err(Error::NonFinite { index: 0, .. })
    ));
    let mut rms = RmsProp::default();
    assert!(matches!(
        rms.step(&mut params, &bad),
        Err(Error::NonFinite { index: 1, .. })
    ));
    assert_eq!(params, [1.0, 2.0, 3.0]);
    assert_eq!((adam.steps(), rms.steps()), (0, 0));
    sgd.step(&mut params, &[0.0; 3]).unwrap();

    let mut images = Array4::<f32>::zeros((3, 2, 4, 5));
    images[[2, 1, 3, 4]] = f32::NAN;
    match Dataset::from_arrays(images, [0, 1, 0], 2).unwrap_err() {
        Error::NonFinite { what, index, .. } => {
            assert_eq!(index, 2 * 40 + 20 + 15 + 4);
            assert_eq!(
                what,
                "dataset images (sample 2, channel 1, row 3, column 4)"
            );
        }
        other => panic!("expected a non-finite error, found {other}"),
    }
}

/// The book's example of raising the bounds (docs/src/runtime.md, "Bounded memory").
#[test]
fn bounds_are_raised_for_the_whole_program() {
    let _guard = limits_lock();
    // A job with a 6 GiB weight file and 64 GiB of memory.
    striate::Limits::default()
        .max_weight_file_bytes(6 << 30)
        .max_alloc_bytes(48 << 30)
        .set_global();
    let now = Limits::global();
    Limits::DEFAULT.set_global();
    assert_eq!(
        (
            now.max_weight_file_bytes,
            now.max_alloc_bytes,
            now.max_idx_bytes
        ),
        (6 << 30, 48 << 30, Limits::DEFAULT.max_idx_bytes)
    );
}

/// The kernels' scratch, and the tapes of nested networks, are reserved fallibly before a pass
/// like the tape's slots: under a bound that the slots fit but the scratch does not, `forward`
/// returns the bound naming the scratch (of the nested network, for `Outer`) and allocates
/// nothing of it, where the kernel used to grow it infallibly in the middle of the pass (issue
/// 13, item 8). Under the default bound the same passes run, and the optimizer's state and the
/// gradients of `try_gradients` and `Trainer::try_new` are refused the same way.
#[test]
fn kernel_scratch_and_nested_tapes_are_reserved_fallibly() {
    let _guard = limits_lock();
    let (inner, outer) = (WholeWindow::init(0), Outer::init(0));
    let x = Array4::<f32>::zeros((1, 64, 8, 8));
    let mut net = Outer::init(0);
    striate::set_threads(1).unwrap();
    Limits::default().max_alloc_bytes(100_000).set_global();
    let refused = [
        inner.forward(x.view()).map(|_| ()),
        outer.forward(x.view()).map(|_| ()),
    ];
    let gradients = outer.try_gradients().map(|_| ());
    let trainer = Trainer::try_new(&mut net, Sgd::new(0.1)).map(|_| ());
    Limits::DEFAULT.set_global();
    for (refused, network) in refused.into_iter().zip(["WholeWindow", "WholeWindow"]) {
        match refused {
            Err(err @ Error::Limit { limit: 100_000, .. }) => {
                let expected = format!("the kernels' scratch space of a pass of {network}");
                assert!(err.to_string().starts_with(&expected), "{err}");
            }
            other => panic!("expected the scratch's limit error, found {other:?}"),
        }
    }
    for refused in [gradients, trainer] {
        assert!(
            matches!(refused, Err(Error::Limit { limit: 100_000, .. })),
            "{refused:?}"
        );
    }
    assert!(inner.forward(x.view()).is_ok());
    assert!(outer.forward(x.view()).is_ok());

    // An optimizer whose state cannot be had refuses the step and changes nothing.
    let mut params = vec![1.0_f32; 50_000];
    let grads = vec![0.5_f32; 50_000];
    let mut sgd = Sgd::new(0.1).momentum(0.9);
    Limits::default().max_alloc_bytes(100_000).set_global();
    let step = sgd.step(&mut params, &grads);
    Limits::DEFAULT.set_global();
    match step {
        Err(err @ Error::Limit { limit: 100_000, .. }) => {
            assert!(err.to_string().starts_with("the state of SGD"), "{err}")
        }
        other => panic!("expected the optimizer state's limit error, found {other:?}"),
    }
    assert!(params.iter().all(|&p| p == 1.0) && sgd.momentum_buffer().is_none());
    // The refused step was not counted: the next one is the first, as PyTorch's.
    sgd.step(&mut params, &grads).unwrap();
    assert_eq!(sgd.momentum_buffer().unwrap()[0], 0.5);
}
