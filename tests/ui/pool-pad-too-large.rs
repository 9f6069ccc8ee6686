use striate::prelude::*;

network! {
    struct Net {
        input: [4, 8, 8],
        max_pool(2, pad = 2),
    }
}

fn main() {}
