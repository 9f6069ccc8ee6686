// A concat of one branch joins nothing.
use striate::prelude::*;

network! {
    struct Net {
        input: [3, 8, 8],
        mix: concat(a = { conv: conv2d(4, kernel = 1) }),
    }
}

fn main() {}
