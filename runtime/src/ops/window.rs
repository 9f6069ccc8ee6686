//! Index arithmetic of a sliding window with zero padding, shared by convolution and pooling.
//!
//! Along one axis, output `o` of a window of size `k`, `stride` and `pad` reads the inputs
//! `o*stride - pad + t` for the taps `t` in `0..k`; those outside `0..input` are padding.

use std::ops::Range;

/// The real inputs covered by output `o`'s window: `o*stride - pad .. o*stride - pad + k`
/// clipped to `0..input` (empty when the window lies wholly in the padding).
pub(crate) fn inputs_read(
    o: usize,
    k: usize,
    pad: usize,
    stride: usize,
    input: usize,
) -> Range<usize> {
    let end = (o * stride + k).saturating_sub(pad).min(input);
    let start = (o * stride).saturating_sub(pad).min(end);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the definition, on every small geometry.
    #[test]
    fn ranges_match_the_definition() {
        for input in 1..7usize {
            for k in 1..5usize {
                for stride in 1..4usize {
                    for pad in 0..4usize {
                        if k > input + 2 * pad {
                            continue;
                        }
                        let outputs = (input + 2 * pad - k) / stride + 1;
                        let inside = |o: usize, t: usize| {
                            let i = (o * stride + t) as isize - pad as isize;
                            (0..input as isize).contains(&i)
                        };
                        for o in 0..outputs {
                            let expected: Vec<usize> = (0..k)
                                .filter(|&t| inside(o, t))
                                .map(|t| o * stride + t - pad)
                                .collect();
                            let got: Vec<usize> = inputs_read(o, k, pad, stride, input).collect();
                            assert_eq!(got, expected, "input {input} k {k} s {stride} p {pad}");
                        }
                    }
                }
            }
        }
    }
}
