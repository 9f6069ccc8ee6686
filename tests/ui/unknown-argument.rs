// A misspelt argument gets the closest name and the list of valid ones.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, padding = 2),
    }
}

fn main() {}
