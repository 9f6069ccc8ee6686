// Every mistake in a network is reported in one compile, and the struct still exists, so
// code that uses it adds no errors of its own.
use striate::prelude::*;

network! {
    pub struct Net {
        input: [3, 32, 32],
        conv1: conv2d(16, kernel = 3, stride = 2),
        relu,
        max_pool(3, stride = 2),
        conv2d(32, kernel = 3),
        flatten,
        fc: linear(10, bias = yes),
    }
}

fn main() {
    let net = Net::init(0);
    let _ = net.params();
}
