//! The divergence guard: an absurd learning rate ends training with `Error::Diverged` naming
//! the step and the rate, and the weights stay those from before the bad step, in memory and
//! in the checkpoints.

use striate::prelude::*;
use striate::train::Divergence;

#[path = "common/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

network! {
    /// LeNet-5, as examples/lenet.rs has it.
    pub struct LittleLeNet {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2), relu, max_pool(2),
        conv2: conv2d(16, kernel = 5), relu, max_pool(2) -> [16, 5, 5],
        flatten,
        fc1: linear(120), relu,
        fc2: linear(84), relu,
        fc3: linear(10),
    }
}

network! {
    /// With batch norm and dropout, whose state the forward pass moves.
    pub struct Normed {
        input: [1, 28, 28],
        conv: conv2d(4, kernel = 4, stride = 3), bn: batch_norm, relu,
        flatten, drop: dropout(0.5),
        fc: linear(10),
    }
}

/// Step by step with a rate of 1e4: the step that diverges is refused, and the parameters
/// are, bit for bit, those from before it, all finite.
#[test]
fn an_absurd_rate_stops_with_the_weights_of_the_last_good_step() {
    let data = Mnist::builtin().train.take(64);
    let mut net = LittleLeNet::init(0);
    let mut t = Trainer::new(&mut net, Sgd::new(1e4));
    let batch = data.images().slice(s![..32, .., .., ..]).to_owned();
    let labels = &data.labels()[..32];
    for i in 0..100u64 {
        let before = t.net().params().as_slice().to_vec();
        match t.step(batch.view(), labels) {
            Ok(stats) => assert!(stats.loss.is_finite()),
            Err(Error::Diverged {
                step,
                epoch,
                lr,
                cause,
            }) => {
                assert_eq!((step, epoch, lr), (i, 0, 1e4));
                assert!(
                    matches!(cause, Divergence::Loss(l) if !l.is_finite()),
                    "{cause:?}"
                );
                assert_eq!(t.steps_done(), i);
                assert_eq!(t.optimizer().steps(), i);
                assert_eq!(t.net().params().as_slice(), &before[..]);
                assert!(before.iter().all(|w| w.is_finite()));
                assert!(
                    i > 0,
                    "the first step cannot diverge from the initial weights"
                );
                return;
            }
            Err(e) => panic!("step {i}: {e}"),
        }
    }
    panic!("a rate of 1e4 did not diverge in 100 steps");
}

/// Through `fit` with a checkpoint after every step: the error names the step and suggests a
/// lower rate, and no checkpoint is of the bad step or later.
#[test]
fn fit_stops_and_writes_no_checkpoint_of_a_bad_step() {
    let data = Mnist::builtin().train.take(256);
    let dir = TempDir::new("diverged");
    let mut net = LittleLeNet::init(0);
    let mut t = Trainer::new(&mut net, Sgd::new(1e4).momentum(0.9));
    let options = Fit::epochs(5)
        .batch(32)
        .progress(false)
        .checkpoints(Checkpoints::new(dir.path()).every_steps(1).keep(100));
    let err = t.fit(&data, options).unwrap_err();
    let Error::Diverged { step, lr, .. } = &err else {
        panic!("expected Diverged, found {err}");
    };
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("training diverged at step {step} (epoch ")),
        "{message}"
    );
    assert!(message.contains("learning rate 1e4"), "{message}");
    assert!(
        message.contains("try a lower learning rate, such as 1e3"),
        "{message}"
    );
    assert_eq!(*lr, 1e4);
    let files = Checkpoints::list(dir.path()).unwrap();
    assert_eq!(files.len() as u64, *step, "one checkpoint per good step");
    assert!(t.net().params().as_slice().iter().all(|w| w.is_finite()));

    // The last checkpoint is the weights of the last good step.
    let mut resumed = LittleLeNet::init(3);
    let mut r = Trainer::new(&mut resumed, Sgd::new(1e4).momentum(0.9));
    r.resume(dir.path()).unwrap();
    assert_eq!(r.steps_done(), *step);
    assert_eq!(r.net().params().as_slice(), t.net().params().as_slice());
}

/// A bound on the gradient norm refuses the very first step, and batch norm's running
/// statistics, its batch count and the dropout generator are put back as they were.
#[test]
fn a_gradient_norm_bound_refuses_the_step_and_undoes_its_forward_pass() {
    use rand::RngCore;
    let data = Mnist::builtin().train.take(16);
    let mut net = Normed::init(0);
    let buffers = net.buffers().as_slice().to_vec();
    let params = net.params().as_slice().to_vec();
    let draw = net.state().rng.clone().next_u64();
    let mut t = Trainer::new(&mut net, Adam::new(0.01)).divergence_grad_norm(1e-6);
    let err = t.step(data.images().view(), data.labels()).unwrap_err();
    match err {
        Error::Diverged {
            step: 0,
            cause: Divergence::GradNorm { norm, bound },
            ..
        } => {
            assert!(norm > 1e-6 && norm.is_finite());
            assert_eq!(bound, 1e-6);
        }
        other => panic!("expected a refused step, found {other}"),
    }
    assert!(err.to_string().contains("above the bound 1e-6"), "{err}");
    assert_eq!(t.net().buffers().as_slice(), &buffers[..]);
    assert_eq!(t.net().params().as_slice(), &params[..]);
    assert_eq!(t.net().state().num_batches_tracked, 0);
    assert_eq!(t.net().state().rng.clone().next_u64(), draw);
    assert_eq!(t.optimizer().steps(), 0);

    // A bound that is not a bound is a setting error before anything runs.
    let mut t = Trainer::new(t.into_inner(), Sgd::new(0.1)).divergence_grad_norm(-1.0);
    let err = t.step(data.images().view(), data.labels()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config {
                name: "max_norm",
                ..
            }
        ),
        "{err}"
    );
}

/// With the guard off, the loss may go NaN, and the optimizer's own check is what stops
/// training: it refuses non-finite gradients (issue 13, item 14) rather than writing them into
/// the weights, as PyTorch would.
#[test]
fn the_guard_can_be_turned_off() {
    let data = Mnist::builtin().train.take(256);
    let mut net = LittleLeNet::init(0);
    let mut t = Trainer::new(&mut net, Sgd::new(1e4).momentum(0.9)).guard_divergence(false);
    let err = t
        .fit(&data, Fit::epochs(3).batch(32).progress(false))
        .unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { what, .. } if what == "SGD gradients"),
        "{err}"
    );
}
