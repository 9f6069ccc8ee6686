// A size with a type suffix is refused: `300u8` would otherwise be read as 300, the suffix ignored.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 8, 8],
        conv: conv2d(4u8, kernel = 3f32),
    }
}

fn main() {}
