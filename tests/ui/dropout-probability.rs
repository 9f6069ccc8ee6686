// Dropping every unit (p = 1) or a negative share is not a probability in [0, 1).
use striate::prelude::*;

network! {
    struct Net {
        input: [100],
        dropout(1.0),
        dropout(-0.5),
    }
}

fn main() {}
