//! Recurrent layers, PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU` (`batch_first = True`, zero
//! initial states), forward and backward through time, stacked and bidirectional.
//!
//! A layer runs direction by direction, layer by layer. For each direction the input's
//! projection `W_ih x + b_ih` of every step and sample is one packed product; then each step
//! adds `W_hh h + b_hh` (one product over the batch) and applies the cell's gates
//! (the `cells` module). Inside, sequences are kept time-major, `(T, N, F)`, so that a step's hidden
//! states are one block; the input and the output are `(N, T, F)`, as the rest of striate
//! stores a sequence `[T, F]` per sample.
//!
//! The backward pass walks the steps in reverse, keeping the gradient of the gates'
//! pre-activations of every step; the weight gradients are then one product each over all
//! steps. What the forward pass keeps for it is on the tape (`aux`, laid out by
//! [`RecurrentGeom::aux_len`]); everything else is in the caller's `scratch`
//! (`scratch_needed` gives its size).

pub use striate_geometry::recurrent::{Cell, RecurrentGeom};

mod cells;
mod products;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use super::isa::Isa;
use super::{check_len, grown};
use cells::Kept;
use products::{
    add_product, product_len, small_backward, small_forward,
    Stored::{Plain, Transposed},
    MAX_SMALL_BATCH,
};

/// The scratch [`forward`] and [`backward`] need at batch `n`. What a tape reserves for the
/// layer before a pass, so that the kernels allocate nothing.
#[doc(hidden)]
pub fn scratch_needed(g: &RecurrentGeom, n: usize) -> usize {
    let isa = Isa::current();
    forward_scratch(isa, g, n).max(backward_scratch(isa, g, n))
}

fn widest_input(g: &RecurrentGeom) -> usize {
    g.input.max(g.output_features())
}

fn forward_scratch(isa: Isa, g: &RecurrentGeom, n: usize) -> usize {
    let rows = g.steps * n;
    let k = widest_input(g).max(g.hidden);
    n * g.gate_rows() + product_len(isa, rows, k)
}

fn backward_scratch(isa: Isa, g: &RecurrentGeom, n: usize) -> usize {
    let (rows, gr) = (g.steps * n, g.gate_rows());
    let grads = 2 * rows * widest_input(g);
    let gates = if g.cell == Cell::Gru { 2 } else { 1 } * rows * gr;
    let products = product_len(isa, rows, gr).max(product_len(isa, gr, rows));
    grads + gates + 2 * n * g.hidden + products
}

/// Where one direction's weights and biases are in the parameter store.
struct Block<T> {
    w_ih: T,
    w_hh: T,
    b_ih: T,
    b_hh: T,
}

fn block<'a>(g: &RecurrentGeom, params: &'a [f32], l: usize, d: usize) -> Block<&'a [f32]> {
    let (gr, i, h) = (g.gate_rows(), g.layer_input(l), g.hidden);
    let p = &params[g.block_offset(l, d)..][..g.block_len(l)];
    let (w_ih, p) = p.split_at(gr * i);
    let (w_hh, p) = p.split_at(gr * h);
    let (b_ih, b_hh) = p.split_at(gr);
    Block {
        w_ih,
        w_hh,
        b_ih,
        b_hh,
    }
}

fn block_mut<'a>(
    g: &RecurrentGeom,
    params: &'a mut [f32],
    l: usize,
    d: usize,
) -> Block<&'a mut [f32]> {
    let (gr, i, h) = (g.gate_rows(), g.layer_input(l), g.hidden);
    let p = &mut params[g.block_offset(l, d)..][..g.block_len(l)];
    let (w_ih, p) = p.split_at_mut(gr * i);
    let (w_hh, p) = p.split_at_mut(gr * h);
    let (b_ih, b_hh) = p.split_at_mut(gr);
    Block {
        w_ih,
        w_hh,
        b_ih,
        b_hh,
    }
}

/// The step direction `d` takes `k`-th: forward in time for 0, backward for 1.
fn step_at(g: &RecurrentGeom, d: usize, k: usize) -> usize {
    if d == 0 {
        k
    } else {
        g.steps - 1 - k
    }
}

/// The tape of one direction of one layer, as [`RecurrentGeom::direction_tape`] lays it out:
/// hidden states `(T, N, H)`, then activated gates `(T, N, G·H)` and the cell state or `W_hn h
/// + b_hn`, `(T, N, H)` (both empty for an RNN).
fn split_direction<T>(
    g: &RecurrentGeom,
    n: usize,
    tape: T,
    split: impl Fn(T, usize) -> (T, T),
) -> (T, T, T) {
    let rows = g.steps * n;
    let (h, rest) = split(tape, rows * g.hidden);
    let kept_gates = if g.kept_per_step() == 0 {
        0
    } else {
        g.gate_rows()
    };
    let (gates, extra) = split(rest, rows * kept_gates);
    (h, gates, extra)
}

/// `(N, T, F)` into `(T, N, F)`: `dst` overwritten, or added to with `add`.
fn to_time_major(dst: &mut [f32], src: &[f32], [n, t, f]: [usize; 3]) {
    for s in 0..n {
        for k in 0..t {
            dst[(k * n + s) * f..][..f].copy_from_slice(&src[(s * t + k) * f..][..f]);
        }
    }
}

/// `y = f(x)`, a recurrent layer's output sequence `(N, T, D·H)` for the input `(N, T, I)`;
/// `aux` keeps what [`backward`] needs. `y` and `aux` are overwritten.
///
/// # Panics
/// Unless `y` has `n·T·D·H` values, `aux` `n·`[`aux_len`](RecurrentGeom::aux_len), `x`
/// `n·T·I` and `params` [`param_len`](RecurrentGeom::param_len) (checked before anything is
/// written, in release builds too).
///
/// # Example
/// ```
/// use striate::ops::recurrent::{forward, Cell, RecurrentGeom};
///
/// // One tanh unit, weights 1 and 0.5, no biases: h1 = tanh(1), h2 = tanh(0 + 0.5 h1).
/// let g = RecurrentGeom::new(Cell::RnnTanh, 1, 1, 2, 1, 1);
/// let params = [1.0, 0.5, 0.0, 0.0];
/// let (mut y, mut aux) = ([0.0; 2], vec![0.0; g.aux_len()]);
/// forward(&mut y, &mut aux, &[1.0, 0.0], &params, &g, 1, &mut Vec::new());
/// assert_eq!(y, [1f32.tanh(), (0.5 * 1f32.tanh()).tanh()]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn forward(
    y: &mut [f32],
    aux: &mut [f32],
    x: &[f32],
    params: &[f32],
    g: &RecurrentGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    forward_with(y, aux, x, params, g, n, scratch, Options::default());
}

/// What a pass of a recurrent layer may take besides its tensors.
#[derive(Default)]
pub struct Options<'a> {
    /// In training, for a layer with dropout between its stacked layers
    /// ([`RecurrentGeom::dropout`]): the probability `p` and the generator of the masks. Each
    /// value of the output of every layer but the last is then dropped with probability `p`
    /// (the others scaled by `1/(1-p)`) before the next layer reads it, as PyTorch's `dropout`
    /// argument does in training mode; the masks are kept in `aux` for [`backward`]. `None`
    /// (evaluation): no dropout.
    pub dropout: Option<(f32, &'a mut dyn rand::RngCore)>,
    /// Each sample's valid steps in a padded batch (all `T` when `None`), PyTorch's
    /// `pack_padded_sequence` semantics: sample `s` reads steps `0..lengths[s]`, the backward
    /// direction of a bidirectional layer starts from step `lengths[s] - 1`, and the output
    /// (and the kept states) at the padding after it are zero.
    pub lengths: Option<&'a [u32]>,
}

/// Sample `s`'s valid steps.
///
/// # Panics
/// When `lengths` does not have `n` values or a length is not in `1..=T`.
fn valid_steps(lengths: Option<&[u32]>, g: &RecurrentGeom, n: usize, s: usize) -> usize {
    match lengths {
        None => g.steps,
        Some(l) => {
            assert_eq!(l.len(), n, "recurrent: {} lengths for {n} samples", l.len());
            let len = l[s] as usize;
            assert!(
                (1..=g.steps).contains(&len),
                "recurrent: length {len} of sample {s} is not in 1..={}",
                g.steps
            );
            len
        }
    }
}

/// [`forward`] with [`Options`]: dropout between stacked layers in training, and lengths.
///
/// # Panics
/// As [`forward`]; when `lengths` does not have `n` values or a length is not in `1..=T`.
///
/// # Example
/// ```
/// use rand::SeedableRng;
/// use striate::ops::recurrent::{forward, forward_with, Cell, Options, RecurrentGeom};
///
/// let g = RecurrentGeom::new(Cell::Gru, 2, 3, 4, 2, 1).with_dropout(true);
/// let params = vec![0.3; g.param_len()];
/// let x = [0.5; 8];
/// let (mut y, mut aux) = (vec![0.0; g.output_len()], vec![0.0; g.aux_len()]);
/// let (mut eval, mut scratch) = (y.clone(), Vec::new());
/// forward(&mut eval, &mut aux, &x, &params, &g, 1, &mut scratch);
/// let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
/// let options = Options { dropout: Some((0.5, &mut rng)), lengths: None };
/// forward_with(&mut y, &mut aux, &x, &params, &g, 1, &mut scratch, options);
/// // The second layer read a thinned first layer's output.
/// assert_ne!(y, eval);
/// let masks = &aux[aux.len() - g.mask_len()..];
/// assert!(masks.iter().all(|&m| m == 0.0 || m == 2.0));
///
/// // Three valid steps of four: the fourth step's output is zero, the others as without it.
/// let options = Options { dropout: None, lengths: Some(&[3]) };
/// forward_with(&mut y, &mut aux, &x, &params, &g, 1, &mut scratch, options);
/// assert_eq!(y[..9], eval[..9]);
/// assert_eq!(y[9..], [0.0; 3]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn forward_with(
    y: &mut [f32],
    aux: &mut [f32],
    x: &[f32],
    params: &[f32],
    g: &RecurrentGeom,
    n: usize,
    scratch: &mut Vec<f32>,
    options: Options<'_>,
) {
    let Options {
        mut dropout,
        lengths,
    } = options;
    // x: (N, T, I), params: per layer and direction [w_ih, w_hh, b_ih, b_hh] -> y: (N, T, D·H)
    let kernel = "recurrent::forward";
    check_len(
        kernel,
        "y",
        y.len(),
        Some(n),
        &[g.steps, g.output_features()],
    );
    check_len(kernel, "aux", aux.len(), Some(n), &[g.aux_len()]);
    check_len(kernel, "x", x.len(), Some(n), &[g.steps, g.input]);
    check_len(kernel, "params", params.len(), None, &[g.param_len()]);
    for s in 0..n {
        valid_steps(lengths, g, n, s);
    }
    if n == 0 || g.steps == 0 {
        return;
    }
    let isa = Isa::current();
    let (t_len, hid, gr, dh) = (g.steps, g.hidden, g.gate_rows(), g.output_features());
    let rows = t_len * n;
    let buf = grown(scratch, forward_scratch(isa, g, n));
    let (hp, prod) = buf.split_at_mut(n * gr);
    let (aux, masks) = aux.split_at_mut(aux.len() - n * g.mask_len());
    let (xt, rest) = aux.split_at_mut(rows * g.input);
    let (outs, mut tapes) = rest.split_at_mut((g.layers - 1) * rows * dh);
    to_time_major(xt, x, [n, t_len, g.input]);
    for l in 0..g.layers {
        let (below, here) = outs.split_at_mut(l * rows * dh);
        let input: &[f32] = if l == 0 {
            xt
        } else {
            &below[(l - 1) * rows * dh..]
        };
        let i_l = g.layer_input(l);
        let input = &input[..rows * i_l];
        for d in 0..g.directions {
            let (tape, rest) = std::mem::take(&mut tapes).split_at_mut(n * g.direction_tape());
            tapes = rest;
            let (h_all, gates_all, extra_all) =
                split_direction(g, n, tape, |s: &mut [f32], at| s.split_at_mut(at));
            let p = block(g, params, l, d);
            // The projection of every step's input at once, into the gates (or, for an RNN,
            // the hidden states), which each step then completes.
            let pre_all = if g.kept_per_step() == 0 {
                &mut *h_all
            } else {
                &mut *gates_all
            };
            for row in pre_all.chunks_exact_mut(gr) {
                row.copy_from_slice(p.b_ih);
            }
            add_product(
                isa,
                pre_all,
                Plain(input),
                Transposed(p.w_ih),
                [rows, i_l, gr],
                prod,
            );
            for k in 0..t_len {
                let t = step_at(g, d, k);
                for row in hp.chunks_exact_mut(gr) {
                    row.copy_from_slice(p.b_hh);
                }
                let prev_t = (k > 0).then(|| step_at(g, d, k - 1));
                if let Some(pt) = prev_t {
                    let h_prev = &h_all[pt * n * hid..][..n * hid];
                    if n <= MAX_SMALL_BATCH {
                        small_forward(isa, hp, h_prev, p.w_hh, [n, hid, gr]);
                    } else {
                        let dims = [n, hid, gr];
                        add_product(isa, hp, Plain(h_prev), Transposed(p.w_hh), dims, prod);
                    }
                }
                for s in 0..n {
                    let r = t * n + s;
                    let (h_t, h_prev) = pair(h_all, hid, r, prev_t.map(|pt| pt * n + s));
                    let (e_t, e_prev) = pair(extra_all, hid, r, prev_t.map(|pt| pt * n + s));
                    let pre = if gates_all.is_empty() {
                        &mut []
                    } else {
                        &mut gates_all[r * gr..][..gr]
                    };
                    let prev = h_prev.map(|h| (h, e_prev.unwrap_or(&[])));
                    cells::step_forward(g.cell, h_t, e_t, pre, &hp[s * gr..][..gr], prev);
                    // Padding: zero states, so that the output there is zero and the backward
                    // direction starts its valid steps from the zero state.
                    if t >= valid_steps(lengths, g, n, s) {
                        h_t.fill(0.0);
                        e_t.fill(0.0);
                    }
                }
            }
            // The layer's output, this direction's half of each step.
            let h_all = &*h_all;
            let last = l + 1 == g.layers;
            let out: &mut [f32] = if last {
                &mut *y
            } else {
                &mut here[..rows * dh]
            };
            for t in 0..t_len {
                for s in 0..n {
                    let at = if last { s * t_len + t } else { t * n + s };
                    out[at * dh + d * hid..][..hid]
                        .copy_from_slice(&h_all[(t * n + s) * hid..][..hid]);
                }
            }
        }
        // Dropout on what the next layer reads; its input gradient goes through the same mask.
        if g.dropout && l + 1 < g.layers {
            let mask = &mut masks[l * rows * dh..][..rows * dh];
            match &mut dropout {
                Some((p, rng)) => super::dropout::fill_mask(mask, *p, &mut **rng),
                None => mask.fill(1.0),
            }
            for (v, &m) in here[..rows * dh].iter_mut().zip(&*mask) {
                *v *= m;
            }
        }
    }
}

/// Row `r` of `buf` (rows of `len`), or an empty row of an empty `buf`.
fn row(buf: &[f32], len: usize, r: usize) -> &[f32] {
    if buf.is_empty() {
        &[]
    } else {
        &buf[r * len..][..len]
    }
}

/// Row `r` of `buf` (rows of `len`) mutably, and row `other` (`≠ r`) shared, when given. An
/// empty `buf` gives empty rows.
fn pair(
    buf: &mut [f32],
    len: usize,
    r: usize,
    other: Option<usize>,
) -> (&mut [f32], Option<&[f32]>) {
    if buf.is_empty() {
        return (&mut [], other.map(|_| &[][..]));
    }
    match other {
        None => (&mut buf[r * len..][..len], None),
        Some(o) if o < r => {
            let (a, b) = buf.split_at_mut(r * len);
            (&mut b[..len], Some(&a[o * len..][..len]))
        }
        Some(o) => {
            let (a, b) = buf.split_at_mut(o * len);
            (&mut a[r * len..][..len], Some(&b[..len]))
        }
    }
}

/// The gradients of [`forward`]: `d_params += ∂L/∂params` and, when given, `d_x += ∂L/∂x`,
/// from `d_y = ∂L/∂y` and the `aux` the forward pass kept (with the same `params`).
///
/// # Panics
/// Unless `d_y` has `n·T·D·H` values, `aux` `n·`[`aux_len`](RecurrentGeom::aux_len), `d_x`
/// (when given) `n·T·I` and `params` and `d_params`
/// [`param_len`](RecurrentGeom::param_len) (checked before anything is written).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    d_x: Option<&mut [f32]>,
    d_params: &mut [f32],
    d_y: &[f32],
    aux: &[f32],
    params: &[f32],
    g: &RecurrentGeom,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    backward_with(d_x, d_params, d_y, aux, params, g, n, scratch, None);
}

/// [`backward`] of a [`forward_with`] pass that had `lengths`: no gradient reaches a padded
/// step, the input's or any parameter's. Give the lengths the forward pass had.
///
/// # Panics
/// As [`backward`] and [`forward_with`].
#[allow(clippy::too_many_arguments)]
pub fn backward_with(
    d_x: Option<&mut [f32]>,
    d_params: &mut [f32],
    d_y: &[f32],
    aux: &[f32],
    params: &[f32],
    g: &RecurrentGeom,
    n: usize,
    scratch: &mut Vec<f32>,
    lengths: Option<&[u32]>,
) {
    // d_y: (N, T, D·H) -> d_x: (N, T, I), d_params: as params
    let kernel = "recurrent::backward";
    check_len(
        kernel,
        "d_y",
        d_y.len(),
        Some(n),
        &[g.steps, g.output_features()],
    );
    check_len(kernel, "aux", aux.len(), Some(n), &[g.aux_len()]);
    if let Some(d_x) = d_x.as_deref() {
        check_len(kernel, "d_x", d_x.len(), Some(n), &[g.steps, g.input]);
    }
    check_len(kernel, "params", params.len(), None, &[g.param_len()]);
    check_len(kernel, "d_params", d_params.len(), None, &[g.param_len()]);
    for s in 0..n {
        valid_steps(lengths, g, n, s);
    }
    if n == 0 || g.steps == 0 {
        return;
    }
    let isa = Isa::current();
    let (t_len, hid, gr, dh) = (g.steps, g.hidden, g.gate_rows(), g.output_features());
    let rows = t_len * n;
    let wide = rows * widest_input(g);
    let buf = grown(scratch, backward_scratch(isa, g, n));
    let (mut d_cur, rest) = buf.split_at_mut(wide);
    let (mut d_below, rest) = rest.split_at_mut(wide);
    let (da, rest) = rest.split_at_mut(rows * gr);
    let gru = g.cell == Cell::Gru;
    let (da_h, rest) = rest.split_at_mut(if gru { rows * gr } else { 0 });
    let (dh_run, rest) = rest.split_at_mut(n * hid);
    let (dc_run, prod) = rest.split_at_mut(n * hid);
    let (aux, masks) = aux.split_at(aux.len() - n * g.mask_len());
    let (xt, rest) = aux.split_at(rows * g.input);
    let (outs, tapes) = rest.split_at((g.layers - 1) * rows * dh);
    to_time_major(d_cur, d_y, [n, t_len, dh]);
    let want_x = d_x.is_some();
    for l in (0..g.layers).rev() {
        let i_l = g.layer_input(l);
        let input = if l == 0 {
            xt
        } else {
            &outs[(l - 1) * rows * dh..][..rows * dh]
        };
        let below = l > 0 || want_x;
        if below {
            d_below[..rows * i_l].fill(0.0);
        }
        for d in 0..g.directions {
            let at = (l * g.directions + d) * n * g.direction_tape();
            let tape = &tapes[at..][..n * g.direction_tape()];
            let (h_all, gates_all, extra_all) =
                split_direction(g, n, tape, |s: &[f32], at| s.split_at(at));
            let p = block(g, params, l, d);
            dh_run.fill(0.0);
            dc_run.fill(0.0);
            for k in (0..t_len).rev() {
                let t = step_at(g, d, k);
                let prev_t = (k > 0).then(|| step_at(g, d, k - 1));
                for s in 0..n {
                    let r = t * n + s;
                    let dh_s = &mut dh_run[s * hid..][..hid];
                    if t >= valid_steps(lengths, g, n, s) {
                        // Padding is a constant zero state: nothing flows through it.
                        dh_s.fill(0.0);
                        dc_run[s * hid..][..hid].fill(0.0);
                        da[r * gr..][..gr].fill(0.0);
                        if gru {
                            da_h[r * gr..][..gr].fill(0.0);
                        }
                        continue;
                    }
                    for (a, &b) in dh_s.iter_mut().zip(&d_cur[r * dh + d * hid..][..hid]) {
                        *a += b;
                    }
                    let kept = Kept {
                        h: row(h_all, hid, r),
                        gates: row(gates_all, gr, r),
                        extra: row(extra_all, hid, r),
                        prev: prev_t.map(|pt| {
                            (row(h_all, hid, pt * n + s), row(extra_all, hid, pt * n + s))
                        }),
                    };
                    let da_h_s = if gru {
                        &mut da_h[r * gr..][..gr]
                    } else {
                        &mut []
                    };
                    cells::step_backward(
                        g.cell,
                        &mut da[r * gr..][..gr],
                        da_h_s,
                        dh_s,
                        &mut dc_run[s * hid..][..hid],
                        &kept,
                    );
                }
                if prev_t.is_some() {
                    let hidden_side = if gru { &*da_h } else { &*da };
                    let da_t = &hidden_side[t * n * gr..][..n * gr];
                    if n <= MAX_SMALL_BATCH {
                        small_backward(isa, dh_run, da_t, p.w_hh, [n, gr, hid]);
                    } else {
                        add_product(isa, dh_run, Plain(da_t), Plain(p.w_hh), [n, gr, hid], prod);
                    }
                }
            }
            let hidden_side = if gru { &*da_h } else { &*da };
            let dp = block_mut(g, d_params, l, d);
            for (row, row_h) in da.chunks_exact(gr).zip(hidden_side.chunks_exact(gr)) {
                for (b, &v) in dp.b_ih.iter_mut().zip(row) {
                    *b += v;
                }
                for (b, &v) in dp.b_hh.iter_mut().zip(row_h) {
                    *b += v;
                }
            }
            add_product(
                isa,
                dp.w_ih,
                Transposed(da),
                Plain(input),
                [gr, rows, i_l],
                prod,
            );
            // Step t's hidden-side gradients meet the hidden state before it: t - 1 forward
            // in time, t + 1 backward.
            let pairs = (t_len - 1) * n;
            let (from_da, from_h) = if d == 0 { (n, 0) } else { (0, n) };
            let da_part = &hidden_side[from_da * gr..][..pairs * gr];
            let h_part = &h_all[from_h * hid..][..pairs * hid];
            add_product(
                isa,
                dp.w_hh,
                Transposed(da_part),
                Plain(h_part),
                [gr, pairs, hid],
                prod,
            );
            if below {
                add_product(
                    isa,
                    &mut d_below[..rows * i_l],
                    Plain(da),
                    Plain(p.w_ih),
                    [rows, gr, i_l],
                    prod,
                );
            }
        }
        if g.dropout && l > 0 {
            let mask = &masks[(l - 1) * rows * dh..][..rows * dh];
            for (v, &m) in d_below[..rows * dh].iter_mut().zip(mask) {
                *v *= m;
            }
        }
        std::mem::swap(&mut d_cur, &mut d_below);
    }
    if let Some(d_x) = d_x {
        let i = g.input;
        for s in 0..n {
            for k in 0..t_len {
                let src = &d_cur[(k * n + s) * i..][..i];
                for (a, &b) in d_x[(s * t_len + k) * i..][..i].iter_mut().zip(src) {
                    *a += b;
                }
            }
        }
    }
}
