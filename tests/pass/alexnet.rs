// AlexNet for [3, 227, 227], every spatial size asserted.
use striate::prelude::*;

network! {
    pub struct AlexNet {
        input: [3, 227, 227],
        conv1: conv2d(96, kernel = 11, stride = 4) -> [96, 55, 55],
        relu,
        max_pool(3, stride = 2) -> [96, 27, 27],
        conv2: conv2d(256, kernel = 5, pad = 2) -> [256, 27, 27],
        relu,
        max_pool(3, stride = 2) -> [256, 13, 13],
        conv3: conv2d(384, kernel = 3, pad = 1),
        relu,
        conv4: conv2d(384, kernel = 3, pad = 1),
        relu,
        conv5: conv2d(256, kernel = 3, pad = 1),
        relu,
        max_pool(3, stride = 2) -> [256, 6, 6],
        flatten -> [9216],
        fc6: linear(4096),
        relu,
        dropout(0.5),
        fc7: linear(4096),
        relu,
        dropout(0.5),
        fc8: linear(1000),
    }
}

const _: () = assert!(AlexNet::NUM_PARAMS == 62_378_344);
const _: () = assert!(AlexNet::LAYERS[12].receptive_field[0] == 195);

fn main() {}
