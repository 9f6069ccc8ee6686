// A float where an integer belongs, an integer where a boolean belongs, a string for a slope.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 2.5, bias = 1),
        leaky_relu("small"),
    }
}

fn main() {}
