//! Shared helpers of the path-KL integration tests: sweeps with timing, row look-ups and
//! an independent dense-Gaussian toolbox (written with nalgebra only; it never calls
//! covlab's posterior or covariance code).
#![allow(dead_code)]

use std::time::Instant;

use covlab::data::mixture::Mixture;
use covlab::kernel::family::Family;
use covlab::kl::path_kl::{path_kl_sweep, PathKlParams, PathKlReport};
use covlab::process::schedule::Schedule;
use covlab::quadrature::Estimate;
use nalgebra::{DMatrix, DVector};

/// Runs a sweep, printing its wall time under `label`.
pub fn timed_sweep(
    label: &str,
    q0: &Mixture,
    schedule: &Schedule,
    steps: &[usize],
    params: &PathKlParams,
) -> PathKlReport {
    let start = Instant::now();
    let report = path_kl_sweep(q0, schedule, steps, params, &|_, _| {})
        .unwrap_or_else(|e| panic!("{label}: sweep failed: {e}"));
    println!(
        "[time] {label}: T = {steps:?}, {:.2} s",
        start.elapsed().as_secs_f64()
    );
    report
}

/// S_fam(T), panicking with a clear message if the row is missing.
pub fn est(report: &PathKlReport, family: Family, steps: usize) -> Estimate {
    report
        .get(family, steps)
        .unwrap_or_else(|| panic!("no row for {} at T = {steps}", family.name()))
        .s
}

/// Parameters restricted to the given families (everything else default).
pub fn params_for(families: &[Family]) -> PathKlParams {
    PathKlParams {
        families: families.to_vec(),
        ..PathKlParams::default()
    }
}

/// `1 - exp(x)` without cancellation.
pub fn one_minus_exp(x: f64) -> f64 {
    -x.exp_m1()
}

/// ln det of an SPD matrix via Cholesky.
pub fn ln_det_spd(m: &DMatrix<f64>) -> f64 {
    let ch = m.clone().cholesky().expect("matrix is SPD");
    2.0 * ch.l().diagonal().iter().map(|v| v.ln()).sum::<f64>()
}

/// KL(N(m, A) || N(m, B)) = (1/2) (tr(B^{-1} A) - D + ln det B - ln det A), dense.
pub fn gauss_kl_same_mean(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    let d = a.nrows() as f64;
    let chol_b = b.clone().cholesky().expect("model covariance is SPD");
    let binv_a = chol_b.solve(a);
    0.5 * (binv_a.trace() - d + ln_det_spd(b) - ln_det_spd(a))
}

/// KL(N(m, S) || N(0, I)) = (1/2) (|m|^2 + sum_i (l_i - 1 - ln l_i)), l_i the eigenvalues of
/// S, written with `l_i - 1` passed in directly (`lm1`) so that no cancellation occurs.
pub fn gauss_kl_to_std_normal(mean: &DVector<f64>, eig_minus_one: &[f64]) -> f64 {
    0.5 * (mean.norm_squared() + eig_minus_one.iter().map(|&e| e - e.ln_1p()).sum::<f64>())
}

/// The exact reverse-kernel covariance C_st = Cov(x_s | x_t) of a Gaussian q_0 = N(mu, Sigma)
/// for the step from abar_s to abar_t (x_t = a x_s + sqrt(b) eps): the Schur complement
/// Cov(x_s) - Cov(x_s, x_t) Cov(x_t)^{-1} Cov(x_t, x_s) of the joint covariance with
/// Cov(x_s) = abar_s Sigma + (1 - abar_s) I, Cov(x_t, x_s) = a Cov(x_s),
/// Cov(x_t) = a^2 Cov(x_s) + b I.
pub fn reverse_cov(sigma: &DMatrix<f64>, ln_abar_s: f64, a2: f64, b: f64) -> DMatrix<f64> {
    let d = sigma.nrows();
    let id = DMatrix::<f64>::identity(d, d);
    let abar_s = ln_abar_s.exp();
    let p = sigma * abar_s + &id * one_minus_exp(ln_abar_s);
    let a = a2.sqrt();
    let cov_ts = &p * a; // Cov(x_t, x_s) (symmetric here)
    let cov_tt = &p * a2 + &id * b;
    let chol = cov_tt.cholesky().expect("Cov(x_t) is SPD");
    let c = &p - cov_ts.transpose() * chol.solve(&cov_ts);
    // Symmetrise (the Schur complement is symmetric up to rounding).
    (&c + c.transpose()) * 0.5
}

/// The covariance B_t = abar Sigma + (1 - abar) I of a forward marginal.
pub fn marginal_cov(sigma: &DMatrix<f64>, ln_abar: f64) -> DMatrix<f64> {
    let d = sigma.nrows();
    sigma * ln_abar.exp() + DMatrix::<f64>::identity(d, d) * one_minus_exp(ln_abar)
}

/// A symmetric 2 x 2 matrix with eigenvalues (l1, l2) rotated by `deg` degrees.
pub fn rotated_2x2(l1: f64, l2: f64, deg: f64) -> DMatrix<f64> {
    let (s, c) = deg.to_radians().sin_cos();
    let r = DMatrix::from_row_slice(2, 2, &[c, -s, s, c]);
    let m = &r * DMatrix::from_diagonal(&DVector::from_vec(vec![l1, l2])) * r.transpose();
    (&m + m.transpose()) * 0.5
}

/// A fresh temporary directory for one CLI test.
pub fn tmp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("covlab-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Runs a command and asserts that it succeeded (showing its stderr otherwise).
pub fn run_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a binary with `--json <dir>/out.json --figure <dir>/fig` appended, asserts that it
/// succeeded, and returns the parsed JSON.
pub fn run_for_json(mut cmd: std::process::Command, dir: &std::path::Path) -> serde_json::Value {
    let json = dir.join("out.json");
    run_ok(
        cmd.arg("--json")
            .arg(&json)
            .arg("--figure")
            .arg(dir.join("fig")),
    );
    serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written"))
        .expect("valid JSON")
}

/// Runs the `study` binary with `--root root` and `args`.
pub fn study(root: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_study"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("runs")
}
