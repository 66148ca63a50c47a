//! CPU reverse samplers at known truth: LGS vs the exact full step, exact moments on
//! Gaussian data, thread-count invariance, Hutchinson's unbiasedness, the cost model, and
//! bad input.

use covlab::mixture::Mixture;
use covlab::presets;
use covlab::sampler::{
    hutchinson_diag, sample, step_with_noise, LgsOptions, SamplerConfig, SamplerError,
    SamplerFamily,
};
use covlab::schedule::Schedule;
use covlab::score::{Counted, LocalScore, MixtureScore, ScoreModel};
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
    let n = xs.len() as f64;
    let (mean, cov) = covlab::metrics::sample_moments(xs).unwrap();
    let s = q0.components()[0].covariance();
    let m = q0.mean();
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
    // at n = 20,000 (4 s.e. ~ 0.02).
    let q0 = gaussian3();
    let model = MixtureScore::new(q0.clone());
    let cfg = SamplerConfig::new(SamplerFamily::Full, Schedule::vp_linear(), 25);
    assert_moments(&q0, &sample(&model, &cfg, 20_000).unwrap());
}

#[test]
fn ddim_with_the_exact_clean_posterior_is_exact_on_gaussian_data() {
    // OCM-DDIM draws x_0 ~ N(m_0, Sigma_0) and sets x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s) eps_hat
    // with eps_hat = (x_t - sqrt(abar_t) x_0)/sqrt(1 - abar_t). With Sigma_0 = Cov(x_0 | x_t)
    // exact (Gaussian data, `full`), (x_0, eps_hat) has the prior law, so x_s ~ q_s exactly:
    // the same tolerances as the DDPM test.
    let q0 = gaussian3();
    let model = MixtureScore::new(q0.clone());
    let mut cfg = SamplerConfig::new(SamplerFamily::Full, Schedule::vp_linear(), 10);
    cfg.kernel = covlab::sampler::KernelKind::Ddim;
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
        let mut cfg = SamplerConfig::new(fam, Schedule::vp_linear(), 10);
        cfg.seed = 11;
        cfg.clip_range = Some((-10.0, 10.0));
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
    let model = Counted::new(MixtureScore::new(presets::load("mix6").unwrap()));
    let (n, t, k) = (7usize, 5usize, 3usize);
    let cfg = SamplerConfig::new(
        SamplerFamily::Lgs(LgsOptions::new(k)),
        Schedule::vp_linear(),
        t,
    );
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
    let cfg = SamplerConfig::new(SamplerFamily::Hutchinson(4), Schedule::vp_linear(), t);
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
