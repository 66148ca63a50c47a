//! CPU reverse samplers at known truth: LGS vs the exact full step, exact moments on
//! Gaussian data, thread-count invariance, Hutchinson's unbiasedness, the cost model, and
//! bad input.

use covlab::data::mixture::Mixture;
use covlab::data::presets;
use covlab::experiments::samplers::SamplersStudy;
use covlab::process::schedule::Schedule;
use covlab::sampler::{
    hutchinson_diag, sample, step_with_noise, KernelKind, LastStep, LgsOptions, SamplerConfig,
    SamplerError, SamplerFamily,
};
use covlab::score::{Counted, LocalScore, MixtureScore, ScoreModel};
use covlab::study::StudyKind;
use nalgebra::{DMatrix, DVector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

fn gaussian3() -> Mixture {
    let mean = DVector::from_vec(vec![1.0, -0.5, 0.25]);
    let a = DMatrix::from_row_slice(3, 3, &[1.0, 0.3, 0.0, 0.0, 0.7, -0.2, 0.1, 0.0, 0.5]);
    let cov = &a * a.transpose() + DMatrix::identity(3, 3) * 0.05;
    Mixture::from_dense(vec![1.0], vec![mean], vec![cov]).unwrap()
}

#[test]
fn lgs_with_k_equal_d_matches_the_exact_full_step() {
    // Lanczos with k = D spans the whole space, so y_k = C^{1/2} z up to the
    // reorthogonalised Lanczos round-off (~1e-13 relative); 1e-8 is the bar.
    let model = MixtureScore::new(presets::load("mix6").unwrap());
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let t = 20;
    for i in [1usize, 2, 10, 20] {
        let x: Vec<f64> = (0..6).map(|_| StandardNormal.sample(&mut rng)).collect();
        let z: Vec<f64> = (0..6).map(|_| StandardNormal.sample(&mut rng)).collect();
        let full = SamplerConfig::new(SamplerFamily::Full, Schedule::vp_linear(), t);
        let lgs = SamplerConfig::new(
            SamplerFamily::Lgs(LgsOptions::new(6)),
            Schedule::vp_linear(),
            t,
        );
        let a = step_with_noise(&model, &full, i, &x, &z).unwrap();
        let b = step_with_noise(&model, &lgs, i, &x, &z).unwrap();
        for j in 0..6 {
            assert!(
                (a[j] - b[j]).abs() < 1e-8 * (1.0 + a[j].abs()),
                "step {i}: {a:?} vs {b:?}"
            );
        }
    }
}

/// Asserts that `xs` has the mean and covariance of the one-component `q0` within 4
/// standard errors: sqrt(S_ii / n) for the mean, sqrt((S_ii S_jj + S_ij^2) / n) for the
/// covariance (Gaussian fourth moments).
fn assert_moments(q0: &Mixture, xs: &[DVector<f64>]) {
    assert_moments_to(&q0.mean(), &q0.components()[0].covariance(), xs);
}

/// As [`assert_moments`] against the mean `m` and covariance `s` (3-D).
fn assert_moments_to(m: &DVector<f64>, s: &DMatrix<f64>, xs: &[DVector<f64>]) {
    let n = xs.len() as f64;
    let (mean, cov) = covlab::stats::sample_moments(xs).unwrap();
    for i in 0..3 {
        assert!(
            (mean[i] - m[i]).abs() < 4.0 * (s[(i, i)] / n).sqrt(),
            "mean {mean} vs {m}"
        );
        for j in 0..3 {
            let se = ((s[(i, i)] * s[(j, j)] + s[(i, j)].powi(2)) / n).sqrt();
            assert!(
                (cov[(i, j)] - s[(i, j)]).abs() < 4.0 * se,
                "cov {cov} vs {s}"
            );
        }
    }
}

#[test]
fn full_sampler_has_the_exact_moments_on_gaussian_data() {
    // For Gaussian data every exact step is exact; only x_T ~ N(0, I) vs q_T differs, by
    // O(abar_T) = 4e-5 on vp-linear, far below the Monte Carlo tolerance of assert_moments
    // at n = 20,000 (4 s.e. ~ 0.02). Exact in law with the noisy last step (a draw from the
    // last kernel); the default mean last step keeps E[x_0 | x_{t_1}], whose covariance is
    // short by E[Cov(x_0 | x_{t_1})] = (S^{-1} + abar_1/(1 - abar_1) I)^{-1} (Gaussian data:
    // the law of total covariance), in closed form too.
    let q0 = gaussian3();
    let model = MixtureScore::new(q0.clone());
    let mut cfg = SamplerConfig::new(SamplerFamily::Full, Schedule::vp_linear(), 25);
    cfg.last_step = LastStep::Noisy;
    assert_moments(&q0, &sample(&model, &cfg, 20_000).unwrap());
    cfg.last_step = LastStep::Mean;
    let s = q0.components()[0].covariance();
    let abar = Schedule::vp_linear().grid(25, 0.0).unwrap().abar(1);
    let post = (s.clone().try_inverse().unwrap() + DMatrix::identity(3, 3) * (abar / (1.0 - abar)))
        .try_inverse()
        .unwrap();
    assert_moments_to(
        &q0.mean(),
        &(&s - post),
        &sample(&model, &cfg, 20_000).unwrap(),
    );
}

#[test]
fn ddim_with_the_exact_clean_posterior_is_exact_on_gaussian_data() {
    // OCM-DDIM draws x_0 ~ N(m_0, Sigma_0) and sets x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s) eps_hat
    // with eps_hat = (x_t - sqrt(abar_t) x_0)/sqrt(1 - abar_t). With Sigma_0 = Cov(x_0 | x_t)
    // exact (Gaussian data, `full`), (x_0, eps_hat) has the prior law, so x_s ~ q_s exactly:
    // the same tolerances as the DDPM test.
    let q0 = gaussian3();
    let model = MixtureScore::new(q0.clone());
    // the same tolerances as the DDPM test. With the noisy last step (x_0 drawn there).
    let mut cfg = SamplerConfig::new(SamplerFamily::Full, Schedule::vp_linear(), 10);
    cfg.kernel = covlab::sampler::KernelKind::Ddim;
    cfg.last_step = LastStep::Noisy;
    assert_moments(&q0, &sample(&model, &cfg, 20_000).unwrap());
}

#[test]
fn samples_are_identical_for_one_and_two_threads() {
    let model = MixtureScore::new(presets::load("mog40").unwrap());
    let mut opts = LgsOptions::new(2);
    opts.batch = 3;
    opts.guard = Some(4);
    for fam in [
        SamplerFamily::Lgs(opts),
        SamplerFamily::Hutchinson(4),
        SamplerFamily::Beta,
    ] {
        for last in [LastStep::Mean, LastStep::Noisy] {
            let mut cfg = SamplerConfig::new(fam, Schedule::vp_linear(), 10);
            cfg.seed = 11;
            cfg.clip_range = Some((-10.0, 10.0));
            cfg.last_step = last;
            let run = |threads: usize| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| sample(&model, &cfg, 257).unwrap())
            };
            let a = run(1);
            let b = run(2);
            assert!(a.iter().zip(&b).all(|(x, y)| x
                .iter()
                .zip(y.iter())
                .all(|(u, v)| u.to_bits() == v.to_bits())));
        }
    }
}

#[test]
fn hutchinson_is_unbiased_for_diag_h() {
    // E[v .* (H v)] = diag H; one probe has Var_i = sum_{j != i} H_ij^2, so the mean of R
    // single-probe estimates has standard error sqrt(Var_i / R); we allow 4 of them.
    let model = MixtureScore::new(presets::load("mix6").unwrap());
    let loc = model.at(&[0.2, -0.1, 0.4, 0.0, 0.3, -0.2], -0.7).unwrap();
    let h = loc.hessian();
    let r = 20_000;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut acc = [0.0; 6];
    for _ in 0..r {
        let e = hutchinson_diag(&loc, 1, &mut rng);
        for i in 0..6 {
            acc[i] += e[i];
        }
    }
    for i in 0..6 {
        let var: f64 = (0..6).filter(|&j| j != i).map(|j| h[(i, j)].powi(2)).sum();
        let se = (var / r as f64).sqrt();
        assert!(
            (acc[i] / r as f64 - h[(i, i)]).abs() < 4.0 * se + 1e-15,
            "i={i}"
        );
    }
}

#[test]
fn lgs_step_costs_one_score_and_k_products() {
    // The paper's cost model: one LGS-k step = 1 score evaluation + k Jacobian-vector
    // products (k < D, no early termination on a generic mix6 covariance).
    // Every step draws noise here (LastStep::Noisy; the default mean last step costs the
    // score only: the_mean_last_step_evaluates_no_covariance).
    let model = Counted::new(MixtureScore::new(presets::load("mix6").unwrap()));
    let (n, t, k) = (7usize, 5usize, 3usize);
    let mut cfg = SamplerConfig::new(
        SamplerFamily::Lgs(LgsOptions::new(k)),
        Schedule::vp_linear(),
        t,
    );
    cfg.last_step = LastStep::Noisy;
    sample(&model, &cfg, n).unwrap();
    let c = model.counts();
    assert_eq!(c.score, (n * t) as u64);
    assert_eq!(c.hvp, (n * t * k) as u64);
    // Batched L = 5 over T = 5 steps: one block of 5 Lanczos runs per sample.
    model.reset();
    let mut o = LgsOptions::new(k);
    o.batch = 5;
    let cfg = SamplerConfig::new(SamplerFamily::Lgs(o), Schedule::vp_linear(), t);
    sample(&model, &cfg, n).unwrap();
    assert_eq!(model.counts().hvp, (n * 5 * k) as u64);
    // Hutchinson-M: M products per step.
    model.reset();
    let mut cfg = SamplerConfig::new(SamplerFamily::Hutchinson(4), Schedule::vp_linear(), t);
    cfg.last_step = LastStep::Noisy;
    sample(&model, &cfg, n).unwrap();
    assert_eq!(model.counts().hvp, (n * t * 4) as u64);
}

#[test]
fn bad_input_is_a_clear_error() {
    assert!(matches!(
        SamplerFamily::from_name("lgs-0"),
        Err(SamplerError::InvalidParameter { field: "k", .. })
    ));
    assert!(matches!(
        SamplerFamily::from_name("hutchinson-0"),
        Err(SamplerError::InvalidParameter { field: "M", .. })
    ));
    assert!(matches!(
        SamplerFamily::from_name("lanczos"),
        Err(SamplerError::UnknownFamily(_))
    ));
    let model = MixtureScore::new(presets::load("aniso2").unwrap());
    let cfg = SamplerConfig::new(SamplerFamily::Analytic, Schedule::vp_linear(), 4);
    assert!(matches!(
        sample(&model, &cfg, 2),
        Err(SamplerError::MissingAnalyticTable)
    ));
    let mut o = LgsOptions::new(2);
    o.fraction = 0.0;
    let cfg = SamplerConfig::new(SamplerFamily::Lgs(o), Schedule::vp_linear(), 4);
    assert!(matches!(
        sample(&model, &cfg, 2),
        Err(SamplerError::InvalidParameter {
            field: "fraction",
            ..
        })
    ));
    let cfg = SamplerConfig::new(SamplerFamily::Beta, Schedule::vp_linear(), 0);
    assert!(sample(&model, &cfg, 2).is_err());
}

/// `E[x_0 | x_t]` for the one-component Gaussian `q0 = N(mu, S)`, in closed form:
/// `mu + sqrt(abar) S (abar S + (1 - abar) I)^{-1} (x_t - sqrt(abar) mu)`.
fn gaussian_posterior_mean(q0: &Mixture, abar: f64, x: &[f64]) -> DVector<f64> {
    let s = q0.components()[0].covariance();
    let mu = q0.mean();
    let d = mu.len();
    let st = &s * abar + DMatrix::identity(d, d) * (1.0 - abar);
    let r = DVector::from_column_slice(x) - &mu * abar.sqrt();
    let w = st.cholesky().unwrap().solve(&r);
    mu + s * w * abar.sqrt()
}

/// The families of the f64 sampler, each with what it needs (an analytic table, a clip range).
fn every_family(t: usize) -> Vec<SamplerConfig> {
    let mut g = LgsOptions::new(2);
    g.guard = Some(3);
    g.batch = 2;
    [
        SamplerFamily::Beta,
        SamplerFamily::BetaTilde,
        SamplerFamily::Analytic,
        SamplerFamily::Diag,
        SamplerFamily::Full,
        SamplerFamily::Hutchinson(2),
        SamplerFamily::Lgs(LgsOptions::new(2)),
        SamplerFamily::Lgs(g),
    ]
    .into_iter()
    .map(|f| {
        let mut c = SamplerConfig::new(f, Schedule::vp_linear(), t);
        c.clip_range = Some((-6.0, 6.0));
        c.analytic_trace = Some(vec![-1.5; t]);
        c
    })
    .collect()
}

#[test]
fn the_default_last_step_is_the_posterior_mean_in_closed_form() {
    // T = 1 from x_T: the whole chain is its last step, so by default (Ho et al., Analytic-DPM,
    // diffusers: no noise at t = 0) every family and both kernels return E[x_0 | x_T] exactly
    // (early stop 0: t_0 = 0, so OCM-DDIM's x_s is its x_0 = m_0). x_T is the first D normals
    // of sample j's ChaCha8 stream (the sampler's documented draw order). The Tweedie mean
    // (x + b g)/a from the f64 score against the closed form: a few ulps amplified by 1/a
    // (a = sqrt(abar_T) ~ 6e-3 on vp-linear), hence 1e-9 relative.
    let q0 = gaussian3();
    let model = MixtureScore::new(q0.clone());
    let grid = Schedule::vp_linear().grid(1, 0.0).unwrap();
    for mut cfg in every_family(1) {
        for kernel in [KernelKind::Ddpm, KernelKind::Ddim] {
            cfg.kernel = kernel;
            cfg.seed = 4;
            let xs = sample(&model, &cfg, 5).unwrap();
            for (j, x) in xs.iter().enumerate() {
                let mut rng = ChaCha8Rng::seed_from_u64(4);
                rng.set_stream(j as u64);
                let x_t: Vec<f64> = (0..3).map(|_| StandardNormal.sample(&mut rng)).collect();
                let want = gaussian_posterior_mean(&q0, grid.abar(1), &x_t);
                assert!(
                    (x - &want).norm() < 1e-9 * want.norm(),
                    "{kernel:?} {}: {x} vs {want}",
                    cfg.family.name()
                );
            }
        }
    }
    // And at the last step of a longer chain, from any x_t and whatever z: E[x_0 | x_{t_1}].
    let t = 4;
    let grid = Schedule::vp_linear().grid(t, 0.0).unwrap();
    let x_t = [0.3, -1.2, 0.8];
    let want = gaussian_posterior_mean(&q0, grid.abar(1), &x_t);
    for mut cfg in every_family(t) {
        for kernel in [KernelKind::Ddpm, KernelKind::Ddim] {
            cfg.kernel = kernel;
            for z in [[1.0, -2.0, 0.5], [-0.3, 0.9, 2.2]] {
                let y = DVector::from_vec(step_with_noise(&model, &cfg, 1, &x_t, &z).unwrap());
                // a = sqrt(abar_{t_1}) ~ 0.6 here: round-off only, 1e-12 relative.
                assert!(
                    (&y - &want).norm() < 1e-12 * want.norm(),
                    "{kernel:?} {}: {y} vs {want}",
                    cfg.family.name()
                );
            }
        }
    }
}

#[test]
fn the_noisy_last_step_has_the_kernel_variance() {
    // With LastStep::Noisy the last step draws from the last kernel. On diagonal Gaussian data
    // H = -(abar S + (1 - abar) I)^{-1} is diagonal and exact for every family but beta and
    // analytic, so diag, full, hutchinson (v .* (H v) = diag H for diagonal H), lgs-3 (k = D:
    // exact C^{1/2} z; lower clip 0 at s = 0, no upper clip) all have the kernel variance
    // C_jj = (b^2 H_jj + b) / a^2; beta has b, analytic clip(var(tr / D)). The sample variance
    // of n draws has relative standard error sqrt(2 / (n - 1)) = 1% at n = 20,000; we allow 5
    // of them. The default (mean) gives one point whatever z.
    let s = DMatrix::from_diagonal(&DVector::from_vec(vec![0.4, 1.0, 2.5]));
    let q0 = Mixture::from_dense(
        vec![1.0],
        vec![DVector::from_vec(vec![0.5, -1.0, 0.0])],
        vec![s.clone()],
    )
    .unwrap();
    let model = MixtureScore::new(q0);
    let t = 4;
    let grid = Schedule::vp_linear().grid(t, 0.0).unwrap();
    let st = grid.step(1);
    let (a2, b) = (st.a2, st.b);
    let abar = grid.abar(1);
    let h: Vec<f64> = (0..3)
        .map(|j| -1.0 / (abar * s[(j, j)] + 1.0 - abar))
        .collect();
    let tr = -2.0;
    let analytic = (b + b * b * tr / 3.0) / a2;
    assert!(analytic > 0.0);
    let x_t = [0.2, 0.7, -0.4];
    let n = 20_000;
    let cases: Vec<(SamplerFamily, Vec<f64>)> = vec![
        (SamplerFamily::Beta, vec![b; 3]),
        (SamplerFamily::Analytic, vec![analytic; 3]),
        (
            SamplerFamily::Diag,
            h.iter().map(|h| (b * b * h + b) / a2).collect(),
        ),
        (
            SamplerFamily::Full,
            h.iter().map(|h| (b * b * h + b) / a2).collect(),
        ),
        (
            SamplerFamily::Hutchinson(1),
            h.iter().map(|h| (b * b * h + b) / a2).collect(),
        ),
        (
            SamplerFamily::Lgs(LgsOptions::new(3)),
            h.iter().map(|h| (b * b * h + b) / a2).collect(),
        ),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for (fam, var) in cases {
        for last in [LastStep::Noisy, LastStep::Mean] {
            let mut cfg = SamplerConfig::new(fam, Schedule::vp_linear(), t);
            cfg.analytic_trace = Some(vec![tr; t]);
            cfg.last_step = last;
            let ys: Vec<DVector<f64>> = (0..n)
                .map(|_| {
                    let z: Vec<f64> = (0..3).map(|_| StandardNormal.sample(&mut rng)).collect();
                    DVector::from_vec(step_with_noise(&model, &cfg, 1, &x_t, &z).unwrap())
                })
                .collect();
            if last == LastStep::Mean {
                // No noise at all: every draw is the same point, bit for bit.
                assert!(ys.iter().all(|y| y == &ys[0]), "{}", fam.name());
                continue;
            }
            let (_, cov) = covlab::stats::sample_moments(&ys).unwrap();
            for j in 0..3 {
                assert!(
                    (cov[(j, j)] / var[j] - 1.0).abs() < 5.0 * (2.0 / (n - 1) as f64).sqrt(),
                    "{} coordinate {j}: {} vs {}",
                    fam.name(),
                    cov[(j, j)],
                    var[j]
                );
            }
        }
    }
}

#[test]
fn the_mean_last_step_evaluates_no_covariance() {
    // The last kernel's mean needs the score only: lgs-k and hutchinson-M spend their k or M
    // products on the T - 1 other steps (with LastStep::Noisy, on all T: the test above).
    let model = Counted::new(MixtureScore::new(presets::load("mix6").unwrap()));
    let (n, t, k) = (7usize, 5usize, 3usize);
    for (fam, per) in [
        (SamplerFamily::Lgs(LgsOptions::new(k)), k),
        (SamplerFamily::Hutchinson(4), 4),
    ] {
        model.reset();
        sample(
            &model,
            &SamplerConfig::new(fam, Schedule::vp_linear(), t),
            n,
        )
        .unwrap();
        assert_eq!(model.counts().score, (n * t) as u64);
        assert_eq!(
            model.counts().hvp,
            (n * (t - 1) * per) as u64,
            "{}",
            fam.name()
        );
    }
}

#[test]
fn a_bad_last_step_names_the_key() {
    let study = SamplersStudy {
        last_step: "maybe".into(),
        ..SamplersStudy::default()
    };
    let e = study.validate().unwrap_err().to_string();
    assert!(e.contains("last-step") && e.contains("maybe"), "{e}");
    assert_eq!(LastStep::from_name("noisy"), Ok(LastStep::Noisy));
    assert_eq!(LastStep::default(), LastStep::Mean);
}
