//! Slope fits on log-log and semilog data with 95 % confidence intervals.
//!
//! A convergence rate is the slope `p` of `ln y = a + p ln x` ([`fit_loglog`], algebraic
//! rates) or of `ln y = a + p x` ([`fit_semilog`], geometric rates `y ∝ (e^p)^x`) fitted by
//! ordinary least squares over the points whose `x` lies in a chosen window. The 95 %
//! interval is `p ± t_{0.975, n-2} · se(p)` with the Student-t quantile and the
//! classical standard error `se(p) = sqrt(SSE / ((n - 2) · Sxx))`.

use statrs::distribution::{ContinuousCDF, StudentsT};
use thiserror::Error;

/// A least-squares fit of `ln y = intercept + slope · ln x` over a window of `x`.
///
/// With `u_i = ln x_i`, `v_i = ln y_i`, `ū`, `v̄` their means over the `n` points used,
/// `Sxx = Σ (u_i - ū)²`, `Sxy = Σ (u_i - ū)(v_i - v̄)`, `Syy = Σ (v_i - v̄)²`:
/// `slope = Sxy / Sxx`, `intercept = v̄ - slope · ū`,
/// `SSE = Σ (v_i - intercept - slope · u_i)²`, `stderr = sqrt(SSE / ((n - 2) Sxx))`,
/// `ci95 = slope ∓ t_{0.975, n-2} · stderr`, `r_squared = 1 - SSE / Syy`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SlopeFit {
    /// The fitted exponent `p` in `y ≈ e^a x^p`: `p = Sxy / Sxx` (in log space).
    pub slope: f64,
    /// The fitted `a = v̄ - p ū` in `ln y ≈ a + p ln x` (natural log, so `y ≈ e^a x^p`).
    pub intercept: f64,
    /// The 95 % confidence interval `[p - t·se, p + t·se]`, `t = t_{0.975, n-2}`.
    pub ci95: [f64; 2],
    /// The standard error of the slope, `se = sqrt(SSE / ((n - 2) Sxx))`.
    pub stderr: f64,
    /// The number of points used (those with `window[0] <= x <= window[1]`), `n >= 3`.
    pub n: usize,
    /// The smallest and largest `x` actually used, `[min x_i, max x_i]` over the fitted points
    /// (inside the requested window, and always finite).
    pub window: [f64; 2],
    /// The coefficient of determination in log space, `R² = 1 - SSE / Syy`
    /// (`1` when `Syy = 0`, i.e. all used `y` are equal and the fit is exact).
    pub r_squared: f64,
}

/// Why a slope fit could not be made.
#[derive(Clone, Debug, PartialEq, Error)]
#[non_exhaustive]
pub enum RatesError {
    /// Fewer than 3 points fell in the window: the slope needs 2 and its interval needs `n - 2 >= 1`
    /// degrees of freedom.
    #[error("too few points in the fit window: n = {n}, need at least 3 for a slope with a 95% interval")]
    TooFewPoints {
        /// The number of points found in the window.
        n: usize,
    },
    /// A point has `x` or `y` that is `<= 0` or not finite, so its logarithm cannot be taken.
    #[error("{field}[{index}] = {value} is not positive and finite: cannot take its logarithm")]
    NonPositive {
        /// The index of the offending point in the input slices.
        index: usize,
        /// The offending value.
        value: f64,
        /// Which input holds it: `"x"` or `"y"`.
        field: &'static str,
    },
    /// `x` and `y` have different lengths.
    #[error("length mismatch: x has {x} points but y has {y}")]
    LengthMismatch {
        /// The length of `x`.
        x: usize,
        /// The length of `y`.
        y: usize,
    },
    /// All `x` in the window are equal, so `Sxx = 0` and the slope is undefined.
    #[error("degenerate x: all x in the fit window are equal (Sxx = 0), the slope is undefined")]
    DegenerateX,
    /// The window is not an interval `window[0] <= window[1]` (or holds a NaN).
    #[error("invalid window: window[0] = {lo} must be <= window[1] = {hi} and neither may be NaN")]
    InvalidWindow {
        /// The requested lower end `window[0]`.
        lo: f64,
        /// The requested upper end `window[1]`.
        hi: f64,
    },
}

/// Fits `ln y = a + p ln x` by least squares over the points with `window[0] <= x <= window[1]`.
///
/// With `u = ln x`, `v = ln y` over the `n` selected points:
/// `p = Sxy / Sxx`, `a = v̄ - p ū`, `se = sqrt(SSE / ((n - 2) Sxx))`,
/// 95 % CI `= p ± t_{0.975, n-2} · se`, where `t_{0.975, n-2}` is the Student-t quantile
/// (`statrs::distribution::StudentsT::inverse_cdf`). Sums are centred (two-pass) for accuracy.
///
/// Use `window = [f64::NEG_INFINITY, f64::INFINITY]` (or `[0, ∞]`) to fit every point.
///
/// Errors: [`RatesError::LengthMismatch`] if `x.len() != y.len()`;
/// [`RatesError::InvalidWindow`] if `window[0] > window[1]` or either is NaN;
/// [`RatesError::NonPositive`] if any `x` is not finite (it cannot be placed in or out of the
/// window) or if a selected point has `x <= 0` or `y <= 0` or a non-finite `y`;
/// [`RatesError::TooFewPoints`] if `n < 3` (with 2 points the line is exact and the interval
/// has no degrees of freedom, so no honest interval exists);
/// [`RatesError::DegenerateX`] if all selected `x` are equal.
pub fn fit_loglog(x: &[f64], y: &[f64], window: [f64; 2]) -> Result<SlopeFit, RatesError> {
    fit_log_y(x, y, window, true)
}

/// Fits `ln y = a + p x` by least squares over the points with `window[0] <= x <= window[1]`
/// (semilog: `x` linear, `y` logarithmic), so that `y ≈ e^a (e^p)^x`; a geometric decay
/// `y_k = c q^k` gives `p = ln q`.
///
/// # Formula
/// As [`fit_loglog`] with `u_i = x_i` instead of `ln x_i` (`v_i = ln y_i`):
/// `p = Sxy / Sxx`, `a = v̄ - p ū`, `se = sqrt(SSE / ((n - 2) Sxx))`,
/// 95 % CI `= p ± t_{0.975, n-2} · se`. The fields of the returned [`SlopeFit`] keep their
/// meaning with `ln x` read as `x`.
///
/// # Errors
/// As [`fit_loglog`], except that `x` may be zero or negative: [`RatesError::NonPositive`] is
/// raised for a non-finite `x`, and for a selected point whose `y` is `<= 0` or not finite.
pub fn fit_semilog(x: &[f64], y: &[f64], window: [f64; 2]) -> Result<SlopeFit, RatesError> {
    fit_log_y(x, y, window, false)
}

/// The shared least-squares fit of `ln y` on `ln x` (`log_x`) or on `x`.
fn fit_log_y(x: &[f64], y: &[f64], window: [f64; 2], log_x: bool) -> Result<SlopeFit, RatesError> {
    if x.len() != y.len() {
        return Err(RatesError::LengthMismatch {
            x: x.len(),
            y: y.len(),
        });
    }
    let [lo, hi] = window;
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(RatesError::InvalidWindow { lo, hi });
    }

    let mut u = Vec::new();
    let mut v = Vec::new();
    let mut used_min = f64::INFINITY;
    let mut used_max = f64::NEG_INFINITY;
    for (index, (&xi, &yi)) in x.iter().zip(y).enumerate() {
        if !xi.is_finite() {
            return Err(RatesError::NonPositive {
                index,
                value: xi,
                field: "x",
            });
        }
        if xi < lo || xi > hi {
            continue;
        }
        if log_x && xi <= 0.0 {
            return Err(RatesError::NonPositive {
                index,
                value: xi,
                field: "x",
            });
        }
        if !(yi.is_finite() && yi > 0.0) {
            return Err(RatesError::NonPositive {
                index,
                value: yi,
                field: "y",
            });
        }
        u.push(if log_x { xi.ln() } else { xi });
        v.push(yi.ln());
        used_min = used_min.min(xi);
        used_max = used_max.max(xi);
    }

    let n = u.len();
    if n < 3 {
        return Err(RatesError::TooFewPoints { n });
    }
    // All x equal <=> max - min is exactly zero (no float equality needed).
    if used_max - used_min <= 0.0 {
        return Err(RatesError::DegenerateX);
    }

    let nf = n as f64;
    let u_mean = u.iter().sum::<f64>() / nf;
    let v_mean = v.iter().sum::<f64>() / nf;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (&ui, &vi) in u.iter().zip(&v) {
        let du = ui - u_mean;
        let dv = vi - v_mean;
        sxx += du * du;
        sxy += du * dv;
        syy += dv * dv;
    }
    if sxx.is_nan() || sxx <= 0.0 {
        return Err(RatesError::DegenerateX);
    }
    let slope = sxy / sxx;
    let intercept = v_mean - slope * u_mean;
    let sse: f64 = u
        .iter()
        .zip(&v)
        .map(|(&ui, &vi)| {
            let r = vi - intercept - slope * ui;
            r * r
        })
        .sum();
    let dof = nf - 2.0;
    let stderr = (sse / (dof * sxx)).sqrt();
    let t = StudentsT::new(0.0, 1.0, dof)
        .map(|d| d.inverse_cdf(0.975))
        // dof >= 1 is finite and positive, so the constructor cannot fail; keep a typed path anyway.
        .map_err(|_| RatesError::TooFewPoints { n })?;
    let half = t * stderr;
    let r_squared = if syy > 0.0 { 1.0 - sse / syy } else { 1.0 };

    Ok(SlopeFit {
        slope,
        intercept,
        ci95: [slope - half, slope + half],
        stderr,
        n,
        window: [used_min, used_max],
        r_squared,
    })
}

/// A fitted geometric decay `error_k ≈ C q^k`.
#[derive(Clone, Debug, PartialEq)]
pub struct DecayFit {
    /// The per-step factor `q = exp(p)`, `p` the semilog slope (compare with `1 / rho`).
    pub factor: f64,
    /// The 95 % interval of `q`, `exp` of the slope's interval.
    pub factor_ci95: [f64; 2],
    /// The underlying fit of `ln error = a + p k`.
    pub fit: SlopeFit,
}

/// Fits `ln error_k = a + p k` ([`fit_semilog`]) over the leading run of points with
/// `error > floor` (the fit stops at the first point at or below the floor, where rounding
/// takes over), and returns the factor `q = e^p`.
///
/// # Errors
/// Those of [`fit_semilog`] ([`RatesError::TooFewPoints`] when fewer than 3 points lie above
/// the floor, [`RatesError::LengthMismatch`]).
pub fn fit_geometric_decay(k: &[f64], error: &[f64], floor: f64) -> Result<DecayFit, RatesError> {
    if k.len() != error.len() {
        return Err(RatesError::LengthMismatch {
            x: k.len(),
            y: error.len(),
        });
    }
    let n = error
        .iter()
        .position(|&e| e.is_nan() || e <= floor)
        .unwrap_or(error.len());
    let fit = fit_semilog(&k[..n], &error[..n], [f64::NEG_INFINITY, f64::INFINITY])?;
    Ok(DecayFit {
        factor: fit.slope.exp(),
        factor_ci95: [fit.ci95[0].exp(), fit.ci95[1].exp()],
        fit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [f64; 2] = [f64::NEG_INFINITY, f64::INFINITY];

    fn geometric(n: usize) -> Vec<f64> {
        (0..n).map(|i| 2f64.powf(i as f64 / 2.0)).collect()
    }

    /// Independent closed form with raw (uncentred) sums:
    /// Sxx = Σu² - (Σu)²/n, Sxy = Σuv - ΣuΣv/n, slope = Sxy/Sxx,
    /// SSE = Syy - slope·Sxy, se = sqrt(SSE/((n-2)Sxx)).
    fn closed_form(x: &[f64], y: &[f64]) -> (f64, f64, f64) {
        let n = x.len() as f64;
        let u: Vec<f64> = x.iter().map(|v| v.ln()).collect();
        let v: Vec<f64> = y.iter().map(|v| v.ln()).collect();
        let su: f64 = u.iter().sum();
        let sv: f64 = v.iter().sum();
        let suu: f64 = u.iter().map(|a| a * a).sum();
        let svv: f64 = v.iter().map(|a| a * a).sum();
        let suv: f64 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
        let sxx = suu - su * su / n;
        let sxy = suv - su * sv / n;
        let syy = svv - sv * sv / n;
        let slope = sxy / sxx;
        let intercept = (sv - slope * su) / n;
        let sse = syy - slope * sxy;
        let se = (sse / ((n - 2.0) * sxx)).sqrt();
        (slope, intercept, se)
    }

    #[test]
    fn exact_power_law_has_exact_slope_and_zero_width_ci() {
        let x = geometric(12);
        let y: Vec<f64> = x.iter().map(|&t| 3.0 * t.powi(-2)).collect();
        let fit = fit_loglog(&x, &y, ALL).unwrap();
        // ln y = ln 3 - 2 ln x is exact up to rounding of ln (≈1e-16 relative on |ln| ≲ 5).
        assert!((fit.slope + 2.0).abs() < 1e-12, "slope {}", fit.slope);
        assert!(
            (fit.intercept - 3f64.ln()).abs() < 1e-12,
            "intercept {}",
            fit.intercept
        );
        // Residuals are rounding noise (~1e-16), so se ~ 1e-16 and the width t·se is far below 1e-10.
        assert!(fit.ci95[1] - fit.ci95[0] < 1e-10, "ci {:?}", fit.ci95);
        assert!(fit.ci95[0] <= fit.slope && fit.slope <= fit.ci95[1]);
        assert_eq!(fit.n, 12);
        // R² is 1 - SSE/Syy with SSE ~ 1e-30 and Syy ~ 10: 1 up to rounding.
        assert!((fit.r_squared - 1.0).abs() < 1e-12);
    }

    #[test]
    fn perturbed_power_law_ci_contains_true_slope() {
        let x = geometric(20);
        let y: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, &t)| t.powi(-1) * (1.0 + 0.01 * (i as f64).sin()))
            .collect();
        let fit = fit_loglog(&x, &y, ALL).unwrap();
        assert!(
            fit.ci95[0] <= -1.0 && -1.0 <= fit.ci95[1],
            "CI {:?} misses -1 (slope {}, se {})",
            fit.ci95,
            fit.slope,
            fit.stderr
        );
        // The perturbation is 1 % of y, so the interval must be non-trivial but narrow.
        assert!(fit.stderr > 0.0 && fit.ci95[1] - fit.ci95[0] < 0.05);
        assert!(fit.r_squared > 0.99 && fit.r_squared < 1.0);
    }

    #[test]
    fn matches_independent_closed_form() {
        let x = geometric(15);
        let y: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, &t)| 0.7 * t.powf(-1.5) * (1.0 + 0.05 * (1.3 * i as f64).cos()))
            .collect();
        let fit = fit_loglog(&x, &y, ALL).unwrap();
        let (slope, intercept, se) = closed_form(&x, &y);
        // Raw vs centred sums differ by cancellation error ~ eps·Σu² / Sxx ≈ 1e-15 relative.
        assert!(
            (fit.slope - slope).abs() < 1e-10,
            "{} vs {}",
            fit.slope,
            slope
        );
        assert!((fit.intercept - intercept).abs() < 1e-10);
        // SSE = Syy - slope·Sxy loses ~eps·Syy/SSE relative accuracy: SSE ≈ 1e-2·Syy here, so 1e-8 is ample.
        assert!(
            (fit.stderr - se).abs() < 1e-8 * se,
            "{} vs {}",
            fit.stderr,
            se
        );
    }

    #[test]
    fn ci_uses_students_t_quantile() {
        // Table values of t_{0.975, ν}: ν = 1 -> 12.7062047, ν = 10 -> 2.2281389 (6-7 significant digits).
        for (n, t_table) in [(3usize, 12.706_204_7), (12, 2.228_138_9)] {
            let x = geometric(n);
            let y: Vec<f64> = x
                .iter()
                .enumerate()
                .map(|(i, &t)| t.powi(-1) * (1.0 + 0.02 * (i as f64).sin()))
                .collect();
            let fit = fit_loglog(&x, &y, ALL).unwrap();
            let t = (fit.ci95[1] - fit.slope) / fit.stderr;
            // The table is rounded to 8 significant digits, so compare at 1e-6 relative.
            assert!((t - t_table).abs() < 1e-6 * t_table, "n = {n}: t = {t}");
            assert!((fit.slope - fit.ci95[0] - (fit.ci95[1] - fit.slope)).abs() < 1e-12);
        }
    }

    #[test]
    fn window_selects_points() {
        // Slope -1 below x = 10, slope -3 above: the window must pick one regime only.
        let x: Vec<f64> = (1..=40).map(|i| i as f64).collect();
        let y: Vec<f64> = x
            .iter()
            .map(|&t| {
                if t <= 10.0 {
                    1.0 / t
                } else {
                    100.0 * t.powi(-3)
                }
            })
            .collect();
        let low = fit_loglog(&x, &y, [1.0, 10.0]).unwrap();
        assert_eq!(low.n, 10);
        // Exact power law on the window: only rounding error in ln.
        assert!((low.slope + 1.0).abs() < 1e-12);
        // The window is the exact min/max of the x used (copies, so bitwise equal).
        assert_eq!(
            low.window.map(f64::to_bits),
            [1.0f64, 10.0].map(f64::to_bits)
        );
        let high = fit_loglog(&x, &y, [10.5, 100.0]).unwrap();
        assert_eq!(high.n, 30);
        assert!((high.slope + 3.0).abs() < 1e-12);
        assert_eq!(
            high.window.map(f64::to_bits),
            [11.0f64, 40.0].map(f64::to_bits)
        );
        // Points outside the window may have y <= 0 without error.
        let mut y2 = y.clone();
        y2[39] = 0.0;
        assert!(fit_loglog(&x, &y2, [1.0, 10.0]).is_ok());
    }

    #[test]
    fn error_cases() {
        let x = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(
            fit_loglog(&x, &[1.0, 0.5, 0.0, 0.1], ALL),
            Err(RatesError::NonPositive {
                index: 2,
                value: 0.0,
                field: "y"
            })
        );
        assert_eq!(
            fit_loglog(&x, &[1.0, -0.5, 0.2, 0.1], ALL),
            Err(RatesError::NonPositive {
                index: 1,
                value: -0.5,
                field: "y"
            })
        );
        match fit_loglog(&x, &[1.0, 0.5, f64::NAN, 0.1], ALL) {
            Err(RatesError::NonPositive {
                index: 2,
                value,
                field: "y",
            }) => assert!(value.is_nan()),
            other => panic!("expected NonPositive for NaN y, got {other:?}"),
        }
        match fit_loglog(&[1.0, f64::NAN, 4.0, 8.0], &[1.0, 0.5, 0.2, 0.1], ALL) {
            Err(RatesError::NonPositive {
                index: 1,
                field: "x",
                ..
            }) => {}
            other => panic!("expected NonPositive for NaN x, got {other:?}"),
        }
        assert_eq!(
            fit_loglog(&[-1.0, 2.0, 4.0, 8.0], &[1.0, 0.5, 0.2, 0.1], ALL),
            Err(RatesError::NonPositive {
                index: 0,
                value: -1.0,
                field: "x"
            })
        );
        assert_eq!(
            fit_loglog(&x, &[1.0, 0.5, 0.2], ALL),
            Err(RatesError::LengthMismatch { x: 4, y: 3 })
        );
        assert_eq!(
            fit_loglog(&x, &[1.0, 0.5, 0.2, 0.1], [1.5, 5.0]),
            Err(RatesError::TooFewPoints { n: 2 })
        );
        assert_eq!(
            fit_loglog(&[], &[], ALL),
            Err(RatesError::TooFewPoints { n: 0 })
        );
        assert_eq!(
            fit_loglog(&[3.0; 5], &[1.0, 2.0, 3.0, 4.0, 5.0], ALL),
            Err(RatesError::DegenerateX)
        );
        assert_eq!(
            fit_loglog(&x, &[1.0, 0.5, 0.2, 0.1], [5.0, 1.0]),
            Err(RatesError::InvalidWindow { lo: 5.0, hi: 1.0 })
        );
        assert!(matches!(
            fit_loglog(&x, &[1.0, 0.5, 0.2, 0.1], [f64::NAN, 1.0]),
            Err(RatesError::InvalidWindow { .. })
        ));
        // Messages name the field.
        let msg = fit_loglog(&x, &[1.0, 0.5, 0.0, 0.1], ALL)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("y[2]"), "{msg}");
    }

    #[test]
    fn semilog_recovers_geometric_rate() {
        // y_k = 3 * 0.7^k exactly: ln y = ln 3 + k ln 0.7, also for k <= 0 (x need not be positive).
        let x: Vec<f64> = (-3..=12).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|&k| 3.0 * 0.7f64.powf(k)).collect();
        let fit = fit_semilog(&x, &y, ALL).unwrap();
        // Exact up to rounding of ln and powf (~1e-15 relative on |ln y| <= 5).
        assert!(
            (fit.slope - 0.7f64.ln()).abs() < 1e-12,
            "slope {}",
            fit.slope
        );
        assert!((fit.intercept - 3f64.ln()).abs() < 1e-12);
        assert_eq!(fit.n, 16);
        assert_eq!(
            fit.window.map(f64::to_bits),
            [-3.0f64, 12.0].map(f64::to_bits)
        );
        // The log-log fit of the same data must refuse x <= 0.
        assert!(matches!(
            fit_loglog(&x, &y, ALL),
            Err(RatesError::NonPositive { field: "x", .. })
        ));
        // The window selects k in [0, 5] only.
        let part = fit_semilog(&x, &y, [0.0, 5.0]).unwrap();
        assert_eq!(part.n, 6);
        assert!(matches!(
            fit_semilog(&x, &[1.0; 3], ALL),
            Err(RatesError::LengthMismatch { x: 16, y: 3 })
        ));
    }

    #[test]
    fn serde_round_trip() {
        let x = geometric(6);
        let y: Vec<f64> = x
            .iter()
            .map(|&t| t.powi(-1) * (1.0 + 0.01 * t.sin()))
            .collect();
        let fit = fit_loglog(&x, &y, [0.0, f64::INFINITY]).unwrap();
        let s = serde_json::to_string(&fit).unwrap();
        let back: SlopeFit = serde_json::from_str(&s).unwrap();
        // serde_json round-trips f64 exactly (shortest repr), so compare with a 1-ulp-scale tolerance anyway.
        assert!((back.slope - fit.slope).abs() <= 1e-15 * fit.slope.abs());
        assert_eq!(back.n, fit.n);
    }
}
