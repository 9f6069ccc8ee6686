//! The matrix products of a recurrent layer, on the packed product of `ops/packed.rs`, with
//! their buffer given by the caller ([`product_len`] values).

use crate::ops::isa::Isa;
use crate::ops::linear::Transposed;
use crate::ops::packed::{self, MatA, Out, Rows};

/// The buffer a product of an `m × k` left factor needs: it packed, and a block of the right.
pub(super) fn product_len(isa: Isa, m: usize, k: usize) -> usize {
    packed::packed_a_len(isa, m, k) + packed::packed_b_len(isa)
}

/// How a factor of a product is stored.
#[derive(Clone, Copy)]
pub(super) enum Stored<'a> {
    /// As it is, row-major.
    Plain(&'a [f32]),
    /// Its transpose, row-major (a weight matrix `[out, in]` used as `[in, out]`).
    Transposed(&'a [f32]),
}

/// `c[m, n] += a[m, k] · b[k, n]`, each factor stored as it says: a batch of rows times a
/// weight matrix (`b` transposed), gate gradients times a weight matrix (both plain), or a
/// weight gradient, gate gradients of every step against their inputs (`a` transposed).
pub(super) fn add_product(
    isa: Isa,
    c: &mut [f32],
    a: Stored<'_>,
    b: Stored<'_>,
    [m, k, n]: [usize; 3],
    buf: &mut [f32],
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let (packed_a, b_buf) = buf.split_at_mut(buf.len() - packed::packed_b_len(isa));
    match a {
        Stored::Plain(a) => packed::pack_a(isa, a, [k, 1], [m, k], packed_a),
        Stored::Transposed(a) => packed::pack_a(isa, a, [1, m], [m, k], packed_a),
    }
    let a = MatA::Packed(packed_a);
    match b {
        Stored::Plain(data) => {
            let rows = Rows { data, ld: n };
            packed::gemm(isa, [m, k, n], a, &rows, Out::Add, c, n, b_buf);
        }
        Stored::Transposed(data) => {
            let t = Transposed { data, ld: k };
            packed::gemm(isa, [m, k, n], a, &t, Out::Add, c, n, b_buf);
        }
    }
}

/// Batches up to this size take the per-step products as dot products and scaled row sums
/// ([`small_forward`], [`small_backward`]): the packed product's register tile would be
/// mostly empty columns.
pub(super) const MAX_SMALL_BATCH: usize = 4;

/// `hp[s] += W x[s]` for the `n` rows of `x` (`k` each), `W` `[m, k]` row-major.
pub(super) fn small_forward(isa: Isa, hp: &mut [f32], x: &[f32], w: &[f32], dims: [usize; 3]) {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Plain {
        // Safety: `isa` is what `Isa::current` returned, which is `Avx2Fma` or `Avx512` only
        // on a CPU with AVX2 and FMA.
        unsafe { small_forward_fma(hp, x, w, dims) };
        return;
    }
    let _ = isa;
    small_forward_with::<false>(hp, x, w, dims);
}

/// [`small_forward`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn small_forward_fma(hp: &mut [f32], x: &[f32], w: &[f32], dims: [usize; 3]) {
    small_forward_with::<true>(hp, x, w, dims);
}

#[inline(always)]
fn small_forward_with<const FMA: bool>(
    hp: &mut [f32],
    x: &[f32],
    w: &[f32],
    [n, k, m]: [usize; 3],
) {
    for s in 0..n {
        let x_s = &x[s * k..][..k];
        for (j, out) in hp[s * m..][..m].iter_mut().enumerate() {
            *out += dot16::<FMA>(&w[j * k..][..k], x_s);
        }
    }
}

/// `dh[s] += Σ_g da[s, g] W[g]` for the `n` rows of `da` (`m` each), `W` `[m, k]` row-major.
pub(super) fn small_backward(isa: Isa, dh: &mut [f32], da: &[f32], w: &[f32], dims: [usize; 3]) {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Plain {
        // Safety: as in `small_forward`.
        unsafe { small_backward_fma(dh, da, w, dims) };
        return;
    }
    let _ = isa;
    small_backward_with::<false>(dh, da, w, dims);
}

/// [`small_backward`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn small_backward_fma(dh: &mut [f32], da: &[f32], w: &[f32], dims: [usize; 3]) {
    small_backward_with::<true>(dh, da, w, dims);
}

#[inline(always)]
fn small_backward_with<const FMA: bool>(
    dh: &mut [f32],
    da: &[f32],
    w: &[f32],
    [n, m, k]: [usize; 3],
) {
    for s in 0..n {
        let dh_s = &mut dh[s * k..][..k];
        for (g, &a) in da[s * m..][..m].iter().enumerate() {
            for (d, &v) in dh_s.iter_mut().zip(&w[g * k..][..k]) {
                *d = madd::<FMA>(a, v, *d);
            }
        }
    }
}

/// `a·b + c`, fused when `FMA` (only in code compiled with the FMA feature).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `Σ a_i b_i` with sixteen running sums, which the compiler keeps in vector registers.
#[inline(always)]
fn dot16<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail = madd::<FMA>(*x, *y, tail);
    }
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] = madd::<FMA>(x[i], y[i], acc[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}
