//! The two halves of a convolution that a transposed convolution
//! ([`crate::ops::conv_transpose2d`]) runs on their own: the input gradient without the weight
//! gradient (its forward pass), and a forward pass that adds instead of setting (its input
//! gradient). Both are the packed products of [`super::implicit`], split over the batch as
//! [`super::forward`] and [`super::backward`] split it.

use super::{implicit, Conv2dGeom};
use crate::ops::grown;
use crate::ops::isa::Isa;
use crate::ops::packed::Out;
use crate::ops::parallel;

/// `d_x += col2im(wᵀ · d_y_n)` for each sample: [`super::backward`]'s input gradient alone,
/// without reading any input. `scratch` grows on first use only.
///
/// # Panics
/// Unless `d_x` has `n·C·H·W` values, `d_y` `n·O·OH·OW` and `w` `O·C·KH·KW`.
pub(crate) fn input_gradient(
    d_x: &mut [f32],
    d_y: &[f32],
    w: &[f32],
    g: &Conv2dGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    // d_y: (N, O, OH, OW), w: (O, C, KH, KW) -> d_x: (N, C, H, W), accumulated
    let kernel = "conv2d::input_gradient";
    let s = g.shapes();
    s.check_backward_input(kernel, n, d_x, d_y, w);
    let threads = parallel::threads();
    let isa = Isa::current();
    let (shared, per_task) = input_gradient_lens(g, isa);
    let scratch = grown(scratch, shared + threads * per_task);
    let (packed_w_t, bufs) = scratch.split_at_mut(shared);
    implicit::pack_weights_t(packed_w_t, w, g, isa);
    let packed_w_t = &*packed_w_t;
    let (in_len, out_len) = (g.in_len(), g.out_len());
    parallel::over_batch(
        d_x,
        in_len,
        d_y,
        out_len,
        n,
        bufs,
        per_task,
        |d_x_t, d_y_t, buf| {
            for (d_x_n, d_y_n) in d_x_t
                .chunks_exact_mut(in_len)
                .zip(d_y_t.chunks_exact(out_len))
            {
                // Without a weight gradient the sample's input is never read.
                implicit::backward_sample(Some(d_x_n), None, d_y_n, &[], packed_w_t, g, isa, buf);
            }
        },
    );
}

/// `y += w ⋆ x` for each sample: [`super::forward`] without a bias, adding into `y`.
/// `scratch` grows on first use only.
///
/// # Panics
/// Unless `y` has `n·O·OH·OW` values, `x` `n·C·H·W` and `w` `O·C·KH·KW`.
pub(crate) fn add_forward(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    g: &Conv2dGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    // x: (N, C, H, W), w: (O, C, KH, KW) -> y: (N, O, OH, OW), accumulated
    g.shapes()
        .check_forward("conv2d::add_forward", n, y, x, w, None);
    let threads = parallel::threads();
    let isa = Isa::current();
    let (shared, per_task) = add_forward_lens(g, isa);
    let scratch = grown(scratch, shared + threads * per_task);
    let (packed_w, bufs) = scratch.split_at_mut(shared);
    implicit::pack_weights(packed_w, w, g, isa);
    let packed_w = &*packed_w;
    let (in_len, out_len) = (g.in_len(), g.out_len());
    parallel::over_batch(y, out_len, x, in_len, n, bufs, per_task, |y_t, x_t, buf| {
        for (y_n, x_n) in y_t.chunks_exact_mut(out_len).zip(x_t.chunks_exact(in_len)) {
            implicit::forward_sample(y_n, x_n, packed_w, Out::Add, g, isa, buf);
        }
    });
}

/// The scratch of [`input_gradient`]: the packed transposed weights shared by the tasks, and
/// each task's own buffers.
fn input_gradient_lens(g: &Conv2dGeom, isa: Isa) -> (usize, usize) {
    (
        implicit::backward_shared_len(g, isa),
        implicit::backward_task_len(g, isa),
    )
}

/// The scratch of [`add_forward`]: the packed weights, and each task's own buffers.
fn add_forward_lens(g: &Conv2dGeom, isa: Isa) -> (usize, usize) {
    (implicit::shared_len(g, isa), implicit::task_len(g, isa))
}

/// The most scratch [`input_gradient`] and [`add_forward`] grow to at the current thread
/// count and instruction set, for a tape to reserve before a pass.
pub(crate) fn scratch_needed(g: &Conv2dGeom) -> usize {
    input_gradient_needed(g).max(needed(add_forward_lens(g, Isa::current())))
}

/// The scratch [`input_gradient`] grows to at the current thread count and instruction set.
pub(crate) fn input_gradient_needed(g: &Conv2dGeom) -> usize {
    needed(input_gradient_lens(g, Isa::current()))
}

/// A shared part and one part per thread.
fn needed((shared, per_task): (usize, usize)) -> usize {
    shared.saturating_add(parallel::threads().saturating_mul(per_task))
}
