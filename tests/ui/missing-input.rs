use striate::prelude::*;

network! {
    struct Net {
        fc1: linear(10),
    }
}

fn main() {}
