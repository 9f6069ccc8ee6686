// A reshape must keep the number of values: both counts are shown.
use striate::prelude::*;

network! {
    struct Net {
        input: [784],
        fc: linear(1024),
        reshape([64, 7, 7]),
    }
}

fn main() {}
