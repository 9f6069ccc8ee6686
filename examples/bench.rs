//! striate's side of the side-by-side benchmark with PyTorch (`../shared/bench/PROTOCOL.md`):
//! the same LeNet-5, data, initial weights and shuffles as `torch_peer.py`, and the same
//! `RESULT {json}` line.
//!
//! ```text
//! cargo run --release --example bench -- MODE --threads N
//!     [--steps S --warmup W --epochs E --batch B]
//! ```
//!
//! Modes: `train`, `accuracy`, `infer`, `alexnet`, `alexnet-fwd`, `alexnet-train`, `resnet`,
//! `lstm`, `lstm-infer` (the sequential-MNIST LSTM of `examples/sequential_mnist.rs`),
//! `autoencoder` (the denoising autoencoder of `examples/autoencoder.rs`, Adam and binary
//! cross-entropy with logits, batch 64; its PyTorch side is `scripts/torch_autoencoder.py`,
//! outside the shared protocol).
//! Besides the protocol's fields, every result carries `peak_rss_kb` (the process's `VmHWM`)
//! and, for the timed modes, the heap allocations per step in the timed part, counted by this
//! program's global allocator. `scripts/bench.py` runs this and the PyTorch reference
//! alternately.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use striate::geometry::Rounding;
use striate::ndarray::{ArrayView, Dimension, Ix2};
use striate::ops::conv2d::{self, Conv2dGeom};
use striate::ops::loss::softmax_cross_entropy;
use striate::prelude::*;
use striate::Tape;

/// The main example's LeNet-5: `conv1`, `conv2`, `fc1`, `fc2`, `fc3`, PyTorch's names.
#[allow(dead_code)]
#[path = "lenet.rs"]
mod lenet;
use lenet::LeNet5;

/// The AlexNet of `examples/alexnet.rs`, the protocol's single-tower network.
#[allow(dead_code)]
#[path = "alexnet.rs"]
mod alexnet;
use alexnet::AlexNet;

/// The denoising autoencoder of `examples/autoencoder.rs`.
#[allow(dead_code)]
#[path = "autoencoder.rs"]
mod autoencoder;
use autoencoder::DenoisingAe;

/// The sequential-MNIST LSTM of `examples/sequential_mnist.rs`: `lstm`, `fc`, PyTorch's names.
#[allow(dead_code)]
#[path = "sequential_mnist.rs"]
mod sequential_mnist;
use sequential_mnist::RowReader;

/// The ResNet-20 of `examples/resnet.rs`, with `torch_peer.py`'s parameter names.
#[allow(dead_code)]
#[path = "resnet.rs"]
mod resnet;
use resnet::ResNet20;

// ---------------------------------------------------------------------------------------------
// Allocation counting

/// The system allocator, counting every allocation (and reallocation) it is asked for.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

fn count(bytes: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    ALLOCATED_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

// Safety: every method forwards to `System` with the caller's arguments unchanged, so this
// allocator upholds exactly the contract `System` does; the counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // Safety: forwarded as received (see the impl's comment).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // Safety: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // Safety: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Safety: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and bytes allocated so far.
fn allocations() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    )
}

/// Peak resident set size of this process in KiB (`VmHWM` of `/proc/self/status`), 0 where
/// that file does not exist.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The shared random stream (common.py's `SplitMix`)

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64, as `common.py` and `striate::data::shuffled_indices` have it: the state starts
/// at the seed and each output first adds the golden gamma.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The top 24 bits over 2^24: uniform in `[0, 1)`, exact in `f32`.
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32
    }

    /// `n` values `U(±1/√fan_in)`, computed in `f32` step by step as numpy does.
    fn uniform(&mut self, n: usize, fan_in: usize) -> Vec<f32> {
        let bound = 1.0f32 / (fan_in as f32).sqrt();
        (0..n)
            .map(|_| (self.next_f32() * 2.0 - 1.0) * bound)
            .collect()
    }

    /// `n` values `U[0, 1)` (`common.py`'s `f32_array`), the random images of the
    /// whole-network training modes.
    fn f32_array(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_f32()).collect()
    }
}

/// LeNet-5 with `common.py`'s `lenet_init`: one splitmix64(42) stream, in PyTorch's parameter
/// order.
fn lenet() -> LeNet5 {
    const ORDER: [(&str, usize); 10] = [
        ("conv1.weight", 25),
        ("conv1.bias", 25),
        ("conv2.weight", 150),
        ("conv2.bias", 150),
        ("fc1.weight", 400),
        ("fc1.bias", 400),
        ("fc2.weight", 120),
        ("fc2.bias", 120),
        ("fc3.weight", 84),
        ("fc3.bias", 84),
    ];
    let mut net = LeNet5::init(0);
    let mut r = SplitMix(42);
    let params = net.params_mut();
    for (name, fan_in) in ORDER {
        let mut dst = params.get_mut(name).expect("LeNet5 has this parameter");
        let values = r.uniform(dst.len(), fan_in);
        for (d, v) in dst.iter_mut().zip(values) {
            *d = v;
        }
    }
    net
}

// ---------------------------------------------------------------------------------------------
// Command line, results, timing

struct Args {
    mode: String,
    opts: BTreeMap<String, String>,
}

impl Args {
    fn parse() -> Args {
        let mut mode = "all".to_string();
        let mut opts = BTreeMap::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.strip_prefix("--") {
                Some(key) => {
                    let value = it
                        .next()
                        .unwrap_or_else(|| fail(&format!("--{key} needs a value")));
                    opts.insert(key.to_string(), value);
                }
                None => mode = a,
            }
        }
        Args { mode, opts }
    }

    fn get(&self, key: &str, default: usize) -> usize {
        self.opts.get(key).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| fail(&format!("--{key}: expected a whole number, found {v}")))
        })
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    std::process::exit(2)
}

/// A JSON value, enough for a result line.
enum Json {
    Num(f64),
    Int(u64),
    Str(String),
    List(Vec<f64>),
}

struct Result_ {
    fields: Vec<(&'static str, Json)>,
}

impl Result_ {
    fn new(mode: &str, threads: usize) -> Result_ {
        Result_ {
            fields: vec![
                ("peer", Json::Str("striate".into())),
                ("version", Json::Str(env!("CARGO_PKG_VERSION").into())),
                ("mode", Json::Str(mode.into())),
                ("threads", Json::Int(threads as u64)),
                ("kernels", Json::Str(striate::ops::kernels().to_string())),
            ],
        }
    }

    fn num(&mut self, key: &'static str, v: f64) -> &mut Self {
        self.fields.push((key, Json::Num(v)));
        self
    }

    fn int(&mut self, key: &'static str, v: u64) -> &mut Self {
        self.fields.push((key, Json::Int(v)));
        self
    }

    fn list(&mut self, key: &'static str, v: Vec<f64>) -> &mut Self {
        self.fields.push((key, Json::List(v)));
        self
    }

    fn emit(&mut self) {
        self.int("peak_rss_kb", peak_rss_kb());
        let num = |v: f64| {
            if v.is_finite() {
                format!("{v}")
            } else {
                "null".to_string()
            }
        };
        let body: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Json::Num(v) => num(*v),
                    Json::Int(v) => v.to_string(),
                    Json::Str(s) => format!("\"{s}\""),
                    Json::List(v) => {
                        let items: Vec<String> = v.iter().map(|&x| num(x)).collect();
                        format!("[{}]", items.join(","))
                    }
                };
                format!("\"{k}\":{v}")
            })
            .collect();
        println!("RESULT {{{}}}", body.join(","));
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * p).round() as usize]
}

/// Seconds of each of `n` calls of `f` after `warm` untimed ones (`common.py`'s `time_calls`).
fn time_calls(warm: usize, n: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..warm {
        f();
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64());
    }
    v
}

/// At most `max_n` timed calls, stopping after `budget_s` seconds once `min_n` are done
/// (`common.py`'s `time_calls_budget`).
fn time_calls_budget(
    warm: usize,
    max_n: usize,
    budget_s: f64,
    min_n: usize,
    mut f: impl FnMut(),
) -> Vec<f64> {
    for _ in 0..warm {
        f();
    }
    let mut v = Vec::with_capacity(max_n);
    let t0 = Instant::now();
    while v.len() < max_n && (v.len() < min_n || t0.elapsed().as_secs_f64() < budget_s) {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64());
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Training steps (every network) and LeNet-5

const BATCH: usize = 64;
const CLASSES: usize = 10;

fn load_mnist() -> Mnist {
    match std::env::var_os("MNIST_DIR") {
        Some(dir) => Mnist::load(&dir).unwrap_or_else(|e| fail(&format!("MNIST_DIR: {e}"))),
        None => Mnist::builtin(),
    }
}

/// Everything one training step of a classifier touches, allocated once.
struct Trainer<N> {
    net: N,
    tape: Tape,
    grads: striate::Gradients,
    opt: Sgd,
    d_logits: Vec<f32>,
}

/// `x` as a batch of `N`'s samples (`n` of them), without allocating.
fn batch_view<N: Network>(x: &[f32], n: usize) -> ArrayView<'_, f32, N::InputDim> {
    let mut dims = N::InputDim::zeros(N::INPUT_SHAPE.len() + 1);
    dims.slice_mut()[0] = n;
    dims.slice_mut()[1..].copy_from_slice(N::INPUT_SHAPE);
    ArrayView::from_shape(dims, x).expect("a batch of the network's input")
}

impl<N: Network<OutputDim = Ix2>> Trainer<N> {
    /// SGD with the protocol's learning rate 0.01 and momentum 0.9.
    fn new(net: N) -> Trainer<N> {
        let grads = net.gradients();
        Trainer {
            net,
            tape: Tape::new(),
            grads,
            opt: Sgd::new(0.01).momentum(0.9),
            d_logits: Vec::new(),
        }
    }

    /// One SGD step on a batch (gradients cleared, forward, loss, backward, update); returns
    /// its mean loss.
    fn step(&mut self, x: &[f32], y: &[usize]) -> f32 {
        let n = y.len();
        let classes = N::OUTPUT_SHAPE[0];
        let x = batch_view::<N>(x, n);
        let logits = self
            .net
            .forward_train(x, &mut self.tape)
            .expect("forward pass");
        let logits = logits.as_slice().expect("tape output is contiguous");
        self.d_logits.resize(logits.len(), 0.0);
        let loss = softmax_cross_entropy(&mut self.d_logits, logits, y, classes).expect("loss");
        let d = ArrayView2::from_shape((n, classes), &self.d_logits).expect("logits shape");
        self.grads.zero();
        self.net
            .backward(&mut self.tape, d, &mut self.grads)
            .expect("backward pass");
        self.opt
            .step(
                self.net.params_mut().as_mut_slice(),
                self.grads.params().as_slice(),
            )
            .expect("optimizer step");
        loss
    }
}

/// Eval-mode logits of a batch, on a tape reused from call to call.
fn infer<'t, N: Network<OutputDim = Ix2>>(net: &mut N, tape: &'t mut Tape, x: &[f32]) -> &'t [f32] {
    let n = x.len() / (28 * 28);
    net.forward_tape(batch_view::<N>(x, n), tape, Mode::Eval)
        .expect("forward pass")
        .to_slice()
        .expect("tape output is contiguous")
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

fn train(args: &Args, out: &mut Result_) {
    let (warm, steps) = (args.get("warmup", 10), args.get("steps", 125));
    let mnist = load_mnist();
    let data = &mnist.train;
    let nb = data.len() / BATCH;
    let len = data.sample_len();
    let images = data.images();
    let images = images.as_slice().expect("dataset images are contiguous");
    let batch = |b: usize| {
        let b = b % nb;
        (
            &images[b * BATCH * len..(b + 1) * BATCH * len],
            &data.labels()[b * BATCH..(b + 1) * BATCH],
        )
    };
    let mut t = Trainer::new(lenet());
    for s in 0..warm {
        let (x, y) = batch(s);
        t.step(x, y);
    }
    let (a0, b0) = allocations();
    let start = Instant::now();
    let mut last = 0.0;
    for s in 0..steps {
        let (x, y) = batch(warm + s);
        last = t.step(x, y);
    }
    let dt = start.elapsed().as_secs_f64();
    let (a1, b1) = allocations();
    let per_step = |v: u64| v as f64 / steps.max(1) as f64;
    out.int("steps", steps as u64)
        .num("seconds", dt)
        .num("img_per_s", (steps * BATCH) as f64 / dt)
        .num("last_loss", f64::from(last))
        .num("allocs_per_step", per_step(a1 - a0))
        .num("alloc_bytes_per_step", per_step(b1 - b0));
}

fn accuracy(args: &Args, out: &mut Result_) {
    let epochs = args.get("epochs", 3);
    let mnist = load_mnist();
    let data = &mnist.train;
    let nb = data.len() / BATCH;
    let mut t = Trainer::new(lenet());
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let mut epoch_loss = Vec::new();
    let start = Instant::now();
    for e in 0..epochs {
        let perm = striate::data::shuffled_indices(data.len(), 0x5EED_0000 + e as u64);
        let mut total = 0.0f64;
        for b in 0..nb {
            data.gather(&perm[b * BATCH..(b + 1) * BATCH], &mut x, &mut y)
                .expect("a permutation of the dataset's indices");
            total += f64::from(t.step(&x, &y));
        }
        epoch_loss.push(total / nb as f64);
    }
    let train_s = start.elapsed().as_secs_f64();
    let test = &mnist.test;
    let mut correct = 0;
    let order: Vec<usize> = (0..test.len()).collect();
    let mut tape = Tape::new();
    for chunk in order.chunks(256) {
        test.gather(chunk, &mut x, &mut y)
            .expect("indices below the dataset's length");
        let logits = infer(&mut t.net, &mut tape, &x);
        for (row, &label) in logits.chunks_exact(CLASSES).zip(&y) {
            correct += usize::from(argmax(row) == label);
        }
    }
    out.int("epochs", epochs as u64)
        .num("train_seconds", train_s)
        .list("epoch_loss", epoch_loss)
        .int("test_n", test.len() as u64)
        .int("test_correct", correct as u64)
        .num("test_acc", correct as f64 / test.len() as f64);
}

/// `infer` (LeNet-5) and `lstm-infer` (the sequential-MNIST LSTM): eval-mode batch-256
/// throughput and batch-1 latency on the test digits.
fn inference<N: Network<OutputDim = Ix2>>(args: &Args, out: &mut Result_, mut net: N) {
    let mnist = load_mnist();
    let test = &mnist.test;
    let images = test.images();
    let images = images.as_slice().expect("dataset images are contiguous");
    let len = test.sample_len();
    let mut tape = Tape::new();

    let x256 = &images[..256 * len];
    let mut f256 = || {
        let logits = infer(&mut net, &mut tape, x256);
        assert_eq!(logits.len(), 256 * CLASSES);
    };
    f256();
    let (a0, _) = allocations();
    f256();
    let allocs_b256 = allocations().0 - a0;
    let v = time_calls_budget(3, 200, 4.0, 5, &mut f256);

    let calls = args.get("calls1", 1000);
    let mut k = 0;
    let mut f1 = || {
        let s = k % test.len();
        k += 1;
        let logits = infer(&mut net, &mut tape, &images[s * len..(s + 1) * len]);
        assert_eq!(logits.len(), CLASSES);
    };
    // The first batch-1 calls size the tape's slots, which the batch-256 calls (split over
    // the threads, on shard tapes) left empty: warm-up, not counted. The timed calls'
    // allocations are counted, less the one of `time_calls`' list of times.
    for _ in 0..50 {
        f1();
    }
    let (a0, _) = allocations();
    let lat = time_calls(0, calls, &mut f1);
    let allocs_b1 = (allocations().0 - a0).saturating_sub(1) as f64 / calls as f64;
    let med = median(&v);
    out.int("b256_calls", v.len() as u64)
        .num("b256_median_ms", med * 1e3)
        .num("b256_img_per_s", 256.0 / med)
        .int("b1_calls", lat.len() as u64)
        .num("b1_median_us", median(&lat) * 1e6)
        .num("b1_p10_us", percentile(&lat, 0.1) * 1e6)
        .num("b1_p90_us", percentile(&lat, 0.9) * 1e6)
        .num("allocs_per_b256_call", allocs_b256 as f64)
        .num("allocs_per_b1_call", allocs_b1);
}

/// The protocol's whole-network training steps (`alexnet-train`, `resnet`): `batch` random
/// images from `SplitMix(seed)` with labels `(label_step i) % classes`, `warm` untimed steps,
/// then at most `steps` timed ones within `budget_s` seconds (`torch_peer.py`'s
/// `time_training`).
fn train_steps<N: Network<OutputDim = Ix2>>(
    args: &Args,
    out: &mut Result_,
    net: N,
    (seed, label_step): (u64, usize),
    (batch, warm, steps, budget_s): (usize, usize, usize, f64),
) {
    let batch = args.get("batch", batch);
    let x = SplitMix(seed).f32_array(batch * N::INPUT_SHAPE.iter().product::<usize>());
    let classes = N::OUTPUT_SHAPE[0];
    let y: Vec<usize> = (0..batch).map(|i| label_step * i % classes).collect();
    let mut t = Trainer::new(net);
    timed_steps(args, out, batch, (warm, steps, budget_s), || t.step(&x, &y));
}

/// `lstm`: training steps of the sequential-MNIST LSTM on the first `batch` (64) training
/// digits, each 28 steps of 28 pixels, as `torch_peer.py lstm` (5 warm-up steps, at most 50
/// timed within 10 s).
fn lstm_steps(args: &Args, out: &mut Result_) {
    let batch = args.get("batch", BATCH);
    let mnist = load_mnist();
    let train = mnist.train.take(batch);
    let images = train.images();
    let x = images.as_slice().expect("dataset images are contiguous");
    let y = train.labels();
    let mut t = Trainer::new(RowReader::init(0));
    timed_steps(args, out, batch, (5, 50, 10.0), || t.step(x, y));
}

/// `autoencoder`: training steps of `examples/autoencoder.rs`'s network on `batch` random
/// images in `[0, 1)` from `SplitMix(31)`, each its own target (`step_reconstruct`, binary
/// cross-entropy with logits, Adam at 2e-3), as `scripts/torch_autoencoder.py` does.
fn autoencoder_steps(args: &Args, out: &mut Result_) {
    let batch = args.get("batch", 64);
    let x = SplitMix(31).f32_array(batch * 28 * 28);
    let x = ArrayView4::from_shape((batch, 1, 28, 28), &x).expect("a batch of digits");
    let mut net = DenoisingAe::init(0);
    let mut t = striate::train::Trainer::new(&mut net, Adam::new(2e-3));
    timed_steps(args, out, batch, (3, 40, 10.0), || {
        let stats = t.step_reconstruct(x, x, Loss::BceWithLogits);
        stats.expect("training step").loss
    });
}

/// Times `step` (one training step; it returns its loss): `warm` untimed steps, then at most
/// `steps` timed ones within `budget_s` seconds, counting heap allocations around each step.
fn timed_steps(
    args: &Args,
    out: &mut Result_,
    batch: usize,
    (warm, steps, budget_s): (usize, usize, f64),
    mut step: impl FnMut() -> f32,
) {
    let mut last = 0.0;
    // Allocations are counted around each step only, not the timing's own bookkeeping.
    let counted = Cell::new((0, 0));
    let mut f = || {
        let (a0, b0) = allocations();
        last = step();
        let (a1, b1) = allocations();
        let (a, b) = counted.get();
        counted.set((a + a1 - a0, b + b1 - b0));
    };
    for _ in 0..args.get("warmup", warm) {
        f();
    }
    // Steady state: what the warm-up allocated is not counted.
    counted.set((0, 0));
    let (steps, min) = (args.get("steps", steps), args.get("min", 3));
    let v = time_calls_budget(0, steps, budget_s, min, &mut f);
    let (allocs, bytes) = counted.get();
    let per_step = |a: u64| a as f64 / v.len() as f64;
    let med = median(&v);
    let max = v.iter().copied().fold(0.0, f64::max);
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    out.int("batch", batch as u64)
        .int("steps", v.len() as u64)
        .num("ms_per_step", med * 1e3)
        .num("min_ms", min * 1e3)
        .num("max_ms", max * 1e3)
        .num("img_per_s", batch as f64 / med)
        .num("last_loss", f64::from(last))
        .num("allocs_per_step", per_step(allocs))
        .num("alloc_bytes_per_step", per_step(bytes));
}

// ---------------------------------------------------------------------------------------------
// AlexNet conv1

const AX: Conv2dGeom =
    Conv2dGeom::new([3, 227, 227], 96, [11, 11], [4, 4], [0, 0], Rounding::Exact);
const AX_BATCH: usize = 8;

/// `common.py`'s `alexnet_data`: weights, bias and input from splitmix64 seeds 7, 8 and 9.
fn alexnet_data() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let fan_in = AX.col_rows();
    let w = SplitMix(7).uniform(AX.weight_len(), fan_in);
    let b = SplitMix(8).uniform(AX.out_c, fan_in);
    let mut r = SplitMix(9);
    let x = (0..AX_BATCH * AX.in_len()).map(|_| r.next_f32()).collect();
    (w, b, x)
}

fn alexnet(args: &Args, out: &mut Result_, backward: bool) {
    let (w, b, x) = alexnet_data();
    let n = AX_BATCH;
    let mut y = vec![0.0f32; n * AX.out_len()];
    let d_y = vec![1.0f32; y.len()];
    let (mut d_x, mut d_w, mut d_b) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
    let mut scratch = Vec::new();
    let mut checksum = 0.0f64;
    let mut f = || {
        conv2d::forward(&mut y, &x, &w, Some(&b), &AX, n, &mut scratch);
        if backward {
            // PyTorch's step starts from fresh gradients; these accumulate, so clear them.
            d_x.fill(0.0);
            d_w.fill(0.0);
            d_b.fill(0.0);
            // d(sum y)/dy = 1
            conv2d::backward(
                Some(&mut d_x),
                &mut d_w,
                Some(&mut d_b),
                &d_y,
                &x,
                &w,
                &AX,
                n,
                &mut scratch,
            );
            checksum = y.iter().map(|&v| f64::from(v)).sum();
        } else {
            checksum = f64::from(y[0]);
        }
    };
    let warm = args.get("warmup", 2);
    let v = time_calls_budget(warm, args.get("steps", 10), 8.0, args.get("min", 5), &mut f);
    let (a0, _) = allocations();
    f();
    let allocs = allocations().0 - a0;
    let med = median(&v);
    let macs = (n as u64 * AX.macs()) as f64;
    let flops = if backward { 6.0 * macs } else { 2.0 * macs };
    let max = v.iter().copied().fold(0.0, f64::max);
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    out.int("steps", v.len() as u64)
        .num("ms_per_step", med * 1e3)
        .num("min_ms", min * 1e3)
        .num("max_ms", max * 1e3)
        .num("gflops", flops / med / 1e9)
        .num("allocs_per_step", allocs as f64)
        .num("checksum", checksum);
}

fn main() {
    let args = Args::parse();
    let threads = args.get("threads", 2);
    if let Err(e) = striate::set_threads(threads) {
        eprintln!("bench: {e}");
        std::process::exit(2);
    }
    let mut out = Result_::new(&args.mode, threads);
    match args.mode.as_str() {
        "train" => train(&args, &mut out),
        "accuracy" => accuracy(&args, &mut out),
        "infer" => inference(&args, &mut out, lenet()),
        "lstm" => lstm_steps(&args, &mut out),
        "lstm-infer" => inference(&args, &mut out, RowReader::init(0)),
        "alexnet" => alexnet(&args, &mut out, true),
        "alexnet-fwd" => alexnet(&args, &mut out, false),
        "alexnet-train" => {
            train_steps(&args, &mut out, AlexNet::init(0), (21, 7), (16, 1, 5, 20.0))
        }
        "resnet" => train_steps(
            &args,
            &mut out,
            ResNet20::init(0),
            (11, 3),
            (BATCH, 3, 20, 10.0),
        ),
        "autoencoder" => autoencoder_steps(&args, &mut out),
        other => fail(&format!(
            "unknown mode {other}; expected one of: train, accuracy, infer, alexnet, \
             alexnet-fwd, alexnet-train, resnet, lstm, lstm-infer, autoencoder"
        )),
    }
    out.emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream here and the one behind `shuffled_indices` (rand_xoshiro's SplitMix64) are
    /// the same generator: a Fisher-Yates driven by this one gives the same permutation.
    #[test]
    fn splitmix_matches_shuffled_indices() {
        for seed in [0, 42, 0x5EED_0000, 0x5EED_0002] {
            let mut r = SplitMix(seed);
            let mut p: Vec<usize> = (0..1000).collect();
            for i in (1..p.len()).rev() {
                let j = r.next_u64() % (i as u64 + 1);
                p.swap(i, j as usize);
            }
            assert_eq!(p, striate::data::shuffled_indices(1000, seed));
        }
    }
}
