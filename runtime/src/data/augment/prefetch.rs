//! Augmentation ahead of training: with a core to spare, a worker thread gathers and augments
//! the next batches while the caller trains on the current one, through a bounded channel of
//! reused buffers; without one, each batch is augmented when it is asked for, its samples split
//! over the kernels' threads, which the training step would otherwise share with the worker.

use std::marker::PhantomData;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use ndarray::ArrayView4;

use super::{Augmentation, ImageShape};
use crate::data::Dataset;
use crate::ops::parallel;
use crate::{Error, Result};

/// Batches made ready ahead of the one being trained on.
const AHEAD: usize = 2;

/// One batch's images and labels, reused from batch to batch.
#[derive(Default)]
struct Buffers {
    images: Vec<f32>,
    labels: Vec<usize>,
}

/// An augmented batch from a [`Prefetch`]: its images `[N, C, H, W]` and labels. Dropping it
/// hands its buffers back to the worker for a later batch.
pub struct AugmentedBatch<'scope> {
    buffers: Option<Buffers>,
    home: SyncSender<Buffers>,
    shape: ImageShape,
    _scope: PhantomData<&'scope ()>,
}

impl AugmentedBatch<'_> {
    /// The augmented images, `[N, C, H, W]`.
    pub fn images(&self) -> ArrayView4<'_, f32> {
        let s = self.shape;
        ArrayView4::from_shape(
            (self.labels().len(), s.channels, s.height, s.width),
            self.images_flat(),
        )
        .expect("the worker gathered N samples of the dataset's shape")
    }

    /// The augmented images, flat in `(N, C, H, W)` order.
    pub fn images_flat(&self) -> &[f32] {
        &self.buffers.as_ref().expect("held until dropped").images
    }

    /// One label per image.
    pub fn labels(&self) -> &[usize] {
        &self.buffers.as_ref().expect("held until dropped").labels
    }
}

impl Drop for AugmentedBatch<'_> {
    fn drop(&mut self) {
        if let Some(buffers) = self.buffers.take() {
            // The channel holds every buffer there is, so it is never full; an error means the
            // worker has finished, and the buffers are no longer needed.
            let _ = self.home.try_send(buffers);
        }
    }
}

/// The augmented batches of one epoch, in order, as a worker thread or the kernels' threads
/// make them: an iterator of `Result<AugmentedBatch>`, from [`Augmentation::prefetch`]. After
/// an error it ends.
pub struct Prefetch<'scope> {
    source: Source<'scope>,
}

enum Source<'scope> {
    /// Batches a worker thread made ahead.
    Worker(Receiver<Result<AugmentedBatch<'scope>>>),
    /// Batches made on demand on the kernels' threads.
    Here(Here<'scope>),
}

/// What [`Prefetch`] needs to make each batch when it is asked for.
struct Here<'scope> {
    augmentation: &'scope mut Augmentation,
    data: &'scope Dataset,
    chunks: std::slice::Chunks<'scope, usize>,
    shape: ImageShape,
    epoch: usize,
    /// Buffers handed back by dropped batches.
    free: Receiver<Buffers>,
    home: SyncSender<Buffers>,
    failed: bool,
}

impl<'scope> Iterator for Prefetch<'scope> {
    type Item = Result<AugmentedBatch<'scope>>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.source {
            Source::Worker(ready) => ready.recv().ok(),
            Source::Here(here) => here.next(),
        }
    }
}

impl<'scope> Here<'scope> {
    fn next(&mut self) -> Option<Result<AugmentedBatch<'scope>>> {
        if self.failed {
            return None;
        }
        let chunk = self.chunks.next()?;
        // A batch still held keeps its buffers; only then is a new set made.
        let mut buffers = self.free.try_recv().unwrap_or_default();
        if let Err(e) = self
            .data
            .gather(chunk, &mut buffers.images, &mut buffers.labels)
        {
            self.failed = true;
            return Some(Err(e));
        }
        let threads = parallel::threads();
        self.augmentation
            .apply_flat(&mut buffers.images, self.shape, self.epoch, chunk, threads);
        Some(Ok(AugmentedBatch {
            buffers: Some(buffers),
            home: self.home.clone(),
            shape: self.shape,
            _scope: PhantomData,
        }))
    }
}

impl Augmentation {
    /// Runs `consume` on the batches of `data` taken in `order` (indices into `data`, in
    /// batches of `batch`, the last one smaller), each augmented as epoch `epoch`. Returns what
    /// `consume` returns, once every batch it asked for is made.
    ///
    /// When the kernels use fewer threads ([`set_threads`](crate::ops::parallel::set_threads)) than the
    /// machine has cores, a worker thread on a spare core keeps up to two batches ready ahead
    /// of the one `consume` is on, so augmentation costs the training step nothing. When they
    /// use every core, a worker would take a core from the training step, whose threads wait
    /// for each other, stalling both; so each batch is instead augmented when `consume` asks
    /// for it, its samples split over the kernels' threads.
    ///
    /// Each batch is exactly what [`Dataset::gather`] then [`Augmentation::apply`] give, whatever
    /// the threads and their timing. Three buffers go round between the worker and `consume`
    /// (one, when there is no worker), so in the steady state no batch allocates.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero batch, or images with a plane of 2^31 pixels or more. An
    /// index of `order` outside `data` shows as an error item where its batch would be.
    ///
    /// # Example
    ///
    /// ```
    /// use striate::data::augment::Augmentation;
    /// use striate::data::{shuffled_indices, Mnist};
    ///
    /// let digits = Mnist::builtin().train.take(100);
    /// let order = shuffled_indices(digits.len(), 0);
    /// let mut augmentation = Augmentation::digits(5);
    /// let seen = augmentation.prefetch(&digits, &order, 32, 0, |batches| {
    ///     let mut seen = 0;
    ///     for batch in batches {
    ///         let batch = batch?;
    ///         assert_eq!(batch.images().shape()[1..], [1, 28, 28]);
    ///         seen += batch.labels().len(); // a training step goes here
    ///     }
    ///     Ok::<_, striate::Error>(seen)
    /// })??;
    /// assert_eq!(seen, 100);
    /// # Ok::<(), striate::Error>(())
    /// ```
    pub fn prefetch<R>(
        &mut self,
        data: &Dataset,
        order: &[usize],
        batch: usize,
        epoch: usize,
        consume: impl for<'scope> FnOnce(Prefetch<'scope>) -> R,
    ) -> Result<R> {
        Error::check_batch(batch)?;
        let shape = ImageShape::from(data.sample_shape());
        shape.check()?;
        let (ready_tx, ready) = sync_channel(AHEAD);
        let (home, free) = sync_channel::<Buffers>(AHEAD + 1);
        for _ in 0..=AHEAD {
            home.try_send(Buffers::default())
                .expect("the channel holds every buffer");
        }
        if parallel::threads() >= parallel::cores() {
            return Ok(consume(Prefetch {
                source: Source::Here(Here {
                    augmentation: self,
                    data,
                    chunks: order.chunks(batch),
                    shape,
                    epoch,
                    free,
                    home,
                    failed: false,
                }),
            }));
        }
        let worker = &mut *self;
        Ok(std::thread::scope(|scope| {
            scope.spawn(move || {
                for chunk in order.chunks(batch) {
                    // Every buffer is in this channel, in `ready` or held as a batch; those in
                    // `ready` come back when `consume` ends and the receiver drops them.
                    let Ok(mut buffers) = free.recv() else {
                        return;
                    };
                    let gathered = data.gather(chunk, &mut buffers.images, &mut buffers.labels);
                    let stop = gathered.is_err();
                    let item = gathered.map(|()| {
                        // One task: the pool is the training step's.
                        worker.apply_flat(&mut buffers.images, shape, epoch, chunk, 1);
                        AugmentedBatch {
                            buffers: Some(buffers),
                            home: home.clone(),
                            shape,
                            _scope: PhantomData,
                        }
                    });
                    if ready_tx.send(item).is_err() || stop {
                        return;
                    }
                }
            });
            consume(Prefetch {
                source: Source::Worker(ready),
            })
        }))
    }
}
