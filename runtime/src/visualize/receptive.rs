//! The receptive field of one unit, found on the network itself, and drawn on an input.

use ndarray::{Array, ArrayView3, IxDyn};

use super::{stretch, Image};
use crate::tape::Tape;
use crate::{Error, Mode, Network, Result};

/// The input pixels one unit sees: rows `top..top + height`, columns `left..left + width`
/// (cut at the input's borders, where padding was).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// The first row.
    pub top: usize,
    /// The first column.
    pub left: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

/// The receptive field of the unit at `[row, column]` of the output of layer `layer` (an
/// index of [`Network::LAYERS`]), on the input of `N`.
///
/// Found on the network itself, so padding, pooling, blocks and nested networks all count:
/// a copy of `N` with every weight set to `1/fan_in` and every bias to 0 (so that every path
/// passes a positive value, and batch norm at its initial statistics passes it on) is run on
/// one input per row and one per column of the input, each that row or column set to 1 and the
/// rest 0; the unit sees the rows and columns that make it larger than an input of zeros does. That is `H + W + 1` forward passes of
/// one sample. Where no padding cuts it, the region's size is the field
/// [`LayerInfo::receptive_field`](crate::LayerInfo) states; after `flatten`, the whole input.
///
/// # Errors
/// [`Error::Config`] naming the valid range when `layer` is not a layer of `N`, its output is
/// not spatial, the unit is outside it, or the network's input is not `[C, H, W]`.
pub fn receptive_field<N: Network>(layer: usize, unit: [usize; 2]) -> Result<Region> {
    let bad = |reason: String| Error::Config {
        name: "receptive_field",
        reason,
    };
    let Some(info) = N::LAYERS.get(layer) else {
        return Err(bad(format!(
            "{} has layers 0..{}, not {layer}",
            N::NAME,
            N::LAYERS.len()
        )));
    };
    let &[c_in, h, w] = N::INPUT_SHAPE else {
        return Err(bad(format!("the input of {} is not [C, H, W]", N::NAME)));
    };
    let &[_, oh, ow] = info.output else {
        return Err(bad(format!(
            "layer {layer} of {} ({}) has the output {:?}, not [C, H, W]",
            N::NAME,
            info.declaration,
            info.output
        )));
    };
    if unit[0] >= oh || unit[1] >= ow {
        return Err(bad(format!(
            "unit {unit:?} is outside the {oh}×{ow} output of layer {layer} of {}",
            N::NAME
        )));
    }
    let mut probe = N::init(0);
    let state = probe.state_mut();
    for info in N::PARAMS.iter().filter(|p| p.shape.len() >= 2) {
        let fan_in = info.len / info.shape[0].max(1);
        state.params.as_mut_slice()[info.offset..info.offset + info.len]
            .fill(1.0 / fan_in.max(1) as f32);
    }
    let per_sample = c_in * h * w;
    let at = unit[0] * ow + unit[1];
    // Sample `h + w` is the input of zeros, which the others are compared with (a sigmoid
    // makes 0.5 of nothing).
    let mut baseline = f32::NAN;
    let mut seen = vec![false; h + w];
    let mut tape = Tape::new();
    let lines: Vec<usize> = (0..=h + w).rev().collect();
    // One sample a pass: a batch of one is never split over threads, so the tape keeps every
    // layer's value (a split pass keeps only the output).
    for chunk in lines.chunks(1) {
        let mut x = vec![0.0f32; chunk.len() * per_sample];
        for (s, &line) in chunk.iter().enumerate() {
            let sample = &mut x[s * per_sample..(s + 1) * per_sample];
            for ch in 0..c_in {
                for i in 0..h {
                    for j in 0..w {
                        if (line < h && i == line) || (line >= h && j == line - h) {
                            sample[(ch * h + i) * w + j] = 1.0;
                        }
                    }
                }
            }
        }
        let mut shape = vec![chunk.len()];
        shape.extend_from_slice(N::INPUT_SHAPE);
        let x = Array::from_shape_vec(IxDyn(&shape), x).expect("sized above");
        let x = x
            .view()
            .into_dimensionality::<N::InputDim>()
            .expect("the input's dimensions");
        probe.forward_tape(x, &mut tape, Mode::Eval)?;
        let out = tape.output(layer + 1);
        let per_value = info.output.iter().product::<usize>();
        if out.len() != per_value * chunk.len() {
            return Err(Error::Tape(format!(
                "the value of layer {layer} of {} was not kept",
                N::NAME
            )));
        }
        for (s, &line) in chunk.iter().enumerate() {
            // The unit's first channel: all see the same field.
            let value = out[s * per_value + at];
            if line == h + w {
                baseline = value;
            } else {
                seen[line] = value > baseline;
            }
        }
    }
    let span = |flags: &[bool]| -> Option<(usize, usize)> {
        let first = flags.iter().position(|&f| f)?;
        let last = flags.iter().rposition(|&f| f)?;
        Some((first, last + 1 - first))
    };
    match (span(&seen[..h]), span(&seen[h..])) {
        (Some((top, height)), Some((left, width))) => Ok(Region {
            top,
            left,
            height,
            width,
        }),
        _ => Err(bad(format!(
            "unit {unit:?} of layer {layer} of {} sees no input pixel",
            N::NAME
        ))),
    }
}

/// The colour of a region's outline.
pub const OUTLINE: [u8; 3] = [230, 30, 30];

/// One input `[C, H, W]` (grey for one channel, colour for three, stretched to its range),
/// scaled by `scale`, with everything outside `region` darkened and the region outlined in
/// [`OUTLINE`] just outside it (on its border where it touches the image's).
///
/// # Errors
/// [`Error::Shape`] when `C` is neither 1 nor 3; [`Error::Config`] when the region is not
/// inside the image.
pub fn draw_region(x: ArrayView3<'_, f32>, region: Region, scale: usize) -> Result<Image> {
    let (c, h, w) = x.dim();
    if c != 1 && c != 3 {
        return Err(Error::Shape {
            what: "input to draw (1 channel for grey, 3 for colour)".to_string(),
            expected: vec![3, h, w],
            found: vec![c, h, w],
        });
    }
    let Region {
        top,
        left,
        height,
        width,
    } = region;
    if height == 0 || width == 0 || top + height > h || left + width > w {
        return Err(Error::Config {
            name: "region",
            reason: format!("{region:?} is not inside the {h}×{w} input"),
        });
    }
    let scale = scale.max(1);
    let level = stretch(x.iter().copied());
    let mut image = Image::filled(w * scale, h * scale, [0; 3]);
    for i in 0..h {
        for j in 0..w {
            let inside = (top..top + height).contains(&i) && (left..left + width).contains(&j);
            let colour = [0, 1, 2].map(|ch| {
                let v = level(x[[if c == 1 { 0 } else { ch }, i, j]]);
                if inside {
                    v
                } else {
                    (u16::from(v) * 2 / 5) as u8
                }
            });
            for dy in 0..scale {
                for dx in 0..scale {
                    image.set(j * scale + dx, i * scale + dy, colour);
                }
            }
        }
    }
    // The outline: one pixel outside the region, or on its edge at the image's border.
    let (x0, y0) = (
        (left * scale).saturating_sub(1),
        (top * scale).saturating_sub(1),
    );
    let x1 = ((left + width) * scale).min(w * scale - 1);
    let y1 = ((top + height) * scale).min(h * scale - 1);
    for x in x0..=x1 {
        image.set(x, y0, OUTLINE);
        image.set(x, y1, OUTLINE);
    }
    for y in y0..=y1 {
        image.set(x0, y, OUTLINE);
        image.set(x1, y, OUTLINE);
    }
    Ok(image)
}
