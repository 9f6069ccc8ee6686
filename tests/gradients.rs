//! Finite-difference checks of whole generated networks: the backward pass the macro emits
//! agrees with the forward pass it emits, through every layer kind, for the parameters and the
//! input. (Each kernel also has its own check in the runtime's unit tests.)

use rand::{Rng, SeedableRng};
use striate::prelude::*;
use striate::{NetRng, Network};

network! {
    /// Every layer kind, in training mode.
    struct Mixed {
        input: [2, 9, 8],
        c1: conv2d(3, kernel = (3, 2), stride = (2, 1), pad = 1) -> [3, 5, 9],
        bn1: batch_norm,
        leaky_relu(0.1),
        max_pool((2, 3), stride = 1, pad = 1) -> [3, 6, 9],
        c2: conv2d(4, kernel = 3, bias = false) -> [4, 4, 7],
        tanh,
        avg_pool(2, stride = 1) -> [4, 3, 6],
        sigmoid,
        dropout(0.3),
        flatten,
        fc1: linear(7),
        bn2: batch_norm,
        relu,
        fc2: linear(5),
    }
}

network! {
    /// A vector-input network.
    struct Mlp {
        input: [6],
        fc1: linear(8),
        tanh,
        fc2: linear(3, bias = false),
    }
}

network! {
    /// The inner network of `Branches`.
    pub struct Stem {
        input: [2, 6, 6],
        c: conv2d(3, kernel = 3, pad = 1),
        tanh,
    }
}

network! {
    /// A nested network, residual blocks with identity and projection shortcuts (batch norm
    /// inside), and a concat whose four branches all read one value (two of them empty, one a
    /// residual block that reads it twice more).
    struct Branches {
        input: [2, 6, 6],
        stem: Stem -> [3, 6, 6],
        block1: residual { c: conv2d(3, kernel = 3, pad = 1), tanh },
        block2: residual(shortcut = { c: conv2d(4, kernel = 1, stride = 2) }) {
            c1: conv2d(4, kernel = 3, stride = 2, pad = 1),
            bn: batch_norm,
            leaky_relu(0.1),
        } -> [4, 3, 3],
        mix: concat(
            a = {},
            b = { c: conv2d(2, kernel = 1), sigmoid },
            c = { r: residual { c: conv2d(4, kernel = 3, pad = 1), tanh } },
            d = {},
        ) -> [14, 3, 3],
        flatten,
        fc: linear(3),
    }
}

network! {
    /// The network's input itself read by several layers: its gradient is their sum.
    struct InputTwice {
        input: [5],
        r: residual { fc: linear(5), tanh },
        mix: concat(a = {}, b = { fc: linear(2) }) -> [7],
        fc: linear(3),
    }
}

network! {
    /// The decoder's layers: a vector reshaped to a feature map, upsampled both ways and grown
    /// by transposed convolutions (with and without bias, square and not, output padding),
    /// ending at the input's shape.
    struct Decoder {
        input: [2, 6, 6],
        c: conv2d(3, kernel = 3, stride = 2, pad = 1) -> [3, 3, 3],
        tanh,
        flatten,
        fc: linear(12),
        reshape([3, 2, 2]),
        upsample(2, mode = bilinear) -> [3, 4, 4],
        d1: conv_transpose2d(4, kernel = (3, 2), stride = (1, 2), pad = (1, 0)) -> [4, 4, 8],
        sigmoid,
        upsample(2) -> [4, 8, 16],
        d2: conv_transpose2d(2, kernel = 3, stride = 3, pad = 2, output_pad = 2, bias = false)
            -> [2, 22, 46],
    }
}

/// `sum(output * r)`, computed in f64, with dropout's generator reset so every evaluation
/// draws the same masks.
fn objective<N: Network>(
    net: &mut N,
    x: ArrayView<'_, f32, N::InputDim>,
    r: &[f32],
    mode: Mode,
) -> f64 {
    net.state_mut().rng = NetRng::seed_from_u64(99);
    let saved = net.buffers().clone();
    let mut tape = Tape::new();
    let y = net.forward_tape(x, &mut tape, mode).unwrap();
    let value = y.iter().zip(r).map(|(a, b)| *a as f64 * *b as f64).sum();
    // Training updates running statistics; undo it so that evaluations compare alike.
    *net.buffers_mut() = saved;
    value
}

/// Compares the analytic gradient of `objective` with central differences at a sample of
/// parameters and inputs.
fn check<N: Network>(seed: u64, input_shape: &[usize], mode: Mode) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut net = N::init(seed);
    // Non-trivial batch-norm parameters and running statistics.
    for v in net.params_mut().as_mut_slice() {
        *v += rng.random_range(-0.05..0.05);
    }
    for v in net.buffers_mut().as_mut_slice() {
        *v = rng.random_range(0.5..1.5);
    }
    let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(input_shape), |_| {
        rng.random_range(-1.0f32..1.0)
    });
    let x = x.into_dimensionality::<N::InputDim>().unwrap();
    let n_out = input_shape[0] * N::OUTPUT_SHAPE.iter().product::<usize>();
    let r: Vec<f32> = (0..n_out).map(|_| rng.random_range(-1.0..1.0)).collect();

    // Analytic.
    net.state_mut().rng = NetRng::seed_from_u64(99);
    let saved = net.buffers().clone();
    let mut tape = Tape::new();
    let y_shape = net
        .forward_tape(x.view(), &mut tape, mode)
        .unwrap()
        .raw_dim();
    *net.buffers_mut() = saved;
    let d_out = Array::from_shape_vec(y_shape, r.clone()).unwrap();
    let mut grads = net.gradients().with_input();
    net.backward(&mut tape, d_out.view(), &mut grads).unwrap();

    let eps = 1e-2f32;
    let close = |numeric: f64, analytic: f32, what: &str| {
        let tol = 2e-2 * (1.0 + numeric.abs().max(analytic.abs() as f64));
        assert!(
            (numeric - analytic as f64).abs() <= tol,
            "{what}: finite difference {numeric:.5}, backward {analytic:.5}"
        );
    };
    let n_params = net.params().len();
    // Spread over the store, and the first, middle and last value of every tensor.
    let mut picks: Vec<usize> = (0..40)
        .map(|k| (k * 7919 + seed as usize) % n_params)
        .collect();
    for p in net.params().table() {
        picks.extend([p.offset, p.offset + p.len / 2, p.offset + p.len - 1]);
    }
    for i in picks {
        let orig = net.params().as_slice()[i];
        net.params_mut().as_mut_slice()[i] = orig + eps;
        let plus = objective(&mut net, x.view(), &r, mode);
        net.params_mut().as_mut_slice()[i] = orig - eps;
        let minus = objective(&mut net, x.view(), &r, mode);
        net.params_mut().as_mut_slice()[i] = orig;
        let name = net
            .params()
            .table()
            .iter()
            .find(|p| (p.offset..p.offset + p.len).contains(&i))
            .unwrap()
            .name;
        close(
            (plus - minus) / (2.0 * eps as f64),
            grads.params().as_slice()[i],
            &format!("{name} [{i}]"),
        );
    }
    let d_x = grads.input().unwrap().to_owned();
    let mut x = x;
    let n_in = x.len();
    for k in 0..20 {
        let i = (k * 104_729 + 3) % n_in;
        let orig = x.as_slice().unwrap()[i];
        x.as_slice_mut().unwrap()[i] = orig + eps;
        let plus = objective(&mut net, x.view(), &r, mode);
        x.as_slice_mut().unwrap()[i] = orig - eps;
        let minus = objective(&mut net, x.view(), &r, mode);
        x.as_slice_mut().unwrap()[i] = orig;
        close(
            (plus - minus) / (2.0 * eps as f64),
            d_x.as_slice().unwrap()[i],
            &format!("input [{i}]"),
        );
    }
}

#[test]
fn mixed_network_in_training_mode() {
    check::<Mixed>(1, &[3, 2, 9, 8], Mode::Train);
    check::<Mixed>(2, &[2, 2, 9, 8], Mode::Train);
}

#[test]
fn mixed_network_in_evaluation_mode() {
    check::<Mixed>(3, &[2, 2, 9, 8], Mode::Eval);
}

#[test]
fn residual_concat_and_nested_networks() {
    check::<Branches>(5, &[3, 2, 6, 6], Mode::Train);
    check::<Branches>(6, &[2, 2, 6, 6], Mode::Eval);
}

#[test]
fn the_input_read_twice_gets_both_gradients() {
    check::<InputTwice>(7, &[4, 5], Mode::Train);
}

#[test]
fn decoder_layers() {
    check::<Decoder>(8, &[3, 2, 6, 6], Mode::Train);
}

#[test]
fn vector_network() {
    check::<Mlp>(4, &[5, 6], Mode::Train);
}

#[test]
fn gradients_accumulate_until_zeroed() {
    let mut net = Mlp::init(0);
    let x = Array2::from_elem((2, 6), 0.5f32);
    let mut tape = Tape::new();
    let mut grads = net.gradients();
    let d = Array2::from_elem((2, 3), 1.0f32);
    net.forward_train(x.view(), &mut tape).unwrap();
    net.backward(&mut tape, d.view(), &mut grads).unwrap();
    let once = grads.get("fc1.weight").unwrap().to_owned();
    net.backward(&mut tape, d.view(), &mut grads).unwrap();
    let twice = grads.get("fc1.weight").unwrap().to_owned();
    assert!(once.iter().any(|v| *v != 0.0));
    assert_eq!(twice, &once * 2.0);
    grads.zero();
    assert!(grads.params().as_slice().iter().all(|v| *v == 0.0));
}
