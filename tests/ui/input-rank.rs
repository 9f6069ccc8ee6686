// The batch dimension is not part of the input shape.
use striate::prelude::*;

network! {
    struct Net {
        input: [64, 1, 28, 28],
        relu,
    }
}

fn main() {}
