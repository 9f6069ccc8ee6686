//! Training against a target array instead of class labels: a network whose output is an
//! image (an autoencoder's reconstruction) trained with [`Loss::Mse`] or
//! [`Loss::BceWithLogits`], against its own input or a clean version of it.

use ndarray::{ArrayView, ArrayViewD};

use super::{StepStats, Trainer};
use crate::ops::loss::Loss;
use crate::optim::Optimizer;
use crate::{Error, Network, Result};

/// `Self` is the type `T`: a bound that holds only between equal types. With the shape types of
/// [`Network::InputShape`] and [`Network::OutputShape`] it is a proof, found by the compiler,
/// that two shapes are equal, and when they are not its error shows both.
#[diagnostic::on_unimplemented(
    message = "the network's output shape `{Self}` is not its input shape `{T}`",
    label = "this needs a network whose output has its input's shape",
    note = "a reconstruction is compared with the input, so the decoder must end at the input's shape; check the last layers' shapes with `-> [..]`"
)]
pub trait SameShape<T> {}

impl<T> SameShape<T> for T {}

/// A network whose output has its input's shape, proved when it compiles: an autoencoder,
/// which [`Trainer::step_reconstruct`] trains to give back its input. Every such network
/// implements it; for any other, naming it is a compile error that shows both shapes.
///
/// ```
/// use striate::prelude::*;
/// use striate::train::Reconstructs;
///
/// network! {
///     struct Ae {
///         input: [1, 8, 8],
///         enc: conv2d(4, kernel = 3, stride = 2, pad = 1), relu,
///         dec: conv_transpose2d(1, kernel = 3, stride = 2, pad = 1, output_pad = 1),
///     }
/// }
///
/// fn autoencoder<N: Reconstructs>() -> &'static [usize] {
///     N::OUTPUT_SHAPE
/// }
/// assert_eq!(autoencoder::<Ae>(), [1, 8, 8]);
/// ```
///
/// A decoder that stops one row short does not compile:
///
/// ```compile_fail
/// use striate::prelude::*;
/// use striate::train::Reconstructs;
///
/// network! {
///     struct Short {
///         input: [1, 8, 8],
///         enc: conv2d(4, kernel = 3, stride = 2, pad = 1), relu,
///         dec: conv_transpose2d(1, kernel = 3, stride = 2, pad = 1),
///     }
/// }
///
/// fn autoencoder<N: Reconstructs>() {}
/// autoencoder::<Short>(); // the output shape `Shape3<1, 7, 7>` is not `Shape3<1, 8, 8>`
/// ```
pub trait Reconstructs: Network {}

impl<N: Network> Reconstructs for N where N::OutputShape: SameShape<N::InputShape> {}

/// Checks that `target` is `[n, ...shape]`, naming both shapes when it is not.
fn check_target(
    what: impl FnOnce() -> String,
    target: &[usize],
    n: usize,
    shape: &[usize],
) -> Result<()> {
    let fits = target.len() == shape.len() + 1 && target[0] == n && target[1..] == *shape;
    if fits {
        return Ok(());
    }
    let mut expected = vec![n];
    expected.extend_from_slice(shape);
    Err(Error::shape(what(), &expected, target))
}

/// The loss of `output` against `target`, two arrays of the same shape, and its gradient with
/// respect to `output` (averaged over every value, as PyTorch's `reduction = "mean"`).
///
/// Allocates the gradient; [`Trainer::step_to`] reuses one instead.
///
/// # Errors
/// [`Error::Shape`] naming both shapes when they differ; [`Error::EmptyBatch`] for no values.
///
/// ```
/// use striate::ndarray::array;
/// use striate::train::{reconstruction_loss, Loss};
///
/// let (loss, d) = reconstruction_loss(array![[1.0f32, 3.0]].view().into_dyn(), array![[0.0f32, 1.0]].view().into_dyn(), Loss::Mse)?;
/// assert_eq!(loss, 2.5);
/// assert_eq!(d.as_slice().unwrap(), &[1.0, 2.0]);
///
/// let wrong = reconstruction_loss(array![[1.0f32, 3.0]].view().into_dyn(), array![[0.0f32]].view().into_dyn(), Loss::Mse);
/// assert!(wrong.unwrap_err().to_string().contains("[1, 2]"));
/// # Ok::<(), striate::Error>(())
/// ```
pub fn reconstruction_loss(
    output: ArrayViewD<'_, f32>,
    target: ArrayViewD<'_, f32>,
    loss: Loss,
) -> Result<(f32, ndarray::ArrayD<f32>)> {
    if output.shape() != target.shape() {
        return Err(Error::shape(
            format!("target of the {} loss (the output's shape)", loss.name()),
            output.shape(),
            target.shape(),
        ));
    }
    let (output, target) = (output.as_standard_layout(), target.as_standard_layout());
    let mut d = ndarray::ArrayD::zeros(output.raw_dim());
    let value = loss.compute(
        d.as_slice_mut().expect("fresh array is contiguous"),
        output.as_slice().expect("standard layout is contiguous"),
        target.as_slice().expect("standard layout is contiguous"),
    )?;
    Ok((value, d))
}

impl<N: Network, O: Optimizer> Trainer<'_, N, O> {
    /// One training step towards `target`, an array of the network's output shape `[N,
    /// ...OUTPUT_SHAPE]`, with `loss`: forward, loss, backward, gradient clipping (if set), the
    /// divergence guard's checks and the optimizer's update, as [`step`](Trainer::step) for
    /// class labels. `correct` in the result is 0: there are no classes. A warm step allocates
    /// nothing.
    ///
    /// # Errors
    /// [`Error::Shape`] naming both shapes for a batch that is not the network's input or a
    /// target that is not its output, and [`Error::Config`] for invalid settings, all before
    /// anything changes; [`Error::Diverged`] for a step the guard refuses, which changes
    /// nothing either.
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    /// use striate::train::Loss;
    ///
    /// network! {
    ///     struct Double { input: [2], fc: linear(2) }
    /// }
    ///
    /// let x = Array2::from_shape_fn((8, 2), |(i, j)| (i + j) as f32 / 8.0);
    /// let target = &x * 2.0;
    /// let mut net = Double::init(0);
    /// let mut trainer = Trainer::new(&mut net, Sgd::new(0.5));
    /// let first = trainer.step_to(x.view(), target.view(), Loss::Mse)?.loss;
    /// let mut last = first;
    /// for _ in 0..200 {
    ///     last = trainer.step_to(x.view(), target.view(), Loss::Mse)?.loss;
    /// }
    /// assert!(last < first / 100.0, "{first} -> {last}");
    ///
    /// let wrong = Array2::<f32>::zeros((8, 3));
    /// let err = trainer.step_to(x.view(), wrong.view(), Loss::Mse).unwrap_err();
    /// assert!(err.to_string().contains("[8, 2]") && err.to_string().contains("[8, 3]"), "{err}");
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn step_to(
        &mut self,
        x: ArrayView<'_, f32, N::InputDim>,
        target: ArrayView<'_, f32, N::OutputDim>,
        loss: Loss,
    ) -> Result<StepStats> {
        let what = || format!("target of {} (its output shape)", N::NAME);
        self.step_towards(x, target.into_dyn(), loss, what)
    }

    /// One training step of an autoencoder: the network, given `input`, is trained to give
    /// back `clean`, a batch of the input's shape: `input` itself to reconstruct it, or a
    /// noisy copy of `clean` to denoise. The compiler proves that the output has the input's
    /// shape ([`Reconstructs`]). Otherwise as [`step_to`](Trainer::step_to).
    ///
    /// # Errors
    /// As [`step_to`](Trainer::step_to), `clean` being checked against `input`'s shape.
    ///
    /// # Example
    /// ```
    /// use striate::prelude::*;
    /// use striate::train::Loss;
    ///
    /// network! {
    ///     struct Ae {
    ///         input: [1, 8, 8],
    ///         enc: conv2d(4, kernel = 3, stride = 2, pad = 1), relu,
    ///         dec: conv_transpose2d(1, kernel = 3, stride = 2, pad = 1, output_pad = 1),
    ///     }
    /// }
    ///
    /// let clean = Array4::from_shape_fn((16, 1, 8, 8), |(n, _, i, j)| ((n + i * j) % 3) as f32 / 2.0);
    /// let noisy = clean.mapv(|v| (v + 0.3).min(1.0));
    /// let mut net = Ae::init(0);
    /// let mut trainer = Trainer::new(&mut net, Adam::new(0.01));
    /// let first = trainer.step_reconstruct(noisy.view(), clean.view(), Loss::BceWithLogits)?.loss;
    /// let mut last = first;
    /// for _ in 0..100 {
    ///     last = trainer.step_reconstruct(noisy.view(), clean.view(), Loss::BceWithLogits)?.loss;
    /// }
    /// assert!(last < first, "{first} -> {last}");
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn step_reconstruct(
        &mut self,
        input: ArrayView<'_, f32, N::InputDim>,
        clean: ArrayView<'_, f32, N::InputDim>,
        loss: Loss,
    ) -> Result<StepStats>
    where
        N: Reconstructs,
    {
        let what = || format!("clean target of {} (its input shape)", N::NAME);
        self.step_towards(input, clean.into_dyn(), loss, what)
    }

    fn step_towards(
        &mut self,
        x: ArrayView<'_, f32, N::InputDim>,
        target: ArrayViewD<'_, f32>,
        loss: Loss,
        what: impl FnOnce() -> String,
    ) -> Result<StepStats> {
        self.check_settings()?;
        let n = x.shape()[0];
        if n == 0 {
            return Err(Error::EmptyBatch {
                what: format!("training step of {}", N::NAME),
            });
        }
        check_target(what, target.shape(), n, N::OUTPUT_SHAPE)?;
        // Borrowed as it is when it is contiguous (the usual case): no copy.
        let target = target.as_standard_layout();
        let target = target.as_slice().expect("standard layout is contiguous");
        if self.guard {
            self.before_step.save(self.net.state());
        }
        let output = self.net.forward_train(x, &mut self.tape)?;
        let output = output.as_slice().expect("tape output is contiguous");
        let mut d_out = std::mem::take(&mut self.d_out);
        d_out.resize(output.len(), 0.0);
        let value = loss.compute(&mut d_out, output, target);
        let result = value.and_then(|value| {
            self.backward_and_update(&d_out, n, value, 0)
                .map(|s| s.loss)
        });
        self.d_out = d_out;
        Ok(StepStats {
            loss: result?,
            correct: 0,
            samples: n,
        })
    }
}
