//! The two conditionals of a restricted Boltzmann machine, `p(h | v)` and `p(v | h)`, for a
//! block of rows, and the draws from them: the linear layer's products, a nonlinearity, and one
//! random stream per row, so that a draw does not depend on how rows are split over threads.

use rand::{Rng, SeedableRng};

use super::Visible;
use crate::ops::activation::Activation;
use crate::ops::linear::{self, LinearGeom};
use crate::NetRng;

/// A machine's parameters as slices, its sizes known at run time (the kernels are not generic).
#[derive(Clone, Copy)]
pub(super) struct Model<'a> {
    pub units: Visible,
    /// `[H, V]`.
    pub w: &'a [f32],
    pub b: &'a [f32],
    pub c: &'a [f32],
    pub visible: usize,
    pub hidden: usize,
}

impl Model<'_> {
    /// `V -> H`, the geometry of the linear layer `h = Wv + c`.
    pub fn geom(&self) -> LinearGeom {
        LinearGeom {
            in_f: self.visible,
            out_f: self.hidden,
        }
    }
}

/// `h = σ(v Wᵀ + c)`, the probabilities `p(hⱼ = 1 | v)` of `n` rows.
// v: (n, V), w: (H, V), c: (H) -> h: (n, H)
pub(super) fn hidden_means(
    h: &mut [f32],
    v: &[f32],
    m: &Model<'_>,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    linear::forward(h, v, m.w, Some(m.c), &m.geom(), n, scratch);
    h.iter_mut()
        .for_each(|x| *x = Activation::Sigmoid.apply(*x));
}

/// The means of `p(v | h)` of `n` rows: `σ(h W + b)` for binary visible units, `h W + b` for
/// Gaussian ones.
// h: (n, H), w: (H, V), b: (V) -> v: (n, V)
pub(super) fn visible_means(
    v: &mut [f32],
    h: &[f32],
    m: &Model<'_>,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    debug_assert_eq!(v.len(), n * m.visible);
    for row in v.chunks_exact_mut(m.visible) {
        row.copy_from_slice(m.b);
    }
    linear::add_input_grad(v, h, m.w, &m.geom(), n, scratch);
    if m.units == Visible::Bernoulli {
        v.iter_mut()
            .for_each(|x| *x = Activation::Sigmoid.apply(*x));
    }
}

/// Replaces each probability of `p` by a draw of a binary unit with that probability.
pub(super) fn draw_binary(p: &mut [f32], rng: &mut NetRng) {
    for x in p {
        *x = if rng.random::<f32>() < *x { 1.0 } else { 0.0 };
    }
}

/// Replaces each mean of `v` by a draw from `p(v | h)`: binary units for [`Visible::Bernoulli`],
/// the mean plus standard normal noise for [`Visible::Gaussian`].
pub(super) fn draw_visible(v: &mut [f32], units: Visible, rng: &mut NetRng) {
    match units {
        Visible::Bernoulli => draw_binary(v, rng),
        Visible::Gaussian => v.iter_mut().for_each(|x| *x += standard_normal(rng)),
    }
}

/// A draw from `N(0, 1)` (Box and Muller's transform).
pub(super) fn standard_normal(rng: &mut NetRng) -> f32 {
    // 1 − u lies in (0, 1], so the logarithm is finite.
    let u = 1.0 - rng.random::<f64>();
    let angle = std::f64::consts::TAU * rng.random::<f64>();
    ((-2.0 * u.ln()).sqrt() * angle.cos()) as f32
}

/// What a random stream draws in a training step or a chain: each row of each draw has its own.
#[derive(Clone, Copy)]
pub(super) enum Draw {
    /// The hidden units of the data's rows (CD-k's chains start there).
    DataHidden,
    /// The visible units of Gibbs step `k`.
    Visible(usize),
    /// The hidden units of Gibbs step `k`.
    Hidden(usize),
    /// The noise a chain starts from.
    Noise,
}

/// The random stream of row `row` for `draw` at step `step` of the run seeded with `seed`:
/// the same numbers whichever thread draws them.
pub(super) fn row_rng(seed: u64, step: u64, draw: Draw, row: usize) -> NetRng {
    let draw = match draw {
        Draw::DataHidden => 0,
        Draw::Noise => 1,
        Draw::Visible(k) => 2 + 2 * k as u64,
        Draw::Hidden(k) => 3 + 2 * k as u64,
    };
    let mut z = seed;
    for part in [step, draw, row as u64] {
        z = mix(z ^ mix(part.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    }
    NetRng::seed_from_u64(z)
}

/// SplitMix64's finaliser: every bit of the result depends on every bit of `z`.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `log(1 + eˣ)`, without overflow.
pub(super) fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// `log σ(x) = −softplus(−x)`.
pub(super) fn log_sigmoid(x: f32) -> f32 {
    -softplus(-x)
}
