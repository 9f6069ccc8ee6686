// AlexNet's conv1 with stride 5: (227 + 2*0 - 11)/5 + 1 = 44.2 is not a whole number.
use striate::prelude::*;

network! {
    struct AlexNetStem {
        input: [3, 227, 227],
        conv1: conv2d(96, kernel = 11, stride = 5),
        relu,
    }
}

fn main() {}
