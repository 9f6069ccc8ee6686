//! The kernels on their own, at LeNet-5 and AlexNet sizes (conv1, fc7), so that a kernel change can be
//! judged without the whole network:
//!
//! ```text
//! cargo bench -p striate-runtime --bench kernels -- --quick
//! cargo bench -p striate-runtime --bench kernels -- conv2d/alexnet --quick
//! ```
//!
//! Batch 64 for LeNet's layers (its training batch), 8 for AlexNet's conv1, and for the linear
//! layers' forward also 1, 4, 8 and 16 (`forward_b*`: inference latency, where the layers switch
//! from dot products to the packed product); one thread unless `STRIATE_THREADS` says otherwise.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use striate_geometry::Rounding;
use striate_runtime::ops::conv2d::{self, Conv2dGeom};
use striate_runtime::ops::linear::{self, LinearGeom};
use striate_runtime::ops::pool::{self, Pool2dGeom};

/// Deterministic values in `[-1, 1)`.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn threads() {
    let n = std::env::var("STRIATE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    striate_runtime::ops::parallel::set_threads(n)
        .expect("STRIATE_THREADS is a thread count this machine can start");
}

fn conv(c: &mut Criterion, name: &str, g: Conv2dGeom, n: usize) {
    let x = values(n * g.in_len(), 1);
    let w = values(g.weight_len(), 2);
    let b = values(g.out_c, 3);
    let d_y = values(n * g.out_len(), 4);
    let mut y = vec![0.0; n * g.out_len()];
    let (mut d_x, mut d_w, mut d_b) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
    let mut scratch = Vec::new();
    let mut group = c.benchmark_group(format!("conv2d/{name}"));
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("forward", |bench| {
        bench.iter(|| conv2d::forward(&mut y, black_box(&x), &w, Some(&b), &g, n, &mut scratch))
    });
    group.bench_function("backward", |bench| {
        bench.iter(|| {
            conv2d::backward(
                Some(&mut d_x),
                &mut d_w,
                Some(&mut d_b),
                black_box(&d_y),
                &x,
                &w,
                &g,
                n,
                &mut scratch,
            )
        })
    });
    group.bench_function("backward_no_dx", |bench| {
        bench.iter(|| {
            conv2d::backward(
                None,
                &mut d_w,
                Some(&mut d_b),
                black_box(&d_y),
                &x,
                &w,
                &g,
                n,
                &mut scratch,
            )
        })
    });
    group.finish();
}

fn pooling(c: &mut Criterion, name: &str, g: Pool2dGeom, n: usize) {
    let x = values(n * g.in_len(), 5);
    let d_y = values(n * g.out_len(), 6);
    let mut y = vec![0.0; n * g.out_len()];
    let mut argmax = vec![0u32; y.len()];
    let mut d_x = vec![0.0; x.len()];
    let mut group = c.benchmark_group(format!("max_pool/{name}"));
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("forward", |bench| {
        bench.iter(|| pool::max_forward(&mut y, &mut argmax, black_box(&x), &g, n))
    });
    group.bench_function("backward", |bench| {
        bench.iter(|| pool::max_backward(&mut d_x, black_box(&d_y), &argmax, &g, n))
    });
    group.finish();
}

fn dense(c: &mut Criterion, name: &str, g: LinearGeom, n: usize) {
    let x = values(n * g.in_f, 7);
    let w = values(g.weight_len(), 8);
    let b = values(g.out_f, 9);
    let d_y = values(n * g.out_f, 10);
    let mut y = vec![0.0; n * g.out_f];
    let (mut d_x, mut d_w, mut d_b) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
    let mut scratch = Vec::new();
    let mut group = c.benchmark_group(format!("linear/{name}"));
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("forward", |bench| {
        bench.iter(|| linear::forward(&mut y, black_box(&x), &w, Some(&b), &g, n, &mut scratch))
    });
    // Small batches (inference latency): the rows given by the first samples.
    for rows in [1, 4, 8, 16] {
        group.bench_function(format!("forward_b{rows}"), |bench| {
            bench.iter(|| {
                linear::forward(
                    &mut y[..rows * g.out_f],
                    black_box(&x[..rows * g.in_f]),
                    &w,
                    Some(&b),
                    &g,
                    rows,
                    &mut scratch,
                )
            })
        });
    }
    group.bench_function("backward", |bench| {
        bench.iter(|| {
            linear::backward(
                Some(&mut d_x),
                &mut d_w,
                Some(&mut d_b),
                black_box(&d_y),
                &x,
                &w,
                &g,
                n,
                &mut scratch,
            )
        })
    });
    group.finish();
}

fn kernels(c: &mut Criterion) {
    threads();
    let exact = Rounding::Exact;
    conv(
        c,
        "lenet1",
        Conv2dGeom::new([1, 28, 28], 6, [5, 5], [1, 1], [2, 2], exact),
        64,
    );
    conv(
        c,
        "lenet2",
        Conv2dGeom::new([6, 14, 14], 16, [5, 5], [1, 1], [0, 0], exact),
        64,
    );
    conv(
        c,
        "alexnet1",
        Conv2dGeom::new([3, 227, 227], 96, [11, 11], [4, 4], [0, 0], exact),
        8,
    );
    pooling(
        c,
        "lenet1",
        Pool2dGeom::new([6, 28, 28], [2, 2], [2, 2], [0, 0], exact),
        64,
    );
    pooling(
        c,
        "lenet2",
        Pool2dGeom::new([16, 10, 10], [2, 2], [2, 2], [0, 0], exact),
        64,
    );
    dense(
        c,
        "lenet_fc1",
        LinearGeom {
            in_f: 400,
            out_f: 120,
        },
        64,
    );
    dense(
        c,
        "lenet_fc2",
        LinearGeom {
            in_f: 120,
            out_f: 84,
        },
        64,
    );
    dense(
        c,
        "lenet_fc3",
        LinearGeom {
            in_f: 84,
            out_f: 10,
        },
        64,
    );
    // Large enough for the packed product (AlexNet's fc7).
    dense(
        c,
        "alexnet_fc7",
        LinearGeom {
            in_f: 4096,
            out_f: 4096,
        },
        64,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = kernels
}
criterion_main!(benches);
