//! Numbers the issue and the lecture give: the worked convolution, LeNet-5's and AlexNet's
//! parameter counts and receptive fields.

use striate::prelude::*;

#[allow(dead_code)]
#[path = "../examples/conv_demo.rs"]
mod conv_demo;

#[allow(dead_code)]
#[path = "../examples/alexnet.rs"]
mod alexnet;

#[allow(dead_code)]
#[path = "../examples/lenet.rs"]
mod lenet;
use lenet::LeNet5;

#[test]
fn conv_demo_output_volume() {
    let (_, _, y) = conv_demo::run().unwrap();
    let expected = Array4::from_shape_fn((1, 2, 3, 3), |(_, o, i, j)| conv_demo::EXPECTED[o][i][j]);
    assert_eq!(y, expected);
}

#[test]
fn lenet_parameters_and_receptive_fields() {
    assert_eq!(LeNet5::LAYERS[0].params, 156);
    assert_eq!(LeNet5::NUM_PARAMS, 61_706);
    assert_eq!(LeNet5::summary().total_params(), 61_706);
    let fields: Vec<usize> = [0, 2, 3, 5]
        .iter()
        .map(|&i| LeNet5::LAYERS[i].receptive_field[0])
        .collect();
    assert_eq!(fields, [5, 6, 14, 16]);
    let shapes: Vec<&[usize]> = LeNet5::LAYERS.iter().map(|l| l.output).collect();
    assert_eq!(shapes[3], &[16, 10, 10]);
    assert_eq!(shapes[6], &[400]);
    let names: Vec<&str> = LeNet5::PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias",
            "fc3.weight",
            "fc3.bias"
        ]
    );
    assert_eq!(LeNet5::PARAMS[4].shape, &[120, 400]);
}

#[test]
fn alexnet_figures() {
    use alexnet::AlexNet;
    let conv1 = &AlexNet::LAYERS[0];
    assert_eq!(conv1.output, &[96, 55, 55]);
    assert_eq!(conv1.output.iter().product::<usize>(), 290_400);
    assert_eq!(conv1.params, 34_944);
    assert_eq!(AlexNet::PARAMS[0].len, 34_848);
    assert_eq!(AlexNet::PARAMS[1].len, 96);
    assert_eq!(290_400 * (AlexNet::PARAMS[0].len / 96 + 1), 105_705_600);
    assert_eq!(AlexNet::NUM_PARAMS, 62_378_344);
    assert_eq!(AlexNet::LAYERS[12].kind, "max_pool");
    assert_eq!(AlexNet::LAYERS[12].receptive_field, [195, 195]);
    assert_eq!(AlexNet::LAYERS[0].macs, 105_415_200);
}

#[test]
fn summary_text() {
    let text = LeNet5::summary().to_string();
    assert!(
        text.contains("conv1: conv2d(6, kernel = 5, pad = 2)"),
        "{text}"
    );
    assert!(text.contains("total params: 61,706"), "{text}");
    assert!(text.contains("[16, 5, 5]"), "{text}");
}
