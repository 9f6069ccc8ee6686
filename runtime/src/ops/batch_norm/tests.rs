//! The batch-norm kernels against the reference versions, finite differences and PyTorch's
//! semantics.

use super::reference::{backward_naive, forward_eval_naive, forward_train_naive};
use super::*;
use crate::ops::test_util::{assert_close, check_gradient, dot, rng, uniform};

/// `(n, c, spatial)`: batch 0 and 1, one value per channel, vectors, feature maps.
const CASES: &[(usize, usize, usize)] = &[
    (0, 2, 3),
    (1, 3, 1),
    (2, 1, 1),
    (1, 2, 4),
    (4, 3, 1),
    (3, 2, 5),
    (2, 5, 7),
];

fn geom(c: usize, spatial: usize) -> BatchNormGeom {
    BatchNormGeom {
        c,
        spatial,
        momentum: 0.1,
        eps: 1e-5,
    }
}

struct Data {
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
}

/// Inputs with a per-channel offset, so the mean matters, and a positive running variance.
fn data(seed: u64, g: &BatchNormGeom, n: usize) -> Data {
    let mut r = rng(seed);
    let mut x = uniform(&mut r, n * g.c * g.spatial);
    for (i, v) in x.iter_mut().enumerate() {
        *v += (i / g.spatial % g.c) as f32 - 1.0;
    }
    Data {
        x,
        gamma: uniform(&mut r, g.c).iter().map(|v| v + 1.5).collect(),
        beta: uniform(&mut r, g.c),
        running_mean: uniform(&mut r, g.c),
        running_var: uniform(&mut r, g.c).iter().map(|v| v + 1.5).collect(),
    }
}

#[test]
fn forward_matches_naive() {
    for (seed, &(n, c, s)) in CASES.iter().enumerate() {
        let g = geom(c, s);
        let d = data(60 + seed as u64, &g, n);
        let len = d.x.len();
        let (mut y, mut saved) = (vec![f32::NAN; len], vec![f32::NAN; 2 * c]);
        let (mut y2, mut saved2) = (vec![f32::NAN; len], vec![f32::NAN; 2 * c]);
        let (mut rm, mut rv) = (d.running_mean.clone(), d.running_var.clone());
        let (mut rm2, mut rv2) = (d.running_mean.clone(), d.running_var.clone());
        let (x, gamma, beta) = (&d.x, &d.gamma, &d.beta);
        forward_train(&mut y, &mut saved, x, gamma, beta, &mut rm, &mut rv, &g, n);
        forward_train_naive(
            &mut y2,
            &mut saved2,
            x,
            gamma,
            beta,
            &mut rm2,
            &mut rv2,
            &g,
            n,
        );
        let what = format!("train {g:?} n {n}");
        assert_close(&format!("{what} y"), &y, &y2, 1e-5);
        assert_close(&format!("{what} saved"), &saved, &saved2, 1e-5);
        assert_close(&format!("{what} running_mean"), &rm, &rm2, 1e-6);
        assert_close(&format!("{what} running_var"), &rv, &rv2, 1e-6);
        assert!(saved.iter().chain(&rm).chain(&rv).all(|v| v.is_finite()));

        y.fill(f32::NAN);
        y2.fill(f32::NAN);
        saved.fill(f32::NAN);
        saved2.fill(f32::NAN);
        forward_eval(&mut y, &mut saved, x, gamma, beta, &rm, &rv, &g, n);
        forward_eval_naive(&mut y2, &mut saved2, x, gamma, beta, &rm, &rv, &g, n);
        assert_close(&format!("eval {g:?} n {n} y"), &y, &y2, 1e-5);
        assert_close(&format!("eval {g:?} n {n} saved"), &saved, &saved2, 1e-6);
    }
}

/// Gradients start from random values, so the test also checks that both versions add.
#[test]
fn backward_matches_naive() {
    for (seed, &(n, c, s)) in CASES.iter().enumerate() {
        let g = geom(c, s);
        let d = data(70 + seed as u64, &g, n);
        let mut r = rng(80 + seed as u64);
        let d_y = uniform(&mut r, d.x.len());
        let (d_x0, d_gamma0, d_beta0) = (
            uniform(&mut r, d.x.len()),
            uniform(&mut r, c),
            uniform(&mut r, c),
        );
        let (mut y, mut saved) = (vec![0.0; d.x.len()], vec![0.0; 2 * c]);
        let (mut rm, mut rv) = (d.running_mean.clone(), d.running_var.clone());
        for batch_stats in [true, false] {
            if batch_stats {
                let (x, gamma, beta) = (&d.x, &d.gamma, &d.beta);
                forward_train(&mut y, &mut saved, x, gamma, beta, &mut rm, &mut rv, &g, n);
            } else {
                let (x, gamma, beta) = (&d.x, &d.gamma, &d.beta);
                forward_eval(&mut y, &mut saved, x, gamma, beta, &rm, &rv, &g, n);
            }
            let (mut d_x, mut d_gamma, mut d_beta) =
                (d_x0.clone(), d_gamma0.clone(), d_beta0.clone());
            let (mut e_x, mut e_gamma, mut e_beta) =
                (d_x0.clone(), d_gamma0.clone(), d_beta0.clone());
            let (x, gamma) = (&d.x, &d.gamma);
            let (dx, dg, db) = (&mut d_x, &mut d_gamma, &mut d_beta);
            backward(dx, dg, db, &d_y, x, gamma, &saved, &g, n, batch_stats);
            let (ex, eg, eb) = (&mut e_x, &mut e_gamma, &mut e_beta);
            backward_naive(ex, eg, eb, &d_y, x, gamma, &saved, &g, n, batch_stats);
            let what = format!("{g:?} n {n} batch_stats {batch_stats}");
            assert_close(&format!("{what} d_x"), &d_x, &e_x, 1e-4);
            assert_close(&format!("{what} d_gamma"), &d_gamma, &e_gamma, 1e-5);
            assert_close(&format!("{what} d_beta"), &d_beta, &e_beta, 1e-5);
        }
    }
}

/// `L = Σ r ⊙ forward_train(x)`, with the batch statistics recomputed at every probe.
#[test]
fn train_backward_matches_finite_differences() {
    for (seed, &(n, c, s)) in CASES.iter().enumerate().skip(1) {
        let g = geom(c, s);
        let d = data(90 + seed as u64, &g, n);
        let weights = uniform(&mut rng(100 + seed as u64), d.x.len());
        let (mut y, mut saved) = (vec![0.0; d.x.len()], vec![0.0; 2 * c]);
        let (mut rm, mut rv) = (d.running_mean.clone(), d.running_var.clone());
        let (x, gamma, beta) = (&d.x, &d.gamma, &d.beta);
        forward_train(&mut y, &mut saved, x, gamma, beta, &mut rm, &mut rv, &g, n);
        let (mut d_x, mut d_gamma, mut d_beta) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
        backward(
            &mut d_x,
            &mut d_gamma,
            &mut d_beta,
            &weights,
            x,
            gamma,
            &saved,
            &g,
            n,
            true,
        );
        let mut loss = |x: &[f32], gamma: &[f32], beta: &[f32]| {
            let mut saved = vec![0.0; 2 * c];
            let (mut rm, mut rv) = (d.running_mean.clone(), d.running_var.clone());
            forward_train(&mut y, &mut saved, x, gamma, beta, &mut rm, &mut rv, &g, n);
            dot(&weights, &y)
        };
        let what = format!("{g:?} n {n}");
        check_gradient(&format!("{what} d_x"), x, &d_x, 1e-2, 1e-2, |v| {
            loss(v, gamma, beta)
        });
        check_gradient(
            &format!("{what} d_gamma"),
            gamma,
            &d_gamma,
            1e-2,
            1e-2,
            |v| loss(x, v, beta),
        );
        check_gradient(&format!("{what} d_beta"), beta, &d_beta, 1e-2, 1e-2, |v| {
            loss(x, gamma, v)
        });
    }
}

/// `L = Σ r ⊙ forward_eval(x)`: the running statistics are constants.
#[test]
fn eval_backward_matches_finite_differences() {
    for (seed, &(n, c, s)) in CASES.iter().enumerate().skip(1) {
        let g = geom(c, s);
        let d = data(110 + seed as u64, &g, n);
        let weights = uniform(&mut rng(120 + seed as u64), d.x.len());
        let (mut y, mut saved) = (vec![0.0; d.x.len()], vec![0.0; 2 * c]);
        let (x, gamma, beta, rm, rv) = (&d.x, &d.gamma, &d.beta, &d.running_mean, &d.running_var);
        forward_eval(&mut y, &mut saved, x, gamma, beta, rm, rv, &g, n);
        let (mut d_x, mut d_gamma, mut d_beta) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
        backward(
            &mut d_x,
            &mut d_gamma,
            &mut d_beta,
            &weights,
            x,
            gamma,
            &saved,
            &g,
            n,
            false,
        );
        let mut loss = |x: &[f32], gamma: &[f32], beta: &[f32]| {
            let mut saved = vec![0.0; 2 * c];
            forward_eval(&mut y, &mut saved, x, gamma, beta, rm, rv, &g, n);
            dot(&weights, &y)
        };
        let what = format!("{g:?} n {n}");
        check_gradient(&format!("{what} d_x"), x, &d_x, 1e-2, 1e-2, |v| {
            loss(v, gamma, beta)
        });
        check_gradient(
            &format!("{what} d_gamma"),
            gamma,
            &d_gamma,
            1e-2,
            1e-2,
            |v| loss(x, v, beta),
        );
        check_gradient(&format!("{what} d_beta"), beta, &d_beta, 1e-2, 1e-2, |v| {
            loss(x, gamma, v)
        });
    }
}

/// Two training steps on the same batch, against numbers worked out by hand from
/// `torch.nn.BatchNorm2d`'s documented update (momentum 0.1, eps 1e-5, the unbiased
/// variance in the running average, the biased one in `y`). In PyTorch:
///
/// ```python
/// bn = torch.nn.BatchNorm2d(2)
/// with torch.no_grad():
///     bn.weight.copy_(torch.tensor([1.0, 2.0])); bn.bias.copy_(torch.tensor([0.0, 0.5]))
/// x = torch.tensor([[[[1.0, 2.0]], [[0.5, -1.0]]], [[[3.0, 4.0]], [[2.0, 0.5]]]])
/// y = bn(x)  # bn.running_mean = [0.25, 0.05], bn.running_var = [1.0666667, 1.05]
/// bn(x)      # bn.running_mean = [0.475, 0.095], bn.running_var = [1.1266667, 1.095]
/// ```
///
/// Channel 0 holds 1, 2, 3, 4: mean 2.5, biased variance 1.25, unbiased 5/3. Channel 1
/// holds 0.5, -1, 2, 0.5: mean 0.5, biased variance 1.125, unbiased 1.5.
#[test]
fn running_statistics_match_pytorch_by_hand() {
    let g = geom(2, 2);
    let x = [1.0, 2.0, 0.5, -1.0, 3.0, 4.0, 2.0, 0.5];
    let (gamma, beta) = ([1.0, 2.0], [0.0, 0.5]);
    let (mut rm, mut rv) = ([0.0; 2], [1.0; 2]);
    let (mut y, mut saved) = ([f32::NAN; 8], [f32::NAN; 4]);
    forward_train(
        &mut y, &mut saved, &x, &gamma, &beta, &mut rm, &mut rv, &g, 2,
    );
    assert_close("running_mean", &rm, &[0.25, 0.05], 1e-6);
    assert_close("running_var", &rv, &[1.066_666_7, 1.05], 1e-6);
    let invstd = [
        1.0 / (1.25f64 + 1e-5).sqrt(),
        1.0 / (1.125f64 + 1e-5).sqrt(),
    ];
    assert_close(
        "saved",
        &saved,
        &[2.5, 0.5, invstd[0] as f32, invstd[1] as f32],
        1e-6,
    );
    // y = γ (x - μ)/√(σ² + ε) + β
    let expected = [
        -1.341_635_4,
        -0.447_211_8,
        0.5,
        -2.328_414_6,
        0.447_211_8,
        1.341_635_4,
        3.328_414_6,
        0.5,
    ];
    assert_close("y", &y, &expected, 1e-6);
    forward_train(
        &mut y, &mut saved, &x, &gamma, &beta, &mut rm, &mut rv, &g, 2,
    );
    assert_close("running_mean", &rm, &[0.475, 0.095], 1e-6);
    assert_close("running_var", &rv, &[1.126_666_7, 1.095], 1e-6);
}

/// With one value per channel the batch variance is 0, and nothing becomes NaN.
#[test]
fn one_value_per_channel_stays_finite() {
    let g = geom(3, 1);
    let (mut rm, mut rv) = ([0.0; 3], [1.0; 3]);
    let (mut y, mut saved) = ([f32::NAN; 3], [f32::NAN; 6]);
    let x = [5.0, -1.0, 0.0];
    forward_train(
        &mut y, &mut saved, &x, &[1.0; 3], &[0.5; 3], &mut rm, &mut rv, &g, 1,
    );
    assert_eq!(y, [0.5; 3]);
    assert_close("running_mean", &rm, &[0.5, -0.1, 0.0], 1e-7);
    assert_close("running_var", &rv, &[0.9; 3], 1e-7);
    let mut d_x = [0.0; 3];
    let (mut d_gamma, mut d_beta) = ([0.0; 3], [0.0; 3]);
    backward(
        &mut d_x,
        &mut d_gamma,
        &mut d_beta,
        &[1.0; 3],
        &x,
        &[1.0; 3],
        &saved,
        &g,
        1,
        true,
    );
    assert_eq!((d_x, d_gamma, d_beta), ([0.0; 3], [0.0; 3], [1.0; 3]));
}
