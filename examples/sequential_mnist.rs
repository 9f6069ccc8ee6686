//! Sequential MNIST: each digit read row by row, top to bottom, 28 steps of 28 pixels, by an
//! LSTM whose last hidden state is classified. Adam with gradient clipping, on the 10,000
//! digits built into striate (8,004 to train on, 1,996 to test).
//!
//! ```text
//! cargo run --release --example sequential_mnist -- [EPOCHS] [THREADS]
//! ```
//!
//! It prints each epoch's loss and time, then the test accuracy; BENCHMARKS.md records a run.

use std::time::Instant;

use striate::prelude::*;

network! {
    /// Sequential MNIST: each digit read row by row, top to bottom.
    pub struct RowReader {
        input: [28, 28],
        lstm: lstm(128),        // -> [28, 128]
        last,                   // -> [128]
        fc: linear(10),
    }
}

fn main() -> striate::Result<()> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    if let Some(threads) = args.next().and_then(|a| a.parse().ok()) {
        striate::set_threads(threads)?;
    }
    let mnist = Mnist::builtin();
    let mut net = RowReader::init(1);
    let start = Instant::now();
    let mut trainer = Trainer::new(&mut net, Adam::new(2e-3))
        .clip_grad_norm(1.0)
        .shuffle_seed(1);
    for epoch in 0..epochs {
        let r = trainer.epoch(&mnist.train, 64, epoch, false)?;
        println!(
            "epoch {}: loss {:.4}, training accuracy {:.2}%, {:.1} s ({:.0} sequences/s)",
            epoch + 1,
            r.loss,
            100.0 * r.accuracy,
            r.seconds,
            r.images_per_sec
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    let test = evaluate(trainer.net(), &mnist.test, 256)?;
    println!(
        "test accuracy {:.2}% on {} digits after {epochs} epochs, {seconds:.1} s of training",
        100.0 * test.accuracy(),
        mnist.test.len()
    );
    Ok(())
}
