// This macro cannot see another network's declaration, so the output shape of a network used
// as a layer is declared, and checked by the compiler.
use striate::prelude::*;

network! {
    pub struct Features {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2), relu, max_pool(2),
    }
}

network! {
    pub struct Classifier {
        input: [1, 28, 28],
        features: Features,
        flatten,
        fc: linear(10),
    }
}

fn main() {}
