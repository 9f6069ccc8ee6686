//! Line charts as PNG files: curves of loss, accuracy or anything else against epochs or steps,
//! and [`History::plot`], the training and validation curves of a [`Trainer::fit`] run.
//!
//! A [`LineChart`] has a title, axis labels, named [`Series`] of `(x, y)` points, and a linear
//! or logarithmic y axis. [`LineChart::save`] draws one chart; [`save_row`] draws several side
//! by side in one image. Both write the PNG atomically (a temporary file beside the target,
//! renamed over it), so a reader sees the old file or the whole new one.
//!
//! Points that cannot be drawn are skipped, and the line joins the points on either side of
//! them: a NaN or infinite coordinate (a diverged loss), and on a logarithmic axis a `y` of 0 or
//! below. A chart with no point left is drawn with empty axes. Text is drawn with a font built
//! into striate (DejaVu Sans, cut down to ASCII, the Greek letters and `° ± µ · × – — −`), so
//! no system font is needed; other characters are left blank.
//!
//! [`Trainer::fit`]: crate::train::Trainer::fit
//!
//! # Example
//!
//! ```
//! use striate::plot::LineChart;
//!
//! let dir = std::env::temp_dir().join(format!("striate-plot-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).map_err(|e| striate::Error::Config {
//!     name: "example directory",
//!     reason: e.to_string(),
//! })?;
//! let path = dir.join("rates.png");
//!
//! let epochs = 0..20;
//! LineChart::new("Learning-rate schedules")
//!     .x_label("epoch")
//!     .y_label("learning rate")
//!     .log_y(true)
//!     .series("constant", epochs.clone().map(|e| (e as f64, 0.1)))
//!     .series("halved every 5", epochs.map(|e| (e as f64, 0.1 * 0.5f64.powi(e / 5))))
//!     .save(&path)?;
//! assert!(std::fs::metadata(&path).is_ok_and(|m| m.len() > 1_000));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), striate::Error>(())
//! ```

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::io::write_atomically;
use crate::train::{Evaluation, History};

mod pictures;
use crate::{Error, Result};
pub use pictures::{save_image_grid, ScatterChart};

/// The family name the built-in font is registered under in plotters' font table; not
/// `sans-serif`, so that a program's own registration of that family stays as it is.
const FONT: &str = "striate-dejavu-sans";

/// DejaVu Sans 2.37, cut down to ASCII, Greek and a few signs (licence:
/// `fonts/LICENSE-DejaVu.txt`).
static FONT_BYTES: &[u8] = include_bytes!("../fonts/DejaVuSans-subset.ttf");

/// The smallest width and height of a chart, in pixels: below it the axes' labels overlap.
const MIN_SIDE: u32 = 160;

/// The largest width and height of an image, in pixels (a chart, or a row of them).
const MAX_SIDE: u32 = 8_192;

/// One named curve of a [`LineChart`]: its `(x, y)` points, joined in the order given.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

impl Series {
    /// A series named `name` (shown in the legend) through `points`.
    pub fn new<X: Into<f64>, Y: Into<f64>>(
        name: impl Into<String>,
        points: impl IntoIterator<Item = (X, Y)>,
    ) -> Self {
        Series {
            name: name.into(),
            points: points
                .into_iter()
                .map(|(x, y)| (x.into(), y.into()))
                .collect(),
        }
    }

    /// The name shown in the legend.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The points, as given (those that cannot be drawn included).
    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }
}

/// A line chart: a title, axis labels, named series and a linear or logarithmic y axis, drawn
/// to a PNG by [`save`](LineChart::save) or beside others by [`save_row`].
///
/// 800 by 500 pixels unless [`size`](LineChart::size) says otherwise; the axes span the
/// points that can be drawn (see the [module](self) on those skipped). Series are drawn in the
/// order added, each in its own colour.
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    title: String,
    x_label: String,
    y_label: String,
    series: Vec<Series>,
    log_y: bool,
    width: u32,
    height: u32,
}

impl LineChart {
    /// An empty chart titled `title`: no axis labels, no series, a linear y axis, 800 × 500.
    pub fn new(title: impl Into<String>) -> Self {
        LineChart {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            series: Vec::new(),
            log_y: false,
            width: 800,
            height: 500,
        }
    }

    /// Labels the x axis.
    pub fn x_label(self, label: impl Into<String>) -> Self {
        LineChart {
            x_label: label.into(),
            ..self
        }
    }

    /// Labels the y axis.
    pub fn y_label(self, label: impl Into<String>) -> Self {
        LineChart {
            y_label: label.into(),
            ..self
        }
    }

    /// A logarithmic y axis when `log_y` is true; points with `y <= 0` are then skipped.
    pub fn log_y(self, log_y: bool) -> Self {
        LineChart { log_y, ..self }
    }

    /// The chart's size in pixels, each side from 160 to 8,192 (checked when it is drawn).
    pub fn size(self, width: u32, height: u32) -> Self {
        LineChart {
            width,
            height,
            ..self
        }
    }

    /// The chart with a series named `name` through `points` added.
    pub fn series<X: Into<f64>, Y: Into<f64>>(
        self,
        name: impl Into<String>,
        points: impl IntoIterator<Item = (X, Y)>,
    ) -> Self {
        self.with_series(Series::new(name, points))
    }

    /// The chart with `series` added.
    pub fn with_series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// The series, in the order added.
    pub fn all_series(&self) -> &[Series] {
        &self.series
    }

    /// The chart's size in pixels, `(width, height)`.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Draws the chart and writes it to `path` as a PNG (RGB, the chart's size), atomically.
    ///
    /// # Errors
    /// [`Error::Config`] for a side outside 160..=8,192 pixels; [`Error::Io`] naming `path`
    /// when the file cannot be written (a missing directory, a directory at `path`);
    /// [`Error::Plot`] if drawing fails.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_row(path, std::slice::from_ref(self))
    }

    /// Draws the chart and returns the PNG file's bytes, for a program that stores them
    /// itself.
    ///
    /// # Errors
    /// As [`save`](LineChart::save), without the file's.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        row_png(std::slice::from_ref(self))
    }

    fn check_size(&self) -> Result<()> {
        let ok = |side: u32| (MIN_SIDE..=MAX_SIDE).contains(&side);
        if ok(self.width) && ok(self.height) {
            return Ok(());
        }
        Err(Error::Config {
            name: "chart size",
            reason: format!(
                "each side must be {MIN_SIDE} to {MAX_SIDE} pixels, found {} × {} for `{}`",
                self.width, self.height, self.title
            ),
        })
    }

    /// Whether `(x, y)` can be drawn on this chart's axes.
    fn drawable(&self, (x, y): (f64, f64)) -> bool {
        x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0)
    }

    /// The corner of the plot whose quarter holds the fewest drawable points (the upper right
    /// on a tie), where the legend hides the least.
    fn legend_corner(&self) -> SeriesLabelPosition {
        let (x, y) = self.ranges();
        let (x_mid, y_mid) = if self.log_y {
            ((x.start + x.end) / 2.0, (y.start * y.end).sqrt())
        } else {
            ((x.start + x.end) / 2.0, (y.start + y.end) / 2.0)
        };
        // (right, upper), in order of preference.
        let corners = [(true, true), (true, false), (false, true), (false, false)];
        let crowding = |&(right, upper): &(bool, bool)| {
            self.series
                .iter()
                .flat_map(|s| s.points.iter().copied())
                .filter(|&p| self.drawable(p))
                .filter(|&(px, py)| (px >= x_mid) == right && (py >= y_mid) == upper)
                .count()
        };
        match corners.iter().min_by_key(|corner| crowding(corner)) {
            Some((true, false)) => SeriesLabelPosition::LowerRight,
            Some((false, true)) => SeriesLabelPosition::UpperLeft,
            Some((false, false)) => SeriesLabelPosition::LowerLeft,
            _ => SeriesLabelPosition::UpperRight,
        }
    }

    /// The span of the drawable points: `(x range, y range)`, padded so that no curve lies on
    /// the frame, a log axis from a power of ten; `0..1` for an axis without points.
    fn ranges(&self) -> (Range<f64>, Range<f64>) {
        let points = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter().copied())
                .filter(|&p| self.drawable(p))
        };
        let span = |values: &mut dyn Iterator<Item = f64>| {
            values.fold(None, |acc: Option<(f64, f64)>, v| {
                Some(acc.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
            })
        };
        let x = match span(&mut points().map(|p| p.0)) {
            None => 0.0..1.0,
            Some((lo, hi)) if lo == hi => lo - 0.5..hi + 0.5,
            Some((lo, hi)) => lo..hi,
        };
        let y = match span(&mut points().map(|p| p.1)) {
            None if self.log_y => 0.1..1.0,
            None => 0.0..1.0,
            // Down to a power of ten: plotters labels a log axis from the first power of ten
            // in range up, so an axis from 0.3 to 3 would show only 1 and 2.
            Some((lo, hi)) if self.log_y => 10f64.powf((lo / 1.25).log10().floor())..hi * 1.25,
            Some((lo, hi)) if lo == hi => lo - 0.5..hi + 0.5,
            Some((lo, hi)) => {
                let pad = 0.05 * (hi - lo);
                lo - pad..hi + pad
            }
        };
        (x, y)
    }
}

/// Draws `charts` side by side, left to right and top-aligned, into one PNG at `path`,
/// written atomically; the image is as wide as their widths added and as high as the highest.
///
/// # Errors
/// [`Error::Config`] for no charts, a chart side outside 160..=8,192 pixels or a row wider
/// than 8,192; [`Error::Io`] naming `path` when the file cannot be written; [`Error::Plot`] if
/// drawing fails.
///
/// # Example
///
/// ```
/// use striate::plot::{save_row, LineChart};
///
/// let path = std::env::temp_dir().join(format!("striate-row-doc-{}.png", std::process::id()));
/// let steps = || (1..=100).map(f64::from);
/// let loss = LineChart::new("loss").x_label("step").log_y(true)
///     .series("train", steps().map(|s| (s, 2.3 / s.sqrt())));
/// let accuracy = LineChart::new("accuracy").x_label("step").y_label("%")
///     .series("train", steps().map(|s| (s, 100.0 - 90.0 / s.sqrt())));
/// save_row(&path, &[loss, accuracy])?;
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), striate::Error>(())
/// ```
pub fn save_row(path: impl AsRef<Path>, charts: &[LineChart]) -> Result<()> {
    let png = row_png(charts)?;
    write_atomically(path.as_ref(), &png)
}

/// The PNG bytes of `charts` side by side.
fn row_png(charts: &[LineChart]) -> Result<Vec<u8>> {
    if charts.is_empty() {
        return Err(Error::Config {
            name: "charts",
            reason: "a row needs at least one chart, found none".to_string(),
        });
    }
    for chart in charts {
        chart.check_size()?;
    }
    let width: u64 = charts.iter().map(|c| u64::from(c.width)).sum();
    let height = charts.iter().map(|c| c.height).max().unwrap_or(MIN_SIDE);
    if width > u64::from(MAX_SIDE) {
        return Err(Error::Config {
            name: "charts",
            reason: format!(
                "a row is at most {MAX_SIDE} pixels wide, found {width} for {} charts",
                charts.len()
            ),
        });
    }
    let width = width as u32;
    register_builtin_font()?;
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let mut left = 0i32;
        for chart in charts {
            let right = left + chart.width as i32;
            let area = root.clone().shrink((left, 0), (chart.width, chart.height));
            draw_chart(&area, chart)?;
            left = right;
        }
        root.present().map_err(plot_error)?;
    }
    encode_png(&rgb, width, height)
}

/// Registers the built-in font with plotters, once per process.
fn register_builtin_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Plot(
            "the built-in font (DejaVu Sans) could not be read".to_string(),
        ))
    }
}

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(rgb))
        .map_err(plot_error)?;
    Ok(out)
}

/// The colour of the `i`-th series: eight that tell apart on white, then plotters' palette.
fn colour(i: usize) -> RGBColor {
    const COLOURS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    match COLOURS.get(i) {
        Some(&c) => c,
        None => {
            let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
            RGBColor(r, g, b)
        }
    }
}

/// `v` in at most four significant digits, without trailing zeros: `0.7`, `12.5`, `3e-5`.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || !a.is_finite() {
        return format!("{v}");
    }
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let fixed = format!("{v:.decimals$}");
    if fixed.contains('.') {
        fixed
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        fixed
    }
}

fn draw_chart<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, chart: &LineChart) -> Result<()> {
    let (x, y) = chart.ranges();
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&chart.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64);
    if chart.log_y {
        let mut context = builder
            .build_cartesian_2d(x, y.log_scale())
            .map_err(plot_error)?;
        draw_in(&mut context, chart)
    } else {
        let mut context = builder.build_cartesian_2d(x, y).map_err(plot_error)?;
        draw_in(&mut context, chart)
    }
}

fn draw_in<'a, DB, Y>(
    context: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    chart: &LineChart,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let text = (FONT, 14).into_font();
    context
        .configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .label_style(text.clone())
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_error)?;
    for (i, series) in chart.series.iter().enumerate() {
        let colour = colour(i);
        let points = series.points.iter().copied().filter(|&p| chart.drawable(p));
        context
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(plot_error)?
            .label(series.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    if chart.series.iter().any(|s| !s.name.is_empty()) {
        context
            .configure_series_labels()
            .label_font(text)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(190, 190, 190))
            .position(chart.legend_corner())
            .draw()
            .map_err(plot_error)?;
    }
    Ok(())
}

impl History {
    /// The two charts [`plot`](History::plot) draws: the mean training loss and the
    /// validation loss per epoch, and the training and validation accuracy (in %) per epoch,
    /// epochs counted from 1. Without a validation set, only the training curves.
    pub fn charts(&self) -> [LineChart; 2] {
        let epoch = |e: &crate::train::EpochRecord| (e.train.epoch + 1) as f64;
        let validation = |value: fn(&Evaluation) -> f64| {
            self.epochs()
                .iter()
                .filter_map(|e| e.validation.as_ref().map(|v| (epoch(e), value(v))))
                .collect::<Vec<_>>()
        };
        let mut loss = LineChart::new("loss")
            .x_label("epoch")
            .y_label("cross-entropy")
            .size(640, 440)
            .series(
                "training",
                self.epochs()
                    .iter()
                    .map(|e| (epoch(e), f64::from(e.train.loss))),
            );
        let mut accuracy = LineChart::new("accuracy")
            .x_label("epoch")
            .y_label("%")
            .size(640, 440)
            .series(
                "training",
                self.epochs()
                    .iter()
                    .map(|e| (epoch(e), 100.0 * f64::from(e.train.accuracy))),
            );
        let valid_loss = validation(|v| f64::from(v.loss));
        if !valid_loss.is_empty() {
            loss = loss.series("validation", valid_loss);
            accuracy = accuracy.series(
                "validation",
                validation(|v| 100.0 * f64::from(v.accuracy())),
            );
        }
        [loss, accuracy]
    }

    /// Draws the training (and validation) loss and accuracy per epoch, two panels side by
    /// side (1280 × 440 pixels), to a PNG at `path`, written atomically. A NaN or infinite
    /// loss (a diverged run) is skipped, as the [module](crate::plot) says.
    ///
    /// # Errors
    /// [`Error::Io`] naming `path` when the file cannot be written; [`Error::Plot`] if drawing
    /// fails.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::prelude::*;
    ///
    /// network! {
    ///     struct Digits { input: [1, 28, 28], flatten, fc: linear(10) }
    /// }
    ///
    /// let (train, valid) = Mnist::builtin().train.take(500).split_stratified(0.2, 1)?;
    /// let mut net = Digits::init(0);
    /// let mut trainer = Trainer::new(&mut net, Sgd::new(0.1));
    /// let history = trainer.fit(&train, Fit::epochs(3).validation(&valid).progress(false))?;
    ///
    /// let path = std::env::temp_dir().join(format!("striate-history-{}.png", std::process::id()));
    /// history.plot(&path)?;
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn plot(&self, path: impl AsRef<Path>) -> Result<()> {
        save_row(path, &self.charts())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoded image: `(width, height, RGB bytes)`.
    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().expect("a PNG header");
        let mut rgb = vec![0; reader.output_buffer_size().expect("a buffer size")];
        let info = reader.next_frame(&mut rgb).expect("a PNG frame");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        rgb.truncate(info.buffer_size());
        (info.width, info.height, rgb)
    }

    /// Pixels of exactly `colour`.
    fn count(rgb: &[u8], colour: RGBColor) -> usize {
        rgb.chunks(3)
            .filter(|p| p == &[colour.0, colour.1, colour.2])
            .count()
    }

    /// A chart of one short line, for the tests of sizes.
    fn line() -> LineChart {
        LineChart::new("line").series("a", [(0.0, 1.0), (1.0, 2.0)])
    }

    #[test]
    fn non_finite_and_on_a_log_axis_non_positive_points_are_skipped() {
        let points = [
            (0.0, 1.0),
            (1.0, f64::NAN),
            (2.0, 0.5),
            (f64::INFINITY, 0.3),
            (3.0, 0.0),
            (4.0, -1.0),
            (5.0, 0.25),
        ];
        let chart = LineChart::new("skips").log_y(true).series("loss", points);
        assert_eq!(chart.all_series()[0].points().len(), 7);
        let (x, y) = chart.ranges();
        assert_eq!(x, 0.0..5.0);
        assert!((y.start - 0.1).abs() < 1e-12 && (y.end - 1.25).abs() < 1e-12);
        let (w, h, rgb) = decode(&chart.to_png().unwrap());
        assert_eq!((w, h), (800, 500));
        assert!(count(&rgb, colour(0)) > 300);
        // Linear, the same points keep 0 and -1.
        let (_, y) = chart.log_y(false).ranges();
        assert!(y.start < -1.0 && y.end > 1.0);
    }

    #[test]
    fn a_chart_without_drawable_points_still_draws_its_axes() {
        let chart =
            LineChart::new("diverged").series("loss", [(0.0, f64::NAN), (1.0, f64::INFINITY)]);
        let (_, _, rgb) = decode(&chart.to_png().unwrap());
        let dark = rgb.chunks(3).filter(|p| p.iter().all(|&c| c < 100)).count();
        assert!(dark > 500, "{dark} dark pixels");
        assert!(count(&rgb, colour(0)) > 0, "the legend's sample line");
    }

    #[test]
    fn ticks_have_at_most_four_significant_digits() {
        let ticks: Vec<String> = [0.0, 0.7000000001, 12.5, 1234.5678, 3e-5, 2e6, -0.25]
            .map(tick)
            .into();
        assert_eq!(
            ticks,
            ["0", "0.7", "12.5", "1235", "3.0e-5", "2.0e6", "-0.25"]
        );
    }

    #[test]
    fn the_legend_goes_to_the_emptiest_corner() {
        let rising = LineChart::new("accuracy").series("a", (0..10).map(|i| (i, i)));
        assert!(matches!(
            rising.legend_corner(),
            SeriesLabelPosition::LowerRight
        ));
        let falling = LineChart::new("loss").series("a", (0..10).map(|i| (i, 10 - i)));
        assert!(matches!(
            falling.legend_corner(),
            SeriesLabelPosition::UpperRight
        ));
    }

    #[test]
    fn a_row_is_as_wide_as_its_charts() {
        let (w, h, _) = decode(&row_png(&[line().size(300, 200), line().size(400, 250)]).unwrap());
        assert_eq!((w, h), (700, 250));
    }

    #[test]
    fn bad_sizes_and_an_empty_row_are_config_errors() {
        for chart in [line().size(10, 300), line().size(500, 9_000)] {
            let err = chart.to_png().unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Config {
                        name: "chart size",
                        ..
                    }
                ),
                "{err}"
            );
        }
        let wide = vec![line().size(5_000, 300); 2];
        assert!(matches!(
            row_png(&wide),
            Err(Error::Config { name: "charts", .. })
        ));
        assert!(matches!(
            row_png(&[]),
            Err(Error::Config { name: "charts", .. })
        ));
    }
}
