//! The forward pass of every convolution the direct kernels do not take (strides above 1,
//! more than 16 output channels, 1×1 kernels): per sample one packed matrix product
//! ([`crate::ops::packed`]), `y_n[O, OH·OW] = w[O, C·KH·KW] · unfold(x_n) + b`, in which the
//! unfolded input is never written out.
//!
//! The product asks for the unfolded input a block of 32 columns (output positions) at a time
//! and [`Unfold`] writes each block straight from a *phase-split* copy of the sample: each
//! zero-padded input row `xp` is stored as `SW` rows, phase `r` holding `xp[r], xp[r + SW],
//! xp[r + 2·SW], …`. Then the inputs that tap `(c, u, v)` reads along one output row are
//! consecutive values of one phase (`v mod SW`, from `⌊v / SW⌋` on), so a block is a few
//! plain copies per tap whatever the stride: the row-wise pieces of its 32 positions.
//! For AlexNet's conv1 (stride 4) the copy is 1.3 times the input, against 7.6 times for
//! the unfolded matrix of im2col, and writing a block costs a few per cent of multiplying it.
//! With stride 1 and no padding the sample itself is used.

use super::Conv2dGeom;
use crate::ops::packed::{self, Isa, PackB, MAX_NR};
use crate::ops::parallel::{self, SharedMut};

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
    const fn of(g: &Conv2dGeom) -> Phases {
        let s = g.stride_w;
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
}

/// Values of scratch one task needs: the phase-split sample and the block of `B`.
const fn task_len(g: &Conv2dGeom, isa: Isa) -> usize {
    Phases::of(g).len(g) + packed::packed_b_len(isa)
}

/// Values of scratch [`forward`] needs with `tasks` tasks: the packed weights, then one
/// [`task_len`] per task.
pub(super) const fn scratch_len(g: &Conv2dGeom, isa: Isa, tasks: usize) -> usize {
    packed::packed_a_len(isa, g.out_c, g.col_rows()) + tasks * task_len(g, isa)
}

/// [`super::forward`] for `n` samples in `tasks` tasks (runs of samples), `scratch` being at
/// least [`scratch_len`].
// The arguments of `forward`, plus the split and the instruction set it was sized for.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &Conv2dGeom,
    n: usize,
    tasks: usize,
    isa: Isa,
    scratch: &mut [f32],
) {
    let (m, k) = (g.out_c, g.col_rows());
    let (a, rest) = scratch.split_at_mut(packed::packed_a_len(isa, m, k));
    packed::pack_a(isa, w, m, k, a);
    let a = &*a;
    let per_task = task_len(g, isa);
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let y_all = SharedMut::new(y);
    let bufs = SharedMut::new(&mut rest[..tasks * per_task]);
    parallel::run(tasks, |t| {
        let samples = parallel::part(n, tasks, t);
        // Safety: task `t` alone touches its samples' outputs and its own part of the scratch;
        // `run` returns before `y` and `scratch` are borrowed again.
        let (y_t, buf) = unsafe {
            (
                y_all.slice(samples.start * out_len, samples.len() * out_len),
                bufs.slice(t * per_task, per_task),
            )
        };
        let x_t = &x[samples.start * in_len..samples.end * in_len];
        for (y_n, x_n) in y_t.chunks_exact_mut(out_len).zip(x_t.chunks_exact(in_len)) {
            forward_sample(y_n, x_n, a, b, g, isa, buf);
        }
    });
}

/// One sample: `y_n = a · unfold(x_n) + b`, `a` being the weights packed for `isa`.
fn forward_sample(
    y_n: &mut [f32],
    x_n: &[f32],
    a: &[f32],
    b: Option<&[f32]>,
    g: &Conv2dGeom,
    isa: Isa,
    buf: &mut [f32],
) {
    let phases = Phases::of(g);
    let (split, b_buf) = buf.split_at_mut(phases.len(g));
    let source: &[f32] = if phases.identity {
        x_n
    } else {
        split_phases(split, x_n, g, &phases);
        split
    };
    let unfold = Unfold { source, g, phases };
    let area = g.out_h * g.out_w;
    let dims = [g.out_c, g.col_rows(), area];
    packed::gemm(isa, dims, a, &unfold, b, y_n, area, b_buf);
}

/// Writes the phase-split, zero-padded copy of `x` (one sample) into `dst`.
fn split_phases(dst: &mut [f32], x: &[f32], g: &Conv2dGeom, p: &Phases) {
    let (s, wq) = (p.s, p.wq);
    let rows = dst.chunks_exact_mut(s * wq);
    for (i, row) in rows.enumerate() {
        let (c, iy) = (i / p.hp, i % p.hp);
        let Some(h) = iy.checked_sub(g.pad_h).filter(|&h| h < g.in_h) else {
            row.fill(0.0);
            continue;
        };
        let x_row = &x[(c * g.in_h + h) * g.in_w..][..g.in_w];
        for (r, phase) in row.chunks_exact_mut(wq).enumerate() {
            // Phase `r` holds padded column `j·s + r`, input column `j·s + r - PW`.
            let start = g.pad_w.saturating_sub(r).div_ceil(s).min(wq);
            let end = (g.in_w + g.pad_w)
                .saturating_sub(r)
                .div_ceil(s)
                .clamp(start, wq);
            phase[..start].fill(0.0);
            phase[end..].fill(0.0);
            if start < end {
                let first = start * s + r - g.pad_w;
                let inputs = x_row[first..].iter().step_by(s);
                for (d, &v) in phase[start..end].iter_mut().zip(inputs) {
                    *d = v;
                }
            }
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
    fn pack(&self, isa: Isa, k0: usize, kc: usize, n0: usize, cols: usize, dst: &mut [f32]) {
        let (g, p) = (self.g, &self.phases);
        let nr = isa.nr();
        // The block's columns, cut where output rows end: (offset in the source, first
        // column, count). The offset of a piece is that of tap (0, 0, 0).
        let mut pieces = [(0usize, 0usize, 0usize); MAX_NR];
        let mut count = 0;
        let mut j = 0;
        while j < cols {
            let (oh, ow) = ((n0 + j) / g.out_w, (n0 + j) % g.out_w);
            let len = (g.out_w - ow).min(cols - j);
            pieces[count] = (oh * g.stride_h * p.s * p.wq + ow, j, len);
            count += 1;
            j += len;
        }
        let pieces = &pieces[..count];
        // Tap k0 as (c, u, v), and v as (q, r) = (v / SW, v mod SW).
        let taps = g.k_h * g.k_w;
        let (mut c, mut u, mut v) = (k0 / taps, k0 % taps / g.k_w, k0 % g.k_w);
        let (mut q, mut r) = (v / p.s, v % p.s);
        for row in dst.chunks_exact_mut(nr).take(kc) {
            let tap = ((c * p.hp + u) * p.s + r) * p.wq + q;
            for &(at, first, len) in pieces {
                row[first..first + len].copy_from_slice(&self.source[tap + at..tap + at + len]);
            }
            row[cols..].fill(0.0);
            v += 1;
            r += 1;
            if r == p.s {
                r = 0;
                q += 1;
            }
            if v == g.k_w {
                (v, q, r) = (0, 0, 0);
                u += 1;
                if u == g.k_h {
                    u = 0;
                    c += 1;
                }
            }
        }
    }
}
