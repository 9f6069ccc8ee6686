// A residual body that halves the size and doubles the channels cannot be added to its input:
// the message shows both shapes and the shortcut that fits.
use striate::prelude::*;

network! {
    struct Net {
        input: [16, 32, 32],
        block: residual {
            conv1: conv2d(32, kernel = 3, stride = 2, pad = 1, bias = false),
            bn1: batch_norm,
            relu,
        },
    }
}

fn main() {}
