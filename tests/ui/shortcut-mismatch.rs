// A shortcut whose output differs from the body's: both shapes are shown.
use striate::prelude::*;

network! {
    struct Net {
        input: [16, 32, 32],
        block: residual(shortcut = { conv: conv2d(32, kernel = 1) }) {
            conv1: conv2d(32, kernel = 3, stride = 2, pad = 1),
        },
    }
}

fn main() {}
