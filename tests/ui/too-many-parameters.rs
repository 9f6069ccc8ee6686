// 2^36 weights and 2^20 biases: more parameters than striate can address (issue 13, item 8).
use striate::prelude::*;

network! {
    struct Net {
        input: [65536],
        fc: linear(1048576),
    }
}

fn main() {}
