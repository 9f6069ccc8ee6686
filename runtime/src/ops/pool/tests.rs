//! The pooling kernels against the reference versions, finite differences and examples
//! worked by hand.

use super::reference::{avg_backward_naive, avg_forward_naive};
use super::reference::{max_backward_naive, max_forward_naive};
use super::*;
use crate::ops::test_util::{assert_close, check_gradient, dot, rng, uniform};
use rand::seq::SliceRandom;
use rand::Rng;

type Case = (usize, [usize; 3], [usize; 2], [usize; 2], [usize; 2]);

/// `(n, [C, H, W], [KH, KW], [SH, SW], [PH, PW])`: batch 0 and 1, odd sizes, strides 1-3,
/// pads 0-2, non-square windows, overlapping windows, and windows wholly in the padding.
const CASES: &[Case] = &[
    (0, [2, 4, 4], [2, 2], [2, 2], [0, 0]),
    (1, [1, 1, 1], [1, 1], [1, 1], [0, 0]),
    (2, [3, 6, 6], [2, 2], [2, 2], [0, 0]),
    (3, [2, 7, 5], [3, 2], [2, 1], [1, 1]),
    (2, [2, 9, 8], [3, 3], [3, 2], [1, 0]),
    (1, [3, 5, 7], [2, 5], [1, 3], [1, 2]),
    (1, [2, 4, 4], [1, 1], [2, 2], [1, 1]),
    (2, [5, 13, 11], [3, 3], [2, 2], [1, 1]),
];

fn geom(case: &Case) -> Pool2dGeom {
    let &(_, input, kernel, stride, pad) = case;
    Pool2dGeom::new(input, kernel, stride, pad, Rounding::Floor)
}

/// Distinct values at least 0.1 apart, shuffled, so a finite-difference step of 0.01
/// never changes which cell wins a window.
fn distinct(r: &mut impl Rng, len: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..len)
        .map(|i| i as f32 * 0.1 - len as f32 * 0.05)
        .collect();
    x.shuffle(r);
    x
}

#[test]
fn max_matches_naive() {
    let mut r = rng(10);
    for case in CASES {
        let (g, n) = (geom(case), case.0);
        // Few distinct values, so that windows have ties.
        let x: Vec<f32> = (0..n * g.in_len())
            .map(|_| r.random_range(0..4) as f32)
            .collect();
        let mut y = vec![f32::NAN; n * g.out_len()];
        let mut argmax = vec![12345; y.len()];
        let mut expected = vec![f32::NAN; y.len()];
        max_forward(&mut y, &mut argmax, &x, &g, n);
        max_forward_naive(&mut expected, &x, &g, n);
        assert_eq!(y, expected, "{g:?}");

        let d_y = uniform(&mut r, y.len());
        let mut d_x = uniform(&mut r, x.len());
        let mut d_x_naive = d_x.clone();
        max_backward(&mut d_x, &d_y, &argmax, &g, n);
        max_backward_naive(&mut d_x_naive, &d_y, &x, &g, n);
        assert_eq!(d_x, d_x_naive, "{g:?}");
    }
}

#[test]
fn avg_matches_naive() {
    let mut r = rng(11);
    for case in CASES {
        let (g, n) = (geom(case), case.0);
        let x = uniform(&mut r, n * g.in_len());
        let mut y = vec![f32::NAN; n * g.out_len()];
        let mut expected = vec![f32::NAN; y.len()];
        avg_forward(&mut y, &x, &g, n);
        avg_forward_naive(&mut expected, &x, &g, n);
        assert_close(&format!("y {g:?}"), &y, &expected, 1e-6);

        let d_y = uniform(&mut r, y.len());
        let mut d_x = uniform(&mut r, x.len());
        let mut d_x_naive = d_x.clone();
        avg_backward(&mut d_x, &d_y, &g, n);
        avg_backward_naive(&mut d_x_naive, &d_y, &g, n);
        assert_close(&format!("d_x {g:?}"), &d_x, &d_x_naive, 1e-6);
    }
}

#[test]
fn max_backward_matches_finite_differences() {
    let mut r = rng(12);
    for case in &CASES[1..] {
        let (g, n) = (geom(case), case.0);
        let x = distinct(&mut r, n * g.in_len());
        let weights = uniform(&mut r, n * g.out_len());
        let (mut y, mut argmax) = (vec![0.0; weights.len()], vec![0; weights.len()]);
        max_forward(&mut y, &mut argmax, &x, &g, n);
        let mut d_x = vec![0.0; x.len()];
        max_backward(&mut d_x, &weights, &argmax, &g, n);
        check_gradient("d_x", &x, &d_x, 1e-2, 1e-3, |x| {
            max_forward(&mut y, &mut argmax, x, &g, n);
            dot(&weights, &y)
        });
    }
}

#[test]
fn avg_backward_matches_finite_differences() {
    let mut r = rng(13);
    for case in &CASES[1..] {
        let (g, n) = (geom(case), case.0);
        let x = uniform(&mut r, n * g.in_len());
        let weights = uniform(&mut r, n * g.out_len());
        let mut d_x = vec![0.0; x.len()];
        avg_backward(&mut d_x, &weights, &g, n);
        let mut y = vec![0.0; weights.len()];
        check_gradient("d_x", &x, &d_x, 1e-2, 1e-3, |x| {
            avg_forward(&mut y, x, &g, n);
            dot(&weights, &y)
        });
    }
}

/// Ties go to the first cell in row-major order; the argmax of the second sample counts
/// from that sample's start.
#[test]
fn ties_go_to_the_first_cell() {
    let g = Pool2dGeom::new([2, 3, 3], [2, 2], [1, 1], [1, 1], Rounding::Exact);
    let x = vec![1.0; 2 * g.in_len()];
    let mut y = vec![f32::NAN; 2 * g.out_len()];
    let mut argmax = vec![0; y.len()];
    max_forward(&mut y, &mut argmax, &x, &g, 2);
    assert!(y.iter().all(|&v| v == 1.0));
    // First real cell of each 2×2 window over the 3×3 plane padded by one.
    let plane = [0, 0, 1, 2, 0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8];
    let expected: Vec<u32> = (0..4)
        .flat_map(|c| plane.map(|a| a + 9 * (c % 2)))
        .collect();
    assert_eq!(argmax, expected);
}

/// A NaN wins its window (the last one, when there are several), as in PyTorch.
#[test]
fn nan_wins() {
    let g = Pool2dGeom::new([1, 2, 4], [2, 2], [2, 2], [0, 0], Rounding::Exact);
    let x = [1.0, f32::NAN, 7.0, f32::NAN, 9.0, 0.0, f32::NAN, 8.0];
    let (mut y, mut argmax) = ([0.0; 2], [0; 2]);
    max_forward(&mut y, &mut argmax, &x, &g, 1);
    assert!(y[0].is_nan() && y[1].is_nan());
    assert_eq!(argmax, [1, 6]);
    let mut naive = [0.0; 2];
    max_forward_naive(&mut naive, &x, &g, 1);
    assert!(naive[0].is_nan() && naive[1].is_nan());
}

/// Padding counts as zeros in an average: a 2×2 window over a 2×2 plane of ones padded by
/// one sees one real cell. `nn.AvgPool2d(2, 2, padding=1)(torch.ones(1, 1, 2, 2))` is 0.25
/// everywhere.
#[test]
fn average_counts_padding_as_zeros() {
    let g = Pool2dGeom::new([1, 2, 2], [2, 2], [2, 2], [1, 1], Rounding::Exact);
    let mut y = [f32::NAN; 4];
    avg_forward(&mut y, &[1.0; 4], &g, 1);
    assert_eq!(y, [0.25; 4]);
    let mut d_x = [1.0; 4];
    avg_backward(&mut d_x, &[1.0, 2.0, 3.0, 4.0], &g, 1);
    assert_eq!(d_x, [1.25, 1.5, 1.75, 2.0]);
}

/// A window wholly in the padding outputs 0 and passes no gradient.
#[test]
fn empty_windows() {
    let g = Pool2dGeom::new([1, 2, 2], [1, 1], [2, 2], [1, 1], Rounding::Floor);
    let x = [-1.0, -2.0, -3.0, -4.0];
    let (mut y, mut argmax) = ([f32::NAN; 4], [0; 4]);
    max_forward(&mut y, &mut argmax, &x, &g, 1);
    assert_eq!(y, [0.0, 0.0, 0.0, -4.0]);
    assert_eq!(argmax, [EMPTY_WINDOW, EMPTY_WINDOW, EMPTY_WINDOW, 3]);
    let mut d_x = [0.0; 4];
    max_backward(&mut d_x, &[1.0; 4], &argmax, &g, 1);
    assert_eq!(d_x, [0.0, 0.0, 0.0, 1.0]);
}

/// Property tests (proptest): random geometries (rectangular windows, strides up to 12, pads
/// up to half the window, floor rounding or exact), the fast max and average pooling against
/// the reference, forward and backward, on every instruction set. 512 cases by default,
/// `PROPTEST_CASES` cases when set.
mod properties {
    use super::*;
    use crate::ops::test_util::{on_every_isa, property_cases};
    use proptest::prelude::*;
    use rand::Rng;

    fn cases() -> impl Strategy<Value = (Case, bool)> {
        (
            0..4usize,
            (1..5usize, 1..16usize, 1..16usize),
            (1..6usize, 1..6usize),
            prop_oneof![3 => (1..4usize, 1..4usize), 1 => (1..13usize, 1..13usize)],
            (0..3usize, 0..3usize),
            any::<bool>(),
        )
            .prop_filter_map("no valid geometry", |(n, (c, h, w), k, s, p, floor)| {
                let pad = [p.0.min(k.0 / 2), p.1.min(k.1 / 2)];
                let case: Case = (n, [c, h, w], [k.0, k.1], [s.0, s.1], pad);
                let rounding = if floor {
                    Rounding::Floor
                } else {
                    Rounding::Exact
                };
                Pool2dGeom::try_new([c, h, w], case.2, case.3, pad, rounding)
                    .ok()
                    .map(|_| (case, floor))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(property_cases(512)))]

        #[test]
        fn fast_kernels_equal_the_reference((case, floor) in cases(), seed in 0..1000u64) {
            let (n, input, kernel, stride, pad) = case;
            let rounding = if floor { Rounding::Floor } else { Rounding::Exact };
            let g = Pool2dGeom::new(input, kernel, stride, pad, rounding);
            let mut r = rng(seed);
            // Few distinct values, so that windows have ties (the first cell wins).
            let x: Vec<f32> = (0..n * g.in_len()).map(|_| r.random_range(0..4) as f32).collect();
            let d_y = uniform(&mut r, n * g.out_len());
            let d_x0 = uniform(&mut r, x.len());
            on_every_isa(|isa| {
                let mut y = vec![f32::NAN; n * g.out_len()];
                let mut argmax = vec![12345; y.len()];
                let mut expected = vec![f32::NAN; y.len()];
                max_forward(&mut y, &mut argmax, &x, &g, n);
                max_forward_naive(&mut expected, &x, &g, n);
                assert_eq!(y, expected, "max {g:?} {isa:?}");
                let (mut d_x, mut d_x_naive) = (d_x0.clone(), d_x0.clone());
                max_backward(&mut d_x, &d_y, &argmax, &g, n);
                max_backward_naive(&mut d_x_naive, &d_y, &x, &g, n);
                assert_eq!(d_x, d_x_naive, "max backward {g:?} {isa:?}");

                y.fill(f32::NAN);
                expected.fill(f32::NAN);
                avg_forward(&mut y, &x, &g, n);
                avg_forward_naive(&mut expected, &x, &g, n);
                assert_close(&format!("avg {g:?} {isa:?}"), &y, &expected, 1e-6);
                let (mut d_x, mut d_x_naive) = (d_x0.clone(), d_x0.clone());
                avg_backward(&mut d_x, &d_y, &g, n);
                avg_backward_naive(&mut d_x_naive, &d_y, &g, n);
                assert_close(&format!("avg backward {g:?} {isa:?}"), &d_x, &d_x_naive, 1e-6);
            });
        }
    }
}

/// A batch large enough to be split over the threads by samples gives the same outputs,
/// winners and gradients as one thread, padded or not.
#[test]
fn split_batches_give_the_same_results() {
    let mut r = rng(61);
    for pad in [0, 1] {
        let (n, input) = (8, [12, 55, 55]);
        let g = Pool2dGeom::new(input, [3, 3], [2, 2], [pad, pad], Rounding::Floor);
        assert!(n * g.in_len() >= MIN_SPLIT_VALUES);
        let x = uniform(&mut r, n * g.in_len());
        let d_y = uniform(&mut r, n * g.out_len());
        let run = |threads: usize| {
            crate::ops::parallel::with_threads(threads, || {
                let (mut y, mut argmax) = (vec![f32::NAN; d_y.len()], vec![0; d_y.len()]);
                max_forward(&mut y, &mut argmax, &x, &g, n);
                let mut d_x = vec![0.5; x.len()];
                max_backward(&mut d_x, &d_y, &argmax, &g, n);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                (bits(&y), argmax, bits(&d_x))
            })
        };
        let one = run(1);
        let mut want = vec![f32::NAN; d_y.len()];
        max_forward_naive(&mut want, &x, &g, n);
        let y: Vec<f32> = one.0.iter().map(|&b| f32::from_bits(b)).collect();
        assert_eq!(y, want, "pad {pad}");
        for threads in [2, 3] {
            assert!(
                run(threads) == one,
                "pad {pad}: {threads} threads changed the results"
            );
        }
    }
}
