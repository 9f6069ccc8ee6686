//! Grids of tiles: kernels and feature maps.

use ndarray::{ArrayView3, ArrayView4, Ix3};

use super::{stretch, Image};
use crate::tape::Tape;
use crate::{Error, Mode, Network, Result};

/// The colour between tiles and around the grid: a dark grey that no stretched tile's mid
/// tones are mistaken for at the border.
pub const GAP_COLOUR: [u8; 3] = [40, 40, 48];

/// How tiles are laid out: `columns` per row (`None`: about the square root of the count),
/// each pixel drawn as `scale × scale` pixels, `gap` pixels between tiles and around them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    /// Tiles per row; `None` for `⌈√count⌉`.
    pub columns: Option<usize>,
    /// Pixels per value along each side (at least 1).
    pub scale: usize,
    /// Pixels between tiles and around the grid.
    pub gap: usize,
}

impl Default for Grid {
    /// About square, each value 4×4 pixels, 1-pixel gaps.
    fn default() -> Grid {
        Grid {
            columns: None,
            scale: 4,
            gap: 1,
        }
    }
}

impl Grid {
    /// Where tile `i` of `count` tiles of `h × w` values starts, `(x, y)` in pixels, and the
    /// picture's `(width, height)`.
    pub fn layout(&self, count: usize, h: usize, w: usize) -> (Vec<(usize, usize)>, usize, usize) {
        let columns = self
            .columns
            .unwrap_or_else(|| (count as f64).sqrt().ceil() as usize)
            .clamp(1, count.max(1));
        let rows = count.div_ceil(columns).max(1);
        let scale = self.scale.max(1);
        let (tw, th) = (w * scale + self.gap, h * scale + self.gap);
        let starts = (0..count)
            .map(|i| (self.gap + (i % columns) * tw, self.gap + (i / columns) * th))
            .collect();
        (starts, self.gap + columns * tw, self.gap + rows * th)
    }
}

/// Tiles `[T, C, H, W]` as one picture: grey for one channel, colour (red, green, blue) for
/// three, each tile stretched to its own range.
///
/// # Errors
/// [`Error::Shape`] when `C` is neither 1 nor 3.
pub fn tile_grid(tiles: ArrayView4<'_, f32>, grid: Grid) -> Result<Image> {
    let (t, c, h, w) = tiles.dim();
    if c != 1 && c != 3 {
        return Err(Error::Shape {
            what: "tiles to draw (1 channel for grey, 3 for colour)".to_string(),
            expected: vec![t, 3, h, w],
            found: vec![t, c, h, w],
        });
    }
    let (starts, width, height) = grid.layout(t, h, w);
    let mut image = Image::filled(width, height, GAP_COLOUR);
    let scale = grid.scale.max(1);
    for (tile, &(x0, y0)) in tiles.outer_iter().zip(&starts) {
        let level = stretch(tile.iter().copied());
        for i in 0..h {
            for j in 0..w {
                let colour = if c == 1 {
                    [level(tile[[0, i, j]]); 3]
                } else {
                    [0, 1, 2].map(|ch| level(tile[[ch, i, j]]))
                };
                for dy in 0..scale {
                    for dx in 0..scale {
                        image.set(x0 + j * scale + dx, y0 + i * scale + dy, colour);
                    }
                }
            }
        }
    }
    Ok(image)
}

/// The kernels of the network's first convolution (its first parameter of four dimensions,
/// `[O, C, KH, KW]`, through nested networks too), one tile each, as in the figure of
/// AlexNet's 96 first-layer kernels: grey for one input channel, colour for three.
///
/// # Errors
/// [`Error::UnknownName`] when the network has no convolution; [`Error::Shape`] when its input
/// has neither 1 nor 3 channels.
pub fn first_conv_kernels<N: Network>(net: &N, grid: Grid) -> Result<Image> {
    let Some(info) = N::PARAMS.iter().find(|p| p.shape.len() == 4) else {
        return Err(Error::UnknownName {
            network: N::NAME,
            name: "a convolution's weight".to_string(),
            closest: N::PARAMS.iter().map(|p| p.name.to_string()).collect(),
        });
    };
    let values = &net.params().as_slice()[info.offset..info.offset + info.len];
    let s = info.shape;
    let kernels = ArrayView4::from_shape((s[0], s[1], s[2], s[3]), values)
        .expect("a parameter has its table's shape");
    tile_grid(kernels, grid)
}

/// The feature maps that one input `[C, H, W]` produces at each convolution of the network
/// (its layers of kind `conv2d`, before their activations; a nested network counts as one
/// layer and is not opened), in evaluation mode: for each, its name and one grey tile per
/// channel.
///
/// # Errors
/// [`Error::Shape`] when `x` is not one sample of the network's input.
pub fn feature_maps<N: Network>(
    net: &N,
    x: ArrayView3<'_, f32>,
    grid: Grid,
) -> Result<Vec<(String, Image)>> {
    let found = x.shape().to_vec();
    let x = x
        .insert_axis(ndarray::Axis(0))
        .into_dyn()
        .into_dimensionality::<N::InputDim>()
        .map_err(|_| Error::Shape {
            what: format!("one input of {} to draw the feature maps of", N::NAME),
            expected: N::INPUT_SHAPE.to_vec(),
            found,
        })?;
    let mut tape = Tape::new();
    let mut copy = N::from_state(net.state().clone());
    copy.forward_tape(x, &mut tape, Mode::Eval)?;
    let mut out = Vec::new();
    for (i, layer) in N::LAYERS.iter().enumerate() {
        if layer.kind != "conv2d" {
            continue;
        }
        let [c, h, w] = *layer.output else { continue };
        // A pass over one sample is never split over threads: the tape keeps every value.
        let maps = ArrayView3::from_shape((c, h, w), tape.output(i + 1))
            .map_err(|_| {
                Error::Tape(format!(
                    "the value of layer {i} of {} was not kept",
                    N::NAME
                ))
            })?
            .into_dimensionality::<Ix3>()
            .expect("three dimensions");
        let tiles = maps.insert_axis(ndarray::Axis(1));
        out.push((layer.name.to_string(), tile_grid(tiles, grid)?));
    }
    Ok(out)
}
