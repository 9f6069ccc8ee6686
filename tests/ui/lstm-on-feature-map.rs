// A recurrent layer reads a sequence [steps, features], not an image.
use striate::prelude::*;

network! {
    struct RowReader {
        input: [1, 28, 28],
        lstm: lstm(128),
        last,
        fc: linear(10),
    }
}

fn main() {}
