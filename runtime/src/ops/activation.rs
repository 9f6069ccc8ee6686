//! Elementwise activation functions, forward and backward.

use super::check_same;

/// An elementwise nonlinearity `y = f(x)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`. A NaN input stays NaN (as PyTorch's `relu`), so divergence stays visible.
    Relu,
    /// `x` for `x > 0`, `slope·x` otherwise (PyTorch's `leaky_relu`, whose default slope is
    /// 0.01).
    LeakyRelu(f32),
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e⁻ˣ)`, computed without overflow for any `x`.
    Sigmoid,
}

impl Activation {
    /// `f(x)`.
    ///
    /// # Example
    /// ```
    /// use striate::ops::activation::Activation;
    ///
    /// assert_eq!(Activation::Relu.apply(-2.0), 0.0);
    /// assert_eq!(Activation::LeakyRelu(0.1).apply(-2.0), -0.2);
    /// assert_eq!(Activation::Sigmoid.apply(-1000.0), 0.0);
    /// assert_eq!(Activation::Sigmoid.apply(1000.0), 1.0);
    /// ```
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => relu(x),
            Activation::LeakyRelu(slope) => leaky_relu(x, slope),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => sigmoid(x),
        }
    }

    /// `f'(x)`, given both the input `x` and the output `y = f(x)` (tanh and sigmoid are
    /// cheapest from `y`: `1 - y²` and `y(1 - y)`; the rectifiers look at `x`, with
    /// `f'(0) = 0` for ReLU and `slope` for leaky ReLU, as PyTorch).
    #[inline]
    pub fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            Activation::Relu => relu_derivative(x),
            Activation::LeakyRelu(slope) => leaky_relu_derivative(x, slope),
            Activation::Tanh => 1.0 - y * y,
            Activation::Sigmoid => y * (1.0 - y),
        }
    }
}

/// `y = f(x)` elementwise. `y` is overwritten.
///
/// # Panics
/// When `y` and `x` differ in length (checked before anything is written, in release builds
/// too).
///
/// # Example
/// ```
/// use striate::ops::activation::{forward, Activation};
///
/// let mut y = [0.0; 3];
/// forward(&mut y, &[-1.0, 0.0, 2.0], Activation::Relu);
/// assert_eq!(y, [0.0, 0.0, 2.0]);
/// ```
pub fn forward(y: &mut [f32], x: &[f32], act: Activation) {
    // x: (any) -> y: (same)
    check_same("activation::forward", "y", y.len(), "x", x.len());
    // One loop per variant, so that each is a straight loop the compiler can vectorise.
    match act {
        Activation::Relu => map(y, x, relu),
        Activation::LeakyRelu(slope) => map(y, x, |v| leaky_relu(v, slope)),
        Activation::Tanh => map(y, x, f32::tanh),
        Activation::Sigmoid => map(y, x, sigmoid),
    }
}

/// `d_x += f'(x) ⊙ d_y` elementwise, with `y = f(x)` as computed by [`forward`].
///
/// # Panics
/// When `d_x`, `x` or `y` differs in length from `d_y` (checked before anything is written, in
/// release builds too).
pub fn backward(d_x: &mut [f32], d_y: &[f32], x: &[f32], y: &[f32], act: Activation) {
    // d_y: (any), x: (same), y: (same) -> d_x: (same)
    for (name, len) in [("d_x", d_x.len()), ("x", x.len()), ("y", y.len())] {
        check_same("activation::backward", name, len, "d_y", d_y.len());
    }
    match act {
        Activation::Relu => {
            for ((d, &g), &x) in d_x.iter_mut().zip(d_y).zip(x) {
                *d += relu_derivative(x) * g;
            }
        }
        Activation::LeakyRelu(slope) => {
            for ((d, &g), &x) in d_x.iter_mut().zip(d_y).zip(x) {
                *d += leaky_relu_derivative(x, slope) * g;
            }
        }
        Activation::Tanh => {
            for ((d, &g), &y) in d_x.iter_mut().zip(d_y).zip(y) {
                *d += (1.0 - y * y) * g;
            }
        }
        Activation::Sigmoid => {
            for ((d, &g), &y) in d_x.iter_mut().zip(d_y).zip(y) {
                *d += y * (1.0 - y) * g;
            }
        }
    }
}

#[inline]
fn map(y: &mut [f32], x: &[f32], f: impl Fn(f32) -> f32) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = f(x);
    }
}

#[inline]
fn relu(x: f32) -> f32 {
    // Not `x.max(0.0)`, which turns NaN into 0.
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

#[inline]
fn relu_derivative(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else {
        0.0
    }
}

#[inline]
fn leaky_relu(x: f32, slope: f32) -> f32 {
    if x > 0.0 {
        x
    } else {
        slope * x
    }
}

#[inline]
fn leaky_relu_derivative(x: f32, slope: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else {
        slope
    }
}

#[inline]
pub(crate) fn sigmoid(x: f32) -> f32 {
    // e^(-|x|) is at most 1, so neither branch overflows; for x < 0 the textbook form would
    // compute e^(-x) = inf for x below about -88.
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{check_gradient, dot, rng, uniform};

    const ALL: [Activation; 4] = [
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Tanh,
        Activation::Sigmoid,
    ];

    /// Values in `[-2, 2]` at least 0.05 from the kink at 0, so a step of 0.01 stays on one
    /// side of it.
    fn inputs(seed: u64, len: usize) -> Vec<f32> {
        uniform(&mut rng(seed), len)
            .into_iter()
            .map(|v| 2.0 * v + 0.05 * v.signum())
            .map(|v| v.clamp(-2.0, 2.0))
            .collect()
    }

    #[test]
    fn forward_matches_apply() {
        let x = inputs(30, 37);
        for act in ALL {
            let mut y = vec![f32::NAN; x.len()];
            forward(&mut y, &x, act);
            for (&x, &y) in x.iter().zip(&y) {
                assert_eq!(y, act.apply(x), "{act:?} at {x}");
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(Activation::Relu.apply(3.0), 3.0);
        assert_eq!(Activation::Relu.apply(-3.0), 0.0);
        assert!(Activation::Relu.apply(f32::NAN).is_nan());
        assert_eq!(Activation::LeakyRelu(0.01).apply(-3.0), -0.03);
        assert_eq!(Activation::Tanh.apply(0.0), 0.0);
        assert_eq!(Activation::Sigmoid.apply(0.0), 0.5);
        // torch.sigmoid(torch.tensor([2.0, -2.0])) = [0.8808, 0.1192]
        assert!((Activation::Sigmoid.apply(2.0) - 0.880_797).abs() < 1e-6);
        assert!((Activation::Sigmoid.apply(-2.0) - 0.119_203).abs() < 1e-6);
    }

    /// Neither the output nor the gradient of the sigmoid becomes NaN or infinite far out.
    #[test]
    fn sigmoid_is_stable_for_large_inputs() {
        let x = [-1e4, -100.0, -89.0, 89.0, 100.0, 1e4, f32::MIN, f32::MAX];
        let mut y = [f32::NAN; 8];
        forward(&mut y, &x, Activation::Sigmoid);
        // e^-100 and e^-89 are subnormal in f32: tiny, but not zero.
        let expected = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0];
        for (&y, e) in y.iter().zip(expected) {
            assert!((y - e).abs() < 1e-38, "{y} vs {e}");
        }
        let mut d_x = [0.0; 8];
        backward(&mut d_x, &[1.0; 8], &x, &y, Activation::Sigmoid);
        assert!(d_x.iter().all(|d| (0.0..1e-38).contains(d)), "{d_x:?}");
        // Small but representable: sigmoid(-80) = e^-80 / (1 + e^-80) ≈ 1.8e-35.
        assert!((Activation::Sigmoid.apply(-80.0) / (-80.0f32).exp() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn backward_matches_finite_differences() {
        for (seed, act) in ALL.into_iter().enumerate() {
            let x = inputs(31 + seed as u64, 41);
            let weights = uniform(&mut rng(40 + seed as u64), x.len());
            let mut y = vec![0.0; x.len()];
            forward(&mut y, &x, act);
            // Start from ones: the backward must add.
            let mut d_x = vec![1.0; x.len()];
            backward(&mut d_x, &weights, &x, &y, act);
            let d_x: Vec<f32> = d_x.iter().map(|d| d - 1.0).collect();
            check_gradient(&format!("{act:?}"), &x, &d_x, 1e-2, 1e-3, |x| {
                forward(&mut y, x, act);
                dot(&weights, &y)
            });
        }
    }

    /// At exactly zero the rectifiers take the left-hand slope, as PyTorch.
    #[test]
    fn rectifier_derivative_at_zero() {
        assert_eq!(Activation::Relu.derivative(0.0, 0.0), 0.0);
        assert_eq!(Activation::LeakyRelu(0.2).derivative(0.0, 0.0), 0.2);
    }
}
