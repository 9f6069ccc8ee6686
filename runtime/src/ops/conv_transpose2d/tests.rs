//! The transposed convolution's kernels against the reference versions and finite
//! differences.

use super::reference::{backward_naive, forward_naive};
use super::*;
use crate::ops::test_util::{
    assert_close, assert_scratch_reused, check_gradient, dot, rng, uniform,
};

/// `(n, [C, H, W], O, [KH, KW], [SH, SW], [PH, PW], [QH, QW])`: batch 0 and 1, odd sizes,
/// strides 1-3, padding and output padding, non-square kernels, a 1x1, and more than 16
/// output channels (the convolution it transposes then takes the packed products' other
/// paths).
type Case = (
    usize,
    [usize; 3],
    usize,
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [usize; 2],
);

const CASES: &[Case] = &[
    (0, [2, 3, 3], 3, [3, 3], [2, 2], [1, 1], [1, 1]),
    (1, [1, 1, 1], 1, [1, 1], [1, 1], [0, 0], [0, 0]),
    (2, [3, 4, 5], 2, [3, 3], [2, 2], [1, 1], [1, 1]),
    (3, [2, 5, 4], 3, [3, 2], [2, 1], [1, 0], [1, 0]),
    (2, [3, 3, 4], 4, [5, 3], [3, 2], [2, 1], [2, 1]),
    (1, [2, 4, 4], 2, [4, 4], [2, 2], [1, 1], [0, 0]),
    (2, [4, 5, 5], 3, [3, 3], [1, 1], [1, 1], [0, 0]),
    (1, [20, 3, 3], 18, [3, 3], [2, 2], [0, 0], [1, 1]),
    (2, [5, 7, 7], 1, [3, 3], [2, 2], [1, 1], [1, 1]),
];

fn geom(case: &Case) -> ConvTranspose2dGeom {
    let &(_, input, out_c, kernel, stride, pad, output_pad) = case;
    ConvTranspose2dGeom::new(input, out_c, kernel, stride, pad, output_pad)
}

/// Forward and backward (with and without `d_x` and `d_b`, into gradients that start random)
/// against the reference, outputs NaN-filled first, on one thread and on three.
#[test]
fn matches_naive() {
    for threads in [1, 3] {
        crate::ops::parallel::with_threads(threads, || {
            let mut r = rng(11);
            let mut scratch = Vec::new();
            for case in CASES {
                let g = geom(case);
                for n in [case.0, 5] {
                    let x = uniform(&mut r, n * g.in_len());
                    let w = uniform(&mut r, g.weight_len());
                    let b = uniform(&mut r, g.out_c);
                    for bias in [None, Some(&b[..])] {
                        let mut fast = vec![f32::NAN; n * g.out_len()];
                        let mut naive = vec![f32::NAN; n * g.out_len()];
                        forward(&mut fast, &x, &w, bias, &g, n, &mut scratch);
                        forward_naive(&mut naive, &x, &w, bias, &g, n);
                        assert_close(&format!("y {g:?} n {n}"), &fast, &naive, 1e-5);
                    }
                    let d_y = uniform(&mut r, n * g.out_len());
                    let d_x0 = uniform(&mut r, x.len());
                    let d_w0 = uniform(&mut r, w.len());
                    let d_b0 = uniform(&mut r, g.out_c);
                    for optional in [true, false] {
                        let (mut d_x, mut d_w, mut d_b) =
                            (d_x0.clone(), d_w0.clone(), d_b0.clone());
                        let (mut e_x, mut e_w, mut e_b) =
                            (d_x0.clone(), d_w0.clone(), d_b0.clone());
                        let (fx, fb) = (Some(&mut d_x[..]), Some(&mut d_b[..]));
                        let (nx, nb) = (Some(&mut e_x[..]), Some(&mut e_b[..]));
                        let (fx, fb, nx, nb) = if optional {
                            (fx, fb, nx, nb)
                        } else {
                            (None, None, None, None)
                        };
                        backward(fx, &mut d_w, fb, &d_y, &x, &w, &g, n, &mut scratch);
                        backward_naive(nx, &mut e_w, nb, &d_y, &x, &w, &g, n);
                        assert_close(&format!("d_x {g:?} n {n}"), &d_x, &e_x, 1e-4);
                        assert_close(&format!("d_w {g:?} n {n}"), &d_w, &e_w, 1e-4);
                        assert_close(&format!("d_b {g:?} n {n}"), &d_b, &e_b, 1e-4);
                        if !optional {
                            assert_eq!((d_x == d_x0, d_b == d_b0), (true, true));
                        }
                    }
                    // The input gradient alone (a frozen layer's) has the same bits as `backward`'s.
                    let d_w = d_w0.clone();
                    crate::ops::test_util::assert_input_gradient_alone(
                        &format!("{g:?} n {n}"),
                        &d_x0,
                        &mut scratch,
                        |d_x, s| {
                            backward(Some(d_x), &mut d_w.clone(), None, &d_y, &x, &w, &g, n, s)
                        },
                        |d_x, s| backward_input(d_x, &d_y, &w, &g, n, s),
                    );
                }
            }
        });
    }
}

/// The reference backward pass is the gradient of the reference forward pass.
#[test]
fn reference_matches_finite_differences() {
    let mut r = rng(12);
    for case in &CASES[2..6] {
        let (g, n) = (geom(case), case.0.max(1));
        let x = uniform(&mut r, n * g.in_len());
        let w = uniform(&mut r, g.weight_len());
        let b = uniform(&mut r, g.out_c);
        let weights = uniform(&mut r, n * g.out_len());
        let loss = |x: &[f32], w: &[f32], b: &[f32]| {
            let mut y = vec![0.0; n * g.out_len()];
            forward_naive(&mut y, x, w, Some(b), &g, n);
            dot(&weights, &y)
        };
        let (mut d_x, mut d_w, mut d_b) =
            (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; g.out_c]);
        backward_naive(
            Some(&mut d_x),
            &mut d_w,
            Some(&mut d_b),
            &weights,
            &x,
            &w,
            &g,
            n,
        );
        check_gradient("d_x", &x, &d_x, 1e-2, 1e-2, |p| loss(p, &w, &b));
        check_gradient("d_w", &w, &d_w, 1e-2, 1e-2, |p| loss(&x, p, &b));
        check_gradient("d_b", &b, &d_b, 1e-2, 1e-2, |p| loss(&x, &w, p));
    }
}

#[test]
fn scratch_grows_once() {
    let g = geom(&CASES[2]);
    let n = 3;
    let mut r = rng(13);
    let (x, w) = (
        uniform(&mut r, n * g.in_len()),
        uniform(&mut r, g.weight_len()),
    );
    let (mut y, mut d_x, mut d_w) = (
        vec![0.0; n * g.out_len()],
        vec![0.0; x.len()],
        vec![0.0; w.len()],
    );
    assert_scratch_reused(|scratch| {
        forward(&mut y, &x, &w, None, &g, n, scratch);
        backward(Some(&mut d_x), &mut d_w, None, &y, &x, &w, &g, n, scratch);
    });
}

#[test]
fn geometry_is_pytorchs() {
    let g = ConvTranspose2dGeom::new([32, 7, 7], 16, [3, 3], [2, 2], [1, 1], [1, 1]);
    assert_eq!((g.out_h, g.out_w), (14, 14));
    assert_eq!(g.conv().out_h, 7);
    assert!(ConvTranspose2dGeom::try_new([1, 7, 7], 1, [3, 3], [2, 2], [1, 1], [2, 2]).is_err());
}

#[test]
#[should_panic(expected = "conv_transpose2d::forward: w has 3 values")]
fn wrong_lengths_panic() {
    let g = geom(&CASES[2]);
    let mut y = vec![0.0; g.out_len()];
    forward(
        &mut y,
        &vec![0.0; g.in_len()],
        &[0.0; 3],
        None,
        &g,
        1,
        &mut Vec::new(),
    );
}

#[test]
#[should_panic(expected = "conv_transpose2d::backward_input: w has 3 values")]
fn backward_input_checks_lengths() {
    let g = geom(&CASES[2]);
    let (mut d_x, d_y) = (vec![0.0; g.in_len()], vec![0.0; g.out_len()]);
    backward_input(&mut d_x, &d_y, &[0.0; 3], &g, 1, &mut Vec::new());
}

/// What a tape reserves for the layer ([`scratch_needed`]) is all the kernels grow to, on
/// every case and instruction set, so that a reserved tape's passes allocate nothing.
#[test]
fn scratch_needed_covers_forward_and_backward() {
    let mut r = rng(11);
    for &(n, input, out_c, kernel, stride, pad, output_pad) in CASES {
        let g = ConvTranspose2dGeom::new(input, out_c, kernel, stride, pad, output_pad);
        let (x, w) = (
            uniform(&mut r, n * g.in_len()),
            uniform(&mut r, g.weight_len()),
        );
        let what = format!("{g:?}");
        crate::ops::test_util::assert_scratch_within(
            &what,
            || scratch_needed(&g),
            |s| {
                let mut y = vec![0.0; n * g.out_len()];
                forward(&mut y, &x, &w, None, &g, n, s);
                let (mut d_x, mut d_w) = (vec![0.0; x.len()], vec![0.0; w.len()]);
                backward(Some(&mut d_x), &mut d_w, None, &y, &x, &w, &g, n, s);
                backward_input(&mut d_x, &y, &w, &g, n, s);
            },
        );
    }
}
