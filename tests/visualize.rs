//! The PNG writers of `striate::visualize`: pictures of the stated size, decoded, with tiles
//! and outlines where they should be.

use striate::prelude::*;
use striate::visualize::{self, Grid, Region};

#[path = "common/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

network! {
    /// LeNet-5's convolutions.
    pub struct Convs {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2), relu, max_pool(2),
        conv2: conv2d(16, kernel = 5), relu, max_pool(2),
        flatten,
        fc: linear(3),
    }
}

network! {
    /// A colour first layer, AlexNet's conv1 in small.
    pub struct Colour {
        input: [3, 23, 23],
        conv1: conv2d(5, kernel = 11, stride = 4), relu,
    }
}

/// The decoded file: `(width, height, RGB bytes)`.
fn decode(path: &std::path::Path) -> (usize, usize, Vec<u8>) {
    let file = std::fs::File::open(path).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().unwrap();
    let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut rgb).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    rgb.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, rgb)
}

fn pixel(rgb: &[u8], width: usize, x: usize, y: usize) -> [u8; 3] {
    let at = 3 * (y * width + x);
    [rgb[at], rgb[at + 1], rgb[at + 2]]
}

#[test]
fn kernel_grids_have_one_scaled_tile_per_kernel() {
    let dir = TempDir::new("visualize-kernels");
    let mut net = Convs::init(0);
    // Kernel k: a ramp along its columns, so each tile goes from black (left) to white.
    let mut w = net.params_mut().get_mut("conv1.weight").unwrap();
    for (i, v) in w.indexed_iter_mut() {
        *v = i[3] as f32;
    }
    let grid = Grid {
        columns: Some(4),
        scale: 3,
        gap: 2,
    };
    let path = dir.path().join("kernels.png");
    visualize::first_conv_kernels(&net, grid)
        .unwrap()
        .save(&path)
        .unwrap();
    let (width, height, rgb) = decode(&path);
    // 6 tiles in 4 columns: 2 rows of 5·3-pixel tiles with 2-pixel gaps.
    assert_eq!((width, height), (2 + 4 * (15 + 2), 2 + 2 * (15 + 2)));
    let gap = visualize::GAP_COLOUR;
    for k in 0..8 {
        let (x0, y0) = (2 + (k % 4) * 17, 2 + (k / 4) * 17);
        let (left, right) = (
            pixel(&rgb, width, x0, y0),
            pixel(&rgb, width, x0 + 14, y0 + 14),
        );
        if k < 6 {
            assert_eq!((left, right), ([0; 3], [255; 3]), "tile {k}");
            assert_eq!(pixel(&rgb, width, x0 + 15, y0), gap, "after tile {k}");
        } else {
            assert_eq!((left, right), (gap, gap), "no tile {k}");
        }
    }
    assert_eq!(pixel(&rgb, width, 1, 1), gap);
}

#[test]
fn three_channel_kernels_are_drawn_in_colour() {
    let mut net = Colour::init(0);
    // Kernel 0 red (channel 0 high), kernel 1 green, kernel 2 blue.
    let mut w = net.params_mut().get_mut("conv1.weight").unwrap();
    for (i, v) in w.indexed_iter_mut() {
        *v = if i[0] < 3 && i[1] == i[0] { 1.0 } else { 0.0 };
    }
    let image = visualize::first_conv_kernels(
        &net,
        Grid {
            columns: None,
            scale: 1,
            gap: 1,
        },
    )
    .unwrap();
    // 5 tiles: 3 columns, 2 rows of 11×11.
    assert_eq!((image.width(), image.height()), (1 + 3 * 12, 1 + 2 * 12));
    assert_eq!(image.pixel(1 + 5, 1 + 5), Some([255, 0, 0]));
    assert_eq!(image.pixel(13 + 5, 1 + 5), Some([0, 255, 0]));
    assert_eq!(image.pixel(25 + 5, 1 + 5), Some([0, 0, 255]));
    // A constant kernel is mid grey.
    assert_eq!(image.pixel(1 + 5, 13 + 5), Some([128; 3]));
}

#[test]
fn feature_maps_have_one_tile_per_channel_of_every_convolution() {
    let dir = TempDir::new("visualize-maps");
    let net = Convs::init(1);
    let x = Array::from_shape_fn((1, 28, 28), |(_, i, j)| ((i * j) % 7) as f32);
    let maps = visualize::feature_maps(
        &net,
        x.view(),
        Grid {
            columns: Some(8),
            scale: 2,
            gap: 1,
        },
    )
    .unwrap();
    let names: Vec<&str> = maps.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["conv1", "conv2"]);
    let sizes: Vec<(usize, usize)> = maps.iter().map(|(_, m)| (m.width(), m.height())).collect();
    // conv1: 6 maps of 28×28 in one row of 6; conv2: 16 maps of 10×10 in 2 rows of 8.
    assert_eq!(sizes, [(1 + 6 * 57, 1 + 57), (1 + 8 * 21, 1 + 2 * 21)]);
    let path = dir.path().join("conv2.png");
    maps[1].1.save(&path).unwrap();
    let (width, height, rgb) = decode(&path);
    assert_eq!((width, height), sizes[1]);
    assert_eq!(rgb, maps[1].1.as_rgb());
    let err = visualize::feature_maps(&net, Array::zeros((2, 28, 28)).view(), Grid::default());
    assert!(matches!(err, Err(Error::Shape { .. })), "{err:?}");
}

/// The fields found on the network match the geometry: conv1 (5×5, pad 2) then a 2×2 pool and
/// conv2 (5×5): 14×14 with a jump of 2, less the padding at the border.
#[test]
fn receptive_fields_are_where_the_geometry_says() {
    // With two threads too: a batch split over threads keeps only the output on the tape.
    striate::set_threads(2).unwrap();
    let conv2 = 3;
    assert_eq!(Convs::LAYERS[conv2].name, "conv2");
    assert_eq!(Convs::LAYERS[conv2].receptive_field, [14, 14]);
    let inside = visualize::receptive_field::<Convs>(conv2, [5, 3]).unwrap();
    assert_eq!(
        inside,
        Region {
            top: 8,
            left: 4,
            height: 14,
            width: 14
        }
    );
    let corner = visualize::receptive_field::<Convs>(conv2, [0, 0]).unwrap();
    assert_eq!(
        corner,
        Region {
            top: 0,
            left: 0,
            height: 12,
            width: 12
        }
    );
    let conv1 = visualize::receptive_field::<Convs>(0, [10, 27]).unwrap();
    assert_eq!(
        conv1,
        Region {
            top: 8,
            left: 25,
            height: 5,
            width: 3
        }
    );
    // After flatten, the whole input.
    let fc = visualize::receptive_field::<Convs>(6, [0, 0]);
    assert!(matches!(fc, Err(Error::Config { .. })), "{fc:?}");
    assert!(visualize::receptive_field::<Convs>(3, [10, 0]).is_err());
    assert!(visualize::receptive_field::<Convs>(99, [0, 0]).is_err());
}

#[test]
fn a_drawn_region_is_outlined_on_the_scaled_input() {
    let dir = TempDir::new("visualize-region");
    let x = Array::from_elem((1, 28, 28), 1.0f32);
    let region = Region {
        top: 8,
        left: 4,
        height: 14,
        width: 14,
    };
    let path = dir.path().join("field.png");
    visualize::draw_region(x.view(), region, 3)
        .unwrap()
        .save(&path)
        .unwrap();
    let (width, height, rgb) = decode(&path);
    assert_eq!((width, height), (84, 84));
    let outline = visualize::OUTLINE;
    // The outline runs one pixel outside the region: rows 23 and 66, columns 11 and 54.
    assert_eq!(pixel(&rgb, width, 11, 30), outline);
    assert_eq!(pixel(&rgb, width, 54, 30), outline);
    assert_eq!(pixel(&rgb, width, 30, 23), outline);
    assert_eq!(pixel(&rgb, width, 30, 66), outline);
    // Inside as it is (a constant image is mid grey), outside darkened.
    assert_eq!(pixel(&rgb, width, 30, 30), [128; 3]);
    assert_eq!(pixel(&rgb, width, 5, 5), [51; 3]);
    let outside = Region {
        top: 20,
        left: 0,
        height: 9,
        width: 1,
    };
    assert!(visualize::draw_region(x.view(), outside, 1).is_err());
}
