// Every layer kind and argument form, with non-square kernels, pairs, floor rounding and
// vector-input batch norm.
use striate::prelude::*;

network! {
    #[allow(dead_code)]
    pub(crate) struct Zoo {
        input: [3, 20, 18],
        c1: conv2d(4, kernel = (3, 5), stride = (1, 1), pad = (1, 2), bias = false) -> [4, 20, 18],
        bn1: batch_norm(momentum = 0.2, eps = 1e-3),
        leaky_relu(0.1),
        max_pool((2, 3), stride = (2, 3)) -> [4, 10, 6],
        c2: conv2d(5, kernel = 3, stride = 2, floor = true) -> [5, 4, 2],
        tanh,
        avg_pool(2, stride = 1, pad = 1) -> [5, 5, 3],
        sigmoid,
        dropout(0.25),
        flatten -> [75],
        fc1: linear(16),
        bn2: batch_norm,
        relu,
        dropout,
        fc2: linear(3, bias = false),
    }
}

fn main() {
    let mut net = Zoo::init(7);
    let x = Array4::from_elem((2, 3, 20, 18), 0.25f32);
    let mut tape = Tape::new();
    let y = net.forward_train(x.view(), &mut tape).unwrap().to_owned();
    assert_eq!(y.shape(), &[2, 3]);
    let mut g = net.gradients().with_input();
    net.backward(&mut tape, y.view(), &mut g).unwrap();
    assert_eq!(g.input().unwrap().shape(), &[2, 3, 20, 18]);
    assert!(g.get("bn1.weight").is_some() && g.get("c1.bias").is_none());
}
