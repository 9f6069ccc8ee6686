//! Trains LeNet-5 on MNIST digits: the built-in 8,004 training and 1,996 test digits by
//! default, or a full MNIST directory with `--data DIR`.
//!
//! ```text
//! cargo run --release --example lenet -- [--data DIR] [--epochs N] [--batch N] [--lr X]
//!                                        [--seed N] [--threads N] [--out FILE]
//!                                        [--augment digits|affine|none] [--optimizer O] [--schedule S]
//!                                        [--checkpoint DIR] [--resume] [--log FILE] [--distributed]
//!                                        [--distributed]
//! mpirun -np 2 cargo run --release --features mpi --example lenet -- --distributed
//! ```
//!
//! Prints a progress bar per epoch (loss, accuracy, images/s), the test accuracy after each
//! epoch, the final confusion matrix, and saves the weights (safetensors, PyTorch names).
//! `--optimizer` and `--schedule` choose the optimizer and the learning-rate schedule,
//! `--checkpoint DIR` writes a training checkpoint after every epoch and `--resume` goes on
//! from the newest (a run stopped and resumed ends with the weights of one never stopped),
//! `--log FILE` writes the metrics of every epoch (`Fit::log`). `--distributed` (feature
//! `mpi`, under `mpirun`) trains data-parallel, one rank per process. See `--help`.

use std::process::ExitCode;

use striate::prelude::*;

network! {
    /// LeNet-5 (LeCun et al., 1998) with ReLU and max pooling.
    pub struct LeNet5 {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2) -> [6, 28, 28],
        relu,
        max_pool(2),
        conv2: conv2d(16, kernel = 5),
        relu,
        max_pool(2) -> [16, 5, 5],
        flatten,
        fc1: linear(120),
        relu,
        fc2: linear(84),
        relu,
        fc3: linear(10),
    }
}

const USAGE: &str = "usage: lenet [--data DIR] [--epochs N] [--batch N] [--lr X] [--seed N]
             [--threads N] [--out FILE] [--augment digits|affine|none]
             [--optimizer sgd|adam|adamw|rmsprop] [--schedule S]
             [--checkpoint DIR] [--resume] [--log FILE]

  --data DIR    a directory with the four MNIST files (train-images-idx3-ubyte[.gz], ...);
                default: the 10,000 digits built into striate
  --epochs N    passes over the training set (default 12)
  --batch N     samples per step (default 32)
  --lr X        initial learning rate of SGD with momentum 0.9, halved every 4 epochs
                (default 0.02)
  --seed N      seed of the initial weights and of the shuffles (default 1)
  --threads N   threads to split each batch over (default: every core)
  --out FILE    where to save the trained weights (default lenet.safetensors)
  --augment A   `digits`: translate, rotate, scale, deform and vary the intensity of
                every training batch (Augmentation::digits); `affine`: only translate,
                rotate and scale; default `none`";

#[path = "shared/digits.rs"]
mod digits;

const DEFAULTS: digits::Defaults = digits::Defaults {
    epochs: 12,
    lr: 0.02,
    out: Some("lenet.safetensors"),
    halve_every: 4,
};

fn run(o: &digits::Options) -> striate::Result<()> {
    let mnist = digits::load::<LeNet5>(o)?;
    let mut net = LeNet5::init(o.seed);
    let (test, _) = digits::train(&mut net, &mnist, o, DEFAULTS.halve_every)?;
    if !o.is_root() {
        return Ok(());
    }
    println!("\nconfusion matrix:\n{}", test.confusion_table());
    if let Some(out) = &o.out {
        net.save(out)?;
        println!("weights saved to {}", out.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    digits::main(USAGE, &DEFAULTS, run)
}
