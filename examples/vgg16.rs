//! VGG-16 (Simonyan and Zisserman, 2014), configuration D, for 224x224 colour images: a large
//! declaration that shows what the shape checks cost at build time (see the README for the
//! figure) and prints its summary.
//!
//! `cargo run --release --example vgg16 [-- --train-step]`: with `--train-step`, also runs one
//! training step on a batch of two random images (about 2 GB of memory).

use striate::prelude::*;

network! {
    /// VGG-16: thirteen 3x3 convolutions in five blocks, three fully connected layers.
    pub struct Vgg16 {
        input: [3, 224, 224],
        conv1_1: conv2d(64, kernel = 3, pad = 1), relu,
        conv1_2: conv2d(64, kernel = 3, pad = 1), relu,
        max_pool(2) -> [64, 112, 112],
        conv2_1: conv2d(128, kernel = 3, pad = 1), relu,
        conv2_2: conv2d(128, kernel = 3, pad = 1), relu,
        max_pool(2) -> [128, 56, 56],
        conv3_1: conv2d(256, kernel = 3, pad = 1), relu,
        conv3_2: conv2d(256, kernel = 3, pad = 1), relu,
        conv3_3: conv2d(256, kernel = 3, pad = 1), relu,
        max_pool(2) -> [256, 28, 28],
        conv4_1: conv2d(512, kernel = 3, pad = 1), relu,
        conv4_2: conv2d(512, kernel = 3, pad = 1), relu,
        conv4_3: conv2d(512, kernel = 3, pad = 1), relu,
        max_pool(2) -> [512, 14, 14],
        conv5_1: conv2d(512, kernel = 3, pad = 1), relu,
        conv5_2: conv2d(512, kernel = 3, pad = 1), relu,
        conv5_3: conv2d(512, kernel = 3, pad = 1), relu,
        max_pool(2) -> [512, 7, 7],
        flatten,
        fc6: linear(4096), relu, dropout(0.5),
        fc7: linear(4096), relu, dropout(0.5),
        fc8: linear(1000),
    }
}

const _: () = assert!(Vgg16::NUM_PARAMS == 138_357_544);

fn main() -> striate::Result<()> {
    println!("{}", Vgg16::summary());
    if std::env::args().any(|a| a == "--train-step") {
        let start = std::time::Instant::now();
        let mut net = Vgg16::init(0);
        let x = Array4::from_shape_fn((2, 3, 224, 224), |(n, c, i, j)| {
            ((n + c + i * j) % 7) as f32 / 7.0
        });
        let mut tape = Tape::new();
        let mut grads = net.gradients();
        let logits = net.forward_train(x.view(), &mut tape)?;
        let (loss, d_logits) = cross_entropy(logits, &[3, 5])?;
        net.backward(&mut tape, d_logits.view(), &mut grads)?;
        Sgd::new(0.01).step(net.params_mut().as_mut_slice(), grads.params().as_slice())?;
        println!(
            "one training step on 2 images: loss {loss:.3}, {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
