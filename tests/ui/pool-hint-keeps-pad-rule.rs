// A 3x3 pool over 8x8: no padding tiles it within the pool's limit of half the window, so none is suggested.
use striate::prelude::*;

network! {
    struct Net {
        input: [4, 8, 8],
        max_pool(3),
    }
}

fn main() {}
