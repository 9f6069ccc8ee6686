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
use crate::ops::packed::{self, Isa, PackB, MAX_NR, SLACK};

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
pub(super) const fn task_len(g: &Conv2dGeom, isa: Isa) -> usize {
    Phases::of(g).len(g) + packed::packed_b_len(isa)
}

/// Values of scratch all tasks share: the packed weights.
pub(super) const fn shared_len(g: &Conv2dGeom, isa: Isa) -> usize {
    packed::packed_a_len(isa, g.out_c, g.col_rows())
}

/// Packs the weights `w` (`O × C·KH·KW`) for [`forward_sample`] into `dst` ([`shared_len`]).
pub(super) fn pack_weights(dst: &mut [f32], w: &[f32], g: &Conv2dGeom, isa: Isa) {
    packed::pack_a(isa, w, g.out_c, g.col_rows(), dst);
}

/// One sample of [`super::forward`]: `y_n = w · unfold(x_n) + b`, the weights packed by
/// [`pack_weights`] for `isa` and `buf` being [`task_len`] values.
pub(super) fn forward_sample(
    y_n: &mut [f32],
    x_n: &[f32],
    packed_w: &[f32],
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
    packed::gemm(isa, dims, packed_w, &unfold, b, y_n, area, b_buf);
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
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 {
            // Safety: `Isa::detect` chose AVX-512 only on a CPU that has it.
            unsafe { self.pack_avx512(k0, kc, n0, cols, dst) };
            return;
        }
        self.pack_with(isa.nr(), k0, kc, n0, cols, dst, |d, s| {
            d[..s.len()].copy_from_slice(s);
        });
    }
}

impl Unfold<'_> {
    /// [`Unfold::pack_with`] with each piece copied by one or two AVX-512 moves rather than a
    /// call to `memcpy` (the pieces are at most 32 values): masked loads, so that nothing
    /// past the piece is read, and whole stores (masked stores are slow on AMD's Zen 4), whose
    /// overshoot of zeros the next piece, the next row or the block's slack takes.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_avx512(&self, k0: usize, kc: usize, n0: usize, cols: usize, dst: &mut [f32]) {
        use std::arch::x86_64::{_mm512_maskz_loadu_ps, _mm512_storeu_ps};
        let nr = Isa::Avx512.nr();
        self.pack_with(nr, k0, kc, n0, cols, dst, |d, s| {
            let len = s.len();
            assert!(d.len() >= len.next_multiple_of(16));
            for at in (0..len).step_by(16) {
                let mask = u16::MAX >> (16 - (len - at).min(16));
                // Safety: the mask selects lanes `at .. len` of `s` and no further; the store
                // writes `d[at .. at + 16]`, inside `d` by the assert. AVX-512F is enabled on
                // this function.
                unsafe {
                    let v = _mm512_maskz_loadu_ps(mask, s.as_ptr().add(at));
                    _mm512_storeu_ps(d.as_mut_ptr().add(at), v);
                }
            }
        });
    }

    /// [`PackB::pack`] for blocks of `nr` columns, `copy` copying each piece into the start
    /// of its destination, which runs on for the rest of the block (at least [`SLACK`] more
    /// values), so that `copy` may write past the piece. Pieces are copied in order.
    // `pack`'s arguments, plus the copy.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn pack_with(
        &self,
        nr: usize,
        k0: usize,
        kc: usize,
        n0: usize,
        cols: usize,
        dst: &mut [f32],
        copy: impl Fn(&mut [f32], &[f32]),
    ) {
        let (g, p) = (self.g, &self.phases);
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
        debug_assert_eq!(dst.len(), kc * nr + SLACK);
        for kk in 0..kc {
            let tap = ((c * p.hp + u) * p.s + r) * p.wq + q;
            for &(at, first, len) in pieces {
                let end = (kk * nr + first + len + SLACK).min(dst.len());
                copy(
                    &mut dst[kk * nr + first..end],
                    &self.source[tap + at..tap + at + len],
                );
            }
            if cols < nr {
                dst[kk * nr + cols..(kk + 1) * nr].fill(0.0);
            }
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
