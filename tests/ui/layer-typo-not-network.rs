// A CamelCase name that is a layer kind written differently is a typo, not a nested network.
use striate::prelude::*;

network! {
    pub struct Net {
        input: [1, 28, 28],
        c1: Conv2d(6, kernel = 5),
        ReLU,
        MaxPool(2),
        flatten,
        fc: linear(10),
    }
}

fn main() {}
