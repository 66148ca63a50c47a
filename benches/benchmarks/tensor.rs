//! Tensor-path benches (feature `candle`, CPU device) against the f64 core on synth3x32
//! (D = 3072, K = 4, r = 6), batch 256: score evaluations and LGS-3 noise (three C v
//! products, batched Lanczos) per call.
use std::hint::black_box;
use std::sync::Arc;

use covlab::data::images;
use covlab::linalg::{lanczos, LanczosParams, LinearOperator};
use covlab::score::LocalScore;
use covlab::tensor::candle_core::Device;
use covlab::tensor::candle_core::Tensor;
use covlab::tensor::{batch, lanczos_batched, TensorError, TensorMixture};
use criterion::{criterion_group, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

struct Op<'a> {
    local: &'a covlab::score::LowRankLocal,
    a2: f64,
    b: f64,
}

impl LinearOperator for Op<'_> {
    fn dim(&self) -> usize {
        self.local.score().len()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        self.local.hvp(v, out);
        covlab::kernel::posterior::hvp_to_cov(out, v, self.a2, self.b);
    }
}

fn tensor(c: &mut Criterion) {
    let ln_abar: f64 = -1.0;
    let (a2, b) = (0.9, 0.1);
    let q = Arc::new(
        images::load("synth3x32")
            .expect("preset")
            .marginal(ln_abar)
            .expect("marginal"),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let xs: Vec<Vec<f64>> = q
        .sample(&mut rng, 256)
        .iter()
        .map(|x| x.as_slice().to_vec())
        .collect();
    let zs: Vec<Vec<f64>> = (0..256)
        .map(|_| {
            (0..3072)
                .map(|_| rng.sample(rand_distr::StandardNormal))
                .collect()
        })
        .collect();
    let dev = Device::Cpu;
    let tm = TensorMixture::new(&q, &dev).expect("upload");
    let x = batch(&xs, &dev).expect("batch");
    let z = batch(&zs, &dev).expect("batch");
    let mut g = c.benchmark_group("tensor_d3072_n256");
    g.sample_size(10);
    g.bench_function("candle_cpu_score", |bch| {
        bch.iter(|| black_box(tm.score(&x).expect("score")))
    });
    g.bench_function("f64_core_score", |bch| {
        bch.iter(|| {
            black_box(
                xs.par_iter()
                    .map(|xi| q.local(xi).expect("local").score().to_vec())
                    .collect::<Vec<_>>(),
            )
        })
    });
    g.bench_function("candle_cpu_lgs3_noise", |bch| {
        bch.iter(|| {
            let parts = tm.parts(&x).expect("score");
            let geom = tm.cov_geometry(a2, b).expect("geometry");
            let op =
                |v: &Tensor| -> Result<Tensor, TensorError> { tm.cov_mul_at(&parts, &geom, v) };
            black_box(
                lanczos_batched(&op, &z, 3)
                    .and_then(|k| k.apply_fn(|th| th.max(0.0).sqrt()))
                    .expect("lanczos"),
            )
        })
    });
    g.bench_function("f64_core_lgs3_noise", |bch| {
        bch.iter(|| {
            black_box(
                xs.par_iter()
                    .zip(&zs)
                    .map(|(xi, zi)| {
                        let loc = q.local(xi).expect("local");
                        let op = Op { local: &loc, a2, b };
                        lanczos(&op, zi, &LanczosParams::new(3))
                            .expect("lanczos")
                            .sqrt()
                            .expect("sqrt")
                    })
                    .collect::<Vec<_>>(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, tensor);
