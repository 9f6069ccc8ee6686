//! The one place where striate computes the output size of a sliding window.
//!
//! Both the `network!` macro (at compile time) and the runtime kernels (when they build their
//! geometry) call [`output_size`], so a shape the compiler proved is, by construction, the shape
//! the kernels compute. Everything here is `const fn` and has no dependencies.
//!
//! ```
//! use striate::geometry::{output_size, Rounding};
//! // AlexNet's conv1: 227 wide, 11x11 kernels, stride 4, no padding.
//! assert_eq!(output_size(227, 11, 4, 0, Rounding::Exact), Ok(55));
//! // Stride 5 does not tile the input: (227 + 2*0 - 11)/5 + 1 = 44.2 would drop real columns.
//! assert!(output_size(227, 11, 5, 0, Rounding::Exact).is_err());
//! assert_eq!(output_size(227, 11, 5, 0, Rounding::Floor), Ok(44));
//! // ResNet's downsampling: (32 + 2*1 - 3)/2 + 1 = 16.5, but what is left over is padding.
//! assert_eq!(output_size(32, 3, 2, 1, Rounding::Exact), Ok(16));
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod recurrent;

/// How a window that does not tile its input exactly is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// No real input may be dropped: `(W + 2P - F)` is a multiple of `S`, or what the last
    /// window leaves over is only right-hand padding and a stride gap (see [`drops_input`]), in
    /// which case the size is rounded down. Anything else is an error.
    Exact,
    /// PyTorch's default: the last, partial window positions are dropped (`floor`).
    Floor,
}

/// Why an output size could not be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SizeError {
    /// The stride is zero.
    ZeroStride,
    /// The kernel is zero.
    ZeroKernel,
    /// The kernel is larger than the padded input: `F > W + 2P`.
    KernelTooLarge {
        /// `W + 2P`.
        padded: usize,
    },
    /// `(W + 2P - F)` is not a multiple of `S` and rounding down would drop real input (only
    /// with [`Rounding::Exact`]; see [`drops_input`]).
    Inexact {
        /// `W + 2P - F`.
        span: usize,
        /// `span % S`.
        remainder: usize,
    },
}

/// `(W + 2P - F)/S + 1`: the number of positions of a window of size `kernel` that slides with
/// `stride` over an input of size `input` padded with `pad` on both sides.
///
/// # Errors
/// [`SizeError`] when the stride or kernel is zero, the kernel does not fit in the padded input,
/// or (with [`Rounding::Exact`]) the stride does not tile the input.
pub const fn output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    rounding: Rounding,
) -> Result<usize, SizeError> {
    if stride == 0 {
        return Err(SizeError::ZeroStride);
    }
    if kernel == 0 {
        return Err(SizeError::ZeroKernel);
    }
    let padded = input.saturating_add(pad.saturating_mul(2));
    if kernel > padded {
        return Err(SizeError::KernelTooLarge { padded });
    }
    let span = padded - kernel;
    let remainder = span % stride;
    if let Rounding::Exact = rounding {
        if drops_input(kernel, stride, pad, remainder) {
            return Err(SizeError::Inexact { span, remainder });
        }
    }
    Ok(span / stride + 1)
}

/// Whether rounding an output size down drops input that the window pattern would have read.
///
/// `remainder` is `(W + 2P - F) mod S`, what is left over after the last window. It is harmless
/// when it is at most `P + max(S - F, 0)`: then it is only right-hand padding (`P`) and a gap
/// that the stride skips anyway (`S - F` columns between windows, when windows do not touch).
/// ResNet's `(32 + 2*1 - 3)/2 + 1 = 16.5` leaves 1 over, the padding; a 1x1 stride-2 shortcut
/// `(32 - 1)/2 + 1 = 16.5` leaves 1 over, a column the stride skips as it skips every other one;
/// AlexNet's `(224 - 11)/4 + 1 = 54.25` leaves 1 over, a real column that no window reads.
///
/// ```
/// use striate::geometry::drops_input;
/// assert!(!drops_input(3, 2, 1, 1)); // ResNet's 3x3 stride-2 pad-1 on 32
/// assert!(!drops_input(1, 2, 0, 1)); // a 1x1 stride-2 shortcut on 32
/// assert!(drops_input(11, 4, 0, 1)); // AlexNet's conv1 on 224
/// ```
pub const fn drops_input(kernel: usize, stride: usize, pad: usize, remainder: usize) -> bool {
    let gap = stride.saturating_sub(kernel);
    remainder > pad.saturating_add(gap)
}

/// True when [`output_size`] with [`Rounding::Exact`] rounds down: the stride does not tile the
/// padded input, but all that is left over is padding and a stride gap.
pub const fn rounds_down(input: usize, kernel: usize, stride: usize, pad: usize) -> bool {
    if stride == 0 || kernel == 0 {
        return false;
    }
    let padded = input.saturating_add(pad.saturating_mul(2));
    if kernel > padded {
        return false;
    }
    let remainder = (padded - kernel) % stride;
    remainder != 0 && !drops_input(kernel, stride, pad, remainder)
}

/// [`output_size`] along both axes of a feature map: `[height, width]` in, `[OH, OW]` out.
///
/// # Errors
/// The first axis's [`SizeError`], height before width.
pub const fn output_size_2d(
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    rounding: Rounding,
) -> Result<[usize; 2], SizeError> {
    let h = match output_size(input[0], kernel[0], stride[0], pad[0], rounding) {
        Ok(v) => v,
        Err(e) => return Err(e),
    };
    match output_size(input[1], kernel[1], stride[1], pad[1], rounding) {
        Ok(w) => Ok([h, w]),
        Err(e) => Err(e),
    }
}

/// Why a transposed convolution's output size could not be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransposedSizeError {
    /// The stride is zero.
    ZeroStride,
    /// The kernel is zero.
    ZeroKernel,
    /// The input is empty.
    ZeroInput,
    /// `output_pad` is not smaller than the stride: the extra rows would lie beyond what any
    /// input position reaches (PyTorch refuses it too).
    OutputPadTooLarge,
    /// `(W - 1)*S + K + Q` is at most `2P`: the padding removes the whole output.
    NoOutput {
        /// `(W - 1)*S + K + Q`, before the padding is taken off.
        unpadded: usize,
    },
}

/// `(W - 1)*S - 2P + K + Q`: the output size of a transposed convolution (PyTorch's
/// `ConvTranspose2d`) of an input of size `input` with a kernel of size `kernel`, `stride`,
/// `pad` and `output_pad`. It is the input size of the convolution whose input gradient the
/// transposed convolution computes: [`output_size`] of the result, rounded down, is `input`
/// again.
///
/// ```
/// use striate::geometry::{output_size, transposed_output_size, Rounding};
/// // 7 -> 14: a 3x3 kernel, stride 2, pad 1 and output_pad 1, a decoder's doubling.
/// assert_eq!(transposed_output_size(7, 3, 2, 1, 1), Ok(14));
/// assert_eq!(output_size(14, 3, 2, 1, Rounding::Floor), Ok(7));
/// ```
///
/// # Errors
/// [`TransposedSizeError`] when the stride, kernel or input is zero, `output_pad` is not below
/// the stride, or the padding leaves no output.
pub const fn transposed_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    output_pad: usize,
) -> Result<usize, TransposedSizeError> {
    if stride == 0 {
        return Err(TransposedSizeError::ZeroStride);
    }
    if kernel == 0 {
        return Err(TransposedSizeError::ZeroKernel);
    }
    if input == 0 {
        return Err(TransposedSizeError::ZeroInput);
    }
    if output_pad >= stride {
        return Err(TransposedSizeError::OutputPadTooLarge);
    }
    let unpadded = (input - 1)
        .saturating_mul(stride)
        .saturating_add(kernel)
        .saturating_add(output_pad);
    let padding = pad.saturating_mul(2);
    if unpadded <= padding {
        return Err(TransposedSizeError::NoOutput { unpadded });
    }
    Ok(unpadded - padding)
}

/// Like [`output_size`] but for use in `const` items that have already been validated: an
/// invalid geometry stops compilation (const evaluation panics) instead of returning an error.
///
/// # Panics
/// When [`output_size`] returns an error.
pub const fn output_size_checked(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    rounding: Rounding,
) -> usize {
    match output_size(input, kernel, stride, pad, rounding) {
        Ok(v) => v,
        Err(_) => panic!("invalid sliding-window geometry"),
    }
}

/// The receptive field and the jump (distance on the input between adjacent outputs) of one
/// axis, carried from layer to layer: a window of size `kernel` and `stride` over a feature map
/// whose units see `field` input pixels and sit `jump` input pixels apart.
///
/// `field' = field + (kernel - 1) * jump`, `jump' = jump * stride`.
///
/// ```
/// use striate::geometry::Receptive;
/// let r = Receptive::INPUT.window(5, 1).window(2, 2).window(5, 1).window(2, 2);
/// assert_eq!(r.field, 16); // LeNet-5 after its second pooling layer
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Receptive {
    /// Input pixels seen by one unit along this axis.
    pub field: usize,
    /// Input pixels between two neighbouring units along this axis.
    pub jump: usize,
}

impl Receptive {
    /// A unit of the input itself sees one pixel.
    pub const INPUT: Receptive = Receptive { field: 1, jump: 1 };

    /// The receptive field after a window of `kernel` with `stride`.
    pub const fn window(self, kernel: usize, stride: usize) -> Receptive {
        // Saturating: a deep stack of strided layers must not overflow (the field is then
        // "everything" anyway).
        Receptive {
            field: self
                .field
                .saturating_add(kernel.saturating_sub(1).saturating_mul(self.jump)),
            jump: self.jump.saturating_mul(stride),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sizes() {
        assert_eq!(output_size(28, 5, 1, 2, Rounding::Exact), Ok(28));
        assert_eq!(output_size(28, 2, 2, 0, Rounding::Exact), Ok(14));
        assert_eq!(output_size(55, 3, 2, 0, Rounding::Exact), Ok(27));
        assert_eq!(output_size(5, 3, 2, 1, Rounding::Exact), Ok(3));
    }

    #[test]
    fn errors() {
        assert_eq!(
            output_size(227, 11, 5, 0, Rounding::Exact),
            Err(SizeError::Inexact {
                span: 216,
                remainder: 1
            })
        );
        assert_eq!(
            output_size(3, 5, 1, 0, Rounding::Exact),
            Err(SizeError::KernelTooLarge { padded: 3 })
        );
        assert_eq!(
            output_size(3, 5, 0, 0, Rounding::Exact),
            Err(SizeError::ZeroStride)
        );
        assert_eq!(
            output_size(3, 0, 1, 0, Rounding::Exact),
            Err(SizeError::ZeroKernel)
        );
        assert_eq!(output_size(7, 2, 2, 0, Rounding::Floor), Ok(3));
    }

    /// Rounding down is accepted exactly when the leftover is padding and a stride gap.
    #[test]
    fn rounding_rule_both_sides() {
        // Accepted: ResNet's downsampling and its 1x1 shortcut, both 16.5 on 32.
        assert_eq!(output_size(32, 3, 2, 1, Rounding::Exact), Ok(16));
        assert_eq!(output_size(32, 1, 2, 0, Rounding::Exact), Ok(16));
        assert!(rounds_down(32, 3, 2, 1) && rounds_down(32, 1, 2, 0));
        // A 1x1 stride-3 window leaves up to 2 over, all skipped by the stride.
        assert_eq!(output_size(8, 1, 3, 0, Rounding::Exact), Ok(3));
        // Refused: a real column would be lost.
        for (w, k, s, p) in [(224, 11, 4, 0), (14, 5, 2, 0), (15, 2, 2, 0), (34, 3, 2, 0)] {
            assert!(
                matches!(
                    output_size(w, k, s, p, Rounding::Exact),
                    Err(SizeError::Inexact { .. })
                ),
                "{w} {k} {s} {p}"
            );
            assert!(!rounds_down(w, k, s, p));
        }
        // Exact tilings do not round.
        assert!(!rounds_down(28, 5, 1, 2));
        // 3-wide windows 4 apart leave a 1-column gap: a leftover of 1 is that gap, 2 is not.
        assert_eq!(output_size(12, 3, 4, 0, Rounding::Exact), Ok(3));
        assert!(output_size(13, 3, 4, 0, Rounding::Exact).is_err());
        assert_eq!(output_size(13, 3, 4, 0, Rounding::Floor), Ok(3));
    }

    #[test]
    fn transposed_sizes() {
        assert_eq!(transposed_output_size(7, 3, 2, 1, 1), Ok(14));
        assert_eq!(transposed_output_size(14, 3, 2, 1, 1), Ok(28));
        assert_eq!(transposed_output_size(5, 4, 1, 0, 0), Ok(8));
        assert_eq!(transposed_output_size(1, 1, 1, 0, 0), Ok(1));
        // The size it gives goes back to the input through the convolution it transposes.
        for (w, k, s, p, q) in [
            (7, 3, 2, 1, 1),
            (5, 5, 3, 2, 2),
            (4, 2, 2, 0, 0),
            (9, 3, 1, 1, 0),
        ] {
            let out = transposed_output_size(w, k, s, p, q).unwrap();
            assert_eq!(
                output_size(out, k, s, p, Rounding::Floor),
                Ok(w),
                "{w} {k} {s} {p} {q}"
            );
        }
        assert_eq!(
            transposed_output_size(7, 3, 2, 1, 2),
            Err(TransposedSizeError::OutputPadTooLarge)
        );
        assert_eq!(
            transposed_output_size(1, 3, 1, 2, 0),
            Err(TransposedSizeError::NoOutput { unpadded: 3 })
        );
        assert_eq!(
            transposed_output_size(3, 3, 0, 0, 0),
            Err(TransposedSizeError::ZeroStride)
        );
        assert_eq!(
            transposed_output_size(3, 0, 1, 0, 0),
            Err(TransposedSizeError::ZeroKernel)
        );
        assert_eq!(
            transposed_output_size(0, 3, 1, 0, 0),
            Err(TransposedSizeError::ZeroInput)
        );
    }

    #[test]
    fn alexnet_receptive_field() {
        let r = Receptive::INPUT
            .window(11, 4)
            .window(3, 2)
            .window(5, 1)
            .window(3, 2)
            .window(3, 1)
            .window(3, 1)
            .window(3, 1)
            .window(3, 2);
        assert_eq!(r.field, 195);
    }
}

/// A count with thousands separators (`61,706`), the way striate prints every count: the
/// runtime's `summary()` and the documentation that `network!` generates both use it, so the
/// two show a network's size the same way.
///
/// ```
/// use striate::geometry::Thousands;
/// assert_eq!(format!("{}", Thousands(38282)), "38,282");
/// assert_eq!(format!("{}", Thousands(999)), "999");
/// assert_eq!(format!("{}", Thousands(u64::MAX)), "18,446,744,073,709,551,615");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thousands(pub u64);

impl core::fmt::Display for Thousands {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // 20 digits and 6 separators at most.
        let mut buf = [0u8; 26];
        let (mut at, mut v, mut digits) = (buf.len(), self.0, 0);
        loop {
            if digits > 0 && digits % 3 == 0 {
                at -= 1;
                buf[at] = b',';
            }
            at -= 1;
            buf[at] = b'0' + (v % 10) as u8;
            v /= 10;
            digits += 1;
            if v == 0 {
                break;
            }
        }
        f.write_str(core::str::from_utf8(&buf[at..]).map_err(|_| core::fmt::Error)?)
    }
}
