//! Adam and AdamW: adaptive moment estimation, with L2 or decoupled weight decay.

use super::state::{copy_into, Progress};
use super::{fraction_below_one, non_negative, Optimizer};
use crate::Result;

/// Adam with PyTorch's semantics: [`Adam`] (`torch.optim.Adam`, weight decay added to the
/// gradient) when `DECOUPLED` is false, [`AdamW`] (`torch.optim.AdamW`, weight decay applied to
/// the weights) when it is true. Use those two names; this one holds what they share.
///
/// For each parameter `w` with gradient `g`, at step `t` (from 1):
///
/// ```text
/// g = g + λ·w                          (Adam, weight decay λ, when λ ≠ 0)
/// w = w·(1 − lr·λ)                     (AdamW)
/// m = β₁·m + (1 − β₁)·g                (first moment, from 0)
/// v = β₂·v + (1 − β₂)·g²               (second moment, from 0)
/// w ← w − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
///
/// Epsilon is added after the square root, as PyTorch does. The moments are allocated on the
/// first step and reused after, so steps allocate nothing. The [`Optimizer`] state is PyTorch's
/// `exp_avg` (`m`) and `exp_avg_sq` (`v`), and the step count `t`.
///
/// The builder methods do not fail; the settings are checked by
/// [`validate`](Optimizer::validate), which every [`step`](Optimizer::step) calls, so an
/// invalid optimizer never changes a parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamBase<const DECOUPLED: bool> {
    lr: f32,
    betas: (f32, f32),
    eps: f32,
    weight_decay: f32,
    progress: Progress,
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
}

/// Adam (Kingma and Ba, 2015) as `torch.optim.Adam`: learning rate 1e-3, betas (0.9, 0.999),
/// epsilon 1e-8 and an L2 weight decay of 0 (added to the gradient) by default.
///
/// The update is documented on [`AdamBase`], which this names.
///
/// # Example
///
/// ```
/// use striate::optim::{Adam, Optimizer};
///
/// // Minimise (w - 3)², whose gradient is 2(w - 3).
/// let mut adam = Adam::new(0.1).betas(0.9, 0.99);
/// adam.validate()?;
/// let mut w = [0.0_f32];
/// for _ in 0..500 {
///     let grad = [2.0 * (w[0] - 3.0)];
///     adam.step(&mut w, &grad)?;
/// }
/// assert!((w[0] - 3.0).abs() < 1e-2, "{w:?}");
/// assert_eq!(Adam::default().lr(), 1e-3);
///
/// // A bad setting is an error, not a panic.
/// let err = Adam::default().betas(0.9, 1.0).validate().unwrap_err();
/// assert_eq!(err.to_string(), "invalid beta2: expected a value in [0, 1), found 1");
/// # Ok::<(), striate::Error>(())
/// ```
pub type Adam = AdamBase<false>;

/// AdamW (Loshchilov and Hutter, 2019) as `torch.optim.AdamW`: Adam whose weight decay is
/// applied to the weights (`w ← w·(1 − lr·λ)`) rather than added to the gradient; learning rate
/// 1e-3, betas (0.9, 0.999), epsilon 1e-8 and weight decay 0.01 by default.
///
/// The update is documented on [`AdamBase`], which this names.
///
/// # Example
///
/// ```
/// use striate::optim::{AdamW, Optimizer};
///
/// // With a zero gradient only the decay acts: w·(1 − lr·λ) per step.
/// let mut adamw = AdamW::new(0.1).weight_decay(0.5);
/// let mut w = [2.0_f32];
/// adamw.step(&mut w, &[0.0])?;
/// assert_eq!(w, [2.0 * (1.0 - 0.1 * 0.5)]);
/// assert_eq!(AdamW::default().decay(), 0.01);
/// # Ok::<(), striate::Error>(())
/// ```
pub type AdamW = AdamBase<true>;

impl Default for AdamBase<false> {
    fn default() -> Self {
        AdamBase::with_decay(1e-3, 0.0)
    }
}

impl Default for AdamBase<true> {
    fn default() -> Self {
        AdamBase::with_decay(1e-3, 0.01)
    }
}

impl<const DECOUPLED: bool> AdamBase<DECOUPLED>
where
    Self: Default,
{
    /// PyTorch's defaults with learning rate `lr`.
    pub fn new(lr: f32) -> Self {
        AdamBase {
            lr,
            ..Self::default()
        }
    }
}

impl<const DECOUPLED: bool> AdamBase<DECOUPLED> {
    fn with_decay(lr: f32, weight_decay: f32) -> Self {
        AdamBase {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            progress: Progress::default(),
            exp_avg: Vec::new(),
            exp_avg_sq: Vec::new(),
        }
    }

    /// Sets the decay rates `β₁` and `β₂` of the two moments (default 0.9 and 0.999), each in
    /// `[0, 1)`.
    pub fn betas(mut self, beta1: f32, beta2: f32) -> Self {
        self.betas = (beta1, beta2);
        self
    }

    /// Sets `ε`, added to the denominator after the square root (default 1e-8).
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the weight decay `λ` (default 0 for Adam, 0.01 for AdamW).
    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// The weight decay `λ`.
    pub fn decay(&self) -> f32 {
        self.weight_decay
    }

    /// The first and second moments `m` and `v`, one value per parameter each; `None` before
    /// the first step.
    pub fn moments(&self) -> Option<(&[f32], &[f32])> {
        self.progress
            .started()
            .then_some((&self.exp_avg[..], &self.exp_avg_sq[..]))
    }

    fn name() -> &'static str {
        if DECOUPLED {
            "AdamW"
        } else {
            "Adam"
        }
    }
}

impl<const DECOUPLED: bool> Optimizer for AdamBase<DECOUPLED> {
    fn name(&self) -> &'static str {
        if DECOUPLED {
            "AdamW"
        } else {
            "Adam"
        }
    }

    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        self.validate()?;
        self.progress.check(Self::name(), params.len(), grads)?;
        let moments = [&mut self.exp_avg, &mut self.exp_avg_sq];
        super::reserve_state(Self::name(), moments, params.len())?;
        if self.progress.advance(params.len()) {
            for moment in [&mut self.exp_avg, &mut self.exp_avg_sq] {
                moment.clear();
                moment.resize(params.len(), 0.0);
            }
        }
        let (beta1, beta2) = self.betas;
        let (lr, eps, weight_decay) = (self.lr, self.eps, self.weight_decay);
        // PyTorch computes these in double precision (Python floats) from the step count.
        let t = self.progress.steps() as f64;
        let step_size = (f64::from(lr) / (1.0 - f64::from(beta1).powf(t))) as f32;
        let bias_correction2_sqrt = (1.0 - f64::from(beta2).powf(t)).sqrt() as f32;
        let decay = (1.0 - f64::from(lr) * f64::from(weight_decay)) as f32;
        let (m, v) = (&mut self.exp_avg, &mut self.exp_avg_sq);
        for (((w, &g), m), v) in params.iter_mut().zip(grads).zip(m).zip(v) {
            let g = if DECOUPLED {
                *w *= decay;
                g
            } else if weight_decay != 0.0 {
                g + weight_decay * *w
            } else {
                g
            };
            // `m.lerp_(g, 1 - β₁)` in PyTorch.
            *m += (1.0 - beta1) * (g - *m);
            *v = *v * beta2 + (1.0 - beta2) * g * g;
            let denom = v.sqrt() / bias_correction2_sqrt + eps;
            *w -= step_size * (*m / denom);
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
    /// [`Error::Config`](crate::Error::Config) if the learning rate, epsilon or weight decay
    /// is negative or not finite, or if a beta is outside `[0, 1)`.
    fn validate(&self) -> Result<()> {
        non_negative("learning rate", self.lr)?;
        non_negative("epsilon", self.eps)?;
        fraction_below_one("beta1", self.betas.0)?;
        fraction_below_one("beta2", self.betas.1)?;
        non_negative("weight decay", self.weight_decay)
    }

    fn reset(&mut self) {
        self.progress = Progress::default();
        self.exp_avg.clear();
        self.exp_avg_sq.clear();
    }

    fn steps(&self) -> u64 {
        self.progress.steps()
    }

    fn buffer_names(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq"]
    }

    fn buffers(&self) -> Vec<(&'static str, &[f32])> {
        match self.moments() {
            Some((m, v)) => vec![("exp_avg", m), ("exp_avg_sq", v)],
            None => Vec::new(),
        }
    }

    fn load_buffers(&mut self, steps: u64, buffers: &[&[f32]]) -> Result<()> {
        self.progress = Progress::loaded(Self::name(), self.buffer_names(), steps, buffers)?;
        match buffers {
            [m, v] => {
                copy_into(&mut self.exp_avg, m);
                copy_into(&mut self.exp_avg_sq, v);
            }
            _ => self.reset(),
        }
        Ok(())
    }
}
