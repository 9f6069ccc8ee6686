// `last` picks the last step of a sequence; a vector has no steps.
use striate::prelude::*;

network! {
    struct Net {
        input: [28, 28],
        lstm: lstm(64),
        last,
        last,
        fc: linear(10),
    }
}

fn main() {}
