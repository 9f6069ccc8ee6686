//! 2-D transposed convolution (PyTorch's `ConvTranspose2d`), forward and backward, as the
//! convolution it transposes run the other way round.
//!
//! A transposed convolution's forward pass is exactly a convolution's input gradient, its
//! input gradient is that convolution's forward pass, and its weight gradient is that
//! convolution's weight gradient with the roles of input and output gradient exchanged. The
//! convolution ([`ConvTranspose2dGeom::conv`]) goes from the transposed convolution's output
//! shape to its input shape, with `in_c` kernels of `out_c` channels: the weight
//! `[in_c, out_c, KH, KW]` is PyTorch's layout for both. So every pass here is one of the
//! packed products of [`crate::ops::conv2d`].

use super::conv2d::{self, Conv2dGeom};
use super::LayerShapes;
use striate_geometry::{transposed_output_size, TransposedSizeError};

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

/// The geometry of one transposed convolution layer, per sample.
///
/// Built by the `network!` macro as a `const`; every field is fixed at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvTranspose2dGeom {
    /// Input channels `C`.
    pub in_c: usize,
    /// Input height `H`.
    pub in_h: usize,
    /// Input width `W`.
    pub in_w: usize,
    /// Output channels `O`.
    pub out_c: usize,
    /// Kernel height `KH`.
    pub k_h: usize,
    /// Kernel width `KW`.
    pub k_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Rows taken off the top and the bottom.
    pub pad_h: usize,
    /// Columns taken off the left and the right.
    pub pad_w: usize,
    /// Rows added at the bottom.
    pub output_pad_h: usize,
    /// Columns added on the right.
    pub output_pad_w: usize,
    /// Output height `OH = (H - 1)·SH - 2PH + KH + QH`.
    pub out_h: usize,
    /// Output width `OW = (W - 1)·SW - 2PW + KW + QW`.
    pub out_w: usize,
}

impl ConvTranspose2dGeom {
    /// The geometry of a transposed convolution of `input = [C, H, W]` to `out_c` channels
    /// with kernels of size `kernel`, `stride`, `pad` and `output_pad` (each `[h, w]`).
    ///
    /// # Errors
    /// When [`transposed_output_size`] refuses either axis.
    pub const fn try_new(
        input: [usize; 3],
        out_c: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        output_pad: [usize; 2],
    ) -> Result<Self, TransposedSizeError> {
        let out_h =
            match transposed_output_size(input[1], kernel[0], stride[0], pad[0], output_pad[0]) {
                Ok(v) => v,
                Err(e) => return Err(e),
            };
        let out_w =
            match transposed_output_size(input[2], kernel[1], stride[1], pad[1], output_pad[1]) {
                Ok(v) => v,
                Err(e) => return Err(e),
            };
        Ok(ConvTranspose2dGeom {
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
            output_pad_h: output_pad[0],
            output_pad_w: output_pad[1],
            out_h,
            out_w,
        })
    }

    /// [`ConvTranspose2dGeom::try_new`] for `const` items the macro has already validated.
    ///
    /// # Panics
    /// When the geometry is invalid (in a `const`, that is a compile error).
    pub const fn new(
        input: [usize; 3],
        out_c: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        output_pad: [usize; 2],
    ) -> Self {
        match Self::try_new(input, out_c, kernel, stride, pad, output_pad) {
            Ok(g) => g,
            Err(_) => panic!("invalid transposed convolution geometry"),
        }
    }

    /// The convolution this one transposes: from `[O, OH, OW]` to `[C, H, W]`, with the same
    /// kernel, stride and padding. Its output size, `(OH + 2P - K)/S + 1` rounded down, is `H`
    /// because the output padding is below the stride.
    pub const fn conv(&self) -> Conv2dGeom {
        Conv2dGeom {
            in_c: self.out_c,
            in_h: self.out_h,
            in_w: self.out_w,
            out_c: self.in_c,
            k_h: self.k_h,
            k_w: self.k_w,
            stride_h: self.stride_h,
            stride_w: self.stride_w,
            pad_h: self.pad_h,
            pad_w: self.pad_w,
            out_h: self.in_h,
            out_w: self.in_w,
        }
    }

    /// Input values per sample, `C·H·W`.
    pub const fn in_len(&self) -> usize {
        self.in_c * self.in_h * self.in_w
    }

    /// Output values per sample, `O·OH·OW`.
    pub const fn out_len(&self) -> usize {
        self.out_c * self.out_h * self.out_w
    }

    /// Weight values, `C·O·KH·KW`.
    pub const fn weight_len(&self) -> usize {
        self.in_c * self.out_c * self.k_h * self.k_w
    }

    /// Multiply-adds per sample, `C·H·W·O·KH·KW`.
    pub const fn macs(&self) -> u64 {
        (self.in_len() * self.out_c * self.k_h * self.k_w) as u64
    }

    fn shapes(&self) -> LayerShapes<3, 3, 4> {
        LayerShapes {
            input: [self.in_c, self.in_h, self.in_w],
            output: [self.out_c, self.out_h, self.out_w],
            weights: [self.in_c, self.out_c, self.k_h, self.k_w],
        }
    }
}

/// `y = wᵀ ⋆ x + b`, as PyTorch's `conv_transpose2d`: every input value spreads its kernel over
/// the output, `y[n,o,h·SH-PH+u, w·SW-PW+v] += x[n,c,h,w]·w[c,o,u,v]`, then `b[o]` is added;
/// positions beyond the output are dropped. `y` is overwritten.
///
/// It is the input gradient of [`ConvTranspose2dGeom::conv`] with `x` as the output gradient:
/// per sample one packed product `wᵀ · x_n` folded back onto the output (`col2im`). The batch
/// is split over the threads; `scratch` grows on first use only.
///
/// # Panics
/// Unless `y` has `n·O·OH·OW` values, `x` `n·C·H·W`, `w` `C·O·KH·KW` and `b`, when given, `O`
/// (checked before anything is written, in release builds too).
///
/// # Example
/// ```
/// use striate::ops::conv_transpose2d::{forward, ConvTranspose2dGeom};
///
/// // One 2x2 image, a 2x2 kernel of ones, stride 2: each pixel becomes a 2x2 block.
/// let g = ConvTranspose2dGeom::new([1, 2, 2], 1, [2, 2], [2, 2], [0, 0], [0, 0]);
/// let mut y = [0.0; 16];
/// forward(&mut y, &[1.0, 2.0, 3.0, 4.0], &[1.0; 4], None, &g, 1, &mut Vec::new());
/// assert_eq!(&y[..8], &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
/// assert_eq!(&y[8..], &[3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0]);
/// ```
pub fn forward(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &ConvTranspose2dGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    // x: (N, C, H, W), w: (C, O, KH, KW), b: (O) -> y: (N, O, OH, OW)
    g.shapes()
        .check_forward("conv_transpose2d::forward", n, y, x, w, b);
    y.fill(0.0);
    conv2d::input_gradient(y, x, w, &g.conv(), n, scratch);
    if let Some(b) = b {
        let area = g.out_h * g.out_w;
        for (plane, &bias) in y.chunks_exact_mut(area.max(1)).zip(b.iter().cycle()) {
            for v in plane {
                *v += bias;
            }
        }
    }
}

/// The scratch [`forward`], [`backward`] and [`backward_input`] grow to at the current thread count and
/// instruction set: what a tape reserves for the layer before a pass (fallibly), so that the
/// kernels allocate nothing. It does not depend on the batch size.
#[doc(hidden)]
pub fn scratch_needed(g: &ConvTranspose2dGeom) -> usize {
    let conv = g.conv();
    conv2d::scratch_needed(&conv).max(conv2d::halves_scratch_needed(&conv))
}

/// The gradients of [`forward`]: `d_b += Σ_{n,i,j} d_y`, `d_w += Σ_n x_n · unfold(d_y_n)ᵀ`
/// (the weight gradient of [`ConvTranspose2dGeom::conv`] with `d_y` as its input and `x` as
/// its output gradient) and, when `d_x` is given, `d_x += w ⋆ d_y` (that convolution's forward
/// pass). All three accumulate. `scratch` grows on first use only.
///
/// # Panics
/// Unless `d_y` has `n·O·OH·OW` values, `x` and `d_x` (when given) `n·C·H·W`, `w` and `d_w`
/// `C·O·KH·KW`, and `d_b` (when given) `O` (checked before anything is written, in release
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
    g: &ConvTranspose2dGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    // d_y: (N, O, OH, OW), x: (N, C, H, W), w: (C, O, KH, KW)
    //   -> d_x: (N, C, H, W), d_w: (C, O, KH, KW), d_b: (O)
    let kernel = "conv_transpose2d::backward";
    g.shapes()
        .check_backward(kernel, n, d_x.as_deref(), d_w, d_b.as_deref(), d_y, x, w);
    if let Some(d_b) = d_b {
        let area = g.out_h * g.out_w;
        for (plane, o) in d_y.chunks_exact(area.max(1)).zip((0..g.out_c).cycle()) {
            d_b[o] += plane.iter().sum::<f32>();
        }
    }
    let conv = g.conv();
    conv2d::backward(None, d_w, None, x, d_y, w, &conv, n, scratch);
    if let Some(d_x) = d_x {
        conv2d::add_forward(d_x, d_y, w, &conv, n, scratch);
    }
}

/// The input gradient of [`backward`] alone, `d_x += w ⋆ d_y`, without the weight and bias
/// gradients: what a network runs for a frozen transposed convolution that still has a layer
/// below it to pass a gradient to (see [`Transfer::freeze`](crate::Transfer::freeze)). It
/// accumulates; `scratch` grows on first use only.
///
/// # Panics
/// Unless `d_x` has `n·C·H·W` values, `d_y` `n·O·OH·OW` and `w` `C·O·KH·KW` (checked before
/// anything is written, in release builds too).
pub fn backward_input(
    d_x: &mut [f32],
    d_y: &[f32],
    w: &[f32],
    g: &ConvTranspose2dGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    // d_y: (N, O, OH, OW), w: (C, O, KH, KW) -> d_x: (N, C, H, W), accumulated
    let (kernel, s) = ("conv_transpose2d::backward_input", g.shapes());
    s.check_backward_input(kernel, n, d_x, d_y, w);
    // The input gradient is the forward pass of the convolution this one transposes.
    conv2d::add_forward(d_x, d_y, w, &g.conv(), n, scratch);
}
