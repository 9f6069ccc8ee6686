// A residual block needs layers in its body.
use striate::prelude::*;

network! {
    struct Net {
        input: [8],
        block: residual {},
        fc: linear(2),
    }
}

fn main() {}
