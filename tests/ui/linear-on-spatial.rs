// `linear` after a convolution needs a `flatten` first.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2),
        fc1: linear(10),
    }
}

fn main() {}
