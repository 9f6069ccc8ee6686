// A transposed convolution's output padding must be smaller than its stride.
use striate::prelude::*;

network! {
    struct Net {
        input: [8, 7, 7],
        up: conv_transpose2d(4, kernel = 3, stride = 2, pad = 1, output_pad = 2),
    }
}

fn main() {}
