//! Pictures of what a network computes, beside the charts of how it trained: a grid of
//! grayscale images (inputs and reconstructions of an autoencoder) and a scatter chart of 2-D
//! points coloured by class (its codes).

use std::path::Path;

use plotters::prelude::*;

use super::{
    colour, encode_png, plot_error, register_builtin_font, tick, FONT, MAX_SIDE, MIN_SIDE,
};
use crate::io::write_atomically;
use crate::{Error, Result};

/// Writes rows of grayscale images to `path` as one PNG, atomically: `rows[r][i]` is image `i`
/// of row `r`, `height × width` values in `[0, 1]` (values outside are clamped, NaN is drawn
/// red), each pixel drawn as a `scale × scale` square, with a 2-pixel white gap between images.
///
/// # Errors
/// [`Error::Config`] when an image is not `height × width` values, there is no image, the
/// scale is 0, or the picture would be more than 8,192 pixels on a side; [`Error::Io`] when the
/// file cannot be written.
///
/// # Example
/// ```
/// let dir = std::env::temp_dir().join(format!("striate-grid-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let ramp: Vec<f32> = (0..16).map(|v| v as f32 / 15.0).collect();
/// let dark = vec![0.0; 16];
/// striate::plot::save_image_grid(dir.join("grid.png"), &[vec![&ramp[..], &dark[..]]], 4, 4, 3)?;
/// assert!(dir.join("grid.png").exists());
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), striate::Error>(())
/// ```
pub fn save_image_grid(
    path: impl AsRef<Path>,
    rows: &[Vec<&[f32]>],
    height: usize,
    width: usize,
    scale: usize,
) -> Result<()> {
    let config = |reason: String| Error::Config {
        name: "image grid",
        reason,
    };
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    if columns == 0 || scale == 0 || height == 0 || width == 0 {
        return Err(config(format!(
            "needs at least one image of at least 1 x 1 pixels and a scale of at least 1, found {} rows of at most {columns} images of {height} x {width}, scale {scale}",
            rows.len()
        )));
    }
    if let Some(bad) = rows.iter().flatten().find(|im| im.len() != height * width) {
        return Err(config(format!(
            "each image must have {height} x {width} = {} values, found {}",
            height * width,
            bad.len()
        )));
    }
    const GAP: usize = 2;
    let (cell_w, cell_h) = (width * scale + GAP, height * scale + GAP);
    let (w, h) = (columns * cell_w + GAP, rows.len() * cell_h + GAP);
    if w > MAX_SIDE as usize || h > MAX_SIDE as usize {
        return Err(config(format!(
            "the picture would be {w} x {h} pixels, more than {MAX_SIDE} on a side"
        )));
    }
    let mut rgb = vec![255u8; w * h * 3];
    for (r, row) in rows.iter().enumerate() {
        for (c, image) in row.iter().enumerate() {
            for (p, &v) in image.iter().enumerate() {
                let pixel = if v.is_nan() {
                    [255, 0, 0]
                } else {
                    [(255.0 * (1.0 - v.clamp(0.0, 1.0))).round() as u8; 3]
                };
                let (y0, x0) = (
                    GAP + r * cell_h + (p / width) * scale,
                    GAP + c * cell_w + (p % width) * scale,
                );
                for y in y0..y0 + scale {
                    for x in x0..x0 + scale {
                        rgb[(y * w + x) * 3..][..3].copy_from_slice(&pixel);
                    }
                }
            }
        }
    }
    let png = encode_png(&rgb, w as u32, h as u32)?;
    write_atomically(path.as_ref(), &png)
}

/// A scatter chart of 2-D points in classes, each class in its own colour with its name in
/// the legend; 800 × 600 pixels unless [`size`](ScatterChart::size) says otherwise. Points
/// with a NaN or infinite coordinate are skipped.
///
/// ```
/// use striate::plot::ScatterChart;
///
/// let dir = std::env::temp_dir().join(format!("striate-scatter-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// ScatterChart::new("Codes")
///     .class("0", vec![(0.0, 0.0), (0.1, 0.2)])
///     .class("1", vec![(1.0, 1.0)])
///     .save(dir.join("codes.png"))?;
/// assert!(dir.join("codes.png").exists());
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ScatterChart {
    title: String,
    x_label: String,
    y_label: String,
    classes: Vec<(String, Vec<(f64, f64)>)>,
    width: u32,
    height: u32,
}

impl ScatterChart {
    /// An empty chart titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        ScatterChart {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            classes: Vec::new(),
            width: 800,
            height: 600,
        }
    }

    /// Labels the axes.
    pub fn labels(mut self, x: impl Into<String>, y: impl Into<String>) -> Self {
        self.x_label = x.into();
        self.y_label = y.into();
        self
    }

    /// Sets the size in pixels (each side 160 to 8,192).
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// Adds a class named `name` with its points.
    pub fn class(mut self, name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        self.classes.push((name.into(), points));
        self
    }

    /// Draws the chart and writes it to `path` as a PNG, atomically.
    ///
    /// # Errors
    /// [`Error::Config`] for a side outside 160..=8,192 pixels; [`Error::Io`] when the file
    /// cannot be written; [`Error::Plot`] if drawing fails.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let ok = |side: u32| (MIN_SIDE..=MAX_SIDE).contains(&side);
        if !ok(self.width) || !ok(self.height) {
            return Err(Error::Config {
                name: "chart size",
                reason: format!(
                    "each side must be {MIN_SIDE} to {MAX_SIDE} pixels, found {} × {} for `{}`",
                    self.width, self.height, self.title
                ),
            });
        }
        register_builtin_font()?;
        let (w, h) = (self.width, self.height);
        let mut rgb = vec![255u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(plot_error)?;
        }
        write_atomically(path.as_ref(), &encode_png(&rgb, w, h)?)
    }

    fn draw(&self, root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()> {
        let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
        let points = || {
            self.classes
                .iter()
                .flat_map(|(_, p)| p.iter().filter(finite))
        };
        let span = |get: fn(&(f64, f64)) -> f64| {
            let (lo, hi) = points()
                .map(get)
                .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
            if lo > hi {
                0.0..1.0
            } else {
                let pad = ((hi - lo) * 0.05).max(1e-6);
                lo - pad..hi + pad
            }
        };
        let (x, y) = (span(|p| p.0), span(|p| p.1));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x, y)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_error)?;
        for (i, (name, pts)) in self.classes.iter().enumerate() {
            let c = colour(i);
            let dots = pts
                .iter()
                .filter(finite)
                .map(|&p| Circle::new(p, 2, c.filled()));
            chart
                .draw_series(dots)
                .map_err(plot_error)?
                .label(name.as_str())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font((FONT, 14))
            .draw()
            .map_err(plot_error)?;
        Ok(())
    }
}
