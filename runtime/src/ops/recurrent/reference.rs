//! The plain version of a recurrent layer's forward pass: PyTorch's equations written out
//! one sample, one step and one unit at a time, in `f64`.

use super::{Cell, RecurrentGeom};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `W v + b` for `W` `[rows, v.len()]` row-major.
fn affine(w: &[f32], b: &[f32], v: &[f64]) -> Vec<f64> {
    (0..b.len())
        .map(|r| {
            let row = &w[r * v.len()..][..v.len()];
            b[r] as f64 + row.iter().zip(v).map(|(&a, &x)| a as f64 * x).sum::<f64>()
        })
        .collect()
}

/// The output `(N, T, D·H)` and the final hidden states `h_n` (`(L·D, N, H)`, PyTorch's
/// layout) of the layer on `x` `(N, T, I)`.
pub(super) fn forward(
    x: &[f32],
    params: &[f32],
    g: &RecurrentGeom,
    n: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (t_len, hid, dirs) = (g.steps, g.hidden, g.directions);
    let gr = g.gate_rows();
    let mut h_n = vec![0.0; g.layers * dirs * n * hid];
    let mut y = Vec::new();
    for s in 0..n {
        // The sequence entering the current layer, step by step.
        let mut seq: Vec<Vec<f64>> = (0..t_len)
            .map(|t| {
                x[(s * t_len + t) * g.input..][..g.input]
                    .iter()
                    .map(|&v| v as f64)
                    .collect()
            })
            .collect();
        for l in 0..g.layers {
            let i_l = g.layer_input(l);
            let mut out = vec![vec![0.0; dirs * hid]; t_len];
            for d in 0..dirs {
                let p = &params[g.block_offset(l, d)..][..g.block_len(l)];
                let (w_ih, p) = p.split_at(gr * i_l);
                let (w_hh, p) = p.split_at(gr * hid);
                let (b_ih, b_hh) = p.split_at(gr);
                let mut h = vec![0.0; hid];
                let mut c = vec![0.0; hid];
                let order: Vec<usize> = if d == 0 {
                    (0..t_len).collect()
                } else {
                    (0..t_len).rev().collect()
                };
                for t in order {
                    let a = affine(w_ih, b_ih, &seq[t]);
                    let b = affine(w_hh, b_hh, &h);
                    h = match g.cell {
                        Cell::RnnTanh => (0..hid).map(|j| (a[j] + b[j]).tanh()).collect(),
                        Cell::RnnRelu => (0..hid).map(|j| (a[j] + b[j]).max(0.0)).collect(),
                        Cell::Lstm => {
                            let gate = |k: usize, j: usize| a[k * hid + j] + b[k * hid + j];
                            (0..hid)
                                .map(|j| {
                                    let i = sigmoid(gate(0, j));
                                    let f = sigmoid(gate(1, j));
                                    let gg = gate(2, j).tanh();
                                    let o = sigmoid(gate(3, j));
                                    c[j] = f * c[j] + i * gg;
                                    o * c[j].tanh()
                                })
                                .collect()
                        }
                        Cell::Gru => (0..hid)
                            .map(|j| {
                                let r = sigmoid(a[j] + b[j]);
                                let z = sigmoid(a[hid + j] + b[hid + j]);
                                let nn = (a[2 * hid + j] + r * b[2 * hid + j]).tanh();
                                (1.0 - z) * nn + z * h[j]
                            })
                            .collect(),
                    };
                    out[t][d * hid..][..hid].copy_from_slice(&h);
                }
                for (j, &v) in h.iter().enumerate() {
                    h_n[((l * dirs + d) * n + s) * hid + j] = v as f32;
                }
            }
            seq = out;
        }
        y.extend(seq.iter().flatten().map(|&v| v as f32));
    }
    (y, h_n)
}
