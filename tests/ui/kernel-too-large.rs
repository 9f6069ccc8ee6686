// The second convolution's 5x5 kernel does not fit the 3x3 map it is given.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 12, 12],
        conv1: conv2d(4, kernel = 3, stride = 3) -> [4, 4, 4],
        max_pool(2, stride = 1) -> [4, 3, 3],
        conv2: conv2d(8, kernel = 5),
    }
}

fn main() {}
