// `embedding` reads token ids, which need an input of their own, `tokens[T]`.
use striate::prelude::*;

network! {
    struct Net {
        input: [10],
        embedding: embedding(100, 8),
        rec: gru(16),
        last,
    }
}

fn main() {}
