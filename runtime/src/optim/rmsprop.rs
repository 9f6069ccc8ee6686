//! RMSprop: gradients divided by a running root mean square, with optional momentum and
//! centering.

use super::state::{copy_into, Progress};
use super::{non_negative, Optimizer};
use crate::Result;

/// RMSprop (Hinton's lecture 6e) with the semantics and defaults of `torch.optim.RMSprop`:
/// learning rate 1e-2, alpha 0.99, epsilon 1e-8, no momentum, weight decay 0, not centered.
///
/// For each parameter `w` with gradient `g`:
///
/// ```text
/// g = g + λ·w                          (weight decay λ, when λ ≠ 0)
/// s = α·s + (1 − α)·g²                 (square average, from 0)
/// a = α·a + (1 − α)·g                  (gradient average, from 0, when centered)
/// d = √(s − a²) + ε  if centered, else  √s + ε
/// b = μ·b + g / d,  w ← w − lr·b       (momentum μ > 0; b from 0)
/// w ← w − lr·g / d                     (μ = 0)
/// ```
///
/// The buffers are allocated on the first step and reused after, so steps allocate nothing.
/// The [`Optimizer`] state is PyTorch's `square_avg`, then `momentum_buffer` (with momentum)
/// and `grad_avg` (when centered).
///
/// The builder methods do not fail; the settings are checked by
/// [`validate`](Optimizer::validate), which every [`step`](Optimizer::step) calls.
///
/// # Example
///
/// ```
/// use striate::optim::{Optimizer, RmsProp};
///
/// // Minimise (w - 3)², whose gradient is 2(w - 3).
/// let mut rmsprop = RmsProp::new(0.01).momentum(0.5).centered(true);
/// let mut w = [0.0_f32];
/// for _ in 0..1000 {
///     let grad = [2.0 * (w[0] - 3.0)];
///     rmsprop.step(&mut w, &grad)?;
/// }
/// assert!((w[0] - 3.0).abs() < 0.05, "{w:?}");
/// assert_eq!(rmsprop.buffer_names(), ["square_avg", "momentum_buffer", "grad_avg"]);
///
/// let err = RmsProp::default().alpha(-0.5).validate().unwrap_err();
/// assert_eq!(err.to_string(), "invalid alpha: expected a finite value of at least 0, found -0.5");
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RmsProp {
    lr: f32,
    alpha: f32,
    eps: f32,
    weight_decay: f32,
    momentum: f32,
    centered: bool,
    progress: Progress,
    square_avg: Vec<f32>,
    momentum_buffer: Vec<f32>,
    grad_avg: Vec<f32>,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp::new(1e-2)
    }
}

impl RmsProp {
    /// PyTorch's defaults with learning rate `lr`.
    pub fn new(lr: f32) -> RmsProp {
        RmsProp {
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            progress: Progress::default(),
            square_avg: Vec::new(),
            momentum_buffer: Vec::new(),
            grad_avg: Vec::new(),
        }
    }

    /// Sets the smoothing constant `α` of the averages (default 0.99).
    pub fn alpha(mut self, alpha: f32) -> RmsProp {
        self.alpha = alpha;
        self
    }

    /// Sets `ε`, added to the denominator after the square root (default 1e-8).
    pub fn eps(mut self, eps: f32) -> RmsProp {
        self.eps = eps;
        self
    }

    /// Sets the L2 weight decay `λ`, added to the gradient (default 0).
    pub fn weight_decay(mut self, weight_decay: f32) -> RmsProp {
        self.weight_decay = weight_decay;
        self
    }

    /// Sets the momentum `μ` (default 0, which means no momentum buffer).
    pub fn momentum(mut self, momentum: f32) -> RmsProp {
        self.momentum = momentum;
        self
    }

    /// Whether to divide by the centered second moment, an estimate of the gradient's variance
    /// (default false).
    pub fn centered(mut self, centered: bool) -> RmsProp {
        self.centered = centered;
        self
    }

    fn buffers_mut(&mut self) -> [&mut Vec<f32>; 3] {
        [
            &mut self.square_avg,
            &mut self.momentum_buffer,
            &mut self.grad_avg,
        ]
    }
}

impl Optimizer for RmsProp {
    fn name(&self) -> &'static str {
        "RmsProp"
    }

    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        self.validate()?;
        self.progress.check("RMSprop", params.len(), grads)?;
        let (momentum, centered) = (self.momentum > 0.0, self.centered);
        let used = [true, momentum, centered];
        for (buffer, used) in self.buffers_mut().into_iter().zip(used) {
            let len = if used { params.len() } else { 0 };
            super::reserve_state("RMSprop", [buffer], len)?;
        }
        if self.progress.advance(params.len()) {
            for (buffer, used) in self.buffers_mut().into_iter().zip(used) {
                buffer.clear();
                buffer.resize(if used { params.len() } else { 0 }, 0.0);
            }
        }
        let RmsProp {
            lr,
            alpha,
            eps,
            weight_decay,
            momentum,
            centered,
            ..
        } = *self;
        for (i, (w, &g)) in params.iter_mut().zip(grads).enumerate() {
            let g = if weight_decay != 0.0 {
                g + weight_decay * *w
            } else {
                g
            };
            let s = &mut self.square_avg[i];
            *s = *s * alpha + (1.0 - alpha) * g * g;
            let avg = if centered {
                let a = &mut self.grad_avg[i];
                // `grad_avg.lerp_(g, 1 - α)` in PyTorch.
                *a += (1.0 - alpha) * (g - *a);
                (*s - *a * *a).sqrt() + eps
            } else {
                s.sqrt() + eps
            };
            if momentum > 0.0 {
                let b = &mut self.momentum_buffer[i];
                *b = *b * momentum + g / avg;
                *w -= lr * *b;
            } else {
                *w -= lr * (g / avg);
            }
        }
        Ok(())
    }

    fn lr(&self) -> f32 {
        self.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    /// Checks the settings, with PyTorch's rules.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) if the learning rate, alpha, epsilon, momentum
    /// or weight decay is negative or not finite.
    fn validate(&self) -> Result<()> {
        non_negative("learning rate", self.lr)?;
        non_negative("alpha", self.alpha)?;
        non_negative("epsilon", self.eps)?;
        non_negative("momentum", self.momentum)?;
        non_negative("weight decay", self.weight_decay)
    }

    fn reset(&mut self) {
        self.progress = Progress::default();
        for buffer in self.buffers_mut() {
            buffer.clear();
        }
    }

    fn steps(&self) -> u64 {
        self.progress.steps()
    }

    fn buffer_names(&self) -> &'static [&'static str] {
        match (self.momentum > 0.0, self.centered) {
            (false, false) => &["square_avg"],
            (true, false) => &["square_avg", "momentum_buffer"],
            (false, true) => &["square_avg", "grad_avg"],
            (true, true) => &["square_avg", "momentum_buffer", "grad_avg"],
        }
    }

    fn buffers(&self) -> Vec<(&'static str, &[f32])> {
        if !self.progress.started() {
            return Vec::new();
        }
        let all = [
            ("square_avg", &self.square_avg[..]),
            ("momentum_buffer", &self.momentum_buffer[..]),
            ("grad_avg", &self.grad_avg[..]),
        ];
        let names = self.buffer_names();
        all.into_iter().filter(|(n, _)| names.contains(n)).collect()
    }

    fn load_buffers(&mut self, steps: u64, buffers: &[&[f32]]) -> Result<()> {
        let names = self.buffer_names();
        self.progress = Progress::loaded("RMSprop", names, steps, buffers)?;
        let given: Vec<Option<&[f32]>> = ["square_avg", "momentum_buffer", "grad_avg"]
            .iter()
            .map(|n| {
                names
                    .iter()
                    .position(|m| m == n)
                    .and_then(|i| buffers.get(i).copied())
            })
            .collect();
        for (buffer, from) in self.buffers_mut().into_iter().zip(given) {
            copy_into(buffer, from.unwrap_or(&[]));
        }
        Ok(())
    }
}
