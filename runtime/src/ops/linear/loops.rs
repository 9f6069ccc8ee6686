//! The linear layer's weight and input gradients for small layers, as loops that keep a block
//! of each gradient row in registers instead of packing a matrix product.

use super::LinearGeom;
use crate::ops::isa::Isa;

/// `d_w += d_yᵀ x` ([`super::backward`]'s weight gradient) for small layers, without packing:
/// every row of `d_w` is accumulated a block of [`BLOCK`] values at a time in registers, over
/// the samples, in order, on `isa`'s build (AVX2's on AVX-512 machines too).
pub(super) fn add_weight_grad(
    d_w: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    g: &LinearGeom,
    n: usize,
    isa: Isa,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // Safety: `isa` is what `Isa::current` returned to the calling kernel, and it returns
        // `Avx512` or `Avx2Fma` only on a CPU with AVX2 and FMA.
        Isa::Avx512 | Isa::Avx2Fma => unsafe { weight_grad_fma(d_w, d_y, x, g, n) },
        _ => weight_grad_body::<false>(d_w, d_y, x, g, n),
    }
}

/// `d_x += d_y w` ([`super::backward`]'s input gradient) for small layers, as
/// [`add_weight_grad`]: every row of `d_x` accumulated in registers, over the outputs, in order.
pub(super) fn add_input_grad(
    d_x: &mut [f32],
    d_y: &[f32],
    w: &[f32],
    g: &LinearGeom,
    n: usize,
    isa: Isa,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // Safety: as in `add_weight_grad`.
        Isa::Avx512 | Isa::Avx2Fma => unsafe { input_grad_fma(d_x, d_y, w, g, n) },
        _ => input_grad_body::<false>(d_x, d_y, w, g, n),
    }
}

/// [`weight_grad_body`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weight_grad_fma(d_w: &mut [f32], d_y: &[f32], x: &[f32], g: &LinearGeom, n: usize) {
    weight_grad_body::<true>(d_w, d_y, x, g, n);
}

/// [`input_grad_body`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_grad_fma(d_x: &mut [f32], d_y: &[f32], w: &[f32], g: &LinearGeom, n: usize) {
    input_grad_body::<true>(d_x, d_y, w, g, n);
}

/// The body of [`add_weight_grad`]; with `FMA`, products are fused.
#[inline(always)]
fn weight_grad_body<const FMA: bool>(
    d_w: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    g: &LinearGeom,
    n: usize,
) {
    let (i_f, o_f) = (g.in_f, g.out_f);
    // d_w[o, :] += Σ_s d_y[s, o] · x[s, :], two rows of d_w at a time so that each load of x
    // feeds two fused multiply-adds.
    let mut pairs = d_w.chunks_exact_mut(2 * i_f);
    for (p, d_w_pair) in (&mut pairs).enumerate() {
        let (d_w_0, d_w_1) = d_w_pair.split_at_mut(i_f);
        let o = 2 * p;
        add_weighted_rows_pair::<FMA>(
            d_w_0,
            d_w_1,
            (0..n).map(|s| {
                (
                    d_y[s * o_f + o],
                    d_y[s * o_f + o + 1],
                    &x[s * i_f..(s + 1) * i_f],
                )
            }),
        );
    }
    let last = pairs.into_remainder();
    if !last.is_empty() {
        let o = o_f - 1;
        add_weighted_rows::<FMA>(
            last,
            (0..n).map(|s| (d_y[s * o_f + o], &x[s * i_f..(s + 1) * i_f])),
        );
    }
}

/// The body of [`add_input_grad`]; with `FMA`, products are fused.
#[inline(always)]
fn input_grad_body<const FMA: bool>(
    d_x: &mut [f32],
    d_y: &[f32],
    w: &[f32],
    g: &LinearGeom,
    n: usize,
) {
    let (i_f, o_f) = (g.in_f, g.out_f);
    // d_x[s, :] += Σ_o d_y[s, o] · w[o, :], two samples at a time so that each load of w
    // feeds two fused multiply-adds.
    let d_x = &mut d_x[..n * i_f];
    let mut pairs = d_x.chunks_exact_mut(2 * i_f);
    for (p, d_x_pair) in (&mut pairs).enumerate() {
        let (d_x_0, d_x_1) = d_x_pair.split_at_mut(i_f);
        let (y0, y1) = (&d_y[2 * p * o_f..], &d_y[(2 * p + 1) * o_f..]);
        add_weighted_rows_pair::<FMA>(
            d_x_0,
            d_x_1,
            w.chunks_exact(i_f)
                .enumerate()
                .map(|(o, w_o)| (y0[o], y1[o], w_o)),
        );
    }
    let last = pairs.into_remainder();
    if !last.is_empty() {
        let d_y_s = &d_y[(n - 1) * o_f..n * o_f];
        add_weighted_rows::<FMA>(
            last,
            d_y_s
                .iter()
                .zip(w.chunks_exact(i_f))
                .map(|(&a, w_o)| (a, w_o)),
        );
    }
}

/// Values of two gradient rows kept in registers while [`add_weighted_rows_pair`] adds into
/// them.
const PAIR_BLOCK: usize = 32;

/// `dst0 += Σ a0 · row` and `dst1 += Σ a1 · row` over `terms`, in order: each `row` value is
/// loaded once for both.
#[inline(always)]
fn add_weighted_rows_pair<'a, const FMA: bool>(
    dst0: &mut [f32],
    dst1: &mut [f32],
    terms: impl Iterator<Item = (f32, f32, &'a [f32])> + Clone,
) {
    #[inline(always)]
    fn add2<const FMA: bool>(acc0: &mut [f32], acc1: &mut [f32], a0: f32, a1: f32, row: &[f32]) {
        for ((acc0, acc1), &v) in acc0.iter_mut().zip(acc1.iter_mut()).zip(row) {
            if FMA {
                *acc0 = v.mul_add(a0, *acc0);
                *acc1 = v.mul_add(a1, *acc1);
            } else {
                *acc0 += a0 * v;
                *acc1 += a1 * v;
            }
        }
    }
    for (b, (dst0, dst1)) in dst0
        .chunks_mut(PAIR_BLOCK)
        .zip(dst1.chunks_mut(PAIR_BLOCK))
        .enumerate()
    {
        let at = b * PAIR_BLOCK;
        match (
            <&mut [f32; PAIR_BLOCK]>::try_from(&mut *dst0),
            <&mut [f32; PAIR_BLOCK]>::try_from(&mut *dst1),
        ) {
            // Whole blocks: fixed-size arrays, which the compiler keeps in registers.
            (Ok(dst0), Ok(dst1)) => {
                let (mut acc0, mut acc1) = (*dst0, *dst1);
                for (a0, a1, row) in terms.clone() {
                    let row: &[f32; PAIR_BLOCK] =
                        row[at..at + PAIR_BLOCK].try_into().expect("a whole block");
                    add2::<FMA>(&mut acc0, &mut acc1, a0, a1, row);
                }
                *dst0 = acc0;
                *dst1 = acc1;
            }
            _ => {
                let len = dst0.len();
                for (a0, a1, row) in terms.clone() {
                    add2::<FMA>(dst0, dst1, a0, a1, &row[at..at + len]);
                }
            }
        }
    }
}

/// Values of a gradient row kept in registers while [`add_weighted_rows`] adds into them.
const BLOCK: usize = 64;

/// `dst += Σ a · row` over `terms`, in order, a block of [`BLOCK`] values at a time.
#[inline(always)]
fn add_weighted_rows<'a, const FMA: bool>(
    dst: &mut [f32],
    terms: impl Iterator<Item = (f32, &'a [f32])> + Clone,
) {
    #[inline(always)]
    fn add<const FMA: bool>(acc: &mut [f32], a: f32, row: &[f32]) {
        for (acc, &v) in acc.iter_mut().zip(row) {
            *acc = if FMA {
                v.mul_add(a, *acc)
            } else {
                *acc + a * v
            };
        }
    }
    for (b, dst) in dst.chunks_mut(BLOCK).enumerate() {
        let at = b * BLOCK;
        match <&mut [f32; BLOCK]>::try_from(&mut *dst) {
            // A whole block: a fixed-size array, which the compiler keeps in registers.
            Ok(dst) => {
                let mut acc = *dst;
                for (a, row) in terms.clone() {
                    let row: &[f32; BLOCK] = row[at..at + BLOCK].try_into().expect("a whole block");
                    add::<FMA>(&mut acc, a, row);
                }
                *dst = acc;
            }
            Err(_) => {
                let len = dst.len();
                for (a, row) in terms.clone() {
                    add::<FMA>(dst, a, &row[at..at + len]);
                }
            }
        }
    }
}
