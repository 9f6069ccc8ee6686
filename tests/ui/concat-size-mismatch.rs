// Concat joins along channels, so every branch must keep the same height and width; each
// branch's shape is shown.
use striate::prelude::*;

network! {
    struct Net {
        input: [3, 16, 16],
        mix: concat(
            a = { conv: conv2d(8, kernel = 3, pad = 1) },
            b = { max_pool(2) },
        ),
    }
}

fn main() {}
