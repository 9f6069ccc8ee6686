//! The convolution's kernels against the reference versions and finite differences.

use super::reference::{backward_naive, forward_naive};
use super::*;
use crate::ops::isa::with_ceiling;
use crate::ops::test_util::{
    assert_close, assert_scratch_reused, check_gradient, dot, rng, uniform,
};

type Case = (usize, [usize; 3], usize, [usize; 2], [usize; 2], [usize; 2]);

/// `(n, [C, H, W], O, [KH, KW], [SH, SW], [PH, PW])`: batch 0 and 1, odd sizes, strides 1-3,
/// pads 0-2, non-square kernels, the 1×1 fast path, and windows wholly in the padding.
const CASES: &[Case] = &[
    (0, [2, 5, 5], 3, [3, 3], [1, 1], [1, 1]),
    (1, [1, 1, 1], 1, [1, 1], [1, 1], [0, 0]),
    (2, [3, 4, 5], 2, [1, 1], [1, 1], [0, 0]),
    (3, [2, 7, 6], 3, [3, 2], [2, 1], [1, 0]),
    (2, [3, 9, 8], 4, [5, 3], [3, 2], [2, 1]),
    (1, [2, 5, 7], 5, [2, 5], [1, 3], [0, 2]),
    (2, [1, 6, 6], 2, [1, 1], [2, 2], [0, 0]),
    (1, [2, 3, 3], 1, [1, 1], [1, 1], [2, 2]),
    (2, [4, 11, 13], 6, [3, 3], [3, 3], [1, 2]),
    (1, [17, 8, 8], 9, [3, 3], [1, 1], [1, 1]),
];

fn geom(case: &Case) -> Conv2dGeom {
    let &(_, input, out_c, kernel, stride, pad) = case;
    Conv2dGeom::new(input, out_c, kernel, stride, pad, Rounding::Floor)
}

#[test]
fn forward_matches_naive() {
    let mut r = rng(1);
    let mut scratch = Vec::new();
    for case in CASES {
        let (g, n) = (geom(case), case.0);
        let x = uniform(&mut r, n * g.in_len());
        let w = uniform(&mut r, g.weight_len());
        let b = uniform(&mut r, g.out_c);
        for bias in [None, Some(&b[..])] {
            let mut fast = vec![f32::NAN; n * g.out_len()];
            let mut naive = vec![f32::NAN; n * g.out_len()];
            forward(&mut fast, &x, &w, bias, &g, n, &mut scratch);
            forward_naive(&mut naive, &x, &w, bias, &g, n);
            assert_close(&format!("y {g:?}"), &fast, &naive, 1e-5);
        }
    }
}

/// Gradients start from random values, so the test also checks that both versions add.
#[test]
fn backward_matches_naive() {
    let mut r = rng(2);
    let mut scratch = Vec::new();
    for case in CASES {
        let (g, n) = (geom(case), case.0);
        let x = uniform(&mut r, n * g.in_len());
        let w = uniform(&mut r, g.weight_len());
        let d_y = uniform(&mut r, n * g.out_len());
        let d_x0 = uniform(&mut r, x.len());
        let d_w0 = uniform(&mut r, w.len());
        let d_b0 = uniform(&mut r, g.out_c);
        for with_optional in [true, false] {
            let (mut d_x, mut d_w, mut d_b) = (d_x0.clone(), d_w0.clone(), d_b0.clone());
            let (mut e_x, mut e_w, mut e_b) = (d_x0.clone(), d_w0.clone(), d_b0.clone());
            let (fx, fb, nx, nb) = if with_optional {
                (
                    Some(&mut d_x[..]),
                    Some(&mut d_b[..]),
                    Some(&mut e_x[..]),
                    Some(&mut e_b[..]),
                )
            } else {
                (None, None, None, None)
            };
            backward(fx, &mut d_w, fb, &d_y, &x, &w, &g, n, &mut scratch);
            backward_naive(nx, &mut e_w, nb, &d_y, &x, &w, &g, n);
            assert_close(&format!("d_x {g:?}"), &d_x, &e_x, 1e-5);
            assert_close(&format!("d_w {g:?}"), &d_w, &e_w, 1e-5);
            assert_close(&format!("d_b {g:?}"), &d_b, &e_b, 1e-5);
            if !with_optional {
                assert_eq!(d_x, d_x0);
                assert_eq!(d_b, d_b0);
            }
        }
    }
}

/// The batch split over three threads gives what the reference gives (tasks of one
/// sample, of several, and no sample at all).
#[test]
fn threaded_matches_naive() {
    crate::ops::parallel::with_threads(3, || {
        let mut r = rng(4);
        let mut scratch = Vec::new();
        for case in CASES {
            let g = geom(case);
            for n in [case.0, 4, 7] {
                let x = uniform(&mut r, n * g.in_len());
                let w = uniform(&mut r, g.weight_len());
                let b = uniform(&mut r, g.out_c);
                let mut fast = vec![f32::NAN; n * g.out_len()];
                let mut naive = vec![f32::NAN; n * g.out_len()];
                forward(&mut fast, &x, &w, Some(&b), &g, n, &mut scratch);
                forward_naive(&mut naive, &x, &w, Some(&b), &g, n);
                assert_close(&format!("y {g:?} n {n}"), &fast, &naive, 1e-5);
                let d_y = uniform(&mut r, n * g.out_len());
                let d_w0 = uniform(&mut r, w.len());
                let (mut d_x, mut d_w, mut d_b) =
                    (vec![0.5; x.len()], d_w0.clone(), vec![0.25; g.out_c]);
                let (mut e_x, mut e_w, mut e_b) = (d_x.clone(), d_w0, d_b.clone());
                let (dx, dw, db) = (&mut d_x[..], &mut d_w[..], &mut d_b[..]);
                backward(Some(dx), dw, Some(db), &d_y, &x, &w, &g, n, &mut scratch);
                let (ex, ew, eb) = (&mut e_x[..], &mut e_w[..], &mut e_b[..]);
                backward_naive(Some(ex), ew, Some(eb), &d_y, &x, &w, &g, n);
                assert_close(&format!("d_x {g:?} n {n}"), &d_x, &e_x, 1e-5);
                assert_close(&format!("d_w {g:?} n {n}"), &d_w, &e_w, 1e-5);
                assert_close(&format!("d_b {g:?} n {n}"), &d_b, &e_b, 1e-5);
            }
        }
    });
}

/// Forward and backward (with and without `d_x` and `d_b`, into gradients that start
/// random) against the reference for `case` at each batch size, outputs NaN-filled first.
fn check_against_naive(case: &Case, batches: &[usize], seed: u64) {
    check_against_naive_with(case, batches, seed, |what, fast, naive| {
        assert_close(what, fast, naive, 1e-4)
    });
}

/// [`check_against_naive`] with its own comparison of each result with the reference's.
fn check_against_naive_with(
    case: &Case,
    batches: &[usize],
    seed: u64,
    compare: impl Fn(&str, &[f32], &[f32]),
) {
    let g = geom(case);
    let mut r = rng(seed);
    let mut scratch = Vec::new();
    for &n in batches {
        let x = uniform(&mut r, n * g.in_len());
        let w = uniform(&mut r, g.weight_len());
        let b = uniform(&mut r, g.out_c);
        for bias in [None, Some(&b[..])] {
            let mut fast = vec![f32::NAN; n * g.out_len()];
            let mut naive = vec![f32::NAN; n * g.out_len()];
            forward(&mut fast, &x, &w, bias, &g, n, &mut scratch);
            forward_naive(&mut naive, &x, &w, bias, &g, n);
            compare(&format!("y {g:?} n {n}"), &fast, &naive);
        }
        let d_y = uniform(&mut r, n * g.out_len());
        let (d_x0, d_w0, d_b0) = (
            uniform(&mut r, x.len()),
            uniform(&mut r, w.len()),
            uniform(&mut r, g.out_c),
        );
        for with_optional in [true, false] {
            let (mut d_x, mut d_w, mut d_b) = (d_x0.clone(), d_w0.clone(), d_b0.clone());
            let (mut e_x, mut e_w, mut e_b) = (d_x0.clone(), d_w0.clone(), d_b0.clone());
            let (fx, fb, nx, nb) = if with_optional {
                (
                    Some(&mut d_x[..]),
                    Some(&mut d_b[..]),
                    Some(&mut e_x[..]),
                    Some(&mut e_b[..]),
                )
            } else {
                (None, None, None, None)
            };
            backward(fx, &mut d_w, fb, &d_y, &x, &w, &g, n, &mut scratch);
            backward_naive(nx, &mut e_w, nb, &d_y, &x, &w, &g, n);
            compare(&format!("d_x {g:?} n {n}"), &d_x, &e_x);
            compare(&format!("d_w {g:?} n {n}"), &d_w, &e_w);
            compare(&format!("d_b {g:?} n {n}"), &d_b, &e_b);
        }
        // The input gradient alone (a frozen layer's) has the same bits as `backward`'s.
        let d_w = d_w0.clone();
        crate::ops::test_util::assert_input_gradient_alone(
            &format!("{g:?} n {n}"),
            &d_x0,
            &mut scratch,
            |d_x, s| backward(Some(d_x), &mut d_w.clone(), None, &d_y, &x, &w, &g, n, s),
            |d_x, s| backward_input(d_x, &d_y, &w, &g, n, s),
        );
    }
}

/// The direct kernels (stride 1, at most 16 output channels): channel counts that leave
/// a short last group of 6, rows of 1, 15, 16, 17 and 22 outputs around the 16-output
/// runs, one input channel and several, padding from none to `K - 1`, and a padding of
/// `K` or more, where the input gradient falls back to the packed products.
#[test]
fn direct_kernels_match_naive() {
    let cases: &[Case] = &[
        (0, [1, 5, 5], 6, [5, 5], [1, 1], [2, 2]),
        (1, [1, 28, 28], 6, [5, 5], [1, 1], [2, 2]),
        (3, [6, 14, 14], 16, [5, 5], [1, 1], [0, 0]),
        (2, [3, 9, 21], 7, [3, 4], [1, 1], [1, 2]),
        (2, [2, 5, 17], 8, [3, 2], [1, 1], [0, 0]),
        (1, [2, 4, 16], 13, [3, 3], [1, 1], [1, 1]),
        (2, [5, 3, 3], 1, [3, 3], [1, 1], [0, 0]),
        (3, [1, 6, 15], 2, [1, 3], [1, 1], [0, 1]),
        (2, [2, 4, 5], 3, [2, 2], [1, 1], [2, 2]),
    ];
    for (i, case) in cases.iter().enumerate() {
        assert!(direct::applies(&geom(case)), "{case:?}");
        check_against_naive(case, &[case.0, 5], 30 + i as u64);
    }
    assert!(!direct::handles_all(&geom(&cases[8])));
}

/// The direct kernels compiled for AVX2 (one tap at a time in the weight gradient) and
/// without either instruction set, where the CPU running the tests has them.
#[test]
fn direct_kernels_on_every_instruction_set() {
    let cases: &[Case] = &[
        (2, [1, 28, 28], 6, [5, 5], [1, 1], [2, 2]),
        (2, [6, 14, 14], 16, [5, 5], [1, 1], [0, 0]),
        (2, [3, 9, 21], 7, [3, 4], [1, 1], [1, 2]),
    ];
    for ceiling in [Isa::Avx2Fma, Isa::Plain] {
        with_ceiling(ceiling, || {
            for (i, case) in cases.iter().enumerate() {
                check_against_naive(case, &[case.0], 60 + i as u64);
            }
        });
    }
}

/// Batches of several samples through the packed products, on one thread and two (tasks
/// of different sizes), with stride 1 and 2.
#[test]
fn packed_batches_match_naive() {
    let cases: &[Case] = &[
        (7, [2, 30, 30], 33, [3, 3], [1, 1], [1, 1]),
        (7, [3, 61, 59], 20, [3, 3], [2, 2], [1, 1]),
    ];
    for (i, case) in cases.iter().enumerate() {
        let g = geom(case);
        assert!(!direct::applies(&g));
        check_against_naive(case, &[7, 4], 40 + i as u64);
    }
    crate::ops::parallel::with_threads(2, || check_against_naive(&cases[0], &[7], 42));
}

/// 300 random geometries (channels, sizes, kernels, strides 1-4, padding 0-2, batches 0-3;
/// some with more taps than `packed::KC`),
/// every path among them (direct kernels, packed products, the input gradient as a forward
/// pass or folded back), forward and backward against the reference; a third of them also
/// on the plain build.
#[test]
fn random_geometries_match_naive() {
    use rand::Rng;
    let mut r = rng(97);
    let mut checked = 0;
    while checked < 300 {
        // Now and then enough channels for more taps than one block of packed rows.
        let c = if r.random_bool(0.2) {
            r.random_range(40..60)
        } else {
            r.random_range(1..6)
        };
        let input = [c, r.random_range(1..14), r.random_range(1..14)];
        let kernel = [r.random_range(1..6), r.random_range(1..6)];
        let stride = [r.random_range(1..5), r.random_range(1..5)];
        let pad = [r.random_range(0..3), r.random_range(0..3)];
        let out_c = if r.random_bool(0.5) {
            r.random_range(1..17)
        } else {
            r.random_range(17..30)
        };
        let Ok(g) = Conv2dGeom::try_new(input, out_c, kernel, stride, pad, Rounding::Floor) else {
            continue;
        };
        let case: Case = (r.random_range(0..4), input, out_c, kernel, stride, pad);
        assert_eq!(geom(&case), g);
        let ceiling = if checked % 3 == 0 {
            Isa::Plain
        } else {
            Isa::Avx512
        };
        with_ceiling(ceiling, || {
            check_against_naive(&case, &[case.0], 1000 + checked)
        });
        checked += 1;
    }
}

/// A single sample's output channels split over two and three threads give the bits of
/// one thread (three and two panels of rows, for AVX-512's 12-row panels, so that parts
/// are uneven or empty where there are fewer panels than threads).
#[test]
fn channel_split_gives_the_same_bits() {
    let cases: &[Case] = &[
        (1, [3, 35, 35], 30, [11, 11], [4, 4], [0, 0]),
        (1, [5, 9, 9], 17, [3, 3], [1, 1], [1, 1]),
        (1, [4, 8, 8], 20, [1, 1], [1, 1], [0, 0]),
    ];
    let mut r = rng(95);
    for case in cases {
        let g = geom(case);
        let x = uniform(&mut r, g.in_len());
        let w = uniform(&mut r, g.weight_len());
        let b = uniform(&mut r, g.out_c);
        let mut one = vec![f32::NAN; g.out_len()];
        forward(&mut one, &x, &w, Some(&b), &g, 1, &mut Vec::new());
        let mut naive = vec![f32::NAN; g.out_len()];
        forward_naive(&mut naive, &x, &w, Some(&b), &g, 1);
        assert_close(&format!("{g:?}"), &one, &naive, 1e-5);
        for threads in [2, 3] {
            let mut split = vec![f32::NAN; g.out_len()];
            crate::ops::parallel::with_threads(threads, || {
                assert!(implicit::channel_parts(&g, Isa::current(), threads) > 1);
                forward(&mut split, &x, &w, Some(&b), &g, 1, &mut Vec::new());
            });
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&split), bits(&one), "{g:?} threads {threads}");
        }
    }
}

/// An input gradient too large to unfold at once is computed and folded back a few
/// output rows at a time (here 10 and 6), with stride 1 and with stride 2 and padding.
#[test]
fn input_gradient_in_parts_matches_naive() {
    let cases: &[Case] = &[
        (1, [32, 20, 20], 17, [5, 5], [1, 1], [0, 0]),
        (2, [32, 41, 39], 18, [5, 5], [2, 2], [2, 1]),
    ];
    for (i, case) in cases.iter().enumerate() {
        let g = geom(case);
        assert!(implicit::input_gradient_geometry(&g).is_none());
        assert!(implicit::fold_rows(&g) < g.out_h);
        assert!(!g.out_h.is_multiple_of(implicit::fold_rows(&g)));
        check_against_naive(case, &[case.0], 90 + i as u64);
    }
}

/// Layers with more output channels than the direct kernels take, stride 1 and at least 16×16
/// outputs: the packed products do the forward pass and the input gradient, the direct
/// kernels the weight gradient (3×3 with padding 1 as in ResNet, rows of taps of 1 to 4,
/// widths that are not whole runs of lanes), on every instruction set the CPU has. And
/// 17 to 32 channels on rows of at least 16 outputs, where the direct kernels do it all.
#[test]
fn direct_weight_gradient_beside_packed_products() {
    for case in [
        (2, [5, 16, 16], 20, [3, 3], [1, 1], [1, 1]),
        (1, [4, 5, 17], 32, [3, 3], [1, 1], [1, 1]),
    ] {
        let g = geom(&case);
        assert!(direct::applies(&g) && direct::handles_all(&g), "{case:?}");
        check_against_naive(&case, &[case.0], 120);
    }
    let cases: &[Case] = &[
        (2, [5, 18, 18], 40, [3, 3], [1, 1], [1, 1]),
        (1, [3, 17, 19], 33, [2, 5], [1, 1], [0, 2]),
        (3, [2, 18, 17], 34, [4, 1], [1, 1], [1, 0]),
    ];
    for ceiling in [Isa::Avx512, Isa::Avx2Fma, Isa::Plain] {
        with_ceiling(ceiling, || {
            for (i, case) in cases.iter().enumerate() {
                let g = geom(case);
                assert!(
                    !direct::applies(&g) && direct::takes_weights(&g),
                    "{case:?}"
                );
                check_against_naive(case, &[case.0], 110 + i as u64);
            }
        });
    }
}

/// The packed forward pass on every instruction set the CPU has: strides 1 to 5 (phase
/// splits of 1 to 5 phases, padded widths they do not divide), the sample used as it is
/// (stride 1, no padding), more taps than one block of `B` rows (`packed::KC`), output
/// rows of 1 and of fewer positions than a block of columns (many pieces per block), more
/// output channels than a register tile, and an AlexNet conv1 in miniature.
#[test]
fn packed_forward_on_every_instruction_set() {
    let cases: &[Case] = &[
        (2, [3, 35, 35], 20, [11, 11], [4, 4], [0, 0]),
        (2, [45, 6, 7], 25, [3, 3], [1, 1], [1, 1]),
        (1, [31, 9, 5], 19, [3, 3], [1, 1], [0, 0]),
        (3, [2, 13, 11], 17, [5, 4], [3, 2], [2, 1]),
        (2, [4, 8, 30], 33, [2, 7], [2, 3], [0, 3]),
        (1, [5, 7, 1], 18, [3, 1], [1, 1], [1, 0]),
        (2, [3, 10, 10], 17, [1, 1], [1, 1], [0, 0]),
        (1, [2, 17, 23], 19, [3, 7], [2, 5], [1, 2]),
    ];
    for ceiling in [Isa::Avx512, Isa::Avx2Fma, Isa::Plain] {
        with_ceiling(ceiling, || {
            for (i, case) in cases.iter().enumerate() {
                assert!(!direct::applies(&geom(case)), "{case:?}");
                check_against_naive(case, &[case.0], 70 + i as u64);
            }
        });
    }
    assert!(geom(&cases[1]).col_rows() > crate::ops::packed::KC);
    // Input gradients both ways: as a forward pass, and folded back.
    assert!(implicit::input_gradient_geometry(&geom(&cases[1])).is_some());
    assert!(implicit::input_gradient_geometry(&geom(&cases[6])).is_some());
    assert!(implicit::input_gradient_geometry(&geom(&cases[2])).is_none());
    assert!(implicit::input_gradient_geometry(&geom(&cases[0])).is_none());
}

/// `L = Σ r ⊙ forward(x, w, b)`, differentiated numerically in `x`, `w` and `b`.
#[test]
fn backward_matches_finite_differences() {
    let mut r = rng(3);
    let mut scratch = Vec::new();
    for case in [CASES[3], CASES[4], CASES[2], CASES[7]] {
        let (g, n) = (geom(&case), case.0);
        let x = uniform(&mut r, n * g.in_len());
        let w = uniform(&mut r, g.weight_len());
        let b = uniform(&mut r, g.out_c);
        let weights = uniform(&mut r, n * g.out_len());
        let (mut d_x, mut d_w, mut d_b) =
            (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
        backward(
            Some(&mut d_x),
            &mut d_w,
            Some(&mut d_b),
            &weights,
            &x,
            &w,
            &g,
            n,
            &mut scratch,
        );
        let mut y = vec![0.0; n * g.out_len()];
        let mut loss = |x: &[f32], w: &[f32], b: &[f32]| {
            forward(&mut y, x, w, Some(b), &g, n, &mut scratch);
            dot(&weights, &y)
        };
        check_gradient("d_x", &x, &d_x, 1e-2, 1e-2, |v| loss(v, &w, &b));
        check_gradient("d_w", &w, &d_w, 1e-2, 1e-2, |v| loss(&x, v, &b));
        check_gradient("d_b", &b, &d_b, 1e-2, 1e-2, |v| loss(&x, &w, v));
    }
}

/// Zero padding, by hand: a 2×2 box filter over `[[1, 2], [3, 4]]` padded by one.
#[test]
fn padded_box_filter() {
    let g = Conv2dGeom::new([1, 2, 2], 1, [2, 2], [1, 1], [1, 1], Rounding::Exact);
    let mut y = [f32::NAN; 9];
    forward(
        &mut y,
        &[1.0, 2.0, 3.0, 4.0],
        &[1.0; 4],
        None,
        &g,
        1,
        &mut Vec::new(),
    );
    assert_eq!(y, [1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0]);
}

/// Once `scratch` has grown, neither pass reallocates it (the direct kernels and the
/// packed products).
#[test]
fn warm_scratch_is_not_reallocated() {
    for case in [
        CASES[4],
        CASES[8],
        (2, [1, 28, 28], 6, [5, 5], [1, 1], [2, 2]),
        (2, [48, 7, 9], 49, [3, 3], [1, 1], [1, 1]),
    ] {
        let (g, n) = (geom(&case), 2);
        let x = vec![0.5; n * g.in_len()];
        let w = vec![0.25; g.weight_len()];
        let mut y = vec![0.0; n * g.out_len()];
        let (mut d_x, mut d_w) = (vec![0.0; x.len()], vec![0.0; w.len()]);
        assert_scratch_reused(|scratch| {
            forward(&mut y, &x, &w, None, &g, n, scratch);
            backward(Some(&mut d_x), &mut d_w, None, &y, &x, &w, &g, n, scratch);
        });
    }
}

/// The Winograd path (3×3, stride 1, padding 1, at least 48 channels each way): batches 0,
/// 1 and odd ones, sizes 1×1, heights and widths off the 4×4 tiles (tiles cut off by the
/// edge), channel counts off the register tile, batches of several chunks (8×8 samples of 48
/// channels go 14 to a product), on every instruction set, on one thread and on three (tasks
/// of one sample, of several, of several chunks). The tolerance is relative to the largest
/// value of each result, 2e-5 of it: F(4×4, 3×3) rounds the transformed sums, which are up to
/// 25 times the inputs, so its error follows the size of the terms rather than of each sum
/// (a sum near zero among large ones is off by about 1e-4 with 48 channels of values in ±1,
/// which a tolerance relative to each value, the packed products', does not take).
#[test]
fn winograd_matches_naive() {
    let cases: &[Case] = &[
        (0, [48, 5, 5], 48, [3, 3], [1, 1], [1, 1]),
        (1, [48, 1, 1], 48, [3, 3], [1, 1], [1, 1]),
        (3, [49, 3, 5], 50, [3, 3], [1, 1], [1, 1]),
        (2, [48, 7, 9], 61, [3, 3], [1, 1], [1, 1]),
        (1, [64, 2, 13], 48, [3, 3], [1, 1], [1, 1]),
        (17, [48, 8, 8], 49, [3, 3], [1, 1], [1, 1]),
        (1, [48, 17, 16], 48, [3, 3], [1, 1], [1, 1]),
    ];
    for (i, case) in cases.iter().enumerate() {
        assert!(winograd::applies(&geom(case)), "{case:?}");
        crate::ops::test_util::on_every_isa(|_| {
            check_against_naive_with(case, &[case.0], 70 + i as u64, assert_scaled);
        });
        crate::ops::parallel::with_threads(3, || {
            check_against_naive_with(case, &[case.0, 31], 80 + i as u64, assert_scaled);
        });
    }
    // One sample over the chunk's cache budget: chunks of two samples (`MIN_TILES`), here a
    // whole one and a part, and at 2 threads one sample and one chunk. Its reference is slow,
    // so once each.
    let large: Case = (3, [48, 36, 36], 48, [3, 3], [1, 1], [1, 1]);
    assert_eq!(winograd::chunk(&geom(&large)), 2);
    check_against_naive_with(&large, &[large.0], 90, assert_scaled);
    crate::ops::parallel::with_threads(2, || {
        check_against_naive_with(&large, &[large.0], 91, assert_scaled);
    });
    // One channel short either way takes the other paths.
    for (c, o) in [(47, 48), (48, 47)] {
        let g = Conv2dGeom::new([c, 8, 8], o, [3, 3], [1, 1], [1, 1], Rounding::Floor);
        assert!(!winograd::applies(&g));
    }
}

/// Asserts `|a - b| <= 2e-5 · L · max(1, |b|)` element by element, `L = max(1, max |b|)`.
#[track_caller]
fn assert_scaled(what: &str, a: &[f32], b: &[f32]) {
    let largest = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    assert_close(what, a, b, 2e-5 * largest);
}

/// The Winograd path against the reference at the size of ResNet-20's `64 → 64` layers
/// (two samples), with the values of a trained layer's scale: inputs after batch norm and
/// ReLU (in [0, 3)), weights in ±1/√fan-in. The largest error relative to the largest output
/// is what the tolerance of the parity tests has to take.
#[test]
fn winograd_error_at_resnet_size() {
    let case = (2, [64, 8, 8], 64, [3, 3], [1, 1], [1, 1]);
    let g = geom(&case);
    let mut r = rng(91);
    let x: Vec<f32> = uniform(&mut r, 2 * g.in_len())
        .iter()
        .map(|v| 1.5 * (v + 1.0))
        .collect();
    let bound = 1.0 / (g.col_rows() as f32).sqrt();
    let w: Vec<f32> = uniform(&mut r, g.weight_len())
        .iter()
        .map(|v| v * bound)
        .collect();
    let (mut fast, mut naive) = (
        vec![f32::NAN; 2 * g.out_len()],
        vec![f32::NAN; 2 * g.out_len()],
    );
    forward(&mut fast, &x, &w, None, &g, 2, &mut Vec::new());
    forward_naive(&mut naive, &x, &w, None, &g, 2);
    let largest = naive.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let error = fast
        .iter()
        .zip(&naive)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        error <= 1e-5 * largest,
        "error {error} against outputs up to {largest}"
    );
}

/// Property tests (proptest): random geometries, fast kernels against the reference, forward
/// and backward, on every instruction set, on one thread and two. 256 cases by default,
/// `PROPTEST_CASES` cases when set.
mod properties {
    use super::*;
    use crate::ops::test_util::{on_every_isa, property_cases};
    use proptest::prelude::*;

    /// `(n, [C, H, W], O, [KH, KW], [SH, SW], [PH, PW])` with a valid floor-rounded geometry:
    /// sizes from 1, rectangular kernels, strides up to 12 and pads up to 4 (windows wholly in
    /// the padding among them), sometimes enough channels for more taps than a packed block,
    /// and output channels on both sides of the direct kernels' 16.
    fn cases() -> impl Strategy<Value = Case> {
        (
            0..4usize,
            prop_oneof![4 => 1..6usize, 1 => 40..50usize],
            (1..14usize, 1..14usize),
            prop_oneof![1..17usize, 17..30usize],
            (1..6usize, 1..6usize),
            prop_oneof![3 => (1..4usize, 1..4usize), 1 => (1..13usize, 1..13usize)],
            (0..5usize, 0..5usize),
        )
            .prop_filter_map("the kernel does not fit", |(n, c, (h, w), o, k, s, p)| {
                let case: Case = (n, [c, h, w], o, [k.0, k.1], [s.0, s.1], [p.0, p.1]);
                let (_, input, out_c, kernel, stride, pad) = case;
                Conv2dGeom::try_new(input, out_c, kernel, stride, pad, Rounding::Floor)
                    .ok()
                    .map(|_| case)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(property_cases(256)))]

        #[test]
        fn fast_kernels_equal_the_reference(case in cases(), seed in 0..1000u64, two in any::<bool>()) {
            on_every_isa(|_| {
                if two {
                    crate::ops::parallel::with_threads(2, || check_against_naive(&case, &[case.0], seed));
                } else {
                    check_against_naive(&case, &[case.0], seed);
                }
            });
        }
    }
}

/// What a tape reserves for the layer ([`scratch_needed`]) is all the kernels grow to, on
/// every case and instruction set, so that a reserved tape's passes allocate nothing (the
/// Winograd path's among them).
#[test]
fn scratch_needed_covers_forward_and_backward() {
    let mut r = rng(12);
    let winograd = (3, [48, 7, 9], 49, [3, 3], [1, 1], [1, 1]);
    for case in CASES.iter().chain([&winograd]) {
        let (g, n) = (geom(case), case.0);
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

/// The input gradient alone checks its lengths on both of its paths.
#[test]
fn backward_input_checks_lengths() {
    for case in [&CASES[3], &(1, [1, 28, 28], 6, [5, 5], [1, 1], [2, 2])] {
        let g = geom(case);
        assert_eq!(direct::handles_all(&g), case.1 == [1, 28, 28]);
        let (mut d_x, d_y) = (vec![0.0; g.in_len()], vec![0.0; g.out_len()]);
        let err = std::panic::catch_unwind(move || {
            backward_input(&mut d_x, &d_y, &[0.0; 3], &g, 1, &mut Vec::new())
        })
        .unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("w has 3 values"), "{msg}");
    }
}
