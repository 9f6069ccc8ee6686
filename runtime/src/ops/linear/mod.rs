//! Fully connected layer `y = x Wᵀ + b`, forward and backward.

use super::grown;
use super::packed::{self, Isa, MatA, Out, PackB, Rows};
use super::parallel::{self, SharedMut};

/// The geometry of one linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinearGeom {
    /// Input features `I`.
    pub in_f: usize,
    /// Output features `O`.
    pub out_f: usize,
}

impl LinearGeom {
    /// Weight values, `O*I` (PyTorch's layout `[out, in]`).
    pub const fn weight_len(&self) -> usize {
        self.in_f * self.out_f
    }
}

/// `y = x wᵀ + b`, with `w` in PyTorch's `[out, in]` layout. `y` is overwritten.
///
/// A few rows are dot products; a batch of up to [`MAX_LOOP_MACS`] multiply-adds, dot
/// products eight rows at a time; a larger one, one packed matrix product (the kernel of the
/// convolutions), its buffers in `scratch` (grown on first use, reused after that). All three
/// sum each output in the same order, so results do not depend on the path a batch size takes.
///
/// # Panics
/// When a slice is shorter than the geometry needs; in debug builds, when any length differs.
///
/// # Example
/// ```
/// use striate_runtime::ops::linear::{forward, LinearGeom};
///
/// let g = LinearGeom { in_f: 3, out_f: 2 };
/// let w = [1.0, 0.0, -1.0, //
///          0.5, 0.5, 0.5];
/// let mut y = [0.0; 2];
/// forward(&mut y, &[1.0, 2.0, 3.0], &w, Some(&[10.0, 0.0]), &g, 1, &mut Vec::new());
/// assert_eq!(y, [8.0, 3.0]);
/// ```
// The argument list is the calling convention of every generated network.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &LinearGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    // x: (N, I), w: (O, I), b: (O) -> y: (N, O)
    debug_check(y, x, w, g, n);
    debug_assert!(b.is_none_or(|b| b.len() == g.out_f));
    let threads = parallel::threads();
    if n == 1 && threads > 1 && g.weight_len() >= MIN_SPLIT_WEIGHTS {
        split_outputs(y, x, w, b, g, threads);
    } else if n <= MAX_DOT_ROWS {
        dot::forward(y, x, w, b, g, n);
    } else if small(g, n) {
        // Eight rows at a time: the same sums as the packed product's.
        let rows = MAX_DOT_ROWS;
        for (y_c, x_c) in y.chunks_mut(rows * g.out_f).zip(x.chunks(rows * g.in_f)) {
            dot::forward(y_c, x_c, w, b, g, y_c.len() / g.out_f);
        }
    } else {
        forward_packed(y, x, w, b, g, n, scratch);
    }
}

/// Weights from which one sample's outputs are split over the threads
/// ([`split_outputs`]): LeNet-5's fc1 (48,000) took LeNet-5's batch-1 latency at 2 threads
/// from 30.4 to 26.8 µs; splitting fc2 (10,080) as well gained under 1 µs more.
const MIN_SPLIT_WEIGHTS: usize = 1 << 15;

/// One sample's [`forward`] with its outputs split over `threads` threads: each part is itself a
/// linear layer (a run of outputs, their rows of weights and their biases), computed by
/// [`dot::forward`] exactly as the whole would be, so the results are the same bits.
fn split_outputs(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &LinearGeom,
    threads: usize,
) {
    let i_f = g.in_f;
    let parts = threads.min(g.out_f.div_ceil(8)).max(1);
    let y_all = SharedMut::new(y);
    parallel::run(parts, |t| {
        let outs = parallel::part(g.out_f, parts, t);
        // Safety: task `t` alone touches outputs `outs`; `run` returns before `y` is borrowed
        // again.
        let y_t = unsafe { y_all.slice(outs.start, outs.len()) };
        let part = LinearGeom {
            in_f: i_f,
            out_f: outs.len(),
        };
        let w_t = &w[outs.start * i_f..outs.end * i_f];
        dot::forward(y_t, x, w_t, b.map(|b| &b[outs]), &part, 1);
    });
}

/// Up to this many multiply-adds per call, a linear layer does not pack: the forward pass
/// runs dot products eight rows at a time and the backward pass register-blocked loops. LeNet-5's
/// fc1 on a shard of 32 samples is 1.5 M (measured when `sgemm` took the large layers, which
/// also allocated on every call).
pub const MAX_LOOP_MACS: usize = 1 << 22;

/// Whether `g` at batch `n` takes the paths that do not pack.
fn small(g: &LinearGeom, n: usize) -> bool {
    g.in_f > 0 && g.out_f > 0 && n.saturating_mul(g.in_f).saturating_mul(g.out_f) <= MAX_LOOP_MACS
}

/// [`forward`] as one packed product, transposed: `yᵀ[O, N] = b + w[O, I] · xᵀ[I, N]`, then
/// `y = (yᵀ)ᵀ`. The weights are read where they lie: each is used by only `N` rows, so packing
/// them would cost more than the sums (AlexNet's fc6 at batch 16, 1 thread: 59 ms packing
/// `wᵀ`, 33 ms reading `w` in place); the batch's inputs are packed instead. Each output is the bias, then each block
/// of products added to it, as [`dot::forward`] sums it.
fn forward_packed(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &LinearGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    let (i_f, o_f) = (g.in_f, g.out_f);
    let isa = Isa::detect();
    let buf = grown(scratch, o_f * n + packed::packed_b_len(isa));
    let (y_t, b_buf) = buf.split_at_mut(o_f * n);
    let w_rows = MatA::Rows { data: w, ld: i_f };
    let x_t = Transposed { data: x, ld: i_f };
    packed::gemm(isa, [o_f, i_f, n], w_rows, &x_t, Out::Set(b), y_t, n, b_buf);
    for (o, y_o) in y_t.chunks_exact(n).enumerate() {
        for (s, &v) in y_o.iter().enumerate() {
            y[s * o_f + o] = v;
        }
    }
}

/// The transpose of a row-major matrix as a [`PackB`]: `B[k][j] = data[j·ld + k]` (the
/// inputs `[N, I]` read as `xᵀ[I, N]`), each of a block's columns read along a stored row.
struct Transposed<'a> {
    data: &'a [f32],
    ld: usize,
}

impl PackB for Transposed<'_> {
    #[inline(always)]
    fn pack_with(
        &self,
        nr: usize,
        [k0, kc]: [usize; 2],
        [n0, cols]: [usize; 2],
        dst: &mut [f32],
        _copy: impl Fn(&mut [f32], &[f32]),
    ) {
        for j in 0..cols {
            let row = &self.data[(n0 + j) * self.ld + k0..][..kc];
            for (d, &v) in dst.iter_mut().skip(j).step_by(nr).zip(row) {
                *d = v;
            }
        }
        if cols < nr {
            for kk in 0..kc {
                dst[kk * nr + cols..(kk + 1) * nr].fill(0.0);
            }
        }
    }
}

/// Batches up to this size are multiplied by dot products ([`dot::forward`]) instead of
/// a packed product, which would pack the whole weight matrix for a few rows (LeNet-5's fc1 at batch
/// 1: 48,000 weights packed for 48,000 multiply-adds). Chosen with `linear/*/forward_b*` in the
/// kernel benchmarks (against matrixmultiply's `sgemm`, which took the larger batches then):
/// at 8 rows the dot products win for all three LeNet-5 layers, at 16 rows `sgemm` won for fc2.
const MAX_DOT_ROWS: usize = 8;

/// Matrix-vector products for [`forward`] with few rows.
mod dot {
    use super::LinearGeom;

    use crate::ops::isa::allowed as isa_allowed;

    /// `y = x wᵀ + b` one dot product at a time, each in [`LANES`] partial sums added in a
    /// fixed order at the end. `y` is overwritten.
    pub(super) fn forward(
        y: &mut [f32],
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        g: &LinearGeom,
        n: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if isa_allowed(2) && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // Safety: the CPU has AVX2 and FMA, checked just above.
            unsafe { forward_fma(y, x, w, b, g, n) };
            return;
        }
        forward_body::<false>(y, x, w, b, g, n);
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

    /// The packed product's depth of one pass ([`packed::KC`]): its sums run over blocks of
    /// this many products, each added to the output in turn.
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
}

/// The gradients of [`forward`]: `d_w += d_yᵀ x`, `d_b += Σ_n d_y`, and, when `d_x` is given,
/// `d_x += d_y w`. All three accumulate. Above [`MAX_LOOP_MACS`], each is one packed product,
/// its buffers in `scratch`.
///
/// # Panics
/// When a slice is shorter than the geometry needs; in debug builds, when any length differs.
// The argument list is the calling convention of every generated network.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    d_x: Option<&mut [f32]>,
    d_w: &mut [f32],
    d_b: Option<&mut [f32]>,
    d_y: &[f32],
    x: &[f32],
    w: &[f32],
    g: &LinearGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    // d_y: (N, O), x: (N, I), w: (O, I) -> d_x: (N, I), d_w: (O, I), d_b: (O)
    debug_check(d_y, x, w, g, n);
    debug_assert_eq!(d_w.len(), g.weight_len());
    let (i_f, o_f) = (g.in_f, g.out_f);
    if let Some(d_b) = d_b {
        debug_assert_eq!(d_b.len(), o_f);
        if o_f > 0 {
            for row in d_y.chunks_exact(o_f) {
                for (d, &v) in d_b.iter_mut().zip(row) {
                    *d += v;
                }
            }
        }
    }
    if small(g, n) {
        backward_loops(d_x, d_w, d_y, x, w, g, n);
        return;
    }
    let isa = Isa::detect();
    let a_len = packed::packed_a_len(isa, o_f, n).max(packed::packed_a_len(isa, n, o_f));
    let buf = grown(scratch, a_len + packed::packed_b_len(isa));
    // d_w[O, I] += d_yᵀ[O, N] · x[N, I]
    add_product(isa, (d_y, [1, o_f]), [o_f, n, i_f], x, d_w, buf);
    if let Some(d_x) = d_x {
        debug_assert_eq!(d_x.len(), x.len());
        // d_x[N, I] += d_y[N, O] · w[O, I]
        add_product(isa, (d_y, [o_f, 1]), [n, o_f, i_f], w, d_x, buf);
    }
}

/// `c[m, n] += a[m, k] · b[k, n]`: `a` given with its strides (packed into the front of `buf`
/// first), `b` and `c` row-major, `buf` holding the packed `a` and then the block of `B`.
fn add_product(
    isa: Isa,
    (a, strides): (&[f32], [usize; 2]),
    [m, k, n]: [usize; 3],
    b: &[f32],
    c: &mut [f32],
    buf: &mut [f32],
) {
    let (packed_a, b_buf) = buf.split_at_mut(buf.len() - packed::packed_b_len(isa));
    packed::pack_a(isa, a, strides, [m, k], packed_a);
    let b_rows = Rows { data: b, ld: n };
    let a = MatA::Packed(packed_a);
    packed::gemm(isa, [m, k, n], a, &b_rows, Out::Add, c, n, b_buf);
}

/// [`backward`]'s weight and input gradients for small layers, without packing: every row of
/// `d_w` (and of `d_x`) is accumulated a block of [`BLOCK`] values at a time in registers,
/// over the samples (over the outputs), in order.
fn backward_loops(
    d_x: Option<&mut [f32]>,
    d_w: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    w: &[f32],
    g: &LinearGeom,
    n: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if crate::ops::isa::allowed(2)
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
    {
        // Safety: the CPU has AVX2 and FMA, checked just above.
        unsafe { backward_loops_fma(d_x, d_w, d_y, x, w, g, n) };
        return;
    }
    backward_loops_body::<false>(d_x, d_w, d_y, x, w, g, n);
}

/// [`backward_loops_body`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_loops_fma(
    d_x: Option<&mut [f32]>,
    d_w: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    w: &[f32],
    g: &LinearGeom,
    n: usize,
) {
    backward_loops_body::<true>(d_x, d_w, d_y, x, w, g, n);
}

/// The body of [`backward_loops`]; with `FMA`, products are fused.
#[inline(always)]
fn backward_loops_body<const FMA: bool>(
    d_x: Option<&mut [f32]>,
    d_w: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    w: &[f32],
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
    // d_x[s, :] += Σ_o d_y[s, o] · w[o, :], two samples at a time for the same reason.
    if let Some(d_x) = d_x {
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

/// The reference version of [`forward`]: one dot product per output. `y` is overwritten.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
pub fn forward_naive(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &LinearGeom,
    n: usize,
) {
    // x: (N, I), w: (O, I), b: (O) -> y: (N, O)
    debug_check(y, x, w, g, n);
    for s in 0..n {
        for o in 0..g.out_f {
            let mut acc = b.map_or(0.0, |b| b[o]);
            for i in 0..g.in_f {
                acc += x[s * g.in_f + i] * w[o * g.in_f + i];
            }
            y[s * g.out_f + o] = acc;
        }
    }
}

/// The reference version of [`backward`]: every output scatters its gradient to the weights,
/// bias and inputs it was computed from. Accumulates, like [`backward`].
///
/// # Panics
/// When a slice is shorter than the geometry needs.
// The argument list is the calling convention of every generated network.
#[allow(clippy::too_many_arguments)]
pub fn backward_naive(
    mut d_x: Option<&mut [f32]>,
    d_w: &mut [f32],
    mut d_b: Option<&mut [f32]>,
    d_y: &[f32],
    x: &[f32],
    w: &[f32],
    g: &LinearGeom,
    n: usize,
) {
    // d_y: (N, O), x: (N, I), w: (O, I) -> d_x: (N, I), d_w: (O, I), d_b: (O)
    debug_check(d_y, x, w, g, n);
    for s in 0..n {
        for o in 0..g.out_f {
            let grad = d_y[s * g.out_f + o];
            if let Some(d_b) = d_b.as_deref_mut() {
                d_b[o] += grad;
            }
            for i in 0..g.in_f {
                d_w[o * g.in_f + i] += grad * x[s * g.in_f + i];
                if let Some(d_x) = d_x.as_deref_mut() {
                    d_x[s * g.in_f + i] += grad * w[o * g.in_f + i];
                }
            }
        }
    }
}

fn debug_check(y: &[f32], x: &[f32], w: &[f32], g: &LinearGeom, n: usize) {
    debug_assert_eq!(y.len(), n * g.out_f, "y (or d_y) length");
    debug_assert_eq!(x.len(), n * g.in_f, "x length");
    debug_assert_eq!(w.len(), g.weight_len(), "w length");
}

#[cfg(test)]
mod tests {
    use super::*;
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
        for level in [2, 3] {
            crate::ops::isa::MIN_ISA.with(|m| m.set(level));
            for &(n, in_f, out_f) in CASES.iter().filter(|c| c.0 <= MAX_DOT_ROWS) {
                let g = LinearGeom { in_f, out_f };
                let x = uniform(&mut r, n * in_f);
                let w = uniform(&mut r, g.weight_len());
                let b = uniform(&mut r, out_f);
                let mut y = vec![f32::NAN; n * out_f];
                let mut expected = vec![f32::NAN; n * out_f];
                forward(&mut y, &x, &w, Some(&b), &g, n, &mut scratch);
                forward_naive(&mut expected, &x, &w, Some(&b), &g, n);
                assert_close(&format!("y {g:?} level {level}"), &y, &expected, 1e-5);
            }
        }
        crate::ops::isa::MIN_ISA.with(|m| m.set(0));
    }

    /// Up to [`MAX_DOT_ROWS`] rows, the dot products give the packed product's results to the
    /// bit, so a network's outputs do not depend on which path its batch size takes (in_f 400
    /// and 800: more than one block of `packed::KC` products), on every instruction set.
    #[test]
    fn dot_products_equal_the_packed_product() {
        let mut r = rng(24);
        let mut scratch = Vec::new();
        for level in [0, 2, 3] {
            crate::ops::isa::MIN_ISA.with(|m| m.set(level));
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
                        forward_packed(&mut gemm, &x, &w, bias, &g, n, &mut scratch);
                        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&dot), bits(&gemm), "{g:?} n {n} level {level}");
                    }
                }
            }
        }
        crate::ops::isa::MIN_ISA.with(|m| m.set(0));
    }

    /// Batches above [`MAX_DOT_ROWS`] but under [`MAX_LOOP_MACS`] do not pack; larger ones
    /// do: both against the reference, and the small forward path equal to the packed product
    /// to the bit.
    #[test]
    fn small_and_large_paths() {
        let mut r = rng(25);
        // Level 3: the plain builds, on a machine that has AVX2 and FMA.
        for level in [0, 3] {
            crate::ops::isa::MIN_ISA.with(|m| m.set(level));
            small_and_large_paths_at(&mut r);
        }
        crate::ops::isa::MIN_ISA.with(|m| m.set(0));
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
            forward_packed(&mut gemm, &x, &w, Some(&b), &g, n, &mut scratch);
            assert_eq!(y, gemm, "{g:?} n {n}");
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
        }
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
}
