use striate::prelude::*;

network! {
    struct Net {
        input: [1, 28, 28],
    }
}

fn main() {}
