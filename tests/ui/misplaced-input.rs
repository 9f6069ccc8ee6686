use striate::prelude::*;

network! {
    struct Net {
        fc1: linear(10),
        input: [784],
    }
}

fn main() {}
