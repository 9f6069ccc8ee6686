// A missing comma between arguments is a syntax error at the token that follows it.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 28, 28],
        conv1: conv2d(6 kernel = 5),
    }
}

fn main() {}
