//! Writes a PNG grid of the data augmentations, one row each, applied to the same built-in
//! digits, so that a person can check by eye that each does what it says.
//!
//! ```text
//! cargo run --release --example augment -- [FILE]
//! ```
//!
//! Rows, top to bottom (the program prints them too): the digits as they are, then
//! translation, rotation, scaling, horizontal flip, vertical flip, elastic deformation,
//! intensity, crop with padding, and the pipeline `Augmentation::digits` at its defaults.
//! The settings are stronger than the defaults, so that each change is plain to see; each row
//! is one augmentation alone. Default file: `augment.png`.

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;

use striate::data::augment::{
    Augment, Augmentation, Crop, Elastic, Flip, Intensity, Rotate, Scale, Translate,
};
use striate::prelude::*;

/// Digits per row.
const COLUMNS: usize = 10;
/// Screen pixels per image pixel.
const ZOOM: usize = 3;
/// Grey pixels between images.
const GAP: usize = 4;

fn rows() -> striate::Result<Vec<(&'static str, Augmentation)>> {
    let seed = 2026;
    let one = |step: Box<dyn Augment>| Augmentation::new(seed).then(step);
    Ok(vec![
        ("original", Augmentation::new(seed)),
        (
            "translate by -4..=4 pixels",
            one(Box::new(Translate::pixels(-4.0..=4.0)?)),
        ),
        (
            "rotate by -30..=30 degrees",
            one(Box::new(Rotate::degrees(-30.0..=30.0)?)),
        ),
        (
            "scale by 0.6..=1.4",
            one(Box::new(Scale::factor(0.6..=1.4)?)),
        ),
        (
            "flip horizontally (p = 1)",
            one(Box::new(Flip::horizontal(1.0)?)),
        ),
        (
            "flip vertically (p = 1)",
            one(Box::new(Flip::vertical(1.0)?)),
        ),
        (
            "elastic, alpha 34, sigma 4",
            one(Box::new(Elastic::new(34.0, 4.0)?)),
        ),
        (
            "intensity: brightness -0.3..=0.3, contrast 0.4..=1.6, gamma 0.4..=2.5",
            one(Box::new(Intensity::new(-0.3..=0.3, 0.4..=1.6, 0.4..=2.5)?)),
        ),
        ("crop with padding 4", one(Box::new(Crop::pad(4)))),
        (
            "Augmentation::digits (the defaults)",
            Augmentation::digits(seed),
        ),
    ])
}

fn run(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let digits = Mnist::builtin().test.take(COLUMNS);
    let rows = rows()?;
    let indices: Vec<usize> = (0..COLUMNS).collect();
    let (side, cell) = (28, 28 * ZOOM + GAP);
    let (width, height) = (COLUMNS * cell + GAP, rows.len() * cell + GAP);
    let mut pixels = vec![128u8; width * height];
    for (row, (name, mut augmentation)) in rows.into_iter().enumerate() {
        println!("row {}: {name}", row + 1);
        let mut images = digits.images().to_owned();
        augmentation.apply(images.view_mut(), 0, &indices)?;
        for (column, image) in images.outer_iter().enumerate() {
            let (top, left) = (GAP + row * cell, GAP + column * cell);
            for y in 0..side * ZOOM {
                for x in 0..side * ZOOM {
                    let v = image[[0, y / ZOOM, x / ZOOM]].clamp(0.0, 1.0);
                    pixels[(top + y) * width + left + x] = (v * 255.0).round() as u8;
                }
            }
        }
    }
    let mut encoder = png::Encoder::new(
        BufWriter::new(File::create(path)?),
        width as u32,
        height as u32,
    );
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&pixels)?;
    println!("wrote {path} ({width}x{height})");
    Ok(())
}

fn main() -> ExitCode {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "augment.png".into());
    match run(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("augment: {e}");
            ExitCode::FAILURE
        }
    }
}
