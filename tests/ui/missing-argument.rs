// A convolution needs its kernel size.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 28, 28],
        conv1: conv2d(6),
    }
}

fn main() {}
