use striate::prelude::*;

network! {
    struct Net {
        input: [10],
        relu(0.1),
    }
}

fn main() {}
