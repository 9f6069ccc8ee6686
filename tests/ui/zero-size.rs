// Zero output channels and a zero stride.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 28, 28],
        conv1: conv2d(0, kernel = 5),
        max_pool(2, stride = 0),
    }
}

fn main() {}
