//! An autoencoder's training step against a target array allocates nothing once warm, with
//! the divergence guard on and gradient clipping, for both reconstruction losses. A test binary
//! of its own, so that no other test allocates while this one counts.

use std::sync::atomic::Ordering;

use striate::prelude::*;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::ALLOCATIONS;

network! {
    /// Every new layer kind of a decoder.
    pub struct Ae {
        input: [1, 12, 12],
        enc: conv2d(4, kernel = 3, stride = 2, pad = 1), relu,
        flatten, code: linear(8), relu, wide: linear(36),
        reshape([4, 3, 3]),
        upsample(2, mode = bilinear),
        dec: conv_transpose2d(1, kernel = 3, stride = 2, pad = 1, output_pad = 1),
    }
}

#[test]
fn a_reconstruction_step_allocates_nothing_once_warm() {
    if !counting_alloc::own_kernels("a_reconstruction_step_allocates_nothing_once_warm") {
        return;
    }
    let clean = Array4::from_shape_fn((16, 1, 12, 12), |(n, _, i, j)| {
        ((n + i + j) % 4) as f32 / 3.0
    });
    let noisy = clean.mapv(|v| 1.0 - v);
    let mut net = Ae::init(0);
    let mut t = Trainer::new(&mut net, Adam::new(1e-3))
        .clip_grad_norm(1.0)
        .divergence_grad_norm(1e6);
    for loss in [Loss::Mse, Loss::BceWithLogits] {
        for _ in 0..2 {
            t.step_reconstruct(noisy.view(), clean.view(), loss)
                .unwrap();
        }
        // The counter sees every thread, the test harness's too, which on a loaded machine
        // allocated a few times during one window (4 in 5 steps, once, in a full `cargo
        // test`). A step that allocates would show in every window; the quietest must be 0.
        let quietest = (0..3)
            .map(|_| {
                let before = ALLOCATIONS.load(Ordering::SeqCst);
                for _ in 0..5 {
                    t.step_reconstruct(noisy.view(), clean.view(), loss)
                        .unwrap();
                }
                ALLOCATIONS.load(Ordering::SeqCst) - before
            })
            .min();
        assert_eq!(quietest, Some(0), "{loss:?}");
    }
    assert_eq!(t.steps_done(), 34);
}
