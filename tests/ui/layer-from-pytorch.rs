// PyTorch's name of a layer, in its case.
use striate::prelude::*;

network! {
    struct Net {
        input: [784],
        fc: linear(10),
        ReLU,
    }
}

fn main() {}
