// PyTorch's habits: the input features first.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 32, 32],
        flatten,
        fc: linear(1024, 10),
    }
}

fn main() {}
