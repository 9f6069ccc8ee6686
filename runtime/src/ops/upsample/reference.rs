//! The reference version of upsampling: every output a weighted sum over every input of its
//! plane, the weights written the other way from the kernels' (a tent around the clamped
//! source position for bilinear, the containing cell for nearest), for the tests.

use super::{UpsampleGeom, UpsampleMode};

/// The weight of input `k` of an axis of `size` in output `i`.
fn weight(mode: UpsampleMode, i: usize, k: usize, factor: usize, size: usize) -> f32 {
    match mode {
        UpsampleMode::Nearest => f32::from(u8::from(i / factor == k)),
        UpsampleMode::Bilinear => {
            let src = ((i as f64 + 0.5) / factor as f64 - 0.5).clamp(0.0, (size - 1) as f64);
            (1.0 - (src - k as f64).abs()).max(0.0) as f32
        }
    }
}

/// The matrix `[fH·fW, H·W]` of the weights of one plane.
pub(super) fn matrix(g: &UpsampleGeom) -> Vec<f32> {
    let (f, h, w) = (g.factor, g.in_h, g.in_w);
    let mut m = Vec::with_capacity(g.out_h() * g.out_w() * h * w);
    for i in 0..g.out_h() {
        for j in 0..g.out_w() {
            for a in 0..h {
                for b in 0..w {
                    m.push(weight(g.mode, i, a, f, h) * weight(g.mode, j, b, f, w));
                }
            }
        }
    }
    m
}

/// `y = M x` per plane.
pub(super) fn forward_naive(y: &mut [f32], x: &[f32], g: &UpsampleGeom) {
    let m = matrix(g);
    let (inp, out) = (g.in_h * g.in_w, g.out_h() * g.out_w());
    for (y_p, x_p) in y.chunks_exact_mut(out).zip(x.chunks_exact(inp)) {
        for (o, y_o) in y_p.iter_mut().enumerate() {
            *y_o = (0..inp).map(|k| m[o * inp + k] * x_p[k]).sum();
        }
    }
}

/// `d_x += Mᵀ d_y` per plane.
pub(super) fn backward_naive(d_x: &mut [f32], d_y: &[f32], g: &UpsampleGeom) {
    let m = matrix(g);
    let (inp, out) = (g.in_h * g.in_w, g.out_h() * g.out_w());
    for (d_x_p, d_y_p) in d_x.chunks_exact_mut(inp).zip(d_y.chunks_exact(out)) {
        for (k, d) in d_x_p.iter_mut().enumerate() {
            *d += (0..out).map(|o| m[o * inp + k] * d_y_p[o]).sum::<f32>();
        }
    }
}
