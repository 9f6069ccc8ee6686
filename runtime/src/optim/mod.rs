//! Optimizers and learning-rate schedules.
//!
//! [`Sgd`] updates a flat slice of parameters from a slice of gradients of the same length, with
//! PyTorch's `torch.optim.SGD` semantics; [`LrSchedule`] gives the learning rate of each epoch,
//! as PyTorch's `StepLR` and `ExponentialLR` do.
//!
//! # Example
//!
//! ```
//! use striate::optim::{LrSchedule, Sgd};
//!
//! let base_lr = 0.1;
//! let schedule = LrSchedule::Exponential { gamma: 0.9 };
//! schedule.validate()?;
//! let mut sgd = Sgd::new(base_lr).momentum(0.9).weight_decay(5e-4);
//! let mut params = vec![0.5_f32; 4];
//! let mut grads = vec![0.0_f32; 4];
//! for epoch in 0..3 {
//!     sgd.set_lr(schedule.lr_at(base_lr, epoch));
//!     grads.fill(1.0); // the backward pass would write these
//!     sgd.step(&mut params, &grads)?;
//! }
//! assert!(params.iter().all(|&w| w < 0.5));
//! # Ok::<(), striate::Error>(())
//! ```

mod schedule;
mod sgd;

pub use schedule::LrSchedule;
pub use sgd::Sgd;
