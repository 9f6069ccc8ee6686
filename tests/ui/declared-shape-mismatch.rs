// Without padding a 5x5 kernel gives 24x24, not the 28x28 declared.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5) -> [6, 28, 28],
        relu,
    }
}

fn main() {}
