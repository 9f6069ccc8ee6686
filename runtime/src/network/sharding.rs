//! Whole-network data parallelism: a batch split into one shard per thread, each running the
//! generated forward and backward pass on a tape of its own inside the caller's tape.

use ndarray::ArrayViewD;
use rand::{RngCore, SeedableRng};

use super::{check_input, Gradients, Network};
use crate::ops::parallel::{self, SharedMut};
use crate::tables::{NetRng, Pass};
use crate::tape::Tape;
use crate::Result;

/// Samples per thread below which a batch is not split.
const MIN_SHARD: usize = 4;

/// How many shards (one per thread) a pass over `n` samples is split into: whole-network data
/// parallelism, which keeps both cores busy through the many small layers of a network like
/// LeNet-5. Training a network with batch norm is not split, as its statistics are over the
/// whole batch.
fn shard_count<N: Network>(n: usize, train: bool) -> usize {
    let threads = parallel::threads();
    if threads <= 1 || (train && !N::BUFFERS.is_empty()) {
        return 1;
    }
    (n / MIN_SHARD).clamp(1, threads)
}

/// Checks the input and runs the generated forward pass on the tape, or on one shard tape per
/// thread; returns the batch size.
pub(super) fn forward_pass<N: Network>(
    params: &[f32],
    mut pass: Pass<'_>,
    tape: &mut Tape,
    x: ArrayViewD<'_, f32>,
    train: bool,
) -> Result<usize> {
    let n = check_input::<N>(&x, train)?;
    let shards = shard_count::<N>(n, train);
    if shards == 1 {
        tape.prepare::<N>(n, train);
        copy_into(tape.input_mut(), &x);
        N::raw_forward(params, pass, tape);
        return Ok(n);
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout is contiguous");
    let per_in: usize = N::INPUT_SHAPE.iter().product();
    let per_out: usize = N::OUTPUT_SHAPE.iter().product();
    let parts = tape.prepare_shards::<N>(n, train, shards);
    let eval_buffers: &[f32] = match &mut pass {
        Pass::Eval { buffers } => buffers,
        Pass::Train { rng, .. } => {
            // Each shard draws its dropout masks from its own generator, seeded from the
            // network's, so a step depends only on the seed and the thread count.
            for r in parts.rngs.iter_mut() {
                *r = NetRng::seed_from_u64(rng.next_u64());
            }
            &[]
        }
    };
    let tapes = SharedMut::new(parts.tapes);
    let rngs = SharedMut::new(parts.rngs);
    parallel::run(shards, |s| {
        let samples = parallel::part(n, shards, s);
        // Safety: task `s` alone touches shard tape `s` and generator `s`; `run` returns before
        // either is borrowed again.
        let (t, rng) = unsafe { (&mut tapes.slice(s, 1)[0], &mut rngs.slice(s, 1)[0]) };
        t.prepare::<N>(samples.len(), train);
        t.input_mut()
            .copy_from_slice(&xs[samples.start * per_in..samples.end * per_in]);
        let pass = if train {
            // Only networks without buffers are split in training.
            Pass::Train {
                buffers: &mut [],
                rng,
            }
        } else {
            Pass::Eval {
                buffers: eval_buffers,
            }
        };
        N::raw_forward(params, pass, t);
    });
    let last = N::LAYERS.len();
    for (s, t) in parts.tapes.iter().enumerate() {
        let samples = parallel::part(n, shards, s);
        parts.output[samples.start * per_out..samples.end * per_out]
            .copy_from_slice(t.output(last));
    }
    Ok(n)
}

fn copy_into(dst: &mut [f32], x: &ArrayViewD<'_, f32>) {
    match x.as_slice() {
        Some(src) => dst.copy_from_slice(src),
        None => {
            for (d, s) in dst.iter_mut().zip(x.iter()) {
                *d = *s;
            }
        }
    }
}

/// Runs the generated backward pass of the forward pass recorded on `tape` (of `n` samples),
/// on the tape or on its shard tapes, adding into `grads`; `d_out` is the output gradient, in
/// standard layout.
pub(super) fn backward_pass<N: Network>(
    params: &[f32],
    tape: &mut Tape,
    d_out: &[f32],
    grads: &mut Gradients,
    n: usize,
) {
    let want_input = grads.wants_input();
    if tape.shards() == 1 {
        tape.begin_backward(d_out);
        N::raw_backward(params, grads.params_mut().as_mut_slice(), tape, want_input);
        if want_input {
            grads.add_input::<N>(n, tape.input_grad());
        }
        return;
    }
    // The batch was split over threads: each shard back-propagates its own samples, shard 0
    // into `grads`, the others into buffers of their own, which are then added in order (so
    // the result depends on the thread count only).
    let shards = tape.shards();
    let parts = tape.shard_backward(N::NUM_PARAMS);
    let per_out: usize = N::OUTPUT_SHAPE.iter().product();
    let tapes = SharedMut::new(parts.tapes);
    let extra = SharedMut::new(parts.grads);
    let main = SharedMut::new(grads.params_mut().as_mut_slice());
    parallel::run(shards, |s| {
        let samples = parallel::part(n, shards, s);
        // Safety: task `s` alone touches shard tape `s` and gradient buffer `s` (shard 0:
        // the caller's gradients); `run` returns before any of them is borrowed again.
        let (t, g) = unsafe {
            let t = &mut tapes.slice(s, 1)[0];
            let g: &mut [f32] = if s == 0 {
                main.slice(0, N::NUM_PARAMS)
            } else {
                &mut extra.slice(s - 1, 1)[0]
            };
            (t, g)
        };
        t.begin_backward(&d_out[samples.start * per_out..samples.end * per_out]);
        N::raw_backward(params, g, t, want_input);
    });
    for g in parts.grads.iter() {
        for (a, b) in grads.params_mut().as_mut_slice().iter_mut().zip(g) {
            *a += b;
        }
    }
    if want_input {
        parts.input_grad.clear();
        for t in parts.tapes.iter() {
            parts.input_grad.extend_from_slice(t.input_grad());
        }
        grads.add_input::<N>(n, parts.input_grad);
    }
}
