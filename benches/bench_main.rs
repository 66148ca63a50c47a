//! criterion benches: `cargo bench --bench bench_main`.
use criterion::criterion_main;

mod benchmarks;

criterion_main!(
    benchmarks::path_kl::benches,
    benchmarks::metrics::benches,
    benchmarks::sampler::benches
);
