//! What augmenting one digit costs, pipeline by pipeline, on the built-in digits (64 a batch,
//! one thread, as the prefetch worker runs them):
//!
//! ```text
//! cargo bench -p striate-runtime --bench augment -- --quick
//! ```
//!
//! The elements per second criterion reports are digits per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use striate_runtime::data::augment::{Augmentation, Elastic, Intensity, Rotate, Scale, Translate};
use striate_runtime::data::Mnist;

fn augment(c: &mut Criterion) {
    let digits = Mnist::builtin().train.take(64);
    let indices: Vec<usize> = (0..64).collect();
    let pipelines = [
        (
            "affine",
            Augmentation::new(1)
                .then(Translate::default())
                .then(Rotate::default())
                .then(Scale::default()),
        ),
        ("elastic", Augmentation::new(1).then(Elastic::default())),
        ("intensity", Augmentation::new(1).then(Intensity::default())),
        ("digits", Augmentation::digits(1)),
    ];
    let mut group = c.benchmark_group("augment");
    group.throughput(Throughput::Elements(64));
    for (name, mut pipeline) in pipelines {
        let mut images = digits.images().to_owned();
        let mut epoch = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                images.assign(&digits.images());
                epoch += 1;
                pipeline
                    .apply(images.view_mut(), epoch, &indices)
                    .expect("one index a digit");
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = augment
}
criterion_main!(benches);
