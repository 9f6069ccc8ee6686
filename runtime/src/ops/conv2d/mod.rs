//! 2-D convolution (cross-correlation, as in PyTorch), forward and backward.

use super::grown;
use super::isa::Isa;
use super::packed::Out;
use super::parallel::{self, SharedMut};
use super::LayerShapes;
use striate_geometry::{output_size_2d, Rounding, SizeError};

mod direct;
mod halves;
mod implicit;
mod winograd;
pub(crate) use halves::{add_forward, input_gradient, scratch_needed as halves_scratch_needed};
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

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

    /// The shapes the kernels check their slices against.
    fn shapes(&self) -> LayerShapes<3, 3, 4> {
        LayerShapes {
            input: [self.in_c, self.in_h, self.in_w],
            output: [self.out_c, self.out_h, self.out_w],
            weights: [self.out_c, self.in_c, self.k_h, self.k_w],
        }
    }
}

/// `y = w ⋆ x + b`: the cross-correlation of each sample with each kernel, zero-padded, as
/// PyTorch's `conv2d`: `y[n,o,i,j] = b[o] + Σ_{c,u,v} w[o,c,u,v] x[n,c,i·SH+u-PH,j·SW+v-PW]`.
///
/// `y` is overwritten. The batch is split over the [`parallel::threads`], each with its own
/// part of `scratch` (grown on first use, reused after that). A 3×3 kernel with stride 1,
/// padding 1 and at least 48 channels each way (ResNet-20's `64 → 64` layers) runs Winograd's
/// F(4×4, 3×3), whose results differ from the direct sums by rounding (about 1e-5 of the
/// largest output). Stride 1 with at most 16 output
/// channels (LeNet-5's layers) runs a direct kernel that accumulates each run of outputs in
/// registers. Otherwise each sample is one packed matrix product of the weights, seen as a
/// `(O, C·KH·KW)` matrix, and the unfolded input, which is packed a block at a time straight
/// from the sample and never written out whole; the bias is added as the
/// product is written. Neither path allocates once `scratch` has grown.
///
/// # Panics
/// Unless `y` has `n·O·OH·OW` values, `x` `n·C·H·W`, `w` `O·C·KH·KW` and `b`, when given, `O`
/// (checked before anything is written, in release builds too).
///
/// # Example
/// ```
/// use striate::geometry::Rounding;
/// use striate::ops::conv2d::{forward, Conv2dGeom};
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
    g.shapes().check_forward("conv2d::forward", n, y, x, w, b);
    let (in_len, out_len) = (g.in_len(), g.out_len());
    // One task per thread, each with its own run of samples and its own part of the scratch,
    // which is sized for the backward pass too, so that it grows once.
    // The thread count is read once: the scratch is sized and cut by the same count even if
    // another thread changes it meanwhile.
    let threads = parallel::threads();
    let isa = Isa::current();
    let scratch = grown(scratch, scratch_len(g, isa, threads));
    if winograd::applies(g) {
        winograd::forward(y, x, w, b, g, n, isa, threads, scratch);
        return;
    }
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
    parallel::over_batch(y, out_len, x, in_len, n, bufs, per_task, |y_t, x_t, buf| {
        for (x_n, y_n) in x_t.chunks_exact(in_len).zip(y_t.chunks_exact_mut(out_len)) {
            if shared > 0 {
                implicit::forward_sample(y_n, x_n, packed_w, Out::Set(b), g, isa, buf);
            } else {
                let buf = &mut buf[..direct::padded_len(g)];
                direct::forward_sample(y_n, x_n, w, b, g, isa, buf);
            }
        }
    });
}

/// The scratch [`forward`], [`backward`] and [`backward_input`] grow to at the current thread
/// count and instruction set: what a tape reserves for the layer before a pass (fallibly), so
/// that the kernels allocate nothing. It does not depend on the batch size.
#[doc(hidden)]
pub fn scratch_needed(g: &Conv2dGeom) -> usize {
    let threads = parallel::threads();
    let input_only = if winograd::applies(g) {
        0 // within `scratch_len`
    } else if direct::handles_all(g) {
        threads.saturating_mul(direct::input_len(g))
    } else {
        halves::input_gradient_needed(g)
    };
    scratch_len(g, Isa::current(), threads).max(input_only)
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
        let per_task = implicit::backward_task_len(g, isa) + w_len + direct_weights_len(g);
        most = most.max(implicit::backward_shared_len(g, isa) + tasks * per_task);
    }
    if winograd::applies(g) {
        return winograd::scratch_len(g, isa, threads);
    }
    most
}

/// The gradients of [`forward`]: `d_w += Σ_n d_y_n · col_nᵀ`, `d_b += Σ_{n,i,j} d_y`, and,
/// when `d_x` is given, `d_x += col2im(wᵀ · d_y_n)`. All three accumulate.
///
/// The batch is split over the [`parallel::threads`]. Per thread, `scratch` holds a partial
/// `d_w` and either the direct kernels' buffers (stride 1, at most 16 output channels: `d_x`
/// as the forward pass of the flipped kernels) or those of the packed products (the padded
/// sample, packed blocks, and the unfolded input gradient before it is folded back), or, for
/// the layers [`forward`] runs by Winograd's F(4×4, 3×3), that algorithm's transforms and
/// the partial sums of the transformed weight gradient. It grows on first use only.
///
/// # Panics
/// Unless `d_y` has `n·O·OH·OW` values, `x` and `d_x` (when given) `n·C·H·W`, `w` and `d_w`
/// `O·C·KH·KW`, and `d_b` (when given) `O` (checked before anything is written, in release
/// builds too).
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
    let (kernel, shapes) = ("conv2d::backward", g.shapes());
    shapes.check_backward(kernel, n, d_x.as_deref(), d_w, d_b.as_deref(), d_y, x, w);
    let area = g.out_h * g.out_w;
    let out_len = g.out_len();
    if let Some(d_b) = d_b {
        for d_y_n in (0..n).map(|i| &d_y[i * out_len..(i + 1) * out_len]) {
            for (o, d_b_o) in d_b.iter_mut().enumerate() {
                *d_b_o += lane_sum(&d_y_n[o * area..(o + 1) * area]);
            }
        }
    }
    // The thread count is read once, as in `forward`.
    let threads = parallel::threads();
    let isa = Isa::current();
    let scratch = grown(scratch, scratch_len(g, isa, threads));
    if !winograd::applies(g) {
        backward_other(d_x, d_w, d_y, x, w, g, n, isa, threads, scratch);
        return;
    }
    winograd::weight_gradient(d_w, d_y, x, g, n, isa, threads, scratch);
    if let Some(d_x) = d_x {
        winograd::input_gradient(d_x, d_y, w, g, n, isa, threads, scratch);
    }
}

/// [`backward`] less the bias by the direct kernels or the packed products (all but the
/// Winograd path), `scratch` grown to [`scratch_len`].
// The arguments of `backward`, less the bias, plus the instruction set and thread count.
#[allow(clippy::too_many_arguments)]
fn backward_other(
    d_x: Option<&mut [f32]>,
    d_w: &mut [f32],
    d_y: &[f32],
    x: &[f32],
    w: &[f32],
    g: &Conv2dGeom,
    n: usize,
    isa: Isa,
    threads: usize,
    scratch: &mut [f32],
) {
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let w_len = g.weight_len();
    // One task per thread, each with its own run of samples, its own workspace and (beyond
    // the first task, which adds into `d_w` itself) its own partial `d_w`, summed into `d_w` in
    // task order afterwards, so the result depends on the thread count only.
    let tasks = n.clamp(1, threads);
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
        (
            shared,
            implicit::backward_task_len(g, isa) + w_len + direct_weights_len(g),
        )
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
                direct::backward(d_x_t, d_w_t, d_y_t, x_t, w, g, samples.len(), isa, buf);
                return;
            }
            // The direct kernels' weight gradient, when they take it, in its own part of `buf`.
            let (buf, weights) = buf.split_at_mut(buf.len() - direct_weights_len(g));
            let (padded, sums) =
                weights.split_at_mut(weights.len().saturating_sub(direct::sums_len(g)));
            sums.fill(0.0);
            for (i, (d_y_n, x_n)) in d_y_t
                .chunks_exact(out_len)
                .zip(x_t.chunks_exact(in_len))
                .enumerate()
            {
                let d_x_n = d_x_t
                    .as_deref_mut()
                    .map(|d| &mut d[i * in_len..(i + 1) * in_len]);
                let d_w_n = if direct_weights_len(g) > 0 {
                    direct::backward_weights(sums, d_y_n, x_n, g, isa, padded);
                    None
                } else {
                    Some(&mut *d_w_t)
                };
                implicit::backward_sample(d_x_n, d_w_n, d_y_n, x_n, packed_w_t, g, isa, buf);
            }
            if direct_weights_len(g) > 0 {
                direct::add_sums(d_w_t, sums);
            }
        });
    }
    for partial in scratch.chunks_exact(per_task).skip(1) {
        for (d, &p) in d_w.iter_mut().zip(&partial[w_at..]) {
            *d += p;
        }
    }
}

/// Values of scratch a task of the packed backward pass adds for the direct kernels' weight
/// gradient ([`direct::takes_weights`]); 0 when the packed product takes it.
const fn direct_weights_len(g: &Conv2dGeom) -> usize {
    if direct::takes_weights(g) {
        direct::weights_len(g)
    } else {
        0
    }
}

/// The input gradient of [`backward`] alone, `d_x += col2im(wᵀ · d_y_n)` for each sample,
/// without the weight and bias gradients: what a network runs for a frozen convolution
/// that still has a layer below it to pass a gradient to (see
/// [`Transfer::freeze`](crate::Transfer::freeze)). It accumulates; `scratch` grows on first
/// use only.
///
/// # Panics
/// Unless `d_x` has `n·C·H·W` values, `d_y` `n·O·OH·OW` and `w` `O·C·KH·KW` (checked before
/// anything is written, in release builds too).
pub fn backward_input(
    d_x: &mut [f32],
    d_y: &[f32],
    w: &[f32],
    g: &Conv2dGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    // d_y: (N, O, OH, OW), w: (O, C, KH, KW) -> d_x: (N, C, H, W), accumulated
    g.shapes()
        .check_backward_input("conv2d::backward_input", n, d_x, d_y, w);
    if winograd::applies(g) {
        // Winograd's, as `backward` computes `d_x` for these layers.
        let (isa, threads) = (Isa::current(), parallel::threads());
        let scratch = grown(scratch, scratch_len(g, isa, threads));
        winograd::input_gradient(d_x, d_y, w, g, n, isa, threads, scratch);
        return;
    }
    if !direct::handles_all(g) {
        // The packed products, as `backward` computes `d_x` when the direct kernels do not.
        input_gradient(d_x, d_y, w, g, n, scratch);
        return;
    }
    // The direct kernels, as in `backward`: one run of samples and one buffer per task.
    let isa = Isa::current();
    let per_task = direct::input_len(g);
    let bufs = grown(scratch, n.clamp(1, parallel::threads()) * per_task);
    let (in_len, out_len) = (g.in_len(), g.out_len());
    parallel::over_batch(
        d_x,
        in_len,
        d_y,
        out_len,
        n,
        bufs,
        per_task,
        |d_x_t, d_y_t, buf| direct::add_input_gradient(d_x_t, d_y_t, w, g, isa, buf),
    );
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
