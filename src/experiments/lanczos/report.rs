//! The Lanczos study's report: the geometric-decay fit of each case's error, the bound check,
//! the per-case JSON, the text table and the figures.

use super::*;

/// Per-case fit of the geometric decay: (factor, ci95, k range) or the reason for no fit.
pub(super) type Fit = Result<([f64; 2], f64, [f64; 2]), String>;

pub(super) fn fit_case(r: &CaseResult) -> Fit {
    let k: Vec<f64> = r.k.iter().map(|&k| k as f64).collect();
    fit_geometric_decay(&k, &r.error, FLOOR)
        .map(|f| (f.factor_ci95, f.factor, f.fit.window))
        .map_err(|e| e.to_string())
}

/// The bound check of one case: `Some(message)` naming the case and the first `k` with
/// `error_k > bound_k + bound_slack(lmax)` (a NaN error fails too).
pub(super) fn bound_failure(r: &CaseResult) -> Option<String> {
    let slack = bound_slack(r.lmax);
    r.k.iter()
        .zip(r.error.iter().zip(&r.bound))
        .find(|(_, (e, b))| e.is_nan() || **e > **b + slack)
        .map(|(k, (e, b))| {
            format!(
                "case {}: error {e:.3e} > bound {b:.3e} (+ rounding allowance {slack:.1e}) at k = {k} (error / bound = {:.3e})",
                r.name,
                e / b
            )
        })
}

pub(super) fn max_ratio(r: &CaseResult) -> f64 {
    r.error
        .iter()
        .zip(&r.bound)
        .map(|(e, b)| e / b)
        .fold(0.0, f64::max)
}

pub(super) fn case_json(r: &CaseResult, fit: &Fit, seed: u64) -> Value {
    let rho = rho(r.kappa);
    let mut v = json!({
        "name": r.name,
        "D": r.d,
        "kappa": r.kappa,
        "k": r.k,
        "error": r.error,
        "bound": r.bound,
        "bound_interp": r.bound_interp,
        "spectrum": r.spectrum,
        "lmin": r.lmin,
        "lmax": r.lmax,
        "rho": rho,
        "bound_rate": 1.0 / rho,
        "fitted_rate": fit.as_ref().ok().map(|f| f.1),
        "fitted_rate_ci95": fit.as_ref().ok().map(|f| f.0),
        "fit_k": fit.as_ref().ok().map(|f| f.2),
        "fit_note": fit.as_ref().err(),
        "max_error_over_bound": max_ratio(r),
        "steps_done": r.steps_done,
        "terminated_early": r.terminated_early,
        "seed": seed,
        "stream": r.stream,
    });
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), r.extra.as_object()) {
        for (key, val) in extra {
            obj.insert(key.clone(), val.clone());
        }
    }
    v
}

pub(super) fn table(
    results: &[CaseResult],
    fits: &[Fit],
    timing: Option<&Timing>,
    info: &RunInfo,
) -> String {
    let mut s = String::new();
    s += "Lanczos C^(1/2) z: error ||C^(1/2) z - y_k|| / ||z|| vs the bound 2 E_(k-1)\n";
    s += &format!(
        "{:<28} {:>5} {:>9} {:>9} {:>24} {:>8} {:>10} {:>11}\n",
        "case", "D", "kappa", "fit k", "fitted rate [95% CI]", "1/rho", "fit*rho", "max err/bd"
    );
    for (r, f) in results.iter().zip(fits) {
        let rate = 1.0 / rho(r.kappa);
        let (range, fitted, ratio) = match f {
            Ok((ci, factor, w)) => (
                format!("{}..{}", w[0], w[1]),
                format!("{factor:.4} [{:.4}, {:.4}]", ci[0], ci[1]),
                format!("{:.3}", factor / rate),
            ),
            Err(_) => ("-".into(), "- (< 3 points)".into(), "-".into()),
        };
        s += &format!(
            "{:<28} {:>5} {:>9.4} {:>9} {:>24} {:>8.4} {:>10} {:>11.3e}\n",
            r.name,
            r.d,
            r.kappa,
            range,
            fitted,
            rate,
            ratio,
            max_ratio(r)
        );
    }
    let worst = results.iter().map(max_ratio).fold(0.0, f64::max);
    s += &format!("max over all cases and k of error / bound: {worst:.3e}\n");
    let failed: Vec<String> = results.iter().filter_map(bound_failure).collect();
    if failed.is_empty() {
        s += "bound check: every case has error <= bound (+ rounding allowance) at every k\n";
    } else {
        for f in &failed {
            s += &format!("BOUND CHECK FAILED: {f}\n");
        }
    }
    if let Some(t) = timing {
        s += &format!(
            "timing at D = {}, k = {} (geometric, kappa = {TIMING_KAPPA}): Lanczos {:.4} s (error {:.2e}, bound {:.2e}), dense eigendecomposition {:.2} s (error {:.2e}); ratio eig / Lanczos = {:.0}\n",
            t.d, t.k, t.lanczos_s, t.lanczos_error, t.bound, t.eig_s, t.eig_error, t.eig_s / t.lanczos_s
        );
    }
    s += &format!(
        "wall time {:.2} s on {} threads\n",
        info.wall_time_s, info.threads
    );
    s
}

/// Errors below this are drawn at it: an exact result (error 0, e.g. `D = 1`, where one step
/// spans the whole space) has no place on a log axis; 1e-17 is below any rounding-level error
/// of a normalised `||z||`-relative quantity (>= ~1e-17), so no measured point moves.
pub(super) const DRAW_FLOOR: f64 = 1e-17;

/// One figure per spectrum kind (suffixes `_geometric`, `_uniform`) and one per mixture
/// (`_mixture_<data>`).
pub(super) fn make_figures(
    results: &[CaseResult],
    kappas: &[f64],
    dims: &[usize],
) -> Vec<(String, Figure)> {
    let mut written = Vec::new();
    let mut kinds: Vec<&str> = Vec::new();
    for r in results {
        if !kinds.contains(&r.style.0.as_str()) {
            kinds.push(&r.style.0);
        }
    }
    for kind in kinds {
        let cases: Vec<&CaseResult> = results.iter().filter(|r| r.style.0 == kind).collect();
        let mixture = kind.strip_prefix("mixture_");
        let mut series = Vec::new();
        let xs = |r: &CaseResult| r.k.iter().map(|&k| k as f64).collect::<Vec<_>>();
        let drawn = |e: &[f64]| e.iter().map(|&v| v.max(DRAW_FLOOR)).collect::<Vec<_>>();
        if mixture.is_some() {
            for (i, r) in cases.iter().enumerate() {
                series.push(
                    Series::new("", xs(r), r.bound.clone())
                        .dashed()
                        .with_color(i),
                );
            }
            for (i, r) in cases.iter().enumerate() {
                series.push(
                    Series::new(
                        format!("{} (κ={:.4})", r.name, r.kappa),
                        xs(r),
                        drawn(&r.error),
                    )
                    .with_color(i),
                );
            }
        } else {
            // One bound per kappa (it depends on kappa only), in that kappa's colour.
            for (ki, kappa) in kappas.iter().enumerate() {
                if let Some(r) = cases.iter().find(|r| r.style.1 == ki) {
                    series.push(
                        Series::new(format!("bound κ={kappa}"), xs(r), r.bound.clone())
                            .dashed()
                            .with_color(ki),
                    );
                }
            }
            for r in &cases {
                let (ki, di) = (r.style.1, r.style.2);
                series.push(
                    Series::new(
                        format!("D={}, κ={}", dims[di], kappas[ki]),
                        xs(r),
                        drawn(&r.error),
                    )
                    .with_color(ki)
                    .with_marker(di),
                );
            }
        }
        // A bound that is 0 everywhere (lmin = lmax: a constant is exact) has nothing to draw.
        series.retain(|s| s.has_drawable_point(false));
        let (title, caption) = match mixture {
            Some(label) => (
                format!(
                    "Lanczos C^1/2 z: posterior q(x_0 | x_t), {label} (D = {})",
                    cases[0].d
                ),
                "solid: error; dashed: bound 2 E_(k-1), same colour; x_t on a vp-linear trajectory, C = (b² H + b I) / a²".to_string(),
            ),
            None => (
                format!("Lanczos C^1/2 z: {kind} spectrum on [1/κ, 1]"),
                "solid: error (colour κ, marker D; below 1e-17 drawn at 1e-17); dashed: bound 2 E_(k-1) = O(ρ^-k)".to_string(),
            ),
        };
        let fig = Plot {
            x_scale: XScale::Linear,
            title,
            x_label: "k (Lanczos steps = products with C)".into(),
            y_label: "||C^1/2 z - y_k|| / ||z||".into(),
            series,
            refs: vec![],
            caption: Some(caption),
        };
        written.push((format!("_{kind}"), Figure::Plot(fig)));
    }
    written
}
