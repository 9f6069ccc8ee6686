// Inside one block names are unique; the same name in two blocks is fine.
use striate::prelude::*;

network! {
    struct Net {
        input: [8],
        fc: linear(8),
        block1: residual { fc: linear(8), relu, fc: linear(8) },
        block2: residual { fc: linear(8) },
    }
}

fn main() {}
