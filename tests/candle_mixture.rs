//! The candle tensor path (feature `candle`, CPU device) against the f64 core: ln q, score,
//! posterior mean and H v (analytic and by autograd) on the digits8 image mixture.
#![cfg(feature = "candle")]

use std::sync::Arc;

use covlab::gpu::candle_core::{Device, Tensor, Var};
use covlab::gpu::{batch, log_sum_exp0, relative_error as rel, TensorMixture};
use covlab::image_data;
use covlab::score::LocalScore;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn tensor_mixture_matches_the_f64_core_on_digits8() {
    // f32 arithmetic over D = 64, K = 10, r = 8: relative errors ~1e-6 per op, ~1e-5 after
    // the Woodbury solves and the responsibilities; 1e-4 leaves a margin of 10 (the issue's
    // GPU target for sqrt(C) z is 1e-4, for the mean 1e-5: the mean is checked at 1e-5).
    let dev = Device::Cpu;
    let ln_abar = -0.7;
    let q0 = image_data::load("digits8").unwrap();
    let qt = Arc::new(q0.marginal(ln_abar).unwrap());
    let tm = TensorMixture::new(&qt, &dev).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let xs: Vec<Vec<f64>> = qt
        .sample(&mut rng, 16)
        .iter()
        .map(|x| x.as_slice().to_vec())
        .collect();
    let vs: Vec<Vec<f64>> = (0..16)
        .map(|_| (0..64).map(|_| rng.gen_range(-1.0..1.0)).collect())
        .collect();
    let x = batch(&xs, &dev).unwrap();
    let v = batch(&vs, &dev).unwrap();

    let lnq = tm.ln_pdf(&x).unwrap().to_vec1::<f32>().unwrap();
    let score = tm.score(&x).unwrap().to_vec2::<f32>().unwrap();
    let hv = tm.hvp(&x, &v).unwrap().to_vec2::<f32>().unwrap();
    let hv_ad = tm.hvp_autograd(&x, &v).unwrap().to_vec2::<f32>().unwrap();
    let (a, b) = (0.8f64, 0.36f64);
    let mean = tm
        .posterior_mean(&x, a, b)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();

    let mut want_s = Vec::new();
    let mut want_hv = Vec::new();
    let mut want_m = Vec::new();
    for (i, xi) in xs.iter().enumerate() {
        let l = qt.ln_pdf(xi).unwrap();
        // ln q ~ 30 here: f32 keeps it to ~1e-5 relative.
        assert!(
            (f64::from(lnq[i]) - l).abs() < 1e-4 * l.abs().max(1.0),
            "ln q {} vs {l}",
            lnq[i]
        );
        let loc = qt.local(xi).unwrap();
        let mut out = vec![0.0; 64];
        loc.hvp(&vs[i], &mut out);
        want_s.push(loc.score().to_vec());
        want_m.push(
            (0..64)
                .map(|j| (xi[j] + b * loc.score()[j]) / a)
                .collect::<Vec<_>>(),
        );
        want_hv.push(out);
    }
    eprintln!(
        "relative errors: score {:.2e}, mean {:.2e}, hvp {:.2e}, hvp autograd {:.2e}",
        rel(&score, &want_s),
        rel(&mean, &want_m),
        rel(&hv, &want_hv),
        rel(&hv_ad, &want_hv)
    );
    assert!(
        rel(&score, &want_s) < 1e-4,
        "score {}",
        rel(&score, &want_s)
    );
    assert!(rel(&mean, &want_m) < 1e-5, "mean {}", rel(&mean, &want_m));
    assert!(
        rel(&hv, &want_hv) < 1e-4,
        "analytic hvp {}",
        rel(&hv, &want_hv)
    );
    assert!(
        rel(&hv_ad, &want_hv) < 1e-4,
        "autograd hvp {}",
        rel(&hv_ad, &want_hv)
    );
}

#[test]
fn log_sum_exp_gradient_is_the_softmax() {
    // d/dt_k LSE_k(t) = softmax_k(t): the detached max must not drop or bias the gradient.
    let dev = Device::Cpu;
    let t = Tensor::from_vec(vec![1.0f32, -2.0, 0.5, 3.0, 3.0, -1.0], (3, 2), &dev).unwrap();
    let tv = Var::from_tensor(&t).unwrap();
    let l = log_sum_exp0(tv.as_tensor()).unwrap().sum_all().unwrap();
    let g = l.backward().unwrap();
    let grad = g.get(tv.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
    let cols = [[1.0f64, 0.5, 3.0], [-2.0, 3.0, -1.0]];
    for (c, col) in cols.iter().enumerate() {
        let m = col.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = col.iter().map(|v| (v - m).exp()).sum();
        for k in 0..3 {
            let want = (col[k] - m).exp() / z;
            // f32 softmax: 1e-6 absolute.
            assert!((f64::from(grad[k][c]) - want).abs() < 1e-6, "k {k} c {c}");
        }
    }
}

/// `v -> (b^2 H v + b v) / a^2` from the f64 core, for the reference Lanczos.
struct CoreOp<'a> {
    local: &'a covlab::lowrank::LowRankLocal,
    a2: f64,
    b: f64,
}

impl covlab::lanczos::LinearOperator for CoreOp<'_> {
    fn dim(&self) -> usize {
        self.local.score().len()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        self.local.hvp(v, out);
        for (o, vi) in out.iter_mut().zip(v) {
            *o = (self.b * self.b * *o + self.b * vi) / self.a2;
        }
    }
}

#[test]
fn batched_tensor_lanczos_matches_the_f64_lanczos_per_sample() {
    // Clean-data posterior of digits8 at abar = e^-0.7: C = (b^2 H + b I)/a^2, kappa ~ 1e2-1e3.
    // The batched f32 Lanczos and the f64 Lanczos on the same z give the same y_k up to f32
    // rounding: 1e-4 relative (the target for sqrt(C) z) for the k a sampler uses
    // (3, 10; measured 1.7e-5, 4.0e-5). At k = 40 the Krylov space resolves C's smallest
    // eigenvalues, where the f32 operator's relative error (1.8e-6 of ||C||, measured above)
    // is amplified by kappa / 2 ~ 5e2 in sqrt: measured 3.3e-4, asserted below 1e-3.
    let dev = Device::Cpu;
    let ln_abar: f64 = -0.7;
    let (a2, b) = (ln_abar.exp(), -ln_abar.exp_m1());
    let q0 = image_data::load("digits8").unwrap();
    let qt = Arc::new(q0.marginal(ln_abar).unwrap());
    let tm = TensorMixture::new(&qt, &dev).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let xs: Vec<Vec<f64>> = qt
        .sample(&mut rng, 8)
        .iter()
        .map(|x| x.as_slice().to_vec())
        .collect();
    let zs: Vec<Vec<f64>> = (0..8)
        .map(|_| {
            (0..64)
                .map(|_| rng.sample(rand_distr::StandardNormal))
                .collect()
        })
        .collect();
    let x = batch(&xs, &dev).unwrap();
    let z = batch(&zs, &dev).unwrap();
    for k in [3usize, 10, 40] {
        let y = tm
            .lanczos_sqrt(&x, &z, (a2, b), k, (0.0, f64::INFINITY))
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let mut want = Vec::new();
        for (xi, zi) in xs.iter().zip(&zs) {
            let loc = qt.local(xi).unwrap();
            let op = CoreOp { local: &loc, a2, b };
            let kr =
                covlab::lanczos::lanczos(&op, zi, &covlab::lanczos::LanczosParams::new(k)).unwrap();
            want.push(kr.sqrt().unwrap());
        }
        let e = rel(&y, &want);
        eprintln!("k = {k}: batched f32 vs f64 Lanczos, relative {e:.2e}");
        let tol = if k <= 10 { 1e-4 } else { 1e-3 };
        assert!(e < tol, "k = {k}: {e}");
    }
}

#[test]
fn tensor_ddpm_step_matches_the_cpu_sampler_step_on_digits32() {
    // Per-step validation at D = 1024 (digits32): the tensor step and the f64 sampler's
    // `step_with_noise` from the same x_t and z, on the ddpm-linear T = 20 grid at steps
    // 20, 10 and 2. Tolerance 1e-4 relative for beta (the mean alone is 1e-5-accurate, see
    // above) and lgs-3 (the sqrt(C) z target).
    use covlab::gpu::{TensorNoise, TensorStep};
    use covlab::lowrank::LowRankScore;
    use covlab::sampler::{clip_bounds, step_with_noise, LgsOptions, SamplerConfig, SamplerFamily};
    let dev = Device::Cpu;
    let q0 = image_data::load("digits32").unwrap();
    let model = LowRankScore::new(q0.clone());
    let sched = covlab::schedule::Schedule::from_name("ddpm-linear").unwrap();
    let grid = sched.grid(20, 0.0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for i in [20usize, 10, 2] {
        let qt = q0.marginal(grid.ln_abar[i]).unwrap();
        let tm = TensorMixture::new(&qt, &dev).unwrap();
        let xs: Vec<Vec<f64>> = qt
            .sample(&mut rng, 4)
            .iter()
            .map(|x| x.as_slice().to_vec())
            .collect();
        let zs: Vec<Vec<f64>> = (0..4)
            .map(|_| {
                (0..1024)
                    .map(|_| rng.sample(rand_distr::StandardNormal))
                    .collect()
            })
            .collect();
        let (lower, upper) = clip_bounds(&grid, i, None);
        let st = grid.step(i);
        let ts = TensorStep {
            a2: st.a2,
            b: st.b,
            lower,
            upper,
        };
        for (fam, noise) in [
            (SamplerFamily::Beta, TensorNoise::Beta),
            (SamplerFamily::Lgs(LgsOptions::new(3)), TensorNoise::Lgs(3)),
        ] {
            let y = tm
                .ddpm_step(
                    &batch(&xs, &dev).unwrap(),
                    &batch(&zs, &dev).unwrap(),
                    ts,
                    noise,
                )
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let cfg = SamplerConfig::new(fam, sched.clone(), 20);
            let want: Vec<Vec<f64>> = xs
                .iter()
                .zip(&zs)
                .map(|(x, z)| step_with_noise(&model, &cfg, i, x, z).unwrap())
                .collect();
            let e = rel(&y, &want);
            eprintln!("digits32 step {i} {}: relative {e:.2e}", fam.name());
            assert!(e < 1e-4, "step {i} {}: {e}", fam.name());
        }
    }
}

#[test]
fn tensor_trajectory_with_shared_noise_follows_the_f64_sampler() {
    // Whole trajectories (digits8, ddpm-linear T = 10, 8 samples) from the same x_T and the
    // same noise at every step: the f32 tensor chain and the f64 sampler's steps. The reverse
    // chain contracts the per-step f32 differences (measured endpoint: 5.4e-6 beta, 1.6e-6
    // lgs-3); asserted at the per-step target 1e-4.
    use covlab::gpu::{ddpm_trajectory, TensorNoise};
    use covlab::lowrank::LowRankScore;
    use covlab::sampler::{step_with_noise, LgsOptions, SamplerConfig, SamplerFamily};
    let dev = Device::Cpu;
    let q0 = image_data::load("digits8").unwrap();
    let model = LowRankScore::new(q0.clone());
    let sched = covlab::schedule::Schedule::from_name("ddpm-linear").unwrap();
    let t = 10;
    let grid = sched.grid(t, 0.0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut normal = |n: usize| -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| {
                (0..64)
                    .map(|_| rng.sample(rand_distr::StandardNormal))
                    .collect()
            })
            .collect()
    };
    let x_t = normal(8);
    let zs: Vec<Vec<Vec<f64>>> = (0..t).map(|_| normal(8)).collect();
    let noises: Vec<Tensor> = zs.iter().map(|z| batch(z, &dev).unwrap()).collect();
    for (fam, noise) in [
        (SamplerFamily::Beta, TensorNoise::Beta),
        (SamplerFamily::Lgs(LgsOptions::new(3)), TensorNoise::Lgs(3)),
    ] {
        let y = ddpm_trajectory(
            &q0,
            &grid,
            &batch(&x_t, &dev).unwrap(),
            &noises,
            noise,
            None,
        )
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
        let cfg = SamplerConfig::new(fam, sched.clone(), t);
        let mut xs = x_t.clone();
        for i in (1..=t).rev() {
            for (n, x) in xs.iter_mut().enumerate() {
                *x = step_with_noise(&model, &cfg, i, x, &zs[t - i][n]).unwrap();
            }
        }
        let e = rel(&y, &xs);
        eprintln!(
            "digits8 trajectory T = {t} {}: endpoint relative {e:.2e}",
            fam.name()
        );
        assert!(e < 1e-4, "{}: {e}", fam.name());
    }
}
