//! Cheap invariants of the path-KL sweep: nonnegative family offsets and the ordering they
//! imply, monotonicity in T, thread-count and sweep-composition independence, the QMC
//! rule in D = 6, and the error paths.

use crate::common;

use common::{est, params_for, timed_sweep};
use covlab::data::presets;
use covlab::kernel::family::{BetaTildeRemedy, Family};
use covlab::kl::path_kl::{
    path_kl_sweep, PathKlError, PathKlParams, PathKlReport, Route, RuleChoice,
};
use covlab::process::schedule::Schedule;

/// Slack beyond the two error estimates when comparing two families: both values share
/// the same S_full slot sums and differ by a sum of nonnegative closed-form offsets, so only
/// rounding of O(10)-sized partial sums can reverse an ordering: a few ulps of 10.
const ORDER_SLACK: f64 = 1e-13;

/// `lo <= hi` within their error estimates and [`ORDER_SLACK`].
fn assert_le(lo: (Family, f64, f64), hi: (Family, f64, f64), what: &str) {
    let ((fl, vl, el), (fh, vh, eh)) = (lo, hi);
    assert!(
        vl <= vh + el + eh + ORDER_SLACK,
        "{what}: S_{} = {vl:e} +- {el:e} exceeds S_{} = {vh:e} +- {eh:e}",
        fl.name(),
        fh.name()
    );
}

fn triple(r: &PathKlReport, f: Family, t: usize) -> (Family, f64, f64) {
    let e = est(r, f, t);
    (f, e.value, e.err)
}

/// Every family shares the exact mean, so S_fam = S_full + G_fam with G_fam a sum of
/// Gaussian KLs >= 0. Moreover, pointwise, diag C(x_t) minimises KL(N(m, C) || N(m, Sigma))
/// over all diagonal Sigma (d/d sigma_i gives sigma_i = C_ii), isotropic ones included; and
/// per step E[tr C]/D minimises E_{q_t}[KL(N(m, C) || N(m, sigma^2 I))] over constants
/// sigma^2 (d/d sigma^2 gives sigma^2 = E[tr C]/D). Hence
/// S_full <= S_diag <= S_analytic <= min(S_beta, S_beta-tilde).
#[test]
fn family_ordering_follows_from_nonnegative_offsets() {
    let steps = [4, 8, 16];
    for name in ["grid9", "aniso2", "mog40"] {
        let q0 = presets::load(name).expect("preset");
        let report = timed_sweep(
            &format!("{name} ordering"),
            &q0,
            &Schedule::vp_linear(),
            &steps,
            &PathKlParams::default(),
        );
        for &t in &steps {
            let what = format!("{name} T = {t}");
            let full = triple(&report, Family::Full, t);
            for fam in Family::ALL {
                assert!(est(&report, fam, t).value.is_finite(), "{what}");
                assert_le(full, triple(&report, fam, t), &what);
            }
            let diag = triple(&report, Family::Diag, t);
            let analytic = triple(&report, Family::Analytic, t);
            assert_le(diag, analytic, &what);
            assert_le(analytic, triple(&report, Family::Beta, t), &what);
            assert_le(analytic, triple(&report, Family::BetaTilde, t), &what);
            // S_full itself is a sum of expected KLs, >= 0.
            assert!(
                full.1 >= -full.2 - ORDER_SLACK,
                "{what}: S_full = {}",
                full.1
            );
        }
    }
}

/// On grid9, S(T) decreases strictly from T to 2T for beta, analytic, diag and full
/// (T = 4, 8, 16, 32), beyond both error estimates.
#[test]
fn s_decreases_in_t_on_grid9() {
    let steps = [4, 8, 16, 32];
    let families = [Family::Beta, Family::Analytic, Family::Diag, Family::Full];
    let q0 = presets::load("grid9").expect("preset");
    let report = timed_sweep(
        "grid9 monotone",
        &q0,
        &Schedule::vp_linear(),
        &steps,
        &params_for(&families),
    );
    for fam in families {
        let rows: Vec<_> = steps.iter().map(|&t| est(&report, fam, t)).collect();
        println!(
            "grid9 {:>8}: {}",
            fam.name(),
            rows.iter()
                .map(|r| format!("{:.6e}+-{:.1e}", r.value, r.err))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (w, t) in rows.windows(2).zip(&steps) {
            assert!(
                w[1].value + w[1].err < w[0].value - w[0].err,
                "grid9 {}: S({}) = {:e} +- {:e} not below S({t}) = {:e} +- {:e}",
                fam.name(),
                2 * t,
                w[1].value,
                w[1].err,
                w[0].value,
                w[0].err
            );
        }
    }
}

fn bits(r: &PathKlReport) -> Vec<u64> {
    let mut v = vec![
        r.terminal_kl.value.to_bits(),
        r.terminal_kl.err.to_bits(),
        r.entropy_start.value.to_bits(),
        r.entropy_start.err.to_bits(),
        r.entropy_end.value.to_bits(),
        r.entropy_end.err.to_bits(),
    ];
    for row in &r.rows {
        v.push(row.s.value.to_bits());
        v.push(row.s.err.to_bits());
    }
    v
}

fn sweep_in_pool(
    threads: usize,
    q0: &covlab::data::mixture::Mixture,
    steps: &[usize],
    params: &PathKlParams,
) -> PathKlReport {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon pool");
    pool.install(|| path_kl_sweep(q0, &Schedule::vp_linear(), steps, params, &|_, _| {}))
        .expect("sweep")
}

/// Results are bitwise identical in a 1-thread and a 2-thread pool (fixed-order assembly),
/// for the lattice (aniso2, route A and route B) and for QMC (mix6).
#[test]
fn results_do_not_depend_on_thread_count() {
    let aniso2 = presets::load("aniso2").expect("preset");
    let mix6 = presets::load("mix6").expect("preset");
    let route_b = PathKlParams {
        route: Route::B,
        ..PathKlParams::default()
    };
    let cases: [(
        &str,
        &covlab::data::mixture::Mixture,
        &[usize],
        PathKlParams,
    ); 3] = [
        ("aniso2 A", &aniso2, &[4, 8, 16], PathKlParams::default()),
        ("aniso2 B", &aniso2, &[4, 8], route_b),
        ("mix6 qmc", &mix6, &[2, 4], PathKlParams::default()),
    ];
    for (label, q0, steps, params) in cases {
        let start = std::time::Instant::now();
        let one = sweep_in_pool(1, q0, steps, &params);
        let two = sweep_in_pool(2, q0, steps, &params);
        println!(
            "[time] {label}: 1 + 2 threads, {:.2} s",
            start.elapsed().as_secs_f64()
        );
        assert_eq!(one.rows.len(), two.rows.len());
        for (a, b) in one.rows.iter().zip(&two.rows) {
            assert_eq!((a.family, a.steps), (b.family, b.steps), "{label}");
        }
        assert_eq!(
            bits(&one),
            bits(&two),
            "{label}: results differ between 1 and 2 threads"
        );
    }
}

/// Nested grids share their expectations and each T is assembled from its own grid's times
/// only, in a fixed order: the row for T = 8 is bitwise the same whether T = 8 is swept alone
/// or together with T = 4 and 16.
#[test]
fn a_row_does_not_depend_on_the_other_t_in_the_sweep() {
    let q0 = presets::load("aniso2").expect("preset");
    let params = PathKlParams::default();
    let alone = timed_sweep(
        "aniso2 T = 8 alone",
        &q0,
        &Schedule::vp_linear(),
        &[8],
        &params,
    );
    let together = timed_sweep(
        "aniso2 T = 4, 8, 16",
        &q0,
        &Schedule::vp_linear(),
        &[4, 8, 16],
        &params,
    );
    for fam in Family::ALL {
        let (a, b) = (est(&alone, fam, 8), est(&together, fam, 8));
        assert_eq!(
            (a.value.to_bits(), a.err.to_bits()),
            (b.value.to_bits(), b.err.to_bits()),
            "{}: {a:?} vs {b:?}",
            fam.name()
        );
    }
    assert_eq!(
        alone.terminal_kl.value.to_bits(),
        together.terminal_kl.value.to_bits()
    );
}

/// mix6 (D = 6): the automatic rule is randomised QMC; every value is finite with a positive
/// error bar (replicate spread), S_fam >= S_full within errors, and the diag offset is
/// visible (dense correlated covariances).
#[test]
fn mix6_qmc_gives_finite_values_with_error_bars() {
    let q0 = presets::load("mix6").expect("preset");
    assert_eq!(q0.dim(), 6);
    let steps = [4, 8];
    let report = timed_sweep(
        "mix6 qmc",
        &q0,
        &Schedule::vp_linear(),
        &steps,
        &PathKlParams::default(),
    );
    assert!(report.rule.starts_with("qmc"), "rule: {}", report.rule);
    assert_eq!(report.dim, 6);
    assert!(report.terminal_kl.value.is_finite() && report.terminal_kl.err > 0.0);
    for &t in &steps {
        let full = est(&report, Family::Full, t);
        for fam in Family::ALL {
            let e = est(&report, fam, t);
            println!(
                "mix6 T = {t} {:>10}: {:.6e} +- {:.1e}",
                fam.name(),
                e.value,
                e.err
            );
            assert!(e.value.is_finite() && e.err.is_finite(), "{}", fam.name());
            assert!(e.err > 0.0, "{} T = {t}: err = {}", fam.name(), e.err);
            assert!(
                e.value >= full.value - e.err - full.err - ORDER_SLACK,
                "{} T = {t}: {e:?} below S_full {full:?}",
                fam.name()
            );
        }
        let diag = est(&report, Family::Diag, t);
        assert!(
            diag.value - full.value > diag.err + full.err,
            "T = {t}: diag {diag:?} not resolved above full {full:?} on correlated data"
        );
    }
}

/// The documented error paths, and errors are Send + Sync + 'static.
#[test]
fn error_paths() {
    fn send_sync<T: Send + Sync + 'static>(_: &T) {}
    let aniso2 = presets::load("aniso2").expect("preset");
    let mix6 = presets::load("mix6").expect("preset");
    let s = Schedule::vp_linear();
    let nothing = |_: usize, _: usize| {};
    let run = |q0, steps: &[usize], p: &PathKlParams| {
        path_kl_sweep(q0, &s, steps, p, &nothing).expect_err("must fail")
    };

    let e = run(&aniso2, &[], &PathKlParams::default());
    send_sync(&e);
    assert!(matches!(e, PathKlError::NoSteps), "{e:?}");

    let p = PathKlParams {
        route: Route::B,
        ..PathKlParams::default()
    };
    let e = run(&mix6, &[2], &p);
    assert!(
        matches!(e, PathKlError::RouteBDimension { dim: 6 }),
        "{e:?}"
    );

    let p = PathKlParams {
        rule: RuleChoice::Lattice,
        ..PathKlParams::default()
    };
    let e = run(&mix6, &[2], &p);
    assert!(matches!(e, PathKlError::LatticeTooLarge { .. }), "{e:?}");

    // beta-tilde from abar = 1 without a remedy that applies.
    let p = PathKlParams {
        remedy: BetaTildeRemedy::EarlyStop,
        early_stop: 0.0,
        ..params_for(&[Family::BetaTilde])
    };
    let e = run(&aniso2, &[4], &p);
    assert!(matches!(e, PathKlError::DegenerateLastStep), "{e:?}");
    assert!(e.to_string().contains("early_stop"), "{e}");
    // ... the same with early stop > 0 works and says so.
    let ok = path_kl_sweep(
        &aniso2,
        &s,
        &[4],
        &PathKlParams {
            early_stop: 1e-3,
            ..p
        },
        &nothing,
    )
    .expect("early stop");
    assert_eq!(ok.beta_tilde_last_step, "early-stop");

    // clip needs a second step.
    let p = params_for(&[Family::BetaTilde]);
    let e = run(&aniso2, &[1], &p);
    assert!(matches!(e, PathKlError::ClipNeedsTwoSteps), "{e:?}");

    // Invalid schedule input surfaces as a schedule error.
    let p = PathKlParams {
        early_stop: 1.5,
        ..PathKlParams::default()
    };
    let e = run(&aniso2, &[4], &p);
    assert!(matches!(e, PathKlError::Schedule(_)), "{e:?}");
    assert!(e.to_string().contains("early_stop"), "{e}");

    // Without beta-tilde the label says so, and T = 1 is fine.
    let r =
        path_kl_sweep(&aniso2, &s, &[1], &params_for(&[Family::Full]), &nothing).expect("T = 1");
    assert_eq!(r.beta_tilde_last_step, "not-requested");
}
