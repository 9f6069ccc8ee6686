// `dropout = p` of a recurrent layer acts between its stacked layers: with one layer it would
// do nothing, as PyTorch warns.
use striate::prelude::*;

network! {
    struct Net {
        input: [10, 3],
        lstm: lstm(16, dropout = 0.2),
        last,
    }
}

fn main() {}
