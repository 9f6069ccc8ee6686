// Dropping every unit (p = 1), a negative share, or a p below 1 that is 1 as an f32 (the type
// the layer runs with) is not a probability in [0, 1).
use striate::prelude::*;

network! {
    struct Net {
        input: [100],
        dropout(1.0),
        dropout(-0.5),
        dropout(0.99999999),
    }
}

fn main() {}
