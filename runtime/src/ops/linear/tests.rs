//! The linear layer's kernels against the reference versions, each other and finite
//! differences.

use super::reference::{backward_naive, forward_naive};
use super::*;
use crate::ops::isa::with_ceiling;
use crate::ops::test_util::{
    assert_close, assert_scratch_reused, check_gradient, dot, rng, uniform,
};

/// `(n, in_f, out_f)`: batch 0 and 1, odd sizes, sizes off any kernel tile.
const CASES: &[(usize, usize, usize)] = &[
    (0, 4, 3),
    (1, 1, 1),
    (1, 7, 5),
    (3, 5, 2),
    (17, 33, 10),
    (8, 120, 84),
    (1, 400, 120),
    (4, 15, 3),
    (5, 31, 7),
    (7, 40, 9),
    (16, 50, 6),
    (8, 50, 6),
    (2, 9, 4),
];

#[test]
fn forward_matches_naive() {
    let mut r = rng(20);
    let mut scratch = Vec::new();
    for &(n, in_f, out_f) in CASES {
        let g = LinearGeom { in_f, out_f };
        let x = uniform(&mut r, n * in_f);
        let w = uniform(&mut r, g.weight_len());
        let b = uniform(&mut r, out_f);
        for bias in [None, Some(&b[..])] {
            let mut y = vec![f32::NAN; n * out_f];
            let mut expected = vec![f32::NAN; n * out_f];
            forward(&mut y, &x, &w, bias, &g, n, &mut scratch);
            forward_naive(&mut expected, &x, &w, bias, &g, n);
            assert_close(&format!("y {g:?}"), &y, &expected, 1e-5);
        }
    }
}

/// The dot products compiled for AVX2 and without either instruction set, where the
/// CPU running the tests has them.
#[test]
fn dot_products_on_every_instruction_set() {
    let mut r = rng(23);
    let mut scratch = Vec::new();
    for ceiling in [Isa::Avx2Fma, Isa::Plain] {
        with_ceiling(ceiling, || {
            for &(n, in_f, out_f) in CASES.iter().filter(|c| c.0 <= MAX_DOT_ROWS) {
                let g = LinearGeom { in_f, out_f };
                let x = uniform(&mut r, n * in_f);
                let w = uniform(&mut r, g.weight_len());
                let b = uniform(&mut r, out_f);
                let mut y = vec![f32::NAN; n * out_f];
                let mut expected = vec![f32::NAN; n * out_f];
                forward(&mut y, &x, &w, Some(&b), &g, n, &mut scratch);
                forward_naive(&mut expected, &x, &w, Some(&b), &g, n);
                assert_close(&format!("y {g:?} {ceiling:?}"), &y, &expected, 1e-5);
            }
        });
    }
}

/// Up to [`MAX_DOT_ROWS`] rows, the dot products give the packed product's results to the
/// bit, so a network's outputs do not depend on which path its batch size takes (in_f 400
/// and 800: more than one block of `packed::KC` products), on every instruction set.
#[test]
fn dot_products_equal_the_packed_product() {
    let mut r = rng(24);
    let mut scratch = Vec::new();
    for ceiling in [Isa::Avx512, Isa::Avx2Fma, Isa::Plain, Isa::Generic] {
        with_ceiling(ceiling, || {
            let isa = Isa::current();
            for (in_f, out_f) in [(400, 120), (800, 13), (120, 84), (5, 3)] {
                let g = LinearGeom { in_f, out_f };
                for n in 1..=MAX_DOT_ROWS {
                    let x = uniform(&mut r, n * in_f);
                    let w = uniform(&mut r, g.weight_len());
                    let b = uniform(&mut r, out_f);
                    for bias in [None, Some(&b[..])] {
                        let mut dot = vec![f32::NAN; n * out_f];
                        let mut gemm = vec![f32::NAN; n * out_f];
                        forward(&mut dot, &x, &w, bias, &g, n, &mut scratch);
                        forward_packed(&mut gemm, &x, &w, bias, &g, n, (isa, 1), &mut scratch);
                        let what = format!("{g:?} n {n} {isa:?}");
                        if isa == Isa::Generic {
                            // matrixmultiply orders its sums its own way: f32 sums of
                            // `in_f` products, rounding growing like its square root.
                            assert_close(&what, &dot, &gemm, 4e-6 * (in_f as f32).sqrt());
                        } else {
                            let bits =
                                |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                            assert_eq!(bits(&dot), bits(&gemm), "{what}");
                        }
                    }
                }
            }
        });
    }
}

/// Batches above [`MAX_DOT_ROWS`] but under [`MAX_LOOP_MACS`] do not pack; larger ones
/// do: both against the reference, and the small forward path equal to the packed product
/// to the bit.
#[test]
fn small_and_large_paths() {
    let mut r = rng(25);
    // Also the plain builds, on a machine that has AVX2 and FMA.
    for ceiling in [Isa::Avx512, Isa::Plain, Isa::Generic] {
        with_ceiling(ceiling, || small_and_large_paths_at(&mut r));
    }
}

fn small_and_large_paths_at(r: &mut rand_xoshiro::Xoshiro256PlusPlus) {
    let mut scratch = Vec::new();
    for (n, in_f, out_f) in [(9, 400, 120), (32, 400, 120), (33, 7, 3), (100, 300, 160)] {
        let g = LinearGeom { in_f, out_f };
        assert_eq!(small(&g, n), n * in_f * out_f <= MAX_LOOP_MACS);
        let x = uniform(r, n * in_f);
        let w = uniform(r, g.weight_len());
        let b = uniform(r, out_f);
        let d_y = uniform(r, n * out_f);
        let mut y = vec![f32::NAN; n * out_f];
        let mut expected = vec![f32::NAN; n * out_f];
        forward(&mut y, &x, &w, Some(&b), &g, n, &mut scratch);
        forward_naive(&mut expected, &x, &w, Some(&b), &g, n);
        assert_close(&format!("y {g:?} n {n}"), &y, &expected, 1e-4);
        let mut gemm = vec![f32::NAN; n * out_f];
        forward_packed(
            &mut gemm,
            &x,
            &w,
            Some(&b),
            &g,
            n,
            (Isa::current(), 1),
            &mut scratch,
        );
        if Isa::current() == Isa::Generic {
            // matrixmultiply orders its sums its own way.
            assert_close(
                &format!("{g:?} n {n}"),
                &y,
                &gemm,
                4e-6 * (in_f as f32).sqrt(),
            );
        } else {
            assert_eq!(y, gemm, "{g:?} n {n}");
        }
        let start_w = uniform(r, g.weight_len());
        let start_x = uniform(r, n * in_f);
        let (mut d_w, mut d_x) = (start_w.clone(), start_x.clone());
        let (mut e_w, mut e_x) = (start_w, start_x);
        backward(
            Some(&mut d_x),
            &mut d_w,
            None,
            &d_y,
            &x,
            &w,
            &g,
            n,
            &mut scratch,
        );
        backward_naive(Some(&mut e_x), &mut e_w, None, &d_y, &x, &w, &g, n);
        assert_close(&format!("d_w {g:?} n {n}"), &d_w, &e_w, 1e-4);
        assert_close(&format!("d_x {g:?} n {n}"), &d_x, &e_x, 1e-4);
    }
}

/// 150 random layers and batches, every path among them (dot products, the loops without
/// packing, the packed products), forward and backward against the reference.
#[test]
fn random_layers_match_naive() {
    use rand::Rng;
    let mut r = rng(27);
    let mut scratch = Vec::new();
    let mut packed = 0;
    for _ in 0..150 {
        let (n, in_f, out_f) = (
            r.random_range(0..70),
            r.random_range(1..700),
            r.random_range(1..220),
        );
        let g = LinearGeom { in_f, out_f };
        packed += usize::from(n > MAX_DOT_ROWS && !small(&g, n));
        let x = uniform(&mut r, n * in_f);
        let w = uniform(&mut r, g.weight_len());
        let b = uniform(&mut r, out_f);
        let d_y = uniform(&mut r, n * out_f);
        let mut y = vec![f32::NAN; n * out_f];
        let mut want = vec![f32::NAN; n * out_f];
        forward(&mut y, &x, &w, Some(&b), &g, n, &mut scratch);
        forward_naive(&mut want, &x, &w, Some(&b), &g, n);
        assert_close(&format!("y {g:?} n {n}"), &y, &want, 1e-4);
        let (mut d_x, mut d_w, mut d_b) =
            (vec![0.5; x.len()], vec![0.25; w.len()], vec![0.0; out_f]);
        let (mut e_x, mut e_w, mut e_b) = (d_x.clone(), d_w.clone(), d_b.clone());
        let (dx, dw, db) = (&mut d_x[..], &mut d_w[..], &mut d_b[..]);
        backward(Some(dx), dw, Some(db), &d_y, &x, &w, &g, n, &mut scratch);
        backward_naive(
            Some(&mut e_x),
            &mut e_w,
            Some(&mut e_b),
            &d_y,
            &x,
            &w,
            &g,
            n,
        );
        assert_close(&format!("d_x {g:?} n {n}"), &d_x, &e_x, 1e-4);
        assert_close(&format!("d_w {g:?} n {n}"), &d_w, &e_w, 1e-4);
        assert_close(&format!("d_b {g:?} n {n}"), &d_b, &e_b, 1e-4);
    }
    assert!(packed > 10, "only {packed} layers took the packed products");
}

/// One sample's outputs split over two and three threads give the bits of one thread.
#[test]
fn output_split_gives_the_same_bits() {
    let mut r = rng(26);
    for (in_f, out_f) in [(400, 120), (4096, 9), (64, 1000)] {
        let g = LinearGeom { in_f, out_f };
        assert!(g.weight_len() >= MIN_SPLIT_WEIGHTS);
        let x = uniform(&mut r, in_f);
        let w = uniform(&mut r, g.weight_len());
        let b = uniform(&mut r, out_f);
        let mut one = vec![f32::NAN; out_f];
        forward(&mut one, &x, &w, Some(&b), &g, 1, &mut Vec::new());
        let mut naive = vec![f32::NAN; out_f];
        forward_naive(&mut naive, &x, &w, Some(&b), &g, 1);
        assert_close(&format!("{g:?}"), &one, &naive, 1e-4);
        for threads in [2, 3] {
            let mut split = vec![f32::NAN; out_f];
            crate::ops::parallel::with_threads(threads, || {
                forward(&mut split, &x, &w, Some(&b), &g, 1, &mut Vec::new());
            });
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&split), bits(&one), "{g:?} threads {threads}");
        }
    }
}

/// Once `scratch` has grown, the packed paths do not reallocate it.
#[test]
fn warm_scratch_is_not_reallocated() {
    let (g, n) = (
        LinearGeom {
            in_f: 300,
            out_f: 160,
        },
        100,
    );
    assert!(!small(&g, n));
    let x = vec![0.5; n * g.in_f];
    let w = vec![0.25; g.weight_len()];
    let mut y = vec![0.0; n * g.out_f];
    let (mut d_x, mut d_w) = (vec![0.0; x.len()], vec![0.0; w.len()]);
    assert_scratch_reused(|scratch| {
        forward(&mut y, &x, &w, None, &g, n, scratch);
        backward(Some(&mut d_x), &mut d_w, None, &y, &x, &w, &g, n, scratch);
    });
}

/// Gradients start from random values, so the test also checks that both versions add.
#[test]
fn backward_matches_naive() {
    let mut r = rng(21);
    let mut scratch = Vec::new();
    for &(n, in_f, out_f) in CASES {
        let g = LinearGeom { in_f, out_f };
        let x = uniform(&mut r, n * in_f);
        let w = uniform(&mut r, g.weight_len());
        let d_y = uniform(&mut r, n * out_f);
        let (d_x0, d_w0, d_b0) = (
            uniform(&mut r, x.len()),
            uniform(&mut r, w.len()),
            uniform(&mut r, out_f),
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
            assert_close(&format!("d_x {g:?}"), &d_x, &e_x, 1e-5);
            assert_close(&format!("d_w {g:?}"), &d_w, &e_w, 1e-5);
            assert_close(&format!("d_b {g:?}"), &d_b, &e_b, 1e-5);
            if !with_optional {
                assert_eq!((d_x, d_b), (d_x0.clone(), d_b0.clone()));
            }
        }
        // The input gradient alone (a frozen layer's) has the same bits as `backward`'s.
        let d_w = d_w0.clone();
        crate::ops::test_util::assert_input_gradient_alone(
            &format!("{g:?}"),
            &d_x0,
            &mut scratch,
            |d_x, s| backward(Some(d_x), &mut d_w.clone(), None, &d_y, &x, &w, &g, n, s),
            |d_x, s| backward_input(d_x, &d_y, &w, &g, n, s),
        );
    }
}

#[test]
#[should_panic(expected = "linear::backward_input: d_y has 3 values, expected 8 (n = 2 x [4])")]
fn backward_input_checks_lengths() {
    let g = LinearGeom { in_f: 3, out_f: 4 };
    backward_input(&mut [0.0; 6], &[0.0; 3], &[0.0; 12], &g, 2, &mut Vec::new());
}

/// `L = Σ r ⊙ forward(x, w, b)`, differentiated numerically in `x`, `w` and `b`.
#[test]
fn backward_matches_finite_differences() {
    let mut r = rng(22);
    let mut scratch = Vec::new();
    for &(n, in_f, out_f) in &CASES[1..5] {
        let g = LinearGeom { in_f, out_f };
        let x = uniform(&mut r, n * in_f);
        let w = uniform(&mut r, g.weight_len());
        let b = uniform(&mut r, out_f);
        let weights = uniform(&mut r, n * out_f);
        let (mut d_x, mut d_w, mut d_b) =
            (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; out_f]);
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
        let mut y = vec![0.0; n * out_f];
        let mut loss = |x: &[f32], w: &[f32], b: &[f32]| {
            forward(&mut y, x, w, Some(b), &g, n, &mut scratch);
            dot(&weights, &y)
        };
        check_gradient("d_x", &x, &d_x, 1e-2, 1e-2, |v| loss(v, &w, &b));
        check_gradient("d_w", &w, &d_w, 1e-2, 1e-2, |v| loss(&x, v, &b));
        check_gradient("d_b", &b, &d_b, 1e-2, 1e-2, |v| loss(&x, &w, v));
    }
}

/// Property tests (proptest): random layers (batches 0-69 across the dot-product, loop and
/// packed paths; features from 1), forward and backward against the reference, on every
/// instruction set, on one thread and two. 256 cases by default,
/// `PROPTEST_CASES` cases when set.
mod properties {
    use super::*;
    use crate::ops::test_util::{on_every_isa, property_cases};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(property_cases(256)))]

        #[test]
        fn fast_kernels_equal_the_reference(
            n in prop_oneof![0..9usize, 9..70usize],
            in_f in prop_oneof![1..40usize, 40..700usize],
            out_f in prop_oneof![1..17usize, 17..220usize],
            seed in 0..1000u64,
            two in any::<bool>(),
        ) {
            let g = LinearGeom { in_f, out_f };
            let mut r = rng(seed);
            let x = uniform(&mut r, n * in_f);
            let w = uniform(&mut r, g.weight_len());
            let b = uniform(&mut r, out_f);
            let d_y = uniform(&mut r, n * out_f);
            let mut want = vec![f32::NAN; n * out_f];
            forward_naive(&mut want, &x, &w, Some(&b), &g, n);
            let (mut e_x, mut e_w, mut e_b) = (vec![0.5; x.len()], vec![0.25; w.len()], vec![0.0; out_f]);
            backward_naive(Some(&mut e_x), &mut e_w, Some(&mut e_b), &d_y, &x, &w, &g, n);
            let threads = if two { 2 } else { 1 };
            on_every_isa(|isa| crate::ops::parallel::with_threads(threads, || {
                let mut scratch = Vec::new();
                let mut y = vec![f32::NAN; n * out_f];
                forward(&mut y, &x, &w, Some(&b), &g, n, &mut scratch);
                assert_close(&format!("y {g:?} n {n} {isa:?}"), &y, &want, 1e-4);
                let (mut d_x, mut d_w, mut d_b) = (vec![0.5; x.len()], vec![0.25; w.len()], vec![0.0; out_f]);
                let (dx, dw, db) = (&mut d_x[..], &mut d_w[..], &mut d_b[..]);
                backward(Some(dx), dw, Some(db), &d_y, &x, &w, &g, n, &mut scratch);
                assert_close(&format!("d_x {g:?} n {n} {isa:?}"), &d_x, &e_x, 1e-4);
                assert_close(&format!("d_w {g:?} n {n} {isa:?}"), &d_w, &e_w, 1e-4);
                assert_close(&format!("d_b {g:?} n {n} {isa:?}"), &d_b, &e_b, 1e-4);
            }));
        }
    }
}

/// What a tape reserves for the layer ([`scratch_needed`]) is all the kernels grow to, on the
/// cases above (none: they take the loops) and on layers large enough for the packed
/// products, at every instruction set.
#[test]
fn scratch_needed_covers_forward_and_backward() {
    let mut r = rng(13);
    let large = [
        (64, 300, 400),
        (9, 800, 700),
        (1, 4096, 1200),
        (3, 2000, 1000),
    ];
    for &(n, in_f, out_f) in CASES.iter().chain(&large) {
        let g = LinearGeom { in_f, out_f };
        let (x, w) = (uniform(&mut r, n * in_f), uniform(&mut r, g.weight_len()));
        let what = format!("{g:?} at batch {n}");
        crate::ops::test_util::assert_scratch_within(
            &what,
            || scratch_needed(&g, n),
            |s| {
                let mut y = vec![0.0; n * out_f];
                forward(&mut y, &x, &w, None, &g, n, s);
                let (mut d_x, mut d_w) = (vec![0.0; x.len()], vec![0.0; w.len()]);
                backward(Some(&mut d_x), &mut d_w, None, &y, &x, &w, &g, n, s);
                backward_input(&mut d_x, &y, &w, &g, n, s);
            },
        );
    }
}

/// A batch whose packed products are split over the threads by outputs (and, for the input
/// gradient, by inputs) gives the same bits at every thread count, on every instruction set,
/// and needs no more scratch than [`scratch_needed`] says at that count.
#[test]
fn products_split_over_threads_give_the_same_bits() {
    let mut r = rng(27);
    // 16 × 1100 × 1000 = 17.6 M multiply-adds, above the split's threshold; widths off the
    // register tiles, so that the parts end mid-tile.
    let (n, in_f, out_f) = (16, 1100, 1000);
    let g = LinearGeom { in_f, out_f };
    assert!(n * g.weight_len() >= MIN_SPLIT_MACS);
    let x = uniform(&mut r, n * in_f);
    let w = uniform(&mut r, g.weight_len());
    let b = uniform(&mut r, out_f);
    let d_y = uniform(&mut r, n * out_f);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    crate::ops::test_util::on_every_isa(|isa| {
        let run = |threads: usize| {
            crate::ops::parallel::with_threads(threads, || {
                let mut scratch = Vec::new();
                let mut y = vec![f32::NAN; n * out_f];
                forward(&mut y, &x, &w, Some(&b), &g, n, &mut scratch);
                let (mut d_x, mut d_w, mut d_b) =
                    (vec![0.5; x.len()], vec![0.25; w.len()], vec![0.0; out_f]);
                backward(
                    Some(&mut d_x),
                    &mut d_w,
                    Some(&mut d_b),
                    &d_y,
                    &x,
                    &w,
                    &g,
                    n,
                    &mut scratch,
                );
                assert!(
                    scratch.len() <= scratch_needed(&g, n),
                    "{isa:?} threads {threads}: scratch grew to {}, reserved {}",
                    scratch.len(),
                    scratch_needed(&g, n)
                );
                (bits(&y), bits(&d_x), bits(&d_w), bits(&d_b))
            })
        };
        let one = run(1);
        let mut want = vec![f32::NAN; n * out_f];
        forward_naive(&mut want, &x, &w, Some(&b), &g, n);
        let y1: Vec<f32> = one.0.iter().map(|&u| f32::from_bits(u)).collect();
        assert_close(&format!("{isa:?} y"), &y1, &want, 1e-4);
        for threads in [2, 3] {
            let split = run(threads);
            assert!(split == one, "{isa:?}: {threads} threads changed the bits");
        }
    });
}
