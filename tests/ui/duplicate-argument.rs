use striate::prelude::*;

network! {
    struct Net {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, stride = 1, stride = 2),
    }
}

fn main() {}
