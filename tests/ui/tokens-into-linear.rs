// Token ids are integers, which only `embedding` reads.
use striate::prelude::*;

network! {
    struct Net {
        input: tokens[10],
        fc: linear(3),
    }
}

fn main() {}
