//! Direct kernels for stride-1 convolutions with few output channels (LeNet-5's two layers:
//! 6 kernels of 1×5×5 and 16 of 6×5×5), where a matrix product's tiles of 12 rows would be
//! partly empty and its packing would cost as much as its sums. Each sample is copied once
//! into a zero-padded buffer. Forward, every run of [`LANES`] outputs of one row, for up to [`GROUP`] output channels at once, is accumulated
//! in registers over the taps; the weight gradient is accumulated per tap in registers over
//! all output positions; the input gradient is the forward pass of the [`transposed`]
//! geometry. No allocation, and results that do not depend on the thread count.

use super::Conv2dGeom;
use crate::ops::isa::Isa;

/// Outputs of one row computed together (two AVX vectors).
pub(super) const LANES: usize = 16;
/// Output channels computed together: `GROUP × LANES` accumulators fill 12 of the 16 AVX
/// registers.
const GROUP: usize = 6;
/// The most output channels for which these kernels are always used: measured faster than
/// im2col + sgemm for both LeNet-5 layers (6 and 16 channels; `conv2d/lenet*` in the
/// benches), and than the packed products that replaced sgemm (LeNet-5 training at 2
/// threads: 36,000 images/s against 18,000 with these kernels off).
const MAX_OUT: usize = 16;
/// The most output channels for which these kernels are used when output rows hold at least
/// one whole run of [`LANES`]: ResNet-20's `32 → 32` layers on 16×16, batch 64, 1 thread,
/// forward 4.9 -> 3.9 ms and backward 9.4 -> 8.3 against the packed products. On 8×8 rows
/// (half a run) its `64 → 64` layers take 7.0 ms forward here against 4.0 packed.
const MAX_OUT_WIDE: usize = 32;

/// Whether [`forward_sample`] is used for `g`.
pub(super) const fn applies(g: &Conv2dGeom) -> bool {
    g.stride_h == 1
        && g.stride_w == 1
        && (g.out_c <= MAX_OUT || (g.out_c <= MAX_OUT_WIDE && g.out_w >= LANES))
        && g.out_h > 0
        && g.out_w > 0
        && !g.is_pointwise()
}

/// Row length of the padded buffer: the padded input row, and long enough that the last
/// run of [`LANES`] outputs reads only inside the row (the extra cells are zero).
pub(super) const fn padded_width(g: &Conv2dGeom) -> usize {
    let reach = g.out_w.next_multiple_of(LANES) + g.k_w - 1;
    let w = g.in_w + 2 * g.pad_w;
    if reach > w {
        reach
    } else {
        w
    }
}

/// Row length of the padded buffer in [`backward_weights`], whose flat loops need no
/// reach past a row: the padded input row.
const fn weights_width(g: &Conv2dGeom) -> usize {
    g.in_w + 2 * g.pad_w
}

/// Values of scratch [`forward_sample`] and [`backward_weights`] need: the padded
/// sample, `C × (H + 2PH) × padded_width`, then either one group's weights, tap-major, or
/// the output gradient with its rows padded with zeros to whole runs of [`LANES`].
pub(super) const fn padded_len(g: &Conv2dGeom) -> usize {
    let weights = g.in_c * g.k_h * g.k_w * GROUP;
    let d_y = g.out_c * flat_len(g);
    plane_len(g) + if weights > d_y { weights } else { d_y }
}

/// Values of the padded sample, with a tail of zeros that [`weights_group`]'s last runs
/// read.
const fn plane_len(g: &Conv2dGeom) -> usize {
    g.in_c * (g.in_h + 2 * g.pad_h) * padded_width(g) + g.k_w + LANES
}

/// One channel of the output gradient laid out as [`backward_weights`]' padded input
/// is, `OH` rows of [`weights_width`], rounded up to whole runs of [`LANES`].
const fn flat_len(g: &Conv2dGeom) -> usize {
    (g.out_h * weights_width(g)).next_multiple_of(LANES)
}

/// Copies `x` into the middle of `padded`, rows `pw` apart, zero around it.
fn pad_sample(padded: &mut [f32], x: &[f32], g: &Conv2dGeom, pw: usize) {
    let ph = g.in_h + 2 * g.pad_h;
    padded.fill(0.0);
    for (c, x_c) in x.chunks_exact(g.in_h * g.in_w).enumerate() {
        for (h, x_row) in x_c.chunks_exact(g.in_w).enumerate() {
            let at = (c * ph + h + g.pad_h) * pw + g.pad_w;
            padded[at..at + g.in_w].copy_from_slice(x_row);
        }
    }
}

/// The geometry whose forward pass is `g`'s input gradient: the output gradient
/// correlated with the flipped kernels, padded by `K - 1 - P` (stride 1 only).
pub(super) const fn transposed(g: &Conv2dGeom) -> Option<Conv2dGeom> {
    if g.stride_h != 1 || g.stride_w != 1 || g.pad_h >= g.k_h || g.pad_w >= g.k_w {
        return None;
    }
    Some(Conv2dGeom {
        in_c: g.out_c,
        in_h: g.out_h,
        in_w: g.out_w,
        out_c: g.in_c,
        k_h: g.k_h,
        k_w: g.k_w,
        stride_h: 1,
        stride_w: 1,
        pad_h: g.k_h - 1 - g.pad_h,
        pad_w: g.k_w - 1 - g.pad_w,
        out_h: g.in_h,
        out_w: g.in_w,
    })
}

/// Whether these kernels do all of `g`'s work, the input gradient included.
pub(super) const fn handles_all(g: &Conv2dGeom) -> bool {
    match transposed(g) {
        Some(t) => applies(g) && applies(&t),
        None => false,
    }
}

/// Values of scratch [`backward`] needs (and [`forward_sample`], which needs less).
pub(super) const fn backward_len(g: &Conv2dGeom) -> usize {
    padded_len(g) + sums_len(g) + input_len(g)
}

/// [`super::backward`]'s `d_w` and (when [`handles_all`]) `d_x` of `n` samples, with
/// [`backward_weights`] and, for `d_x`, [`forward_sample`] of the [`transposed`]
/// geometry, each built for `isa`. `scratch` is [`backward_len`] values.
// The arguments of `backward`, less the bias, plus the instruction set and the buffer.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    d_x: Option<&mut [f32]>,
    d_w: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    w: &[f32],
    g: &Conv2dGeom,
    n: usize,
    isa: Isa,
    scratch: &mut [f32],
) {
    debug_assert!(applies(g));
    debug_assert_eq!(scratch.len(), backward_len(g));
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let (own, rest) = scratch.split_at_mut(padded_len(g) + sums_len(g));
    let (padded, sums) = own.split_at_mut(padded_len(g));
    sums.fill(0.0);
    for (x_n, d_y_n) in x
        .chunks_exact(in_len)
        .zip(d_y.chunks_exact(out_len))
        .take(n)
    {
        backward_weights(sums, d_y_n, x_n, g, isa, padded);
    }
    add_sums(d_w, sums);
    if let Some(d_x) = d_x {
        add_input_gradient(d_x, d_y, w, g, isa, rest);
    }
}

/// `d_x += w ⋆ d_y` for each sample of `d_y`, [`backward`]'s input gradient alone (which
/// [`handles_all`] of `g`): [`forward_sample`] of the [`transposed`] geometry with the
/// flipped kernels. `scratch` is [`input_len`] values.
pub(super) fn add_input_gradient(
    d_x: &mut [f32],
    d_y: &[f32],
    w: &[f32],
    g: &Conv2dGeom,
    isa: Isa,
    scratch: &mut [f32],
) {
    let Some(t) = transposed(g) else {
        return;
    };
    debug_assert!(handles_all(g));
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let (flipped, rest) = scratch.split_at_mut(g.weight_len());
    let (d_x_n_only, padded_t) = rest.split_at_mut(in_len);
    // flipped[c, o, kh, kw] = w[o, c, KH-1-kh, KW-1-kw]
    let kk = g.k_h * g.k_w;
    for (o, w_o) in w.chunks_exact(g.in_c * kk).enumerate() {
        for (c, w_oc) in w_o.chunks_exact(kk).enumerate() {
            let f = &mut flipped[(c * g.out_c + o) * kk..(c * g.out_c + o + 1) * kk];
            for (f, &v) in f.iter_mut().zip(w_oc.iter().rev()) {
                *f = v;
            }
        }
    }
    for (d_x_n, d_y_n) in d_x.chunks_exact_mut(in_len).zip(d_y.chunks_exact(out_len)) {
        forward_sample(d_x_n_only, d_y_n, flipped, None, &t, isa, padded_t);
        for (d, &v) in d_x_n.iter_mut().zip(&*d_x_n_only) {
            *d += v;
        }
    }
}

/// Values of scratch [`add_input_gradient`] needs: the flipped kernels, one sample's input
/// gradient, and the padded output gradient.
pub(super) const fn input_len(g: &Conv2dGeom) -> usize {
    match transposed(g) {
        Some(t) if handles_all(g) => g.weight_len() + g.in_len() + padded_len(&t),
        _ => 0,
    }
}

/// Whether [`backward_weights`] also takes the weight gradient of a layer whose other work the
/// packed products do (more output channels than [`applies`] allows): stride 1, and outputs large
/// enough (at least 16×16) that its per-lane sums, loaded and stored once per sample and
/// tap row, cost little against the products over the sample's positions. ResNet-20's
/// `32 → 32` layers on 16×16, batch 64, 1 thread: 9.2 ms against 5.3 for the packed product,
/// whose unfolded input, packed afresh for every sample, was used by only 32 rows.
pub(super) const fn takes_weights(g: &Conv2dGeom) -> bool {
    g.stride_h == 1
        && g.stride_w == 1
        && g.out_h * g.out_w >= 256
        && g.out_h > 0
        && g.out_w > 0
        && !g.is_pointwise()
}

/// Values of scratch [`backward_weights`] needs with its sums, for [`takes_weights`].
pub(super) const fn weights_len(g: &Conv2dGeom) -> usize {
    padded_len(g) + sums_len(g)
}

/// Values of the per-lane sums [`backward_weights`] accumulates: `O × C·KH·KW × LANES`.
pub(super) const fn sums_len(g: &Conv2dGeom) -> usize {
    g.out_c * g.col_rows() * LANES
}

/// One sample of [`super::backward`]'s `d_w += d_y · colᵀ` (stride 1), accumulated per
/// tap over all output positions in [`LANES`] partial sums each: `sums` holds them from
/// sample to sample (start it at zero; [`add_sums`] adds them to `d_w`), as summing
/// across lanes for every sample would cost as much as a small layer's products.
/// `scratch` is [`padded_len`] values; the sums run on `isa`'s build.
pub(super) fn backward_weights(
    sums: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    g: &Conv2dGeom,
    isa: Isa,
    scratch: &mut [f32],
) {
    // d_y: (O, OH, OW), x: (C, H, W) -> sums: (O, C·KH·KW, LANES)
    debug_assert!(applies(g) || takes_weights(g));
    debug_assert_eq!(sums.len(), sums_len(g));
    debug_assert_eq!(scratch.len(), padded_len(g));
    let (padded, rest) = scratch.split_at_mut(plane_len(g));
    let (pw, flat) = (weights_width(g), flat_len(g));
    pad_sample(padded, x, g, pw);
    // Rows as long as the padded input's, so that output position p = oh·pw + ow reads
    // input p + (kh·pw + kw) for every tap: one flat loop per tap. Zero past each row's
    // OW outputs and past the last row.
    let d_y_runs = &mut rest[..g.out_c * flat];
    d_y_runs.fill(0.0);
    for (dst, src) in d_y_runs
        .chunks_exact_mut(flat)
        .zip(d_y.chunks_exact(g.out_h * g.out_w))
    {
        for (dst, src) in dst.chunks_exact_mut(pw).zip(src.chunks_exact(g.out_w)) {
            dst[..g.out_w].copy_from_slice(src);
        }
    }
    let d_y_runs = &*d_y_runs;
    match isa {
        #[cfg(target_arch = "x86_64")]
        // Safety: `isa` is what `Isa::current` returned to the calling kernel, and it returns
        // `Avx512` only on a CPU with AVX-512F, AVX2 and FMA.
        Isa::Avx512 => unsafe { weights_avx512(sums, d_y_runs, padded, g) },
        #[cfg(target_arch = "x86_64")]
        // Safety: as above, `Avx2Fma` only on a CPU with AVX2 and FMA.
        Isa::Avx2Fma => unsafe { weights_fma(sums, d_y_runs, padded, g) },
        _ => weights_body::<1, false>(sums, d_y_runs, padded, g),
    }
}

/// [`weights_body`] compiled for AVX-512, whose 32 registers hold the sums of four taps
/// for six channels.
///
/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn weights_avx512(sums: &mut [f32], d_y_runs: &[f32], padded: &[f32], g: &Conv2dGeom) {
    weights_body::<4, true>(sums, d_y_runs, padded, g);
}

/// [`weights_body`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weights_fma(sums: &mut [f32], d_y_runs: &[f32], padded: &[f32], g: &Conv2dGeom) {
    weights_body::<1, true>(sums, d_y_runs, padded, g);
}

/// `d_w += Σ_lanes sums`, each in a fixed order.
pub(super) fn add_sums(d_w: &mut [f32], sums: &[f32]) {
    for (d, lanes) in d_w.iter_mut().zip(sums.chunks_exact(LANES)) {
        *d += halving_sum(lanes.try_into().expect("LANES values"));
    }
}

/// `Σ a` by adding halves (8 + 8, 4 + 4, ...): a fixed order, in a few vector additions.
#[inline(always)]
fn halving_sum(mut a: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            a[l] += a[l + width];
        }
        width /= 2;
    }
    a[0]
}

/// Splits the output channels into groups of at most [`GROUP`], as [`forward_body`], and
/// each kernel row into runs of `TAPS` taps computed together.
#[inline(always)]
fn weights_body<const TAPS: usize, const FMA: bool>(
    sums: &mut [f32],
    d_y_runs: &[f32],
    padded: &[f32],
    g: &Conv2dGeom,
) {
    let mut o0 = 0;
    while o0 < g.out_c {
        let count = GROUP.min(g.out_c - o0);
        match count {
            1 => weights_group::<1, TAPS, FMA>(sums, d_y_runs, padded, g, o0),
            2 => weights_group::<2, TAPS, FMA>(sums, d_y_runs, padded, g, o0),
            3 => weights_group::<3, TAPS, FMA>(sums, d_y_runs, padded, g, o0),
            4 => weights_group::<4, TAPS, FMA>(sums, d_y_runs, padded, g, o0),
            5 => weights_group::<5, TAPS, FMA>(sums, d_y_runs, padded, g, o0),
            _ => weights_group::<GROUP, TAPS, FMA>(sums, d_y_runs, padded, g, o0),
        }
        o0 += count;
    }
}

/// `d_w` of output channels `o0 .. o0 + G`, `TAPS` neighbouring taps of a kernel row at a
/// time (then one at a time for the rest of the row).
#[inline(always)]
fn weights_group<const G: usize, const TAPS: usize, const FMA: bool>(
    sums: &mut [f32],
    d_y_runs: &[f32],
    padded: &[f32],
    g: &Conv2dGeom,
    o0: usize,
) {
    let (pw, ph) = (weights_width(g), g.in_h + 2 * g.pad_h);
    let (taps, flat) = (g.col_rows(), flat_len(g));
    let d_y_g = &d_y_runs[o0 * flat..(o0 + G) * flat];
    let sums_g = &mut sums[o0 * taps * LANES..(o0 + G) * taps * LANES];
    for c in 0..g.in_c {
        for kh in 0..g.k_h {
            let (x_at, t0) = ((c * ph + kh) * pw, (c * g.k_h + kh) * g.k_w);
            let mut kw = 0;
            while kw < g.k_w {
                // As many taps as the registers hold, or the rest of the row (3×3 kernels:
                // a whole row at a time, each loaded gradient used three times).
                let (x_at, t0) = (x_at + kw, t0 + kw);
                let taps = match (g.k_w - kw).min(TAPS) {
                    k if k >= 4 && TAPS >= 4 => {
                        weights_taps::<G, TAPS, FMA>(sums_g, d_y_g, padded, x_at, t0, g);
                        TAPS
                    }
                    3 if TAPS >= 3 => {
                        weights_taps::<G, 3, FMA>(sums_g, d_y_g, padded, x_at, t0, g);
                        3
                    }
                    2 if TAPS >= 2 => {
                        weights_taps::<G, 2, FMA>(sums_g, d_y_g, padded, x_at, t0, g);
                        2
                    }
                    _ => {
                        weights_taps::<G, 1, FMA>(sums_g, d_y_g, padded, x_at, t0, g);
                        1
                    }
                };
                kw += taps;
            }
        }
    }
}

/// Taps `t0 .. t0 + K` (reading the padded input from `x_at`) of the `G` output channels
/// in `d_y_g`: `G × K` vector sums over every output position (the zeros in `d_y_g`'s
/// padding add nothing), each loaded gradient used `K` times and each loaded input `G`
/// times, then summed across lanes in a fixed order.
#[inline(always)]
fn weights_taps<const G: usize, const K: usize, const FMA: bool>(
    sums_g: &mut [f32],
    d_y_g: &[f32],
    padded: &[f32],
    x_at: usize,
    t0: usize,
    g: &Conv2dGeom,
) {
    let (taps, flat) = (g.col_rows(), flat_len(g));
    let x = &padded[x_at..x_at + flat + K - 1];
    let mut acc = [[[0.0f32; LANES]; K]; G];
    for (o, acc) in acc.iter_mut().enumerate() {
        for (k, acc) in acc.iter_mut().enumerate() {
            let at = (o * taps + t0 + k) * LANES;
            *acc = sums_g[at..at + LANES].try_into().expect("LANES values");
        }
    }
    for i in (0..flat).step_by(LANES) {
        let mut dv = [[0.0f32; LANES]; G];
        for (o, dv) in dv.iter_mut().enumerate() {
            *dv = d_y_g[o * flat + i..o * flat + i + LANES]
                .try_into()
                .expect("LANES values");
        }
        for k in 0..K {
            let xv: &[f32; LANES] = x[i + k..i + k + LANES].try_into().expect("LANES values");
            for o in 0..G {
                for l in 0..LANES {
                    acc[o][k][l] = if FMA {
                        dv[o][l].mul_add(xv[l], acc[o][k][l])
                    } else {
                        acc[o][k][l] + dv[o][l] * xv[l]
                    };
                }
            }
        }
    }
    for (o, acc) in acc.iter().enumerate() {
        for (k, acc) in acc.iter().enumerate() {
            let at = (o * taps + t0 + k) * LANES;
            sums_g[at..at + LANES].copy_from_slice(acc);
        }
    }
}

/// One sample of [`super::forward`] (stride 1), on `isa`'s build: `y` is overwritten;
/// `scratch` is [`padded_len`] values.
pub(super) fn forward_sample(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &Conv2dGeom,
    isa: Isa,
    scratch: &mut [f32],
) {
    // x: (C, H, W), w: (O, C, KH, KW), b: (O) -> y: (O, OH, OW)
    debug_assert!(applies(g));
    debug_assert_eq!(scratch.len(), padded_len(g));
    let (padded, w_t) = scratch.split_at_mut(plane_len(g));
    pad_sample(padded, x, g, padded_width(g));
    match isa {
        #[cfg(target_arch = "x86_64")]
        // Safety: `isa` is what `Isa::current` returned to the calling kernel, and it returns
        // `Avx512` only on a CPU with AVX-512F, AVX2 and FMA.
        Isa::Avx512 => unsafe { forward_avx512(y, padded, w, b, g, w_t) },
        #[cfg(target_arch = "x86_64")]
        // Safety: as above, `Avx2Fma` only on a CPU with AVX2 and FMA.
        Isa::Avx2Fma => unsafe { forward_fma(y, padded, w, b, g, w_t) },
        _ => forward_body::<false>(y, padded, w, b, g, w_t),
    }
}

/// [`forward_body`] compiled for AVX-512 (one register per run of [`LANES`] outputs).
///
/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn forward_avx512(
    y: &mut [f32],
    padded: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &Conv2dGeom,
    w_t: &mut [f32],
) {
    forward_body::<true>(y, padded, w, b, g, w_t);
}

/// [`forward_body`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_fma(
    y: &mut [f32],
    padded: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &Conv2dGeom,
    w_t: &mut [f32],
) {
    forward_body::<true>(y, padded, w, b, g, w_t);
}

/// Splits the output channels into groups of at most [`GROUP`], each a constant for
/// [`group`]. With `FMA`, products are fused into the sums (`f32::mul_add`), which is only
/// fast where the target has FMA.
#[inline(always)]
fn forward_body<const FMA: bool>(
    y: &mut [f32],
    padded: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &Conv2dGeom,
    w_t: &mut [f32],
) {
    let taps = g.col_rows();
    let mut o0 = 0;
    while o0 < g.out_c {
        let count = GROUP.min(g.out_c - o0);
        // The group's weights, tap-major: w_t[t·count + o] = w[o0 + o, t].
        let w_t = &mut w_t[..taps * count];
        for (o, w_o) in w[o0 * taps..(o0 + count) * taps]
            .chunks_exact(taps)
            .enumerate()
        {
            for (t, &v) in w_o.iter().enumerate() {
                w_t[t * count + o] = v;
            }
        }
        let w_t = &*w_t;
        match count {
            1 => group::<1, FMA>(y, padded, w_t, b, g, o0),
            2 => group::<2, FMA>(y, padded, w_t, b, g, o0),
            3 => group::<3, FMA>(y, padded, w_t, b, g, o0),
            4 => group::<4, FMA>(y, padded, w_t, b, g, o0),
            5 => group::<5, FMA>(y, padded, w_t, b, g, o0),
            _ => group::<GROUP, FMA>(y, padded, w_t, b, g, o0),
        }
        o0 += count;
    }
}

/// Output channels `o0 .. o0 + G`, whose weights `w_t` holds tap-major.
#[inline(always)]
fn group<const G: usize, const FMA: bool>(
    y: &mut [f32],
    padded: &[f32],
    w_t: &[f32],
    b: Option<&[f32]>,
    g: &Conv2dGeom,
    o0: usize,
) {
    let (pw, ph) = (padded_width(g), g.in_h + 2 * g.pad_h);
    let area = g.out_h * g.out_w;
    debug_assert_eq!(w_t.len(), g.col_rows() * G);
    for oh in 0..g.out_h {
        // Kernel rows that land on padding rows add nothing: skip them (the input
        // gradient, as the forward pass of the transposed geometry, pads by K - 1 - P).
        let kh_lo = g.pad_h.saturating_sub(oh).min(g.k_h);
        let kh_hi = (g.pad_h + g.in_h).saturating_sub(oh).clamp(kh_lo, g.k_h);
        for ow0 in (0..g.out_w).step_by(LANES) {
            let mut acc = [[0.0f32; LANES]; G];
            if let Some(b) = b {
                for (a, &b_o) in acc.iter_mut().zip(&b[o0..o0 + G]) {
                    *a = [b_o; LANES];
                }
            }
            for c in 0..g.in_c {
                for kh in kh_lo..kh_hi {
                    let at = (c * ph + oh + kh) * pw + ow0;
                    let row = &padded[at..at + LANES + g.k_w - 1];
                    let tap = (c * g.k_h + kh) * g.k_w;
                    let w_row = &w_t[tap * G..(tap + g.k_w) * G];
                    for (kw, w_tap) in w_row.chunks_exact(G).enumerate() {
                        let xv: &[f32; LANES] =
                            row[kw..kw + LANES].try_into().expect("LANES values");
                        // A fixed length, so that the accumulators stay in registers.
                        let w_tap: &[f32; G] = w_tap.try_into().expect("G weights");
                        for (a, &wv) in acc.iter_mut().zip(w_tap) {
                            for (a, &xv) in a.iter_mut().zip(xv) {
                                *a = if FMA {
                                    wv.mul_add(xv, *a)
                                } else {
                                    *a + wv * xv
                                };
                            }
                        }
                    }
                }
            }
            let valid = LANES.min(g.out_w - ow0);
            for (o, a) in acc.into_iter().enumerate() {
                let at = (o0 + o) * area + oh * g.out_w + ow0;
                if at + LANES <= (o0 + o + 1) * area {
                    // A whole run, a fixed-size copy. The cells past the end of a short
                    // run lie in later rows of the same channel, written after this one.
                    y[at..at + LANES].copy_from_slice(&a);
                } else {
                    // Copied whole first: slicing the accumulators themselves at a
                    // run-time length would keep them in memory rather than registers.
                    let out: [f32; LANES] = std::hint::black_box(a);
                    y[at..at + valid].copy_from_slice(&out[..valid]);
                }
            }
        }
    }
}
