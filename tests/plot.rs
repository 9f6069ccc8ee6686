//! `striate::plot`: a saved chart and a history plot decode as PNGs of the size they claim,
//! with their curves drawn in them, and a path that cannot be written is a typed error.

use striate::plot::LineChart;
use striate::prelude::*;

#[path = "common/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

/// The colours of the first two series.
const FIRST: [u8; 3] = [31, 119, 180];
const SECOND: [u8; 3] = [214, 39, 40];

/// The decoded PNG file at `path`: `(width, height, RGB bytes)`.
fn decode(path: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut rgb).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    rgb.truncate(info.buffer_size());
    (info.width, info.height, rgb)
}

fn pixels_of(rgb: &[u8], colour: [u8; 3]) -> usize {
    rgb.chunks(3).filter(|p| *p == colour).count()
}

/// Pixels dark enough to be text, ticks or the frame.
fn dark_pixels(rgb: &[u8]) -> usize {
    rgb.chunks(3).filter(|p| p.iter().all(|&c| c < 100)).count()
}

fn two_curves() -> LineChart {
    LineChart::new("two curves")
        .x_label("epoch")
        .y_label("loss")
        .series(
            "falling",
            (0..10).map(|i| (f64::from(i), 1.0 / (1.0 + f64::from(i)))),
        )
        .series(
            "rising",
            (0..10).map(|i| (f64::from(i), 0.1 * f64::from(i))),
        )
}

#[test]
fn a_saved_chart_decodes_at_its_size_with_both_curves_text_and_no_temporary_file() {
    let dir = TempDir::new("plot-chart");
    let path = dir.path().join("chart.png");
    two_curves().size(500, 300).save(&path).unwrap();
    let (width, height, rgb) = decode(&path);
    assert_eq!((width, height), (500, 300));
    // Each curve is 2 pixels wide across most of the plot, in its own colour.
    assert!(pixels_of(&rgb, FIRST) > 300, "{}", pixels_of(&rgb, FIRST));
    assert!(pixels_of(&rgb, SECOND) > 300, "{}", pixels_of(&rgb, SECOND));
    assert!(dark_pixels(&rgb) > 500, "{} dark pixels", dark_pixels(&rgb));
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

/// `History::plot` after a run with a validation set: two 640-pixel panels, loss and
/// accuracy, each with a training and a validation curve.
#[test]
fn a_history_plot_has_two_panels_each_with_training_and_validation_curves() {
    network! {
        struct Digits { input: [1, 28, 28], flatten, fc: linear(10) }
    }
    let (train, valid) = Mnist::builtin()
        .train
        .take(300)
        .split_stratified(0.2, 1)
        .unwrap();
    let mut net = Digits::init(0);
    let mut trainer = Trainer::new(&mut net, Sgd::new(0.1));
    let fit = Fit::epochs(4).batch(32).validation(&valid).progress(false);
    let history = trainer.fit(&train, fit).unwrap();
    let charts = history.charts();
    for chart in &charts {
        let names: Vec<&str> = chart.all_series().iter().map(|s| s.name()).collect();
        assert_eq!(names, ["training", "validation"]);
        assert!(chart.all_series().iter().all(|s| s.points().len() == 4));
    }

    let dir = TempDir::new("plot-history");
    let path = dir.path().join("history.png");
    history.plot(&path).unwrap();
    let (width, height, rgb) = decode(&path);
    assert_eq!((width, height), (1280, 440));
    for panel in 0..2 {
        let half: Vec<u8> = rgb
            .chunks(1280 * 3)
            .flat_map(|row| row[panel * 640 * 3..(panel + 1) * 640 * 3].to_vec())
            .collect();
        assert!(
            pixels_of(&half, FIRST) > 100,
            "panel {panel}: training curve"
        );
        assert!(
            pixels_of(&half, SECOND) > 100,
            "panel {panel}: validation curve"
        );
        assert!(dark_pixels(&half) > 500, "panel {panel}: text and axes");
    }
}

#[test]
fn a_path_that_cannot_be_written_is_an_io_error_naming_it() {
    let dir = TempDir::new("plot-bad-path");
    let missing = dir.path().join("no-such-folder").join("chart.png");
    match two_curves().save(&missing) {
        Err(Error::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected Error::Io, found {other:?}"),
    }
    // A folder at the path is refused and stays a folder.
    let err = two_curves().save(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(dir.path().is_dir());
}
