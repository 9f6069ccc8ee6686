use striate::prelude::*;

network! {
    struct Net {
        input: [784],
        fc: linear(100),
        relu,
        fc: linear(10),
    }
}

fn main() {}
