//! A new user's program, as the book's page "Your own data" shows it: their own IDX files,
//! standardised, split, trained with `fit`, asked for predictions, saved and loaded.
//! `tests/new_user.rs` runs it in-process, and as the `src/main.rs` of a crate of its own.

use std::path::Path;

use striate::prelude::*;

network! {
    /// Small grey pictures of 13 kinds of shape.
    pub struct Shapes {
        input: [1, 12, 12],
        conv: conv2d(8, kernel = 3, pad = 1),
        relu,
        max_pool(2) -> [8, 6, 6],
        flatten,
        fc: linear(13),
    }
}

fn main() -> striate::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: new-user <data directory>");
    let accuracy = train_and_predict(Path::new(&dir))?;
    println!("test accuracy {:.1} %", 100.0 * accuracy);
    Ok(())
}

/// Trains `Shapes` on the files in `dir`, saves it there and returns the test accuracy of the
/// network loaded back from the file.
pub fn train_and_predict(dir: &Path) -> striate::Result<f32> {
    // Your files, your names: 12x12 grey images and their labels, 0 to 12.
    let data = Dataset::load_idx(
        dir.join("shapes-train-images.idx"),
        dir.join("shapes-train-labels.idx"),
        13,
    )?;
    let mut test = Dataset::load_idx(
        dir.join("shapes-test-images.idx"),
        dir.join("shapes-test-labels.idx"),
        13,
    )?;

    // Hold out a fifth of the training set, each class in proportion.
    let (mut train, mut valid) = data.split_stratified(0.2, 42)?;

    // Standardise every set with the statistics of the training set alone.
    let norm = Normalize::fit(&train)?;
    for set in [&mut train, &mut valid, &mut test] {
        norm.apply(set)?;
    }

    let mut net = Shapes::init(1);
    let mut trainer = Trainer::new(&mut net, Sgd::new(0.05).momentum(0.9));
    let history = trainer.fit(&train, Fit::epochs(8).batch(16).validation(&valid))?;
    let accuracies = history.validation_accuracies();
    for (epoch, accuracy) in history.epochs().iter().zip(accuracies) {
        println!(
            "epoch {}: loss {:.3}, validation accuracy {:.1} %",
            epoch.train.epoch + 1,
            epoch.train.loss,
            100.0 * accuracy
        );
    }

    // The predicted class of each test image, and the probability of every class.
    let classes = net.predict(test.images())?;
    let probs = net.predict_proba(test.images())?;
    println!(
        "the first test image is a {} ({:.0} % sure)",
        classes[0],
        100.0 * probs[[0, classes[0]]]
    );

    // Save the weights, and load them into a new network.
    let path = dir.join("shapes.safetensors");
    net.save(&path)?;
    let mut loaded = Shapes::init(0);
    loaded.load(&path)?;
    assert_eq!(loaded.predict(test.images())?, classes);

    let correct = classes
        .iter()
        .zip(test.labels())
        .filter(|(p, t)| p == t)
        .count();
    Ok(correct as f32 / test.len() as f32)
}
