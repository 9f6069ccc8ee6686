//! Property tests (proptest) through the public API (issue 13):
//!
//! - the shape that the macro's checker (`striate_syntax::check`) computes for a generated
//!   declaration equals the shape the runtime's geometry gives, layer by layer, and the
//!   runtime's kernels run on buffers of that shape (they check every length);
//! - save then load is the identity, bit for bit, for random values of every parameter and
//!   buffer and the batch count, of a few networks.
//!
//! The fast kernels against the reference kernels, on every instruction set, are property
//! tests inside the runtime crate (`runtime/src/ops/*/tests.rs`, `mod properties`), where
//! the reference versions and the switch of instruction set live.
//!
//! Case counts: 1,000 declarations and 64 save-load round trips per network by default.
//! A longer run: `PROPTEST_CASES=5000 cargo test --release --test properties`.

#[path = "common/temp_dir.rs"]
mod temp_dir;

use proptest::prelude::*;
use striate::geometry::Rounding;
use striate::ops::conv2d::{self, Conv2dGeom};
use striate::ops::pool::{self, Pool2dGeom};
use striate::prelude::*;

/// `default` cases, or `PROPTEST_CASES` when set.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One layer of a generated declaration.
#[derive(Clone, Debug)]
enum Layer {
    Conv {
        out: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        floor: bool,
    },
    Pool {
        max: bool,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        floor: bool,
    },
}

fn pair() -> impl Strategy<Value = [usize; 2]> {
    (1..8usize, 1..8usize).prop_map(|(a, b)| [a, b])
}

fn stride() -> impl Strategy<Value = [usize; 2]> {
    prop_oneof![3 => (1..4usize, 1..4usize), 1 => (1..40usize, 1..40usize)]
        .prop_map(|(a, b)| [a, b])
}

fn layer() -> impl Strategy<Value = Layer> {
    prop_oneof![
        (
            1..5usize,
            pair(),
            stride(),
            (0..12usize, 0..12usize),
            any::<bool>()
        )
            .prop_map(|(out, kernel, stride, pad, floor)| Layer::Conv {
                out,
                kernel,
                stride,
                pad: [pad.0, pad.1],
                floor,
            }),
        (
            any::<bool>(),
            pair(),
            stride(),
            (0..4usize, 0..4usize),
            any::<bool>()
        )
            .prop_map(|(max, kernel, stride, pad, floor)| Layer::Pool {
                max,
                kernel,
                stride,
                // Pooling refuses a pad of more than half the window, at compile time.
                pad: [pad.0.min(kernel[0] / 2), pad.1.min(kernel[1] / 2)],
                floor,
            }),
    ]
}

fn text([h, w]: [usize; 2]) -> String {
    format!("({h}, {w})")
}

impl Layer {
    fn declaration(&self, i: usize) -> String {
        match self {
            Layer::Conv {
                out,
                kernel,
                stride,
                pad,
                floor,
            } => format!(
                "c{i}: conv2d({out}, kernel = {}, stride = {}, pad = {}, floor = {floor})",
                text(*kernel),
                text(*stride),
                text(*pad)
            ),
            Layer::Pool {
                max,
                kernel,
                stride,
                pad,
                floor,
            } => format!(
                "{}({}, stride = {}, pad = {}, floor = {floor})",
                if *max { "max_pool" } else { "avg_pool" },
                text(*kernel),
                text(*stride),
                text(*pad)
            ),
        }
    }

    /// The runtime's output shape for `input`, after running its kernels forward and
    /// backward on one sample of that shape; `None` when the runtime refuses the geometry.
    fn run(&self, input: [usize; 3]) -> Option<[usize; 3]> {
        let rounding = |floor: bool| {
            if floor {
                Rounding::Floor
            } else {
                Rounding::Exact
            }
        };
        match *self {
            Layer::Conv {
                out,
                kernel,
                stride,
                pad,
                floor,
            } => {
                let g =
                    Conv2dGeom::try_new(input, out, kernel, stride, pad, rounding(floor)).ok()?;
                let x = vec![0.5; g.in_len()];
                let w = vec![0.25; g.weight_len()];
                let mut y = vec![0.0; g.out_len()];
                let mut scratch = Vec::new();
                conv2d::forward(&mut y, &x, &w, None, &g, 1, &mut scratch);
                let (mut d_x, mut d_w) = (vec![0.0; x.len()], vec![0.0; w.len()]);
                conv2d::backward(
                    Some(&mut d_x),
                    &mut d_w,
                    None,
                    &y,
                    &x,
                    &w,
                    &g,
                    1,
                    &mut scratch,
                );
                Some([g.out_c, g.out_h, g.out_w])
            }
            Layer::Pool {
                max,
                kernel,
                stride,
                pad,
                floor,
            } => {
                let g = Pool2dGeom::try_new(input, kernel, stride, pad, rounding(floor)).ok()?;
                let x = vec![0.5; g.in_len()];
                let mut y = vec![0.0; g.out_len()];
                let mut d_x = vec![0.0; x.len()];
                if max {
                    let mut argmax = vec![0; y.len()];
                    pool::max_forward(&mut y, &mut argmax, &x, &g, 1);
                    pool::max_backward(&mut d_x, &y, &argmax, &g, 1);
                } else {
                    pool::avg_forward(&mut y, &x, &g, 1);
                    pool::avg_backward(&mut d_x, &y, &g, 1);
                }
                Some([g.c, g.out_h, g.out_w])
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1000)))]

    /// A declaration of one to three layers compiles exactly when the runtime accepts every
    /// layer's geometry, and then each layer's shape is the runtime's.
    #[test]
    fn checked_shapes_are_the_kernels_shapes(
        input in (1..4usize, 1..48usize, 1..48usize),
        layers in prop::collection::vec(layer(), 1..4),
    ) {
        let input = [input.0, input.1, input.2];
        let items: Vec<String> = layers.iter().enumerate().map(|(i, l)| l.declaration(i)).collect();
        let source = format!(
            "struct Net {{ input: [{}, {}, {}], {} }}",
            input[0], input[1], input[2], items.join(", ")
        );
        let mut runtime = Some(Vec::new());
        let mut shape = input;
        for l in &layers {
            match l.run(shape) {
                Some(out) => {
                    runtime.as_mut().unwrap().push(out.to_vec());
                    shape = out;
                }
                None => {
                    runtime = None;
                    break;
                }
            }
        }
        let checked = striate_syntax::check(source.parse().unwrap());
        match (checked, runtime) {
            (Ok(checked), Some(runtime)) => {
                let shapes: Vec<Vec<usize>> = checked.layers.iter().map(|l| l.output.clone()).collect();
                prop_assert_eq!(shapes, runtime, "{}", source);
            }
            (Err(errors), None) => prop_assert!(!errors.is_empty()),
            (Ok(checked), None) => prop_assert!(false, "{source}: the macro accepts {checked:?}, the runtime refuses"),
            (Err(errors), Some(runtime)) => prop_assert!(
                false,
                "{source}: the runtime gives {runtime:?}, the macro refuses: {}",
                errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
            ),
        }
    }
}

network! {
    struct Plain {
        input: [1, 8, 8],
        conv1: conv2d(3, kernel = 3, pad = 1), relu,
        max_pool(2),
        flatten,
        fc: linear(4),
    }
}

network! {
    struct WithBuffers {
        input: [2, 6, 6],
        conv: conv2d(4, kernel = (3, 2), bias = false), bn: batch_norm, relu,
        block: residual { c: conv2d(4, kernel = 3, pad = 1), b: batch_norm },
        avg_pool(2, floor = true),
        flatten,
        fc: linear(3),
    }
}

network! {
    struct Vector {
        input: [10],
        a: linear(7), tanh,
        mix: concat(x = { b: linear(2) }, y = {}),
        out: linear(1, bias = false),
    }
}

/// Finite `f32` values of any bit pattern: signed zeros, subnormals, the extremes.
fn finite_values(len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        any::<u32>()
            .prop_map(f32::from_bits)
            .prop_filter("finite", |v| v.is_finite()),
        len,
    )
}

fn bits(net: &impl Network) -> Vec<u32> {
    let mut all = Vec::new();
    net.visit(|t| all.extend(t.values.iter().map(|v| v.to_bits())));
    all
}

/// Sets every parameter and buffer of `N` to `values` (parameters first) and the batch count
/// to `count`, saves it, loads it into a network initialised otherwise, and checks that the two
/// are the same bits; the file saved again is the same bytes.
fn round_trip<N: Network + Clone>(values: &[f32], count: u64) -> Result<(), TestCaseError> {
    let dir = temp_dir::TempDir::new("properties");
    let path = dir.path().join("w.safetensors");
    let mut net = N::init(1);
    let p = N::NUM_PARAMS;
    net.params_mut()
        .as_mut_slice()
        .copy_from_slice(&values[..p]);
    net.buffers_mut()
        .as_mut_slice()
        .copy_from_slice(&values[p..]);
    net.state_mut().num_batches_tracked = count;
    net.save(&path).unwrap();
    let mut loaded = N::init(2);
    loaded.load(&path).unwrap();
    prop_assert_eq!(bits(&loaded), bits(&net));
    let expected_count = if N::BUFFERS.is_empty() { 0 } else { count };
    prop_assert_eq!(loaded.state().num_batches_tracked, expected_count);
    let again = dir.path().join("again.safetensors");
    loaded.save(&again).unwrap();
    prop_assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&again).unwrap()
    );
    Ok(())
}

fn state_len<N: Network>() -> usize {
    N::NUM_PARAMS + N::BUFFERS.iter().map(|b| b.len).sum::<usize>()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    #[test]
    fn save_then_load_is_the_identity_plain(values in finite_values(state_len::<Plain>())) {
        round_trip::<Plain>(&values, 0)?;
    }

    #[test]
    fn save_then_load_is_the_identity_with_buffers(
        values in finite_values(state_len::<WithBuffers>()),
        count in 0..=i64::MAX as u64,
    ) {
        round_trip::<WithBuffers>(&values, count)?;
    }

    #[test]
    fn save_then_load_is_the_identity_vector(values in finite_values(state_len::<Vector>())) {
        round_trip::<Vector>(&values, 0)?;
    }
}
