//! The worked convolution of the lecture striate starts from: a 5x5x3 input, zero padding 1,
//! two 3x3x3 filters with stride 2, giving a 3x3x2 output volume.
//!
//! `cargo run --example conv_demo`

use striate::prelude::*;

network! {
    /// One convolution: 2 filters of 3x3x3, stride 2, pad 1, over a 5x5x3 input.
    pub struct ConvDemo {
        input: [3, 5, 5],
        conv: conv2d(2, kernel = 3, stride = 2, pad = 1) -> [2, 3, 3],
    }
}

/// The input volume, channel by channel, rows top to bottom.
pub const INPUT: [[[f32; 5]; 5]; 3] = [
    [
        [2., 1., 1., 2., 1.],
        [1., 1., 0., 0., 0.],
        [1., 1., 1., 0., 0.],
        [1., 2., 2., 2., 2.],
        [0., 2., 1., 1., 1.],
    ],
    [
        [1., 0., 0., 2., 2.],
        [2., 1., 1., 1., 2.],
        [2., 1., 0., 1., 1.],
        [0., 0., 0., 2., 2.],
        [2., 1., 0., 0., 0.],
    ],
    [
        [1., 1., 1., 0., 2.],
        [2., 1., 0., 0., 1.],
        [1., 2., 1., 1., 2.],
        [0., 0., 2., 2., 1.],
        [2., 1., 2., 0., 2.],
    ],
];

/// The two filters, `[filter][channel][row][column]`.
pub const FILTERS: [[[[f32; 3]; 3]; 3]; 2] = [
    [
        [[0., -1., 0.], [1., 0., 1.], [0., 0., 1.]],
        [[1., 0., 0.], [0., -1., -1.], [0., -1., 0.]],
        [[1., 1., 1.], [0., 1., -1.], [-1., 1., 0.]],
    ],
    [
        [[0., 1., -1.], [-1., 1., 1.], [-1., 1., 1.]],
        [[1., -1., 1.], [-1., 0., -1.], [1., 0., 0.]],
        [[-1., -1., 1.], [0., 0., 1.], [-1., 1., 1.]],
    ],
];

/// The biases of the two filters.
pub const BIASES: [f32; 2] = [1., 0.];

/// The output volume the lecture gives.
pub const EXPECTED: [[[f32; 3]; 3]; 2] = [
    [[2., 1., 2.], [2., 7., 1.], [0., 8., 7.]],
    [[9., -1., -1.], [4., 5., -2.], [1., 1., -1.]],
];

/// The network with the lecture's weights, the input as a batch of one, and the output.
pub fn run() -> striate::Result<(ConvDemo, Array4<f32>, Array4<f32>)> {
    let mut net = ConvDemo::init(0);
    let w = Array4::from_shape_fn((2, 3, 3, 3), |(o, c, i, j)| FILTERS[o][c][i][j]);
    net.params_mut().set("conv.weight", w.into_dyn().view())?;
    net.params_mut()
        .set("conv.bias", Array1::from(BIASES.to_vec()).into_dyn().view())?;
    let x = Array4::from_shape_fn((1, 3, 5, 5), |(_, c, i, j)| INPUT[c][i][j]);
    let y = net.forward(x.view())?;
    Ok((net, x, y))
}

fn print_volume(title: &str, v: ndarray::ArrayView3<'_, f32>) {
    println!("{title}");
    for (c, channel) in v.outer_iter().enumerate() {
        println!("  [:, :, {c}]");
        for row in channel.outer_iter() {
            let cells: Vec<String> = row.iter().map(|x| format!("{x:>3}")).collect();
            println!("    {}", cells.join(" "));
        }
    }
}

#[allow(dead_code)]
fn main() -> striate::Result<()> {
    let (net, x, y) = run()?;
    println!("{}\n", ConvDemo::summary());
    print_volume("input volume (+pad 1), 5x5x3:", x.index_axis(Axis(0), 0));
    let w = net.params().get("conv.weight").expect("conv has a weight");
    for (f, bias) in BIASES.iter().enumerate() {
        let filter = w
            .index_axis(Axis(0), f)
            .into_dimensionality()
            .expect("a filter is 3-D");
        print_volume(&format!("filter w{f}, 3x3x3:"), filter);
        println!("  bias b{f} = {bias}");
    }
    print_volume("output volume, 3x3x2:", y.index_axis(Axis(0), 0));
    let expected = Array4::from_shape_fn((1, 2, 3, 3), |(_, o, i, j)| EXPECTED[o][i][j]);
    if y == expected {
        println!("\nmatches the lecture's output volume");
        Ok(())
    } else {
        Err(striate::Error::Config {
            name: "conv_demo",
            reason: format!("output {y} differs from the lecture's {expected}"),
        })
    }
}
