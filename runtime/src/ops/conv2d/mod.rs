//! 2-D convolution (cross-correlation, as in PyTorch), forward and backward.

use super::grown;
use super::packed::Isa;
use super::parallel::{self, SharedMut};
use striate_geometry::{output_size_2d, Rounding, SizeError};

mod implicit;

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
        let [out_h, out_w] =
            match output_size_2d([input[1], input[2]], kernel, stride, pad, rounding) {
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
    /// the kernels can read it without unfolding.
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
/// `y` is overwritten. The batch is split over the [`parallel::threads`], each with its own
/// part of `scratch` (grown on first use, reused after that). Stride 1 with at most 16 output
/// channels (LeNet-5's layers) runs a direct kernel that accumulates each run of outputs in
/// registers. Otherwise each sample is one packed matrix product of the weights, seen as a
/// `(O, C·KH·KW)` matrix, and the unfolded input, which is packed a block at a time straight
/// from the sample and never written out whole; the bias is added as the
/// product is written. Neither path allocates once `scratch` has grown.
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
    debug_assert!(b.is_none_or(|b| b.len() == g.out_c));
    let (in_len, out_len) = (g.in_len(), g.out_len());
    // One task per thread, each with its own run of samples and its own part of the scratch,
    // which is sized for the backward pass too, so that it grows once.
    // The thread count is read once: the scratch is sized and cut by the same count even if
    // another thread changes it meanwhile.
    let threads = parallel::threads();
    let tasks = n.clamp(1, threads);
    let isa = Isa::detect();
    let scratch = grown(scratch, scratch_len(g, isa, threads));
    // The packed path shares the packed weights between the tasks, ahead of their parts.
    let (shared, per_task) = if direct::applies(g) {
        (0, direct::padded_len(g))
    } else {
        (implicit::shared_len(g, isa), implicit::task_len(g, isa))
    };
    let (packed_w, bufs) = scratch[..shared + threads * per_task].split_at_mut(shared);
    if shared > 0 {
        implicit::pack_weights(packed_w, w, g, isa);
    }
    let packed_w = &*packed_w;
    // Fewer samples than threads (one image at a time, say): the threads split each sample's
    // output channels instead.
    let parts = implicit::channel_parts(g, isa, threads);
    if shared > 0 && n < threads && parts > 1 {
        for (x_n, y_n) in x.chunks_exact(in_len).zip(y.chunks_exact_mut(out_len)) {
            implicit::forward_sample_parts(y_n, x_n, packed_w, b, g, isa, bufs, parts);
        }
        return;
    }
    let y_all = SharedMut::new(y);
    let bufs = SharedMut::new(bufs);
    parallel::run(tasks, |t| {
        let samples = parallel::part(n, tasks, t);
        // Safety: task `t` alone touches its samples' outputs and its own part of `scratch`;
        // `run` returns before `y` and `scratch` are borrowed again.
        let (y_t, buf) = unsafe {
            (
                y_all.slice(samples.start * out_len, samples.len() * out_len),
                bufs.slice(t * per_task, per_task),
            )
        };
        let x_t = &x[samples.start * in_len..samples.end * in_len];
        for (x_n, y_n) in x_t.chunks_exact(in_len).zip(y_t.chunks_exact_mut(out_len)) {
            if shared > 0 {
                implicit::forward_sample(y_n, x_n, packed_w, b, g, isa, buf);
            } else {
                direct::forward_sample(y_n, x_n, w, b, g, &mut buf[..direct::padded_len(g)]);
            }
        }
    });
}

/// Values of scratch both passes need, whichever way they go and however many tasks they
/// split into (at most one per thread), so that the scratch grows once: [`forward`]'s shared
/// and per-task parts, and [`backward`]'s, which add a partial `d_w` per task.
fn scratch_len(g: &Conv2dGeom, isa: Isa, threads: usize) -> usize {
    let tasks = threads;
    let w_len = g.weight_len();
    let mut most = 0;
    if direct::applies(g) {
        most = tasks * (direct::backward_len(g) + w_len);
    }
    if !direct::applies(g) {
        most = most.max(implicit::shared_len(g, isa) + tasks * implicit::task_len(g, isa));
    }
    if !direct::handles_all(g) {
        let per_task = implicit::backward_task_len(g, isa) + w_len;
        most = most.max(implicit::backward_shared_len(g, isa) + tasks * per_task);
    }
    most
}

/// The gradients of [`forward`]: `d_w += Σ_n d_y_n · col_nᵀ`, `d_b += Σ_{n,i,j} d_y`, and,
/// when `d_x` is given, `d_x += col2im(wᵀ · d_y_n)`. All three accumulate.
///
/// The batch is split over the [`parallel::threads`]. Per thread, `scratch` holds a partial
/// `d_w` and either the direct kernels' buffers (stride 1, at most 16 output channels: `d_x`
/// as the forward pass of the flipped kernels) or those of the packed products (the padded
/// sample, packed blocks, and the unfolded input gradient before it is folded back). It
/// grows on first use only.
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
    debug_assert!(d_x.as_ref().is_none_or(|d_x| d_x.len() == x.len()));
    debug_assert!(d_b.as_ref().is_none_or(|d_b| d_b.len() == g.out_c));
    let area = g.out_h * g.out_w;
    let (in_len, out_len) = (g.in_len(), g.out_len());
    if let Some(d_b) = d_b {
        for d_y_n in (0..n).map(|i| &d_y[i * out_len..(i + 1) * out_len]) {
            for (o, d_b_o) in d_b.iter_mut().enumerate() {
                *d_b_o += lane_sum(&d_y_n[o * area..(o + 1) * area]);
            }
        }
    }
    let w_len = g.weight_len();
    // One task per thread, each with its own run of samples, its own workspace and (beyond
    // the first task, which adds into `d_w` itself) its own partial `d_w`, summed into `d_w` in
    // task order afterwards, so the result depends on the thread count only.
    let threads = parallel::threads();
    let tasks = n.clamp(1, threads);
    let isa = Isa::detect();
    let scratch = grown(scratch, scratch_len(g, isa, threads));
    let use_direct = direct::applies(g) && (d_x.is_none() || direct::handles_all(g));
    // The packed path shares the packed transposed weights (when `d_x` is wanted) between the
    // tasks, ahead of their parts.
    let (shared, per_task) = if use_direct {
        (0, direct::backward_len(g) + w_len)
    } else {
        let shared = if d_x.is_some() {
            implicit::backward_shared_len(g, isa)
        } else {
            0
        };
        (shared, implicit::backward_task_len(g, isa) + w_len)
    };
    let (packed_w_t, scratch) = scratch[..shared + tasks * per_task].split_at_mut(shared);
    if shared > 0 {
        implicit::pack_weights_t(packed_w_t, w, g, isa);
    }
    let packed_w_t = &*packed_w_t;
    let w_at = per_task - w_len;
    for partial in scratch.chunks_exact_mut(per_task).skip(1) {
        partial[w_at..].fill(0.0);
    }
    {
        let d_x_all = d_x.map(SharedMut::new);
        let d_w_first = SharedMut::new(d_w);
        let bufs = SharedMut::new(&mut *scratch);
        parallel::run(tasks, |t| {
            let samples = parallel::part(n, tasks, t);
            // Safety: task `t` alone touches its samples' input gradients, its own part of
            // `scratch`, and (task 0 only) `d_w`; `run` returns before any of them is
            // borrowed again.
            let (buf, d_w_t, mut d_x_t) = unsafe {
                let buf = bufs.slice(t * per_task, per_task);
                let (buf, partial) = buf.split_at_mut(w_at);
                let d_w_t = if t == 0 {
                    d_w_first.slice(0, w_len)
                } else {
                    partial
                };
                let d_x_t =
                    d_x_all.map(|d| d.slice(samples.start * in_len, samples.len() * in_len));
                (buf, d_w_t, d_x_t)
            };
            let d_y_t = &d_y[samples.start * out_len..samples.end * out_len];
            let x_t = &x[samples.start * in_len..samples.end * in_len];
            if use_direct {
                direct::backward(d_x_t, d_w_t, d_y_t, x_t, w, g, samples.len(), buf);
                return;
            }
            for (i, (d_y_n, x_n)) in d_y_t
                .chunks_exact(out_len)
                .zip(x_t.chunks_exact(in_len))
                .enumerate()
            {
                let d_x_n = d_x_t
                    .as_deref_mut()
                    .map(|d| &mut d[i * in_len..(i + 1) * in_len]);
                implicit::backward_sample(d_x_n, d_w_t, d_y_n, x_n, packed_w_t, g, isa, buf);
            }
        });
    }
    for partial in scratch.chunks_exact(per_task).skip(1) {
        for (d, &p) in d_w.iter_mut().zip(&partial[w_at..]) {
            *d += p;
        }
    }
}

/// The reference version of [`forward`]: one direct sum per output, no unfolding, no packing.
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

/// `Σ v`, in sixteen interleaved partial sums (so that it vectorises; a single running sum
/// must be added in order) combined in a fixed order at the end.
fn lane_sum(v: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (l, &x) in lanes.iter_mut().zip(chunk) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
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

/// Direct kernels for stride-1 convolutions with few output channels (LeNet-5's two layers:
/// 6 kernels of 1×5×5 and 16 of 6×5×5), where a matrix product's tiles of 12 rows would be
/// partly empty and its packing would cost as much as its sums. Each sample is copied once into a zero-padded buffer. Forward, every run of
/// [`LANES`] outputs of one row, for up to [`GROUP`] output channels at once, is accumulated
/// in registers over the taps; the weight gradient is accumulated per tap in registers over
/// all output positions; the input gradient is the forward pass of the [`transposed`]
/// geometry. No allocation, and results that do not depend on the thread count.
mod direct {
    use super::Conv2dGeom;

    use crate::ops::isa::allowed as isa_allowed;

    /// Outputs of one row computed together (two AVX vectors).
    pub(super) const LANES: usize = 16;
    /// Output channels computed together: `GROUP × LANES` accumulators fill 12 of the 16 AVX
    /// registers.
    const GROUP: usize = 6;
    /// The most output channels for which these kernels are used: measured faster than
    /// im2col + sgemm for both LeNet-5 layers (6 and 16 channels; `conv2d/lenet*` in the
    /// benches), and than the packed products that replaced sgemm (LeNet-5 training at 2
    /// threads: 36,000 images/s against 18,000 with these kernels off).
    const MAX_OUT: usize = 16;

    /// Whether [`forward_sample`] is used for `g`.
    pub(super) const fn applies(g: &Conv2dGeom) -> bool {
        g.stride_h == 1
            && g.stride_w == 1
            && g.out_c <= MAX_OUT
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
        let own = padded_len(g) + sums_len(g);
        match transposed(g) {
            Some(t) if handles_all(g) => own + g.weight_len() + g.in_len() + padded_len(&t),
            _ => own,
        }
    }

    /// [`super::backward`]'s `d_w` and (when [`handles_all`]) `d_x` of `n` samples, with
    /// [`backward_weights`] and, for `d_x`, [`forward_sample`] of the [`transposed`]
    /// geometry. `scratch` is [`backward_len`] values.
    // The arguments of `backward`, less the bias, plus the buffer.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward(
        d_x: Option<&mut [f32]>,
        d_w: &mut [f32],
        d_y: &[f32],
        x: &[f32],
        w: &[f32],
        g: &Conv2dGeom,
        n: usize,
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
            backward_weights(sums, d_y_n, x_n, g, padded);
        }
        add_sums(d_w, sums);
        let (Some(d_x), Some(t)) = (d_x, transposed(g)) else {
            return;
        };
        debug_assert!(handles_all(g));
        let (flipped, rest) = rest.split_at_mut(g.weight_len());
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
            forward_sample(d_x_n_only, d_y_n, flipped, None, &t, padded_t);
            for (d, &v) in d_x_n.iter_mut().zip(&*d_x_n_only) {
                *d += v;
            }
        }
    }

    /// Values of the per-lane sums [`backward_weights`] accumulates: `O × C·KH·KW × LANES`.
    pub(super) const fn sums_len(g: &Conv2dGeom) -> usize {
        g.out_c * g.col_rows() * LANES
    }

    /// One sample of [`super::backward`]'s `d_w += d_y · colᵀ` (stride 1), accumulated per
    /// tap over all output positions in [`LANES`] partial sums each: `sums` holds them from
    /// sample to sample (start it at zero; [`add_sums`] adds them to `d_w`), as summing
    /// across lanes for every sample would cost as much as a small layer's products.
    /// `scratch` is [`padded_len`] values.
    pub(super) fn backward_weights(
        sums: &mut [f32],
        d_y: &[f32],
        x: &[f32],
        g: &Conv2dGeom,
        scratch: &mut [f32],
    ) {
        // d_y: (O, OH, OW), x: (C, H, W) -> sums: (O, C·KH·KW, LANES)
        debug_assert!(applies(g));
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
        #[cfg(target_arch = "x86_64")]
        if isa_allowed(1) && is_x86_feature_detected!("avx512f") {
            // Safety: the CPU has AVX-512F, checked just above.
            unsafe { weights_avx512(sums, d_y_runs, padded, g) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if isa_allowed(2) && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // Safety: the CPU has AVX2 and FMA, checked just above.
            unsafe { weights_fma(sums, d_y_runs, padded, g) };
            return;
        }
        weights_body::<1, false>(sums, d_y_runs, padded, g);
    }

    /// [`weights_body`] compiled for AVX-512, whose 32 registers hold the sums of four taps
    /// for six channels.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
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
                while kw + TAPS <= g.k_w {
                    weights_taps::<G, TAPS, FMA>(sums_g, d_y_g, padded, x_at + kw, t0 + kw, g);
                    kw += TAPS;
                }
                for kw in kw..g.k_w {
                    weights_taps::<G, 1, FMA>(sums_g, d_y_g, padded, x_at + kw, t0 + kw, g);
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
    /// One sample of [`super::forward`] (stride 1): `y` is overwritten; `scratch` is
    /// [`padded_len`] values.
    pub(super) fn forward_sample(
        y: &mut [f32],
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        g: &Conv2dGeom,
        scratch: &mut [f32],
    ) {
        // x: (C, H, W), w: (O, C, KH, KW), b: (O) -> y: (O, OH, OW)
        debug_assert!(applies(g));
        debug_assert_eq!(scratch.len(), padded_len(g));
        let (padded, w_t) = scratch.split_at_mut(plane_len(g));
        pad_sample(padded, x, g, padded_width(g));
        #[cfg(target_arch = "x86_64")]
        if isa_allowed(1) && is_x86_feature_detected!("avx512f") {
            // Safety: the CPU has AVX-512F, checked just above.
            unsafe { forward_avx512(y, padded, w, b, g, w_t) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if isa_allowed(2) && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // Safety: the CPU has AVX2 and FMA, checked just above.
            unsafe { forward_fma(y, padded, w, b, g, w_t) };
            return;
        }
        forward_body::<false>(y, padded, w, b, g, w_t);
    }

    /// [`forward_body`] compiled for AVX-512 (one register per run of [`LANES`] outputs).
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{
        assert_close, assert_scratch_reused, check_gradient, dot, rng, uniform,
    };

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

    /// Forward and backward (with and without `d_x` and `d_b`, into gradients that start
    /// random) against the reference for `case` at each batch size, outputs NaN-filled first.
    fn check_against_naive(case: &Case, batches: &[usize], seed: u64) {
        let g = geom(case);
        let mut r = rng(seed);
        let mut scratch = Vec::new();
        for &n in batches {
            let x = uniform(&mut r, n * g.in_len());
            let w = uniform(&mut r, g.weight_len());
            let b = uniform(&mut r, g.out_c);
            for bias in [None, Some(&b[..])] {
                let mut fast = vec![f32::NAN; n * g.out_len()];
                let mut naive = vec![f32::NAN; n * g.out_len()];
                forward(&mut fast, &x, &w, bias, &g, n, &mut scratch);
                forward_naive(&mut naive, &x, &w, bias, &g, n);
                assert_close(&format!("y {g:?} n {n}"), &fast, &naive, 1e-4);
            }
            let d_y = uniform(&mut r, n * g.out_len());
            let (d_x0, d_w0, d_b0) = (
                uniform(&mut r, x.len()),
                uniform(&mut r, w.len()),
                uniform(&mut r, g.out_c),
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
                assert_close(&format!("d_x {g:?} n {n}"), &d_x, &e_x, 1e-4);
                assert_close(&format!("d_w {g:?} n {n}"), &d_w, &e_w, 1e-4);
                assert_close(&format!("d_b {g:?} n {n}"), &d_b, &e_b, 1e-4);
            }
        }
    }

    /// The direct kernels (stride 1, at most 16 output channels): channel counts that leave
    /// a short last group of 6, rows of 1, 15, 16, 17 and 22 outputs around the 16-output
    /// runs, one input channel and several, padding from none to `K - 1`, and a padding of
    /// `K` or more, where the input gradient falls back to the packed products.
    #[test]
    fn direct_kernels_match_naive() {
        let cases: &[Case] = &[
            (0, [1, 5, 5], 6, [5, 5], [1, 1], [2, 2]),
            (1, [1, 28, 28], 6, [5, 5], [1, 1], [2, 2]),
            (3, [6, 14, 14], 16, [5, 5], [1, 1], [0, 0]),
            (2, [3, 9, 21], 7, [3, 4], [1, 1], [1, 2]),
            (2, [2, 5, 17], 8, [3, 2], [1, 1], [0, 0]),
            (1, [2, 4, 16], 13, [3, 3], [1, 1], [1, 1]),
            (2, [5, 3, 3], 1, [3, 3], [1, 1], [0, 0]),
            (3, [1, 6, 15], 2, [1, 3], [1, 1], [0, 1]),
            (2, [2, 4, 5], 3, [2, 2], [1, 1], [2, 2]),
        ];
        for (i, case) in cases.iter().enumerate() {
            assert!(direct::applies(&geom(case)), "{case:?}");
            check_against_naive(case, &[case.0, 5], 30 + i as u64);
        }
        assert!(!direct::handles_all(&geom(&cases[8])));
    }

    /// The direct kernels compiled for AVX2 (one tap at a time in the weight gradient) and
    /// without either instruction set, where the CPU running the tests has them.
    #[test]
    fn direct_kernels_on_every_instruction_set() {
        let cases: &[Case] = &[
            (2, [1, 28, 28], 6, [5, 5], [1, 1], [2, 2]),
            (2, [6, 14, 14], 16, [5, 5], [1, 1], [0, 0]),
            (2, [3, 9, 21], 7, [3, 4], [1, 1], [1, 2]),
        ];
        for level in [2, 3] {
            crate::ops::isa::MIN_ISA.with(|m| m.set(level));
            for (i, case) in cases.iter().enumerate() {
                check_against_naive(case, &[case.0], 60 + i as u64);
            }
        }
        crate::ops::isa::MIN_ISA.with(|m| m.set(0));
    }

    /// Batches of several samples through the packed products, on one thread and two (tasks
    /// of different sizes), with stride 1 and 2.
    #[test]
    fn packed_batches_match_naive() {
        let cases: &[Case] = &[
            (7, [2, 30, 30], 17, [3, 3], [1, 1], [1, 1]),
            (7, [3, 61, 59], 20, [3, 3], [2, 2], [1, 1]),
        ];
        for (i, case) in cases.iter().enumerate() {
            let g = geom(case);
            assert!(!direct::applies(&g));
            check_against_naive(case, &[7, 4], 40 + i as u64);
        }
        crate::ops::parallel::with_threads(2, || check_against_naive(&cases[0], &[7], 42));
    }

    /// 300 random geometries (channels, sizes, kernels, strides 1-4, padding 0-2, batches 0-3;
    /// some with more taps than `packed::KC`),
    /// every path among them (direct kernels, packed products, the input gradient as a forward
    /// pass or folded back), forward and backward against the reference; a third of them also
    /// on the plain build.
    #[test]
    fn random_geometries_match_naive() {
        use rand::Rng;
        let mut r = rng(97);
        let mut checked = 0;
        while checked < 300 {
            // Now and then enough channels for more taps than one block of packed rows.
            let c = if r.random_bool(0.2) {
                r.random_range(40..60)
            } else {
                r.random_range(1..6)
            };
            let input = [c, r.random_range(1..14), r.random_range(1..14)];
            let kernel = [r.random_range(1..6), r.random_range(1..6)];
            let stride = [r.random_range(1..5), r.random_range(1..5)];
            let pad = [r.random_range(0..3), r.random_range(0..3)];
            let out_c = if r.random_bool(0.5) {
                r.random_range(1..17)
            } else {
                r.random_range(17..30)
            };
            let Ok(g) = Conv2dGeom::try_new(input, out_c, kernel, stride, pad, Rounding::Floor)
            else {
                continue;
            };
            let case: Case = (r.random_range(0..4), input, out_c, kernel, stride, pad);
            assert_eq!(geom(&case), g);
            let level = if checked % 3 == 0 { 3 } else { 0 };
            crate::ops::isa::MIN_ISA.with(|m| m.set(level));
            check_against_naive(&case, &[case.0], 1000 + checked);
            crate::ops::isa::MIN_ISA.with(|m| m.set(0));
            checked += 1;
        }
    }

    /// A single sample's output channels split over two and three threads give the bits of
    /// one thread (three and two panels of rows, for AVX-512's 12-row panels, so that parts
    /// are uneven or empty where there are fewer panels than threads).
    #[test]
    fn channel_split_gives_the_same_bits() {
        let cases: &[Case] = &[
            (1, [3, 35, 35], 30, [11, 11], [4, 4], [0, 0]),
            (1, [5, 9, 9], 17, [3, 3], [1, 1], [1, 1]),
            (1, [4, 8, 8], 20, [1, 1], [1, 1], [0, 0]),
        ];
        let mut r = rng(95);
        for case in cases {
            let g = geom(case);
            let x = uniform(&mut r, g.in_len());
            let w = uniform(&mut r, g.weight_len());
            let b = uniform(&mut r, g.out_c);
            let mut one = vec![f32::NAN; g.out_len()];
            forward(&mut one, &x, &w, Some(&b), &g, 1, &mut Vec::new());
            let mut naive = vec![f32::NAN; g.out_len()];
            forward_naive(&mut naive, &x, &w, Some(&b), &g, 1);
            assert_close(&format!("{g:?}"), &one, &naive, 1e-5);
            for threads in [2, 3] {
                let mut split = vec![f32::NAN; g.out_len()];
                crate::ops::parallel::with_threads(threads, || {
                    assert!(implicit::channel_parts(&g, Isa::detect(), threads) > 1);
                    forward(&mut split, &x, &w, Some(&b), &g, 1, &mut Vec::new());
                });
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&split), bits(&one), "{g:?} threads {threads}");
            }
        }
    }

    /// An input gradient too large to unfold at once is computed and folded back a few
    /// output rows at a time (here 10 and 6), with stride 1 and with stride 2 and padding.
    #[test]
    fn input_gradient_in_parts_matches_naive() {
        let cases: &[Case] = &[
            (1, [32, 20, 20], 17, [5, 5], [1, 1], [0, 0]),
            (2, [32, 41, 39], 18, [5, 5], [2, 2], [2, 1]),
        ];
        for (i, case) in cases.iter().enumerate() {
            let g = geom(case);
            assert!(implicit::input_gradient_geometry(&g).is_none());
            assert!(implicit::fold_rows(&g) < g.out_h);
            assert!(!g.out_h.is_multiple_of(implicit::fold_rows(&g)));
            check_against_naive(case, &[case.0], 90 + i as u64);
        }
    }

    /// The packed forward pass on every instruction set the CPU has: strides 1 to 5 (phase
    /// splits of 1 to 5 phases, padded widths they do not divide), the sample used as it is
    /// (stride 1, no padding), more taps than one block of `B` rows (`packed::KC`), output
    /// rows of 1 and of fewer positions than a block of columns (many pieces per block), more
    /// output channels than a register tile, and an AlexNet conv1 in miniature.
    #[test]
    fn packed_forward_on_every_instruction_set() {
        let cases: &[Case] = &[
            (2, [3, 35, 35], 20, [11, 11], [4, 4], [0, 0]),
            (2, [45, 6, 7], 25, [3, 3], [1, 1], [1, 1]),
            (1, [31, 9, 5], 19, [3, 3], [1, 1], [0, 0]),
            (3, [2, 13, 11], 17, [5, 4], [3, 2], [2, 1]),
            (2, [4, 8, 30], 33, [2, 7], [2, 3], [0, 3]),
            (1, [5, 7, 1], 18, [3, 1], [1, 1], [1, 0]),
            (2, [3, 10, 10], 17, [1, 1], [1, 1], [0, 0]),
            (1, [2, 17, 23], 19, [3, 7], [2, 5], [1, 2]),
        ];
        for level in [0, 2, 3] {
            crate::ops::isa::MIN_ISA.with(|m| m.set(level));
            for (i, case) in cases.iter().enumerate() {
                assert!(!direct::applies(&geom(case)), "{case:?}");
                check_against_naive(case, &[case.0], 70 + i as u64);
            }
        }
        crate::ops::isa::MIN_ISA.with(|m| m.set(0));
        assert!(geom(&cases[1]).col_rows() > crate::ops::packed::KC);
        // Input gradients both ways: as a forward pass, and folded back.
        assert!(implicit::input_gradient_geometry(&geom(&cases[1])).is_some());
        assert!(implicit::input_gradient_geometry(&geom(&cases[6])).is_some());
        assert!(implicit::input_gradient_geometry(&geom(&cases[2])).is_none());
        assert!(implicit::input_gradient_geometry(&geom(&cases[0])).is_none());
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

    /// Once `scratch` has grown, neither pass reallocates it (the direct kernels and the
    /// packed products).
    #[test]
    fn warm_scratch_is_not_reallocated() {
        for case in [
            CASES[4],
            CASES[8],
            (2, [1, 28, 28], 6, [5, 5], [1, 1], [2, 2]),
        ] {
            let (g, n) = (geom(&case), 2);
            let x = vec![0.5; n * g.in_len()];
            let w = vec![0.25; g.weight_len()];
            let mut y = vec![0.0; n * g.out_len()];
            let (mut d_x, mut d_w) = (vec![0.0; x.len()], vec![0.0; w.len()]);
            assert_scratch_reused(|scratch| {
                forward(&mut y, &x, &w, None, &g, n, scratch);
                backward(Some(&mut d_x), &mut d_w, None, &y, &x, &w, &g, n, scratch);
            });
        }
    }
}
