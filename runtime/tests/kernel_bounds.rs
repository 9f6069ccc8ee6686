//! Every public kernel checks the length of every slice it is given before it writes anything,
//! in release builds too (`.ci/run` runs this file with `--release`): the kernels write through
//! pointers shared between their threads, so a short output slice would otherwise be written
//! out of bounds.
//!
//! For each kernel, a call with every slice at its right length must return, and a call with
//! any one slice a value short must panic, naming the kernel and the slice, and leave every
//! slice as it was.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use rand::SeedableRng;
use striate_geometry::Rounding;
use striate_runtime::ops::activation::{self, Activation};
use striate_runtime::ops::batch_norm::{self, BatchNormGeom};
use striate_runtime::ops::conv2d::{self, Conv2dGeom};
use striate_runtime::ops::linear::{self, LinearGeom};
use striate_runtime::ops::pool::{self, Pool2dGeom};
use striate_runtime::ops::{dropout, join, loss, parallel};

/// The value every slice starts with: valid for every kernel (a probability, a variance, ...).
const FILL: f32 = 0.25;

/// Calls `kernel` (through `call`, which takes the slices `slots` names, in order) once with
/// every slice at its length and then once for each slice with that one a value short,
/// checking that the first call returns and each of the others panics, with a message that
/// names the kernel and the slice, before it has changed any slice.
fn check(kernel: &str, slots: &[(&str, usize)], call: impl Fn(&mut [Vec<f32>])) {
    let slices = |short: Option<usize>| -> Vec<Vec<f32>> {
        let len = |i: usize, len: usize| len - usize::from(short == Some(i));
        (slots.iter().enumerate())
            .map(|(i, &(_, l))| vec![FILL; len(i, l)])
            .collect()
    };
    call(&mut slices(None));
    for (i, &(name, len)) in slots.iter().enumerate() {
        assert!(
            len > 0,
            "{kernel}: {name} is empty, so it cannot be a value short"
        );
        let mut short = slices(Some(i));
        let before = short.clone();
        let Some(message) = panic_message(|| call(&mut short)) else {
            panic!(
                "{kernel} returned with {name} of {} values instead of {len}",
                len - 1
            );
        };
        assert!(
            message.starts_with(&format!("{kernel}: ")),
            "{kernel} with {name} short: {message}"
        );
        let names = |s: &str| s.contains(&format!(" {name} ")) || s.contains(&format!(" {name})"));
        assert!(names(&message), "{kernel} with {name} short: {message}");
        assert!(short == before, "{kernel} wrote before it checked {name}");
    }
}

thread_local! {
    /// Whether a panic on this thread is expected, so not printed.
    static EXPECTED: Cell<bool> = const { Cell::new(false) };
}

/// The message of the panic `f` raises, or `None` when it returns.
fn panic_message(f: impl FnOnce()) -> Option<String> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let print = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !EXPECTED.with(Cell::get) {
                print(info);
            }
        }));
    });
    EXPECTED.with(|e| e.set(true));
    let caught = panic::catch_unwind(AssertUnwindSafe(f));
    EXPECTED.with(|e| e.set(false));
    let payload = caught.err()?;
    let text = payload.downcast_ref::<String>().cloned();
    Some(text.unwrap_or_else(|| payload.downcast_ref::<&str>().map_or("", |s| s).to_owned()))
}

/// The lengths of a layer's slices at one batch size: inputs, outputs, weights and biases.
struct Layer {
    input: usize,
    output: usize,
    weights: usize,
    bias: usize,
}

/// [`check`] for both kernels of a layer with weights and a bias (convolution, linear),
/// `name::forward` and `name::backward`, which share one calling convention.
fn check_layer(
    name: &str,
    l: &Layer,
    forward: impl Fn(&mut [f32], &[f32], &[f32], &[f32]),
    backward: impl Fn(&mut [f32], &mut [f32], &mut [f32], &[f32], &[f32], &[f32]),
) {
    let slots = [
        ("y", l.output),
        ("x", l.input),
        ("w", l.weights),
        ("b", l.bias),
    ];
    check(&format!("{name}::forward"), &slots, |s| {
        let [y, x, w, b] = s else { unreachable!() };
        forward(y, x, w, b);
    });
    let slots = [
        ("d_x", l.input),
        ("d_w", l.weights),
        ("d_b", l.bias),
        ("d_y", l.output),
        ("x", l.input),
        ("w", l.weights),
    ];
    check(&format!("{name}::backward"), &slots, |s| {
        let [d_x, d_w, d_b, d_y, x, w] = s else {
            unreachable!()
        };
        backward(d_x, d_w, d_b, d_y, x, w);
    });
}

/// Both convolution kernels on a geometry the direct kernels take (stride 1, few channels)
/// and on one the packed products take (stride 2, more channels).
fn check_conv2d() {
    let n = 2;
    for g in [
        Conv2dGeom::new([1, 8, 8], 6, [5, 5], [1, 1], [2, 2], Rounding::Exact),
        Conv2dGeom::new([3, 9, 9], 20, [3, 3], [2, 2], [1, 1], Rounding::Exact),
    ] {
        let layer = Layer {
            input: n * g.in_len(),
            output: n * g.out_len(),
            weights: g.weight_len(),
            bias: g.out_c,
        };
        check_layer(
            "conv2d",
            &layer,
            |y, x, w, b| conv2d::forward(y, x, w, Some(b), &g, n, &mut Vec::new()),
            |d_x, d_w, d_b, d_y, x, w| {
                let scratch = &mut Vec::new();
                conv2d::backward(Some(d_x), d_w, Some(d_b), d_y, x, w, &g, n, scratch);
            },
        );
    }
}

/// Both linear kernels at batch sizes that take each path: dot products, the loops that do
/// not pack, and the packed products.
fn check_linear() {
    for (n, in_f, out_f) in [(2, 5, 3), (9, 40, 30), (100, 300, 160)] {
        let g = LinearGeom { in_f, out_f };
        let layer = Layer {
            input: n * in_f,
            output: n * out_f,
            weights: g.weight_len(),
            bias: out_f,
        };
        check_layer(
            "linear",
            &layer,
            |y, x, w, b| linear::forward(y, x, w, Some(b), &g, n, &mut Vec::new()),
            |d_x, d_w, d_b, d_y, x, w| {
                let scratch = &mut Vec::new();
                linear::backward(Some(d_x), d_w, Some(d_b), d_y, x, w, &g, n, scratch);
            },
        );
    }
}

#[test]
fn conv2d_checks_its_lengths() {
    check_conv2d();
}

#[test]
fn linear_checks_its_lengths() {
    check_linear();
}

/// The same with two threads, where the kernels split their outputs between tasks.
#[test]
fn conv2d_and_linear_check_their_lengths_on_two_threads() {
    parallel::set_threads(2).expect("two threads start");
    check_conv2d();
    check_linear();
}

/// A batch size whose slices would hold more values than a `usize` counts panics too. Here
/// `n` times the values per sample is a multiple of 2⁶⁴, so a product that wrapped around
/// would equal the length of the empty slices given and let the call through.
#[test]
#[cfg(target_pointer_width = "64")]
fn an_overflowing_batch_size_panics() {
    let overflows = |message: Option<String>| {
        let m = message.expect("the call returned");
        assert!(m.contains("more than a usize counts"), "{m}");
    };
    // 16 inputs and 32 outputs per sample.
    let g = Conv2dGeom::new([1, 4, 4], 2, [3, 3], [1, 1], [1, 1], Rounding::Exact);
    let (n, w) = (1 << 60, [0.0; 18]);
    overflows(panic_message(|| {
        conv2d::forward(&mut [], &[], &w, None, &g, n, &mut Vec::new())
    }));
    // 4 inputs and 4 outputs per sample.
    let g = LinearGeom { in_f: 4, out_f: 4 };
    let (n, w) = (1 << 62, [0.0; 16]);
    overflows(panic_message(|| {
        linear::forward(&mut [], &[], &w, None, &g, n, &mut Vec::new())
    }));
}

/// Max and average pooling, unpadded 2×2 windows (their own fast path) and padded ones.
#[test]
fn pool_checks_its_lengths() {
    let n = 2;
    for g in [
        Pool2dGeom::new([2, 4, 4], [2, 2], [2, 2], [0, 0], Rounding::Exact),
        Pool2dGeom::new([2, 5, 5], [3, 3], [2, 2], [1, 1], Rounding::Exact),
    ] {
        let (input, output) = (n * g.in_len(), n * g.out_len());
        // `argmax` is `u32`: made here at the length its slot gives (all zeros, the first cell
        // of each sample, which is a valid entry).
        let indices = |like: &[f32]| vec![0u32; like.len()];
        let slots = [("y", output), ("argmax", output), ("x", input)];
        check("pool::max_forward", &slots, |s| {
            let [y, argmax, x] = s else { unreachable!() };
            pool::max_forward(y, &mut indices(argmax), x, &g, n);
        });
        let slots = [("d_x", input), ("d_y", output), ("argmax", output)];
        check("pool::max_backward", &slots, |s| {
            let [d_x, d_y, argmax] = s else {
                unreachable!()
            };
            pool::max_backward(d_x, d_y, &indices(argmax), &g, n);
        });
        check("pool::avg_forward", &[("y", output), ("x", input)], |s| {
            let [y, x] = s else { unreachable!() };
            pool::avg_forward(y, x, &g, n);
        });
        check(
            "pool::avg_backward",
            &[("d_x", input), ("d_y", output)],
            |s| {
                let [d_x, d_y] = s else { unreachable!() };
                pool::avg_backward(d_x, d_y, &g, n);
            },
        );
    }
}

#[test]
fn batch_norm_checks_its_lengths() {
    let (n, c) = (2, 3);
    let g = BatchNormGeom {
        c,
        spatial: 4,
        momentum: 0.1,
        eps: 1e-5,
    };
    let values = n * c * g.spatial;
    let slots = [
        ("y", values),
        ("saved", 2 * c),
        ("x", values),
        ("gamma", c),
        ("beta", c),
        ("running_mean", c),
        ("running_var", c),
    ];
    check("batch_norm::forward_train", &slots, |s| {
        let [y, saved, x, gamma, beta, mean, var] = s else {
            unreachable!()
        };
        batch_norm::forward_train(y, saved, x, gamma, beta, mean, var, &g, n);
    });
    check("batch_norm::forward_eval", &slots, |s| {
        let [y, saved, x, gamma, beta, mean, var] = s else {
            unreachable!()
        };
        batch_norm::forward_eval(y, saved, x, gamma, beta, mean, var, &g, n);
    });
    let slots = [
        ("d_x", values),
        ("d_gamma", c),
        ("d_beta", c),
        ("d_y", values),
        ("x", values),
        ("gamma", c),
        ("saved", 2 * c),
    ];
    for batch_stats in [true, false] {
        check("batch_norm::backward", &slots, |s| {
            let [d_x, d_gamma, d_beta, d_y, x, gamma, saved] = s else {
                unreachable!()
            };
            batch_norm::backward(
                d_x,
                d_gamma,
                d_beta,
                d_y,
                x,
                gamma,
                saved,
                &g,
                n,
                batch_stats,
            );
        });
    }
}

#[test]
fn elementwise_kernels_check_their_lengths() {
    let len = 6;
    for act in [Activation::Relu, Activation::Sigmoid] {
        check("activation::forward", &[("y", len), ("x", len)], |s| {
            let [y, x] = s else { unreachable!() };
            activation::forward(y, x, act);
        });
        let slots = [("d_x", len), ("d_y", len), ("x", len), ("y", len)];
        check("activation::backward", &slots, |s| {
            let [d_x, d_y, x, y] = s else { unreachable!() };
            activation::backward(d_x, d_y, x, y, act);
        });
    }
    for p in [0.0, 0.5] {
        check(
            "dropout::forward",
            &[("y", len), ("mask", len), ("x", len)],
            |s| {
                let [y, mask, x] = s else { unreachable!() };
                let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
                dropout::forward(y, mask, x, p, &mut rng);
            },
        );
    }
    check(
        "dropout::backward",
        &[("d_x", len), ("d_y", len), ("mask", len)],
        |s| {
            let [d_x, d_y, mask] = s else { unreachable!() };
            dropout::backward(d_x, d_y, mask);
        },
    );
}

/// The joins of residual and concat blocks.
#[test]
fn joins_check_their_lengths() {
    for first in [true, false] {
        check("join::add_forward", &[("y", 6), ("x", 6)], |s| {
            let [y, x] = s else { unreachable!() };
            join::add_forward(y, x, first);
        });
    }
    check("join::add_backward", &[("d_x", 6), ("d_y", 6)], |s| {
        let [d_x, d_y] = s else { unreachable!() };
        join::add_backward(d_x, d_y);
    });
    // Two samples of 5 values, the part 2 values at 3.
    check("join::concat_forward", &[("y", 10), ("x", 4)], |s| {
        let [y, x] = s else { unreachable!() };
        join::concat_forward(y, x, 2, 2, 5, 3);
    });
    check("join::concat_backward", &[("d_x", 4), ("d_y", 10)], |s| {
        let [d_x, d_y] = s else { unreachable!() };
        join::concat_backward(d_x, d_y, 2, 2, 5, 3);
    });
}

/// `softmax` panics; `softmax_cross_entropy`, whose contract is a typed error, returns one.
#[test]
fn losses_check_their_lengths() {
    let classes = 3;
    check("loss::softmax", &[("probs", 6), ("logits", 6)], |s| {
        let [probs, logits] = s else { unreachable!() };
        loss::softmax(probs, logits, classes);
    });
    let logits = [FILL; 6];
    assert!(loss::softmax_cross_entropy(&mut [0.0; 6], &logits, &[0, 2], classes).is_ok());
    assert!(loss::softmax_cross_entropy(&mut [0.0; 5], &logits, &[0, 2], classes).is_err());
    assert!(loss::softmax_cross_entropy(&mut [0.0; 6], &logits[..5], &[0, 2], classes).is_err());
    assert!(loss::softmax_cross_entropy(&mut [0.0; 6], &logits, &[0], classes).is_err());
}
