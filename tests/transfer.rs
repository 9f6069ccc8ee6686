//! Transfer learning: frozen parameters, the backward pass that skips them, frozen batch norm,
//! and training checkpoints of a network with frozen layers. The loads are in partial_load.rs.

use striate::prelude::*;
use striate::Transfer;

#[path = "common/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

#[path = "common/transfer_nets.rs"]
mod nets;
use nets::{images, labels, tensor, Classifier, Small};

#[test]
fn a_frozen_layer_is_bit_identical_after_steps_while_the_others_change() {
    for adam in [false, true] {
        let mut net = Small::init(3);
        assert_eq!(net.freeze("conv").unwrap(), 2);
        net.freeze("fc1.bias").unwrap();
        let before: Vec<Vec<f32>> = Small::PARAMS.iter().map(|p| tensor(&net, p.name)).collect();
        let x = images(8, 1, 6, 0);
        let y = labels(8, 3);
        if adam {
            let mut trainer = Trainer::new(&mut net, Adam::new(0.01));
            for _ in 0..3 {
                trainer.step(x.view(), &y).unwrap();
            }
            // Adam keeps moments for the trainable values only.
            let trainable = Small::NUM_PARAMS - 3 * 9 - 3 - 5;
            let buffers = trainer.optimizer_mut().buffers();
            assert!(
                buffers.iter().all(|(_, b)| b.len() == trainable),
                "{buffers:?}"
            );
        } else {
            let mut trainer = Trainer::new(&mut net, Sgd::new(0.1).momentum(0.9));
            for _ in 0..3 {
                trainer.step(x.view(), &y).unwrap();
            }
        }
        for (p, old) in Small::PARAMS.iter().zip(&before) {
            let now = tensor(&net, p.name);
            let frozen = matches!(p.name, "conv.weight" | "conv.bias" | "fc1.bias");
            let same = now.iter().zip(old).all(|(a, b)| a.to_bits() == b.to_bits());
            assert_eq!(same, frozen, "{} (adam: {adam})", p.name);
        }
        assert_eq!(net.frozen_names(), ["conv.weight", "conv.bias", "fc1.bias"]);
    }
}

/// Gradients with a frozen body: the body's weight gradients are skipped (counted on the tape)
/// and 0, and the head's are bit-identical to those of the network with nothing frozen.
#[test]
fn a_frozen_body_skips_its_weight_gradients() {
    let x = images(3, 1, 28, 1);
    let d_out = Array2::<f32>::from_shape_fn((3, 5), |(i, j)| (i as f32 - j as f32) / 7.0);
    let run = |net: &mut Classifier| {
        let mut tape = Tape::new();
        net.forward_train(x.view(), &mut tape).unwrap();
        let mut grads = net.gradients();
        net.backward(&mut tape, d_out.view(), &mut grads).unwrap();
        (grads, tape.weight_gradients())
    };
    let mut net = Classifier::init(5);
    let (all, counts) = run(&mut net);
    assert_eq!((counts.computed, counts.skipped), (3, 0));
    net.freeze("features").unwrap();
    let (head_only, counts) = run(&mut net);
    assert_eq!((counts.computed, counts.skipped), (1, 2));
    for p in Classifier::PARAMS {
        let (a, b) = (all.get(p.name).unwrap(), head_only.get(p.name).unwrap());
        if p.name.starts_with("features.") {
            assert!(b.iter().all(|&v| v == 0.0), "{}", p.name);
            assert!(a.iter().any(|&v| v != 0.0), "{}", p.name);
        } else {
            assert_eq!(a, b, "{}", p.name);
        }
    }

    // The bottom layer frozen: only it is skipped; the second still gets its gradient through
    // the first's output, exactly as before.
    net.unfreeze_all();
    net.freeze_first(1).unwrap();
    assert_eq!(
        net.frozen_names(),
        ["features.conv1.weight", "features.conv1.bias"]
    );
    let (bottom, counts) = run(&mut net);
    assert_eq!((counts.computed, counts.skipped), (2, 1));
    assert_eq!(
        bottom.get("features.conv2.weight"),
        all.get("features.conv2.weight")
    );

    // Asking for the input gradient runs the whole pass, but the frozen layers compute their
    // input gradients alone, and their weight gradients stay 0.
    net.freeze("features").unwrap();
    let mut tape = Tape::new();
    net.forward_train(x.view(), &mut tape).unwrap();
    let mut grads = net.gradients().with_input();
    net.backward(&mut tape, d_out.view(), &mut grads).unwrap();
    let counts = tape.weight_gradients();
    assert_eq!((counts.computed, counts.skipped), (1, 2));
    assert!(grads
        .get("features.conv1.weight")
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
    let mut unfrozen = Classifier::init(5);
    let mut tape = Tape::new();
    unfrozen.forward_train(x.view(), &mut tape).unwrap();
    let mut want = unfrozen.gradients().with_input();
    unfrozen
        .backward(&mut tape, d_out.view(), &mut want)
        .unwrap();
    assert_eq!(grads.input(), want.input());
}

/// A frozen layer above one that learns passes its gradient on without computing its own
/// weight gradient: the one below gets exactly the gradient it gets with nothing frozen.
#[test]
fn a_frozen_layer_above_a_learning_one_passes_the_gradient_on() {
    let x = images(4, 1, 6, 2);
    let d_out = Array2::<f32>::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f32 / 5.0 - 1.0);
    let grads_of = |net: &mut Small| {
        let mut tape = Tape::new();
        net.forward_train(x.view(), &mut tape).unwrap();
        let mut g = net.gradients();
        net.backward(&mut tape, d_out.view(), &mut g).unwrap();
        (g, tape.weight_gradients())
    };
    let mut net = Small::init(1);
    let (all, _) = grads_of(&mut net.clone());
    net.freeze("fc2").unwrap();
    let (g, counts) = grads_of(&mut net);
    assert_eq!((counts.computed, counts.skipped), (3, 1));
    assert!(g.get("fc2.weight").unwrap().iter().all(|&v| v == 0.0));
    assert_eq!(g.get("conv.weight"), all.get("conv.weight"));
    assert_eq!(g.get("fc1.weight"), all.get("fc1.weight"));
}

#[test]
fn unknown_names_list_the_closest() {
    let mut net = Classifier::init(0);
    let err = net.freeze("featurs").unwrap_err();
    let Error::UnknownName {
        network,
        name,
        closest,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((*network, name.as_str()), ("Classifier", "featurs"));
    assert_eq!(closest[0], "features");
    assert_eq!(
        err.to_string(),
        format!(
            "Classifier has no layer or parameter `featurs`; the closest names are: {}",
            closest.join(", ")
        )
    );
    assert!(net.freeze("").is_err());
    assert!(net.frozen().is_empty());
    let err = net.freeze_first(4).unwrap_err();
    assert!(
        err.to_string().contains(
            "Classifier has 3 layers with parameters (features.conv1, features.conv2, fc), not 4"
        ),
        "{err}"
    );
}

/// Frozen batch norm asked to keep its statistics: in a training pass it leaves them as they
/// are and normalises with them, so the gradients of the layers that learn are those of an
/// evaluation-mode pass; by default it trains with batch statistics, as PyTorch does.
#[test]
fn frozen_batch_norm_can_keep_its_running_statistics() {
    let x = images(5, 1, 6, 4);
    let d_out = Array2::<f32>::from_shape_fn((5, 3), |(i, j)| (i + 2 * j) as f32 / 9.0 - 0.5);
    let grads_of = |net: &mut Small, mode: Mode| {
        let mut tape = Tape::new();
        net.forward_tape(x.view(), &mut tape, mode).unwrap();
        let mut g = net.gradients();
        net.backward(&mut tape, d_out.view(), &mut g).unwrap();
        g
    };
    let mut net = Small::init(6);
    net.buffers_mut().as_mut_slice()[..3].copy_from_slice(&[0.1, -0.2, 0.3]);
    let statistics = net.buffers().as_slice().to_vec();
    let eval = grads_of(&mut net.clone(), Mode::Eval);
    net.freeze("bn").unwrap();
    assert!(!net.frozen().batch_norm_eval());
    grads_of(&mut net.clone(), Mode::Train);
    let mut moved = net.clone();
    grads_of(&mut moved, Mode::Train);
    assert_ne!(moved.buffers().as_slice(), statistics);
    assert_eq!(moved.state().num_batches_tracked, 1);

    // Kept fixed, as in PyTorch's evaluation mode: neither the statistics nor the count of
    // batches move.
    net.freeze_batch_norm_statistics(true);
    let g = grads_of(&mut net, Mode::Train);
    assert_eq!(net.buffers().as_slice(), statistics);
    assert_eq!(net.state().num_batches_tracked, 0);
    for name in ["conv.weight", "conv.bias", "fc1.weight", "fc2.weight"] {
        assert_eq!(g.get(name), eval.get(name), "{name}");
    }
    assert!(g.get("bn.weight").unwrap().iter().all(|&v| v == 0.0));
    net.freeze_batch_norm_statistics(false);
    grads_of(&mut net, Mode::Train);
    assert_eq!(net.state().num_batches_tracked, 1);
}

/// A training checkpoint of a network with frozen layers keeps the optimizer's state of the
/// trainable parameters only, and training resumed from it goes on exactly as it would have.
#[test]
fn training_checkpoints_keep_the_state_of_the_trainable_parameters() {
    let dir = TempDir::new("transfer-checkpoint");
    let path = dir.path().join("step.safetensors");
    let x = images(6, 1, 6, 5);
    let y = labels(6, 3);
    let mut net = Small::init(2);
    net.freeze("conv").unwrap();
    net.freeze("fc2.bias").unwrap();
    let mut resumed = net.clone();
    let mut trainer = Trainer::new(&mut net, Adam::new(0.01));
    trainer.step(x.view(), &y).unwrap();
    trainer.save_checkpoint(&path).unwrap();
    trainer.step(x.view(), &y).unwrap();
    drop(trainer);
    let names = striate::io::read_tensor_infos(&path).unwrap().0;
    let optimizer: Vec<&str> = names
        .iter()
        .filter_map(|t| t.name.strip_prefix("optimizer."))
        .collect();
    assert!(optimizer.contains(&"fc1.weight.exp_avg"), "{optimizer:?}");
    assert!(!optimizer
        .iter()
        .any(|n| n.starts_with("conv.") || n.starts_with("fc2.bias")));

    let mut again = Trainer::new(&mut resumed, Adam::new(0.01));
    again.resume(&path).unwrap();
    again.step(x.view(), &y).unwrap();
    drop(again);
    assert_eq!(resumed.params(), net.params());
}
