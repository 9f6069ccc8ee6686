//! Winograd's minimal filtering F(4×4, 3×3) (Lavin and Gray, 2016) for the 3×3, stride-1,
//! padding-1 convolutions with many channels (ResNet-20's `64 → 64` layers): 36
//! multiplications per 4×4 block of outputs and pair of channels instead of 144.
//!
//! The output is cut into tiles of 4×4, each reading a 6×6 window of the zero-padded input.
//! With the matrices `Bᵀ` (6×6), `G` (6×3) and `Aᵀ` (4×6) of the interpolation at 0, ±1, ±2
//! and infinity ([`G`]; `Bᵀ` and `Aᵀ` are written out in [`bt6`] and [`at6`]),
//!
//! - the input of each tile and channel is transformed, `V = Bᵀ d B`,
//! - each kernel, `U = G g Gᵀ`,
//! - then for each of the 36 positions `p` of the transformed domain one matrix product over
//!   the channels, `M_p[O, T] = U_p[O, C] · V_p[C, T]` for the `T` tiles of a group of
//!   samples ([`chunk`]), by [`packed::gemm`],
//! - and each tile's output is `Y = Aᵀ M A`.
//!
//! The input gradient is the same convolution of the output gradient with the kernels flipped
//! and transposed (`3×3` with padding 1 again). The weight gradient is the adjoint of the
//! forward pass: `dU_p[O, C] += dM_p[O, T] · V_pᵀ[T, C]` with `dM = A dY Aᵀ`, one product per
//! position whose inner dimension is the tiles, and at the end `dW = Gᵀ dU G`.
//!
//! Every transform runs along the tiles of a whole chunk, so that its vectors are long even
//! for small samples (an 8×8 sample has 4 tiles). The sums are those of the direct
//! convolution regrouped, so the results differ from it by rounding: the transforms scale
//! values up (by up to 25) before the products and back down after. The tests hold this path
//! to the packed products' tolerance against the reference.

use super::Conv2dGeom;
use crate::ops::isa::{isa_builds, Isa};
use crate::ops::packed::{self, MatA, Out, PackB, Rows};
use crate::ops::parallel::{self, SharedMut};

/// Outputs along each side of a tile.
const M: usize = 4;

/// The window along each side of a tile.
const A: usize = M + 2;

/// Positions of the transformed domain.
const POS: usize = A * A;

/// `G` of F(4×4, 3×3): the kernel transform, `U = G g Gᵀ`.
const G: [[f32; 3]; A] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Values of transformed input and products a task keeps for one chunk, at most (1 MiB, so
/// that they stay in the L2 cache between the transforms and the products), unless one
/// sample needs more.
const CHUNK_VALUES: usize = 256 * 1024;

/// The fewest input and output channels for which this path is taken: below that the products
/// (`K = C`) are too small for the transforms to pay. ResNet-20's layers at batch 64, 1 thread
/// (`BENCHMARKS.md`): `64 → 64` on 8×8 forward 4.0 -> 3.6 ms, backward 9.5 -> 7.4; `32 → 32`
/// on 16×16 3.6 -> 3.8 and 8.0 -> 8.1 (the direct kernels keep it); `16 → 16` on 32×32 4.1 ->
/// 5.9 and 8.1 -> 9.7.
const MIN_CHANNELS: usize = 48;

/// Whether [`super::forward`] and [`super::backward`] take this path for `g`.
pub(super) const fn applies(g: &Conv2dGeom) -> bool {
    g.k_h == 3
        && g.k_w == 3
        && g.stride_h == 1
        && g.stride_w == 1
        && g.pad_h == 1
        && g.pad_w == 1
        && g.in_c >= MIN_CHANNELS
        && g.out_c >= MIN_CHANNELS
        && g.in_h > 0
        && g.in_w > 0
}

/// The tiles of one sample, `⌈H/m⌉ × ⌈W/m⌉` (the output is as large as the input).
const fn tile_grid(g: &Conv2dGeom) -> [usize; 2] {
    [g.in_h.div_ceil(M), g.in_w.div_ceil(M)]
}

/// Tiles a chunk holds at least when one sample alone is over [`CHUNK_VALUES`]: the products
/// are then `T` columns wide, and each transformed kernel `U_p` (`O × C`) is read once per
/// chunk. AlexNet's 13×13 layers have 16 tiles a sample: one sample a chunk made products
/// 16 columns wide (half a register tile), read each `U_p` (590 KB for 384 × 384) once per
/// sample, and summed the weight gradient over 16 tiles per call into a `dU` of 21 MB.
/// Measured on conv3-5 at batch 16, 1 thread, forward + backward: 651 ms at 16 tiles (one
/// sample), 437 at 128, about the same at 64, 550 at 256.
const MIN_TILES: usize = 128;

/// Samples transformed and multiplied together (see [`CHUNK_VALUES`] and [`MIN_TILES`]).
pub(super) const fn chunk(g: &Conv2dGeom) -> usize {
    let [th, tw] = tile_grid(g);
    let per_sample = POS * th * tw * (g.in_c + g.out_c);
    if per_sample >= CHUNK_VALUES {
        MIN_TILES.div_ceil(th * tw)
    } else {
        CHUNK_VALUES / per_sample
    }
}

/// Values of the work space [`transform_input`] needs (the others need less): one padded
/// plane, and the windows of a chunk's tiles for one channel twice (as read and half
/// transformed).
const fn rows_len(g: &Conv2dGeom) -> usize {
    let [th, tw] = tile_grid(g);
    (M * th + 2) * (M * tw + 2) + 2 * POS * chunk(g) * th * tw
}

/// Values of scratch shared by the tasks: the transformed kernels, packed for the products
/// of either direction, and the unpacked ones they are packed from.
const fn shared_len(g: &Conv2dGeom, isa: Isa) -> usize {
    let forward = packed::packed_a_len(isa, g.out_c, g.in_c);
    let transposed = packed::packed_a_len(isa, g.in_c, g.out_c);
    let packed = if forward > transposed {
        forward
    } else {
        transposed
    };
    POS * (packed + g.out_c * g.in_c)
}

/// The distance between the rows of `T` tiles in the transformed values: `T` and a little
/// more, so that the positions' rows, read and written side by side, are not a multiple of
/// 4 KiB apart (they would share the L1 cache's sets).
const fn tile_ld(tiles: usize) -> usize {
    tiles.next_multiple_of(16) + 16
}

/// Values of scratch one task needs: the transformed input and the products (or the
/// transformed output gradient) of a chunk, the task's weight-gradient sums `dU`, the work
/// rows and the block of `B`.
const fn task_len(g: &Conv2dGeom, isa: Isa) -> usize {
    let [th, tw] = tile_grid(g);
    let ld = tile_ld(chunk(g) * th * tw);
    POS * ld * (g.in_c + g.out_c) + POS * g.in_c * g.out_c + rows_len(g) + packed::packed_b_len(isa)
}

/// Values of scratch [`forward`], [`input_gradient`] and [`weight_gradient`] need at
/// `threads` tasks.
pub(super) const fn scratch_len(g: &Conv2dGeom, isa: Isa, threads: usize) -> usize {
    shared_len(g, isa) + threads * task_len(g, isa)
}

/// The geometry of the input gradient: the forward pass with input and output channels
/// swapped (the sizes and padding stay).
const fn transposed(g: &Conv2dGeom) -> Conv2dGeom {
    Conv2dGeom {
        in_c: g.out_c,
        out_c: g.in_c,
        ..*g
    }
}

/// `u[p, o, c] = (G g_{o,c} Gᵀ)_p` for the kernels `at(o, c, tap)` (`tap = 3·u + v`), then
/// packed, one `O × C` matrix per position, into `packed` for the products of `isa`. Both
/// steps are split over the threads (by outputs, then by positions) when there are at least
/// [`MIN_SPLIT_KERNELS`] kernels: every call transforms all of them, and AlexNet's conv4 has
/// 147,456. Each value is computed alike however the work is split.
fn pack_kernels(
    packed: &mut [f32],
    u: &mut [f32],
    [o_n, c_n]: [usize; 2],
    isa: Isa,
    at: impl Fn(usize, usize, usize) -> f32 + Sync,
) {
    let u = &mut u[..POS * o_n * c_n];
    let tasks = if o_n * c_n >= MIN_SPLIT_KERNELS {
        parallel::threads().min(o_n).max(1)
    } else {
        1
    };
    let u_all = SharedMut::new(u);
    parallel::run(tasks, |t| {
        let outs = parallel::part(o_n, tasks, t);
        // Safety: task `t` alone touches rows `outs` of every position's matrix; `run`
        // returns before `u` is borrowed again.
        let mut rows: [&mut [f32]; POS] = std::array::from_fn(|p| unsafe {
            u_all.slice((p * o_n + outs.start) * c_n, outs.len() * c_n)
        });
        for (i, o) in outs.clone().enumerate() {
            for c in 0..c_n {
                let k: [f32; 9] = std::array::from_fn(|t| at(o, c, t));
                kernel_transform(&k, |p, v| rows[p][i * c_n + c] = v);
            }
        }
    });
    let u = &*u;
    let len = packed::packed_a_len(isa, o_n, c_n);
    let packed_all = SharedMut::new(&mut packed[..POS * len]);
    parallel::run(tasks, |t| {
        for p in parallel::part(POS, tasks, t) {
            // Safety: task `t` alone touches the packed matrices of its positions; `run`
            // returns before `packed` is borrowed again.
            let dst = unsafe { packed_all.slice(p * len, len) };
            let u_p = &u[p * o_n * c_n..(p + 1) * o_n * c_n];
            packed::pack_a(isa, u_p, [c_n, 1], [o_n, c_n], dst);
        }
    });
}

/// Kernels from which [`pack_kernels`] and the end of [`weight_gradient`] are split over the
/// threads.
const MIN_SPLIT_KERNELS: usize = 1 << 14;

/// `G k Gᵀ` of one 3×3 kernel `k` (row-major), each position `p` given to `put`.
fn kernel_transform(k: &[f32; 9], mut put: impl FnMut(usize, f32)) {
    // G k: A rows of 3.
    let mut gk = [[0.0f32; 3]; A];
    for (gk_i, g_i) in gk.iter_mut().zip(&G) {
        for (v, d) in gk_i.iter_mut().enumerate() {
            *d = g_i[0] * k[v] + g_i[1] * k[3 + v] + g_i[2] * k[6 + v];
        }
    }
    for (i, gk_i) in gk.iter().enumerate() {
        for (j, g_j) in G.iter().enumerate() {
            put(
                i * A + j,
                gk_i[0] * g_j[0] + gk_i[1] * g_j[1] + gk_i[2] * g_j[2],
            );
        }
    }
}

/// `Gᵀ X G` of one transformed gradient `x` (`α × α`, row-major): the 3×3 kernel's share,
/// added to `d_w`.
fn kernel_gradient(x: impl Fn(usize) -> f32, d_w: &mut [f32]) {
    // Gᵀ X: 3 rows of A.
    let mut gx = [[0.0f32; A]; 3];
    for (i, g_i) in G.iter().enumerate() {
        for j in 0..A {
            let x_ij = x(i * A + j);
            for (gx_u, &g_iu) in gx.iter_mut().zip(g_i) {
                gx_u[j] += g_iu * x_ij;
            }
        }
    }
    for (u, gx_u) in gx.iter().enumerate() {
        for v in 0..3 {
            let mut sum = 0.0;
            for (&gx_uj, g_j) in gx_u.iter().zip(&G) {
                sum += gx_uj * g_j[v];
            }
            d_w[3 * u + v] += sum;
        }
    }
}

/// `y = w ⋆ x + b` ([`super::forward`]) for `g` ([`applies`]): `scratch` is
/// [`scratch_len`] values at `threads`.
// The arguments of the forward pass, plus its instruction set, thread count and scratch.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &Conv2dGeom,
    n: usize,
    isa: Isa,
    threads: usize,
    scratch: &mut [f32],
) {
    // x: (N, C, H, W), w: (O, C, 3, 3), b: (O) -> y: (N, O, H, W)
    debug_assert!(applies(g));
    let (shared, bufs) = scratch.split_at_mut(shared_len(g, isa));
    let p_n = POS;
    let (packed_u, u) = shared.split_at_mut(p_n * packed::packed_a_len(isa, g.out_c, g.in_c));
    let c_n = g.in_c;
    pack_kernels(packed_u, u, [g.out_c, g.in_c], isa, |o, c, t| {
        w[(o * c_n + c) * 9 + t]
    });
    convolve(y, x, packed_u, Out::Set(b), g, n, isa, threads, bufs);
}

/// `y (=|+=) conv(x)` over the batch split into tasks, the kernels transformed and packed
/// into `packed_u` for `g`; `bufs` holds the tasks' parts ([`task_len`] each).
// The operands, plus the instruction set, thread count and scratch.
#[allow(clippy::too_many_arguments)]
fn convolve(
    y: &mut [f32],
    x: &[f32],
    packed_u: &[f32],
    out: Out<'_>,
    g: &Conv2dGeom,
    n: usize,
    isa: Isa,
    threads: usize,
    bufs: &mut [f32],
) {
    let tasks = n.clamp(1, threads);
    let per_task = task_len(g, isa);
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let y_all = SharedMut::new(y);
    let bufs = SharedMut::new(&mut bufs[..tasks * per_task]);
    parallel::run(tasks, |t| {
        let samples = parallel::part(n, tasks, t);
        // Safety: task `t` alone touches its samples' outputs and its own part of `scratch`;
        // `run` returns before either is borrowed again.
        let (y_t, buf) = unsafe {
            (
                y_all.slice(samples.start * out_len, samples.len() * out_len),
                bufs.slice(t * per_task, per_task),
            )
        };
        let x_t = &x[samples.start * in_len..samples.end * in_len];
        let step = chunk(g);
        let [work, _, rows, b_buf] = task_parts(buf, g);
        for (x_c, y_c) in x_t
            .chunks(step * in_len)
            .zip(y_t.chunks_mut(step * out_len))
        {
            convolve_chunk(y_c, x_c, packed_u, out, g, isa, [work, rows, b_buf]);
        }
    });
}

/// A task's part of the scratch ([`task_len`]): the chunk's transformed values, its `dU`,
/// the work rows and the block of `B`.
fn task_parts<'a>(buf: &'a mut [f32], g: &Conv2dGeom) -> [&'a mut [f32]; 4] {
    let [th, tw] = tile_grid(g);
    let p_n = POS;
    let (work, rest) = buf.split_at_mut(p_n * tile_ld(chunk(g) * th * tw) * (g.in_c + g.out_c));
    let (d_u, rest) = rest.split_at_mut(p_n * g.in_c * g.out_c);
    let (rows, b_buf) = rest.split_at_mut(rows_len(g));
    [work, d_u, rows, b_buf]
}

/// [`convolve`] for the samples of one chunk, multiplied together, in the task's `work`,
/// `rows` and `b_buf` ([`task_parts`]).
fn convolve_chunk(
    y: &mut [f32],
    x: &[f32],
    packed_u: &[f32],
    out: Out<'_>,
    g: &Conv2dGeom,
    isa: Isa,
    [work, rows, b_buf]: [&mut [f32]; 3],
) {
    let [th, tw] = tile_grid(g);
    let per_sample = th * tw;
    let in_len = g.in_len();
    let tiles = x.len() / in_len * per_sample;
    let ld = tile_ld(tiles);
    let (c_n, o_n, p_n) = (g.in_c, g.out_c, POS);
    let (v, rest) = work.split_at_mut(p_n * c_n * ld);
    let m = &mut rest[..p_n * o_n * ld];
    transform_input(isa, v, ld, x, [c_n, g.in_h, g.in_w], rows);
    let a_len = packed::packed_a_len(isa, o_n, c_n);
    for p in 0..p_n {
        let v_p = Rows {
            data: &v[p * c_n * ld..(p + 1) * c_n * ld],
            ld,
        };
        packed::gemm(
            isa,
            [o_n, c_n, tiles],
            MatA::Packed(&packed_u[p * a_len..(p + 1) * a_len]),
            &v_p,
            Out::Set(None),
            &mut m[p * o_n * ld..(p + 1) * o_n * ld],
            ld,
            b_buf,
        );
    }
    let (bias, add) = match out {
        Out::Set(bias) => (bias, false),
        Out::Add => (None, true),
    };
    let dims = [o_n, g.out_h, g.out_w];
    transform_output(isa, y, m, ld, dims, bias, add, rows);
}

/// `d_x += conv(d_y)` with the kernels flipped and transposed: [`super::backward`]'s input
/// gradient for `g` ([`applies`]). `scratch` is [`scratch_len`] values at `threads`.
// The operands, plus the instruction set, thread count and scratch.
#[allow(clippy::too_many_arguments)]
pub(super) fn input_gradient(
    d_x: &mut [f32],
    d_y: &[f32],
    w: &[f32],
    g: &Conv2dGeom,
    n: usize,
    isa: Isa,
    threads: usize,
    scratch: &mut [f32],
) {
    // d_y: (N, O, H, W), w: (O, C, 3, 3) -> d_x: (N, C, H, W), accumulated
    debug_assert!(applies(g));
    let (c_n, o_n) = (g.in_c, g.out_c);
    let (shared, bufs) = scratch.split_at_mut(shared_len(g, isa));
    let p_n = POS;
    let (packed_u, u) = shared.split_at_mut(p_n * packed::packed_a_len(isa, c_n, o_n));
    // The kernels of the input gradient: [c, o, u, v] = w[o, c, 2 - u, 2 - v].
    pack_kernels(packed_u, u, [c_n, o_n], isa, |c, o, t| {
        w[(o * c_n + c) * 9 + 8 - t]
    });
    convolve(
        d_x,
        d_y,
        packed_u,
        Out::Add,
        &transposed(g),
        n,
        isa,
        threads,
        bufs,
    );
}

/// `d_w +=` the weight gradient of [`forward`] for `g` ([`applies`]): per position,
/// `dU_p[O, C] += dM_p[O, T] · V_pᵀ[T, C]`, then `d_w += Gᵀ dU G`. `scratch` is
/// [`scratch_len`] values at `threads`; each task sums its own `dU`, added together in task
/// order, so the result depends on the thread count only.
// The operands, plus the instruction set, thread count and scratch.
#[allow(clippy::too_many_arguments)]
pub(super) fn weight_gradient(
    d_w: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    g: &Conv2dGeom,
    n: usize,
    isa: Isa,
    threads: usize,
    scratch: &mut [f32],
) {
    // d_y: (N, O, H, W), x: (N, C, H, W) -> d_w: (O, C, 3, 3), accumulated
    debug_assert!(applies(g));
    let (c_n, o_n, p_n) = (g.in_c, g.out_c, POS);
    let bufs = &mut scratch[shared_len(g, isa)..];
    let tasks = n.clamp(1, threads);
    let per_task = task_len(g, isa);
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let [th, tw] = tile_grid(g);
    let per_sample = th * tw;
    let bufs_all = SharedMut::new(&mut bufs[..tasks * per_task]);
    parallel::run(tasks, |t| {
        let samples = parallel::part(n, tasks, t);
        // Safety: task `t` alone touches its own part of `scratch`; `run` returns before it
        // is borrowed again.
        let buf = unsafe { bufs_all.slice(t * per_task, per_task) };
        let [work, d_u, rows, b_buf] = task_parts(buf, g);
        d_u.fill(0.0);
        let x_t = &x[samples.start * in_len..samples.end * in_len];
        let d_y_t = &d_y[samples.start * out_len..samples.end * out_len];
        let step = chunk(g);
        for (x_c, d_y_c) in x_t.chunks(step * in_len).zip(d_y_t.chunks(step * out_len)) {
            let tiles = x_c.len() / in_len * per_sample;
            let ld = tile_ld(tiles);
            let (v, rest) = work.split_at_mut(p_n * c_n * ld);
            let d_m = &mut rest[..p_n * o_n * ld];
            transform_input(isa, v, ld, x_c, [c_n, g.in_h, g.in_w], rows);
            let dims = [o_n, g.out_h, g.out_w];
            transform_gradient(isa, d_m, ld, d_y_c, dims, rows);
            for p in 0..p_n {
                let a = MatA::Rows {
                    data: &d_m[p * o_n * ld..(p + 1) * o_n * ld],
                    ld,
                };
                let v_t = Columns {
                    data: &v[p * c_n * ld..(p + 1) * c_n * ld],
                    ld,
                };
                packed::gemm(
                    isa,
                    [o_n, tiles, c_n],
                    a,
                    &v_t,
                    Out::Add,
                    &mut d_u[p * o_n * c_n..(p + 1) * o_n * c_n],
                    c_n,
                    b_buf,
                );
            }
        }
    });
    // The tasks' dU in task order, into the first one's.
    let (first, others) = bufs[..tasks * per_task].split_at_mut(per_task);
    let [_, d_u, _, _] = task_parts(first, g);
    let others = &*others;
    let oc = o_n * c_n;
    // Split over the threads by kernels (each value summed alike, in task order).
    let parts = if oc >= MIN_SPLIT_KERNELS {
        threads.max(1)
    } else {
        1
    };
    let d_u_all = SharedMut::new(d_u);
    let d_w_all = SharedMut::new(&mut d_w[..9 * oc]);
    parallel::run(parts, |t| {
        let kernels = parallel::part(oc, parts, t);
        // Safety: task `t` alone touches kernels `kernels` of `d_w` and, at every
        // position, of the first task's `dU`; `run` returns before either is borrowed again.
        let d_w_t = unsafe { d_w_all.slice(9 * kernels.start, 9 * kernels.len()) };
        let mut d_u_t: [&mut [f32]; POS] = std::array::from_fn(|p| unsafe {
            d_u_all.slice(p * oc + kernels.start, kernels.len())
        });
        for other in others.chunks_exact(per_task) {
            let d_u_other = task_d_u(other, g);
            for (p, d_u_p) in d_u_t.iter_mut().enumerate() {
                let e = &d_u_other[p * oc + kernels.start..p * oc + kernels.end];
                for (d, &e) in d_u_p.iter_mut().zip(e) {
                    *d += e;
                }
            }
        }
        // d_w[o, c] += Gᵀ dU[o, c] G, dU[p, o, c].
        for (i, d_w_oc) in d_w_t.chunks_exact_mut(9).enumerate() {
            let at = |p: usize| d_u_t[p][i];
            kernel_gradient(at, d_w_oc);
        }
    });
}

/// The `dU` of a task's part of the scratch ([`task_parts`]), read only.
fn task_d_u<'a>(buf: &'a [f32], g: &Conv2dGeom) -> &'a [f32] {
    let [th, tw] = tile_grid(g);
    let work = POS * tile_ld(chunk(g) * th * tw) * (g.in_c + g.out_c);
    &buf[work..work + POS * g.in_c * g.out_c]
}

/// The transpose of a matrix with rows of consecutive values as the `B` of a product: row
/// `k`, column `j` is `data[j·ld + k]` (the transformed input `V_p[C, T]` read as `T × C`).
struct Columns<'a> {
    data: &'a [f32],
    ld: usize,
}

impl PackB for Columns<'_> {
    #[inline(always)]
    fn pack_with(
        &self,
        nr: usize,
        [k0, kc]: [usize; 2],
        [n0, cols]: [usize; 2],
        dst: &mut [f32],
        _copy: impl Fn(&mut [f32], &[f32]),
    ) {
        let dst = &mut dst[..kc * nr];
        for (j, column) in (n0..n0 + cols)
            .map(|c| &self.data[c * self.ld + k0..][..kc])
            .enumerate()
        {
            for (row, &v) in dst.chunks_exact_mut(nr).zip(column) {
                row[j] = v;
            }
        }
        if cols < nr {
            for row in dst.chunks_exact_mut(nr) {
                row[cols..].fill(0.0);
            }
        }
    }
}

/// The tiles of a chunk of whole samples, for the transforms.
struct Grid {
    /// Tile rows and columns of one sample.
    th: usize,
    tw: usize,
    /// Tiles of one sample.
    per_sample: usize,
    /// Values of one channel of one sample.
    plane_len: usize,
    /// Samples in the chunk.
    samples: usize,
    /// Tiles of the chunk.
    tiles: usize,
}

impl Grid {
    /// The grid of a chunk of `len` values of samples of `dims = [C, H, W]`.
    fn of(len: usize, [c_n, h, w]: [usize; 3]) -> Grid {
        let (th, tw) = (h.div_ceil(M), w.div_ceil(M));
        let plane_len = h * w;
        let samples = len / (c_n * plane_len);
        Grid {
            th,
            tw,
            per_sample: th * tw,
            plane_len,
            samples,
            tiles: samples * th * tw,
        }
    }
}

isa_builds! {
    /// `v[(p·C + c)·ld + t] = (Bᵀ d B)_p` for each tile `t` of the chunk `x` (whole samples,
    /// each `dims = [C, H, W]`, tiles counted sample by sample) and channel `c`, `d` the
    /// tile's zero-padded window; `work` is [`rows_len`] values.
    fn transform_input(
        v: &mut [f32],
        ld: usize,
        x: &[f32],
        dims: [usize; 3],
        work: &mut [f32],
    ) {
        let [c_n, _, w] = dims;
        let Grid { th, tw, per_sample, plane_len, samples, tiles } = Grid::of(x.len(), dims);
        // The padded plane: row p is input row p - 1, column q input column q - 1.
        let pw = M * tw + 2;
        let (padded, rest) = work.split_at_mut((M * th + 2) * pw);
        let (windows, rest) = rest.split_at_mut(POS * tiles);
        let half_done = &mut rest[..POS * tiles];
        padded.fill(0.0);
        for c in 0..c_n {
            // windows[(r·A + q)·T + t] is row r, column q of tile t's window.
            for s in 0..samples {
                let plane = &x[(s * c_n + c) * plane_len..][..plane_len];
                for (row, dst) in plane.chunks_exact(w).zip(padded.chunks_exact_mut(pw).skip(1)) {
                    dst[1..1 + w].copy_from_slice(row);
                }
                for r in 0..A {
                    for q in 0..A {
                        let dst = &mut windows[(r * A + q) * tiles + s * per_sample..][..per_sample];
                        for (ti, dst) in dst.chunks_exact_mut(tw).enumerate() {
                            let src = &padded[(M * ti + r) * pw + q..];
                            for (tj, d) in dst.iter_mut().enumerate() {
                                *d = src[M * tj];
                            }
                        }
                    }
                }
            }
            // B over the columns: half_done[(r·A + j)·T + t]; then Bᵀ over the rows.
            for r in 0..A {
                bt6(
                    &windows[r * A * tiles..(r + 1) * A * tiles],
                    tiles,
                    &mut half_done[r * A * tiles..(r + 1) * A * tiles],
                    tiles,
                    tiles,
                );
            }
            for j in 0..A {
                // Rows r of position column j lie A·T apart; outputs i, A·C·ld apart.
                bt6(
                    &half_done[j * tiles..],
                    A * tiles,
                    &mut v[(j * c_n + c) * ld..],
                    A * c_n * ld,
                    tiles,
                );
            }
        }
    }
}

/// `out_i = Σ_k Bᵀ[i][k]·in_k` for `i, k < 6`, each a run of `n` values: `in_k` at
/// `input[k·stride_in ..]`, `out_i` at `out[i·stride_out ..]`. `Bᵀ` of F(4×4, 3×3):
///
/// ```text
/// [4  0 -5  0 1 0]
/// [0 -4 -4  1 1 0]
/// [0  4 -4 -1 1 0]
/// [0 -2 -1  2 1 0]
/// [0  2 -1 -2 1 0]
/// [0  4  0 -5 0 1]
/// ```
#[inline(always)]
fn bt6(input: &[f32], stride_in: usize, out: &mut [f32], stride_out: usize, n: usize) {
    let [d0, d1, d2, d3, d4, d5] = runs(input, stride_in, n);
    let [o0, o1, o2, o3, o4, o5] = runs_mut(out, stride_out, n);
    for k in 0..n {
        let (d0, d1, d2, d3, d4, d5) = (d0[k], d1[k], d2[k], d3[k], d4[k], d5[k]);
        o0[k] = 4.0 * d0 - 5.0 * d2 + d4;
        o1[k] = (d3 + d4) - 4.0 * (d1 + d2);
        o2[k] = (d4 - d3) + 4.0 * (d1 - d2);
        o3[k] = (d4 - d2) + 2.0 * (d3 - d1);
        o4[k] = (d4 - d2) - 2.0 * (d3 - d1);
        o5[k] = 4.0 * d1 - 5.0 * d3 + d5;
    }
}

/// `K` runs of `n` values, `stride` apart, from the start of `data`.
#[inline(always)]
fn runs<const K: usize>(data: &[f32], stride: usize, n: usize) -> [&[f32]; K] {
    std::array::from_fn(|k| &data[k * stride..k * stride + n])
}

/// [`runs`], to write.
#[inline(always)]
fn runs_mut<const K: usize>(data: &mut [f32], stride: usize, n: usize) -> [&mut [f32]; K] {
    let mut rest = data;
    std::array::from_fn(|k| {
        let step = if k + 1 < K { stride } else { n };
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(step);
        rest = tail;
        &mut head[..n]
    })
}

/// `out_r = Σ_k Aᵀ[r][k]·in_k` for `r < 4`, `k < 6`, laid out as in [`bt6`]. `Aᵀ` of
/// F(4×4, 3×3):
///
/// ```text
/// [1 1  1 1  1 0]
/// [0 1 -1 2 -2 0]
/// [0 1  1 4  4 0]
/// [0 1 -1 8 -8 1]
/// ```
#[inline(always)]
fn at6(input: &[f32], stride_in: usize, out: &mut [f32], stride_out: usize, n: usize) {
    let [m0, m1, m2, m3, m4, m5] = runs(input, stride_in, n);
    let [o0, o1, o2, o3] = runs_mut(out, stride_out, n);
    for k in 0..n {
        let (sum12, diff12) = (m1[k] + m2[k], m1[k] - m2[k]);
        let (sum34, diff34) = (m3[k] + m4[k], m3[k] - m4[k]);
        o0[k] = m0[k] + sum12 + sum34;
        o1[k] = diff12 + 2.0 * diff34;
        o2[k] = sum12 + 4.0 * sum34;
        o3[k] = diff12 + 8.0 * diff34 + m5[k];
    }
}

/// `out_i = Σ_r A[i][r]·in_r` for `i < 6`, `r < 4` (`A = (Aᵀ)ᵀ`, see [`at6`]), laid out as in
/// [`bt6`].
#[inline(always)]
fn a4(input: &[f32], stride_in: usize, out: &mut [f32], stride_out: usize, n: usize) {
    let [g0, g1, g2, g3] = runs(input, stride_in, n);
    let [o0, o1, o2, o3, o4, o5] = runs_mut(out, stride_out, n);
    for k in 0..n {
        let (even, odd) = (g0[k] + g2[k], g1[k] + g3[k]);
        let (even4, odd2) = (g0[k] + 4.0 * g2[k], 2.0 * g1[k] + 8.0 * g3[k]);
        o0[k] = g0[k];
        o1[k] = even + odd;
        o2[k] = even - odd;
        o3[k] = even4 + odd2;
        o4[k] = even4 - odd2;
        o5[k] = g3[k];
    }
}

isa_builds! {
    /// `y = Aᵀ M A` for each tile of the chunk `y` (whole samples, each `dims = [O, H, W]`),
    /// `M_p` at `m[(p·O + o)·ld + t]`: set, plus `bias`, or added (`add`); `work` is
    /// [`rows_len`] values.
    fn transform_output(
        y: &mut [f32],
        m: &[f32],
        ld: usize,
        dims: [usize; 3],
        bias: Option<&[f32]>,
        add: bool,
        work: &mut [f32],
    ) {
        let [o_n, h, w] = dims;
        let Grid { tw, per_sample, plane_len, samples, tiles, .. } = Grid::of(y.len(), dims);
        let (rows, rest) = work.split_at_mut(M * A * tiles);
        let outs = &mut rest[..M * M * tiles];
        for o in 0..o_n {
            let b = bias.map_or(0.0, |b| b[o]);
            // Aᵀ M over the rows: rows[(r·A + j)·T + t]; then A over the columns:
            // outs[(r·M + q)·T + t], row r, column q of tile t.
            for j in 0..A {
                at6(&m[(j * o_n + o) * ld..], A * o_n * ld, &mut rows[j * tiles..], A * tiles, tiles);
            }
            for r in 0..M {
                at6(
                    &rows[r * A * tiles..(r + 1) * A * tiles],
                    tiles,
                    &mut outs[r * M * tiles..(r + 1) * M * tiles],
                    tiles,
                    tiles,
                );
            }
            for s in 0..samples {
                let plane = &mut y[(s * o_n + o) * plane_len..][..plane_len];
                for r in 0..M {
                    for q in 0..M {
                        let src = &outs[(r * M + q) * tiles + s * per_sample..][..per_sample];
                        let cols = if q < w { (w - q).div_ceil(M) } else { 0 };
                        for (ti, src) in src.chunks_exact(tw).enumerate() {
                            let yr = M * ti + r;
                            if yr >= h {
                                break;
                            }
                            let row = &mut plane[yr * w..(yr + 1) * w];
                            for (tj, &value) in src.iter().enumerate().take(cols) {
                                let d = &mut row[M * tj + q];
                                if add {
                                    *d += value;
                                } else {
                                    *d = value + b;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

isa_builds! {
    /// `d_m[(p·O + o)·ld + t] = (A dY Aᵀ)_p` for each tile `t` of the output gradient's
    /// chunk `d_y` (whole samples, each `dims = [O, H, W]`; outside them, zeros) and channel
    /// `o`; `work` is [`rows_len`] values.
    fn transform_gradient(
        d_m: &mut [f32],
        ld: usize,
        d_y: &[f32],
        dims: [usize; 3],
        work: &mut [f32],
    ) {
        let [o_n, h, w] = dims;
        let Grid { tw, per_sample, plane_len, samples, tiles, .. } = Grid::of(d_y.len(), dims);
        let (blocks, rest) = work.split_at_mut(M * M * tiles);
        let rows = &mut rest[..A * M * tiles];
        for o in 0..o_n {
            // blocks[(r·M + q)·T + t]: row r, column q of tile t's outputs (zero past the
            // edge).
            for s in 0..samples {
                let plane = &d_y[(s * o_n + o) * plane_len..][..plane_len];
                for r in 0..M {
                    for q in 0..M {
                        let dst = &mut blocks[(r * M + q) * tiles + s * per_sample..][..per_sample];
                        for (ti, dst) in dst.chunks_exact_mut(tw).enumerate() {
                            let yr = M * ti + r;
                            if yr >= h {
                                dst.fill(0.0);
                                continue;
                            }
                            let row = &plane[yr * w..(yr + 1) * w];
                            for (tj, d) in dst.iter_mut().enumerate() {
                                *d = row.get(M * tj + q).copied().unwrap_or(0.0);
                            }
                        }
                    }
                }
            }
            // A over the rows: rows[(i·M + q)·T + t]; then Aᵀ over the columns.
            for q in 0..M {
                a4(&blocks[q * tiles..], M * tiles, &mut rows[q * tiles..], M * tiles, tiles);
            }
            for i in 0..A {
                a4(
                    &rows[i * M * tiles..(i + 1) * M * tiles],
                    tiles,
                    &mut d_m[(i * A * o_n + o) * ld..],
                    o_n * ld,
                    tiles,
                );
            }
        }
    }
}
