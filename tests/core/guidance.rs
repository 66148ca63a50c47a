//! The exact classifier-guidance example (issue "Classifier guidance: the exact Gaussian
//! counterexample and the path-KL bound"). Everything here is closed form; tolerances are
//! round-off levels or slope windows, each with its reason.

use covlab::kl::guidance::{
    evaluate, guided_endpoint, sample_guided, Choice, GaussianExample, GuidanceParams, Init,
};
use covlab::process::schedule::Schedule;
use covlab::stats::rates::fit_loglog;
use nalgebra::{Matrix2, Vector2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn example(angle: f64, init: Init) -> GaussianExample {
    GaussianExample::new(GuidanceParams {
        angle_deg: angle,
        init,
        ..GuidanceParams::default()
    })
    .unwrap()
}

const TS: [usize; 5] = [64, 128, 256, 512, 1024];

fn slope(ex: &GaussianExample, choice: Choice, schedule: &Schedule, ts: &[usize]) -> f64 {
    let y: Vec<f64> = ts
        .iter()
        .map(|&t| evaluate(ex, choice, schedule, t).unwrap().endpoint_kl)
        .collect();
    let x: Vec<f64> = ts.iter().map(|&t| t as f64).collect();
    fit_loglog(&x, &y, [ts[0] as f64, *ts.last().unwrap() as f64])
        .unwrap()
        .slope
}

#[test]
fn unguided_full_chain_ends_exactly_at_q0() {
    // With the exact start q(x_T) and the exact covariance, P_s = A P_t A^T + C = S_s holds
    // identically, so KL(q_0 || p_0) is round-off: a relative covariance error eps gives
    // KL ~ eps^2, and eps <= 1e-12 after 1024 steps of 2x2 products, hence KL < 1e-22.
    let ex = example(30.0, Init::Exact);
    for schedule in [Schedule::vp_linear(), Schedule::snr_uniform()] {
        for t in [1usize, 2, 7, 64, 1024] {
            let r = evaluate(&ex, Choice::Full, &schedule, t).unwrap();
            assert!(
                r.unguided_endpoint_kl.abs() < 1e-22,
                "{} T={t}: {}",
                schedule.name(),
                r.unguided_endpoint_kl
            );
            assert!(
                r.path_kl.abs() < 1e-22,
                "full path KL must be 0 for Gaussian data"
            );
        }
    }
}

#[test]
fn full_choice_rate_is_two_on_vp_linear() {
    // The window and interval for the full covariance: measured -1.992.
    let s = slope(
        &example(30.0, Init::Exact),
        Choice::Full,
        &Schedule::vp_linear(),
        &TS,
    );
    assert!((-2.15..=-1.85).contains(&s), "full slope {s}");
}

#[test]
fn scalar_choice_is_not_theta_one_over_t_for_the_guided_kernel() {
    // The paper (Theorem 12) claims Theta(1/T) for the scalar (beta-tilde) choice. With the
    // guided kernel N(mu + Sigma grad log q(y|x_t), Sigma) exactly as specified, the lab finds
    // otherwise: on vp-linear the slope on T in [64, 1024] is -1.86 (tending to -2 beyond:
    // -1.95 between 2048 and 4096). Reason: every choice here has Sigma = b (1 + O(b)) I-ish,
    // while the exact conditional mean is A x_t + (b / a) grad log q(y | x_t), so the guided
    // mean errs by O(b^2) per step and the endpoint mean bias is O(1/T), i.e. KL O(1/T^2).
    // The interval [-2.0, -1.7] brackets the measured value with margin for the fit.
    let s = slope(
        &example(30.0, Init::Exact),
        Choice::Scalar,
        &Schedule::vp_linear(),
        &TS,
    );
    assert!((-2.0..=-1.7).contains(&s), "scalar slope {s}");
    assert!(!(-1.1..=-0.9).contains(&s));
}

#[test]
fn snr_uniform_is_pre_asymptotic_below_1024_and_tends_to_two() {
    // snr-uniform with lambda_max = 1e3 has SNR increments 1e3/T: on [64, 1024] the first
    // step (from lambda_min = 1e-4 to ~1e3/T) is an O(1) jump, and the slopes are shallow
    // (measured: scalar -1.21, full -0.63). With lambda_max = 10 and T in [16384, 262144]
    // all choices approach -2 (measured -1.93 scalar, -1.90 full); [-2.2, -1.8] brackets that.
    let ex = example(30.0, Init::Exact);
    let s_scalar = slope(&ex, Choice::Scalar, &Schedule::snr_uniform(), &TS);
    let s_full = slope(&ex, Choice::Full, &Schedule::snr_uniform(), &TS);
    assert!(
        s_scalar > -1.5 && s_full > -1.0,
        "pre-asymptotic slopes {s_scalar} {s_full}"
    );
    let sch = Schedule::SnrUniform {
        lambda_min: 1e-4,
        lambda_max: 10.0,
    };
    let big = [16384usize, 65536, 262144];
    for c in [Choice::Scalar, Choice::Full] {
        let s = slope(&ex, c, &sch, &big);
        assert!(
            (-2.2..=-1.8).contains(&s),
            "{} asymptotic slope {s}",
            c.name()
        );
    }
}

#[test]
fn diagonal_choice_equals_full_when_r_is_axis_aligned() {
    // angle 0 (and 90): S_0 is diagonal, so every C is diagonal and diag(C) = C exactly:
    // the two chains are the same up to round-off (1e-12 relative).
    for angle in [0.0, 90.0] {
        let ex = example(angle, Init::Exact);
        for t in [8usize, 64, 512] {
            let d = evaluate(&ex, Choice::Diag, &Schedule::vp_linear(), t).unwrap();
            let f = evaluate(&ex, Choice::Full, &Schedule::vp_linear(), t).unwrap();
            assert!((d.endpoint_kl - f.endpoint_kl).abs() <= 1e-12 * f.endpoint_kl);
            assert!(d.path_kl.abs() < 1e-22);
        }
    }
    // Rotated (30 deg): diag(C) misses the off-diagonal O(b^2) entries, so its path KL is
    // Theta(1/T) (slope in [-1.1, -0.9]; measured -1.000) where full's is 0, but its guided
    // endpoint KL still decays like full's (measured -1.989 vs -1.992 on vp-linear).
    let ex = example(30.0, Init::Exact);
    let x: Vec<f64> = TS.iter().map(|&t| t as f64).collect();
    let p: Vec<f64> = TS
        .iter()
        .map(|&t| {
            evaluate(&ex, Choice::Diag, &Schedule::vp_linear(), t)
                .unwrap()
                .path_kl
        })
        .collect();
    let s = fit_loglog(&x, &p, [64.0, 1024.0]).unwrap().slope;
    assert!((-1.1..=-0.9).contains(&s), "diag path KL slope {s}");
    let se = slope(&ex, Choice::Diag, &Schedule::vp_linear(), &TS);
    assert!((-2.15..=-1.85).contains(&se), "diag endpoint slope {se}");
}

#[test]
fn proposition_11_holds_for_exact_guidance_and_its_two_routes_agree() {
    // Proposition 11: under exact (Bayes) guidance of the model chain,
    // E_y KL(q(x0|y) || p(x0|y)) = KL(q0 || p0) - KL(q(y) || p(y)) <= path KL.
    // Route 1 averages the closed-form conditional KL over y; route 2 is the identity;
    // they agree to 1e-9 relative, + 1e-20 absolute: for the exact full chain both are 0 and
    // the formulas return round-off, KL ~ eps^2 with eps ~ 1e-12 relative covariance error.
    for init in [Init::Exact, Init::StandardNormal] {
        let ex = example(30.0, init);
        for schedule in [Schedule::vp_linear(), Schedule::snr_uniform()] {
            for c in Choice::ALL {
                for t in [2usize, 4, 16, 64, 256, 1024] {
                    let r = evaluate(&ex, c, &schedule, t).unwrap();
                    let tol = 1e-9 * r.bayes_endpoint_kl_avg.abs() + 1e-20;
                    assert!(
                        (r.bayes_endpoint_kl_avg - r.bayes_endpoint_kl_identity).abs() <= tol,
                        "{} {} T={t}: {} vs {}",
                        c.name(),
                        schedule.name(),
                        r.bayes_endpoint_kl_avg,
                        r.bayes_endpoint_kl_identity
                    );
                    assert!(
                        r.bayes_endpoint_kl_avg <= r.path_kl + 1e-20,
                        "{} {} T={t}: {} > {}",
                        c.name(),
                        schedule.name(),
                        r.bayes_endpoint_kl_avg,
                        r.path_kl
                    );
                    assert!(r.bayes_endpoint_kl_avg >= -1e-20);
                }
            }
        }
    }
}

#[test]
fn the_guided_kernel_is_not_exact_guidance_so_proposition_11_does_not_cover_it() {
    // With the full covariance the unconditional chain is exact (path KL 0), yet the guided
    // kernel's conditional endpoint KL is positive: the inequality of Proposition 11 fails
    // for the Dhariwal-Nichol kernel, whose normaliser is not q(y | x_t).
    let ex = example(30.0, Init::Exact);
    let r = evaluate(&ex, Choice::Full, &Schedule::vp_linear(), 64).unwrap();
    assert!(r.path_kl.abs() < 1e-22);
    assert!(r.endpoint_kl_avg > 1e-4, "{}", r.endpoint_kl_avg);
}

#[test]
fn monte_carlo_endpoint_agrees_with_exact_propagation() {
    // Ancestral sampling of the guided chain (scalar choice, snr-uniform, T = 16, y = 2)
    // vs the exact law N(alpha y, P). n = 40000: each mean coordinate within 4 standard
    // errors sqrt(P_ii / n); each covariance entry within 4 standard errors
    // sqrt((P_ii P_jj + P_ij^2) / n) (Gaussian fourth moments). 4 s.e. keeps the false-alarm
    // rate below 1e-3 per check for this fixed seed's test.
    let ex = example(30.0, Init::Exact);
    let (schedule, t, y, n) = (Schedule::snr_uniform(), 16usize, 2.0, 40_000usize);
    for choice in [Choice::Scalar, Choice::Full] {
        let (alpha, p) = guided_endpoint(&ex, choice, &schedule, t).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let xs = sample_guided(&ex, choice, &schedule, t, y, n, &mut rng).unwrap();
        let mean = xs.iter().fold(Vector2::zeros(), |a, x| a + x) / n as f64;
        let cov = xs.iter().fold(Matrix2::zeros(), |a, x| {
            a + (x - mean) * (x - mean).transpose()
        }) / (n as f64 - 1.0);
        let m = alpha * y;
        for i in 0..2 {
            let se = (p[(i, i)] / n as f64).sqrt();
            assert!(
                (mean[i] - m[i]).abs() < 4.0 * se,
                "{} mean[{i}] {} vs {}",
                choice.name(),
                mean[i],
                m[i]
            );
            for j in 0..2 {
                let se = ((p[(i, i)] * p[(j, j)] + p[(i, j)].powi(2)) / n as f64).sqrt();
                assert!(
                    (cov[(i, j)] - p[(i, j)]).abs() < 4.0 * se,
                    "{} cov[{i},{j}] {} vs {}",
                    choice.name(),
                    cov[(i, j)],
                    p[(i, j)]
                );
            }
        }
    }
}

#[test]
fn bad_choice_and_degenerate_scalar_step_are_errors() {
    let ex = example(30.0, Init::Exact);
    assert!(Choice::from_name("beta").is_err());
    // vp-linear, T = 1: beta-tilde's only step is degenerate (abar_0 = 1) and the clip remedy
    // needs a second step.
    assert!(evaluate(&ex, Choice::Scalar, &Schedule::vp_linear(), 1).is_err());
    assert!(evaluate(&ex, Choice::Full, &Schedule::vp_linear(), 0).is_err());
}
