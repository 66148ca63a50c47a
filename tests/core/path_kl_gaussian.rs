//! Path KL for a single Gaussian q_0 = N(mu, Sigma) in D = 2, against closed forms coded
//! independently here.
//!
//! For Gaussian data every q_t is Gaussian, N(sqrt(abar_t) mu, abar_t Sigma + (1 - abar_t) I),
//! and every reverse kernel q(x_s | x_t) is Gaussian with a state-independent covariance
//! C_st (the Schur complement of the joint covariance of (x_s, x_t)). Hence
//! - `full` (model covariance C_st) has S(T) = 0 exactly;
//! - every other family's S(T) is a plain sum over steps of Gaussian KLs
//!   KL(N(m, C_st) || N(m, Sigma_fam)) (the means agree), with Sigma_fam
//!   = b I (`beta`), b (1 - abar_s)/(1 - abar_t) I (`beta-tilde`), tr(C_st)/D I (`analytic`,
//!   since C is state independent) and diag(C_st) (`diag`).
//!
//! The closed forms use only the grid's time points (`ln_abar`, and `a2`, `b` of each step)
//! and nalgebra; they never call covlab's posterior or covariance code.

use crate::common;

use common::{
    est, gauss_kl_same_mean, gauss_kl_to_std_normal, marginal_cov, one_minus_exp, params_for,
    reverse_cov, rotated_2x2, timed_sweep,
};
use covlab::data::mixture::Mixture;
use covlab::kernel::family::{BetaTildeRemedy, Family};
use covlab::kl::path_kl::{PathKlParams, PathKlReport};
use covlab::process::schedule::{Grid, Schedule};
use nalgebra::{DMatrix, DVector};

/// The T values checked.
const STEPS: [usize; 3] = [4, 16, 64];

/// Early stop used where beta-tilde's last step must not be degenerate.
const EARLY_STOP: f64 = 1e-3;

/// Bound on |S_full| (exactly 0 for Gaussian data). Route A forms S_full as a sum of
/// T + 3 terms of size O(1)-O(10) (per-step half log-determinants, (D/2) ln(abar_0/abar_T)
/// ~ 10, two entropies ~ 3), each correct to a few ulps; the trapezoid lattice at
/// h = 0.35 sd integrates a Gaussian to ~exp(-2 pi^2 / 0.35^2) ~ e^-161 (nothing). With T <= 64
/// the round-off budget is ~ 64 * 20 * 1e-16 ~ 1e-13; 1e-11 leaves a factor 100 margin
/// while still catching any O(1/T^2) leak (>= 1e-5 at T = 64).
const FULL_ABS_TOL: f64 = 1e-11;

/// Slack added to the code's own error estimate when checking |S_full| <= err + slack:
/// the estimate's round-off floor (16 eps sum|terms|) should already cover the
/// cancellation, so the slack is only a few ulps of the O(10) terms.
const FULL_ERR_SLACK: f64 = 1e-13;

/// Relative tolerance between covlab's S_fam and the closed-form sum. Both sides are
/// cancellation-free to ~1e-13 relative (covlab: u - ln(1 + u) per eigenvalue; here the
/// dense KL loses ~D eps absolute per step and the Schur complement ~eps/b relative with
/// b >= 1e-3), so 1e-9 is a wide margin that still detects any formula error (which would
/// show up at O(1) relative).
const FAMILY_REL_TOL: f64 = 1e-9;

/// Absolute tolerance on the terminal KL: covlab integrates ln q_T(x) - ln N(x; 0, I) over the
/// nodes, each value a cancellation of terms of size |ln q| + |x|^2/2 + (D/2) ln 2 pi ~ 10, so
/// a few ulps of 10 (~1e-14, which its error estimate also carries) plus the lattice error
/// (negligible for a Gaussian); 1e-12 is a safe margin.
const TERMINAL_ABS_TOL: f64 = 1e-12;

struct Case {
    name: &'static str,
    mu: DVector<f64>,
    sigma: DMatrix<f64>,
    /// Sigma = s^2 I: then C_st is a multiple of I and `analytic` = `diag` = `full`.
    isotropic: bool,
}

impl Case {
    fn mixture(&self) -> Mixture {
        Mixture::from_dense(vec![1.0], vec![self.mu.clone()], vec![self.sigma.clone()])
            .expect("valid Gaussian")
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            // Dense and strongly correlated (correlation 0.9/sqrt(1.2) ~ 0.82).
            name: "dense-correlated",
            mu: DVector::from_vec(vec![1.0, -0.5]),
            sigma: DMatrix::from_row_slice(2, 2, &[1.5, 0.9, 0.9, 0.8]),
            isotropic: false,
        },
        Case {
            // Dense, sharp and anisotropic (eigenvalues 2 and 0.01, rotated 35 degrees).
            name: "dense-sharp",
            mu: DVector::from_vec(vec![0.3, 0.7]),
            sigma: rotated_2x2(2.0, 0.01, 35.0),
            isotropic: false,
        },
        Case {
            // Isotropic: takes covlab's isotropic fast path.
            name: "isotropic",
            mu: DVector::from_vec(vec![-0.4, 0.2]),
            sigma: DMatrix::identity(2, 2) * 0.3,
            isotropic: true,
        },
    ]
}

/// The model variance of an isotropic family at step i (None for diag / full).
fn iso_variance(family: Family, grid: &Grid, i: usize, c: &DMatrix<f64>) -> Option<f64> {
    let step = grid.step(i);
    let d = c.nrows() as f64;
    match family {
        Family::Beta => Some(step.b),
        Family::BetaTilde => {
            let oma_s = one_minus_exp(grid.ln_abar[i - 1]);
            let oma_t = one_minus_exp(grid.ln_abar[i]);
            if oma_s > 0.0 {
                Some(step.b * oma_s / oma_t)
            } else {
                // Documented `clip` remedy: the degenerate last step borrows the next
                // step's beta-tilde variance b_{i+1} (1 - abar_i)/(1 - abar_{i+1}).
                let next = grid.step(i + 1);
                Some(next.b * oma_t / one_minus_exp(grid.ln_abar[i + 1]))
            }
        }
        Family::Analytic => Some(c.trace() / d),
        Family::Diag | Family::Full => None,
    }
}

/// Independent closed form of step i's term of S_fam for Gaussian data on `grid`.
fn closed_form_step(family: Family, sigma: &DMatrix<f64>, grid: &Grid, i: usize) -> f64 {
    let d = sigma.nrows();
    let step = grid.step(i);
    let c = reverse_cov(sigma, grid.ln_abar[i - 1], step.a2, step.b);
    let model = match family {
        Family::Diag => DMatrix::from_diagonal(&c.diagonal()),
        Family::Full => c.clone(),
        _ => DMatrix::identity(d, d) * iso_variance(family, grid, i, &c).expect("isotropic"),
    };
    gauss_kl_same_mean(&c, &model)
}

/// Independent closed form of S_fam(T) for Gaussian data on `grid`.
fn closed_form(family: Family, sigma: &DMatrix<f64>, grid: &Grid) -> f64 {
    (1..=grid.steps())
        .map(|i| closed_form_step(family, sigma, grid, i))
        .sum()
}

fn check_case(case: &Case, report: &PathKlReport, early_stop: f64, families: &[Family]) {
    let schedule = Schedule::vp_linear();
    for &t in &STEPS {
        let full = est(report, Family::Full, t);
        println!(
            "{} (early_stop {early_stop}) T = {t}: S_full = {:.3e} +- {:.3e}",
            case.name, full.value, full.err
        );
        assert!(
            full.value.abs() <= FULL_ABS_TOL,
            "{}: |S_full({t})| = {:e} > {FULL_ABS_TOL:e}",
            case.name,
            full.value
        );
        assert!(
            full.value.abs() <= full.err + FULL_ERR_SLACK,
            "{}: |S_full({t})| = {:e} exceeds its error estimate {:e} + {FULL_ERR_SLACK:e}",
            case.name,
            full.value,
            full.err
        );
        let grid = schedule.grid(t, early_stop).expect("grid");
        for &fam in families {
            if fam == Family::Full {
                continue;
            }
            let got = est(report, fam, t);
            let want = closed_form(fam, &case.sigma, &grid);
            let diff = (got.value - want).abs();
            println!(
                "  {:>10}: covlab {:.15e} +- {:.1e}, closed form {:.15e}, rel diff {:.2e}",
                fam.name(),
                got.value,
                got.err,
                want,
                diff / want.abs().max(f64::MIN_POSITIVE)
            );
            // A KL is >= 0; it is 0 (to rounding) only where the family coincides with C_st
            // (`analytic` and `diag` for isotropic Sigma, where C_st is a multiple of I).
            assert!(
                want >= -FULL_ABS_TOL,
                "{}: closed form for {} negative",
                case.name,
                fam.name()
            );
            if case.isotropic {
                let exact_here = matches!(fam, Family::Analytic | Family::Diag);
                assert_eq!(
                    want.abs() <= FULL_ABS_TOL,
                    exact_here,
                    "{}: closed form for {} is {want:e}",
                    case.name,
                    fam.name()
                );
            } else {
                assert!(
                    want > FULL_ABS_TOL,
                    "{}: closed form for {} is {want:e}",
                    case.name,
                    fam.name()
                );
            }
            assert!(
                diff <= FULL_ABS_TOL + FAMILY_REL_TOL * want,
                "{} {} T = {t}: covlab {} vs closed form {} (diff {diff:e})",
                case.name,
                fam.name(),
                got.value,
                want
            );
        }
        // The closed form of `full` itself is zero to rounding: a sanity check of the
        // independent toolbox (KL of a matrix against itself).
        let self_kl = closed_form(Family::Full, &case.sigma, &grid);
        assert!(
            self_kl.abs() <= FULL_ABS_TOL,
            "toolbox: KL(C||C) = {self_kl:e}"
        );
    }
}

/// Early stop 1e-3: every family is non-degenerate, beta-tilde uses its plain formula.
#[test]
fn gaussian_families_match_closed_form_with_early_stop() {
    let families = Family::ALL;
    let params = PathKlParams {
        early_stop: EARLY_STOP,
        ..params_for(&families)
    };
    for case in cases() {
        let report = timed_sweep(
            &format!("gaussian {} early-stop", case.name),
            &case.mixture(),
            &Schedule::vp_linear(),
            &STEPS,
            &params,
        );
        assert_eq!(report.beta_tilde_last_step, "early-stop");
        check_case(&case, &report, EARLY_STOP, &families);
    }
}

/// No early stop: the grid starts at abar = 1; beta-tilde's last step is clipped to the
/// next step's variance (the documented default remedy), which the closed form mirrors.
#[test]
fn gaussian_families_match_closed_form_from_clean_data_with_clip() {
    let families = Family::ALL;
    let params = PathKlParams {
        remedy: BetaTildeRemedy::Clip,
        early_stop: 0.0,
        ..params_for(&families)
    };
    for case in cases() {
        let report = timed_sweep(
            &format!("gaussian {} clip", case.name),
            &case.mixture(),
            &Schedule::vp_linear(),
            &STEPS,
            &params,
        );
        assert_eq!(report.beta_tilde_last_step, "clipped");
        check_case(&case, &report, 0.0, &families);
    }
}

/// The terminal KL(q_{t_T} || N(0, I)) equals the closed form
/// KL(N(m_T, B_T) || N(0, I)) = (1/2)(|m_T|^2 + sum_i (l_i - 1 - ln l_i)), with
/// m_T = sqrt(abar_T) mu and l_i - 1 = abar_T (sigma_i - 1) for the eigenvalues sigma_i of Sigma.
/// Checked on the default vp-linear (abar_T ~ 4e-5: a tiny KL) and on a short vp-linear
/// (beta_max = 2, abar_T = e^-1.05: an O(1) KL).
#[test]
fn gaussian_terminal_kl_matches_closed_form() {
    let schedules = [
        Schedule::vp_linear(),
        Schedule::VpLinear {
            beta_min: 0.1,
            beta_max: 2.0,
        },
    ];
    let params = params_for(&[Family::Full]);
    for case in cases() {
        let eig = case.sigma.clone().symmetric_eigen().eigenvalues;
        for schedule in &schedules {
            let report = timed_sweep(
                &format!("terminal {} {}", case.name, schedule.name()),
                &case.mixture(),
                schedule,
                &[4, 8],
                &params,
            );
            let grid = schedule.grid(8, 0.0).expect("grid");
            let ln_t = grid.ln_abar[grid.steps()];
            let abar_t = ln_t.exp();
            let m_t = &case.mu * abar_t.sqrt();
            let lm1: Vec<f64> = eig.iter().map(|s| abar_t * (s - 1.0)).collect();
            let want = gauss_kl_to_std_normal(&m_t, &lm1);
            // Cross-check the stable form against the dense matrix form (well conditioned
            // here since abar_T (sigma - 1) is not tiny only for the short schedule; the
            // dense form loses ~eps / KL relative, hence the loose 1e-6).
            let b_t = marginal_cov(&case.sigma, ln_t);
            let dense =
                gauss_kl_same_mean(&b_t, &DMatrix::identity(2, 2)) + 0.5 * m_t.norm_squared();
            assert!(
                (dense - want).abs() <= 1e-6 * want + 1e-14,
                "toolbox: stable {want:e} vs dense {dense:e}"
            );
            let got = report.terminal_kl;
            println!(
                "{} {}: terminal KL covlab {:.15e} +- {:.1e}, closed form {:.15e}",
                case.name,
                schedule.name(),
                got.value,
                got.err,
                want
            );
            assert!(
                (got.value - want).abs() <= got.err + TERMINAL_ABS_TOL,
                "{} {}: terminal KL {} vs closed form {want}",
                case.name,
                schedule.name(),
                got.value
            );
        }
    }
}

/// The terminal KL by randomised QMC in D = 6 (the rule of `mix6` and the image presets): a
/// Gaussian with a dense covariance, against the closed form. The estimate integrates the
/// log-ratio ln q_T - ln N(0, I), which is small where q_T is near N(0, I): it must agree within
/// its own error (2 s.e. of the shifts, plus 1e-12 for round-off) and that error must be small
/// against the value (< 25 %). The former estimate, (1/2) E|x|^2 - H(q_T) with a cubature
/// entropy, carried the QMC error of the O(D) entropy: on mix6 it gave 6.7e-3 +- 1.9e-2 for a
/// KL of ~1e-4, and on digits8 a negative KL.
#[test]
fn gaussian_terminal_kl_by_qmc_in_d6() {
    use covlab::kl::path_kl::RuleChoice;
    let d = 6;
    // A dense SPD covariance with eigenvalues in [0.3, 2.5] (random rotation, fixed seed).
    let a = DMatrix::from_fn(d, d, |i, j| ((i * 7 + j * 3) % 11) as f64 / 11.0 - 0.45);
    let q = a.qr().q();
    let lam = DVector::from_vec(vec![0.3, 0.6, 0.9, 1.4, 2.0, 2.5]);
    let sigma = &q * DMatrix::from_diagonal(&lam) * q.transpose();
    let sigma = (&sigma + sigma.transpose()) * 0.5;
    let mu = DVector::from_vec(vec![0.5, -1.0, 0.25, 0.0, 1.5, -0.75]);
    let q0 = Mixture::from_dense(vec![1.0], vec![mu.clone()], vec![sigma]).expect("Gaussian");
    let params = PathKlParams {
        rule: RuleChoice::Qmc,
        ..params_for(&[Family::Full])
    };
    let schedule = Schedule::vp_linear();
    let report = timed_sweep("terminal qmc d6", &q0, &schedule, &[4], &params);
    let grid = schedule.grid(4, 0.0).expect("grid");
    let abar_t = grid.ln_abar[grid.steps()].exp();
    let lm1: Vec<f64> = lam.iter().map(|s| abar_t * (s - 1.0)).collect();
    let want = gauss_kl_to_std_normal(&(&mu * abar_t.sqrt()), &lm1);
    let got = report.terminal_kl;
    println!(
        "terminal KL d6 qmc: {:e} +- {:e}, closed form {want:e}",
        got.value, got.err
    );
    assert!(
        (got.value - want).abs() <= got.err + 1e-12,
        "QMC terminal KL {:e} +- {:e} vs closed form {want:e}",
        got.value,
        got.err
    );
    assert!(
        got.err < 0.25 * want,
        "uninformative: {:e} +- {:e}",
        got.value,
        got.err
    );
}

/// `--per-step`: every step's term equals the closed-form KL of that step (the same
/// tolerances as the sums: each term is a KL of the same form), S_full's step terms are 0
/// within their own error estimates, and the terms add up to the reported S(T).
#[test]
fn gaussian_step_terms_match_closed_form_per_step() {
    let families = Family::ALL;
    let params = PathKlParams {
        early_stop: EARLY_STOP,
        per_step: true,
        ..params_for(&families)
    };
    let schedule = Schedule::vp_linear();
    for case in cases() {
        let report = timed_sweep(
            &format!("gaussian {} per-step", case.name),
            &case.mixture(),
            &schedule,
            &[8, 16],
            &params,
        );
        for &t in &[8usize, 16] {
            let grid = schedule.grid(t, EARLY_STOP).expect("grid");
            for &fam in &families {
                let rows: Vec<_> = report
                    .steps
                    .iter()
                    .filter(|r| r.family == fam && r.steps == t)
                    .collect();
                assert_eq!(
                    rows.len(),
                    t,
                    "{} {}: one row per step",
                    case.name,
                    fam.name()
                );
                let mut total = 0.0;
                for (k, r) in rows.iter().enumerate() {
                    let i = k + 1;
                    assert_eq!(r.index, i);
                    assert_eq!(r.ln_abar_s, grid.ln_abar[i - 1]);
                    assert_eq!(r.ln_abar_t, grid.ln_abar[i]);
                    assert_eq!((r.time_s, r.time_t), (grid.times[i - 1], grid.times[i]));
                    let want = closed_form_step(fam, &case.sigma, &grid, i);
                    let diff = (r.term.value - want).abs();
                    if fam == Family::Full {
                        assert!(
                            r.term.value.abs() <= r.term.err + FULL_ERR_SLACK,
                            "{} T = {t} step {i}: full term {:e} +- {:e}",
                            case.name,
                            r.term.value,
                            r.term.err
                        );
                    }
                    assert!(
                        diff <= FULL_ABS_TOL + FAMILY_REL_TOL * want.abs(),
                        "{} {} T = {t} step {i}: {} vs closed form {want} (diff {diff:e})",
                        case.name,
                        fam.name(),
                        r.term.value
                    );
                    total += r.term.value;
                }
                // The same parts summed per step instead of per grid: T + 3 O(1) terms
                // regrouped, a few ulps of O(10) each.
                let s = est(&report, fam, t).value;
                assert!(
                    (total - s).abs() <= 1e-12,
                    "{} {} T = {t}: sum of steps {total} vs S {s}",
                    case.name,
                    fam.name()
                );
            }
        }
    }
}
