// PyTorch's habits: the input channels first, `kernel_size` and `padding`.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 28, 28],
        conv1: conv2d(1, 16, kernel_size = 3, padding = 1),
    }
}

fn main() {}
