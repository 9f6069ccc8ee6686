// Only the height fails (the width tiles exactly): the error names that axis alone.
use striate::prelude::*;

network! {
    struct Net {
        input: [3, 32, 31],
        conv1: conv2d(8, kernel = 3, stride = 2, pad = 1),
    }
}

fn main() {}
