//! A packed matrix product, `C = A·B + bias`, that allocates nothing: the convolutions'
//! forward pass.
//!
//! The structure is GotoBLAS's. `A` (`M × K`, the weights) is packed once per call into
//! panels of [`Isa::mr`] rows, column by column. `B` (`K × N`) is never given whole: a
//! [`PackB`] writes it [`Isa::nr`] columns and at most [`KC`] rows at a time into a small
//! buffer that stays in the cache, straight from the caller's own layout (for a
//! convolution, from the input image, so that the unfolded matrix is never written out). Each
//! `MR × NR` tile of `C` is then summed in registers over the buffer's rows, one
//! multiply-add per register per row, and written once per block of rows, the bias added on
//! the first.
//!
//! One generic register tile ([`tile`]) is compiled three times: for AVX-512 (12 × 32: 24
//! registers of sums), for AVX2 and FMA (6 × 16: 12) and without either (4 × 16). On the
//! machine of `BENCHMARKS.md` the AVX-512 build sums at about 115 GFLOP/s per core when its
//! operands are in the cache, near the core's peak, where `matrixmultiply`'s `sgemm`
//! (whose widest kernel is AVX2) reaches about 70 on AlexNet's conv1.
//!
//! Every buffer belongs to the caller (see [`packed_a_len`] and [`packed_b_len`]).

use super::isa::allowed as isa_allowed;

/// Rows of `B` packed at a time. A block of 384 rows of 32 columns (48 KiB) lives in the L2
/// cache, which feeds the tile fast enough, and takes AlexNet conv1's 363 taps in one block;
/// measured with `alexnet-fwd` at 1 thread: 19.3 ms, against 19.9 with 256 rows and 20.7
/// with 128.
pub(crate) const KC: usize = 384;

/// The widest [`Isa::nr`].
pub(crate) const MAX_NR: usize = 32;

/// Values past the end of a packed block of `B` that a [`PackB`] may overwrite: a packer may
/// copy whole vectors of 16 and let the next piece, the next row or this slack take the
/// overshoot.
pub(crate) const SLACK: usize = 16;

/// Which build of the register tile runs: the CPU's best, or lower where a test says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// AVX-512F: tiles of 12 × 32.
    Avx512,
    /// AVX2 and FMA: tiles of 6 × 16.
    Fma,
    /// Neither: tiles of 4 × 16, products and sums rounded separately.
    Plain,
}

impl Isa {
    /// The best instruction set this CPU has (and tests allow).
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if isa_allowed(1) && is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if isa_allowed(2) && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
            {
                return Isa::Fma;
            }
        }
        let _ = isa_allowed;
        Isa::Plain
    }

    /// Rows of a register tile (and of a panel of packed `A`).
    pub(crate) const fn mr(self) -> usize {
        match self {
            Isa::Avx512 => 12,
            Isa::Fma => 6,
            Isa::Plain => 4,
        }
    }

    /// Columns of a register tile (and of a packed block of `B`).
    pub(crate) const fn nr(self) -> usize {
        match self {
            Isa::Avx512 => 32,
            Isa::Fma | Isa::Plain => 16,
        }
    }
}

/// Values of `A` (`m × k`) once packed by [`pack_a`]: `m` rounded up to whole panels.
pub(crate) const fn packed_a_len(isa: Isa, m: usize, k: usize) -> usize {
    m.div_ceil(isa.mr()) * isa.mr() * k
}

/// Values of the buffer that [`gemm`] packs `B` into.
pub(crate) const fn packed_b_len(isa: Isa) -> usize {
    KC * isa.nr() + SLACK
}

/// Packs the row-major `m × k` matrix `a` into panels of [`Isa::mr`] rows: panel `p` holds
/// column `kk` of its rows at `dst[(p·k + kk)·MR ..][..MR]`, rows past `m` zero.
pub(crate) fn pack_a(isa: Isa, a: &[f32], m: usize, k: usize, dst: &mut [f32]) {
    let mr = isa.mr();
    debug_assert!(a.len() >= m * k);
    let dst = &mut dst[..packed_a_len(isa, m, k)];
    if k == 0 {
        return;
    }
    for (p, panel) in dst.chunks_exact_mut(mr * k).enumerate() {
        for r in 0..mr {
            let row = p * mr + r;
            if row < m {
                for (kk, &v) in a[row * k..(row + 1) * k].iter().enumerate() {
                    panel[kk * mr + r] = v;
                }
            } else {
                for kk in 0..k {
                    panel[kk * mr + r] = 0.0;
                }
            }
        }
    }
}

/// Writes blocks of `B` for [`gemm`].
pub(crate) trait PackB {
    /// Writes rows `k0 .. k0 + kc` and columns `n0 .. n0 + cols` of `B` into `dst`, row `kk`
    /// at `dst[kk·nr ..][..nr]`, and zeros into columns `cols .. nr` of each row
    /// (`cols ≤ nr = isa.nr()`, `dst.len() == kc·nr + SLACK`; the last [`SLACK`] values
    /// may be overwritten with anything).
    fn pack(&self, isa: Isa, k0: usize, kc: usize, n0: usize, cols: usize, dst: &mut [f32]);
}

/// `C = A·B + bias`: `C` is `m × n` with rows `ldc` apart (`c[i·ldc + j]`, overwritten),
/// `a` is `A` packed by [`pack_a`] with the same `isa`, `B` (`k × n`) comes from `b` a block at
/// a time through `b_buf` ([`packed_b_len`] values), and `bias[i]` is added to row `i`.
///
/// # Panics
/// When a buffer is shorter than the sizes need, or `ldc < n`.
// The operands of a matrix product, plus its scratch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    isa: Isa,
    [m, k, n]: [usize; 3],
    a: &[f32],
    b: &impl PackB,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
    b_buf: &mut [f32],
) {
    assert!(
        a.len() >= packed_a_len(isa, m, k),
        "gemm: packed A too short"
    );
    assert!(b_buf.len() >= packed_b_len(isa), "gemm: B buffer too short");
    assert!(bias.is_none_or(|b| b.len() >= m), "gemm: bias too short");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldc >= n && c.len() >= (m - 1) * ldc + n,
        "gemm: C too short"
    );
    if k == 0 {
        for (i, row) in c.chunks_mut(ldc).take(m).enumerate() {
            row[..n].fill(bias.map_or(0.0, |b| b[i]));
        }
        return;
    }
    let dims = [m, k, n];
    match isa {
        #[cfg(target_arch = "x86_64")]
        // Safety: `Isa::detect` chose AVX-512 only on a CPU that has it.
        Isa::Avx512 => unsafe { gemm_avx512(dims, a, b, bias, c, ldc, b_buf) },
        #[cfg(target_arch = "x86_64")]
        // Safety: `Isa::detect` chose FMA only on a CPU that has AVX2 and FMA.
        Isa::Fma => unsafe { gemm_fma(dims, a, b, bias, c, ldc, b_buf) },
        _ => blocks::<4, 16, false>(isa, dims, a, b, bias, c, ldc, b_buf),
    }
}

/// [`blocks`] compiled for AVX-512.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gemm_avx512(
    dims: [usize; 3],
    a: &[f32],
    b: &impl PackB,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
    b_buf: &mut [f32],
) {
    blocks::<12, 32, true>(Isa::Avx512, dims, a, b, bias, c, ldc, b_buf);
}

/// [`blocks`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_fma(
    dims: [usize; 3],
    a: &[f32],
    b: &impl PackB,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
    b_buf: &mut [f32],
) {
    blocks::<6, 16, true>(Isa::Fma, dims, a, b, bias, c, ldc, b_buf);
}

/// The loops around the register tile: for each block of `NR` columns and [`KC`] rows of `B`,
/// pack it, then run every panel of `A` over it.
// `gemm`'s arguments, less nothing.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn blocks<const MR: usize, const NR: usize, const FMA: bool>(
    isa: Isa,
    [m, k, n]: [usize; 3],
    a: &[f32],
    b: &impl PackB,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
    b_buf: &mut [f32],
) {
    debug_assert_eq!((isa.mr(), isa.nr()), (MR, NR));
    let panels = m.div_ceil(MR);
    for n0 in (0..n).step_by(NR) {
        let cols = NR.min(n - n0);
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let b_block = &mut b_buf[..kc * NR + SLACK];
            b.pack(isa, k0, kc, n0, cols, b_block);
            let b_block = &b_block[..kc * NR];
            for p in 0..panels {
                let rows = MR.min(m - p * MR);
                let first = (k0 == 0).then(|| {
                    let mut init = [0.0; MR];
                    if let Some(bias) = bias {
                        init[..rows].copy_from_slice(&bias[p * MR..p * MR + rows]);
                    }
                    init
                });
                let a_panel = &a[(p * k + k0) * MR..(p * k + k0 + kc) * MR];
                let c_tile = &mut c[p * MR * ldc + n0..];
                tile::<MR, NR, FMA>(a_panel, b_block, c_tile, ldc, rows, cols, first);
            }
        }
    }
}

/// One `MR × NR` tile of `C`: the sums over the rows of `b` (each `NR` values) times the
/// columns of `a` (each `MR` values), kept in registers, then written to `c` (rows `ldc`
/// apart; only the first `rows × cols`): `c = sums + first` when `first` is given (the first
/// block of rows, with the bias), else `c += sums`.
#[inline(always)]
fn tile<const MR: usize, const NR: usize, const FMA: bool>(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
    first: Option<[f32; MR]>,
) {
    let mut acc = [[0.0f32; NR]; MR];
    for (a_k, b_k) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        let b_k: &[f32; NR] = b_k.try_into().expect("chunks of NR");
        for (acc_r, &a_r) in acc.iter_mut().zip(a_k) {
            for (s, &b_j) in acc_r.iter_mut().zip(b_k) {
                *s = if FMA {
                    a_r.mul_add(b_j, *s)
                } else {
                    a_r * b_j + *s
                };
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate().take(rows) {
        let row = &mut c[r * ldc..r * ldc + cols];
        match first {
            Some(init) if cols == NR => {
                let row: &mut [f32; NR] = row.try_into().expect("NR columns");
                for (d, &s) in row.iter_mut().zip(acc_r) {
                    *d = s + init[r];
                }
            }
            Some(init) => {
                for (d, &s) in row.iter_mut().zip(acc_r) {
                    *d = s + init[r];
                }
            }
            None if cols == NR => {
                let row: &mut [f32; NR] = row.try_into().expect("NR columns");
                for (d, &s) in row.iter_mut().zip(acc_r) {
                    *d += s;
                }
            }
            None => {
                for (d, &s) in row.iter_mut().zip(acc_r) {
                    *d += s;
                }
            }
        }
    }
}

/// A row-major `k × n` matrix as a [`PackB`]: the plain case, for the tests.
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowMajor<'a> {
    /// The matrix, row `kk` at `data[kk·ld ..][..n]`.
    pub data: &'a [f32],
    /// The distance between rows.
    pub ld: usize,
}

#[cfg(test)]
impl PackB for RowMajor<'_> {
    fn pack(&self, isa: Isa, k0: usize, kc: usize, n0: usize, cols: usize, dst: &mut [f32]) {
        let nr = isa.nr();
        for (kk, row) in dst.chunks_exact_mut(nr).take(kc).enumerate() {
            let at = (k0 + kk) * self.ld + n0;
            row[..cols].copy_from_slice(&self.data[at..at + cols]);
            row[cols..].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::isa::MIN_ISA;
    use crate::ops::test_util::{assert_close, rng, uniform};

    /// `C = A·B + bias` by the definition, in `f64`.
    fn reference(a: &[f32], b: &[f32], bias: Option<&[f32]>, [m, k, n]: [usize; 3]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                    .sum();
                c[i * n + j] = (dot + bias.map_or(0.0, |b| b[i] as f64)) as f32;
            }
        }
        c
    }

    /// Sizes around every tile edge (1, MR ± 1, NR ± 1, several panels) and past one block of
    /// [`KC`] rows, on every instruction set this CPU has, with and without a bias, into a `C`
    /// whose rows are wider than `n` (the padding must be left alone).
    #[test]
    fn matches_the_definition_on_every_instruction_set() {
        let sizes = [
            [1, 1, 1],
            [5, 3, 17],
            [12, 7, 32],
            [13, 9, 33],
            [25, 40, 95],
            [96, 363, 70],
            [7, KC + 3, 16],
            [30, 2 * KC + 1, 40],
        ];
        let mut r = rng(11);
        for level in [0, 2, 3] {
            MIN_ISA.with(|l| l.set(level));
            let isa = Isa::detect();
            for (s, &[m, k, n]) in sizes.iter().enumerate() {
                let a = uniform(&mut r, m * k);
                let b = uniform(&mut r, k * n);
                let bias = uniform(&mut r, m);
                let mut packed = vec![f32::NAN; packed_a_len(isa, m, k)];
                pack_a(isa, &a, m, k, &mut packed);
                let mut b_buf = vec![f32::NAN; packed_b_len(isa)];
                for bias in [None, Some(&bias[..])] {
                    let ldc = n + 3;
                    let mut c = vec![f32::NAN; m * ldc];
                    let b_mat = RowMajor { data: &b, ld: n };
                    gemm(
                        isa,
                        [m, k, n],
                        &packed,
                        &b_mat,
                        bias,
                        &mut c,
                        ldc,
                        &mut b_buf,
                    );
                    let want = reference(&a, &b, bias, [m, k, n]);
                    for i in 0..m {
                        let what = format!("{isa:?} size {s} row {i}");
                        let got = &c[i * ldc..i * ldc + n];
                        assert_close(&what, got, &want[i * n..(i + 1) * n], 1e-5);
                        assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|v| v.is_nan()));
                    }
                }
            }
        }
        MIN_ISA.with(|l| l.set(0));
    }

    /// With no columns of `A` the product is the bias alone; with no rows nothing is touched.
    #[test]
    fn empty_inner_dimension_gives_the_bias() {
        let isa = Isa::detect();
        let mut c = vec![f32::NAN; 6];
        let mut b_buf = vec![0.0; packed_b_len(isa)];
        let b = RowMajor { data: &[], ld: 3 };
        gemm(
            isa,
            [2, 0, 3],
            &[],
            &b,
            Some(&[1.0, 2.0]),
            &mut c,
            3,
            &mut b_buf,
        );
        assert_eq!(c, [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        let mut untouched = vec![f32::NAN; 2];
        gemm(isa, [0, 4, 2], &[], &b, None, &mut untouched, 2, &mut b_buf);
        assert!(untouched.iter().all(|v| v.is_nan()));
    }
}
