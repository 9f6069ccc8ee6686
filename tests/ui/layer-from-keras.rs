// Keras's name of a layer.
use striate::prelude::*;

network! {
    struct Net {
        input: [784],
        fc: dense(10),
    }
}

fn main() {}
