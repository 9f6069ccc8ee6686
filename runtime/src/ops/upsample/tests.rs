//! Upsampling against the reference and finite differences.

use super::reference::{backward_naive, forward_naive};
use super::*;
use crate::ops::test_util::{assert_close, check_gradient, dot, rng, uniform};

/// `(n, [C, H, W], factor)`: batch 0 and 1, a single pixel, odd sizes, factors 1 to 3.
const CASES: &[(usize, [usize; 3], usize)] = &[
    (0, [2, 3, 3], 2),
    (1, [1, 1, 1], 3),
    (2, [3, 4, 5], 2),
    (1, [2, 5, 3], 3),
    (3, [1, 2, 7], 1),
];

#[test]
fn matches_naive() {
    let mut r = rng(21);
    for mode in [UpsampleMode::Nearest, UpsampleMode::Bilinear] {
        for &(n, input, f) in CASES {
            let g = UpsampleGeom::new(input, f, mode);
            let x = uniform(&mut r, n * g.in_len());
            let mut fast = vec![f32::NAN; n * g.out_len()];
            let mut naive = vec![f32::NAN; n * g.out_len()];
            forward(&mut fast, &x, &g, n);
            forward_naive(&mut naive, &x, &g);
            assert_close(&format!("y {g:?}"), &fast, &naive, 1e-6);
            let d_y = uniform(&mut r, n * g.out_len());
            let d_x0 = uniform(&mut r, x.len());
            let (mut d_x, mut e_x) = (d_x0.clone(), d_x0);
            backward(&mut d_x, &d_y, &g, n);
            backward_naive(&mut e_x, &d_y, &g);
            assert_close(&format!("d_x {g:?}"), &d_x, &e_x, 1e-5);
        }
    }
}

#[test]
fn backward_matches_finite_differences() {
    let mut r = rng(22);
    for mode in [UpsampleMode::Nearest, UpsampleMode::Bilinear] {
        let (n, g) = (2, UpsampleGeom::new([2, 3, 4], 2, mode));
        let x = uniform(&mut r, n * g.in_len());
        let weights = uniform(&mut r, n * g.out_len());
        let mut d_x = vec![0.0; x.len()];
        backward(&mut d_x, &weights, &g, n);
        check_gradient("d_x", &x, &d_x, 1e-2, 1e-3, |p| {
            let mut y = vec![0.0; n * g.out_len()];
            forward(&mut y, p, &g, n);
            dot(&weights, &y)
        });
    }
}

/// PyTorch: `F.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), scale_factor=2,
/// mode="bilinear")` (align_corners=False).
#[test]
fn bilinear_is_pytorchs() {
    let g = UpsampleGeom::new([1, 2, 2], 2, UpsampleMode::Bilinear);
    let mut y = [0.0; 16];
    forward(&mut y, &[1.0, 2.0, 3.0, 4.0], &g, 1);
    let torch = [
        1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0,
    ];
    assert_close("y", &y, &torch, 1e-6);
}

#[test]
#[should_panic(expected = "upsample::forward: y has 3 values")]
fn wrong_lengths_panic() {
    let g = UpsampleGeom::new([1, 2, 2], 2, UpsampleMode::Nearest);
    forward(&mut [0.0; 3], &[0.0; 4], &g, 1);
}
