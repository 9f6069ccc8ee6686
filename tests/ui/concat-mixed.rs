// Concat cannot join a feature map with a vector.
use striate::prelude::*;

network! {
    struct Net {
        input: [3, 4, 4],
        mix: concat(a = {}, b = { flatten }),
    }
}

fn main() {}
