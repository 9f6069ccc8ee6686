// Upsampling needs a feature map; a vector has no height and width to grow.
use striate::prelude::*;

network! {
    struct Net {
        input: [64],
        upsample(2),
    }
}

fn main() {}
