//! The options of recurrent layers through the generated network: `dropout = p` between
//! stacked layers, and token ids read by `embedding`.

use striate::ndarray::Array3;
use striate::prelude::*;

network! {
    /// Three stacked GRU layers with dropout between them.
    struct Dropped {
        input: [6, 3],
        rec: gru(5, layers = 3, dropout = 0.5),
        last,
        fc: linear(2),
    }
}

network! {
    /// The same layers without dropout.
    struct Plain {
        input: [6, 3],
        rec: gru(5, layers = 3),
        last,
        fc: linear(2),
    }
}

fn batch() -> Array3<f32> {
    Array3::from_shape_fn((4, 6, 3), |(n, t, f)| {
        ((n * 7 + t * 3 + f) % 5) as f32 / 5.0 - 0.4
    })
}

/// PyTorch's semantics: dropout between stacked layers acts in training only, so in
/// evaluation the network gives what the same weights without dropout give; in training the
/// output differs, and two training passes draw different masks.
#[test]
fn dropout_between_layers_acts_in_training_only() {
    let mut dropped = Dropped::init(3);
    let mut plain = Plain::init(0);
    assert_eq!(Dropped::PARAMS, Plain::PARAMS, "the same parameters");
    plain
        .params_mut()
        .as_mut_slice()
        .copy_from_slice(dropped.params().as_slice());
    let x = batch();
    let eval = dropped.forward(x.view()).unwrap();
    assert_eq!(eval, plain.forward(x.view()).unwrap());

    let mut tape = Tape::new();
    let first = dropped
        .forward_train(x.view(), &mut tape)
        .unwrap()
        .to_owned();
    let second = dropped
        .forward_train(x.view(), &mut tape)
        .unwrap()
        .to_owned();
    assert_ne!(first, eval, "training drops values");
    assert_ne!(first, second, "each pass draws fresh masks");

    // A training step through the masks learns: the loss on one batch falls.
    let target = Array2::from_shape_fn((4, 2), |(n, k)| (n + k) as f32 / 4.0);
    let mut trainer = Trainer::new(&mut dropped, Adam::new(1e-2));
    let start = trainer
        .step_to(x.view(), target.view(), Loss::Mse)
        .unwrap()
        .loss;
    let mut end = start;
    for _ in 0..100 {
        end = trainer
            .step_to(x.view(), target.view(), Loss::Mse)
            .unwrap()
            .loss;
    }
    assert!(end < start / 2.0, "{start} -> {end}");
}

network! {
    /// Token ids, embedded and read by an LSTM.
    struct Reader {
        input: tokens[4],
        embedding: embedding(6, 3),
        rec: lstm(5),
        mean_over_time,
        fc: linear(2),
    }
}

/// An id outside the vocabulary, negative, or not a whole number is a typed error naming it,
/// in inference and in training, and changes nothing; good ids train.
#[test]
fn token_ids_outside_the_vocabulary_are_an_error() {
    let mut net = Reader::init(1);
    assert_eq!(<Reader as Network>::TOKENS, 6);
    let good = Array2::from_shape_fn((2, 4), |(n, t)| ((n * 4 + t) % 6) as f32);
    let before = net.params().as_slice().to_vec();
    for (bad, found) in [(6.0, 6.0), (-1.0, -1.0), (2.5, 2.5)] {
        let mut x = good.clone();
        x[[1, 2]] = bad;
        match net.forward(x.view()) {
            Err(Error::TokenOutOfRange {
                found: f,
                index: 6,
                vocab: 6,
                ..
            }) => assert_eq!(f, found),
            other => panic!("{bad}: {other:?}"),
        }
        let err = Trainer::new(&mut net, Sgd::new(0.1))
            .step(x.view(), &[0, 1])
            .unwrap_err();
        assert!(err.to_string().contains("0..6"), "{err}");
    }
    assert_eq!(net.params().as_slice(), before, "nothing changed");
    let out = net.forward(good.view()).unwrap();
    assert_eq!(out.shape(), [2, 2]);
    let mut trainer = Trainer::new(&mut net, Adam::new(1e-2));
    let first = trainer.step(good.view(), &[0, 1]).unwrap().loss;
    let mut last = first;
    for _ in 0..50 {
        last = trainer.step(good.view(), &[0, 1]).unwrap().loss;
    }
    assert!(last < first / 2.0, "{first} -> {last}");
}

network! {
    /// Sentences of 20 tokens from a vocabulary of 10,000, classified.
    pub struct Sentiment {
        input: tokens[20],
        embedding: embedding(10000, 64),   // -> [20, 64]
        lstm: lstm(128),
        last,
        fc: linear(2),
    }
}

/// The book's example: an embedding of 10,000 ids, 64 features each, named as PyTorch names
/// it, then an LSTM on the embedded sequence.
#[test]
fn the_books_token_example() {
    assert_eq!(Sentiment::INPUT_SHAPE, [20]);
    assert_eq!(Sentiment::LAYERS[0].output, [20, 64]);
    assert_eq!(Sentiment::PARAMS[0].name, "embedding.weight");
    assert_eq!(Sentiment::PARAMS[0].shape, [10000, 64]);
    let net = Sentiment::init(0);
    // Started as PyTorch starts `nn.Embedding`, N(0, 1).
    let w = &net.params().as_slice()[..640_000];
    let mean = w.iter().sum::<f32>() / w.len() as f32;
    let var = w.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / w.len() as f32;
    assert!(
        mean.abs() < 0.01 && (var - 1.0).abs() < 0.01,
        "{mean} {var}"
    );
    let ids = Array2::from_shape_fn((3, 20), |(n, t)| (n * 3_331 + t * 17) as f32);
    assert_eq!(net.forward(ids.view()).unwrap().shape(), [3, 2]);
}
