//! The a-priori error bound of Lanczos for `C^{1/2} z` (`docs/lanczos.md`): Chebyshev
//! truncation of `sqrt` on `[lmin, lmax]` with `rho(kappa)`, and the interpolation error on
//! a fine grid.

/// The Bernstein-ellipse parameter of `sqrt` on `[lmin, lmax]` mapped to `[-1, 1]`.
///
/// # Formula
/// ```text
/// rho = (sqrt(kappa) + 1) / (sqrt(kappa) - 1)
/// ```
/// (`+inf` for `kappa = 1`; NaN for `kappa < 1` or NaN). The Chebyshev coefficients of `sqrt`
/// decay like `rho^{-n}`, and so does `E_n`.
#[must_use]
pub fn rho(kappa: f64) -> f64 {
    if kappa.is_nan() || kappa < 1.0 {
        return f64::NAN;
    }
    let s = kappa.sqrt();
    (s + 1.0) / (s - 1.0)
}

/// A rigorous upper bound on `E_n`, the best uniform error of `sqrt` on `[lmin, lmax]` by
/// polynomials of degree `<= n`, from the truncated Chebyshev series.
///
/// # Formula
/// With `c = (lmax + lmin) / 2`, `h = (lmax - lmin) / 2`, `x = c + h u`, `sqrt` is analytic
/// in the open Bernstein ellipse `E_r` (foci `±1`, semi-axes sum `r`) for `r <= r0 = rho(kappa)`:
/// the branch point `x = 0` (`u = -c/h`) is the left end of `E_{r0}` and the cut lies outside.
/// On `E_r`, `|sqrt(x)| <= M(r) = sqrt(c + h (r + 1/r) / 2)`, and (Trefethen, *Approximation
/// Theory and Approximation Practice*, Theorem 8.2, `f_n` the degree-`n` Chebyshev truncation)
/// ```text
/// E_n <= ||sqrt - f_n||_inf <= min_{1 < r <= r0} 2 M(r) r^{-n} / (r - 1)
///      = 2 sqrt(lmax + lmin) r0^{-n} / (r0 - 1)
/// ```
/// The minimum sits at `r = r0` for every `n >= 0`: with `r = e^s`, the derivative of the log
/// of the bound is `h sinh s / (2 (c + h cosh s)) - n - e^s / (e^s - 1) < 1/2 - 0 - 1 < 0`, and
/// `M(r0) = sqrt(2c) = sqrt(lmax + lmin)`.
///
/// Returns 0 when `lmin = lmax` (a constant is exact), NaN when `lmin <= 0`, `lmax < lmin` or
/// either is not finite.
#[must_use]
pub fn sqrt_chebyshev_truncation_bound(lmin: f64, lmax: f64, n: usize) -> f64 {
    if !(lmin.is_finite() && lmax.is_finite() && lmin > 0.0 && lmax >= lmin) {
        return f64::NAN;
    }
    if lmax - lmin <= 0.0 {
        return 0.0;
    }
    let r0 = rho(lmax / lmin);
    // r0 - 1 = 2 / (sqrt(kappa) - 1) without cancellation.
    let r0_m1 = 2.0 / ((lmax / lmin).sqrt() - 1.0);
    let ln_bound = 2f64.ln() + 0.5 * (lmax + lmin).ln() - n as f64 * r0.ln() - r0_m1.ln();
    ln_bound.exp()
}

/// The a-priori bound on the Lanczos error `||C^{1/2} z - y_k|| / ||z||` after `k` steps, for
/// SPD `C` with spectrum in `[lmin, lmax]` (Musco, Musco & Sidford 2018).
///
/// # Formula
/// ```text
/// bound = 2 E_{k-1},   E_n <= min( (sqrt(lmax) - sqrt(lmin)) / 2,  truncation bound(n) )
/// ```
/// The first term is the error of the best constant (`E_n <= E_0`); the second is
/// [`sqrt_chebyshev_truncation_bound`]. Both are rigorous, so the bound is. It decays like
/// `rho^{-k}` ([`rho`]). For `k = 0` (`y_0 = 0`) it returns `sqrt(lmax) >= ||C^{1/2} z|| / ||z||`.
/// NaN for invalid `lmin`, `lmax` (as [`sqrt_chebyshev_truncation_bound`]).
///
/// # Examples
/// ```
/// use covlab::linalg::lanczos_bounds::sqrt_error_bound;
/// let b10 = sqrt_error_bound(0.01, 1.0, 10);
/// let b20 = sqrt_error_bound(0.01, 1.0, 20);
/// assert!(b20 < b10 && b10 < 1.0);
/// ```
#[must_use]
pub fn sqrt_error_bound(lmin: f64, lmax: f64, k: usize) -> f64 {
    let trunc = sqrt_chebyshev_truncation_bound(lmin, lmax, k.saturating_sub(1));
    if trunc.is_nan() {
        return f64::NAN;
    }
    if k == 0 {
        return lmax.sqrt();
    }
    let e0 = 0.5 * (lmax.sqrt() - lmin.sqrt());
    2.0 * e0.min(trunc)
}

/// Points of each of the two evaluation grids of [`sqrt_chebyshev_interp_error`].
pub const INTERP_GRID_POINTS: usize = 1000;

/// A tight numerical estimate of `E_n` for `sqrt` on `[lmin, lmax]`: the largest error of the
/// Chebyshev interpolant `p_n` on a fine grid.
///
/// # Formula
/// `p_n` interpolates `sqrt` at the `n + 1` Chebyshev points of the first kind
/// `x_j = c + h cos((2j + 1) pi / (2n + 2))`, evaluated by the barycentric formula with weights
/// `w_j = (-1)^j sin((2j + 1) pi / (2n + 2))`; the result is
/// ```text
/// max over grid |sqrt(x) - p_n(x)|
/// ```
/// over [`INTERP_GRID_POINTS`] Chebyshev–Lobatto points `c + h cos(pi i / (N - 1))` (dense near
/// the ends, where the error peaks) plus as many uniform points. Since `p_n` has degree `n`,
/// `||sqrt - p_n||_inf >= E_n`, and the interpolant is near-best (within the Lebesgue constant
/// `2 + (2/pi) ln(n + 1)`), so this is an upper bound on `E_n` up to the grid's resolution and a
/// tight estimate of it; `2 ×` this is the "interpolation" estimate of the Lanczos bound. It
/// cannot go below the rounding level `~1e-16 sqrt(lmax)`.
///
/// Returns 0 when `lmin = lmax`, NaN for invalid input (as [`sqrt_chebyshev_truncation_bound`]).
#[must_use]
pub fn sqrt_chebyshev_interp_error(lmin: f64, lmax: f64, n: usize) -> f64 {
    if !(lmin.is_finite() && lmax.is_finite() && lmin > 0.0 && lmax >= lmin) {
        return f64::NAN;
    }
    let c = 0.5 * (lmax + lmin);
    let h = 0.5 * (lmax - lmin);
    if h <= 0.0 {
        return 0.0;
    }
    let np = n + 1;
    let angle = |j: usize| (2 * j + 1) as f64 * std::f64::consts::PI / (2 * np) as f64;
    let nodes: Vec<f64> = (0..np).map(|j| angle(j).cos()).collect();
    let fvals: Vec<f64> = nodes.iter().map(|u| (c + h * u).sqrt()).collect();
    let weights: Vec<f64> = (0..np)
        .map(|j| {
            let s = angle(j).sin();
            if j % 2 == 0 {
                s
            } else {
                -s
            }
        })
        .collect();
    let p = |u: f64| -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for j in 0..np {
            let diff = u - nodes[j];
            if diff == 0.0 {
                return fvals[j];
            }
            let t = weights[j] / diff;
            num += t * fvals[j];
            den += t;
        }
        num / den
    };
    let npts = INTERP_GRID_POINTS;
    let lobatto = (0..npts).map(|i| (std::f64::consts::PI * i as f64 / (npts - 1) as f64).cos());
    let uniform = (0..npts).map(|i| -1.0 + 2.0 * i as f64 / (npts - 1) as f64);
    lobatto
        .chain(uniform)
        .map(|u| ((c + h * u).max(0.0).sqrt() - p(u)).abs())
        .fold(0.0, f64::max)
}
