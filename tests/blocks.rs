//! Blocks and nested networks through the public API: the graph in `LAYERS`, the summary,
//! receptive fields through a nested network, moving a body between networks, and tapes that
//! belong to one network only.

use striate::prelude::*;
use striate::{Error, Network};

network! {
    /// LeNet-5's first stage on its own.
    pub struct Features {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2),
        relu,
        max_pool(2),
    }
}

network! {
    /// LeNet-5's body as a nested network, then its second stage.
    pub struct Nested {
        input: [1, 28, 28],
        features: Features -> [6, 14, 14],
        conv2: conv2d(16, kernel = 5),
        relu,
        max_pool(2),
        flatten,
        fc: linear(10),
    }
}

network! {
    /// The same network written out flat.
    pub struct Flat {
        input: [1, 28, 28],
        conv1: conv2d(6, kernel = 5, pad = 2),
        relu,
        max_pool(2),
        conv2: conv2d(16, kernel = 5),
        relu,
        max_pool(2),
        flatten,
        fc: linear(10),
    }
}

network! {
    /// A residual block with a projection shortcut; its downsampling is rounded down.
    pub struct Res {
        input: [2, 8, 8],
        stem: conv2d(4, kernel = 3, pad = 1),
        block: residual(shortcut = { conv: conv2d(8, kernel = 1, stride = 2) }) {
            conv1: conv2d(8, kernel = 3, stride = 2, pad = 1),
            relu,
            conv2: conv2d(8, kernel = 3, pad = 1),
        },
        relu,
        avg_pool(4),
        flatten,
        fc: linear(3),
    }
}

network! {
    /// Same layout as `Twin`: one linear layer.
    pub struct One {
        input: [4],
        fc: linear(2),
    }
}

network! {
    /// Same layout as `One`.
    pub struct Twin {
        input: [4],
        fc: linear(2),
    }
}

#[test]
fn layers_describe_the_graph() {
    // stem, block.conv1, relu, block.conv2, block.shortcut.conv, block (add), relu, ...
    let names: Vec<&str> = Res::LAYERS.iter().map(|l| l.name).collect();
    assert_eq!(
        names[..6],
        [
            "stem",
            "block.conv1",
            "",
            "block.conv2",
            "block.shortcut.conv",
            "block"
        ]
    );
    let add = &Res::LAYERS[5];
    assert_eq!((add.kind, add.declaration), ("add", "body + shortcut"));
    // The join reads the body's output (value 4) and the shortcut's (value 5).
    assert_eq!(add.inputs, [4, 5]);
    // The shortcut reads the block's input, the stem's output (value 1).
    assert_eq!(Res::LAYERS[4].inputs, [1]);
    assert_eq!(Res::LAYERS[1].depth, 1);
    assert_eq!(add.depth, 0);
    assert_eq!(add.output, [8, 4, 4]);
    // The largest receptive field over both paths: the body's 3x3 stride-2 then 3x3.
    assert_eq!(add.receptive_field, [3 + 2 + 4, 3 + 2 + 4]);
    assert!(Res::LAYERS[1].note.contains("rounded down"));
    let text = Res::summary().to_string();
    assert!(text.contains("\n  block.conv1: conv2d("), "{text}");
    assert!(text.contains("\nblock: add(body + shortcut)"), "{text}");
    assert!(
        text.contains("notes:\n  block.conv1: rounded down"),
        "{text}"
    );
}

#[test]
fn a_nested_network_counts_as_its_layers() {
    assert_eq!(Nested::NUM_PARAMS, Flat::NUM_PARAMS);
    let names: Vec<&str> = Nested::PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "features.conv1.weight",
            "features.conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "fc.weight",
            "fc.bias"
        ]
    );
    let offsets: Vec<usize> = Nested::PARAMS.iter().map(|p| p.offset).collect();
    let flat: Vec<usize> = Flat::PARAMS.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, flat);
    // Receptive fields after the nested network are those of the flat network.
    assert_eq!(
        Nested::LAYERS[0].receptive_field,
        Flat::LAYERS[2].receptive_field
    );
    assert_eq!(
        Nested::LAYERS[3].receptive_field,
        Flat::LAYERS[5].receptive_field
    );
    assert_eq!(Nested::LAYERS[0].macs, Flat::LAYERS[0].macs);
    assert_eq!(Nested::LAYERS[0].params, 156);
    // And it computes what the flat network computes.
    let mut nested = Nested::init(3);
    let mut flat = Flat::init(3);
    let copy = nested.params().as_slice().to_vec();
    flat.params_mut().as_mut_slice().copy_from_slice(&copy);
    let x = Array4::from_shape_fn((3, 1, 28, 28), |(n, _, h, w)| {
        ((n * 7 + h * 3 + w) % 11) as f32 / 11.0
    });
    assert_eq!(
        nested.forward(x.view()).unwrap(),
        flat.forward(x.view()).unwrap()
    );
    let (mut t1, mut t2) = (Tape::new(), Tape::new());
    let y = nested.forward_train(x.view(), &mut t1).unwrap().to_owned();
    flat.forward_train(x.view(), &mut t2).unwrap();
    let (mut g1, mut g2) = (
        nested.gradients().with_input(),
        flat.gradients().with_input(),
    );
    nested.backward(&mut t1, y.view(), &mut g1).unwrap();
    flat.backward(&mut t2, y.view(), &mut g2).unwrap();
    assert_eq!(g1.params().as_slice(), g2.params().as_slice());
    assert_eq!(g1.input(), g2.input());
}

#[test]
fn a_body_moves_between_networks() {
    let body = Features::init(11);
    let mut net = Nested::init(12);
    net.set_part("features", &body).unwrap();
    assert_eq!(
        net.params().get("features.conv1.weight").unwrap(),
        body.params().get("conv1.weight").unwrap()
    );
    let back: Features = net.part("features").unwrap();
    assert_eq!(back.params().as_slice(), body.params().as_slice());
    // A wrong prefix names what is missing and changes nothing.
    let before = net.params().as_slice().to_vec();
    let err = net.set_part("body", &body).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownParameter { name, .. } if name == "body.conv1.weight"),
        "{err}"
    );
    assert_eq!(net.params().as_slice(), before);
}

#[test]
fn a_tape_belongs_to_one_network() {
    let mut one = One::init(0);
    let twin = Twin::init(0);
    let x = Array2::<f32>::ones((2, 4));
    let mut tape = Tape::new();
    one.forward_train(x.view(), &mut tape).unwrap();
    let d = Array2::<f32>::ones((2, 2));
    let mut grads = twin.gradients();
    let err = twin.backward(&mut tape, d.view(), &mut grads).unwrap_err();
    assert!(matches!(err, Error::Tape(_)), "{err}");
    assert!(grads.params().as_slice().iter().all(|v| *v == 0.0));
    // Its own network's backward pass is fine.
    let mut grads = one.gradients();
    one.backward(&mut tape, d.view(), &mut grads).unwrap();
}

#[test]
fn a_chain_needs_two_gradient_buffers() {
    assert_eq!(<Flat as Network>::GRADS.iter().max(), Some(&1));
    // The residual block holds its input's gradient across the block: one more.
    assert_eq!(<Res as Network>::GRADS.iter().max(), Some(&2));
}
