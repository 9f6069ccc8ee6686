//! One step of each cell for one sample, forward and backward: the elementwise part of a
//! recurrent layer, after the matrix products. Gates are in PyTorch's order.

use crate::ops::activation::sigmoid;
use striate_geometry::recurrent::Cell;

/// One step forward. `pre` holds the input's projection `W_ih x + b_ih` (`G·H`) and gets the
/// activated gates (LSTM, GRU); for an RNN it is empty and `h` holds the projection, replaced
/// by the hidden state in place. `hp` is `W_hh h + b_hh` (`G·H`);
/// `prev` the previous hidden state and `prev_extra` the previous cell state (LSTM), `None`
/// at the first step. Writes `h` and `extra` (the cell state, or `W_hn h + b_hn` for a GRU).
#[inline]
pub(super) fn step_forward(
    cell: Cell,
    h: &mut [f32],
    extra: &mut [f32],
    pre: &mut [f32],
    hp: &[f32],
    prev: Option<(&[f32], &[f32])>,
) {
    let hid = h.len();
    match cell {
        Cell::RnnTanh => {
            for (h, &b) in h.iter_mut().zip(hp) {
                *h = (*h + b).tanh();
            }
        }
        Cell::RnnRelu => {
            for (h, &b) in h.iter_mut().zip(hp) {
                *h = (*h + b).max(0.0);
            }
        }
        Cell::Lstm => {
            let (gi, rest) = pre.split_at_mut(hid);
            let (gf, rest) = rest.split_at_mut(hid);
            let (gg, go) = rest.split_at_mut(hid);
            for j in 0..hid {
                let i = sigmoid(gi[j] + hp[j]);
                let f = sigmoid(gf[j] + hp[hid + j]);
                let g = (gg[j] + hp[2 * hid + j]).tanh();
                let o = sigmoid(go[j] + hp[3 * hid + j]);
                let c_prev = prev.map_or(0.0, |(_, c)| c[j]);
                let c = f * c_prev + i * g;
                (gi[j], gf[j], gg[j], go[j]) = (i, f, g, o);
                extra[j] = c;
                h[j] = o * c.tanh();
            }
        }
        Cell::Gru => {
            let (gr, rest) = pre.split_at_mut(hid);
            let (gz, gn) = rest.split_at_mut(hid);
            for j in 0..hid {
                let r = sigmoid(gr[j] + hp[j]);
                let z = sigmoid(gz[j] + hp[hid + j]);
                let hn = hp[2 * hid + j];
                let n = (gn[j] + r * hn).tanh();
                let h_prev = prev.map_or(0.0, |(h, _)| h[j]);
                (gr[j], gz[j], gn[j]) = (r, z, n);
                extra[j] = hn;
                h[j] = (1.0 - z) * n + z * h_prev;
            }
        }
    }
}

/// What one backward step reads: the step's kept values and its predecessor's.
pub(super) struct Kept<'a> {
    /// The hidden state the step computed.
    pub h: &'a [f32],
    /// The activated gates (`G·H`; empty for an RNN).
    pub gates: &'a [f32],
    /// The cell state (LSTM) or `W_hn h + b_hn` (GRU).
    pub extra: &'a [f32],
    /// The previous hidden state and cell state, `None` at the first step.
    pub prev: Option<(&'a [f32], &'a [f32])>,
}

/// One step backward. `dh` is the gradient of the step's hidden state, `dc` (LSTM) that of its
/// cell state; on return they are the parts of the previous step's gradients that do not go
/// through `W_hh` (the caller adds `da_h · W_hh` to `dh`). Writes the gradients of the gates'
/// pre-activations: `da` on the input side, `da_h` on the hidden side (they differ only for a
/// GRU's new gate, `r ⊙` on the hidden side; for other cells `da_h` is not written).
#[inline]
pub(super) fn step_backward(
    cell: Cell,
    da: &mut [f32],
    da_h: &mut [f32],
    dh: &mut [f32],
    dc: &mut [f32],
    k: &Kept<'_>,
) {
    let hid = dh.len();
    match cell {
        Cell::RnnTanh => {
            for ((a, d), &h) in da.iter_mut().zip(dh.iter_mut()).zip(k.h) {
                *a = *d * (1.0 - h * h);
                *d = 0.0;
            }
        }
        Cell::RnnRelu => {
            for ((a, d), &h) in da.iter_mut().zip(dh.iter_mut()).zip(k.h) {
                *a = if h > 0.0 { *d } else { 0.0 };
                *d = 0.0;
            }
        }
        Cell::Lstm => {
            for j in 0..hid {
                let (i, f, g, o) = (
                    k.gates[j],
                    k.gates[hid + j],
                    k.gates[2 * hid + j],
                    k.gates[3 * hid + j],
                );
                let c = k.extra[j];
                let c_prev = k.prev.map_or(0.0, |(_, c)| c[j]);
                let tc = c.tanh();
                let d_h = dh[j];
                let d_c = dc[j] + d_h * o * (1.0 - tc * tc);
                da[j] = d_c * g * i * (1.0 - i);
                da[hid + j] = d_c * c_prev * f * (1.0 - f);
                da[2 * hid + j] = d_c * i * (1.0 - g * g);
                da[3 * hid + j] = d_h * tc * o * (1.0 - o);
                dc[j] = d_c * f;
                dh[j] = 0.0;
            }
        }
        Cell::Gru => {
            for j in 0..hid {
                let (r, z, n) = (k.gates[j], k.gates[hid + j], k.gates[2 * hid + j]);
                let hn = k.extra[j];
                let h_prev = k.prev.map_or(0.0, |(h, _)| h[j]);
                let d_h = dh[j];
                let d_an = d_h * (1.0 - z) * (1.0 - n * n);
                let d_ar = d_an * hn * r * (1.0 - r);
                let d_az = d_h * (h_prev - n) * z * (1.0 - z);
                (da[j], da[hid + j], da[2 * hid + j]) = (d_ar, d_az, d_an);
                (da_h[j], da_h[hid + j], da_h[2 * hid + j]) = (d_ar, d_az, d_an * r);
                dh[j] = d_h * z;
            }
        }
    }
}
