//! The convolutions the direct kernels do not take (strides above 1, more than 16 output
//! channels, 1×1 kernels), forward and backward, as packed matrix products
//! ([`crate::ops::packed`]) in which the unfolded input is never written out.
//!
//! **Forward**, per sample: `y_n[O, OH·OW] = w[O, C·KH·KW] · unfold(x_n) + b`. The product
//! asks for the unfolded input a block of 32 columns (output positions) at a time and
//! [`Unfold`] writes each block straight from a *phase-split* copy of the sample: each
//! zero-padded input row `xp` is stored as `SW` rows, phase `r` holding `xp[r], xp[r + SW],
//! xp[r + 2·SW], …`. Then the inputs that tap `(c, u, v)` reads along one output row are
//! consecutive values of one phase (`v mod SW`, from `⌊v / SW⌋` on), so a block is a few
//! plain copies per tap whatever the stride: the row-wise pieces of its 32 positions.
//! For AlexNet's conv1 (stride 4) the copy is 1.3 times the input, against 7.6 times for
//! the unfolded matrix of im2col. With stride 1 and no padding the sample itself is used.
//!
//! **Backward**, per sample: `d_w[O, C·KH·KW] += d_y_n[O, OH·OW] · unfold(x_n)ᵀ`, the
//! transposed unfolded input packed by [`Taps`] from the zero-padded sample (a block is 32
//! taps of a run of positions: runs of `KW` consecutive inputs), and
//! `d_x_n += fold(wᵀ · d_y_n)`, the product written into an unfolded buffer that
//! [`fold_add`] then adds back onto the input positions it came from, by way of the phase
//! split again; or, for stride 1 with little padding, as the forward pass of the flipped
//! kernels over the output gradient ([`input_gradient_geometry`]).

use super::Conv2dGeom;
use crate::ops::isa::Isa;
use crate::ops::packed::{self, Out, PackB, Rows};
use crate::ops::parallel::{self, SharedMut};
use std::ops::Range;

/// The shape of the phase-split sample: `C × HP` rows of `SW` phases of `WQ` values.
#[derive(Clone, Copy, Debug)]
struct Phases {
    /// Phases per row: the horizontal stride.
    s: usize,
    /// Rows per channel: the padded input height.
    hp: usize,
    /// Values per phase: the padded input width divided by the stride, rounded up.
    wq: usize,
    /// Whether the sample itself is already in this layout (stride 1, no padding).
    identity: bool,
}

impl Phases {
    /// The forward pass's split: one phase per horizontal step.
    const fn of(g: &Conv2dGeom) -> Phases {
        Phases::with(g, g.stride_w)
    }

    /// The zero-padded sample, unsplit (one phase).
    const fn padded(g: &Conv2dGeom) -> Phases {
        Phases::with(g, 1)
    }

    const fn with(g: &Conv2dGeom, s: usize) -> Phases {
        Phases {
            s,
            hp: g.in_h + 2 * g.pad_h,
            wq: (g.in_w + 2 * g.pad_w).div_ceil(s),
            identity: s == 1 && g.pad_h == 0 && g.pad_w == 0,
        }
    }

    /// Values of the copy (none when the sample is used as it is).
    const fn len(&self, g: &Conv2dGeom) -> usize {
        if self.identity {
            0
        } else {
            g.in_c * self.hp * self.s * self.wq
        }
    }

    /// Values of scratch [`split_phases`] needs: the copy and one padded row.
    const fn scratch_len(&self, g: &Conv2dGeom) -> usize {
        if self.identity {
            0
        } else {
            self.len(g) + self.s * self.wq
        }
    }
}

/// Values of scratch one task needs: the phase-split sample and the block of `B`.
pub(super) const fn task_len(g: &Conv2dGeom, isa: Isa) -> usize {
    Phases::of(g).scratch_len(g) + packed::packed_b_len(isa)
}

/// Values of scratch all tasks share: the packed weights.
pub(super) const fn shared_len(g: &Conv2dGeom, isa: Isa) -> usize {
    packed::packed_a_len(isa, g.out_c, g.col_rows())
}

/// Packs the weights `w` (`O × C·KH·KW`) for [`forward_sample`] into `dst` ([`shared_len`]).
pub(super) fn pack_weights(dst: &mut [f32], w: &[f32], g: &Conv2dGeom, isa: Isa) {
    let (m, k) = (g.out_c, g.col_rows());
    packed::pack_a(isa, w, [k, 1], [m, k], dst);
}

/// One sample of [`super::forward`]: `y_n = w · unfold(x_n) + b` (`out` says whether it is
/// set, with which bias, or added), the weights packed by [`pack_weights`] for `isa` and
/// `buf` being [`task_len`] values.
pub(super) fn forward_sample(
    y_n: &mut [f32],
    x_n: &[f32],
    packed_w: &[f32],
    out: Out<'_>,
    g: &Conv2dGeom,
    isa: Isa,
    buf: &mut [f32],
) {
    let phases = Phases::of(g);
    let (split, b_buf) = buf.split_at_mut(phases.scratch_len(g));
    let unfold = Unfold {
        source: split_phases(split, x_n, g, &phases),
        g,
        phases,
    };
    let area = g.out_h * g.out_w;
    let dims = [g.out_c, g.col_rows(), area];
    packed::gemm(
        isa,
        dims,
        packed::MatA::Packed(packed_w),
        &unfold,
        out,
        y_n,
        area,
        b_buf,
    );
}

/// How many parts [`forward_sample_parts`] splits a sample's output channels into for
/// `threads` threads: one per thread, as long as each gets a whole panel of rows.
pub(super) const fn channel_parts(g: &Conv2dGeom, isa: Isa, threads: usize) -> usize {
    let panels = g.out_c.div_ceil(isa.mr());
    if threads < panels {
        threads
    } else {
        panels
    }
}

/// [`forward_sample`] with the output channels split into `parts` runs of whole panels, one
/// task each, sharing the sample's phase split: the same sums, in the same order, so the
/// same results. `bufs` is `parts` times [`task_len`] values.
// The arguments of `forward_sample`, plus the split.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_sample_parts(
    y_n: &mut [f32],
    x_n: &[f32],
    packed_w: &[f32],
    b: Option<&[f32]>,
    g: &Conv2dGeom,
    isa: Isa,
    bufs: &mut [f32],
    parts: usize,
) {
    let phases = Phases::of(g);
    let (split, b_bufs) = bufs.split_at_mut(phases.scratch_len(g));
    let unfold = Unfold {
        source: split_phases(split, x_n, g, &phases),
        g,
        phases,
    };
    let (mr, k, area) = (isa.mr(), g.col_rows(), g.out_h * g.out_w);
    let b_len = packed::packed_b_len(isa);
    let panels = g.out_c.div_ceil(mr);
    let y_all = SharedMut::new(y_n);
    let b_all = SharedMut::new(&mut b_bufs[..parts * b_len]);
    parallel::run(parts, |t| {
        let p = parallel::part(panels, parts, t);
        let rows = p.start * mr..(p.end * mr).min(g.out_c);
        if rows.is_empty() {
            return;
        }
        // Safety: task `t` alone touches output rows `rows` and its own block buffer; `run`
        // returns before `y_n` and `bufs` are borrowed again.
        let (y_t, b_buf) = unsafe {
            (
                y_all.slice(rows.start * area, rows.len() * area),
                b_all.slice(t * b_len, b_len),
            )
        };
        let a = &packed_w[p.start * mr * k..];
        let bias = Out::Set(b.map(|b| &b[rows.clone()]));
        packed::gemm(
            isa,
            [rows.len(), k, area],
            packed::MatA::Packed(a),
            &unfold,
            bias,
            y_t,
            area,
            b_buf,
        );
    });
}

/// The geometry whose forward pass gives `g`'s input gradient, when [`backward_sample`] takes
/// that way: stride 1 and little padding work, the inputs at most 1.25 times the outputs
/// (`3×3` with padding 1, `5×5` with padding 2, a `1×1`). The product then reads the output
/// gradient like any input, through the phase split, and adds straight into `d_x`: no
/// unfolded gradient to write and fold back (AlexNet's conv3 to conv5 at batch 16, 1 thread:
/// 67-69 -> 79-84 GFLOP/s for the input gradient). Elsewhere (strides above 1, or more
/// padding work) the unfolded gradient is folded.
pub(super) const fn input_gradient_geometry(g: &Conv2dGeom) -> Option<Conv2dGeom> {
    match super::direct::transposed(g) {
        Some(t) if 4 * g.in_h * g.in_w <= 5 * g.out_h * g.out_w => Some(t),
        _ => None,
    }
}

/// Values of scratch the tasks of [`backward_sample`] share: the weights packed for the input
/// gradient (flipped and transposed for [`input_gradient_geometry`], else transposed).
pub(super) const fn backward_shared_len(g: &Conv2dGeom, isa: Isa) -> usize {
    match input_gradient_geometry(g) {
        Some(t) => packed::packed_a_len(isa, t.out_c, t.col_rows()),
        None => packed::packed_a_len(isa, g.col_rows(), g.out_c),
    }
}

/// Values of scratch one task of [`backward_sample`] needs: the padded sample, the packed
/// output gradient and the block of `B`, then either the phase-split output gradient
/// ([`input_gradient_geometry`]) or the unfolded input gradient and its phase split.
pub(super) const fn backward_task_len(g: &Conv2dGeom, isa: Isa) -> usize {
    let area = g.out_h * g.out_w;
    let input_grad = if let Some(t) = input_gradient_geometry(g) {
        Phases::of(&t).scratch_len(&t)
    } else {
        g.col_rows() * fold_rows(g) * g.out_w + Phases::of(g).len(g)
    };
    Phases::padded(g).scratch_len(g)
        + packed::packed_a_len(isa, g.out_c, area)
        + packed::packed_b_len(isa)
        + input_grad
}

/// Packs the weights for [`backward_sample`]'s input gradient into `dst`
/// ([`backward_shared_len`]): for [`input_gradient_geometry`], its kernels, `w` flipped and
/// transposed (`[C, O·KH·KW]`: `w[o, c, KH-1-u, KW-1-v]` at `(c, (o·KH + u)·KW + v)`); else
/// `wᵀ` (`C·KH·KW × O`).
pub(super) fn pack_weights_t(dst: &mut [f32], w: &[f32], g: &Conv2dGeom, isa: Isa) {
    if input_gradient_geometry(g).is_some() {
        let (kh, kw, c_n) = (g.k_h, g.k_w, g.in_c);
        let taps = kh * kw;
        packed::pack_a_with(isa, [c_n, g.out_c * taps], dst, |c, k| {
            let (o, t) = (k / taps, k % taps);
            w[(o * c_n + c) * taps + taps - 1 - t]
        });
    } else {
        let (m, k) = (g.col_rows(), g.out_c);
        packed::pack_a(isa, w, [1, m], [m, k], dst);
    }
}

/// One sample of [`super::backward`], less the bias: `d_w += d_y_n · unfold(x_n)ᵀ` (when
/// `d_w` is given: the direct kernels may have taken it) and, when
/// `d_x_n` is given, `d_x_n +=` the forward pass of [`input_gradient_geometry`] on `d_y_n`, or
/// else `fold(wᵀ · d_y_n)`, the weights packed by [`pack_weights_t`] (only read then) and
/// `buf` being [`backward_task_len`] values.
// The operands of one sample's gradients, plus the packed weights and the scratch.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_sample(
    d_x_n: Option<&mut [f32]>,
    d_w: Option<&mut [f32]>,
    d_y_n: &[f32],
    x_n: &[f32],
    packed_w_t: &[f32],
    g: &Conv2dGeom,
    isa: Isa,
    buf: &mut [f32],
) {
    let (o, taps, area) = (g.out_c, g.col_rows(), g.out_h * g.out_w);
    let phases = Phases::padded(g);
    let (padded, rest) = buf.split_at_mut(phases.scratch_len(g));
    let (packed_d_y, rest) = rest.split_at_mut(packed::packed_a_len(isa, o, area));
    let (b_buf, rest) = rest.split_at_mut(packed::packed_b_len(isa));
    // d_w[O, C·KH·KW] += d_y_n[O, OH·OW] · unfold(x_n)ᵀ[OH·OW, C·KH·KW]
    if let Some(d_w) = d_w {
        packed::pack_a(isa, d_y_n, [area, 1], [o, area], packed_d_y);
        let unfolded_t = Taps {
            source: split_phases(padded, x_n, g, &phases),
            g,
            phases,
        };
        packed::gemm(
            isa,
            [o, area, taps],
            packed::MatA::Packed(packed_d_y),
            &unfolded_t,
            Out::Add,
            d_w,
            taps,
            b_buf,
        );
    }
    let Some(d_x_n) = d_x_n else {
        return;
    };
    if let Some(t) = input_gradient_geometry(g) {
        // d_x_n[C, H·W] += flipped[C, O·KH·KW] · unfold_t(d_y_n)
        let phases = Phases::of(&t);
        let unfold = Unfold {
            source: split_phases(rest, d_y_n, &t, &phases),
            g: &t,
            phases,
        };
        let dims = [t.out_c, t.col_rows(), t.out_h * t.out_w];
        packed::gemm(
            isa,
            dims,
            packed::MatA::Packed(packed_w_t),
            &unfold,
            Out::Add,
            d_x_n,
            t.out_h * t.out_w,
            b_buf,
        );
        return;
    }
    // col[C·KH·KW, OH·OW] = wᵀ · d_y_n, then added onto the inputs each entry came from,
    // a few output rows at a time so that `col` stays in the cache in between.
    let step = fold_rows(g);
    let (col, split) = rest.split_at_mut(g.col_rows() * step * g.out_w);
    let d_split = start_fold(d_x_n, g, split);
    for oh0 in (0..g.out_h).step_by(step) {
        let rows = oh0..(oh0 + step).min(g.out_h);
        let (n0, cols) = (rows.start * g.out_w, rows.len() * g.out_w);
        let d_y_part = Rows {
            data: &d_y_n[n0..],
            ld: area,
        };
        let col = &mut col[..taps * cols];
        let set = Out::Set(None);
        packed::gemm(
            isa,
            [taps, o, cols],
            packed::MatA::Packed(packed_w_t),
            &d_y_part,
            set,
            col,
            cols,
            b_buf,
        );
        fold_add(d_split, col, g, rows);
    }
    finish_fold(d_x_n, g, split);
}

/// Values of the unfolded input gradient [`backward_sample`] computes and folds at a time
/// (512 KiB, so that it stays in the L2 cache between the two).
const FOLD_VALUES: usize = 128 * 1024;

/// Output rows whose unfolded input gradient [`backward_sample`] computes and folds at a time:
/// as many as fit in [`FOLD_VALUES`], at least one (AlexNet's conv1: 6 rows of 55 positions
/// by 363 taps).
pub(super) const fn fold_rows(g: &Conv2dGeom) -> usize {
    let per_row = g.col_rows() * g.out_w;
    let rows = match FOLD_VALUES.checked_div(per_row) {
        Some(rows) => rows,
        None => 1,
    };
    if rows == 0 {
        1
    } else if rows < g.out_h {
        rows
    } else if g.out_h > 0 {
        g.out_h
    } else {
        1
    }
}

/// Where [`fold_add`] adds: `d_x` itself when the sample is its own phase split, else `split`
/// ([`Phases::of`] values), cleared.
fn start_fold<'a>(d_x: &'a mut [f32], g: &Conv2dGeom, split: &'a mut [f32]) -> &'a mut [f32] {
    let p = Phases::of(g);
    if p.identity {
        return d_x;
    }
    let split = &mut split[..p.len(g)];
    split.fill(0.0);
    split
}

/// The adjoint of unfolding (col2im) for the output rows `rows`: adds each entry of `col`
/// (`C·KH·KW × rows·OW`) onto the input it was read from, in `d_split` ([`start_fold`]). The
/// entries of one tap and one output row land on consecutive values of the phase-split
/// input (see the module's notes), so they are added with whole vectors.
fn fold_add(d_split: &mut [f32], col: &[f32], g: &Conv2dGeom, rows: Range<usize>) {
    let p = Phases::of(g);
    let (cols, out_w) = (rows.len() * g.out_w, g.out_w);
    for (t, col_t) in col.chunks_exact(cols).enumerate() {
        let (cu, v) = (t / g.k_w, t % g.k_w);
        let (c, u) = (cu / g.k_h, cu % g.k_h);
        let (q, r) = (v / p.s, v % p.s);
        for (oh, col_row) in rows.clone().zip(col_t.chunks_exact(out_w)) {
            let at = ((c * p.hp + oh * g.stride_h + u) * p.s + r) * p.wq + q;
            for (d, &e) in d_split[at..at + out_w].iter_mut().zip(col_row) {
                *d += e;
            }
        }
    }
}

/// Adds what [`fold_add`] gathered in `split` onto `d_x` (nothing to do when it went
/// straight into `d_x`): `d_x[c, h, w] += split[c, h + PH, (w + PW) mod SW, (w + PW) / SW]`.
fn finish_fold(d_x: &mut [f32], g: &Conv2dGeom, split: &[f32]) {
    let p = Phases::of(g);
    if p.identity {
        return;
    }
    for (i, d_x_row) in d_x.chunks_exact_mut(g.in_w).enumerate() {
        let (c, h) = (i / g.in_h, i % g.in_h);
        let row = &split[(c * p.hp + h + g.pad_h) * p.s * p.wq..][..p.s * p.wq];
        // Column `w` is phase `(w + PW) mod SW`, entry `(w + PW) / SW` of it: counted along
        // the row instead of divided for every value.
        let (mut q, mut r) = (g.pad_w / p.s, g.pad_w % p.s);
        for d in d_x_row.iter_mut() {
            *d += row[r * p.wq + q];
            r += 1;
            if r == p.s {
                r = 0;
                q += 1;
            }
        }
    }
}

/// The phase-split, zero-padded sample `x`: `x` itself when that is the same, else the copy
/// written into `dst`.
fn split_phases<'a>(dst: &'a mut [f32], x: &'a [f32], g: &Conv2dGeom, p: &Phases) -> &'a [f32] {
    if p.identity {
        return x;
    }
    let (s, wq) = (p.s, p.wq);
    let (dst, row_buf) = dst.split_at_mut(p.len(g));
    let padded = &mut row_buf[..s * wq];
    padded.fill(0.0);
    for (i, row) in dst.chunks_exact_mut(s * wq).enumerate() {
        let (c, iy) = (i / p.hp, i % p.hp);
        let Some(h) = iy.checked_sub(g.pad_h).filter(|&h| h < g.in_h) else {
            row.fill(0.0);
            continue;
        };
        // The padded row (its zeros stay from the fill above), then its phases: phase `r`
        // holds padded columns `r, r + s, r + 2s, …`.
        padded[g.pad_w..g.pad_w + g.in_w]
            .copy_from_slice(&x[(c * g.in_h + h) * g.in_w..][..g.in_w]);
        match s {
            2 => deinterleave::<2>(row, padded, wq),
            3 => deinterleave::<3>(row, padded, wq),
            4 => deinterleave::<4>(row, padded, wq),
            _ => {
                for (j, group) in padded.chunks_exact(s).enumerate() {
                    for (r, &v) in group.iter().enumerate() {
                        row[r * wq + j] = v;
                    }
                }
            }
        }
    }
    &dst[..]
}

/// `row[r·wq + j] = padded[j·S + r]`: one padded input row split into its `S` phases, `S` a
/// constant so that the compiler unrolls the phases.
#[inline(always)]
fn deinterleave<const S: usize>(row: &mut [f32], padded: &[f32], wq: usize) {
    let (row, padded) = (&mut row[..S * wq], &padded[..S * wq]);
    for (j, group) in padded.chunks_exact(S).enumerate() {
        let group: &[f32; S] = group.try_into().expect("S values");
        for (r, &v) in group.iter().enumerate() {
            row[r * wq + j] = v;
        }
    }
}

/// The unfolded input of one sample as the `B` of a packed product: row `(c·KH + u)·KW + v`,
/// column `oh·OW + ow` is the padded input at `(c, oh·SH + u, ow·SW + v)`.
struct Unfold<'a> {
    /// The phase-split sample (or the sample itself, when that is the same).
    source: &'a [f32],
    g: &'a Conv2dGeom,
    phases: Phases,
}

impl PackB for Unfold<'_> {
    #[inline(always)]
    fn pack_with(
        &self,
        nr: usize,
        [k0, kc]: [usize; 2],
        [n0, cols]: [usize; 2],
        dst: &mut [f32],
        copy: impl Fn(&mut [f32], &[f32]),
    ) {
        let (g, p) = (self.g, &self.phases);
        // The block's columns, cut where output rows end; offsets are those of tap (0, 0, 0).
        let (runs, count) = packed::cut_runs([n0, cols], |n| {
            let (oh, ow) = (n / g.out_w, n % g.out_w);
            (oh * g.stride_h * p.s * p.wq + ow, g.out_w - ow)
        });
        // Each tap (c, u, v), with v = q·SW + r, starts in phase r of row u, q values in.
        let taps = (k0..k0 + kc).map(|k| {
            let (cu, v) = (k / g.k_w, k % g.k_w);
            let (c, u) = (cu / g.k_h, cu % g.k_h);
            ((c * p.hp + u) * p.s + v % p.s) * p.wq + v / p.s
        });
        packed::copy_runs(nr, cols, dst, self.source, &runs[..count], taps, copy);
    }
}

/// The transposed unfolded input of one sample as the `B` of a packed product: row
/// `oh·OW + ow`, column `(c·KH + u)·KW + v` is the padded input at `(c, oh·SH + u, ow·SW + v)`.
struct Taps<'a> {
    /// The zero-padded sample (or the sample itself, when it has no padding).
    source: &'a [f32],
    g: &'a Conv2dGeom,
    /// The shape of `source` (one phase).
    phases: Phases,
}

impl PackB for Taps<'_> {
    #[inline(always)]
    fn pack_with(
        &self,
        nr: usize,
        [k0, kc]: [usize; 2],
        [n0, cols]: [usize; 2],
        dst: &mut [f32],
        copy: impl Fn(&mut [f32], &[f32]),
    ) {
        let (g, p) = (self.g, &self.phases);
        debug_assert_eq!(p.s, 1);
        // The block's taps, cut where kernel rows end; offsets are those of position (0, 0).
        let (runs, count) = packed::cut_runs([n0, cols], |t| {
            let (cu, v) = (t / g.k_w, t % g.k_w);
            let (c, u) = (cu / g.k_h, cu % g.k_h);
            ((c * p.hp + u) * p.wq + v, g.k_w - v)
        });
        // Each position (oh, ow) starts at row oh·SH, column ow·SW of the padded sample.
        let positions = (k0..k0 + kc).map(|k| {
            let (oh, ow) = (k / g.out_w, k % g.out_w);
            oh * g.stride_h * p.wq + ow * g.stride_w
        });
        packed::copy_runs(nr, cols, dst, self.source, &runs[..count], positions, copy);
    }
}
