//! Data augmentation: seeded random changes to each training image, applied batch by batch as
//! training runs, never to the test set.
//!
//! An [`Augmentation`] is a pipeline of steps, each an [`Augment`]: [`Translate`],
//! [`Rotate`], [`Scale`], [`Flip`], [`Elastic`], [`Intensity`] and [`Crop`], each with its
//! settings checked when made. What a step does to a sample depends only on the pipeline's
//! seed, the epoch, the sample's index in the dataset and the step's place in the pipeline,
//! never on the batch size, the threads or their timing: the same seed gives the same images.
//!
//! [`Trainer::augment`](crate::train::Trainer::augment) trains with one: each epoch, a worker
//! thread on a spare core gathers and augments the next batches while the network trains on
//! the current one, or, with every core training, the kernels' threads augment each batch as
//! it is needed ([`Augmentation::prefetch`]).
//!
//! # Example
//!
//! ```
//! use striate::data::augment::{Augmentation, Elastic, Rotate, Translate};
//! use striate::prelude::*;
//!
//! let augmentation = Augmentation::new(7)
//!     .then(Translate::pixels(-2.0..=2.0)?)
//!     .then(Rotate::degrees(-10.0..=10.0)?)
//!     .then(Elastic::new(34.0, 4.0)?);
//!
//! // By hand, on a batch: samples 0..8 of the dataset, in epoch 0.
//! let digits = Mnist::builtin().train.take(8);
//! let mut batch = digits.images().to_owned();
//! let mut by_hand = augmentation.clone();
//! by_hand.apply(batch.view_mut(), 0, &[0, 1, 2, 3, 4, 5, 6, 7])?;
//! assert_ne!(batch, digits.images());
//!
//! // The same seed, epoch and samples give the same images, however they are batched.
//! let mut again = digits.images().to_owned();
//! let mut other = augmentation.clone();
//! other.apply(again.slice_mut(striate::ndarray::s![..4, .., .., ..]), 0, &[0, 1, 2, 3])?;
//! other.apply(again.slice_mut(striate::ndarray::s![4.., .., .., ..]), 0, &[4, 5, 6, 7])?;
//! assert_eq!(again, batch);
//! # Ok::<(), striate::Error>(())
//! ```

mod crop;
mod elastic;
mod flip;
mod intensity;
mod prefetch;
mod rotate;
mod sample;
mod scale;
mod translate;

use std::fmt;
use std::sync::Arc;

use ndarray::ArrayViewMut4;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

pub use crop::Crop;
pub use elastic::Elastic;
pub use flip::Flip;
pub use intensity::Intensity;
pub use prefetch::{AugmentedBatch, Prefetch};
/// The generator an [`Augment`] step draws from (rand's), re-exported for steps of your own.
pub use rand::RngCore;
pub use rotate::Rotate;
use sample::warp_along;
pub use sample::{Affine, ImageShape};
pub use scale::Scale;
pub use translate::Translate;

use crate::ops::parallel::{self, SharedMut};
use crate::{Error, Result};

/// One step of an [`Augmentation`]: a random change to one image.
///
/// Implement [`affine`](Augment::affine) for a step that only moves pixels by an affine map
/// (a shift, turn, zoom or mirror), and [`apply`](Augment::apply) for any other. The pipeline
/// composes consecutive affine steps into one map and resamples once, so that a chain of
/// them blurs no more than one of them and no corner is lost to the frame between two; a step
/// that moves pixels along a field of its own ([`displacement`](Augment::displacement))
/// joins that resampling too. It
/// gives each call its own seeded generator, so the step needs no state of its own.
pub trait Augment: fmt::Debug + Send + Sync {
    /// Writes into `out` the image `input` changed, both one sample `[C, H, W]` of `shape`,
    /// flat; every value of `out` must be written. Draw randomness from `rng` only. `scratch`
    /// is the step's to use, kept from call to call: grow it with `resize` and it stops
    /// allocating once it is large enough.
    ///
    /// The default resamples `input` bilinearly (0 outside it) where
    /// [`affine`](Augment::affine) says.
    ///
    /// # Panics
    /// The default panics for a step whose `affine` gives `None`: such a step must implement
    /// `apply`.
    fn apply(
        &self,
        out: &mut [f32],
        input: &[f32],
        shape: ImageShape,
        rng: &mut dyn RngCore,
        scratch: &mut Vec<f32>,
    ) {
        let _ = scratch;
        self.affine(shape, rng)
            .expect("a step implements `affine` or `apply`")
            .warp(out, input, shape);
    }

    /// For a step that only moves pixels: where each output pixel `(row, column)` of this
    /// sample reads the input, drawing randomness from `rng` as [`apply`](Augment::apply)
    /// would. The pipeline then calls this instead of `apply`. The default, `None`, is for
    /// every other step.
    fn affine(&self, shape: ImageShape, rng: &mut dyn RngCore) -> Option<Affine> {
        let _ = (shape, rng);
        None
    }

    /// For a step that moves each pixel along a field of its own (as [`Elastic`] does):
    /// fills `field`, `[2, H, W]`, with how far each output pixel's reading point lies from
    /// it, in rows then in columns, drawing from `rng` as [`apply`](Augment::apply) would, and
    /// returns `true`; the pipeline then resamples once for this step and the affine steps
    /// just before it, instead of calling `apply`. The default draws nothing and returns
    /// `false`.
    fn displacement(
        &self,
        field: &mut [f32],
        shape: ImageShape,
        rng: &mut dyn RngCore,
        scratch: &mut Vec<f32>,
    ) -> bool {
        let _ = (field, shape, rng, scratch);
        false
    }
}

/// A boxed step is a step, so that steps of different types can be chosen at run time.
impl<A: Augment + ?Sized> Augment for Box<A> {
    fn apply(
        &self,
        out: &mut [f32],
        input: &[f32],
        shape: ImageShape,
        rng: &mut dyn RngCore,
        scratch: &mut Vec<f32>,
    ) {
        (**self).apply(out, input, shape, rng, scratch)
    }

    fn affine(&self, shape: ImageShape, rng: &mut dyn RngCore) -> Option<Affine> {
        (**self).affine(shape, rng)
    }

    fn displacement(
        &self,
        field: &mut [f32],
        shape: ImageShape,
        rng: &mut dyn RngCore,
        scratch: &mut Vec<f32>,
    ) -> bool {
        (**self).displacement(field, shape, rng, scratch)
    }
}

/// A seeded pipeline of [`Augment`] steps, applied in the order they were added to each
/// sample of a batch `[N, C, H, W]`.
///
/// It keeps its working buffers between calls, so that once they have grown to the images'
/// size, augmenting a batch allocates nothing. Cloning it shares the steps and gives the
/// clone buffers of its own. See the [module](self) for an example, and
/// [`Augmentation::digits`] for a ready pipeline.
#[derive(Clone)]
pub struct Augmentation {
    seed: u64,
    steps: Vec<Arc<dyn Augment>>,
    /// One set of buffers per task that augments samples at once ([`Augmentation::apply_flat`]).
    work: Vec<Work>,
}

/// The buffers one task augments its samples in, grown once to the images' size.
#[derive(Clone, Default)]
struct Work {
    /// The sample being changed and the next version of it.
    image: Vec<f32>,
    next: Vec<f32>,
    /// A displacement field, `[2, H, W]` ([`Augment::displacement`]).
    field: Vec<f32>,
    scratch: Vec<f32>,
}

impl fmt::Debug for Augmentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Augmentation")
            .field("seed", &self.seed)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Augmentation {
    /// An empty pipeline (it changes nothing) whose randomness comes from `seed`.
    pub fn new(seed: u64) -> Self {
        Augmentation {
            seed,
            steps: Vec::new(),
            work: Vec::new(),
        }
    }

    /// The lecture's augmentations for handwritten digits, each at its default: translation
    /// by up to 2 pixels, rotation by up to 15 degrees, scaling by 0.9 to 1.1, elastic
    /// deformation (`alpha = 34`, `sigma = 4`) and intensity variation. No flips (a mirrored
    /// digit is seldom a digit) and no crop (the translation does its work).
    pub fn digits(seed: u64) -> Self {
        Augmentation::new(seed)
            .then(Translate::default())
            .then(Rotate::default())
            .then(Scale::default())
            .then(Elastic::default())
            .then(Intensity::default())
    }

    /// The pipeline with `step` added at the end.
    pub fn then(mut self, step: impl Augment + 'static) -> Self {
        self.steps.push(Arc::new(step));
        self
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Makes the pipeline's randomness come from `seed` (a resumed run's, from its checkpoint).
    pub(crate) fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    /// The steps, in order.
    pub fn steps(&self) -> impl ExactSizeIterator<Item = &dyn Augment> {
        self.steps.iter().map(|step| &**step)
    }

    /// Changes every sample of `images` `[N, C, H, W]` in place: `indices[i]` is sample
    /// `i`'s index in its dataset, which with `epoch` and the seed decides what is done to it.
    /// The samples are split over the kernels' threads ([`set_threads`](crate::ops::parallel::set_threads)),
    /// which changes no result. Once the pipeline's buffers have grown to the images' size it allocates nothing, for
    /// images in standard layout; a view of another layout is copied sample by sample.
    ///
    /// # Errors
    /// [`Error::LabelCount`] unless there is one index per sample; [`Error::Config`] for
    /// images with a plane of 2^31 pixels or more.
    pub fn apply(
        &mut self,
        mut images: ArrayViewMut4<'_, f32>,
        epoch: usize,
        indices: &[usize],
    ) -> Result<()> {
        let (n, c, h, w) = images.dim();
        if indices.len() != n {
            return Err(Error::LabelCount {
                expected: n,
                found: indices.len(),
            });
        }
        let shape = ImageShape::from([c, h, w]);
        shape.check()?;
        match images.as_slice_mut() {
            Some(flat) => self.apply_flat(flat, shape, epoch, indices, parallel::threads()),
            None => {
                for (mut sample, &index) in images.outer_iter_mut().zip(indices) {
                    let mut flat: Vec<f32> = sample.iter().copied().collect();
                    self.apply_flat(&mut flat, shape, epoch, &[index], 1);
                    sample
                        .iter_mut()
                        .zip(flat)
                        .for_each(|(pixel, v)| *pixel = v);
                }
            }
        }
        Ok(())
    }

    /// [`apply`](Augmentation::apply) on flat `(N, C, H, W)` images, one index per sample,
    /// the samples split over up to `tasks` tasks of the kernels' thread pool (run one after
    /// the other when the pool is busy). Each sample's result depends on its index only, so
    /// the split changes no bit.
    pub(crate) fn apply_flat(
        &mut self,
        images: &mut [f32],
        shape: ImageShape,
        epoch: usize,
        indices: &[usize],
        tasks: usize,
    ) {
        debug_assert_eq!(images.len(), indices.len() * shape.len());
        if self.steps.is_empty() || shape.is_empty() {
            return;
        }
        let n = indices.len();
        let tasks = tasks.clamp(1, n.max(1));
        if self.work.len() < tasks {
            self.work.resize_with(tasks, Work::default);
        }
        let epoch_seed = mix(self.seed ^ mix(epoch as u64));
        let steps = &self.steps[..];
        if tasks == 1 {
            self.work[0].augment(steps, images, shape, epoch_seed, indices);
            return;
        }
        let (images_all, work) = (SharedMut::new(images), SharedMut::new(&mut self.work));
        parallel::run(tasks, |t| {
            let samples = parallel::part(n, tasks, t);
            // Safety: task `t` alone touches its samples' part of the images and its own
            // buffers; `run` returns before either is borrowed again.
            let (images, work) = unsafe {
                (
                    images_all.slice(samples.start * shape.len(), samples.len() * shape.len()),
                    &mut work.slice(t, 1)[0],
                )
            };
            work.augment(steps, images, shape, epoch_seed, &indices[samples]);
        });
    }
}

impl Work {
    /// Runs `steps` on each sample of `images` (flat, one index per sample), whose randomness
    /// comes from `epoch_seed` and the sample's index.
    fn augment(
        &mut self,
        steps: &[Arc<dyn Augment>],
        images: &mut [f32],
        shape: ImageShape,
        epoch_seed: u64,
        indices: &[usize],
    ) {
        self.image.resize(shape.len(), 0.0);
        self.next.resize(shape.len(), 0.0);
        for (sample, &index) in images.chunks_exact_mut(shape.len()).zip(indices) {
            let sample_seed = mix(epoch_seed ^ mix(index as u64 ^ 0xA5A5_0000));
            self.image.copy_from_slice(sample);
            // The affine steps since the last resampling, composed: where the image so far
            // reads `self.image`.
            let mut pending: Option<Affine> = None;
            for (place, step) in steps.iter().enumerate() {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(sample_seed ^ place as u64));
                if let Some(map) = step.affine(shape, &mut rng) {
                    pending = Some(pending.map_or(map, |before| before.after(&map)));
                    continue;
                }
                self.field.resize(2 * shape.plane(), 0.0);
                if step.displacement(&mut self.field, shape, &mut rng, &mut self.scratch) {
                    let before = pending.take().unwrap_or(Affine::IDENTITY);
                    warp_along(&mut self.next, &self.image, shape, &self.field, &before);
                    std::mem::swap(&mut self.image, &mut self.next);
                    continue;
                }
                if let Some(map) = pending.take() {
                    map.warp_in_place(&mut self.image, &mut self.next, shape);
                }
                step.apply(
                    &mut self.next,
                    &self.image,
                    shape,
                    &mut rng,
                    &mut self.scratch,
                );
                std::mem::swap(&mut self.image, &mut self.next);
            }
            if let Some(map) = pending {
                map.warp_in_place(&mut self.image, &mut self.next, shape);
            }
            sample.copy_from_slice(&self.image);
        }
    }
}
