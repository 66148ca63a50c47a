//! criterion benches: `cargo bench --bench bench_main`.
use criterion::criterion_main;

mod benchmarks;

#[cfg(not(feature = "candle"))]
criterion_main!(
    benchmarks::path_kl::benches,
    benchmarks::metrics::benches,
    benchmarks::sampler::benches
);
#[cfg(feature = "candle")]
criterion_main!(
    benchmarks::path_kl::benches,
    benchmarks::metrics::benches,
    benchmarks::sampler::benches,
    benchmarks::tensor::benches
);
