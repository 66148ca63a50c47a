//! Path-KL benches: the geometry kernel at one node, one step term (T = 1: one step and
//! two entropies) and one sweep (T = 64), on mog40 with the default lattice.
use std::hint::black_box;

use covlab::data::mixture::Workspace;
use covlab::data::presets;
use covlab::kernel::family::Family;
use covlab::kl::path_kl::{path_kl_sweep, PathKlParams};
use covlab::process::schedule::Schedule;
use criterion::{criterion_group, Criterion};

fn geometry(c: &mut Criterion) {
    let q = presets::mog40(1.0).marginal(-0.5).expect("valid time");
    let mut ws = Workspace::new(2, q.len());
    let x = [3.0, -7.0];
    c.bench_function("geometry_mog40_k40", |b| {
        b.iter(|| black_box(q.geometry_unchecked(black_box(&x), &mut ws)))
    });
}

fn step_term(c: &mut Criterion) {
    let q = presets::mog40(1.0);
    let params = PathKlParams {
        families: Family::ALL.to_vec(),
        ..PathKlParams::default()
    };
    let sched = Schedule::vp_linear();
    let mut g = c.benchmark_group("path_kl");
    g.sample_size(10);
    // T = 1 has no next step for beta-tilde's clip remedy: bench the other four families there.
    let p1 = PathKlParams {
        families: vec![Family::Beta, Family::Analytic, Family::Diag, Family::Full],
        ..params.clone()
    };
    g.bench_function("step_term_mog40_t1", |b| {
        b.iter(|| black_box(path_kl_sweep(&q, &sched, &[1], &p1, &|_, _| {}).expect("ok")))
    });
    g.bench_function("sweep_mog40_t64", |b| {
        b.iter(|| black_box(path_kl_sweep(&q, &sched, &[64], &params, &|_, _| {}).expect("ok")))
    });
    g.finish();
}

criterion_group!(benches, geometry, step_term);
