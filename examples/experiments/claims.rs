//! The six claims, each measured over several seeds and reported as a table and curves.

use std::collections::VecDeque;

use striate::data::augment::{
    Augment, Crop, Elastic, Flip, Intensity, Rotate, Scale as Zoom, Translate,
};
use striate::plot::LineChart;
use striate::prelude::*;

use super::report::{mean_curve, spread, Report};
use super::runs::{
    accuracy, fit_watching, train_steps, training_curve, validation_curve, Digits, Outcome,
    ReluMlp, SigmoidMlp, SmallConv, SmallConvBn, TanhMlp, WideMlp, WideMlpDropout,
};
use super::Settings;

type Curve = Vec<(f64, f64)>;

/// `k/n`.
fn count(k: usize, n: usize) -> String {
    format!("{k}/{n}")
}

/// `1 epoch`, `3 epochs`.
fn epochs_text(epochs: usize) -> String {
    if epochs == 1 {
        "1 epoch".into()
    } else {
        format!("{epochs} epochs")
    }
}

/// The mean curve of each setting, one series each, on one chart.
fn chart_of(title: &str, x: &str, y: &str, curves: &[(String, Vec<Curve>)]) -> LineChart {
    curves.iter().fold(
        LineChart::new(title).x_label(x).y_label(y).size(640, 440),
        |chart, (name, runs)| chart.series(name.as_str(), mean_curve(runs)),
    )
}

// ---------------------------------------------------------------------------------------
// 1. Activations

/// A descent to a training loss: the step at which the mean loss of the last `window` steps
/// first reached the target, that mean every 10 steps, and its last value.
struct Descent {
    reached: Option<usize>,
    curve: Curve,
    last: f64,
}

fn descend<N: Digits>(
    seed: u64,
    train: &Dataset,
    steps: usize,
    target: f64,
    window: usize,
) -> striate::Result<Descent> {
    let mut net = N::init(seed);
    let mut trainer = Trainer::new(&mut net, Sgd::new(0.1));
    let mut recent = VecDeque::with_capacity(window + 1);
    let (mut sum, mut reached, mut curve, mut last) = (0.0, None, Vec::new(), f64::NAN);
    train_steps(&mut trainer, train, 32, steps, seed, |step, stats, _| {
        recent.push_back(f64::from(stats.loss));
        sum += f64::from(stats.loss);
        if recent.len() > window {
            sum -= recent.pop_front().unwrap_or(0.0);
        }
        last = sum / recent.len() as f64;
        if recent.len() == window && reached.is_none() && last <= target {
            reached = Some(step);
        }
        if step % 10 == 0 {
            curve.push((step as f64, last));
        }
        Ok(())
    })?;
    Ok(Descent {
        reached,
        curve,
        last,
    })
}

/// Claim 1: ReLU trains faster than tanh, and tanh than sigmoid.
pub fn activations(s: &Settings, mnist: &Mnist, r: &mut Report) -> striate::Result<()> {
    let train = &mnist.train;
    let steps = s.pick(300, 2_000);
    let target = s.pick(1.0, 0.35);
    let window = 50;
    r.section(
        &format!("1. ReLU, tanh, sigmoid: steps to a training loss of {target}"),
        &[
            "network: 784-64-64-64-10 perceptron, the same but for the activation (default initialisation)".into(),
            format!("SGD, learning rate 0.1, no momentum, batches of 32 from all {} training digits", train.len()),
            format!("measured: the first step at which the mean loss of the last {window} steps is at most {target}, within {steps} steps"),
            s.seed_line(),
        ],
    );
    type Run = fn(u64, &Dataset, usize, f64, usize) -> striate::Result<Descent>;
    let runs: [(&str, Run); 3] = [
        ("ReLU", descend::<ReluMlp>),
        ("tanh", descend::<TanhMlp>),
        ("sigmoid", descend::<SigmoidMlp>),
    ];
    let (mut rows, mut curves) = (Vec::new(), Vec::new());
    for (name, run) in runs {
        let descents = s
            .seeds()
            .map(|seed| run(seed, train, steps, target, window))
            .collect::<striate::Result<Vec<_>>>()?;
        let reached: Vec<f64> = descents
            .iter()
            .filter_map(|d| d.reached)
            .map(|n| n as f64)
            .collect();
        let last: Vec<f64> = descents.iter().map(|d| d.last).collect();
        rows.push(vec![
            name.to_string(),
            count(reached.len(), descents.len()),
            spread(&reached, 0),
            spread(&last, 3),
        ]);
        curves.push((
            name.to_string(),
            descents.into_iter().map(|d| d.curve).collect(),
        ));
    }
    r.table(
        &[
            "activation",
            "reached",
            "steps to the target",
            &format!("loss after {steps} steps"),
        ],
        &rows,
    );
    let chart = chart_of(
        "training loss (mean of the last 50 steps)",
        "step",
        "cross-entropy",
        &curves,
    );
    r.charts("1-activations.png", &[chart.log_y(true).size(800, 440)])
}

// ---------------------------------------------------------------------------------------
// 2. Batch normalization

/// A climb to a test accuracy: the step at which it was first reached (evaluated every
/// `every` steps), the accuracy at each evaluation, and whether a loss was not finite.
struct Climb {
    reached: Option<usize>,
    curve: Curve,
    diverged: bool,
}

fn climb<N: Digits>(
    seed: u64,
    lr: f32,
    (train, test): (&Dataset, &Dataset),
    (steps, every): (usize, usize),
    target: f64,
) -> striate::Result<Climb> {
    let mut net = N::init(seed);
    let mut trainer = Trainer::new(&mut net, Sgd::new(lr).momentum(0.9));
    let (mut reached, mut curve, mut diverged) = (None, Vec::new(), false);
    train_steps(
        &mut trainer,
        train,
        32,
        steps,
        seed,
        |step, stats, trainer| {
            diverged |= !stats.loss.is_finite();
            if step % every == 0 {
                let acc = accuracy(trainer.net(), test)?;
                curve.push((step as f64, acc));
                if reached.is_none() && acc >= target {
                    reached = Some(step);
                }
            }
            Ok(())
        },
    )?;
    Ok(Climb {
        reached,
        curve,
        diverged,
    })
}

/// Claim 2: batch normalization reaches an accuracy in fewer steps, and tolerates a higher
/// learning rate.
pub fn batch_norm(s: &Settings, mnist: &Mnist, r: &mut Report) -> striate::Result<()> {
    let data = (&mnist.train, &mnist.test);
    let (steps, every) = s.pick((60, 20), (750, 50));
    let target = s.pick(50.0, 96.0);
    let rates = [0.02f32, 0.1, 0.2];
    r.section(
        &format!("2. Batch normalization: steps to {target} % test accuracy"),
        &[
            "network: SmallConv (conv 3x3 8, relu, max pool, conv 3x3 16, relu, max pool, linear 10), and SmallConvBn, the same with batch_norm after each convolution".into(),
            format!("SGD with momentum 0.9, learning rates {}, batches of 32 from all {} training digits", rates.map(|r| r.to_string()).join(", "), mnist.train.len()),
            format!("measured: the first step at which the accuracy on the {} test digits, evaluated every {every} steps, is at least {target} %, within {steps} steps", mnist.test.len()),
            s.seed_line(),
        ],
    );
    type Run = fn(u64, f32, (&Dataset, &Dataset), (usize, usize), f64) -> striate::Result<Climb>;
    let (mut rows, mut curves) = (Vec::new(), Vec::new());
    for lr in rates {
        let runs: [(&str, Run); 2] = [
            ("without", climb::<SmallConv>),
            ("with batch norm", climb::<SmallConvBn>),
        ];
        for (name, run) in runs {
            let climbs = s
                .seeds()
                .map(|seed| run(seed, lr, data, (steps, every), target))
                .collect::<striate::Result<Vec<_>>>()?;
            let reached: Vec<f64> = climbs
                .iter()
                .filter_map(|c| c.reached)
                .map(|n| n as f64)
                .collect();
            let last: Vec<f64> = climbs
                .iter()
                .filter_map(|c| c.curve.last())
                .map(|p| p.1)
                .collect();
            rows.push(vec![
                lr.to_string(),
                name.to_string(),
                count(reached.len(), climbs.len()),
                spread(&reached, 0),
                spread(&last, 2),
                count(climbs.iter().filter(|c| c.diverged).count(), climbs.len()),
            ]);
            curves.push((
                format!("{name}, lr {lr}"),
                climbs.into_iter().map(|c| c.curve).collect(),
            ));
        }
    }
    r.table(
        &[
            "learning rate",
            "batch norm",
            "reached",
            "steps to the target",
            &format!("test accuracy (%) after {steps} steps"),
            "non-finite loss",
        ],
        &rows,
    );
    let chart = chart_of("test accuracy", "step", "%", &curves).size(800, 440);
    r.charts("2-batch-norm.png", &[chart])
}

// ---------------------------------------------------------------------------------------
// 3. Dropout

/// Claim 3: dropout narrows the gap between training and test accuracy.
pub fn dropout(s: &Settings, mnist: &Mnist, r: &mut Report) -> striate::Result<()> {
    let small = mnist.train.take(s.small_train());
    let epochs = s.pick(3, 100);
    r.section(
        "3. Dropout: the gap between training and test accuracy",
        &[
            "network: WideMlp (784-256-256-10, ReLU) and WideMlpDropout, the same with dropout(0.5) after each hidden layer".into(),
            format!("training set: the first {} training digits; {} of SGD, learning rate 0.05, momentum 0.9, batches of 32", small.len(), epochs_text(epochs)),
            format!("measured after the last epoch, in evaluation mode: accuracy on that training set and on the {} test digits; the gap is their difference", mnist.test.len()),
            s.seed_line(),
        ],
    );
    let (mut rows, mut test_curves, mut train_curves) = (Vec::new(), Vec::new(), Vec::new());
    for with_dropout in [false, true] {
        let (mut train_acc, mut test_acc, mut tests, mut trains) = (vec![], vec![], vec![], vec![]);
        for seed in s.seeds() {
            let fit = Fit::epochs(epochs).validation(&mnist.test).progress(false);
            let (history, train, test) = if with_dropout {
                fit_and_score::<WideMlpDropout>(seed, &small, &mnist.test, fit)?
            } else {
                fit_and_score::<WideMlp>(seed, &small, &mnist.test, fit)?
            };
            train_acc.push(train);
            test_acc.push(test);
            tests.push(validation_curve(&history));
            trains.push(training_curve(&history));
        }
        let gap: Vec<f64> = train_acc
            .iter()
            .zip(&test_acc)
            .map(|(a, b)| a - b)
            .collect();
        let name = if with_dropout { "dropout 0.5" } else { "none" };
        rows.push(vec![
            name.to_string(),
            spread(&train_acc, 2),
            spread(&test_acc, 2),
            spread(&gap, 2),
        ]);
        test_curves.push((name.to_string(), tests));
        train_curves.push((name.to_string(), trains));
    }
    r.table(
        &[
            "dropout",
            "training accuracy (%)",
            "test accuracy (%)",
            "gap (points)",
        ],
        &rows,
    );
    r.charts(
        "3-dropout.png",
        &[
            chart_of(
                "accuracy on the training batches, while training",
                "epoch",
                "%",
                &train_curves,
            ),
            chart_of("test accuracy", "epoch", "%", &test_curves),
        ],
    )
}

/// Trains a fresh `N` with SGD (0.05, momentum 0.9); the history and the accuracies (%) on
/// `train` and `test` after it.
fn fit_and_score<N: Digits>(
    seed: u64,
    train: &Dataset,
    test: &Dataset,
    fit: Fit<'_>,
) -> striate::Result<(striate::train::History, f64, f64)> {
    let mut net = N::init(seed);
    let mut trainer = Trainer::new(&mut net, Sgd::new(0.05).momentum(0.9)).shuffle_seed(seed);
    let history = trainer.fit(train, fit)?;
    Ok((history, accuracy(&net, train)?, accuracy(&net, test)?))
}

// ---------------------------------------------------------------------------------------
// 4. Augmentation

/// Makes one augmentation step.
type MakeStep = fn() -> striate::Result<Box<dyn Augment>>;

/// The augmentations compared, each at striate's defaults but for the flip (whose default
/// probability, 0.5, is spelled out), all of them in the order listed, and all but the flip.
fn augmentations() -> Vec<(&'static str, Vec<MakeStep>)> {
    let each: [(&str, MakeStep); 7] = [
        ("translate ±2 px", || Ok(Box::new(Translate::default()))),
        ("rotate ±15°", || Ok(Box::new(Rotate::default()))),
        ("scale 0.9–1.1", || Ok(Box::new(Zoom::default()))),
        ("flip horizontally, p 0.5", || {
            Ok(Box::new(Flip::horizontal(0.5)?))
        }),
        ("elastic α 34, σ 4", || Ok(Box::new(Elastic::default()))),
        ("intensity (defaults)", || {
            Ok(Box::new(Intensity::default()))
        }),
        ("crop, pad 2", || Ok(Box::new(Crop::default()))),
    ];
    let mut out = vec![("none", Vec::new())];
    out.extend(each.iter().map(|&(name, make)| (name, vec![make])));
    out.push(("all seven", each.iter().map(|&(_, make)| make).collect()));
    let no_flip = each.iter().filter(|(name, _)| !name.starts_with("flip"));
    out.push(("all but the flip", no_flip.map(|&(_, make)| make).collect()));
    out
}

/// Claim 4: augmentation raises the test accuracy of a network trained on few images.
pub fn augmentation(s: &Settings, mnist: &Mnist, r: &mut Report) -> striate::Result<()> {
    let small = mnist.train.take(s.small_train());
    let epochs = s.pick(2, 20);
    let watched = mnist.test.take(500);
    r.section(
        "4. Data augmentation: test accuracy on a small training set",
        &[
            "network: SmallConv".into(),
            format!("training set: the first {} training digits, each batch augmented (seeded by the run's seed); {} of SGD, learning rate 0.05, momentum 0.9, batches of 32", small.len(), epochs_text(epochs)),
            format!("measured: accuracy on the {} test digits after the last epoch, and its change from no augmentation (the mean over seeds of the paired differences); the curves are the accuracy on the first {} test digits after each epoch", mnist.test.len(), watched.len()),
            "augmentations at striate's defaults; `all seven` applies them in the order listed, `all but the flip` the other six".into(),
            s.seed_line(),
        ],
    );
    let mut baseline: Vec<f64> = Vec::new();
    let (mut rows, mut curves) = (Vec::new(), Vec::new());
    for (name, steps) in augmentations() {
        let (mut accs, mut runs) = (Vec::new(), Vec::new());
        for seed in s.seeds() {
            let augmentation = steps.iter().try_fold(Augmentation::new(seed), |a, make| {
                Ok::<_, Error>(a.then(make()?))
            })?;
            let mut net = SmallConv::init(seed);
            let mut trainer =
                Trainer::new(&mut net, Sgd::new(0.05).momentum(0.9)).shuffle_seed(seed);
            if !steps.is_empty() {
                trainer = trainer.augment(augmentation);
            }
            let fit = Fit::epochs(epochs).validation(&watched).progress(false);
            runs.push(validation_curve(&trainer.fit(&small, fit)?));
            accs.push(accuracy(&net, &mnist.test)?);
        }
        if steps.is_empty() {
            baseline = accs.clone();
        }
        let change: Vec<f64> = accs.iter().zip(&baseline).map(|(a, b)| a - b).collect();
        rows.push(vec![name.to_string(), spread(&accs, 2), spread(&change, 2)]);
        if matches!(name, "none" | "all seven" | "all but the flip")
            || name.starts_with("elastic")
            || name.starts_with("flip")
        {
            curves.push((name.to_string(), runs));
        }
    }
    r.table(
        &["augmentation", "test accuracy (%)", "change (points)"],
        &rows,
    );
    r.charts(
        "4-augmentation.png",
        &[chart_of("test accuracy", "epoch", "%", &curves).size(800, 440)],
    )
}

// ---------------------------------------------------------------------------------------
// 5. Learning rate

/// Claim 5: too high a rate diverges (and is caught); a decaying rate ends better than a
/// constant one.
pub fn learning_rate(s: &Settings, mnist: &Mnist, r: &mut Report) -> striate::Result<()> {
    let train = mnist.train.take(s.pick(1_000, mnist.train.len()));
    let epochs = s.pick(1, 2);
    let rates = [0.01f32, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0];
    r.section(
        "5a. Learning rate: which rates diverge",
        &[
            "network: ReluMlp (784-64-64-64-10)".into(),
            format!("SGD with momentum 0.9 at each rate, {} in batches of 32 on {} training digits", epochs_text(epochs), train.len()),
            "diverged: the trainer's divergence guard refused a step (a NaN or infinite loss or gradient); training stops there, with the weights of the step before".into(),
            format!("of the runs that did not diverge: how many ended no better than chance (a last-epoch training loss of at least ln 10 = 2.303), that loss, and the accuracy on the {} test digits", mnist.test.len()),
            s.seed_line(),
        ],
    );
    // The loss of giving every class the probability 1/10.
    let chance = 10f64.ln();
    let mut rows = Vec::new();
    for lr in rates {
        let (mut caught, mut accs, mut losses) = (Vec::new(), Vec::new(), Vec::new());
        for seed in s.seeds() {
            let mut net = ReluMlp::init(seed);
            let mut trainer = Trainer::new(&mut net, Sgd::new(lr).momentum(0.9)).shuffle_seed(seed);
            match fit_watching(&mut trainer, &train, Fit::epochs(epochs).progress(false))? {
                Outcome::Diverged { epoch, what } => caught.push(format!("epoch {epoch} ({what})")),
                Outcome::Trained(history) => {
                    losses.push(history.last().map_or(f64::NAN, |e| f64::from(e.train.loss)));
                    accs.push(accuracy(&net, &mnist.test)?);
                }
            }
        }
        rows.push(vec![
            lr.to_string(),
            count(caught.len(), s.seeds().count()),
            if caught.is_empty() {
                "–".into()
            } else {
                caught.join(", ")
            },
            count(
                losses.iter().filter(|&&l| l >= chance).count(),
                losses.len(),
            ),
            spread(&losses, 3),
            spread(&accs, 2),
        ]);
    }
    r.table(
        &[
            "learning rate",
            "diverged",
            "caught in",
            "no better than chance",
            "training loss, last epoch",
            "test accuracy (%)",
        ],
        &rows,
    );

    let epochs = s.pick(2, 6);
    let lr = 0.05;
    let schedules = [
        ("constant", LrSchedule::Constant),
        (
            "halved every 2 epochs",
            LrSchedule::Step {
                step_size: 2,
                gamma: 0.5,
            },
        ),
        ("cosine to 0", LrSchedule::cosine(epochs, 0.0)),
    ];
    r.section(
        "5b. Learning rate: decaying against constant",
        &[
            "network: SmallConv".into(),
            format!("SGD with momentum 0.9 from learning rate {lr}, {} in batches of 32 on {} training digits", epochs_text(epochs), train.len()),
            format!("measured: accuracy on the {} test digits and mean training loss of the last epoch", mnist.test.len()),
            s.seed_line(),
        ],
    );
    let (mut rows, mut curves) = (Vec::new(), Vec::new());
    for (name, schedule) in schedules {
        let (mut accs, mut losses, mut runs) = (Vec::new(), Vec::new(), Vec::new());
        for seed in s.seeds() {
            let mut net = SmallConv::init(seed);
            let mut trainer = Trainer::new(&mut net, Sgd::new(lr).momentum(0.9))
                .schedule(schedule.clone())
                .shuffle_seed(seed);
            let fit = Fit::epochs(epochs).validation(&mnist.test).progress(false);
            match fit_watching(&mut trainer, &train, fit)? {
                Outcome::Trained(history) => {
                    losses.push(history.last().map_or(f64::NAN, |e| f64::from(e.train.loss)));
                    runs.push(validation_curve(&history));
                }
                Outcome::Diverged { epoch, what } => {
                    r.note(&format!(
                        "{name}, seed {seed}: diverged in epoch {epoch} ({what})"
                    ));
                }
            }
            accs.push(accuracy(&net, &mnist.test)?);
        }
        rows.push(vec![name.to_string(), spread(&accs, 2), spread(&losses, 4)]);
        curves.push((name.to_string(), runs));
    }
    r.table(
        &["schedule", "test accuracy (%)", "training loss, last epoch"],
        &rows,
    );
    r.charts(
        "5-learning-rate.png",
        &[chart_of("test accuracy", "epoch", "%", &curves).size(800, 440)],
    )
}

// ---------------------------------------------------------------------------------------
// 6. Batch size

/// Claim 6: at a matched number of epochs, small batches reach a higher accuracy and large
/// batches take less time. Measured twice: at one learning rate for every batch size, and at
/// a rate proportional to the batch (the linear scaling rule of Goyal et al., 2017).
pub fn batch_size(s: &Settings, mnist: &Mnist, r: &mut Report) -> striate::Result<()> {
    let train = mnist.train.take(s.pick(500, mnist.train.len()));
    let epochs = s.pick(1, 3);
    let lr = 0.01;
    type Rate = fn(usize) -> f32;
    let rules: [(&str, Rate); 2] = [
        ("the same", |_| 0.01),
        ("0.01 · batch / 32", |batch| 0.01 * batch as f32 / 32.0),
    ];
    r.section(
        "6. Mini-batch size: accuracy and time at a matched number of epochs",
        &[
            "network: SmallConv".into(),
            format!("SGD with momentum 0.9, {} on {} training digits, {} thread(s)", epochs_text(epochs), train.len(), striate::threads()),
            format!("learning rate: {lr} at every batch size, and then {lr} · batch / 32 (the linear scaling rule: the same rate at batch 32)"),
            format!("measured: accuracy on the {} test digits after the last epoch, and the seconds spent in training steps (evaluation excluded)", mnist.test.len()),
            s.seed_line(),
        ],
    );
    let (mut rows, mut charts) = (Vec::new(), Vec::new());
    for (rule, rate) in rules {
        let mut curves = Vec::new();
        for batch in [1, 8, 32, 128, 512] {
            let (mut accs, mut seconds, mut runs) = (Vec::new(), Vec::new(), Vec::new());
            for seed in s.seeds() {
                let mut net = SmallConv::init(seed);
                let opt = Sgd::new(rate(batch)).momentum(0.9);
                let mut trainer = Trainer::new(&mut net, opt).shuffle_seed(seed);
                let fit = Fit::epochs(epochs)
                    .batch(batch)
                    .validation(&mnist.test)
                    .progress(false);
                let history = trainer.fit(&train, fit)?;
                seconds.push(history.epochs().iter().map(|e| e.train.seconds).sum());
                runs.push(validation_curve(&history));
                accs.push(accuracy(&net, &mnist.test)?);
            }
            let steps = epochs * train.len().div_ceil(batch);
            rows.push(vec![
                batch.to_string(),
                rate(batch).to_string(),
                steps.to_string(),
                spread(&accs, 2),
                spread(&seconds, 2),
            ]);
            curves.push((format!("batch {batch}"), runs));
        }
        let title = format!("test accuracy, learning rate {rule}");
        charts.push(chart_of(&title, "epoch", "%", &curves));
    }
    r.table(
        &[
            "batch",
            "learning rate",
            "steps",
            "test accuracy (%)",
            "training seconds",
        ],
        &rows,
    );
    r.charts("6-batch-size.png", &charts)
}
