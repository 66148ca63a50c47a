//! Sampler benches: 256 samples of mog40 through T = 20 ddpm-linear steps with `beta`
//! (one score evaluation per step) and `lgs-2` (one score evaluation and two products).
use std::hint::black_box;

use covlab::data::presets;
use covlab::process::schedule::Schedule;
use covlab::sampler::{sample, LgsOptions, SamplerConfig, SamplerFamily};
use covlab::score::MixtureScore;
use criterion::{criterion_group, Criterion};

fn samplers(c: &mut Criterion) {
    let model = MixtureScore::new(presets::mog40(1.0));
    let sched = Schedule::from_name("ddpm-linear").expect("known schedule");
    let mut g = c.benchmark_group("sampler");
    g.sample_size(10);
    for fam in [SamplerFamily::Beta, SamplerFamily::Lgs(LgsOptions::new(2))] {
        let cfg = SamplerConfig::new(fam, sched.clone(), 20);
        g.bench_function(format!("mog40_{}_t20_n256", fam.name()), |b| {
            b.iter(|| black_box(sample(&model, &cfg, 256).expect("sampling works")))
        });
    }
    g.finish();
}

criterion_group!(benches, samplers);
