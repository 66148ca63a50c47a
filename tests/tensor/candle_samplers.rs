//! The tensor samplers and cross-entropy path-KL differences against the f64 core. Every test
//! is written once over a device (`device_tests!`): CPU in CI, CUDA with `--features cuda`.
#![cfg(feature = "candle")]

use anyhow::Result;
use covlab::data::images;
use covlab::data::lowrank::LowRankMixture;
use covlab::kernel::family::Family;
use covlab::kl::path_kl::{path_kl_sweep, PathKlParams};
use covlab::process::schedule::Schedule;
use covlab::sampler::{
    analytic_trace_table, sample, step_with_noise, KernelKind, LastStep, LgsOptions, SamplerConfig,
    SamplerFamily,
};
use covlab::score::LowRankScore;
use covlab::score::{LocalScore, ScoreModel};
use covlab::tensor::candle_core::{Device, Tensor};
use covlab::tensor::{
    analytic_trace_table_tensor, batch, cross_entropy_path_kl, relative_error as rel,
    sample_tensor, step_with_noise_tensor, AsScoreModel, CrossEntropyParams, NoiseSource,
    TensorError, TensorMixtureScore, TensorSampleOptions,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

device_tests!(
    every_family_step_matches_the_f64_step_on_digits8,
    lgs_with_k_equal_to_d_equals_the_f64_full_step,
    tensor_sampler_follows_the_f64_sampler_with_shared_noise,
    candle_model_runs_through_the_cpu_score_seam,
    analytic_table_on_tensors_equals_the_f64_table,
    cross_entropy_differences_match_the_exact_path_kl_in_2d,
    unsupported_requests_are_errors,
    the_tensor_last_step_is_the_mean_by_default,
);

/// f32 against f64 for one step: the mean is 1e-5-accurate (tests/candle_mixture.rs), and
/// the noise of every family goes through at most a Lanczos run or a clipped variance, each
/// 1e-5-accurate in f32 at these sizes; 1e-4 is the target for sqrt(C) z.
const TOL_STEP: f64 = 1e-4;

fn opts(chunk: usize) -> TensorSampleOptions {
    TensorSampleOptions {
        chunk,
        source: NoiseSource::Host,
        noise_scale: 1.0,
    }
}

fn f64_rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.to_vec2::<f32>()?)
}

fn normals(rng: &mut ChaCha8Rng, n: usize, d: usize) -> Vec<Vec<f64>> {
    (0..n)
        .map(|_| {
            (0..d)
                .map(|_| rng.sample(rand_distr::StandardNormal))
                .collect()
        })
        .collect()
}

fn cfg(family: &str, t: usize, kernel: KernelKind) -> Result<SamplerConfig> {
    let mut c = SamplerConfig::new(
        SamplerFamily::from_name(family)?,
        Schedule::from_name("ddpm-linear")?,
        t,
    );
    c.kernel = kernel;
    c.seed = 5;
    Ok(c)
}

fn every_family_step_matches_the_f64_step_on_digits8(dev: &Device) -> Result<()> {
    // Every family of the f64 sampler, DDPM and OCM-DDIM, at the noisiest, a middle and the
    // last step of ddpm-linear T = 20, from the same x_t and z (probes from the same seed).
    let q0 = images::load("digits8")?;
    let cpu = LowRankScore::new(q0.clone());
    let gpu = TensorMixtureScore::new(q0.clone(), dev)?;
    let t = 20;
    let data = q0.sample(&mut ChaCha8Rng::seed_from_u64(3), 200);
    let sched = Schedule::from_name("ddpm-linear")?;
    let table = analytic_trace_table(&cpu, &sched, t, 0.0, &data, 9)?;
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let grid = sched.grid(t, 0.0)?;
    for kernel in [KernelKind::Ddpm, KernelKind::Ddim] {
        for i in [20usize, 10, 1] {
            let qt = q0.marginal(grid.ln_abar[i])?;
            let xs: Vec<Vec<f64>> = qt
                .sample(&mut rng, 6)
                .iter()
                .map(|x| x.as_slice().to_vec())
                .collect();
            let zs = normals(&mut rng, 6, 64);
            for fam in [
                "beta",
                "beta-tilde",
                "analytic",
                "diag",
                "full",
                "hutchinson-2",
                "lgs-3",
            ] {
                // Both last steps (they differ at i = 1 only): the mean, and the kernel's draw.
                for last in [LastStep::Mean, LastStep::Noisy] {
                    let mut c = cfg(fam, t, kernel)?;
                    c.analytic_trace = Some(table.clone());
                    c.last_step = last;
                    let y =
                        step_with_noise_tensor(&gpu, &c, i, &batch(&xs, dev)?, &batch(&zs, dev)?)?;
                    let want = xs
                        .iter()
                        .zip(&zs)
                        .map(|(x, z)| step_with_noise(&cpu, &c, i, x, z))
                        .collect::<Result<Vec<_>, _>>()?;
                    let e = rel(&f64_rows(&y)?, &want);
                    eprintln!("{kernel:?} step {i} {fam} {last:?}: relative {e:.2e}");
                    assert!(e < TOL_STEP, "{kernel:?} step {i} {fam} {last:?}: {e}");
                }
            }
        }
    }
    Ok(())
}

fn lgs_with_k_equal_to_d_equals_the_f64_full_step(dev: &Device) -> Result<()> {
    // The Krylov space of k = D steps is all of R^D: lgs-D is the exact C^{1/2} z (no Ritz
    // clamp binds: lower <= C and no upper without a clip range), which the f64 `full` step
    // computes by an eigendecomposition.
    let q0 = images::load("digits8")?;
    let cpu = LowRankScore::new(q0.clone());
    let gpu = TensorMixtureScore::new(q0.clone(), dev)?;
    let grid = Schedule::from_name("ddpm-linear")?.grid(10, 0.0)?;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for i in [10usize, 5, 2] {
        let qt = q0.marginal(grid.ln_abar[i])?;
        let xs: Vec<Vec<f64>> = qt
            .sample(&mut rng, 4)
            .iter()
            .map(|x| x.as_slice().to_vec())
            .collect();
        let zs = normals(&mut rng, 4, 64);
        let y = step_with_noise_tensor(
            &gpu,
            &cfg("lgs-64", 10, KernelKind::Ddpm)?,
            i,
            &batch(&xs, dev)?,
            &batch(&zs, dev)?,
        )?;
        let full = cfg("full", 10, KernelKind::Ddpm)?;
        let want = xs
            .iter()
            .zip(&zs)
            .map(|(x, z)| step_with_noise(&cpu, &full, i, x, z))
            .collect::<Result<Vec<_>, _>>()?;
        let e = rel(&f64_rows(&y)?, &want);
        eprintln!("step {i}: tensor lgs-64 vs f64 full, relative {e:.2e}");
        assert!(e < TOL_STEP, "step {i}: {e}");
    }
    Ok(())
}

fn tensor_sampler_follows_the_f64_sampler_with_shared_noise(dev: &Device) -> Result<()> {
    // With host noise, sample j of the tensor sampler draws x_T, z, probes and block vectors
    // from the same ChaCha8 stream as sample j of the f64 sampler, so whole trajectories agree
    // up to f32 rounding, which the reverse chain does not amplify (measured ~1e-6); in chunks
    // of 3 (the per-sample streams make chunking invisible). Families cover LGS-batched with
    // LGSb and the guard, hutchinson, diag, and OCM-DDIM.
    let q0 = images::load("digits8")?;
    let cpu = LowRankScore::new(q0.clone());
    let gpu = TensorMixtureScore::new(q0, dev)?;
    let t = 10;
    let mut lgs = LgsOptions::new(3);
    lgs.batch = 3;
    lgs.fraction = 0.7;
    lgs.guard = Some(2);
    let mut cases = vec![
        cfg("beta", t, KernelKind::Ddpm)?,
        cfg("diag", t, KernelKind::Ddpm)?,
        cfg("hutchinson-2", t, KernelKind::Ddpm)?,
        cfg("lgs-3", t, KernelKind::Ddim)?,
    ];
    let mut c = cfg("lgs-3", t, KernelKind::Ddpm)?;
    c.family = SamplerFamily::Lgs(lgs);
    cases.push(c);
    for c in &cases {
        let y = sample_tensor(&gpu, c, 8, &opts(3), |_| {})?;
        let want: Vec<Vec<f64>> = sample(&cpu, c, 8)?
            .iter()
            .map(|x| x.as_slice().to_vec())
            .collect();
        let e = rel(&f64_rows(&y)?, &want);
        eprintln!(
            "{:?} {}: trajectory endpoint relative {e:.2e}",
            c.kernel,
            c.family.name()
        );
        assert!(e < TOL_STEP, "{:?} {:?}: {e}", c.kernel, c.family);
    }
    Ok(())
}

fn candle_model_runs_through_the_cpu_score_seam(dev: &Device) -> Result<()> {
    // The f64 sampler with the candle model behind the ScoreModel seam (each call a batch of
    // one, f32 on the device) against the same sampler with the f64 model.
    let q0 = images::load("digits8")?;
    let cpu = LowRankScore::new(q0.clone());
    let seam = AsScoreModel(TensorMixtureScore::new(q0, dev)?);
    for fam in ["beta", "lgs-3"] {
        let c = cfg(fam, 5, KernelKind::Ddpm)?;
        let a: Vec<Vec<f32>> = sample(&seam, &c, 3)?
            .iter()
            .map(|x| x.iter().map(|&v| v as f32).collect())
            .collect();
        let b: Vec<Vec<f64>> = sample(&cpu, &c, 3)?
            .iter()
            .map(|x| x.as_slice().to_vec())
            .collect();
        let e = rel(&a, &b);
        eprintln!("{fam} through the CPU seam: relative {e:.2e}");
        assert!(e < TOL_STEP, "{fam}: {e}");
    }
    Ok(())
}

fn analytic_table_on_tensors_equals_the_f64_table(dev: &Device) -> Result<()> {
    // Same draws (stream i of the seed at t_i), f32 score: E||g||^2 to ~1e-6 relative.
    let q0 = images::load("digits8")?;
    let cpu = LowRankScore::new(q0.clone());
    let gpu = TensorMixtureScore::new(q0.clone(), dev)?;
    let data = q0.sample(&mut ChaCha8Rng::seed_from_u64(1), 300);
    let sched = Schedule::from_name("ddpm-linear")?;
    let a = analytic_trace_table(&cpu, &sched, 10, 0.0, &data, 4)?;
    let b = analytic_trace_table_tensor(&gpu, &sched, 10, 0.0, &data, 4)?;
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5 * x.abs(), "{x} vs {y}");
    }
    Ok(())
}

fn cross_entropy_differences_match_the_exact_path_kl_in_2d(dev: &Device) -> Result<()> {
    // mog40 (D = 2), vp-linear, T = 8: S_fam(T) - S_full(T) by Monte Carlo cross-entropies
    // (paired, 40,000 pairs per step) against the exact core (route A lattice, relative error
    // <= 1e-8, negligible). Each difference must lie within 4 Monte Carlo standard errors
    // (a false alarm has probability ~6e-5 per family).
    let q = covlab::data::presets::load("mog40")?;
    let q0 = LowRankMixture::from_mixture(&q)?;
    let gpu = TensorMixtureScore::new(q0.clone(), dev)?;
    let sched = Schedule::vp_linear();
    let t = 8;
    let report = path_kl_sweep(&q, &sched, &[t], &PathKlParams::default(), &|_, _| {})?;
    let exact = |f: Family| report.get(f, t).map(|r| r.s.value).unwrap_or(f64::NAN);
    let cpu = covlab::score::MixtureScore::new(q.clone());
    let data = q.sample(&mut ChaCha8Rng::seed_from_u64(11), 20_000);
    let mut c = SamplerConfig::new(SamplerFamily::Full, sched.clone(), t);
    c.analytic_trace = Some(analytic_trace_table(&cpu, &sched, t, 0.0, &data, 3)?);
    let fams = ["full", "beta", "beta-tilde", "analytic", "diag"]
        .iter()
        .map(|f| SamplerFamily::from_name(f))
        .collect::<Result<Vec<_>, _>>()?;
    let params = CrossEntropyParams {
        samples_per_step: 40_000,
        chunk: 8192,
        seed: 7,
        ..CrossEntropyParams::default()
    };
    let rows_ce = cross_entropy_path_kl(&gpu, &q0, &c, &fams, 0, &params)?;
    let full = exact(Family::Full);
    for (row, fam) in rows_ce.iter().zip([
        Family::Full,
        Family::Beta,
        Family::BetaTilde,
        Family::Analytic,
        Family::Diag,
    ]) {
        let want = exact(fam) - full;
        eprintln!(
            "{}: MC S - S_full = {:.5e} +- {:.1e}, exact {want:.5e}",
            row.family, row.diff, row.diff_se
        );
        assert!(
            (row.diff - want).abs() <= 4.0 * row.diff_se + 1e-12,
            "{}: {} vs {want} (se {})",
            row.family,
            row.diff,
            row.diff_se
        );
    }
    // The reference's own difference is 0 exactly.
    assert!(rows_ce[0].diff.abs() < 1e-15 && rows_ce[0].diff_se < 1e-15);
    Ok(())
}

fn unsupported_requests_are_errors(dev: &Device) -> Result<()> {
    let q0 = images::load("digits32")?;
    let gpu = TensorMixtureScore::new(q0.clone(), dev)?;
    // full on tensors beyond FULL_MAX_DIM.
    let e = sample_tensor(
        &gpu,
        &cfg("full", 2, KernelKind::Ddpm)?,
        2,
        &opts(2),
        |_| {},
    );
    assert!(matches!(e, Err(TensorError::Unsupported(_))), "{e:?}");
    // lgs has no density; full cross-entropies beyond 64.
    for fam in ["lgs-3", "full"] {
        let fams = [SamplerFamily::from_name(fam)?];
        let e = cross_entropy_path_kl(
            &gpu,
            &q0,
            &cfg("beta", 2, KernelKind::Ddpm)?,
            &fams,
            0,
            &CrossEntropyParams::default(),
        );
        assert!(
            matches!(e, Err(TensorError::Unsupported(_))),
            "{fam}: {e:?}"
        );
    }
    // A missing analytic table and k = 0 are the f64 sampler's errors.
    let e = sample_tensor(
        &gpu,
        &cfg("analytic", 2, KernelKind::Ddpm)?,
        2,
        &opts(2),
        |_| {},
    );
    assert!(matches!(e, Err(TensorError::Sampler(_))), "{e:?}");
    let mut c = cfg("beta", 2, KernelKind::Ddpm)?;
    c.family = SamplerFamily::Lgs(LgsOptions::new(0));
    let e = sample_tensor(&gpu, &c, 2, &opts(2), |_| {});
    assert!(matches!(e, Err(TensorError::Sampler(_))), "{e:?}");
    Ok(())
}

fn the_tensor_last_step_is_the_mean_by_default(dev: &Device) -> Result<()> {
    // By default the tensor sampler's last step (i = 1, to t_0 = 0) returns the kernel's mean
    // for every family and both kernels (OCM-DDIM: x_s = x_0 = m_0 at s = 0): the output does
    // not depend on z at all (bit for bit), and equals Tweedie's (x + b g)/a from the f64
    // score to the f32 tolerance of a step.
    let q0 = images::load("digits8")?;
    let cpu = LowRankScore::new(q0.clone());
    let gpu = TensorMixtureScore::new(q0.clone(), dev)?;
    let t = 20;
    let sched = Schedule::from_name("ddpm-linear")?;
    let grid = sched.grid(t, 0.0)?;
    let st = grid.step(1);
    let (a, b) = (st.a2.sqrt(), st.b);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let xs: Vec<Vec<f64>> = q0
        .marginal(grid.ln_abar[1])?
        .sample(&mut rng, 6)
        .iter()
        .map(|x| x.as_slice().to_vec())
        .collect();
    let want: Vec<Vec<f64>> = xs
        .iter()
        .map(|x| {
            let g = cpu.at(x, grid.ln_abar[1])?.score().to_vec();
            Ok(x.iter().zip(&g).map(|(x, g)| (x + b * g) / a).collect())
        })
        .collect::<Result<_, covlab::data::mixture::MixtureError>>()?;
    let (z1, z2) = (normals(&mut rng, 6, 64), normals(&mut rng, 6, 64));
    for kernel in [KernelKind::Ddpm, KernelKind::Ddim] {
        for fam in ["beta", "analytic", "diag", "full", "hutchinson-2", "lgs-3"] {
            let mut c = cfg(fam, t, kernel)?;
            c.analytic_trace = Some(vec![-30.0; t]);
            c.clip_range = Some((-1.0, 1.0));
            let x = batch(&xs, dev)?;
            let y1 = f64_rows(&step_with_noise_tensor(&gpu, &c, 1, &x, &batch(&z1, dev)?)?)?;
            let y2 = f64_rows(&step_with_noise_tensor(&gpu, &c, 1, &x, &batch(&z2, dev)?)?)?;
            assert_eq!(y1, y2, "{kernel:?} {fam}: the mean depends on z");
            let e = rel(&y1, &want);
            assert!(e < TOL_STEP, "{kernel:?} {fam}: {e}");
        }
    }
    Ok(())
}
