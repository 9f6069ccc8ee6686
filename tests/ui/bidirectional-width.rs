// A bidirectional layer gives both directions' hidden units, 2*64 = 128 features per step.
use striate::prelude::*;

network! {
    struct Net {
        input: [28, 28],
        gru: gru(64, bidirectional = true),
        final_state -> [64],
        fc: linear(10),
    }
}

fn main() {}
