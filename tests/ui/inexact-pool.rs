// A 2x2 pool over a 7x7 map leaves a row and a column uncovered.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 7, 7],
        max_pool(2),
    }
}

fn main() {}
