//! Metrics benches: unbiased MMD² with the five default bandwidths (fast path) and with a
//! generic set of five, at n = m = 2000 in D = 2 (seeded Gaussian samples).
use std::hint::black_box;

use covlab::data::mixture::Mixture;
use covlab::stats::{mmd2_unbiased, MMD_BANDWIDTHS};
use criterion::{criterion_group, Criterion};
use nalgebra::{DMatrix, DVector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn samples(n: usize) -> (Vec<DVector<f64>>, Vec<DVector<f64>>) {
    let gauss = |shift: f64| {
        Mixture::from_dense(
            vec![1.0],
            vec![DVector::from_vec(vec![shift, 0.0])],
            vec![DMatrix::identity(2, 2)],
        )
        .expect("valid Gaussian")
    };
    let mut rng = ChaCha8Rng::seed_from_u64(2000);
    (
        gauss(0.0).sample(&mut rng, n),
        gauss(0.5).sample(&mut rng, n),
    )
}

fn mmd(c: &mut Criterion) {
    let (x, y) = samples(2000);
    let mut g = c.benchmark_group("metrics");
    g.sample_size(20);
    g.bench_function("mmd2_default_n2000_d2", |b| {
        b.iter(|| {
            black_box(mmd2_unbiased(black_box(&x), black_box(&y), &MMD_BANDWIDTHS).expect("ok"))
        })
    });
    let generic = [0.3, 0.6, 1.2, 2.4, 4.8];
    g.bench_function("mmd2_generic5_n2000_d2", |b| {
        b.iter(|| black_box(mmd2_unbiased(black_box(&x), black_box(&y), &generic).expect("ok")))
    });
    g.finish();
}

criterion_group!(benches, mmd);
