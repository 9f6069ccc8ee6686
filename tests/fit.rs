//! `Trainer::fit`: the same training as the hand-written epoch loop, epochs numbered on from
//! one call to the next, both data sets checked before anything trains, and a history that
//! says what each epoch measured.

use striate::prelude::*;

network! {
    /// A linear classifier of 4x4 grey images into three classes.
    pub struct Linear {
        input: [1, 4, 4],
        flatten,
        fc: linear(3),
    }
}

/// `n` noisy images of a bright row 0, 1 or 2 (the class), from `seed`.
fn rows(n: usize, seed: u64) -> Dataset {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let images = Array4::from_shape_fn((n, 1, 4, 4), |(i, _, row, _)| {
        let bright = if row == labels[i] { 1.0 } else { 0.0 };
        bright + rng.random_range(-0.3..0.3)
    });
    Dataset::from_arrays(images, labels, 3).unwrap()
}

fn trainer(net: &mut Linear) -> Trainer<'_, Linear> {
    Trainer::new(net, Sgd::new(0.2).momentum(0.9))
        .schedule(LrSchedule::Step {
            step_size: 2,
            gamma: 0.5,
        })
        .shuffle_seed(9)
}

#[test]
fn fit_trains_as_the_epoch_loop_does() {
    let data = rows(60, 1);
    let mut by_fit = Linear::init(3);
    let history = trainer(&mut by_fit)
        .fit(&data, Fit::epochs(4).batch(8).progress(false))
        .unwrap();
    let mut by_hand = Linear::init(3);
    let mut t = trainer(&mut by_hand);
    let reports: Vec<_> = (0..4)
        .map(|e| t.epoch(&data, 8, e, false).unwrap())
        .collect();
    assert_eq!(by_fit.params().as_slice(), by_hand.params().as_slice());
    let fitted: Vec<_> = history.epochs().iter().map(|e| e.train).collect();
    for (a, b) in fitted.iter().zip(&reports) {
        assert_eq!(
            (a.epoch, a.loss, a.accuracy, a.lr),
            (b.epoch, b.loss, b.accuracy, b.lr)
        );
    }
    assert_eq!(fitted.len(), 4);
    assert_eq!(
        history.losses(),
        reports.iter().map(|r| r.loss).collect::<Vec<_>>()
    );
    assert!(history.validation_accuracies().is_empty());
    assert!(history.epochs().iter().all(|e| e.validation.is_none()));
}

#[test]
fn a_second_fit_goes_on_where_the_first_stopped() {
    let data = rows(30, 2);
    let mut once = Linear::init(5);
    trainer(&mut once)
        .fit(&data, Fit::epochs(3).batch(4).progress(false))
        .unwrap();
    let mut twice = Linear::init(5);
    let mut t = trainer(&mut twice);
    t.fit(&data, Fit::epochs(2).batch(4).progress(false))
        .unwrap();
    assert_eq!(t.epochs_done(), 2);
    let more = t
        .fit(&data, Fit::epochs(1).batch(4).progress(false))
        .unwrap();
    assert_eq!(more.last().unwrap().train.epoch, 2);
    // The schedule halves the rate every 2 epochs: epoch 2 runs at half the base rate.
    assert_eq!(more.last().unwrap().train.lr, 0.1);
    assert_eq!(t.epochs_done(), 3);
    assert_eq!(once.params().as_slice(), twice.params().as_slice());
}

#[test]
fn fit_learns_and_reports_validation() {
    let (train, valid) = rows(150, 3).split_stratified(0.2, 4).unwrap();
    let mut net = Linear::init(6);
    let mut t = trainer(&mut net);
    let history = t
        .fit(
            &train,
            Fit::epochs(5).batch(10).validation(&valid).progress(false),
        )
        .unwrap();
    let accuracies = history.validation_accuracies();
    assert_eq!(accuracies.len(), 5);
    let last = history.last().unwrap();
    let eval = last.validation.as_ref().unwrap();
    assert_eq!(eval.total, valid.len());
    assert!(eval.accuracy() > 0.95, "{accuracies:?}");
    assert!(last.seconds >= last.train.seconds);
    // The history's last validation is the trained network's evaluation.
    assert_eq!(evaluate(t.net(), &valid, 10).unwrap(), *eval);
    let net = t.into_inner();
    assert_eq!(net.predict(valid.images()).unwrap().len(), valid.len());
}

#[test]
fn fit_checks_everything_before_the_first_epoch() {
    let train = rows(12, 4);
    let mut net = Linear::init(7);
    let before = net.params().as_slice().to_vec();
    let mut t = trainer(&mut net);

    let wrong_shape = Dataset::new(vec![0.0; 2 * 9], vec![0, 1], [1, 3, 3], 3).unwrap();
    let err = t
        .fit(&train, Fit::epochs(2).validation(&wrong_shape))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "samples of the dataset for Linear: expected shape [1, 4, 4], found [1, 3, 3]"
    );
    let too_many_classes = Dataset::new(vec![0.0; 16], vec![4], [1, 4, 4], 5).unwrap();
    let err = t
        .fit(&train, Fit::epochs(2).validation(&too_many_classes))
        .unwrap_err();
    assert!(
        matches!(err, Error::Shape { ref expected, .. } if *expected == [5]),
        "{err}"
    );
    let err = t.fit(&train, Fit::epochs(2).batch(0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid batch size: must be at least 1, found 0"
    );

    assert_eq!(t.epochs_done(), 0);
    assert!(t.fit(&train, Fit::epochs(0)).unwrap().epochs().is_empty());
    drop(t);
    assert_eq!(net.params().as_slice(), before, "a failed fit trained");
}

#[test]
fn the_trainer_hands_out_its_network_and_optimizer() {
    let data = rows(9, 5);
    let mut net = Linear::init(8);
    let mut t = trainer(&mut net);
    t.fit(&data, Fit::epochs(1).batch(3).progress(false))
        .unwrap();
    assert!(t.optimizer().momentum_buffer().is_some());
    t.optimizer_mut().reset();
    assert!(t.optimizer().momentum_buffer().is_none());
    // Weights loaded through net_mut are the ones the next epoch trains.
    let fresh = Linear::init(8);
    t.net_mut()
        .params_mut()
        .as_mut_slice()
        .copy_from_slice(fresh.params().as_slice());
    assert_eq!(t.net().params().as_slice(), fresh.params().as_slice());
}

/// The trainer runs any optimizer, checks its settings before the first epoch, and clips.
#[test]
fn the_trainer_takes_any_optimizer() {
    let (train, valid) = rows(90, 10).split_stratified(0.2, 3).unwrap();
    let mut net = Linear::init(11);
    let mut t = Trainer::new(&mut net, AdamW::new(0.05)).clip_grad_norm(1.0);
    let history = t
        .fit(
            &train,
            Fit::epochs(4).batch(8).validation(&valid).progress(false),
        )
        .unwrap();
    let accuracy = history
        .last()
        .unwrap()
        .validation
        .as_ref()
        .unwrap()
        .accuracy();
    assert!(accuracy > 0.9, "{:?}", history.validation_accuracies());
    let steps = 4 * train.len().div_ceil(8) as u64;
    assert_eq!(t.optimizer().steps(), steps);
    let state = t.optimizer().state(t.net().params().table()).unwrap();
    assert_eq!(state[0].0, "fc.weight.exp_avg");

    let mut net = Linear::init(11);
    let before = net.params().as_slice().to_vec();
    for (momentum, max_norm, expected) in [(-1.0, 1.0, "momentum"), (0.0, -1.0, "max_norm")] {
        let opt = RmsProp::new(0.01).momentum(momentum);
        let mut t = Trainer::new(&mut net, opt).clip_grad_norm(max_norm);
        match t.fit(&train, Fit::epochs(1).progress(false)) {
            Err(Error::Config { name, .. }) => assert_eq!(name, expected),
            other => panic!("expected a config error for {expected}, found {other:?}"),
        }
    }
    assert_eq!(net.params().as_slice(), before, "a failed fit trained");

    // Clipping to norm 0 zeroes every gradient before the update: plain SGD changes nothing.
    let mut t = Trainer::new(&mut net, Sgd::new(0.5)).clip_grad_norm(0.0);
    t.fit(&train, Fit::epochs(1).progress(false)).unwrap();
    assert_eq!(net.params().as_slice(), before, "clipped to 0, yet trained");
}

/// With a reduce-on-plateau schedule, `fit` feeds the validation loss to it: a rate too small
/// to move the loss by the threshold is a plateau, and falls after `patience` epochs.
#[test]
fn fit_reduces_the_rate_on_a_plateau() {
    use striate::optim::Plateau;
    let (train, valid) = rows(30, 12).split_stratified(0.2, 3).unwrap();
    let mut net = Linear::init(13);
    let plateau = Plateau {
        patience: 1,
        factor: 0.5,
        threshold: 0.5,
        ..Plateau::default()
    };
    let mut t = Trainer::new(&mut net, Sgd::new(1e-4)).schedule(LrSchedule::Plateau(plateau));
    let history = t
        .fit(
            &train,
            Fit::epochs(5).batch(8).validation(&valid).progress(false),
        )
        .unwrap();
    let rates: Vec<f32> = history.epochs().iter().map(|e| e.train.lr).collect();
    // Epoch 0 sets the best; epochs 1 and 2 do not improve by half, so epoch 3 runs at half.
    assert_eq!(rates, [1e-4, 1e-4, 1e-4, 5e-5, 5e-5]);
    let tracker = t.plateau().unwrap();
    assert_eq!((tracker.lr(), tracker.bad_epochs()), (2.5e-5, 0));
    assert_eq!(t.lr_for(5).unwrap(), 2.5e-5);
}

/// A schedule counted in steps sets the rate before every batch: one-cycle over two epochs of
/// three batches rises to the base rate at step 1 and ends at its smallest at step 5.
#[test]
fn a_schedule_can_count_steps() {
    let data = rows(9, 14);
    let schedule = LrSchedule::OneCycle {
        total_steps: 6,
        pct_start: 1.0 / 3.0,
        div_factor: 10.0,
        final_div_factor: 1.0,
    };
    let mut net = Linear::init(15);
    let mut t = Trainer::new(&mut net, Sgd::new(0.1))
        .schedule(schedule.clone())
        .schedule_per_step();
    let history = t
        .fit(&data, Fit::epochs(2).batch(3).progress(false))
        .unwrap();
    let rates: Vec<f32> = history.epochs().iter().map(|e| e.train.lr).collect();
    assert_eq!(rates, [schedule.lr_at(0.1, 0), schedule.lr_at(0.1, 3)]);
    assert_eq!(t.optimizer().lr(), schedule.lr_at(0.1, 5));
    assert!((t.optimizer().lr() - 0.01).abs() < 1e-8);

    // By hand: the same steps at the same rates end with the same weights.
    let mut by_hand = Linear::init(15);
    let mut h = Trainer::new(&mut by_hand, Sgd::new(0.1));
    let mut x = Vec::new();
    let mut y = Vec::new();
    for epoch in 0..2 {
        let order = striate::data::shuffled_indices(data.len(), epoch);
        for (i, chunk) in order.chunks(3).enumerate() {
            h.optimizer_mut()
                .set_lr(schedule.lr_at(0.1, 3 * epoch as usize + i));
            data.gather(chunk, &mut x, &mut y).unwrap();
            let batch = ArrayView4::from_shape((chunk.len(), 1, 4, 4), &x).unwrap();
            h.step(batch, &y).unwrap();
        }
    }
    drop((t, h));
    assert_eq!(net.params().as_slice(), by_hand.params().as_slice());
}

/// A dataset without samples is an error for training and evaluation, not epochs of loss 0 and
/// accuracy 0 (issue 13, item 13); nothing is trained.
#[test]
fn an_empty_dataset_is_an_error() {
    let empty = rows(0, 1);
    assert!(empty.is_empty());
    let mut net = Linear::init(0);
    let before = net.params().as_slice().to_vec();
    let expected = "dataset for Linear (training and evaluation need at least one sample): \
                    the batch is empty";
    let mut t = trainer(&mut net);
    assert_eq!(
        t.epoch(&empty, 8, 0, false).unwrap_err().to_string(),
        expected
    );
    assert_eq!(
        t.fit(&empty, Fit::epochs(2)).unwrap_err().to_string(),
        expected
    );
    let valid = rows(16, 2);
    let fit = Fit::epochs(1).validation(&empty);
    assert_eq!(t.fit(&valid, fit).unwrap_err().to_string(), expected);
    assert_eq!(t.epochs_done(), 0);
    let err = striate::train::evaluate(t.net(), &empty, 8).unwrap_err();
    assert_eq!(err.to_string(), expected);
    assert_eq!(net.params().as_slice(), &before[..]);
}
