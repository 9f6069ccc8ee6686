// An argument other libraries take that striate infers.
use striate::prelude::*;

network! {
    struct Net {
        input: [3, 32, 32],
        conv1: conv2d(16, in_channels = 3, kernel = 3),
    }
}

fn main() {}
