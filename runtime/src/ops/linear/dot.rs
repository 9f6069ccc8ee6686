//! Matrix-vector products for [`super::forward`] with few rows.

use super::LinearGeom;
use crate::ops::isa::Isa;

/// `y = x wᵀ + b` for up to [`ROWS`] rows, as [`forward_body`] sums it, on `isa`'s build
/// (AVX2's on AVX-512 machines too). `y` is overwritten.
pub(super) fn forward(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &LinearGeom,
    n: usize,
    isa: Isa,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // Safety: `isa` is what `Isa::current` returned to the calling kernel, and it returns
        // `Avx512` or `Avx2Fma` only on a CPU with AVX2 and FMA.
        Isa::Avx512 | Isa::Avx2Fma => unsafe { forward_fma(y, x, w, b, g, n) },
        _ => forward_body::<false>(y, x, w, b, g, n),
    }
}

/// [`forward_body`] compiled for AVX2 and FMA (also on AVX-512 machines: eight rows fill
/// one AVX register, and with AVX-512 enabled the compiler pairs them into wider ones
/// with shuffles, measured three times slower).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_fma(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &LinearGeom,
    n: usize,
) {
    forward_body::<true>(y, x, w, b, g, n);
}

/// The packed product's depth of one pass ([`crate::ops::packed::KC`]): its sums run over
/// blocks of this many products, each added to the output in turn.
const DEPTH: usize = crate::ops::packed::KC;
/// Outputs computed together: as many independent sums as hide the latency of a fused
/// multiply-add.
const OUTS: usize = 8;

/// Each output is `b + Σ x·w` summed exactly as the packed product sums it: one fused
/// multiply-add after another from zero over each block of [`DEPTH`] products, each
/// block's sum then added to the output. So a batch gives the same results whichever path
/// its size takes (a network's batch-norm and PyTorch comparisons rest on sums that cancel
/// exactly, where a different order shows as noise). The rows of `x` are the vector lanes,
/// transposed a block at a time; with `FMA`, products are fused (`f32::mul_add`), as the
/// packed product's AVX2 and AVX-512 builds fuse them, which is only fast where the target
/// has FMA.
#[inline(always)]
fn forward_body<const FMA: bool>(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &LinearGeom,
    n: usize,
) {
    debug_assert!(n <= ROWS);
    let (i_f, o_f) = (g.in_f, g.out_f);
    for y_s in y.chunks_exact_mut(o_f.max(1)).take(n) {
        match b {
            Some(b) => y_s.copy_from_slice(&b[..o_f]),
            None => y_s.fill(0.0),
        }
    }
    let mut x_t = [[0.0f32; ROWS]; DEPTH];
    for k0 in (0..i_f).step_by(DEPTH) {
        let depth = DEPTH.min(i_f - k0);
        for (s, x_s) in x.chunks_exact(i_f).take(n).enumerate() {
            for (x_t, &v) in x_t.iter_mut().zip(&x_s[k0..k0 + depth]) {
                x_t[s] = v;
            }
        }
        let x_t = &x_t[..depth];
        let mut o0 = 0;
        while o0 < o_f {
            let outs = OUTS.min(o_f - o0);
            let at = (o0, k0);
            match outs {
                1 => outputs::<1, FMA>(y, x_t, w, g, n, at),
                2 => outputs::<2, FMA>(y, x_t, w, g, n, at),
                3 => outputs::<3, FMA>(y, x_t, w, g, n, at),
                4 => outputs::<4, FMA>(y, x_t, w, g, n, at),
                5 => outputs::<5, FMA>(y, x_t, w, g, n, at),
                6 => outputs::<6, FMA>(y, x_t, w, g, n, at),
                7 => outputs::<7, FMA>(y, x_t, w, g, n, at),
                _ => outputs::<OUTS, FMA>(y, x_t, w, g, n, at),
            }
            o0 += outs;
        }
    }
}

/// `acc[j] += xv · wv[j]`, fused where `FMA`. A function rather than a closure: closures
/// are not compiled with their caller's target features, so `mul_add` would call `fmaf`.
#[inline(always)]
fn add_products<const J: usize, const FMA: bool>(
    acc: &mut [[f32; ROWS]; J],
    xv: &[f32; ROWS],
    wv: [f32; J],
) {
    for (acc, wv) in acc.iter_mut().zip(wv) {
        for (a, &xv) in acc.iter_mut().zip(xv) {
            *a = if FMA {
                xv.mul_add(wv, *a)
            } else {
                *a + xv * wv
            };
        }
    }
}

/// Rows of `x` the vector lanes hold: [`super::MAX_DOT_ROWS`].
const ROWS: usize = super::MAX_DOT_ROWS;

/// Outputs `o0 .. o0 + J` of every row, over the block of products from `k0` whose inputs
/// `x_t` holds transposed.
#[inline(always)]
fn outputs<const J: usize, const FMA: bool>(
    y: &mut [f32],
    x_t: &[[f32; ROWS]],
    w: &[f32],
    g: &LinearGeom,
    n: usize,
    (o0, k0): (usize, usize),
) {
    let (i_f, depth) = (g.in_f, x_t.len());
    let w_j: [&[f32]; J] = std::array::from_fn(|j| {
        let at = (o0 + j) * i_f + k0;
        &w[at..at + depth]
    });
    let mut acc = [[0.0f32; ROWS]; J];
    // Eight products of each output at a time, so that the weights are bounds-checked
    // once per eight.
    const STEP: usize = 8;
    let whole = depth / STEP * STEP;
    for k0 in (0..whole).step_by(STEP) {
        let w_k: [&[f32; STEP]; J] =
            std::array::from_fn(|j| w_j[j][k0..k0 + STEP].try_into().expect("STEP weights"));
        for (kk, xv) in x_t[k0..k0 + STEP].iter().enumerate() {
            add_products::<J, FMA>(&mut acc, xv, std::array::from_fn(|j| w_k[j][kk]));
        }
    }
    for (k, xv) in x_t.iter().enumerate().skip(whole) {
        add_products::<J, FMA>(&mut acc, xv, std::array::from_fn(|j| w_j[j][k]));
    }
    for (j, acc) in acc.iter().enumerate() {
        for (s, &a) in acc.iter().enumerate().take(n) {
            y[s * g.out_f + o0 + j] += a;
        }
    }
}
