//! Stochastic gradient descent with momentum, Nesterov momentum and weight decay.

use super::state::{copy_into, Progress};
use super::{non_negative, Optimizer};
use crate::ops::parallel::{self, SharedMut};
use crate::{Error, Result};

/// Stochastic gradient descent with the semantics of PyTorch's `torch.optim.SGD`.
///
/// For each parameter `w` with gradient `g`, at step `t`:
///
/// ```text
/// d = g + λ·w                                  (weight decay λ, when λ ≠ 0)
/// if μ ≠ 0:                                    (momentum μ)
///     b = d                     at t = 1       (no dampening on the first step)
///     b = μ·b + (1 − τ)·d       at t > 1       (dampening τ)
///     d = d + μ·b  if nesterov, else  d = b
/// w ← w − lr·d
/// ```
///
/// The momentum buffer `b` is allocated on the first step and reused after, so steps allocate
/// nothing. Its length is fixed by that first step. Its [`Optimizer`] state is PyTorch's
/// `momentum_buffer` (none without momentum).
///
/// The builder methods do not fail; the settings are checked by [`validate`](Sgd::validate),
/// which every [`step`](Sgd::step) calls, so an invalid optimizer never changes a parameter.
///
/// # Example
///
/// ```
/// use striate::optim::Sgd;
///
/// // Minimise w² / 2, whose gradient is w.
/// let mut sgd = Sgd::new(0.1).momentum(0.9).nesterov(true).weight_decay(1e-4);
/// sgd.validate()?;
/// let mut w = [1.0_f32, -2.0];
/// for _ in 0..100 {
///     let grad = w;
///     sgd.step(&mut w, &grad)?;
/// }
/// assert!(w.iter().all(|v| v.abs() < 1e-3), "{w:?}");
/// # Ok::<(), striate::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Sgd {
    lr: f32,
    momentum: f32,
    dampening: f32,
    nesterov: bool,
    weight_decay: f32,
    progress: Progress,
    /// The momentum buffer `b`; empty until the first step with momentum.
    velocity: Vec<f32>,
}

impl Sgd {
    /// Plain SGD with learning rate `lr`: no momentum, dampening or weight decay.
    pub fn new(lr: f32) -> Sgd {
        Sgd {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            progress: Progress::default(),
            velocity: Vec::new(),
        }
    }

    /// Sets the momentum factor `μ` (default 0, which means no momentum buffer).
    pub fn momentum(mut self, momentum: f32) -> Sgd {
        self.momentum = momentum;
        self
    }

    /// Sets the dampening `τ` applied to new gradients in the momentum buffer (default 0).
    pub fn dampening(mut self, dampening: f32) -> Sgd {
        self.dampening = dampening;
        self
    }

    /// Switches Nesterov momentum on or off (default off). Needs momentum > 0 and dampening 0.
    pub fn nesterov(mut self, nesterov: bool) -> Sgd {
        self.nesterov = nesterov;
        self
    }

    /// Sets the L2 weight decay `λ` (default 0), added to the gradient as `λ·w`.
    pub fn weight_decay(mut self, weight_decay: f32) -> Sgd {
        self.weight_decay = weight_decay;
        self
    }

    /// The learning rate.
    pub fn lr(&self) -> f32 {
        self.lr
    }

    /// Changes the learning rate for the following steps, keeping the momentum buffer (as a
    /// learning-rate schedule does).
    pub fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    /// The momentum buffer `b`, one value per parameter; `None` before the first step or
    /// without momentum.
    pub fn momentum_buffer(&self) -> Option<&[f32]> {
        // The builder fixes `momentum` before any step, so after a step with momentum the buffer
        // holds one value per parameter.
        (self.momentum != 0.0 && self.progress.started()).then_some(&self.velocity[..])
    }

    /// Forgets the momentum buffer, the step count and the parameter count, as a new optimizer
    /// would.
    pub fn reset(&mut self) {
        self.progress = Progress::default();
        self.velocity.clear();
    }

    /// Checks the settings, with PyTorch's rules.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the learning rate, momentum or weight decay is negative or not
    /// finite, if the dampening is not finite, or if Nesterov momentum is asked for without a
    /// positive momentum and zero dampening.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::optim::Sgd;
    ///
    /// assert!(Sgd::new(0.1).momentum(0.9).nesterov(true).validate().is_ok());
    /// let err = Sgd::new(0.1).nesterov(true).validate().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid nesterov: Nesterov momentum needs a momentum above 0 and a dampening of 0, \
    ///      found momentum 0 and dampening 0"
    /// );
    /// ```
    pub fn validate(&self) -> Result<()> {
        non_negative("learning rate", self.lr)?;
        non_negative("momentum", self.momentum)?;
        non_negative("weight decay", self.weight_decay)?;
        if !self.dampening.is_finite() {
            return Err(Error::Config {
                name: "dampening",
                reason: format!("expected a finite value, found {}", self.dampening),
            });
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::Config {
                name: "nesterov",
                reason: format!(
                    "Nesterov momentum needs a momentum above 0 and a dampening of 0, \
                     found momentum {} and dampening {}",
                    self.momentum, self.dampening
                ),
            });
        }
        Ok(())
    }

    /// Updates `params` in place from their gradients `grads`, as described on [`Sgd`].
    ///
    /// # Errors
    ///
    /// - [`Error::Config`] if the settings are invalid (see [`validate`](Sgd::validate));
    /// - [`Error::Shape`] if `grads` is not as long as `params`, or if `params` is not as long
    ///   as at the first step.
    ///
    /// Nothing is changed when an error is returned.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        self.validate()?;
        self.progress.check("SGD", params.len(), grads)?;
        if self.momentum != 0.0 {
            super::reserve_state("SGD", [&mut self.velocity], params.len())?;
        }
        let first = self.progress.advance(params.len());

        let Sgd {
            lr,
            momentum,
            dampening,
            nesterov,
            weight_decay,
            ..
        } = *self;
        // Every value is updated alike, so the threads' parts do not change the result.
        if momentum == 0.0 {
            parallel::chunks_mut(params, |range, params| {
                for (w, &g) in params.iter_mut().zip(&grads[range]) {
                    let d = if weight_decay != 0.0 {
                        g + weight_decay * *w
                    } else {
                        g
                    };
                    *w -= lr * d;
                }
            });
            return Ok(());
        }

        if first {
            self.velocity.clear();
            self.velocity.resize(params.len(), 0.0);
        }
        let velocity = SharedMut::new(&mut self.velocity);
        parallel::chunks_mut(params, |range, params| {
            // Safety: each task takes the range of the velocity that matches its own part of
            // the parameters; `chunks_mut` returns before the velocity is borrowed again.
            let velocity = unsafe { velocity.slice(range.start, range.len()) };
            for ((w, &g), b) in params.iter_mut().zip(&grads[range]).zip(velocity) {
                let mut d = if weight_decay != 0.0 {
                    g + weight_decay * *w
                } else {
                    g
                };
                *b = if first {
                    d
                } else {
                    momentum * *b + (1.0 - dampening) * d
                };
                d = if nesterov { d + momentum * *b } else { *b };
                *w -= lr * d;
            }
        });
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        "Sgd"
    }

    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        Sgd::step(self, params, grads)
    }

    fn lr(&self) -> f32 {
        self.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn validate(&self) -> Result<()> {
        Sgd::validate(self)
    }

    fn reset(&mut self) {
        Sgd::reset(self);
    }

    fn steps(&self) -> u64 {
        self.progress.steps()
    }

    fn buffer_names(&self) -> &'static [&'static str] {
        if self.momentum != 0.0 {
            &["momentum_buffer"]
        } else {
            &[]
        }
    }

    fn buffers(&self) -> Vec<(&'static str, &[f32])> {
        match self.momentum_buffer() {
            Some(b) => vec![("momentum_buffer", b)],
            None => Vec::new(),
        }
    }

    fn load_buffers(&mut self, steps: u64, buffers: &[&[f32]]) -> Result<()> {
        self.progress = Progress::loaded("SGD", self.buffer_names(), steps, buffers)?;
        match buffers {
            [b] => copy_into(&mut self.velocity, b),
            _ => self.velocity.clear(),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W0: [f32; 3] = [1.0, -2.0, 0.5];
    const A: [f32; 3] = [1.0, 0.5, 3.0];

    /// Runs `steps` steps on `sum(a_i * w_i² / 2)`, whose gradient is `a_i * w_i`, from `W0`.
    fn run(mut sgd: Sgd, steps: usize) -> [f32; 3] {
        let mut w = W0;
        let mut grad = [0.0; 3];
        for _ in 0..steps {
            for ((g, a), w) in grad.iter_mut().zip(A).zip(w) {
                *g = a * w;
            }
            sgd.step(&mut w, &grad).unwrap();
        }
        w
    }

    fn assert_close(found: [f32; 3], expected: [f64; 3]) {
        for (f, e) in found.iter().zip(expected) {
            assert!(
                (f64::from(*f) - e).abs() < 1e-6,
                "found {found:?}, expected {expected:?}"
            );
        }
    }

    // The expected values come from this plain-float implementation of the algorithm
    // documented for `torch.optim.SGD` (PyTorch itself is not needed to run it):
    //
    // ```python
    // def sgd(w, a, steps, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    //     w = list(w)
    //     buf = None
    //     for _ in range(steps):
    //         g = [ai * wi for ai, wi in zip(a, w)]  # gradient of sum(a_i * w_i^2 / 2)
    //         d_p = [gi + weight_decay * wi for gi, wi in zip(g, w)] if weight_decay != 0 else g
    //         if momentum != 0:
    //             if buf is None:
    //                 buf = list(d_p)
    //             else:
    //                 buf = [momentum * b + (1 - dampening) * d for b, d in zip(buf, d_p)]
    //             d_p = [d + momentum * b for d, b in zip(d_p, buf)] if nesterov else buf
    //         w = [wi - lr * d for wi, d in zip(w, d_p)]
    //     return w
    //
    // W0, A = [1.0, -2.0, 0.5], [1.0, 0.5, 3.0]
    // ```

    /// `sgd(W0, A, 3, lr=0.1)`
    #[test]
    fn plain_matches_pytorch() {
        assert_close(
            run(Sgd::new(0.1), 3),
            [0.7290000000000001, -1.71475, 0.17149999999999999],
        );
    }

    /// `sgd(W0, A, 4, lr=0.1, momentum=0.9)`
    #[test]
    fn momentum_matches_pytorch() {
        assert_close(
            run(Sgd::new(0.1).momentum(0.9), 4),
            [0.2268, -1.1625874999999999, -0.3214],
        );
    }

    /// `sgd(W0, A, 4, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)`
    #[test]
    fn nesterov_with_weight_decay_matches_pytorch() {
        let sgd = Sgd::new(0.05)
            .momentum(0.9)
            .nesterov(true)
            .weight_decay(0.01);
        assert_close(
            run(sgd, 4),
            [
                0.46966987195970444,
                -1.424094703946169,
                -0.08353344369909531,
            ],
        );
    }

    /// `sgd(W0, A, 4, lr=0.1, momentum=0.5, dampening=0.3, weight_decay=0.1)`
    #[test]
    fn dampening_with_weight_decay_matches_pytorch() {
        let sgd = Sgd::new(0.1).momentum(0.5).dampening(0.3).weight_decay(0.1);
        assert_close(
            run(sgd, 4),
            [0.5355773306299999, -1.46000015456, -0.0005406454850000048],
        );
    }

    /// `sgd(W0, A, 3, lr=0.1, weight_decay=0.5)`
    #[test]
    fn weight_decay_without_momentum_matches_pytorch() {
        assert_close(
            run(Sgd::new(0.1).weight_decay(0.5), 3),
            [0.6141249999999999, -1.4580000000000002, 0.1373125],
        );
    }

    /// PyTorch starts the buffer at the first gradient, undampened: with μ = 0.9, τ = 0.5 and
    /// a constant gradient 1, the buffer is 1, then 0.9 + 0.5 = 1.4, then 1.26 + 0.5 = 1.76.
    #[test]
    fn dampening_skips_the_first_step() {
        let mut sgd = Sgd::new(1.0).momentum(0.9).dampening(0.5);
        let mut w = [0.0];
        let mut buffers = Vec::new();
        for _ in 0..3 {
            sgd.step(&mut w, &[1.0]).unwrap();
            buffers.push(sgd.momentum_buffer().unwrap()[0]);
        }
        assert_eq!(buffers, [1.0, 1.4, 1.76]);
        assert!((w[0] - -(1.0 + 1.4 + 1.76)).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn momentum_buffer_is_reused_and_reset() {
        let mut sgd = Sgd::new(0.1).momentum(0.9);
        assert_eq!(sgd.momentum_buffer(), None);
        let mut w = [1.0, 2.0];
        sgd.step(&mut w, &[1.0, 1.0]).unwrap();
        let ptr = sgd.momentum_buffer().unwrap().as_ptr();
        sgd.step(&mut w, &[1.0, 1.0]).unwrap();
        assert_eq!(sgd.momentum_buffer().unwrap().as_ptr(), ptr);
        assert_eq!(sgd.momentum_buffer().unwrap(), [1.9, 1.9]);
        sgd.reset();
        assert_eq!(sgd.momentum_buffer(), None);
        // After a reset the first step starts the buffer afresh, at any length.
        sgd.step(&mut [0.0; 3], &[2.0; 3]).unwrap();
        assert_eq!(sgd.momentum_buffer().unwrap(), [2.0; 3]);
        assert_eq!(Sgd::new(0.1).momentum_buffer(), None);
    }

    #[test]
    fn set_lr_keeps_momentum() {
        let mut sgd = Sgd::new(1.0).momentum(0.5);
        let mut w = [0.0];
        sgd.step(&mut w, &[1.0]).unwrap();
        sgd.set_lr(0.1);
        assert_eq!(sgd.lr(), 0.1);
        sgd.step(&mut w, &[1.0]).unwrap();
        // Buffer 0.5 + 1 = 1.5, scaled by the new learning rate.
        assert!((w[0] - -(1.0 + 0.15)).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn invalid_settings_are_config_errors() {
        let cases = [
            (Sgd::new(-0.1), "learning rate"),
            (Sgd::new(f32::NAN), "learning rate"),
            (Sgd::new(0.1).momentum(-0.9), "momentum"),
            (Sgd::new(0.1).weight_decay(-1e-4), "weight decay"),
            (Sgd::new(0.1).weight_decay(f32::INFINITY), "weight decay"),
            (Sgd::new(0.1).dampening(f32::NAN), "dampening"),
            (Sgd::new(0.1).nesterov(true), "nesterov"),
            (
                Sgd::new(0.1).momentum(0.9).dampening(0.1).nesterov(true),
                "nesterov",
            ),
        ];
        for (mut sgd, expected) in cases {
            match sgd.validate() {
                Err(Error::Config { name, .. }) => assert_eq!(name, expected, "{sgd:?}"),
                other => panic!("{sgd:?}: expected a config error, found {other:?}"),
            }
            let mut w = [1.0];
            assert!(matches!(
                sgd.step(&mut w, &[1.0]),
                Err(Error::Config { .. })
            ));
            assert_eq!(w, [1.0], "an invalid optimizer changed a parameter");
        }
    }

    #[test]
    fn length_mismatch_is_a_shape_error() {
        let mut sgd = Sgd::new(0.1).momentum(0.9);
        let mut w = [1.0, 2.0];
        match sgd.step(&mut w, &[1.0]) {
            Err(Error::Shape {
                expected, found, ..
            }) => assert_eq!((expected, found), (vec![2], vec![1])),
            other => panic!("expected a shape error, found {other:?}"),
        }
        assert_eq!(w, [1.0, 2.0]);
        // A failed first step fixes nothing: the next step may still choose the length.
        sgd.step(&mut w, &[1.0, 1.0]).unwrap();
    }

    #[test]
    fn parameter_count_is_fixed_by_the_first_step() {
        for momentum in [0.0, 0.9] {
            let mut sgd = Sgd::new(0.1).momentum(momentum);
            sgd.step(&mut [1.0, 2.0], &[1.0, 1.0]).unwrap();
            let mut w = [1.0, 2.0, 3.0];
            match sgd.step(&mut w, &[1.0; 3]) {
                Err(Error::Shape {
                    expected, found, ..
                }) => assert_eq!((expected, found), (vec![2], vec![3])),
                other => panic!("expected a shape error, found {other:?}"),
            }
            assert_eq!(w, [1.0, 2.0, 3.0]);
        }
    }

    #[test]
    fn empty_parameters_are_fine() {
        let mut sgd = Sgd::new(0.1).momentum(0.9);
        sgd.step(&mut [], &[]).unwrap();
        sgd.step(&mut [], &[]).unwrap();
        assert_eq!(sgd.momentum_buffer(), Some(&[][..]));
    }
}
