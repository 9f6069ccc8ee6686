//! A packed matrix product, `C = A·B + bias` or `C += A·B`, that allocates nothing: the
//! convolutions' forward and backward passes and the large linear layers.
//!
//! The structure is GotoBLAS's. `A` (`M × K`, say the weights) is packed into
//! panels of [`Isa::mr`] rows, column by column. `B` (`K × N`) is never given whole: a
//! [`PackB`] writes it [`Isa::nr`] columns and at most [`KC`] rows at a time into a small
//! buffer that stays in the cache, straight from the caller's own layout (for a
//! convolution, from the input image, so that the unfolded matrix is never written out). Each
//! `MR × NR` tile of `C` is then summed in registers over the buffer's rows, one
//! multiply-add per register per row, and written once per block of rows, the bias added on
//! the first.
//!
//! One generic register tile ([`sum_packed`]) is compiled three times: for AVX-512 (12 × 32: 24
//! registers of sums), for AVX2 and FMA (6 × 16: 12) and without either (4 × 16). On the
//! machine of `BENCHMARKS.md` the AVX-512 build sums at about 115 GFLOP/s per core when its
//! operands are in the cache, near the core's peak. It replaced `matrixmultiply`'s `sgemm`,
//! which reached about 70 on AlexNet's conv1 (its widest kernel is AVX2), needed the
//! unfolded input written out whole, and allocated its packing buffer on every call.
//!
//! Every buffer belongs to the caller (see [`packed_a_len`] and [`packed_b_len`]).

use super::isa::Isa;

/// Rows of `B` packed at a time. A block of 384 rows of 32 columns is 48 KiB, eight of them
/// ([`NB`]) 384 KiB, which the L2 cache holds while the panels of `A` pass over them; 384 rows
/// take AlexNet conv1's 363 taps in one block. Measured with `alexnet-fwd` at 1 thread, one
/// block at a time: 19.3 ms, against 19.9 with 256 rows and 20.7 with 128.
pub(crate) const KC: usize = 384;

/// The widest [`Isa::nr`].
pub(crate) const MAX_NR: usize = 32;

/// Values past the end of a packed block of `B` that a [`PackB`] may overwrite: a packer may
/// copy whole vectors of 16 and let the next piece, the next row or this slack take the
/// overshoot.
pub(crate) const SLACK: usize = 16;

/// The register tile's size for each instruction set.
impl Isa {
    /// Rows of a register tile (and of a panel of packed `A`).
    pub(crate) const fn mr(self) -> usize {
        match self {
            Isa::Avx512 => 12,
            Isa::Avx2Fma => 6,
            Isa::Plain | Isa::Generic => 4,
        }
    }

    /// Columns of a register tile (and of a packed block of `B`).
    pub(crate) const fn nr(self) -> usize {
        match self {
            Isa::Avx512 => 32,
            Isa::Avx2Fma | Isa::Plain => 16,
            // The widest block, so that each of matrixmultiply's products is as wide as a
            // block can be.
            Isa::Generic => MAX_NR,
        }
    }
}

/// Values of `A` (`m × k`) once packed by [`pack_a`]: `m` rounded up to whole panels.
pub(crate) const fn packed_a_len(isa: Isa, m: usize, k: usize) -> usize {
    m.div_ceil(isa.mr()) * isa.mr() * k
}

/// Blocks of `B` packed together: a panel of `A` passes over all of them before the next
/// panel, so that it is read from memory once per `NB` blocks rather than once per block.
/// Against one block at a time: `alexnet-fwd` 19.3 -> 18.2 ms at 1 thread, an AlexNet training
/// step at batch 16 1,468 -> 1,374 ms (4 blocks: 18.5 and 1,387; 16: 18.2 and 1,380).
const NB: usize = 8;

/// Values of the buffer that [`gemm`] packs `B` into: [`NB`] blocks.
pub(crate) const fn packed_b_len(isa: Isa) -> usize {
    NB * KC * isa.nr() + SLACK
}

/// Packs the `m × k` matrix whose element `(i, kk)` is `a[i·rs + kk·cs]` (`strides = [rs,
/// cs]`: `[k, 1]` for a row-major matrix, `[1, m]` for the transpose of a row-major `k × m`)
/// into panels of [`Isa::mr`] rows: panel `p` holds column `kk` of its rows at
/// `dst[(p·k + kk)·MR ..][..MR]`, rows past `m` zero. For [`Isa::Generic`] each panel holds
/// its rows one after the other instead, so that the whole is `A` row-major (`dst[i·k + kk]`),
/// as matrixmultiply reads it; a run of whole panels is still a run of rows.
///
/// # Panics
/// When `a` or `dst` is too short.
pub(crate) fn pack_a(
    isa: Isa,
    a: &[f32],
    [rs, cs]: [usize; 2],
    [m, k]: [usize; 2],
    dst: &mut [f32],
) {
    if m == 0 || k == 0 {
        return;
    }
    assert!((m - 1) * rs + (k - 1) * cs < a.len(), "pack_a: A too short");
    pack_a_with(isa, [m, k], dst, |i, kk| a[i * rs + kk * cs]);
}

/// [`pack_a`] of the `m × k` matrix whose element `(i, kk)` is `at(i, kk)`.
///
/// # Panics
/// When `dst` is too short (or `at` panics).
pub(crate) fn pack_a_with(
    isa: Isa,
    [m, k]: [usize; 2],
    dst: &mut [f32],
    at: impl Fn(usize, usize) -> f32,
) {
    let mr = isa.mr();
    let dst = &mut dst[..packed_a_len(isa, m, k)];
    if k == 0 {
        return;
    }
    if isa == Isa::Generic {
        for (row, line) in dst.chunks_exact_mut(k).enumerate() {
            for (kk, d) in line.iter_mut().enumerate() {
                *d = if row < m { at(row, kk) } else { 0.0 };
            }
        }
        return;
    }
    for (p, panel) in dst.chunks_exact_mut(mr * k).enumerate() {
        for (kk, column) in panel.chunks_exact_mut(mr).enumerate() {
            for (r, d) in column.iter_mut().enumerate() {
                let row = p * mr + r;
                *d = if row < m { at(row, kk) } else { 0.0 };
            }
        }
    }
}

/// Writes blocks of `B` for [`gemm`], piece by piece.
pub(crate) trait PackB {
    /// Writes rows `k0 .. k0 + kc` and columns `n0 .. n0 + cols` of `B` (`ks = [k0, kc]`,
    /// `ns = [n0, cols]`) into `dst`, row `kk`
    /// at `dst[kk·nr ..][..nr]`, with zeros in columns `cols .. nr` of each row (`cols ≤ nr`,
    /// `dst.len() == kc·nr + SLACK`). Runs of consecutive values go through `copy`, which
    /// copies its source into the start of its destination (see [`piece`]) and may write up
    /// to [`SLACK`] values past it: runs are therefore copied in order, row by row, left to
    /// right, and each row's zeros written after its runs.
    fn pack_with(
        &self,
        nr: usize,
        ks: [usize; 2],
        ns: [usize; 2],
        dst: &mut [f32],
        copy: impl Fn(&mut [f32], &[f32]),
    );
}

/// The destination of a run of `len` values at `dst[at ..]` for [`PackB::pack_with`]'s `copy`:
/// the run and up to [`SLACK`] values after it.
#[inline(always)]
pub(crate) fn piece(dst: &mut [f32], at: usize, len: usize) -> &mut [f32] {
    let end = (at + len + SLACK).min(dst.len());
    &mut dst[at..end]
}

/// A run of consecutive source values in every row of a block of `B`: `(offset, first, len)`
/// puts `source[start + offset ..][..len]` at columns `first .. first + len`, `start` being
/// the row's own offset.
pub(crate) type Run = (usize, usize, usize);

/// Cuts columns `n0 .. n0 + cols` of a block into [`Run`]s: `run(n)` gives column `n`'s offset
/// in the source and how many columns from `n` on are consecutive there.
#[inline(always)]
pub(crate) fn cut_runs(
    [n0, cols]: [usize; 2],
    run: impl Fn(usize) -> (usize, usize),
) -> ([Run; MAX_NR], usize) {
    debug_assert!(cols <= MAX_NR);
    let mut runs = [(0, 0, 0); MAX_NR];
    let (mut count, mut j) = (0, 0);
    while j < cols {
        let (offset, most) = run(n0 + j);
        let len = most.clamp(1, cols - j);
        runs[count] = (offset, j, len);
        count += 1;
        j += len;
    }
    (runs, count)
}

/// Writes a block of `B` whose row `kk` is `runs` taken from `source` at `starts[kk]`, with
/// zeros past `cols`, each run through `copy` (see [`PackB::pack_with`]).
#[inline(always)]
pub(crate) fn copy_runs(
    nr: usize,
    cols: usize,
    dst: &mut [f32],
    source: &[f32],
    runs: &[Run],
    starts: impl Iterator<Item = usize>,
    copy: impl Fn(&mut [f32], &[f32]),
) {
    for (kk, start) in starts.enumerate() {
        for &(offset, first, len) in runs {
            let at = start + offset;
            copy(piece(dst, kk * nr + first, len), &source[at..at + len]);
        }
        if cols < nr {
            dst[kk * nr + cols..(kk + 1) * nr].fill(0.0);
        }
    }
}

/// Packs a block of `B` with the copy that suits `isa`.
#[inline(always)]
fn pack_block(isa: Isa, b: &impl PackB, ks: [usize; 2], ns: [usize; 2], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // Safety: `isa` is what `Isa::current` returned to the calling kernel, and it returns
        // `Avx512` only on a CPU with AVX-512F.
        unsafe { pack_avx512(b, ks, ns, dst) };
        return;
    }
    b.pack_with(isa.nr(), ks, ns, dst, |d, s| {
        d[..s.len()].copy_from_slice(s)
    });
}

/// [`PackB::pack_with`] with each run copied by AVX-512 moves of 16 values rather than a call
/// to `memcpy` (the runs are short): masked loads, so that nothing past the run is read, and
/// whole stores (masked stores are slow on AMD's Zen 4), whose overshoot the next run, the
/// next row or the block's slack takes.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_avx512(b: &impl PackB, ks: [usize; 2], ns: [usize; 2], dst: &mut [f32]) {
    use std::arch::x86_64::{_mm512_maskz_loadu_ps, _mm512_storeu_ps};
    b.pack_with(Isa::Avx512.nr(), ks, ns, dst, |d, s| {
        let len = s.len();
        assert!(
            d.len() >= len.next_multiple_of(16),
            "pack: no room for the overshoot"
        );
        for at in (0..len).step_by(16) {
            let mask = u16::MAX >> (16 - (len - at).min(16));
            // Safety: the mask selects lanes `at .. len` of `s` and no further; the store
            // writes `d[at .. at + 16]`, inside `d` by the assert. AVX-512F is enabled here.
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, s.as_ptr().add(at));
                _mm512_storeu_ps(d.as_mut_ptr().add(at), v);
            }
        }
    });
}

/// What [`gemm`] does with `C`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Out<'a> {
    /// `C = A·B + bias`, `bias[i]` added to row `i` (or nothing added): `C` is not read.
    Set(Option<&'a [f32]>),
    /// `C += A·B`.
    Add,
}

/// The `A` of a [`gemm`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum MatA<'a> {
    /// Packed by [`pack_a`] with the product's instruction set.
    Packed(&'a [f32]),
    /// Row-major, rows `ld` apart, read where it lies: each panel's rows are read as
    /// [`Isa::mr`] streams. For a large `A` used by few columns of `B` (a linear layer's
    /// weights at a small batch), where packing would cost more than the sums.
    Rows {
        /// The matrix.
        data: &'a [f32],
        /// The distance between rows.
        ld: usize,
    },
}

/// `C = A·B + bias` or `C += A·B` (`out`): `C` is `m × n` with rows `ldc` apart
/// (`c[i·ldc + j]`), `a` is `A` ([`MatA`]), and `B` (`k × n`) comes from `b` a block at a time
/// through `b_buf` ([`packed_b_len`] values). `isa` is the build to run, as the calling
/// kernel got it from [`Isa::current`] (`A` packed for the same).
///
/// # Panics
/// When a buffer is shorter than the sizes need, or `ldc < n`.
// The operands of a matrix product, plus its scratch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    isa: Isa,
    [m, k, n]: [usize; 3],
    a: MatA<'_>,
    b: &impl PackB,
    out: Out<'_>,
    c: &mut [f32],
    ldc: usize,
    b_buf: &mut [f32],
) {
    match a {
        MatA::Packed(a) => assert!(
            a.len() >= packed_a_len(isa, m, k),
            "gemm: packed A too short"
        ),
        MatA::Rows { data, ld } => assert!(
            m == 0 || k == 0 || (ld >= k && (m - 1) * ld + k <= data.len()),
            "gemm: A too short"
        ),
    }
    assert!(b_buf.len() >= packed_b_len(isa), "gemm: B buffer too short");
    if let Out::Set(Some(bias)) = out {
        assert!(bias.len() >= m, "gemm: bias too short");
    }
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldc >= n && c.len() >= (m - 1) * ldc + n,
        "gemm: C too short"
    );
    if k == 0 {
        if let Out::Set(bias) = out {
            for (i, row) in c.chunks_mut(ldc).take(m).enumerate() {
                row[..n].fill(bias.map_or(0.0, |b| b[i]));
            }
        }
        return;
    }
    let dims = [m, k, n];
    match isa {
        #[cfg(target_arch = "x86_64")]
        // Safety: `isa` is what `Isa::current` returned to the calling kernel, and it returns
        // `Avx512` only on a CPU with AVX-512F, AVX2 and FMA.
        Isa::Avx512 => unsafe { gemm_avx512(dims, a, b, out, c, ldc, b_buf) },
        #[cfg(target_arch = "x86_64")]
        // Safety: as above, `Avx2Fma` only on a CPU with AVX2 and FMA.
        Isa::Avx2Fma => unsafe { gemm_fma(dims, a, b, out, c, ldc, b_buf) },
        Isa::Generic => generic(dims, a, b, out, c, ldc, b_buf),
        _ => blocks::<4, 16, false>(isa, dims, a, b, out, c, ldc, b_buf),
    }
}

/// [`gemm`] on [`Isa::Generic`]: `B` packed a block of [`KC`] rows and [`MAX_NR`] columns at a
/// time, as for the other builds, and each block multiplied by matrixmultiply's `sgemm`, which
/// packs `A` and the block its own way and picks its kernel for the CPU. `C` starts from the
/// bias (or 0) for [`Out::Set`], and every product adds to it.
// `gemm`'s arguments, less the instruction set.
#[allow(clippy::too_many_arguments)]
fn generic(
    [m, k, n]: [usize; 3],
    a: MatA<'_>,
    b: &impl PackB,
    out: Out<'_>,
    c: &mut [f32],
    ldc: usize,
    b_buf: &mut [f32],
) {
    // A row-major, rows `lda` apart (`pack_a` lays out a Generic `A` that way).
    let (a, lda) = match a {
        MatA::Packed(a) => (a, k),
        MatA::Rows { data, ld } => (data, ld),
    };
    if let Out::Set(bias) = out {
        for (i, row) in c.chunks_mut(ldc).take(m).enumerate() {
            row[..n].fill(bias.map_or(0.0, |b| b[i]));
        }
    }
    let nr = Isa::Generic.nr();
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for n0 in (0..n).step_by(nr) {
            let cols = nr.min(n - n0);
            let block = &mut b_buf[..kc * nr + SLACK];
            pack_block(Isa::Generic, b, [k0, kc], [n0, cols], block);
            // Safety: `gemm` checked that `A` has `m` rows of `k` values `lda` apart (for a
            // packed `A`, `packed_a_len` values, at least `m·k`), and that `C` has `m` rows of
            // `n` values `ldc` apart; the block holds `kc` rows of `nr` values. The product
            // reads `A[.., k0 .. k0 + kc]` and the block's first `cols` columns, and writes
            // `C[.., n0 .. n0 + cols]`, all inside them; no two of the slices overlap.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    kc,
                    cols,
                    1.0,
                    a.as_ptr().add(k0),
                    lda as isize,
                    1,
                    block.as_ptr(),
                    nr as isize,
                    1,
                    1.0,
                    c.as_mut_ptr().add(n0),
                    ldc as isize,
                    1,
                );
            }
        }
    }
}

/// [`blocks`] compiled for AVX-512.
///
/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gemm_avx512(
    dims: [usize; 3],
    a: MatA<'_>,
    b: &impl PackB,
    out: Out<'_>,
    c: &mut [f32],
    ldc: usize,
    b_buf: &mut [f32],
) {
    blocks::<12, 32, true>(Isa::Avx512, dims, a, b, out, c, ldc, b_buf);
}

/// [`blocks`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_fma(
    dims: [usize; 3],
    a: MatA<'_>,
    b: &impl PackB,
    out: Out<'_>,
    c: &mut [f32],
    ldc: usize,
    b_buf: &mut [f32],
) {
    blocks::<6, 16, true>(Isa::Avx2Fma, dims, a, b, out, c, ldc, b_buf);
}

/// The loops around the register tile: for each group of [`NB`] blocks of `NR` columns and
/// [`KC`] rows of `B`, pack them, then run every panel of `A` over all of them.
// `gemm`'s arguments, less nothing.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn blocks<const MR: usize, const NR: usize, const FMA: bool>(
    isa: Isa,
    [m, k, n]: [usize; 3],
    a: MatA<'_>,
    b: &impl PackB,
    out: Out<'_>,
    c: &mut [f32],
    ldc: usize,
    b_buf: &mut [f32],
) {
    debug_assert_eq!((isa.mr(), isa.nr()), (MR, NR));
    let panels = m.div_ceil(MR);
    let nc = NB * NR;
    for nc0 in (0..n).step_by(nc) {
        let ncols = nc.min(n - nc0);
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            // Up to NB blocks of NR columns, packed one after the other.
            for (j, n0) in (nc0..nc0 + ncols).step_by(NR).enumerate() {
                let cols = NR.min(n - n0);
                let at = j * kc * NR;
                pack_block(
                    isa,
                    b,
                    [k0, kc],
                    [n0, cols],
                    &mut b_buf[at..at + kc * NR + SLACK],
                );
            }
            let b_blocks = &b_buf[..ncols.div_ceil(NR) * kc * NR];
            // Each panel of A once over all the blocks, so that it stays in the L1 cache.
            for p in 0..panels {
                let rows = MR.min(m - p * MR);
                let first = match out {
                    Out::Set(bias) if k0 == 0 => {
                        let mut init = [0.0; MR];
                        if let Some(bias) = bias {
                            init[..rows].copy_from_slice(&bias[p * MR..p * MR + rows]);
                        }
                        Some(init)
                    }
                    _ => None,
                };
                for (j, b_block) in b_blocks.chunks_exact(kc * NR).enumerate() {
                    let n0 = nc0 + j * NR;
                    let cols = NR.min(n - n0);
                    let c_tile = &mut c[p * MR * ldc + n0..];
                    let sums = match a {
                        MatA::Packed(a) => {
                            let a_panel = &a[(p * k + k0) * MR..(p * k + k0 + kc) * MR];
                            sum_packed::<MR, NR, FMA>(a_panel, b_block)
                        }
                        MatA::Rows { data, ld } => {
                            let a_rows: [&[f32]; MR] = std::array::from_fn(|r| {
                                let row = p * MR + r;
                                if row < m {
                                    &data[row * ld + k0..row * ld + k0 + kc]
                                } else {
                                    &ZEROS[..kc]
                                }
                            });
                            sum_rows::<MR, NR, FMA>(a_rows, b_block)
                        }
                    };
                    store::<MR, NR>(&sums, c_tile, ldc, rows, cols, first);
                }
            }
        }
    }
}

/// Zeros standing in for the rows of [`MatA::Rows`] past the last.
static ZEROS: [f32; KC] = [0.0; KC];

/// The sums of one `MR × NR` tile of `C`, kept in registers: over the rows of `b` (each `NR`
/// values) times the columns of the packed panel `a` (each `MR` values).
#[inline(always)]
fn sum_packed<const MR: usize, const NR: usize, const FMA: bool>(
    a: &[f32],
    b: &[f32],
) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    for (a_k, b_k) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        let b_k: &[f32; NR] = b_k.try_into().expect("chunks of NR");
        let a_k: &[f32; MR] = a_k.try_into().expect("chunks of MR");
        add_products::<MR, NR, FMA>(&mut acc, a_k, b_k);
    }
    acc
}

/// [`sum_packed`] with `A`'s `MR` rows read where they lie (each as long as `b` has rows).
#[inline(always)]
fn sum_rows<const MR: usize, const NR: usize, const FMA: bool>(
    a: [&[f32]; MR],
    b: &[f32],
) -> [[f32; NR]; MR] {
    let kc = b.len() / NR;
    let a = a.map(|row| &row[..kc]);
    let mut acc = [[0.0f32; NR]; MR];
    for (kk, b_k) in b.chunks_exact(NR).enumerate() {
        let b_k: &[f32; NR] = b_k.try_into().expect("chunks of NR");
        let a_k: [f32; MR] = std::array::from_fn(|r| a[r][kk]);
        add_products::<MR, NR, FMA>(&mut acc, &a_k, b_k);
    }
    acc
}

/// `acc[r][j] += a[r]·b[j]`, fused where `FMA`.
#[inline(always)]
fn add_products<const MR: usize, const NR: usize, const FMA: bool>(
    acc: &mut [[f32; NR]; MR],
    a: &[f32; MR],
    b: &[f32; NR],
) {
    for (acc_r, &a_r) in acc.iter_mut().zip(a) {
        for (s, &b_j) in acc_r.iter_mut().zip(b) {
            *s = if FMA {
                a_r.mul_add(b_j, *s)
            } else {
                a_r * b_j + *s
            };
        }
    }
}

/// Writes a tile's sums to `c` (rows `ldc` apart; only the first `rows × cols`): `c = sums +
/// first` when `first` is given (the first block of rows, with the bias), else `c += sums`.
#[inline(always)]
fn store<const MR: usize, const NR: usize>(
    acc: &[[f32; NR]; MR],
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
    first: Option<[f32; MR]>,
) {
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

/// A matrix with rows of consecutive values as a [`PackB`]: row `kk` at `data[kk·ld ..][..n]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rows<'a> {
    /// The matrix.
    pub data: &'a [f32],
    /// The distance between rows.
    pub ld: usize,
}

impl PackB for Rows<'_> {
    #[inline(always)]
    fn pack_with(
        &self,
        nr: usize,
        [k0, kc]: [usize; 2],
        [n0, cols]: [usize; 2],
        dst: &mut [f32],
        copy: impl Fn(&mut [f32], &[f32]),
    ) {
        let starts = (k0..k0 + kc).map(|k| k * self.ld + n0);
        copy_runs(nr, cols, dst, self.data, &[(0, 0, cols)], starts, copy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::isa::with_ceiling;
    use crate::ops::test_util::{assert_close, rng, uniform};

    /// `A·B` by the definition, in `f64`, `A` row-major.
    fn product(a: &[f32], b: &[f32], [m, k, n]: [usize; 3]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                    .sum();
            }
        }
        c
    }

    /// Sizes around every tile edge (1, MR ± 1, NR ± 1, several panels), past one block of
    /// [`KC`] rows and past several groups of [`NB`] blocks of columns, on every instruction
    /// set this CPU has: `C = A·B` with and without a bias,
    /// and `C += A·B`, `A` packed (also from the transpose of a stored matrix) and read in
    /// place from rows longer than `k`, into a `C` whose rows are wider than `n` (the extra
    /// columns must be left alone).
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
            [13, 40, 8 * NB * 32 + 45],
            [25, KC + 5, 300],
        ];
        let mut r = rng(11);
        for ceiling in [Isa::Avx512, Isa::Avx2Fma, Isa::Plain, Isa::Generic] {
            let isa = with_ceiling(ceiling, Isa::current);
            for (s, &[m, k, n]) in sizes.iter().enumerate() {
                let a = uniform(&mut r, m * k);
                let a_t: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
                let b = uniform(&mut r, k * n);
                let bias = uniform(&mut r, m);
                let c0 = uniform(&mut r, m * n);
                let ab = product(&a, &b, [m, k, n]);
                let (mut packed, mut packed_t) = (vec![f32::NAN; packed_a_len(isa, m, k)], vec![]);
                pack_a(isa, &a, [k, 1], [m, k], &mut packed);
                packed_t.resize(packed.len(), f32::NAN);
                pack_a(isa, &a_t, [1, m], [m, k], &mut packed_t);
                assert_eq!(packed, packed_t, "{isa:?} size {s}: packing Aᵀ");
                let mut b_buf = vec![f32::NAN; packed_b_len(isa)];
                let b_rows = Rows { data: &b, ld: n };
                let ldc = n + 3;
                // A also read in place, from rows two values longer than k.
                let a_wide: Vec<f32> = (0..m * (k + 2))
                    .map(|i| {
                        if i % (k + 2) < k {
                            a[i / (k + 2) * k + i % (k + 2)]
                        } else {
                            f32::NAN
                        }
                    })
                    .collect();
                let a_rows = MatA::Rows {
                    data: &a_wide,
                    ld: k + 2,
                };
                let outs = [Out::Set(None), Out::Set(Some(&bias)), Out::Add];
                for (out, a) in outs
                    .into_iter()
                    .flat_map(|out| [(out, MatA::Packed(&packed)), (out, a_rows)])
                {
                    let mut c = vec![f32::NAN; m * ldc];
                    for i in 0..m {
                        c[i * ldc..i * ldc + n].copy_from_slice(&c0[i * n..(i + 1) * n]);
                    }
                    gemm(isa, [m, k, n], a, &b_rows, out, &mut c, ldc, &mut b_buf);
                    for i in 0..m {
                        let want: Vec<f32> = (0..n)
                            .map(|j| {
                                let add = match out {
                                    Out::Set(bias) => bias.map_or(0.0, |b| b[i] as f64),
                                    Out::Add => c0[i * n + j] as f64,
                                };
                                (ab[i * n + j] + add) as f32
                            })
                            .collect();
                        let how = if matches!(a, MatA::Packed(_)) {
                            "packed"
                        } else {
                            "rows"
                        };
                        let what = format!("{isa:?} size {s} {out:?} {how} row {i}");
                        // f32 sums of k products against f64: rounding grows like √k.
                        let tol = 4e-6 * (k as f32).sqrt().max(2.5);
                        assert_close(&what, &c[i * ldc..i * ldc + n], &want, tol);
                        assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|v| v.is_nan()));
                    }
                }
            }
        }
    }

    /// With no columns of `A` the product is the bias alone (or `C` unchanged); with no rows
    /// nothing is touched.
    #[test]
    fn empty_inner_dimension_gives_the_bias() {
        let isa = Isa::current();
        let mut c = vec![f32::NAN; 6];
        let mut b_buf = vec![0.0; packed_b_len(isa)];
        let b = Rows { data: &[], ld: 3 };
        let bias = Out::Set(Some(&[1.0, 2.0]));
        gemm(
            isa,
            [2, 0, 3],
            MatA::Packed(&[]),
            &b,
            bias,
            &mut c,
            3,
            &mut b_buf,
        );
        assert_eq!(c, [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        gemm(
            isa,
            [2, 0, 3],
            MatA::Packed(&[]),
            &b,
            Out::Add,
            &mut c,
            3,
            &mut b_buf,
        );
        assert_eq!(c, [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        let mut untouched = vec![f32::NAN; 2];
        gemm(
            isa,
            [0, 4, 2],
            MatA::Packed(&[]),
            &b,
            Out::Set(None),
            &mut untouched,
            2,
            &mut b_buf,
        );
        assert!(untouched.iter().all(|v| v.is_nan()));
    }
}
