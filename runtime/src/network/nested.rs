//! A network used as a layer of another (`features: LeNetFeatures`): its generated passes run
//! on a tape of its own inside the outer network's tape, over its part of the outer network's
//! parameters and buffers. Generated code calls these; users need not.

use super::{FrozenView, Network};
use crate::compose::table_len;
use crate::tables::Pass;
use crate::tape::Tape;

/// The forward pass of nested network `M`, the `k`-th of its outer network, computing value
/// `y` from value `x`. `params` are its parameters, at `params_at` among the outer network's;
/// its buffers start at `buffers_at` among the outer network's.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn nested_forward<M: Network>(
    tape: &mut Tape,
    k: usize,
    x: usize,
    y: usize,
    params: &[f32],
    params_at: usize,
    pass: &mut Pass<'_>,
    buffers_at: usize,
) {
    let (n, train) = (tape.batch(), tape.is_train());
    let (input, output, inner) = tape.nested_forward_slots(k, x, y);
    inner.prepare::<M>(n, train);
    inner.input_mut().copy_from_slice(input);
    let range = buffers_at..buffers_at + table_len(M::BUFFERS);
    let pass = match pass {
        Pass::Train {
            buffers,
            rng,
            frozen,
        } => Pass::Train {
            buffers: &mut buffers[range],
            rng,
            frozen: frozen.shifted(params_at),
        },
        Pass::Eval { buffers } => Pass::Eval {
            buffers: &buffers[range],
        },
    };
    M::raw_forward(params, pass, inner);
    output.copy_from_slice(inner.output(M::LAYERS.len()));
}

/// Its backward pass: the gradient of value `y` back through `M` into its parameters'
/// gradients `d_params` and, when `want_dx`, into value `x`'s gradient (zeroed first when
/// `fresh`). `frozen` is the outer network's view, shifted to `M`'s parameters.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn nested_backward<M: Network>(
    tape: &mut Tape,
    k: usize,
    x: usize,
    y: usize,
    fresh: bool,
    want_dx: bool,
    params: &[f32],
    d_params: &mut [f32],
    frozen: FrozenView<'_>,
) {
    let (d_y, d_x, inner) = tape.nested_backward_slots(k, x, y, fresh, want_dx);
    inner.begin_backward(d_y);
    M::raw_backward(params, d_params, inner, want_dx, frozen);
    if want_dx {
        for (a, b) in d_x.iter_mut().zip(inner.input_grad()) {
            *a += b;
        }
    }
    let counts = inner.weight_gradients();
    tape.add_weight_gradients(counts);
}
