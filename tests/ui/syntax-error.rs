// A missing comma between arguments is a syntax error at the token that follows it; the
// struct is still generated, so the code that uses it adds no errors of its own.
use striate::prelude::*;

network! {
    struct Net {
        input: [1, 28, 28],
        conv1: conv2d(6 kernel = 5),
        relu,
        flatten,
        fc: linear(10),
    }
}

fn main() {
    let net = Net::init(0);
    let x = Array4::<f32>::zeros((1, 1, 28, 28));
    let _ = net.forward(x.view());
    let _ = net.params();
    // Neither form of `summary` nor `{:?}` adds an error of its own.
    let _ = (Net::summary(), net.summary(), format!("{net:?}"));
}
