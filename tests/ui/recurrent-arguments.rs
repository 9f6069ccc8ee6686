// `rnn`'s activation is tanh or relu; `layers` is a count.
use striate::prelude::*;

network! {
    struct Net {
        input: [10, 3],
        rnn: rnn(16, activation = sigmoid, layers = 0),
        last,
    }
}

fn main() {}
