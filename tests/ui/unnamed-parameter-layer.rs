// Parameters are saved under their layer's name, so such a layer needs one.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 28, 28],
        conv2d(6, kernel = 5),
        flatten,
        linear(10),
    }
}

fn main() {}
