//! Whole-network data parallelism: a batch split into one shard per thread, each running the
//! generated forward and backward pass on a tape of its own inside the caller's tape.
//!
//! In training, batch norm's statistics are over the whole batch: its kernels exchange
//! per-channel sums between the shards (`ops::batch_norm::Exchange`), so the shards wait for
//! each other and must all run at once, each on a thread of its own (`parallel::together`).
//! When the pool cannot promise that, the pass is not split.

use ndarray::ArrayViewD;
use rand::{RngCore, SeedableRng};

use super::{check_input, FrozenView, Gradients, Network};
use crate::ops::parallel::{self, SharedMut};
use crate::tables::{NetRng, Pass};
use crate::tape::Tape;
use crate::Result;

/// Samples per thread below which a batch is not split.
const MIN_SHARD: usize = 4;

/// Parameters above which a network's batch is not split into shards. Each shard beyond the
/// first back-propagates into a gradient buffer of its own, cleared and then added into the
/// caller's on every step, and each streams all the weights through its own kernels: for
/// AlexNet (62 M parameters, 234 MB of them in the fully connected layers) that cost more
/// than the split saved. Such a network runs unsplit, and its kernels split each layer
/// between the threads instead (the convolutions by samples, the large linear layers by
/// outputs). ResNet-20 (272 K) and LeNet-5 (62 K) are far below.
const MAX_SHARDED_PARAMS: usize = 1 << 22;

/// How many shards (one per thread) a pass of `N` over `n` samples is split into:
/// whole-network data parallelism, which keeps both cores busy through the many small layers
/// of a network like LeNet-5.
fn shard_count<N: Network>(n: usize) -> usize {
    let threads = parallel::threads();
    if threads <= 1 || N::NUM_PARAMS > MAX_SHARDED_PARAMS {
        return 1;
    }
    (n / MIN_SHARD).clamp(1, threads)
}

/// True when the shards of a pass wait for each other: in training, batch norm's statistics
/// are over the whole batch, so its kernels exchange per-channel sums between the shards.
fn exchanges<N: Network>(train: bool) -> bool {
    train && !N::BUFFERS.is_empty()
}

/// Values one shard publishes in one batch-norm exchange, at most: its count, then two per
/// channel of the widest layer (each has a running mean of one value per channel).
fn exchange_width<N: Network>() -> usize {
    1 + 2 * N::BUFFERS.iter().map(|b| b.len).max().unwrap_or(0)
}

/// Checks the input (and the lengths, when given) and runs the generated forward pass on the
/// tape, or on one shard tape per thread; returns the batch size.
pub(super) fn forward_pass<N: Network>(
    params: &[f32],
    mut pass: Pass<'_>,
    tape: &mut Tape,
    x: ArrayViewD<'_, f32>,
    train: bool,
    lengths: Option<&[u32]>,
) -> Result<usize> {
    let n = check_input::<N>(&x, train)?;
    if let Some(lengths) = lengths {
        super::check_lengths::<N>(lengths, n)?;
    }
    let mut shards = shard_count::<N>(n);
    // Shards that exchange statistics wait for each other, so they must all run at once. When
    // the pool cannot promise that (it is busy with another call), the batch is not split.
    let together = if shards > 1 && exchanges::<N>(train) {
        let together = parallel::together(shards);
        if together.is_none() {
            shards = 1;
        }
        together
    } else {
        None
    };
    if shards == 1 {
        tape.try_prepare::<N>(n, train)?;
        tape.set_lengths(lengths);
        copy_into(tape.input_mut(), &x);
        N::raw_forward(params, pass, tape);
        return Ok(n);
    }
    let per_out: usize = N::OUTPUT_SHAPE.iter().product();
    let parts = tape.prepare_shards::<N>(n, train, shards)?;
    // Reserved here, where a refusal can be returned: in the tasks below, each shard's
    // `prepare` then finds its buffers sized and allocates nothing.
    for (s, t) in parts.tapes.iter_mut().enumerate() {
        t.try_prepare::<N>(parallel::part(n, shards, s).len(), train)?;
    }
    let (eval_buffers, train_buffers, frozen): (&[f32], &mut [f32], _) = match &mut pass {
        Pass::Eval { buffers } => (buffers, &mut [], FrozenView::NONE),
        Pass::Train {
            buffers,
            rng,
            frozen,
        } => {
            // Each shard draws its dropout masks from its own generator, seeded from the
            // network's, so a step depends only on the seed and the thread count.
            for r in parts.rngs.iter_mut() {
                *r = NetRng::seed_from_u64(rng.next_u64());
            }
            // Every shard's batch norm moves running statistics by the same whole-batch
            // statistics: shard 0 the network's, the others copies that are then dropped.
            for copy in parts.buffers.iter_mut() {
                copy.clear();
                copy.extend_from_slice(buffers);
            }
            (&[], buffers, *frozen)
        }
    };
    if together.is_some() {
        parts.exchange.prepare(shards, exchange_width::<N>());
    }
    let exchange = &*parts.exchange;
    let tapes = SharedMut::new(parts.tapes);
    let rngs = SharedMut::new(parts.rngs);
    let copies = SharedMut::new(parts.buffers);
    let buffers_len = train_buffers.len();
    let own_buffers = SharedMut::new(train_buffers);
    let shard = |s: usize| {
        let samples = parallel::part(n, shards, s);
        // Safety: task `s` alone touches shard tape `s`, generator `s` and running statistics
        // `s` (shard 0: the network's); the parallel call returns before any of them is
        // borrowed again.
        let (t, rng, buffers) = unsafe {
            let buffers: &mut [f32] = if s == 0 {
                own_buffers.slice(0, buffers_len)
            } else {
                &mut copies.slice(s - 1, 1)[0]
            };
            (&mut tapes.slice(s, 1)[0], &mut rngs.slice(s, 1)[0], buffers)
        };
        t.prepare::<N>(samples.len(), train);
        t.set_lengths(lengths.map(|l| &l[samples.clone()]));
        // Copied from the view as it is: a view in another layout (a broadcast input) is
        // never copied whole into a buffer of its own.
        let part = x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(samples.clone()));
        copy_into(t.input_mut(), &part);
        let pass = if train {
            Pass::Train {
                buffers,
                rng,
                frozen,
            }
        } else {
            Pass::Eval {
                buffers: eval_buffers,
            }
        };
        N::raw_forward(params, pass, t);
    };
    match together {
        Some(together) => together.run(|s| exchange.in_shard(s, || shard(s))),
        None => parallel::run(shards, shard),
    }
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
    frozen: FrozenView<'_>,
    tape: &mut Tape,
    d_out: &[f32],
    grads: &mut Gradients,
    n: usize,
) -> Result<()> {
    let want_input = grads.wants_input();
    let input_len = n.saturating_mul(N::INPUT_SHAPE.iter().product());
    grads.reserve_input(input_len)?;
    if tape.shards() == 1 {
        tape.begin_backward(d_out);
        N::raw_backward(
            params,
            grads.params_mut().as_mut_slice(),
            tape,
            want_input,
            frozen,
        );
        if want_input {
            grads.add_input::<N>(n, tape.input_grad());
        }
        return Ok(());
    }
    // The batch was split over threads: each shard back-propagates its own samples, shard 0
    // into `grads`, the others into buffers of their own, which are then added in order (so
    // the result depends on the thread count only).
    let shards = tape.shards();
    let exchanging = exchanges::<N>(tape.is_train());
    let parts = tape.shard_backward::<N>(if want_input { input_len } else { 0 })?;
    let per_out: usize = N::OUTPUT_SHAPE.iter().product();
    if exchanging {
        parts.exchange.prepare(shards, exchange_width::<N>());
    }
    let exchange = &*parts.exchange;
    let tapes = SharedMut::new(parts.tapes);
    let extra = SharedMut::new(parts.grads);
    let main = SharedMut::new(grads.params_mut().as_mut_slice());
    let shard = |s: usize| {
        let samples = parallel::part(n, shards, s);
        // Safety: task `s` alone touches shard tape `s` and gradient buffer `s` (shard 0:
        // the caller's gradients); the parallel call returns before any of them is borrowed
        // again.
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
        N::raw_backward(params, g, t, want_input, frozen);
    };
    if exchanging {
        // The forward pass ran these shards together, so there are threads for all of them
        // (workers are never stopped), and this is no call from inside a task.
        let together = parallel::together_waiting(shards)
            .expect("the forward pass ran its shards together, on as many threads");
        together.run(|s| exchange.in_shard(s, || shard(s)));
    } else {
        parallel::run(shards, shard);
    }
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
    // Every shard runs the same layers: the counts of one are those of the pass.
    let counts = parts.tapes[0].weight_gradients();
    tape.set_weight_gradients(counts);
    Ok(())
}
