// A convolution cannot follow `flatten`.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 28, 28],
        flatten,
        conv1: conv2d(6, kernel = 5),
    }
}

fn main() {}
