//! Seeing what a network learned, as PNG files: the first convolution's kernels as a grid of
//! tiles, the feature maps one input produces at every convolution, and the receptive field of
//! one unit drawn on the input.
//!
//! Every picture is an [`Image`] (8-bit RGB) that [`Image::save`] writes atomically with the
//! `png` crate. Tiles are scaled up by whole pixels (nearest neighbour) and each is stretched
//! to its own range of values, from black (its smallest) to white (its largest); a kernel of
//! three input channels is drawn in colour, its channels as red, green and blue, stretched
//! together so that their balance shows.
//!
//! # Example
//! ```
//! use striate::prelude::*;
//! use striate::visualize::{self, Grid};
//!
//! network! {
//!     struct Net { input: [3, 16, 16], conv1: conv2d(8, kernel = 5), relu, conv2: conv2d(4, kernel = 3) }
//! }
//!
//! let net = Net::init(0);
//! // Eight 5×5 colour kernels, scaled 4×, in a grid of 3 columns with 1-pixel gaps.
//! let grid = Grid { columns: Some(3), scale: 4, gap: 1 };
//! let kernels = visualize::first_conv_kernels(&net, grid)?;
//! assert_eq!((kernels.width(), kernels.height()), (1 + 3 * (20 + 1), 1 + 3 * (20 + 1)));
//!
//! let x = Array::from_shape_fn((3, 16, 16), |(c, i, j)| (c + i * j) as f32);
//! let maps = visualize::feature_maps(&net, x.view(), Grid::default())?;
//! assert_eq!(maps.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(), ["conv1", "conv2"]);
//!
//! // One unit of conv2 (value 3) sees a 7×7 patch of the input.
//! let region = visualize::receptive_field::<Net>(2, [4, 4])?;
//! assert_eq!((region.top, region.left, region.height, region.width), (4, 4, 7, 7));
//! let drawn = visualize::draw_region(x.view(), region, 4)?;
//! assert_eq!((drawn.width(), drawn.height()), (64, 64));
//! # Ok::<(), striate::Error>(())
//! ```

mod grid;
mod receptive;

use std::path::Path;

pub use grid::{feature_maps, first_conv_kernels, tile_grid, Grid, GAP_COLOUR};
pub use receptive::{draw_region, receptive_field, Region, OUTLINE};

use crate::{Error, Result};

/// An 8-bit RGB picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Image {
    /// A picture of one colour.
    pub fn filled(width: usize, height: usize, colour: [u8; 3]) -> Image {
        Image {
            width,
            height,
            rgb: colour.repeat(width * height),
        }
    }

    /// Its width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Its height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The colour at column `x`, row `y`, if inside.
    pub fn pixel(&self, x: usize, y: usize) -> Option<[u8; 3]> {
        (x < self.width && y < self.height).then(|| {
            let at = 3 * (y * self.width + x);
            [self.rgb[at], self.rgb[at + 1], self.rgb[at + 2]]
        })
    }

    /// The RGB bytes, row by row.
    pub fn as_rgb(&self) -> &[u8] {
        &self.rgb
    }

    pub(crate) fn set(&mut self, x: usize, y: usize, colour: [u8; 3]) {
        if x < self.width && y < self.height {
            let at = 3 * (y * self.width + x);
            self.rgb[at..at + 3].copy_from_slice(&colour);
        }
    }

    /// The picture as a PNG file's bytes.
    ///
    /// # Errors
    /// [`Error::Plot`] when it is too large for PNG (more than 2³¹ pixels a side) or the
    /// encoder fails.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let side = |v: usize| u32::try_from(v).map_err(|_| Error::Plot(format!("{v} pixels")));
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, side(self.width)?, side(self.height)?);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .and_then(|mut writer| writer.write_image_data(&self.rgb))
            .map_err(|e| Error::Plot(e.to_string()))?;
        Ok(out)
    }

    /// Writes it as a PNG file, atomically (an earlier file at `path` stays whole if the write
    /// fails).
    ///
    /// # Errors
    /// As [`Image::to_png`]; [`Error::Io`] when the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::write_atomically(path.as_ref(), &self.to_png()?)
    }
}

/// `values` stretched to `0..=255` over their own range (all 128 when they are all equal;
/// NaN and infinities as 0).
fn stretch(values: impl Iterator<Item = f32> + Clone) -> impl Fn(f32) -> u8 {
    let finite = values.filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    move |v: f32| {
        if !v.is_finite() {
            0
        } else if hi > lo {
            (255.0 * (v - lo) / (hi - lo)).round().clamp(0.0, 255.0) as u8
        } else {
            128
        }
    }
}
