//! Path KL of OCM-DDIM chains (`KernelKind::Ddim`): each step (s, t) is the DDPM one jump
//! (0, t) seen through an affine map, so S^DDIM(T) = sum_i E KL(q(x_0 | x_{t_i}) || N(mu_0,
//! Sigma_0)). Checked against a dense-Gaussian closed form coded here, by route B (direct
//! inner quadrature) against route A (telescoping with the entropy at every t), by the
//! identity DDIM = DDPM at T = 1, and for the inputs it must refuse.

use crate::common;

use common::{est, gauss_kl_same_mean, params_for, reverse_cov, timed_sweep};
use covlab::data::mixture::Mixture;
use covlab::data::presets;
use covlab::kernel::family::Family;
use covlab::kl::path_kl::{path_kl_sweep, PathKlError, PathKlParams, Route};
use covlab::process::schedule::Schedule;
use covlab::sampler::KernelKind;
use nalgebra::{DMatrix, DVector};

fn ddim(families: &[Family]) -> PathKlParams {
    PathKlParams {
        kernel: KernelKind::Ddim,
        ..params_for(families)
    }
}

/// Bound on |S_full^DDIM| for Gaussian data (exactly 0: q(x_0 | x_t) is Gaussian). Route A's
/// one jump (0, t) forms ln(1 + b mu) with 1 + b mu ~ abar_t lambda_min(Sigma) (~7e-6 at the
/// last step of the grid, lambda_min = 0.18): each such log carries eps / 7e-6 ~ 3e-11, and
/// the few last steps of a grid add up to ~1e-10 (observed: -1.6e-11 at T = 4). The code's
/// round-off floor includes this cancellation (checked: |S_full| <= err + 1e-13); 1e-9
/// still catches any leak (S_diag here is >= 1e-2 per step).
const FULL_ABS_TOL: f64 = 1e-9;

/// Slack on |S_full| <= err: a few ulps of the O(10) terms.
const FULL_ERR_SLACK: f64 = 1e-13;

/// Relative tolerance of S_diag and S_analytic against the closed form: both sides are
/// cancellation-free sums of T Gaussian KLs (~1e-14 relative each); 1e-9 is a wide margin
/// that still catches a formula error (O(1) relative).
const FAMILY_REL_TOL: f64 = 1e-9;

/// S^DDIM for Gaussian data N(mu, Sigma): a sum over the grid's t_i of the Gaussian KLs
/// KL(N(0, C_0) || N(0, Sigma_fam)) with C_0 = Cov[x_0 | x_t] the Schur complement of the
/// joint covariance of (x_0, x_t) (`reverse_cov` with s at abar = 1), coded with nalgebra.
fn gaussian_ddim_sums(sigma: &DMatrix<f64>, steps: usize) -> (f64, f64) {
    let grid = Schedule::vp_linear().grid(steps, 0.0).expect("grid");
    let d = sigma.nrows();
    let (mut diag, mut iso) = (0.0, 0.0);
    for i in 1..=steps {
        let ln_t = grid.ln_abar[i] - grid.ln_abar[0];
        let a2 = ln_t.exp();
        let c0 = reverse_cov(sigma, 0.0, a2, -ln_t.exp_m1());
        let dg = DMatrix::from_diagonal(&c0.diagonal());
        let s2 = c0.trace() / d as f64;
        diag += gauss_kl_same_mean(&c0, &dg);
        iso += gauss_kl_same_mean(&c0, &(DMatrix::identity(d, d) * s2));
    }
    (diag, iso)
}

#[test]
fn gaussian_data_match_the_closed_form() {
    let sigma = DMatrix::from_row_slice(2, 2, &[1.5, 0.9, 0.9, 0.8]);
    let q0 = Mixture::from_dense(
        vec![1.0],
        vec![DVector::from_vec(vec![1.0, -0.5])],
        vec![sigma.clone()],
    )
    .expect("valid Gaussian");
    let steps = [4, 16, 64];
    let params = ddim(&[Family::Analytic, Family::Diag, Family::Full]);
    let r = timed_sweep(
        "gaussian ddim",
        &q0,
        &Schedule::vp_linear(),
        &steps,
        &params,
    );
    for &t in &steps {
        let full = est(&r, Family::Full, t);
        assert!(
            full.value.abs() <= FULL_ABS_TOL,
            "T = {t}: S_full = {:e} +- {:e} (must be 0)",
            full.value,
            full.err
        );
        assert!(
            full.value.abs() <= full.err + FULL_ERR_SLACK,
            "T = {t}: S_full = {:e} outside its error estimate {:e}",
            full.value,
            full.err
        );
        let (diag, iso) = gaussian_ddim_sums(&sigma, t);
        for (fam, want) in [(Family::Diag, diag), (Family::Analytic, iso)] {
            let got = est(&r, fam, t).value;
            assert!(
                (got - want).abs() <= FAMILY_REL_TOL * want,
                "T = {t} {}: {got:e} vs closed form {want:e}",
                fam.name()
            );
        }
        // DDIM's terms do not shrink with the step: S grows with T (about linearly).
        if t > 4 {
            assert!(diag > 3.0 * gaussian_ddim_sums(&sigma, t / 4).0);
        }
    }
}

/// Route B (direct inner quadrature of each one-jump KL) against route A (telescoping with
/// the entropy at every step's t) on aniso2, as in `path_kl_routes.rs` (outer lattice at
/// h = 0.35 sd for route B's cost; absolute floor 1e-12 for route A's round-off).
#[test]
fn routes_agree_on_aniso2() {
    let q0 = presets::load("aniso2").expect("preset");
    let schedule = Schedule::vp_linear();
    let steps = [2, 4];
    let mut base = ddim(&[Family::Full]);
    base.lattice.h_frac = 0.35;
    let a = timed_sweep("aniso2 ddim route A", &q0, &schedule, &steps, &base);
    let b = timed_sweep(
        "aniso2 ddim route B",
        &q0,
        &schedule,
        &steps,
        &PathKlParams {
            route: Route::B,
            ..base
        },
    );
    for &t in &steps {
        let (ea, eb) = (est(&a, Family::Full, t), est(&b, Family::Full, t));
        let diff = (ea.value - eb.value).abs();
        println!(
            "T = {t}: A = {:.10e} +- {:.1e}, B = {:.10e} +- {:.1e}",
            ea.value, ea.err, eb.value, eb.err
        );
        // The budget must be small enough for the comparison to mean something.
        assert!(
            ea.err + eb.err < 0.05 * ea.value,
            "T = {t}: errors too large"
        );
        assert!(
            diff <= ea.err + eb.err + 1e-12,
            "T = {t}: |A - B| = {diff:e} > {:e} + {:e}",
            ea.err,
            eb.err
        );
    }
}

/// At T = 1 the DDIM step (s = 0) is the DDPM step: same kernel, same S for every family.
/// The two sums are formed in different orders (DDIM adds the telescoping terms per step),
/// so they agree to round-off of the O(10) terms: 1e-12 relative.
#[test]
fn one_step_ddim_is_ddpm() {
    let q0 = presets::load("mog40").expect("preset");
    let schedule = Schedule::vp_linear();
    let fams = [Family::Analytic, Family::Diag, Family::Full];
    let a = timed_sweep("mog40 ddpm T=1", &q0, &schedule, &[1], &params_for(&fams));
    let b = timed_sweep("mog40 ddim T=1", &q0, &schedule, &[1], &ddim(&fams));
    for f in fams {
        let (x, y) = (est(&a, f, 1).value, est(&b, f, 1).value);
        assert!(
            (x - y).abs() <= 1e-12 * x.abs(),
            "{}: {x:e} vs {y:e}",
            f.name()
        );
    }
}

#[test]
fn refuses_deterministic_families_and_early_stop() {
    let q0 = presets::load("aniso2").expect("preset");
    let schedule = Schedule::vp_linear();
    for f in [Family::Beta, Family::BetaTilde] {
        let e = path_kl_sweep(&q0, &schedule, &[4], &ddim(&[f, Family::Full]), &|_, _| {})
            .expect_err("plain DDIM has no covariance");
        assert!(matches!(e, PathKlError::DdimFamily { .. }), "{e}");
        assert!(e.to_string().contains(f.name()), "{e}");
    }
    let p = PathKlParams {
        early_stop: 1e-3,
        ..ddim(&[Family::Full])
    };
    let e = path_kl_sweep(&q0, &schedule, &[4], &p, &|_, _| {}).expect_err("early stop");
    assert!(matches!(e, PathKlError::DdimEarlyStop(_)), "{e}");
}

/// The binary: `--kernel ddim` defaults to analytic, diag, full and writes `kernel`; a bad
/// kernel or a deterministic family exits 2 naming the flag.
#[test]
fn cli_kernel_flag() {
    let dir = common::tmp_dir("path-kl-ddim");
    let json = dir.join("d.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_path-kl"))
        .args(["--data", "aniso2", "--kernel", "ddim", "--steps", "2,4,8"])
        .arg("--json")
        .arg(&json)
        .arg("--figure")
        .arg(dir.join("d"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("valid");
    assert_eq!(v["kernel"], "ddim");
    let fams: Vec<&str> = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["family"].as_str())
        .collect();
    assert_eq!(fams.len(), 9);
    assert!(fams
        .iter()
        .all(|f| ["analytic", "diag", "full"].contains(f)));
    for (args, needle) in [
        (&["--kernel", "ddpmx"][..], "kernel"),
        (
            &["--kernel", "ddim", "--families", "beta,full"][..],
            "families",
        ),
        (
            &["--kernel", "ddim", "--early-stop", "0.001"][..],
            "early-stop",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_path-kl"))
            .args(["--data", "aniso2", "--steps", "2"])
            .args(args)
            .arg("--json")
            .arg(dir.join("bad.json"))
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: `{needle}` not in {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
