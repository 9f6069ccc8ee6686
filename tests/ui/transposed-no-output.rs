// A transposed convolution whose padding takes off its whole output.
use striate::prelude::*;

network! {
    struct Net {
        input: [8, 2, 2],
        up: conv_transpose2d(4, kernel = 1, pad = 1),
    }
}

fn main() {}
