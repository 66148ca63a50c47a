//! criterion benches: `cargo bench --bench bench_main`.
use criterion::criterion_main;

/// The binaries' allocator (see src/bin/common/mod.rs), so benches time what they run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
