//! Fully connected layer `y = x Wᵀ + b`, forward and backward.

use super::grown;
use super::isa::Isa;
use super::packed::{self, MatA, Out, PackB, Rows};
use super::parallel::{self, SharedMut};
use super::LayerShapes;

mod dot;
mod loops;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

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

    /// The shapes the kernels check their slices against.
    fn shapes(&self) -> LayerShapes<1, 1, 2> {
        LayerShapes {
            input: [self.in_f],
            output: [self.out_f],
            weights: [self.out_f, self.in_f],
        }
    }
}

/// `y = x wᵀ + b`, with `w` in PyTorch's `[out, in]` layout. `y` is overwritten.
///
/// A few rows are dot products; a batch of up to [`MAX_LOOP_MACS`] multiply-adds, dot
/// products eight rows at a time; a larger one, one packed matrix product (the kernel of the
/// convolutions), its buffers in `scratch` (grown on first use, reused after that). All three
/// sum each output in the same order, so results do not depend on the path a batch size takes
/// (with striate's own kernels; on the matrixmultiply path,
/// [`Kernels::Matrixmultiply`](crate::ops::Kernels::Matrixmultiply), the packed product is
/// matrixmultiply's, which orders its sums its own way).
///
/// # Panics
/// Unless `y` has `n·O` values, `x` `n·I`, `w` `O·I` and `b`, when given, `O` (checked before
/// anything is written, in release builds too).
///
/// # Example
/// ```
/// use striate::ops::linear::{forward, LinearGeom};
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
    g.shapes().check_forward("linear::forward", n, y, x, w, b);
    let threads = parallel::threads();
    let isa = Isa::current();
    if n == 1 && threads > 1 && g.weight_len() >= MIN_SPLIT_WEIGHTS {
        split_outputs(y, x, w, b, g, threads, isa);
    } else if n <= MAX_DOT_ROWS {
        dot::forward(y, x, w, b, g, n, isa);
    } else if small(g, n) {
        // Eight rows at a time: the same sums as the packed product's.
        let rows = MAX_DOT_ROWS;
        for (y_c, x_c) in y.chunks_mut(rows * g.out_f).zip(x.chunks(rows * g.in_f)) {
            dot::forward(y_c, x_c, w, b, g, y_c.len() / g.out_f, isa);
        }
    } else {
        forward_packed(y, x, w, b, g, n, (isa, split_tasks(g, n, threads)), scratch);
    }
}

/// Multiply-adds from which a packed product is split over the threads by its outputs
/// ([`forward_packed`], [`add_weight_grad_with`], [`add_input_grad_with`]): each thread then
/// reads only its own part of the weights (AlexNet's fc6 holds 151 MB of them), where
/// splitting the batch would have every thread stream all of them.
const MIN_SPLIT_MACS: usize = 1 << 24;

/// Tasks a packed product of layer `g` at batch `n` is split into: one per thread when it has
/// at least [`MIN_SPLIT_MACS`] multiply-adds, else one.
fn split_tasks(g: &LinearGeom, n: usize, threads: usize) -> usize {
    let macs = n.saturating_mul(g.weight_len());
    if threads > 1 && macs >= MIN_SPLIT_MACS {
        threads
    } else {
        1
    }
}

/// Task `t`'s part of `len` rows or columns split into `tasks` parts, in whole runs of
/// `unit` (a register tile's rows or columns) but the last.
fn unit_part(len: usize, unit: usize, tasks: usize, t: usize) -> std::ops::Range<usize> {
    let units = len.div_ceil(unit);
    let p = parallel::part(units, tasks, t);
    (p.start * unit).min(len)..(p.end * unit).min(len)
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
    isa: Isa,
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
        dot::forward(y_t, x, w_t, b.map(|b| &b[outs]), &part, 1, isa);
    });
}

/// Up to this many multiply-adds per call, a linear layer does not pack: the forward pass
/// runs dot products eight rows at a time and the backward pass register-blocked loops. LeNet-5's
/// fc1 on a shard of 32 samples is 1.5 M (measured when `sgemm` took the large layers, which
/// also allocated on every call).
pub const MAX_LOOP_MACS: usize = 1 << 22;

/// The most scratch [`forward`] and [`backward`] grow to at batch `n`: none on the paths
/// that do not pack, else the packed products' buffers. What a tape reserves for the layer
/// before a pass (fallibly), so that the kernels allocate nothing.
#[doc(hidden)]
pub fn scratch_needed(g: &LinearGeom, n: usize) -> usize {
    if small(g, n) {
        return 0;
    }
    let isa = Isa::current();
    let tasks = split_tasks(g, n, parallel::threads());
    let (o_f, b_len) = (g.out_f, tasks.saturating_mul(packed::packed_b_len(isa)));
    let forward = o_f.saturating_mul(n).saturating_add(b_len);
    let weight_grad = packed::packed_a_len(isa, o_f, n).saturating_add(b_len);
    let input_grad = packed::packed_a_len(isa, n, o_f)
        .saturating_add(b_len)
        .saturating_add(column_parts_len(isa, n, g.in_f, tasks));
    forward.max(weight_grad).max(input_grad)
}

/// Whether `g` at batch `n` takes the paths that do not pack.
fn small(g: &LinearGeom, n: usize) -> bool {
    g.in_f > 0 && g.out_f > 0 && n.saturating_mul(g.in_f).saturating_mul(g.out_f) <= MAX_LOOP_MACS
}

/// [`forward`] as one packed product, transposed: `yᵀ[O, N] = b + w[O, I] · xᵀ[I, N]`, then
/// `y = (yᵀ)ᵀ`. The weights are read where they lie: each is used by only `N` rows, so packing
/// them would cost more than the sums (AlexNet's fc6 at batch 16, 1 thread: 59 ms packing
/// `wᵀ`, 33 ms reading `w` in place); the batch's inputs are packed instead. Each output is
/// the bias, then each block of products added to it, as [`dot::forward`] sums it. With
/// `tasks > 1` the outputs are split between the tasks (whole panels of rows of `w` each),
/// each packing the inputs into a buffer of its own: every output is summed as without the
/// split, so the results are the same bits.
// The arguments of `forward`, plus the instruction set and the tasks.
#[allow(clippy::too_many_arguments)]
fn forward_packed(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &LinearGeom,
    n: usize,
    (isa, tasks): (Isa, usize),
    scratch: &mut Vec<f32>,
) {
    let (i_f, o_f) = (g.in_f, g.out_f);
    let b_len = packed::packed_b_len(isa);
    let buf = grown(scratch, o_f * n + tasks * b_len);
    let (y_t, b_bufs) = buf.split_at_mut(o_f * n);
    let x_t = Transposed { data: x, ld: i_f };
    let (y_all, b_all) = (SharedMut::new(y_t), SharedMut::new(b_bufs));
    parallel::run(tasks, |t| {
        let outs = unit_part(o_f, isa.mr(), tasks, t);
        // Safety: task `t` alone touches rows `outs` of `yᵀ` and its own packing buffer;
        // `run` returns before either is borrowed again.
        let (y_t, b_buf) = unsafe {
            (
                y_all.slice(outs.start * n, outs.len() * n),
                b_all.slice(t * b_len, b_len),
            )
        };
        let w_rows = MatA::Rows {
            data: &w[outs.start * i_f..outs.end * i_f],
            ld: i_f,
        };
        let bias = Out::Set(b.map(|b| &b[outs.clone()]));
        packed::gemm(isa, [outs.len(), i_f, n], w_rows, &x_t, bias, y_t, n, b_buf);
    });
    for (o, y_o) in y_t.chunks_exact(n).enumerate() {
        for (s, &v) in y_o.iter().enumerate() {
            y[s * o_f + o] = v;
        }
    }
}

/// The transpose of a row-major matrix as a [`PackB`]: `B[k][j] = data[j·ld + k]` (the
/// inputs `[N, I]` read as `xᵀ[I, N]`), each of a block's columns read along a stored row.
pub(crate) struct Transposed<'a> {
    /// The stored matrix, `[N, K]` row-major.
    pub data: &'a [f32],
    /// The distance between its rows.
    pub ld: usize,
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

/// The gradients of [`forward`]: `d_w += d_yᵀ x`, `d_b += Σ_n d_y`, and, when `d_x` is given,
/// `d_x += d_y w`. All three accumulate. Up to [`MAX_LOOP_MACS`], each is a loop that keeps
/// blocks of the gradient rows in registers; above, one packed product, its buffers in
/// `scratch`.
///
/// # Panics
/// Unless `d_y` has `n·O` values, `x` and `d_x` (when given) `n·I`, `w` and `d_w` `O·I`, and
/// `d_b` (when given) `O` (checked before anything is written, in release builds too).
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
    let (kernel, shapes) = ("linear::backward", g.shapes());
    shapes.check_backward(kernel, n, d_x.as_deref(), d_w, d_b.as_deref(), d_y, x, w);
    let o_f = g.out_f;
    let isa = Isa::current();
    if let Some(d_b) = d_b {
        if o_f > 0 {
            for row in d_y.chunks_exact(o_f) {
                for (d, &v) in d_b.iter_mut().zip(row) {
                    *d += v;
                }
            }
        }
    }
    add_weight_grad_with(d_w, d_y, x, g, n, isa, scratch);
    if let Some(d_x) = d_x {
        add_input_grad_with(d_x, d_y, w, g, n, isa, scratch);
    }
}

/// The input gradient of [`backward`] alone, `d_x += d_y w`, without the weight and bias
/// gradients: what a network runs for a frozen linear layer that still has a layer below it
/// to pass a gradient to (see [`Transfer::freeze`](crate::Transfer::freeze)). It
/// accumulates; `scratch` grows on first use only.
///
/// # Panics
/// Unless `d_x` has `n·I` values, `d_y` `n·O` and `w` `O·I` (checked before anything is
/// written, in release builds too).
pub fn backward_input(
    d_x: &mut [f32],
    d_y: &[f32],
    w: &[f32],
    g: &LinearGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    // d_y: (N, O), w: (O, I) -> d_x: (N, I), accumulated
    let (kernel, s) = ("linear::backward_input", g.shapes());
    s.check_backward_input(kernel, n, d_x, d_y, w);
    add_input_grad(d_x, d_y, w, g, n, scratch);
}

/// `d_w += d_yᵀ x`, [`backward`]'s weight gradient alone (`d_y: (N, O)`, `x: (N, I)`, `d_w:
/// (O, I)`), for kernels that build on the linear layer's products (the restricted Boltzmann
/// machine's contrastive divergence). Lengths are checked with `debug_assert!` only.
pub(crate) fn add_weight_grad(
    d_w: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    g: &LinearGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    debug_assert_eq!(d_w.len(), g.weight_len());
    add_weight_grad_with(d_w, d_y, x, g, n, Isa::current(), scratch);
}

/// `d_x += d_y w`, [`backward`]'s input gradient alone (`d_y: (N, O)`, `w: (O, I)`, `d_x: (N,
/// I)`): the product of a batch of outputs with the weights, as [`add_weight_grad`].
pub(crate) fn add_input_grad(
    d_x: &mut [f32],
    d_y: &[f32],
    w: &[f32],
    g: &LinearGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    debug_assert_eq!(d_x.len(), n * g.in_f);
    add_input_grad_with(d_x, d_y, w, g, n, Isa::current(), scratch);
}

/// [`add_weight_grad`] on `isa`: register-blocked loops up to [`MAX_LOOP_MACS`], one packed
/// product above, its rows (the outputs) split over the threads ([`split_tasks`]).
fn add_weight_grad_with(
    d_w: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    g: &LinearGeom,
    n: usize,
    isa: Isa,
    scratch: &mut Vec<f32>,
) {
    let (i_f, o_f) = (g.in_f, g.out_f);
    if small(g, n) {
        loops::add_weight_grad(d_w, d_y, x, g, n, isa);
    } else {
        let tasks = split_tasks(g, n, parallel::threads());
        let len = packed::packed_a_len(isa, o_f, n) + tasks * packed::packed_b_len(isa);
        let buf = grown(scratch, len);
        // d_w[O, I] += d_yᵀ[O, N] · x[N, I]
        let a = (d_y, [1, o_f]);
        add_product(isa, (tasks, Split::Rows), a, [o_f, n, i_f], x, d_w, buf);
    }
}

/// [`add_input_grad`] on `isa`, as [`add_weight_grad_with`], the columns (the inputs) split
/// over the threads: there are only as many rows as samples.
fn add_input_grad_with(
    d_x: &mut [f32],
    d_y: &[f32],
    w: &[f32],
    g: &LinearGeom,
    n: usize,
    isa: Isa,
    scratch: &mut Vec<f32>,
) {
    let (i_f, o_f) = (g.in_f, g.out_f);
    if small(g, n) {
        loops::add_input_grad(d_x, d_y, w, g, n, isa);
    } else {
        let tasks = split_tasks(g, n, parallel::threads());
        let len = packed::packed_a_len(isa, n, o_f)
            + tasks * packed::packed_b_len(isa)
            + column_parts_len(isa, n, i_f, tasks);
        let buf = grown(scratch, len);
        // d_x[N, I] += d_y[N, O] · w[O, I]
        let a = (d_y, [o_f, 1]);
        add_product(isa, (tasks, Split::Columns), a, [n, o_f, i_f], w, d_x, buf);
    }
}

/// How [`add_product`] splits `C` between its tasks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Split {
    /// By rows, whole panels of packed `A` each: a task writes its own rows of `C`.
    Rows,
    /// By columns, whole blocks of `B` each: a task sums its columns of `C` in a buffer of
    /// its own (copied from `C` first, then back), since its part of `C` is not contiguous.
    Columns,
}

/// Values [`add_product`] needs for the columns of `C` (`m × n`) of `tasks` tasks split by
/// [`Split::Columns`]: none for one task (it adds into `C` itself).
fn column_parts_len(isa: Isa, m: usize, n: usize, tasks: usize) -> usize {
    if tasks <= 1 {
        return 0;
    }
    let most = (0..tasks)
        .map(|t| unit_part(n, isa.nr(), tasks, t).len())
        .max();
    tasks.saturating_mul(m.saturating_mul(most.unwrap_or(0)))
}

/// `c[m, n] += a[m, k] · b[k, n]`: `a` given with its strides (packed into the front of `buf`
/// first), `b` and `c` row-major, `buf` holding the packed `a`, then one block of `B` per task,
/// then (for [`Split::Columns`]) the tasks' columns of `c`. Each value of `c` gets the same
/// sums in the same order whatever the split, so the results are the same bits.
fn add_product(
    isa: Isa,
    (tasks, split): (usize, Split),
    (a, strides): (&[f32], [usize; 2]),
    [m, k, n]: [usize; 3],
    b: &[f32],
    c: &mut [f32],
    buf: &mut [f32],
) {
    let b_len = packed::packed_b_len(isa);
    let (packed_a, rest) = buf.split_at_mut(packed::packed_a_len(isa, m, k));
    let (b_bufs, parts) = rest.split_at_mut(tasks * b_len);
    packed::pack_a(isa, a, strides, [m, k], packed_a);
    let packed_a = &*packed_a;
    if tasks <= 1 {
        let b_rows = Rows { data: b, ld: n };
        let a = MatA::Packed(packed_a);
        packed::gemm(
            isa,
            [m, k, n],
            a,
            &b_rows,
            Out::Add,
            c,
            n,
            &mut b_bufs[..b_len],
        );
        return;
    }
    let b_all = SharedMut::new(b_bufs);
    match split {
        Split::Rows => {
            let c_all = SharedMut::new(c);
            parallel::run(tasks, |t| {
                let rows = unit_part(m, isa.mr(), tasks, t);
                // Safety: task `t` alone touches rows `rows` of `c` and its own block
                // buffer; `run` returns before either is borrowed again.
                let (c_t, b_buf) = unsafe {
                    (
                        c_all.slice(rows.start * n, rows.len() * n),
                        b_all.slice(t * b_len, b_len),
                    )
                };
                // Whole panels: rows.start is a multiple of MR.
                let a = MatA::Packed(&packed_a[rows.start * k..]);
                let b_rows = Rows { data: b, ld: n };
                packed::gemm(isa, [rows.len(), k, n], a, &b_rows, Out::Add, c_t, n, b_buf);
            });
        }
        Split::Columns => {
            let part_len = parts.len() / tasks;
            let parts_all = SharedMut::new(parts);
            let c_read = &*c;
            parallel::run(tasks, |t| {
                let cols = unit_part(n, isa.nr(), tasks, t);
                if cols.is_empty() {
                    return;
                }
                // Safety: task `t` alone touches its own part of `parts` and its own block
                // buffer; `run` returns before either is borrowed again.
                let (c_t, b_buf) = unsafe {
                    (
                        &mut parts_all.slice(t * part_len, part_len)[..m * cols.len()],
                        b_all.slice(t * b_len, b_len),
                    )
                };
                for (row, c_row) in c_t.chunks_exact_mut(cols.len()).enumerate() {
                    c_row.copy_from_slice(&c_read[row * n + cols.start..row * n + cols.end]);
                }
                let b_rows = Rows {
                    data: &b[cols.start..],
                    ld: n,
                };
                let a = MatA::Packed(packed_a);
                let dims = [m, k, cols.len()];
                packed::gemm(isa, dims, a, &b_rows, Out::Add, c_t, cols.len(), b_buf);
            });
            for t in 0..tasks {
                let cols = unit_part(n, isa.nr(), tasks, t);
                if cols.is_empty() {
                    continue;
                }
                let c_t = &parts[t * part_len..][..m * cols.len()];
                for (row, c_row) in c_t.chunks_exact(cols.len()).enumerate() {
                    c[row * n + cols.start..row * n + cols.end].copy_from_slice(c_row);
                }
            }
        }
    }
}
