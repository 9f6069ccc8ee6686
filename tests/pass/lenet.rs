// LeNet-5 as in the README: compiles, and its constants are usable in `const` context.
use striate::prelude::*;

network! {
    /// LeNet-5 (LeCun et al., 1998) with ReLU and max pooling.
    pub struct LeNet5 {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2) -> [6, 28, 28],
        relu,
        max_pool(2),
        conv2: conv2d(16, kernel = 5),
        relu,
        max_pool(2) -> [16, 5, 5],
        flatten,
        fc1: linear(120),
        relu,
        fc2: linear(84),
        relu,
        fc3: linear(10),
    }
}

const PARAMS: usize = LeNet5::NUM_PARAMS;
const CONV1_PARAMS: usize = LeNet5::LAYERS[0].params;
const OUT: [usize; 1] = LeNet5::OUTPUT_SHAPE;
const _: () = assert!(PARAMS == 61_706 && CONV1_PARAMS == 156 && OUT[0] == 10);

fn main() {
    let net = LeNet5::init(1);
    let out = net.forward(Array4::zeros((3, 1, 28, 28)).view()).unwrap();
    assert_eq!(out.shape(), &[3, 10]);
}
