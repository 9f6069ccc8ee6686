// An LSTM gives a sequence; a vector needs `last`, `final_state` or a pooling over time.
use striate::prelude::*;

network! {
    struct Net {
        input: [28, 28],
        lstm: lstm(128) -> [128],
        fc: linear(10),
    }
}

fn main() {}
