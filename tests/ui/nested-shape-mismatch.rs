// A network used as a layer must receive its input shape, and give the output shape declared
// after it: the compiler shows both shapes as types, at the item.
use striate::prelude::*;

network! {
    pub struct Features {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2), relu, max_pool(2),
    }
}

network! {
    pub struct Classifier {
        input: [1, 32, 32],
        features: Features -> [6, 14, 14],
        flatten,
        fc: linear(10),
    }
}

network! {
    pub struct Wrong {
        input: [1, 28, 28],
        features: Features -> [6, 28, 28],
        flatten,
        fc: linear(10),
    }
}

fn main() {}
