// AlexNet's conv1 on 224: (224 - 11)/4 + 1 = 54.25 leaves a real column that no window reads,
// so rounding down is refused (unlike a leftover of padding or of a stride gap).
use striate::prelude::*;

network! {
    struct Net {
        input: [3, 224, 224],
        conv1: conv2d(96, kernel = 11, stride = 4),
    }
}

fn main() {}
