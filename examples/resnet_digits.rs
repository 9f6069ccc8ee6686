//! Trains a small residual network on MNIST digits: the built-in 8,004 training and 1,996 test
//! digits by default, or a full MNIST directory with `--data DIR`.
//!
//! ```text
//! cargo run --release --example resnet_digits -- [--data DIR] [--epochs N] [--batch N]
//!                                                [--lr X] [--seed N] [--threads N] [--out FILE]
//!                                                [--augment digits|affine|none] [--optimizer O] [--schedule S]
//!                                                [--checkpoint DIR] [--resume] [--log FILE]
//! ```
//!
//! The network is ResNet-20's pattern at digit size: a convolution stem, then three basic blocks
//! (batch norm after each convolution; the second halves the size and doubles the channels,
//! with a projection shortcut), global average pooling and one linear layer. Prints the test
//! accuracy after each epoch and at the end, with the training time, for comparison with
//! `cargo run --release --example lenet`.

use std::process::ExitCode;

use striate::prelude::*;

network! {
    /// A residual network for [1, 28, 28] digits: 16 channels at 14x14, 32 at 7x7.
    pub struct DigitsResNet {
        input: [1, 28, 28],
        conv1: conv2d(16, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
        max_pool(2) -> [16, 14, 14],
        block1: residual {
            conv1: conv2d(16, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(16, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu,
        block2: residual(shortcut = {
            conv: conv2d(32, kernel = 1, stride = 2, bias = false), bn: batch_norm,
        }) {
            conv1: conv2d(32, kernel = 3, stride = 2, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(32, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu -> [32, 7, 7],
        block3: residual {
            conv1: conv2d(32, kernel = 3, pad = 1, bias = false), bn1: batch_norm, relu,
            conv2: conv2d(32, kernel = 3, pad = 1, bias = false), bn2: batch_norm,
        },
        relu,
        avg_pool(7),
        flatten,
        fc: linear(10),
    }
}

const USAGE: &str = "usage: resnet_digits [--data DIR] [--epochs N] [--batch N] [--lr X] [--seed N]
                     [--threads N] [--out FILE] [--augment digits|affine|none]
                     [--optimizer sgd|adam|adamw|rmsprop] [--schedule S]
                     [--checkpoint DIR] [--resume] [--log FILE]

  --data DIR    a directory with the four MNIST files (train-images-idx3-ubyte[.gz], ...);
                default: the 10,000 digits built into striate
  --epochs N    passes over the training set (default 10)
  --batch N     samples per step (default 32)
  --lr X        initial learning rate of SGD with momentum 0.9, halved every 3 epochs
                (default 0.1)
  --seed N      seed of the initial weights and of the shuffles (default 1)
  --threads N   threads for the kernels (default: every core)
  --out FILE    save the trained weights there (safetensors, PyTorch names; default: not saved)
  --augment A   `digits`: translate, rotate, scale, deform and vary the intensity of
                every training batch (Augmentation::digits); `affine`: only translate,
                rotate and scale; default `none`";

#[path = "shared/digits.rs"]
mod digits;

const DEFAULTS: digits::Defaults = digits::Defaults {
    epochs: 10,
    lr: 0.1,
    out: None,
    halve_every: 3,
};

fn run(o: &digits::Options) -> striate::Result<()> {
    let mnist = digits::load::<DigitsResNet>(o)?;
    let mut net = DigitsResNet::init(o.seed);
    digits::train(&mut net, &mnist, o, DEFAULTS.halve_every)?;
    if let Some(out) = o.out.as_ref().filter(|_| o.is_root()) {
        net.save(out)?;
        println!("weights saved to {}", out.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    digits::main(USAGE, &DEFAULTS, run)
}
