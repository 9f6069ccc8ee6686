// Only the width fails to tile: the message names the width alone.
use striate::prelude::*;

network! {
    struct Net {
        input: [3, 31, 32],
        conv1: conv2d(8, kernel = 3, stride = 2),
    }
}

fn main() {}
