//! The networks and inputs that tests/transfer.rs and tests/partial_load.rs share (included
//! with `#[path]`).
#![allow(dead_code)]

use striate::prelude::*;

network! {
    /// LeNet-5 as in examples/lenet.rs.
    pub struct LeNet5 {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2), relu, max_pool(2),
        conv2: conv2d(16, kernel = 5), relu, max_pool(2),
        flatten,
        fc1: linear(120), relu,
        fc2: linear(84), relu,
        fc3: linear(10),
    }
}

network! {
    /// LeNet-5's convolutional body.
    pub struct LeNetFeatures {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2), relu, max_pool(2),
        conv2: conv2d(16, kernel = 5), relu, max_pool(2),
    }
}

network! {
    /// The body under a fresh head.
    pub struct Classifier {
        input: [1, 28, 28],
        features: LeNetFeatures -> [16, 5, 5],
        flatten,
        fc: linear(5),
    }
}

network! {
    /// Small, with batch norm, for quick steps.
    pub struct Small {
        input: [1, 6, 6],
        conv: conv2d(3, kernel = 3), bn: batch_norm, relu,
        flatten,
        fc1: linear(5), relu,
        fc2: linear(3),
    }
}

pub fn images(n: usize, c: usize, h: usize, seed: usize) -> Array4<f32> {
    Array4::from_shape_fn((n, c, h, h), |(s, ch, i, j)| {
        (((s * 7 + ch * 3 + i * 5 + j * 11 + seed) % 17) as f32) / 17.0 - 0.4
    })
}

pub fn labels(n: usize, k: usize) -> Vec<usize> {
    (0..n).map(|i| (i * 3 + 1) % k).collect()
}

pub fn tensor(net: &impl Network, name: &str) -> Vec<f32> {
    net.params().get(name).unwrap().iter().copied().collect()
}
