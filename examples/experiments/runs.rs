//! The networks the experiments train and the three ways they train them: a number of
//! steps with a look at every step, `fit` with a check for divergence, and the final
//! evaluation.

use striate::data::Order;
use striate::ndarray::{Ix2, Ix4};
use striate::prelude::*;
use striate::train::{Divergence, History, StepStats};
use striate::Error;

network! {
    /// Three hidden layers of 64 with ReLU: the activation experiment's network.
    pub struct ReluMlp {
        input: [1, 28, 28],
        flatten,
        fc1: linear(64), relu,
        fc2: linear(64), relu,
        fc3: linear(64), relu,
        fc4: linear(10),
    }
}

network! {
    /// `ReluMlp` with tanh.
    pub struct TanhMlp {
        input: [1, 28, 28],
        flatten,
        fc1: linear(64), tanh,
        fc2: linear(64), tanh,
        fc3: linear(64), tanh,
        fc4: linear(10),
    }
}

network! {
    /// `ReluMlp` with the logistic sigmoid.
    pub struct SigmoidMlp {
        input: [1, 28, 28],
        flatten,
        fc1: linear(64), sigmoid,
        fc2: linear(64), sigmoid,
        fc3: linear(64), sigmoid,
        fc4: linear(10),
    }
}

network! {
    /// Two 3x3 convolutions (8 and 16 channels) with max pooling, then one linear layer:
    /// 5,258 parameters.
    pub struct SmallConv {
        input: [1, 28, 28],
        conv1: conv2d(8, kernel = 3, pad = 1), relu,
        max_pool(2),
        conv2: conv2d(16, kernel = 3, pad = 1), relu,
        max_pool(2) -> [16, 7, 7],
        flatten,
        fc: linear(10),
    }
}

network! {
    /// `SmallConv` with batch normalization after each convolution.
    pub struct SmallConvBn {
        input: [1, 28, 28],
        conv1: conv2d(8, kernel = 3, pad = 1), bn1: batch_norm, relu,
        max_pool(2),
        conv2: conv2d(16, kernel = 3, pad = 1), bn2: batch_norm, relu,
        max_pool(2) -> [16, 7, 7],
        flatten,
        fc: linear(10),
    }
}

network! {
    /// Two hidden layers of 256 with ReLU, big enough to memorise a small training set.
    pub struct WideMlp {
        input: [1, 28, 28],
        flatten,
        fc1: linear(256), relu,
        fc2: linear(256), relu,
        fc3: linear(10),
    }
}

network! {
    /// `WideMlp` with dropout (p = 0.5) after each hidden layer.
    pub struct WideMlpDropout {
        input: [1, 28, 28],
        flatten,
        fc1: linear(256), relu, dropout(0.5),
        fc2: linear(256), relu, dropout(0.5),
        fc3: linear(10),
    }
}

/// A network of 28x28 grey digits into 10 classes, as every network here is.
pub trait Digits: Network<InputDim = Ix4, OutputDim = Ix2> {}

impl<N: Network<InputDim = Ix4, OutputDim = Ix2>> Digits for N {}

/// Runs `steps` training steps in shuffled batches of `batch` (pass `e` over the data in the
/// order of seed `1000 · seed + e`), calling `after` with the step's number (from 1), what
/// it measured and the trainer after each.
pub fn train_steps<N: Digits, O: Optimizer>(
    trainer: &mut Trainer<'_, N, O>,
    data: &Dataset,
    batch: usize,
    steps: usize,
    seed: u64,
    mut after: impl FnMut(usize, StepStats, &Trainer<'_, N, O>) -> striate::Result<()>,
) -> striate::Result<()> {
    let (mut step, mut pass) = (0, 0);
    while step < steps {
        let order = Order::Shuffled {
            seed: 1000 * seed + pass,
        };
        let before = step;
        for (x, labels) in data.batches(batch, order)?.take(steps - step) {
            step += 1;
            let stats = trainer.step(x.view(), &labels)?;
            after(step, stats, trainer)?;
        }
        if step == before {
            return Err(striate::Error::EmptyBatch {
                what: "training set of an experiment".to_string(),
            });
        }
        pass += 1;
    }
    Ok(())
}

/// How a run that may diverge ended.
pub enum Outcome {
    /// Every step's loss and gradients were finite.
    Trained(History),
    /// Training stopped at a step of `epoch` (from 1), for `what`: the trainer's divergence
    /// guard refused the step, and the weights are those of the step before.
    Diverged { epoch: usize, what: String },
}

/// `trainer.fit(train, fit)`, with the divergence guard's error ([`Error::Diverged`]) reported
/// as [`Outcome::Diverged`] instead of failing the experiment.
pub fn fit_watching<N: Digits, O: Optimizer>(
    trainer: &mut Trainer<'_, N, O>,
    train: &Dataset,
    fit: Fit<'_>,
) -> striate::Result<Outcome> {
    match trainer.fit(train, fit) {
        Ok(history) => Ok(Outcome::Trained(history)),
        Err(Error::Diverged {
            step, epoch, cause, ..
        }) => Ok(Outcome::Diverged {
            epoch: epoch + 1,
            what: match cause {
                Divergence::Loss(loss) => format!("loss {loss} at step {step}"),
                Divergence::GradNorm { norm, .. } => format!("gradient norm {norm} at step {step}"),
                _ => format!("step {step}"),
            },
        }),
        Err(e) => Err(e),
    }
}

/// The accuracy of `net` on `data`, in %.
pub fn accuracy<N: Digits>(net: &N, data: &Dataset) -> striate::Result<f64> {
    Ok(100.0 * f64::from(evaluate(net, data, 500)?.accuracy()))
}

/// Each epoch's validation accuracy in %, against the epoch number from 1.
pub fn validation_curve(history: &History) -> Vec<(f64, f64)> {
    history
        .epochs()
        .iter()
        .filter_map(|e| {
            let v = e.validation.as_ref()?;
            Some(((e.train.epoch + 1) as f64, 100.0 * f64::from(v.accuracy())))
        })
        .collect()
}

/// Each epoch's accuracy in % on the training batches while training, against the epoch.
pub fn training_curve(history: &History) -> Vec<(f64, f64)> {
    history
        .epochs()
        .iter()
        .map(|e| {
            let x = (e.train.epoch + 1) as f64;
            (x, 100.0 * f64::from(e.train.accuracy))
        })
        .collect()
}
