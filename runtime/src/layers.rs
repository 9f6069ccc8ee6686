//! Glue between generated code and the kernels for the layers whose forward pass depends on
//! the mode (batch norm, dropout). Generated code calls these; users need not.

use crate::ops::batch_norm::{self, BatchNormGeom};
use crate::ops::dropout;
use crate::tables::Pass;
use crate::tape::ForwardSlots;

/// Batch norm forward: batch statistics (and a running-statistics update) in training, running
/// statistics in evaluation. `stats` is the offset of `running_mean` in the buffers, followed by
/// `running_var`. The tape's aux slot receives the mean and inverse deviation used.
#[doc(hidden)]
// The argument list is the calling convention of every generated network.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward(
    pass: &mut Pass<'_>,
    s: ForwardSlots<'_>,
    gamma: &[f32],
    beta: &[f32],
    stats: usize,
    params_at: usize,
    g: &BatchNormGeom,
    n: usize,
) {
    let c = g.c;
    match pass {
        Pass::Train {
            buffers, frozen, ..
        } if !frozen.fixes_statistics(params_at, params_at + 2 * c) => {
            let (mean, var) = buffers[stats..stats + 2 * c].split_at_mut(c);
            batch_norm::forward_train(s.y, s.aux, s.x, gamma, beta, mean, var, g, n);
        }
        Pass::Train { buffers, .. } => {
            let (mean, var) = buffers[stats..stats + 2 * c].split_at(c);
            batch_norm::forward_eval(s.y, s.aux, s.x, gamma, beta, mean, var, g, n);
        }
        Pass::Eval { buffers } => {
            let (mean, var) = buffers[stats..stats + 2 * c].split_at(c);
            batch_norm::forward_eval(s.y, s.aux, s.x, gamma, beta, mean, var, g, n);
        }
    }
}

/// Dropout forward: a fresh mask in training, the identity (a mask of ones) in evaluation.
#[doc(hidden)]
pub fn dropout_forward(pass: &mut Pass<'_>, s: ForwardSlots<'_>, p: f32) {
    match pass {
        Pass::Train { rng, .. } => dropout::forward(s.y, s.aux, s.x, p, &mut **rng),
        Pass::Eval { .. } => {
            s.aux.fill(1.0);
            s.y.copy_from_slice(s.x);
        }
    }
}

/// The forward pass of a recurrent layer with dropout between its stacked layers: fresh masks
/// in training, none in evaluation; the pass's lengths, if any.
#[doc(hidden)]
pub fn recurrent_forward(
    pass: &mut Pass<'_>,
    s: ForwardSlots<'_>,
    params: &[f32],
    g: &crate::ops::recurrent::RecurrentGeom,
    n: usize,
    p: f32,
) {
    let dropout = match pass {
        Pass::Train { rng, .. } => Some((p, &mut **rng as &mut dyn rand::RngCore)),
        Pass::Eval { .. } => None,
    };
    let options = crate::ops::recurrent::Options {
        dropout,
        lengths: s.lengths,
    };
    crate::ops::recurrent::forward_with(s.y, s.aux, s.x, params, g, n, s.scratch, options);
}

/// `flatten` forward: the NCHW layout already is `[N, C*H*W]`, so the values are copied as they
/// are.
#[doc(hidden)]
pub fn copy_forward(s: ForwardSlots<'_>) {
    s.y.copy_from_slice(s.x);
}

/// `flatten` backward: the gradient passes through unchanged (accumulated).
#[doc(hidden)]
pub fn copy_backward(s: crate::tape::BackwardSlots<'_>) {
    for (d, g) in s.d_x.iter_mut().zip(s.d_y) {
        *d += g;
    }
}
