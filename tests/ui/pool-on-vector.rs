// Pooling a vector input.
use striate::prelude::*;

network! {
    struct Net {
        input: [784],
        avg_pool(2),
    }
}

fn main() {}
