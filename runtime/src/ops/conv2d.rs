//! 2-D convolution (cross-correlation, as in PyTorch), forward and backward.

use super::gemm::{sgemm, Mat, MatMut};
use super::parallel::{self, SharedMut};
use super::window::outputs_reading;
use striate_geometry::{output_size, Rounding, SizeError};

/// The geometry of one convolution layer, per sample.
///
/// Built by the `network!` macro as a `const`; every field is fixed at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dGeom {
    /// Input channels `C`.
    pub in_c: usize,
    /// Input height `H`.
    pub in_h: usize,
    /// Input width `W`.
    pub in_w: usize,
    /// Output channels (number of kernels) `O`.
    pub out_c: usize,
    /// Kernel height `KH`.
    pub k_h: usize,
    /// Kernel width `KW`.
    pub k_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero padding above and below.
    pub pad_h: usize,
    /// Zero padding left and right.
    pub pad_w: usize,
    /// Output height `OH = (H + 2PH - KH)/SH + 1`.
    pub out_h: usize,
    /// Output width `OW = (W + 2PW - KW)/SW + 1`.
    pub out_w: usize,
}

impl Conv2dGeom {
    /// The geometry of a convolution of `input = [C, H, W]` with `out_c` kernels of size
    /// `kernel = [KH, KW]`, `stride` and `pad` (each `[h, w]`).
    ///
    /// # Errors
    /// When the kernel does not fit or (with [`Rounding::Exact`]) the stride does not tile the
    /// padded input.
    pub const fn try_new(
        input: [usize; 3],
        out_c: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        rounding: Rounding,
    ) -> Result<Self, SizeError> {
        let out_h = match output_size(input[1], kernel[0], stride[0], pad[0], rounding) {
            Ok(v) => v,
            Err(e) => return Err(e),
        };
        let out_w = match output_size(input[2], kernel[1], stride[1], pad[1], rounding) {
            Ok(v) => v,
            Err(e) => return Err(e),
        };
        Ok(Conv2dGeom {
            in_c: input[0],
            in_h: input[1],
            in_w: input[2],
            out_c,
            k_h: kernel[0],
            k_w: kernel[1],
            stride_h: stride[0],
            stride_w: stride[1],
            pad_h: pad[0],
            pad_w: pad[1],
            out_h,
            out_w,
        })
    }

    /// [`Conv2dGeom::try_new`] for `const` items the macro has already validated.
    ///
    /// # Panics
    /// When the geometry is invalid (in a `const`, that is a compile error).
    pub const fn new(
        input: [usize; 3],
        out_c: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        rounding: Rounding,
    ) -> Self {
        match Self::try_new(input, out_c, kernel, stride, pad, rounding) {
            Ok(g) => g,
            Err(_) => panic!("invalid convolution geometry"),
        }
    }

    /// Input values per sample, `C*H*W`.
    pub const fn in_len(&self) -> usize {
        self.in_c * self.in_h * self.in_w
    }

    /// Output values per sample, `O*OH*OW`.
    pub const fn out_len(&self) -> usize {
        self.out_c * self.out_h * self.out_w
    }

    /// Weight values, `O*C*KH*KW`.
    pub const fn weight_len(&self) -> usize {
        self.out_c * self.in_c * self.k_h * self.k_w
    }

    /// Rows of the unfolded (im2col) input, `C*KH*KW`: the fan-in of one output unit.
    pub const fn col_rows(&self) -> usize {
        self.in_c * self.k_h * self.k_w
    }

    /// Values of the unfolded input of one sample, `C*KH*KW*OH*OW`.
    pub const fn col_len(&self) -> usize {
        self.col_rows() * self.out_h * self.out_w
    }

    /// Whether the unfolded input is the input itself (a 1×1 kernel, stride 1, no padding), so
    /// the kernels can skip im2col.
    pub const fn is_pointwise(&self) -> bool {
        self.k_h == 1
            && self.k_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_h == 0
            && self.pad_w == 0
    }

    /// Multiply-adds per sample, `O*OH*OW*C*KH*KW`.
    pub const fn macs(&self) -> u64 {
        (self.out_len() * self.col_rows()) as u64
    }
}

/// `y = w ⋆ x + b`: the cross-correlation of each sample with each kernel, zero-padded, as
/// PyTorch's `conv2d`: `y[n,o,i,j] = b[o] + Σ_{c,u,v} w[o,c,u,v] x[n,c,i·SH+u-PH,j·SW+v-PW]`.
///
/// `y` is overwritten. The batch is split over the [`parallel::threads`]; each sample is
/// unfolded (im2col) into its thread's part of `scratch`, which grows to
/// [`Conv2dGeom::col_len`] per thread on first use and is reused after that, and multiplied by the weights
/// seen as a `(O, C·KH·KW)` matrix in one `sgemm`. A 1×1 kernel with stride 1 and no padding
/// multiplies the input directly.
///
/// # Panics
/// When a slice is shorter than the geometry needs; in debug builds, when any length differs.
///
/// # Example
/// ```
/// use striate_geometry::Rounding;
/// use striate_runtime::ops::conv2d::{forward, Conv2dGeom};
///
/// // One 3×3 image and one 2×2 kernel that subtracts the lower-right neighbour.
/// let g = Conv2dGeom::new([1, 3, 3], 1, [2, 2], [1, 1], [0, 0], Rounding::Exact);
/// let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
/// let w = [1.0, 0.0, 0.0, -1.0];
/// let mut y = [0.0; 4];
/// forward(&mut y, &x, &w, Some(&[0.5]), &g, 1, &mut Vec::new());
/// assert_eq!(y, [-3.5; 4]);
/// ```
pub fn forward(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &Conv2dGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    // x: (N, C, H, W), w: (O, C, KH, KW), b: (O) -> y: (N, O, OH, OW)
    debug_check(y, x, w, g, n);
    debug_assert!(b.map_or(true, |b| b.len() == g.out_c));
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let col_len = if g.is_pointwise() { 0 } else { g.col_len() };
    // One task per thread, each with its own run of samples and its own unfolding buffer.
    // The scratch is sized for the backward pass too, so that it grows once.
    let tasks = parallel::tasks_for(n, 1);
    let per_task = col_len + g.weight_len();
    if scratch.len() < tasks * per_task {
        scratch.resize(tasks * per_task, 0.0);
    }
    let y_all = SharedMut::new(y);
    let cols = SharedMut::new(&mut scratch[..tasks * per_task]);
    parallel::run(tasks, |t| {
        let samples = parallel::part(n, tasks, t);
        // Safety: task `t` alone touches its samples' outputs and its own unfolding buffer;
        // `run` returns before `y` and `scratch` are borrowed again.
        let (y_t, col) = unsafe {
            (
                y_all.slice(samples.start * out_len, samples.len() * out_len),
                cols.slice(t * per_task, col_len),
            )
        };
        let x_t = &x[samples.start * in_len..samples.end * in_len];
        forward_samples(y_t, x_t, w, b, g, samples.len(), col);
    });
}

/// [`forward`] of consecutive samples on one thread, unfolding each into `col`.
fn forward_samples(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &Conv2dGeom,
    n: usize,
    col: &mut [f32],
) {
    let (rows, fan_in, area) = (g.out_c, g.col_rows(), g.out_h * g.out_w);
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let pointwise = g.is_pointwise();
    for i in 0..n {
        let x_n = &x[i * in_len..(i + 1) * in_len];
        let y_n = &mut y[i * out_len..(i + 1) * out_len];
        let col: &[f32] = if pointwise {
            x_n
        } else {
            im2col(col, x_n, g);
            col
        };
        let beta = match b {
            Some(b) => {
                for (o, &b_o) in b.iter().enumerate() {
                    y_n[o * area..(o + 1) * area].fill(b_o);
                }
                1.0
            }
            None => 0.0,
        };
        // y_n[O, OH·OW] (+)= w[O, C·KH·KW] · col[C·KH·KW, OH·OW]
        sgemm(
            1.0,
            Mat::new(w, rows, fan_in),
            Mat::new(col, fan_in, area),
            beta,
            MatMut::new(y_n, rows, area),
        );
    }
}

/// The gradients of [`forward`]: `d_w += Σ_n d_y_n · col_nᵀ`, `d_b += Σ_{n,i,j} d_y`, and,
/// when `d_x` is given, `d_x += col2im(wᵀ · d_y_n)`. All three accumulate.
///
/// The batch is split over the [`parallel::threads`]. Per thread, `scratch` holds one unfolded
/// sample ([`Conv2dGeom::col_len`] values: the unfolded input while `d_w` is accumulated, then
/// the unfolded input gradient) and a partial `d_w`. It grows on first use only.
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
    g: &Conv2dGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    // d_y: (N, O, OH, OW), x: (N, C, H, W), w: (O, C, KH, KW)
    //   -> d_x: (N, C, H, W), d_w: (O, C, KH, KW), d_b: (O)
    debug_check(d_y, x, w, g, n);
    debug_assert_eq!(d_w.len(), g.weight_len());
    debug_assert!(d_x.as_ref().map_or(true, |d_x| d_x.len() == x.len()));
    debug_assert!(d_b.as_ref().map_or(true, |d_b| d_b.len() == g.out_c));
    let area = g.out_h * g.out_w;
    let (in_len, out_len) = (g.in_len(), g.out_len());
    if let Some(d_b) = d_b {
        for d_y_n in (0..n).map(|i| &d_y[i * out_len..(i + 1) * out_len]) {
            for (o, d_b_o) in d_b.iter_mut().enumerate() {
                *d_b_o += d_y_n[o * area..(o + 1) * area].iter().sum::<f32>();
            }
        }
    }
    let col_len = if g.is_pointwise() { 0 } else { g.col_len() };
    let w_len = g.weight_len();
    // One task per thread, each with its own run of samples, its own unfolding buffer and
    // (beyond the first task, which adds into `d_w` itself) its own partial `d_w`, summed into
    // `d_w` in task order afterwards, so the result depends on the thread count only.
    let tasks = parallel::tasks_for(n, 1);
    let per_task = col_len + w_len;
    if scratch.len() < tasks * per_task {
        scratch.resize(tasks * per_task, 0.0);
    }
    let scratch = &mut scratch[..tasks * per_task];
    for partial in scratch.chunks_exact_mut(per_task).skip(1) {
        partial[col_len..].fill(0.0);
    }
    {
        let d_x_all = d_x.map(SharedMut::new);
        let d_w_first = SharedMut::new(d_w);
        let bufs = SharedMut::new(scratch);
        parallel::run(tasks, |t| {
            let samples = parallel::part(n, tasks, t);
            // Safety: task `t` alone touches its samples' input gradients, its own part of
            // `scratch`, and (task 0 only) `d_w`; `run` returns before any of them is
            // borrowed again.
            let (col, d_w_t, d_x_t) = unsafe {
                let buf = bufs.slice(t * per_task, per_task);
                let (col, partial) = buf.split_at_mut(col_len);
                let d_w_t = if t == 0 {
                    d_w_first.slice(0, w_len)
                } else {
                    partial
                };
                let d_x_t =
                    d_x_all.map(|d| d.slice(samples.start * in_len, samples.len() * in_len));
                (col, d_w_t, d_x_t)
            };
            backward_samples(
                d_x_t,
                d_w_t,
                &d_y[samples.start * out_len..samples.end * out_len],
                &x[samples.start * in_len..samples.end * in_len],
                w,
                g,
                samples.len(),
                col,
            );
        });
    }
    for partial in scratch.chunks_exact(per_task).skip(1) {
        for (d, &p) in d_w.iter_mut().zip(&partial[col_len..]) {
            *d += p;
        }
    }
}

/// [`backward`]'s `d_w` and `d_x` for consecutive samples on one thread, unfolding each into
/// `col`.
// The arguments of `backward`, less the bias, plus the buffer.
#[allow(clippy::too_many_arguments)]
fn backward_samples(
    mut d_x: Option<&mut [f32]>,
    d_w: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    w: &[f32],
    g: &Conv2dGeom,
    n: usize,
    col: &mut [f32],
) {
    let (rows, fan_in, area) = (g.out_c, g.col_rows(), g.out_h * g.out_w);
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let pointwise = g.is_pointwise();
    for i in 0..n {
        let x_n = &x[i * in_len..(i + 1) * in_len];
        let d_y_n = &d_y[i * out_len..(i + 1) * out_len];
        let d_x_n = d_x
            .as_deref_mut()
            .map(|d_x| &mut d_x[i * in_len..(i + 1) * in_len]);
        let d_y_n = Mat::new(d_y_n, rows, area);
        let w_t = Mat::new(w, rows, fan_in).t();
        if pointwise {
            // d_w[O, C] += d_y_n[O, H·W] · x_nᵀ[H·W, C]
            let x_n_t = Mat::new(x_n, fan_in, area).t();
            sgemm(1.0, d_y_n, x_n_t, 1.0, MatMut::new(d_w, rows, fan_in));
            if let Some(d_x_n) = d_x_n {
                // d_x_n[C, H·W] += wᵀ[C, O] · d_y_n[O, H·W]
                sgemm(1.0, w_t, d_y_n, 1.0, MatMut::new(d_x_n, fan_in, area));
            }
        } else {
            im2col(col, x_n, g);
            // d_w[O, C·KH·KW] += d_y_n[O, OH·OW] · colᵀ[OH·OW, C·KH·KW]
            let col_t = Mat::new(col, fan_in, area).t();
            sgemm(1.0, d_y_n, col_t, 1.0, MatMut::new(d_w, rows, fan_in));
            if let Some(d_x_n) = d_x_n {
                // d_col[C·KH·KW, OH·OW] = wᵀ[C·KH·KW, O] · d_y_n[O, OH·OW], over the col buffer
                sgemm(1.0, w_t, d_y_n, 0.0, MatMut::new(col, fan_in, area));
                col2im_add(d_x_n, col, g);
            }
        }
    }
}

/// The reference version of [`forward`]: one direct sum per output, no unfolding, no `sgemm`.
/// `y` is overwritten.
///
/// # Panics
/// When a slice is shorter than the geometry needs.
pub fn forward_naive(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &Conv2dGeom,
    n: usize,
) {
    // x: (N, C, H, W), w: (O, C, KH, KW), b: (O) -> y: (N, O, OH, OW)
    debug_check(y, x, w, g, n);
    for i in 0..n {
        for o in 0..g.out_c {
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    let mut acc = b.map_or(0.0, |b| b[o]);
                    for c in 0..g.in_c {
                        for kh in 0..g.k_h {
                            for kw in 0..g.k_w {
                                if let Some(xi) = input_index(g, i, c, oh, ow, kh, kw) {
                                    acc += w[((o * g.in_c + c) * g.k_h + kh) * g.k_w + kw] * x[xi];
                                }
                            }
                        }
                    }
                    y[((i * g.out_c + o) * g.out_h + oh) * g.out_w + ow] = acc;
                }
            }
        }
    }
}

/// The reference version of [`backward`]: every output scatters its gradient to the weight,
/// bias and input it was computed from. Accumulates, like [`backward`].
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
    g: &Conv2dGeom,
    n: usize,
) {
    // d_y: (N, O, OH, OW), x: (N, C, H, W), w: (O, C, KH, KW)
    //   -> d_x: (N, C, H, W), d_w: (O, C, KH, KW), d_b: (O)
    debug_check(d_y, x, w, g, n);
    for i in 0..n {
        for o in 0..g.out_c {
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    let grad = d_y[((i * g.out_c + o) * g.out_h + oh) * g.out_w + ow];
                    if let Some(d_b) = d_b.as_deref_mut() {
                        d_b[o] += grad;
                    }
                    for c in 0..g.in_c {
                        for kh in 0..g.k_h {
                            for kw in 0..g.k_w {
                                if let Some(xi) = input_index(g, i, c, oh, ow, kh, kw) {
                                    let wi = ((o * g.in_c + c) * g.k_h + kh) * g.k_w + kw;
                                    d_w[wi] += grad * x[xi];
                                    if let Some(d_x) = d_x.as_deref_mut() {
                                        d_x[xi] += grad * w[wi];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Where in `x` the tap `(c, kh, kw)` of output `(i, ·, oh, ow)` reads, or `None` in padding.
fn input_index(
    g: &Conv2dGeom,
    i: usize,
    c: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
) -> Option<usize> {
    let ih = (oh * g.stride_h + kh).checked_sub(g.pad_h)?;
    let iw = (ow * g.stride_w + kw).checked_sub(g.pad_w)?;
    (ih < g.in_h && iw < g.in_w).then(|| ((i * g.in_c + c) * g.in_h + ih) * g.in_w + iw)
}

fn debug_check(y: &[f32], x: &[f32], w: &[f32], g: &Conv2dGeom, n: usize) {
    debug_assert_eq!(y.len(), n * g.out_len(), "y (or d_y) length");
    debug_assert_eq!(x.len(), n * g.in_len(), "x length");
    debug_assert_eq!(w.len(), g.weight_len(), "w length");
}

/// Unfolds one sample: `col[(c·KH + kh)·KW + kw, oh·OW + ow] = x[c, oh·SH + kh - PH, ow·SW + kw - PW]`,
/// zero where that lies in the padding.
fn im2col(col: &mut [f32], x: &[f32], g: &Conv2dGeom) {
    // x: (C, H, W) -> col: (C·KH·KW, OH·OW)
    debug_assert_eq!(col.len(), g.col_len());
    debug_assert_eq!(x.len(), g.in_len());
    let (plane, area, out_w, sw) = (g.in_h * g.in_w, g.out_h * g.out_w, g.out_w, g.stride_w);
    let mut row_index = 0;
    for c in 0..g.in_c {
        let x_c = &x[c * plane..(c + 1) * plane];
        for kh in 0..g.k_h {
            let rows_inside = outputs_reading(kh, g.pad_h, g.stride_h, g.in_h, g.out_h);
            for kw in 0..g.k_w {
                let cols_inside = outputs_reading(kw, g.pad_w, sw, g.in_w, out_w);
                let row = &mut col[row_index * area..(row_index + 1) * area];
                row_index += 1;
                for (oh, out) in row.chunks_exact_mut(out_w).enumerate() {
                    if !rows_inside.contains(&oh) || cols_inside.is_empty() {
                        out.fill(0.0);
                        continue;
                    }
                    let ih = oh * g.stride_h + kh - g.pad_h;
                    let iw0 = cols_inside.start * sw + kw - g.pad_w;
                    let x_row = &x_c[ih * g.in_w..(ih + 1) * g.in_w];
                    out[..cols_inside.start].fill(0.0);
                    out[cols_inside.end..].fill(0.0);
                    let out = &mut out[cols_inside.clone()];
                    if sw == 1 {
                        out.copy_from_slice(&x_row[iw0..iw0 + out.len()]);
                    } else {
                        for (o, &v) in out.iter_mut().zip(x_row[iw0..].iter().step_by(sw)) {
                            *o = v;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every entry of `col` to the input cell it was read from.
fn col2im_add(d_x: &mut [f32], col: &[f32], g: &Conv2dGeom) {
    // col: (C·KH·KW, OH·OW) -> d_x: (C, H, W)
    debug_assert_eq!(col.len(), g.col_len());
    debug_assert_eq!(d_x.len(), g.in_len());
    let (plane, area, out_w, sw) = (g.in_h * g.in_w, g.out_h * g.out_w, g.out_w, g.stride_w);
    let mut row_index = 0;
    for c in 0..g.in_c {
        let d_x_c = &mut d_x[c * plane..(c + 1) * plane];
        for kh in 0..g.k_h {
            let rows_inside = outputs_reading(kh, g.pad_h, g.stride_h, g.in_h, g.out_h);
            for kw in 0..g.k_w {
                let cols_inside = outputs_reading(kw, g.pad_w, sw, g.in_w, out_w);
                let row = &col[row_index * area..(row_index + 1) * area];
                row_index += 1;
                if cols_inside.is_empty() {
                    continue;
                }
                for oh in rows_inside.clone() {
                    let ih = oh * g.stride_h + kh - g.pad_h;
                    let iw0 = cols_inside.start * sw + kw - g.pad_w;
                    let d_x_row = &mut d_x_c[ih * g.in_w..(ih + 1) * g.in_w];
                    let src = &row[oh * out_w..(oh + 1) * out_w][cols_inside.clone()];
                    if sw == 1 {
                        for (d, &v) in d_x_row[iw0..iw0 + src.len()].iter_mut().zip(src) {
                            *d += v;
                        }
                    } else {
                        for (d, &v) in d_x_row[iw0..].iter_mut().step_by(sw).zip(src) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{assert_close, check_gradient, dot, rng, uniform};

    type Case = (usize, [usize; 3], usize, [usize; 2], [usize; 2], [usize; 2]);

    /// `(n, [C, H, W], O, [KH, KW], [SH, SW], [PH, PW])`: batch 0 and 1, odd sizes, strides 1-3,
    /// pads 0-2, non-square kernels, the 1×1 fast path, and windows wholly in the padding.
    const CASES: &[Case] = &[
        (0, [2, 5, 5], 3, [3, 3], [1, 1], [1, 1]),
        (1, [1, 1, 1], 1, [1, 1], [1, 1], [0, 0]),
        (2, [3, 4, 5], 2, [1, 1], [1, 1], [0, 0]),
        (3, [2, 7, 6], 3, [3, 2], [2, 1], [1, 0]),
        (2, [3, 9, 8], 4, [5, 3], [3, 2], [2, 1]),
        (1, [2, 5, 7], 5, [2, 5], [1, 3], [0, 2]),
        (2, [1, 6, 6], 2, [1, 1], [2, 2], [0, 0]),
        (1, [2, 3, 3], 1, [1, 1], [1, 1], [2, 2]),
        (2, [4, 11, 13], 6, [3, 3], [3, 3], [1, 2]),
        (1, [17, 8, 8], 9, [3, 3], [1, 1], [1, 1]),
    ];

    fn geom(case: &Case) -> Conv2dGeom {
        let &(_, input, out_c, kernel, stride, pad) = case;
        Conv2dGeom::new(input, out_c, kernel, stride, pad, Rounding::Floor)
    }

    #[test]
    fn forward_matches_naive() {
        let mut r = rng(1);
        let mut scratch = Vec::new();
        for case in CASES {
            let (g, n) = (geom(case), case.0);
            let x = uniform(&mut r, n * g.in_len());
            let w = uniform(&mut r, g.weight_len());
            let b = uniform(&mut r, g.out_c);
            for bias in [None, Some(&b[..])] {
                let mut fast = vec![f32::NAN; n * g.out_len()];
                let mut naive = vec![f32::NAN; n * g.out_len()];
                forward(&mut fast, &x, &w, bias, &g, n, &mut scratch);
                forward_naive(&mut naive, &x, &w, bias, &g, n);
                assert_close(&format!("y {g:?}"), &fast, &naive, 1e-5);
            }
        }
    }

    /// Gradients start from random values, so the test also checks that both versions add.
    #[test]
    fn backward_matches_naive() {
        let mut r = rng(2);
        let mut scratch = Vec::new();
        for case in CASES {
            let (g, n) = (geom(case), case.0);
            let x = uniform(&mut r, n * g.in_len());
            let w = uniform(&mut r, g.weight_len());
            let d_y = uniform(&mut r, n * g.out_len());
            let d_x0 = uniform(&mut r, x.len());
            let d_w0 = uniform(&mut r, w.len());
            let d_b0 = uniform(&mut r, g.out_c);
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
                    assert_eq!(d_x, d_x0);
                    assert_eq!(d_b, d_b0);
                }
            }
        }
    }

    /// The batch split over three threads gives what the reference gives (tasks of one
    /// sample, of several, and no sample at all).
    #[test]
    fn threaded_matches_naive() {
        crate::ops::parallel::with_threads(3, || {
            let mut r = rng(4);
            let mut scratch = Vec::new();
            for case in CASES {
                let g = geom(case);
                for n in [case.0, 4, 7] {
                    let x = uniform(&mut r, n * g.in_len());
                    let w = uniform(&mut r, g.weight_len());
                    let b = uniform(&mut r, g.out_c);
                    let mut fast = vec![f32::NAN; n * g.out_len()];
                    let mut naive = vec![f32::NAN; n * g.out_len()];
                    forward(&mut fast, &x, &w, Some(&b), &g, n, &mut scratch);
                    forward_naive(&mut naive, &x, &w, Some(&b), &g, n);
                    assert_close(&format!("y {g:?} n {n}"), &fast, &naive, 1e-5);
                    let d_y = uniform(&mut r, n * g.out_len());
                    let d_w0 = uniform(&mut r, w.len());
                    let (mut d_x, mut d_w, mut d_b) =
                        (vec![0.5; x.len()], d_w0.clone(), vec![0.25; g.out_c]);
                    let (mut e_x, mut e_w, mut e_b) = (d_x.clone(), d_w0, d_b.clone());
                    let (dx, dw, db) = (&mut d_x[..], &mut d_w[..], &mut d_b[..]);
                    backward(Some(dx), dw, Some(db), &d_y, &x, &w, &g, n, &mut scratch);
                    let (ex, ew, eb) = (&mut e_x[..], &mut e_w[..], &mut e_b[..]);
                    backward_naive(Some(ex), ew, Some(eb), &d_y, &x, &w, &g, n);
                    assert_close(&format!("d_x {g:?} n {n}"), &d_x, &e_x, 1e-5);
                    assert_close(&format!("d_w {g:?} n {n}"), &d_w, &e_w, 1e-5);
                    assert_close(&format!("d_b {g:?} n {n}"), &d_b, &e_b, 1e-5);
                }
            }
        });
    }

    /// `L = Σ r ⊙ forward(x, w, b)`, differentiated numerically in `x`, `w` and `b`.
    #[test]
    fn backward_matches_finite_differences() {
        let mut r = rng(3);
        let mut scratch = Vec::new();
        for case in [CASES[3], CASES[4], CASES[2], CASES[7]] {
            let (g, n) = (geom(&case), case.0);
            let x = uniform(&mut r, n * g.in_len());
            let w = uniform(&mut r, g.weight_len());
            let b = uniform(&mut r, g.out_c);
            let weights = uniform(&mut r, n * g.out_len());
            let (mut d_x, mut d_w, mut d_b) =
                (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
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
            let mut y = vec![0.0; n * g.out_len()];
            let mut loss = |x: &[f32], w: &[f32], b: &[f32]| {
                forward(&mut y, x, w, Some(b), &g, n, &mut scratch);
                dot(&weights, &y)
            };
            check_gradient("d_x", &x, &d_x, 1e-2, 1e-2, |v| loss(v, &w, &b));
            check_gradient("d_w", &w, &d_w, 1e-2, 1e-2, |v| loss(&x, v, &b));
            check_gradient("d_b", &b, &d_b, 1e-2, 1e-2, |v| loss(&x, &w, v));
        }
    }

    /// Zero padding, by hand: a 2×2 box filter over `[[1, 2], [3, 4]]` padded by one.
    #[test]
    fn padded_box_filter() {
        let g = Conv2dGeom::new([1, 2, 2], 1, [2, 2], [1, 1], [1, 1], Rounding::Exact);
        let mut y = [f32::NAN; 9];
        forward(
            &mut y,
            &[1.0, 2.0, 3.0, 4.0],
            &[1.0; 4],
            None,
            &g,
            1,
            &mut Vec::new(),
        );
        assert_eq!(y, [1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0]);
    }

    /// Once `scratch` has grown, neither pass reallocates it.
    #[test]
    fn warm_scratch_is_not_reallocated() {
        let g = geom(&CASES[4]);
        let n = 2;
        let x = vec![0.5; n * g.in_len()];
        let w = vec![0.25; g.weight_len()];
        let mut y = vec![0.0; n * g.out_len()];
        let (mut d_x, mut d_w) = (vec![0.0; x.len()], vec![0.0; w.len()]);
        let mut scratch = Vec::new();
        forward(&mut y, &x, &w, None, &g, n, &mut scratch);
        let (ptr, cap) = (scratch.as_ptr(), scratch.capacity());
        assert!(cap >= g.col_len());
        for _ in 0..2 {
            forward(&mut y, &x, &w, None, &g, n, &mut scratch);
            backward(
                Some(&mut d_x),
                &mut d_w,
                None,
                &y,
                &x,
                &w,
                &g,
                n,
                &mut scratch,
            );
        }
        assert_eq!((scratch.as_ptr(), scratch.capacity()), (ptr, cap));
    }
}
