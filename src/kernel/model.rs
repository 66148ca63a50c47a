//! Gaussian model kernels of a reverse step in Hessian coordinates, and the KL of the optimal
//! Gaussian `N(m, C)` to a model kernel `N(mu, Sigma)`, split into a mean part and a
//! covariance part, in closed form and without cancellation.
//!
//! # Formula
//! Every covariance of the step from `s` to `t` (`a^2 = abar_t / abar_s`, `b = 1 - a^2`) is
//! written as `Sigma = (b / a^2) S`, `S = I + b X`, with `X` a "model Hessian" (the exact
//! `C = (b / a^2)(I + b H)` has `X = H`, `beta` has `X = -I`, `beta-tilde` has
//! `X = -I / (1 - abar_t)`). With the means `m = (x + b s)/a` and `mu = (x + b s_theta)/a` (Tweedie),
//! `m - mu = (b / a) delta`, `delta = s - s_theta`, and
//! ```text
//! KL(N(m, C) || N(mu, Sigma)) = mean + cov,
//! mean = (1/2) (m - mu)^T Sigma^-1 (m - mu) = (b / 2) delta^T S^-1 delta,
//! cov  = (1/2) [tr(Sigma^-1 C) - D - ln det(Sigma^-1 C)] = (1/2) sum_i (u_i - ln(1 + u_i)),
//! u_i  = eigenvalues of b S^-1/2 (H - X) S^-1/2            (Sigma^-1 C = I + S^-1 b (H - X))
//! ```
//! so `cov` is computed from the difference `H - X`, never from `C - Sigma` formed by
//! subtraction, and stays accurate when it is O(1/T^2).
//!
//! Clip bounds (Analytic-DPM's `[sigma~^2, sigma~^2 + abar_s b^2 / (1 - abar_t)^2 w^2]` for data in
//! a box of half-width `w`) are, in these coordinates, independent of the step:
//! `X in [-1 / (1 - abar_t), -1 / (1 - abar_t) + abar_t w^2 / (1 - abar_t)^2]` (equivalently,
//! the clean-data posterior variance in `[0, w^2]`).

use nalgebra::{DMatrix, SymmetricEigen};

use crate::kernel::family::{sym2_eigenvalues, sym_eigenvalues, IsoScale};
use crate::numeric::u_minus_ln1p;
use crate::process::schedule::{Grid, Step};

/// A model covariance in Hessian coordinates (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ModelCov<'a> {
    /// Isotropic: `S = rho I` with a cancellation-free `1 - rho` (`X = -(1 - rho) / b`).
    Iso(IsoScale),
    /// Diagonal `X`, one value per coordinate.
    Diag(&'a [f64]),
    /// Symmetric `X`, column-major `D x D`.
    Full(&'a [f64]),
}

/// The two parts of `KL(N(m, C) || N(mu, Sigma))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KlParts {
    /// `(1/2) (m - mu)^T Sigma^-1 (m - mu)`.
    pub mean: f64,
    /// `(1/2) [tr(Sigma^-1 C) - D - ln det(Sigma^-1 C)]`.
    pub cov: f64,
}

impl KlParts {
    /// `mean + cov`.
    #[must_use]
    pub fn total(&self) -> f64 {
        self.mean + self.cov
    }
}

/// `KL(N(m, C) || N(mu, Sigma))` split into its mean and covariance parts.
///
/// # Arguments
/// * `b` - the step's `b`.
/// * `h` - the exact Hessian `H` of `ln q_t` at `x_t`, column-major `D x D`.
/// * `model` - the model covariance.
/// * `delta` - `s - s_theta` (exact minus model score; zeros for the exact mean).
///
/// Returns `None` when `Sigma` is not positive definite (the KL is infinite).
#[must_use]
pub fn kl_parts(b: f64, h: &[f64], model: &ModelCov<'_>, delta: &[f64]) -> Option<KlParts> {
    let d = delta.len();
    if d == 2 {
        return kl_parts_2d(b, h, model, delta);
    }
    match model {
        ModelCov::Iso(sc) => {
            if sc.rho <= 0.0 {
                return None;
            }
            let mu = sym_eigenvalues(h, d);
            let cov = 0.5
                * mu.iter()
                    .map(|m| u_minus_ln1p((sc.one_minus_rho + b * m) / sc.rho))
                    .sum::<f64>();
            let mean = 0.5 * b * delta.iter().map(|v| v * v).sum::<f64>() / sc.rho;
            Some(KlParts { mean, cov })
        }
        ModelCov::Diag(x) => {
            let s: Vec<f64> = x.iter().map(|xi| 1.0 + b * xi).collect();
            if s.iter().any(|v| v.is_nan() || *v <= 0.0) {
                return None;
            }
            let mut bm = vec![0.0; d * d];
            for j in 0..d {
                for i in 0..d {
                    let diff = if i == j {
                        h[j * d + i] - x[i]
                    } else {
                        h[j * d + i]
                    };
                    bm[j * d + i] = b * diff / (s[i] * s[j]).sqrt();
                }
            }
            let cov = half_u_minus_ln1p_sum(&bm, d)?;
            let mean = 0.5 * b * delta.iter().zip(&s).map(|(v, si)| v * v / si).sum::<f64>();
            Some(KlParts { mean, cov })
        }
        ModelCov::Full(x) => {
            let s = DMatrix::from_fn(d, d, |i, j| {
                b * x[j * d + i] + if i == j { 1.0 } else { 0.0 }
            });
            let chol = s.cholesky()?;
            let a = DMatrix::from_fn(d, d, |i, j| b * (h[j * d + i] - x[j * d + i]));
            // B = L^-1 A L^-T
            let l = chol.l();
            let y = l.solve_lower_triangular(&a)?;
            let bmat = l.solve_lower_triangular(&y.transpose())?;
            let bsym = (&bmat + bmat.transpose()) * 0.5;
            let flat: Vec<f64> = bsym.iter().copied().collect();
            let cov = half_u_minus_ln1p_sum(&flat, d)?;
            let dv = nalgebra::DVector::from_column_slice(delta);
            let mean = 0.5 * b * dv.dot(&chol.solve(&dv));
            Some(KlParts { mean, cov })
        }
    }
}

/// `(1/2) sum (u - ln(1 + u))` over two eigenvalues; `None` if some `1 + u <= 0`.
fn half_sum2(u: [f64; 2]) -> Option<f64> {
    if u.iter().any(|v| v.is_nan() || *v <= -1.0) {
        return None;
    }
    Some(0.5 * (u_minus_ln1p(u[0]) + u_minus_ln1p(u[1])))
}

/// [`kl_parts`] in D = 2 without allocation (the same formulas, the 2 x 2 algebra inline).
fn kl_parts_2d(b: f64, h: &[f64], model: &ModelCov<'_>, delta: &[f64]) -> Option<KlParts> {
    let (h00, h10, h11) = (h[0], h[1], h[3]);
    let (d0, d1) = (delta[0], delta[1]);
    match model {
        ModelCov::Iso(sc) => {
            if sc.rho <= 0.0 {
                return None;
            }
            let mu = sym2_eigenvalues(h00, h10, h11);
            let cov = half_sum2(mu.map(|m| (sc.one_minus_rho + b * m) / sc.rho))?;
            Some(KlParts {
                mean: 0.5 * b * (d0 * d0 + d1 * d1) / sc.rho,
                cov,
            })
        }
        ModelCov::Diag(x) => {
            let (s0, s1) = (1.0 + b * x[0], 1.0 + b * x[1]);
            if s0.is_nan() || s1.is_nan() || s0 <= 0.0 || s1 <= 0.0 {
                return None;
            }
            let u = sym2_eigenvalues(
                b * (h00 - x[0]) / s0,
                b * h10 / (s0 * s1).sqrt(),
                b * (h11 - x[1]) / s1,
            );
            Some(KlParts {
                mean: 0.5 * b * (d0 * d0 / s0 + d1 * d1 / s1),
                cov: half_sum2(u)?,
            })
        }
        ModelCov::Full(x) => {
            // S = I + b X = L L^T (Cholesky), B = b L^-1 (H - X) L^-T.
            let (s00, s10, s11) = (1.0 + b * x[0], b * 0.5 * (x[1] + x[2]), 1.0 + b * x[3]);
            if s00.is_nan() || s00 <= 0.0 {
                return None;
            }
            let l00 = s00.sqrt();
            let l10 = s10 / l00;
            let r = s11 - l10 * l10;
            if r.is_nan() || r <= 0.0 {
                return None;
            }
            let l11 = r.sqrt();
            let (a00, a10, a11) = (
                b * (h00 - x[0]),
                b * (h10 - 0.5 * (x[1] + x[2])),
                b * (h11 - x[3]),
            );
            // Y = L^-1 A: rows y0 = a0 / l00, y1 = (a1 - l10 y0) / l11.
            let (y00, y01) = (a00 / l00, a10 / l00);
            let (y10, y11) = ((a10 - l10 * y00) / l11, (a11 - l10 * y01) / l11);
            // B = Y L^-T: columns likewise.
            let b00 = y00 / l00;
            let b01 = (y01 - l10 * b00) / l11;
            let b10 = y10 / l00;
            let b11 = (y11 - l10 * b10) / l11;
            let u = sym2_eigenvalues(b00, 0.5 * (b01 + b10), b11);
            // delta^T S^-1 delta = |L^-1 delta|^2.
            let z0 = d0 / l00;
            let z1 = (d1 - l10 * z0) / l11;
            Some(KlParts {
                mean: 0.5 * b * (z0 * z0 + z1 * z1),
                cov: half_sum2(u)?,
            })
        }
    }
}

/// `(1/2) sum_i (u_i - ln(1 + u_i))` over the eigenvalues of the symmetric column-major `B`;
/// `None` if some `1 + u_i <= 0`.
fn half_u_minus_ln1p_sum(bm: &[f64], d: usize) -> Option<f64> {
    let u = sym_eigenvalues(bm, d);
    if u.iter().any(|v| v.is_nan() || *v <= -1.0) {
        return None;
    }
    Some(0.5 * u.iter().map(|&v| u_minus_ln1p(v)).sum::<f64>())
}

/// The clip range of `X` at time `t` (see the module docs): `(lo, hi)` with
/// `lo = -1 / (1 - abar_t)` and `hi = lo + abar_t w^2 / (1 - abar_t)^2` for a data box of
/// half-width `w = (hi - lo) / 2` (`+inf` without a range).
#[must_use]
pub fn h_bounds(ln_abar_t: f64, range: Option<(f64, f64)>) -> (f64, f64) {
    let oma = 0.0 - ln_abar_t.exp_m1();
    let lo = -1.0 / oma;
    let hi = range.map_or(f64::INFINITY, |(a, b)| {
        let w = 0.5 * (b - a);
        lo + ln_abar_t.exp() * w * w / (oma * oma)
    });
    (lo, hi)
}

/// I-DDPM's `X` for the step `step` from the interpolation coefficient `v`:
/// `Sigma = exp(v ln b + (1 - v) ln beta~)`, `beta~ = b (1 - abar_s) / (1 - abar_t)`, i.e.
/// ```text
/// X = expm1(ln a^2 + (v - 1) L) / b,   L = ln((1 - abar_t) / (1 - abar_s)).
/// ```
/// At a step to the data (`abar_s = 1`, where `beta~ = 0` and the interpolation is undefined)
/// `beta~` is replaced by `beta_tilde_clip` (improved DDPM's clipped log variance: the next
/// step's `beta~`), `X = expm1(ln a^2 + (1 - v) ln(beta~_clip / b)) / b`; without one the
/// result is `None` (I-DDPM has no DDIM kernel).
#[must_use]
pub fn iddpm_h(v: f64, step: &Step, beta_tilde_clip: Option<f64>) -> Option<f64> {
    let ln_a2 = step.ln_abar_t - step.ln_abar_s;
    let oma_s = step.one_minus_abar_s();
    if oma_s > 0.0 {
        let l = step.one_minus_abar_t().ln() - oma_s.ln();
        Some((ln_a2 + (v - 1.0) * l).exp_m1() / step.b)
    } else {
        let clip = beta_tilde_clip?;
        Some((ln_a2 + (1.0 - v) * (clip / step.b).ln()).exp_m1() / step.b)
    }
}

/// The symmetric column-major `X` with its eigenvalues clamped to `[lo, hi]` (the sampler's
/// Ritz-value clamp, applied to a full model covariance that may not be positive definite).
#[must_use]
pub fn clamp_eigenvalues(x: &[f64], d: usize, lo: f64, hi: f64) -> Vec<f64> {
    let m = DMatrix::from_column_slice(d, d, x);
    let e = SymmetricEigen::new((&m + m.transpose()) * 0.5);
    let lam = e.eigenvalues.map(|v| v.max(lo).min(hi));
    let r = &e.eigenvectors * DMatrix::from_diagonal(&lam) * e.eigenvectors.transpose();
    r.iter().copied().collect()
}

/// DDPM ancestral or DDIM (OCM-DDIM) kernel (of the samplers, and of the chains whose path KL
/// [`crate::kl::path_kl`] computes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KernelKind {
    /// DDPM ancestral.
    #[default]
    Ddpm,
    /// OCM-DDIM.
    Ddim,
}

impl KernelKind {
    /// `ddpm` or `ddim`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ddpm => "ddpm",
            Self::Ddim => "ddim",
        }
    }

    /// The kernel named `ddpm` or `ddim` (as [`str::parse`]).
    ///
    /// # Errors
    /// Any other name (returned).
    pub fn from_name(name: &str) -> Result<Self, String> {
        name.parse()
    }
}

impl std::str::FromStr for KernelKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "ddpm" => Ok(Self::Ddpm),
            "ddim" => Ok(Self::Ddim),
            other => Err(other.to_string()),
        }
    }
}

pub use crate::data::dataset::mixture_range as clip_range_of;

/// The Analytic-DPM variance bounds of step `i` (from `t_{i-1}` to `t_i`):
/// `lower = sigma~^2 = b (1 - abar_s) / (1 - abar_t)` (0 at a degenerate last step) and
/// `upper = lower + abar_s b^2 / (1 - abar_t)^2 ((hi - lo)/2)^2` for the data range
/// `[lo, hi]` (`inf` without one).
#[must_use]
pub fn clip_bounds(grid: &Grid, i: usize, range: Option<(f64, f64)>) -> (f64, f64) {
    let st = grid.step(i);
    let oma_s = grid.one_minus_abar(i - 1);
    let oma_t = grid.one_minus_abar(i);
    let lower = if oma_s > 0.0 {
        st.b * oma_s / oma_t
    } else {
        0.0
    };
    let upper = range.map_or(f64::INFINITY, |(lo, hi)| {
        lower + grid.abar(i - 1) * st.b * st.b / (oma_t * oma_t) * ((hi - lo) / 2.0).powi(2)
    });
    (lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    /// Independent dense route: (1/2)[tr(Sigma^-1 C) - D + (m - mu)^T Sigma^-1 (m - mu) + ln det Sigma - ln det C].
    fn dense_kl(c: &DMatrix<f64>, sig: &DMatrix<f64>, dm: &[f64]) -> f64 {
        let d = c.nrows();
        let inv = sig.clone().try_inverse().unwrap();
        let dv = nalgebra::DVector::from_column_slice(dm);
        0.5 * ((&inv * c).trace() - d as f64 + dv.dot(&(&inv * &dv)) + sig.determinant().ln()
            - c.determinant().ln())
    }

    #[test]
    fn parts_match_the_dense_gaussian_kl() {
        // A coarse step (a^2 = 0.7) so that the dense formula has no cancellation: 1e-11 relative.
        let (a2, b) = (0.7, 0.3);
        for d in 1..=4usize {
            let h = DMatrix::from_fn(d, d, |i, j| {
                if i == j {
                    -1.2 + 0.25 * i as f64
                } else {
                    0.3 / (1.0 + (i + j) as f64)
                }
            });
            let hv: Vec<f64> = h.iter().copied().collect();
            let c = (&h * b + DMatrix::identity(d, d)) * (b / a2);
            let delta: Vec<f64> = (0..d).map(|i| 0.4 - 0.3 * i as f64).collect();
            let dm: Vec<f64> = delta.iter().map(|v| b / a2.sqrt() * v).collect();
            let xd: Vec<f64> = (0..d).map(|i| -0.9 + 0.1 * i as f64).collect();
            let xf: Vec<f64> = DMatrix::from_fn(d, d, |i, j| if i == j { xd[i] } else { 0.1 })
                .iter()
                .copied()
                .collect();
            let sig_of = |x: &DMatrix<f64>| (x * b + DMatrix::identity(d, d)) * (b / a2);
            let sd = sig_of(&DMatrix::from_diagonal(&nalgebra::DVector::from_vec(
                xd.clone(),
            )));
            let sf = sig_of(&DMatrix::from_column_slice(d, d, &xf));
            let p = kl_parts(b, &hv, &ModelCov::Diag(&xd), &delta).unwrap();
            assert_relative_eq!(p.total(), dense_kl(&c, &sd, &dm), max_relative = 1e-11);
            assert_relative_eq!(
                p.cov,
                dense_kl(&c, &sd, &vec![0.0; d]),
                max_relative = 1e-11
            );
            let p = kl_parts(b, &hv, &ModelCov::Full(&xf), &delta).unwrap();
            assert_relative_eq!(p.total(), dense_kl(&c, &sf, &dm), max_relative = 1e-11);
            let iso = IsoScale::beta(a2, b);
            let p = kl_parts(b, &hv, &ModelCov::Iso(iso), &delta).unwrap();
            assert_relative_eq!(
                p.total(),
                dense_kl(&c, &(DMatrix::identity(d, d) * b), &dm),
                max_relative = 1e-11
            );
            // The exact covariance (X = H) has no covariance part.
            let p = kl_parts(b, &hv, &ModelCov::Full(&hv), &delta).unwrap();
            assert!(p.cov.abs() < 1e-15, "{p:?}");
        }
    }

    #[test]
    fn the_two_dimensional_path_equals_the_general_one() {
        // kl_parts dispatches D = 2 to inline algebra; the general path (nalgebra) on the same
        // input, reached through a D = 3 embedding with a decoupled third coordinate whose
        // model is exact, must agree to 1e-13 relative.
        let (b, h) = (0.2, [-1.3, 0.4, 0.4, -0.6]);
        let h3 = [-1.3, 0.4, 0.0, 0.4, -0.6, 0.0, 0.0, 0.0, -1.0];
        let delta = [0.3, -0.2];
        let delta3 = [0.3, -0.2, 0.0];
        let xd = [-1.0, -0.4];
        let xf = [-1.1, 0.2, 0.2, -0.5];
        let xf3 = [-1.1, 0.2, 0.0, 0.2, -0.5, 0.0, 0.0, 0.0, -1.0];
        let pairs = [
            (
                kl_parts(b, &h, &ModelCov::Diag(&xd), &delta).unwrap(),
                kl_parts(b, &h3, &ModelCov::Diag(&[-1.0, -0.4, -1.0]), &delta3).unwrap(),
            ),
            (
                kl_parts(b, &h, &ModelCov::Full(&xf), &delta).unwrap(),
                kl_parts(b, &h3, &ModelCov::Full(&xf3), &delta3).unwrap(),
            ),
        ];
        for (p2, p3) in pairs {
            assert_relative_eq!(p2.mean, p3.mean, max_relative = 1e-13);
            assert_relative_eq!(p2.cov, p3.cov, max_relative = 1e-13);
        }
    }

    #[test]
    fn not_positive_definite_is_none_and_bounds_map_to_the_variance_clip() {
        let h = [-1.0, 0.0, 0.0, -1.0];
        assert!(kl_parts(0.5, &h, &ModelCov::Diag(&[-3.0, -1.0]), &[0.0, 0.0]).is_none());
        // The lower bound of X is beta-tilde's X; the upper bound is the variance clip of
        // sampler::clip_bounds mapped through Sigma = (b^2 X + b)/a^2 (two formulas, 1e-12).
        let grid = crate::process::schedule::Schedule::vp_linear()
            .grid(10, 0.0)
            .unwrap();
        for i in 2..=10 {
            let st = grid.step(i);
            let range = Some((-2.0, 3.0));
            let (lo, hi) = h_bounds(st.ln_abar_t, range);
            let (vlo, vhi) = clip_bounds(&grid, i, range);
            let var = |x: f64| (st.b * st.b * x + st.b) / st.a2;
            assert_relative_eq!(var(lo), vlo, max_relative = 1e-12);
            assert_relative_eq!(var(hi), vhi, max_relative = 1e-12);
        }
    }

    #[test]
    fn iddpm_interpolates_between_beta_and_beta_tilde() {
        let st = Step::from_ln_abar(-0.3, -0.8);
        let var = |x: f64| (st.b * st.b * x + st.b) / st.a2;
        let bt = st.b * st.one_minus_abar_s() / st.one_minus_abar_t();
        // v = 1: beta; v = 0: beta-tilde; v = 1/2: the geometric mean (1e-13: expm1 route vs direct).
        assert_relative_eq!(
            var(iddpm_h(1.0, &st, None).unwrap()),
            st.b,
            max_relative = 1e-13
        );
        assert_relative_eq!(
            var(iddpm_h(0.0, &st, None).unwrap()),
            bt,
            max_relative = 1e-13
        );
        assert_relative_eq!(
            var(iddpm_h(0.5, &st, None).unwrap()),
            (st.b * bt).sqrt(),
            max_relative = 1e-13
        );
        let last = Step::from_ln_abar(0.0, -0.01);
        assert!(iddpm_h(0.5, &last, None).is_none());
        let var_last = |x: f64| (last.b * last.b * x + last.b) / last.a2;
        assert_relative_eq!(
            var_last(iddpm_h(0.0, &last, Some(1e-3)).unwrap()),
            1e-3,
            max_relative = 1e-12
        );
    }
}
