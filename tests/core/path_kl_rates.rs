//! Convergence rates of S_fam(T) on vp-linear (route A, default rule): the papers predict
//! T^-1 for `beta`, `analytic`, `diag` and T^-2 for `full` (`docs/path-kl.md#slopes`). Slopes are
//! fitted by `fit_loglog` on T = 128, 256, 512, 1024 (the asymptotic window).
//!
//! `beta-tilde` is special on a grid that starts at abar = 1: its last step is degenerate and
//! the default `clip` remedy replaces it by a fixed variance, which leaves a T-independent
//! O(1) term (see [`BETA_TILDE_CLIP_LIMIT_2D`] below).

use crate::common;

use common::{est, params_for, timed_sweep};
use covlab::data::presets;
use covlab::kernel::family::{BetaTildeRemedy, Family};
use covlab::kl::path_kl::{PathKlParams, PathKlReport};
use covlab::process::schedule::Schedule;
use covlab::stats::rates::{fit_loglog, SlopeFit};

/// The sweep (powers of two, nested grids share every time point).
const STEPS: [usize; 4] = [128, 256, 512, 1024];
/// The fit window: all four points.
const WINDOW: [f64; 2] = [128.0, 1024.0];

/// Predicted slope ranges (`docs/path-kl.md#slopes`): -1 +- 0.1 and -2 +- 0.1.
const FIRST_ORDER: [f64; 2] = [-1.1, -0.9];
const SECOND_ORDER: [f64; 2] = [-2.1, -1.9];

/// Early stop of the second beta-tilde sweep.
const EARLY_STOP: f64 = 1e-3;

fn slope(report: &PathKlReport, family: Family, label: &str) -> SlopeFit {
    let x: Vec<f64> = STEPS.iter().map(|&t| t as f64).collect();
    let rows: Vec<_> = STEPS.iter().map(|&t| est(report, family, t)).collect();
    for (t, r) in STEPS.iter().zip(&rows) {
        // The fit is only meaningful if each value is resolved: error below 1 % of the value
        // (a 1 % error moves a slope over a factor-8 range by at most ~0.01).
        assert!(
            r.value > 0.0 && r.err < 1e-2 * r.value,
            "{label} {} T = {t}: S = {:e} +- {:e} not resolved",
            family.name(),
            r.value,
            r.err
        );
    }
    let y: Vec<f64> = rows.iter().map(|r| r.value).collect();
    let fit = fit_loglog(&x, &y, WINDOW).expect("fit");
    assert_eq!(fit.n, STEPS.len());
    println!(
        "{label} {:>10}: slope {:+.4} (95% CI [{:+.4}, {:+.4}], R2 {:.6}); S = {}",
        family.name(),
        fit.slope,
        fit.ci95[0],
        fit.ci95[1],
        fit.r_squared,
        rows.iter()
            .map(|r| format!("{:.6e}+-{:.1e}", r.value, r.err))
            .collect::<Vec<_>>()
            .join(", ")
    );
    fit
}

fn assert_in(fit: &SlopeFit, range: [f64; 2], what: &str) {
    assert!(
        range[0] <= fit.slope && fit.slope <= range[1],
        "{what}: slope {} outside [{}, {}]",
        fit.slope,
        range[0],
        range[1]
    );
}

/// All five families in one sweep; checks the predicted slopes and beta-tilde (clip).
fn check_predicted_rates(name: &str) {
    let q0 = presets::load(name).expect("preset");
    let report = timed_sweep(
        &format!("{name} all families"),
        &q0,
        &Schedule::vp_linear(),
        &STEPS,
        &PathKlParams::default(),
    );
    for fam in [Family::Beta, Family::Analytic, Family::Diag] {
        let fit = slope(&report, fam, name);
        assert_in(&fit, FIRST_ORDER, &format!("{name} {}", fam.name()));
    }
    let fit = slope(&report, Family::Full, name);
    assert_in(&fit, SECOND_ORDER, &format!("{name} full"));
    check_beta_tilde_clipped(name, &report);
}

/// The limit of S_beta-tilde(T) under the `clip` remedy in D = 2: gamma + 1 - ln 2.
///
/// Near the data (1 - abar_i ~ c i with c = beta_min / T, C_st ~ b_i I ~ c I as the steps
/// are much finer than the data's scale), beta-tilde's variance is
/// b_i (1 - abar_{i-1}) / (1 - abar_i) ~ c (i - 1) / i: a fixed variance ratio i / (i - 1) per
/// step, whose Gaussian KL D/2 (1/k - ln(1 + 1/k)) (k = i - 1) does not shrink with T and sums
/// over k to (D/2) gamma. The clipped first step borrows step 2's variance ~ c / 2 (ratio 2):
/// (D/2)(1 - ln 2). Every other step contributes O(1/T^2) as for `beta`. So for D = 2,
/// S(T) -> gamma + 1 - ln 2 ~ 0.884 from above, whatever the data (an independent
/// Gaussian computation with sigma^2 = 40 and 0.05 gives 0.887 at T = 2^18), and the fitted
/// slope tends to 0.
const BETA_TILDE_CLIP_LIMIT_2D: f64 = 0.577_215_664_901_532_9 + 1.0 - std::f64::consts::LN_2;

/// beta-tilde with the default `clip` remedy (grid from abar = 1): S(T) decreases towards the
/// positive constant [`BETA_TILDE_CLIP_LIMIT_2D`], so on T = 128..1024 the slope lies in
/// (-0.5, 0) (far flatter than T^-1); the values stay above the limit; the decrements
/// S(T) - S(2T) are positive and shrink.
fn check_beta_tilde_clipped(name: &str, report: &PathKlReport) {
    assert_eq!(report.beta_tilde_last_step, "clipped");
    let fit = slope(report, Family::BetaTilde, &format!("{name} (clip)"));
    assert!(
        -0.5 < fit.slope && fit.slope < 0.0,
        "{name} beta-tilde (clip): slope {} not in (-0.5, 0)",
        fit.slope
    );
    let s: Vec<f64> = STEPS
        .iter()
        .map(|&t| est(report, Family::BetaTilde, t).value)
        .collect();
    let diffs: Vec<f64> = s.windows(2).map(|w| w[0] - w[1]).collect();
    println!(
        "{name} beta-tilde (clip): S(T) - S(2T) = {diffs:?}; limit gamma + 1 - ln 2 = \
         {BETA_TILDE_CLIP_LIMIT_2D:.6}"
    );
    assert!(
        s.iter().all(|&v| v > BETA_TILDE_CLIP_LIMIT_2D),
        "{name} beta-tilde (clip): S(T) = {s:?} not above the limit {BETA_TILDE_CLIP_LIMIT_2D}"
    );
    for w in diffs.windows(2) {
        assert!(
            w[0] > 0.0 && w[1] > 0.0 && w[1] < w[0],
            "{name} beta-tilde (clip): successive decrements {diffs:?} not positive and shrinking"
        );
    }
}

/// beta-tilde with early stop delta = 1e-3 (grid from tau = 1e-3, 1 - abar_0 = e0 ~ 1.1e-4).
///
/// Now 1 - abar_i ~ e0 + c i (c = beta_min / T ~ 1e-4 at T = 1024): while c >> e0 the first
/// steps see the same fixed ratios as above plus a first step with variance ratio
/// (1 - abar_1)/(1 - abar_0) ~ c / e0 >> 1; as T grows, c / e0 -> 0, the ratios tend to 1 and
/// S(T) -> 0 as T^-1 (first order). On T = 128..1024 the O(1) near-data part is still dying
/// out, so the decay is steeper than T^-1: an independent Gaussian computation gives local
/// exponents 1.39, 1.27, 1.18 per doubling here, then 1.08, 1.01, 1.00 up to T = 2^18.
/// We assert a fitted slope in [-1.5, -1.1] and local exponents log2(S(T)/S(2T)) that all
/// exceed 1 and decrease towards it.
fn check_beta_tilde_early_stop(name: &str) {
    let q0 = presets::load(name).expect("preset");
    let params = PathKlParams {
        early_stop: EARLY_STOP,
        remedy: BetaTildeRemedy::Clip,
        ..params_for(&[Family::BetaTilde, Family::Beta])
    };
    let report = timed_sweep(
        &format!("{name} beta-tilde early stop"),
        &q0,
        &Schedule::vp_linear(),
        &STEPS,
        &params,
    );
    assert_eq!(report.beta_tilde_last_step, "early-stop");
    let beta = slope(&report, Family::Beta, &format!("{name} (early stop)"));
    assert_in(&beta, FIRST_ORDER, &format!("{name} beta (early stop)"));
    let fit = slope(&report, Family::BetaTilde, &format!("{name} (early stop)"));
    assert_in(
        &fit,
        [-1.5, -1.1],
        &format!("{name} beta-tilde (early stop)"),
    );
    let s: Vec<f64> = STEPS
        .iter()
        .map(|&t| est(&report, Family::BetaTilde, t).value)
        .collect();
    let local: Vec<f64> = s.windows(2).map(|w| (w[0] / w[1]).log2()).collect();
    println!("{name} beta-tilde (early stop): local exponents {local:?}");
    assert!(local.iter().all(|&e| e > 1.0), "local exponents {local:?}");
    assert!(
        local.windows(2).all(|w| w[1] < w[0]),
        "local exponents {local:?} not decreasing"
    );
}

#[test]
fn rates_mog40() {
    check_predicted_rates("mog40");
    check_beta_tilde_early_stop("mog40");
}

#[test]
fn rates_aniso2() {
    check_predicted_rates("aniso2");
    check_beta_tilde_early_stop("aniso2");
}
