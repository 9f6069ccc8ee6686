//! The reference versions of the transposed convolution's kernels, for the tests: every input
//! value scattered over the output through its kernel, straight from the definition.

use super::ConvTranspose2dGeom;

/// Each `(input position, kernel tap)` pair with the output position it lands on, when that
/// lies inside the output: `(c, h, w, u, v, oh, ow)`.
fn taps(g: &ConvTranspose2dGeom) -> impl Iterator<Item = [usize; 7]> + '_ {
    let g = *g;
    (0..g.in_c).flat_map(move |c| {
        (0..g.in_h).flat_map(move |h| {
            (0..g.in_w).flat_map(move |w| {
                (0..g.k_h).flat_map(move |u| {
                    (0..g.k_w).filter_map(move |v| {
                        let oh = (h * g.stride_h + u).checked_sub(g.pad_h)?;
                        let ow = (w * g.stride_w + v).checked_sub(g.pad_w)?;
                        (oh < g.out_h && ow < g.out_w).then_some([c, h, w, u, v, oh, ow])
                    })
                })
            })
        })
    })
}

/// The reference version of [`super::forward`]. `y` is overwritten.
pub(super) fn forward_naive(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    g: &ConvTranspose2dGeom,
    n: usize,
) {
    // x: (N, C, H, W), w: (C, O, KH, KW), b: (O) -> y: (N, O, OH, OW)
    for i in 0..n {
        for o in 0..g.out_c {
            for p in 0..g.out_h * g.out_w {
                y[(i * g.out_c + o) * g.out_h * g.out_w + p] = b.map_or(0.0, |b| b[o]);
            }
        }
        for [c, h, wi, u, v, oh, ow] in taps(g) {
            let xv = x[((i * g.in_c + c) * g.in_h + h) * g.in_w + wi];
            for o in 0..g.out_c {
                let wv = w[((c * g.out_c + o) * g.k_h + u) * g.k_w + v];
                y[((i * g.out_c + o) * g.out_h + oh) * g.out_w + ow] += xv * wv;
            }
        }
    }
}

/// The reference version of [`super::backward`]; accumulates, like it.
// The argument list of `super::backward`, less the scratch.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_naive(
    mut d_x: Option<&mut [f32]>,
    d_w: &mut [f32],
    mut d_b: Option<&mut [f32]>,
    d_y: &[f32],
    x: &[f32],
    w: &[f32],
    g: &ConvTranspose2dGeom,
    n: usize,
) {
    // d_y: (N, O, OH, OW), x: (N, C, H, W), w: (C, O, KH, KW)
    //   -> d_x: (N, C, H, W), d_w: (C, O, KH, KW), d_b: (O)
    for i in 0..n {
        if let Some(d_b) = d_b.as_deref_mut() {
            for (o, d_b_o) in d_b.iter_mut().enumerate() {
                let start = (i * g.out_c + o) * g.out_h * g.out_w;
                *d_b_o += d_y[start..start + g.out_h * g.out_w].iter().sum::<f32>();
            }
        }
        for [c, h, wi, u, v, oh, ow] in taps(g) {
            let xi = ((i * g.in_c + c) * g.in_h + h) * g.in_w + wi;
            for o in 0..g.out_c {
                let wi_ = ((c * g.out_c + o) * g.k_h + u) * g.k_w + v;
                let dy = d_y[((i * g.out_c + o) * g.out_h + oh) * g.out_w + ow];
                d_w[wi_] += x[xi] * dy;
                if let Some(d_x) = d_x.as_deref_mut() {
                    d_x[xi] += w[wi_] * dy;
                }
            }
        }
    }
}
