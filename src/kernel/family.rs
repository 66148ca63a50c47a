//! Covariance families of the Gaussian reverse model kernel p(x_s | x_t) = N(m(x_t), Sigma(x_t)),
//! and the closed-form Gaussian KL offsets KL(N(m, C) || N(m, Sigma_fam)) per point.
//!
//! All formulas are written in terms of the eigenvalues mu_i of the Hessian H(x_t) of
//! ln q_t, using C = (b / a^2)(I + b H) (second-order Tweedie). Writing an isotropic
//! variance as sigma^2 = rho b / a^2, the eigenvalues of Sigma^{-1} C are
//! (1 + b mu_i) / rho = 1 + u_i with
//! ```text
//! u_i = ((1 - rho) + b mu_i) / rho,
//! ```
//! and 1 - rho has a cancellation-free form for each family:
//!
//! | family | sigma^2 | 1 - rho |
//! |---|---|---|
//! | `beta` | b | b |
//! | `beta-tilde` | b (1 - abar_s) / (1 - abar_t) | b / (1 - abar_t) |
//! | `analytic` | E_{q_t}[tr C] / D | -b E_{q_t}[tr H] / D |
//!
//! so KL(N(m, C) || N(m, sigma^2 I)) = (1/2) sum_i (u_i - ln(1 + u_i)) is evaluated
//! without cancellation even when it is O(1/T^2).
//! For `diag`, KL(N(m, C) || N(m, diag C)) = -(1/2) ln det R with R the correlation
//! matrix of I + b H. For `full` the offset is zero.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::numeric::u_minus_ln1p;

/// Errors of the covariance families.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum CovarianceError {
    /// A family name is not known.
    #[error("unknown covariance family `{0}` in `families` (known: beta, beta-tilde, analytic, diag, full)")]
    UnknownFamily(String),
    /// A remedy name is not known.
    #[error("unknown beta-tilde remedy `{0}` (known: clip, early-stop)")]
    UnknownRemedy(String),
}

/// A covariance family (`docs/path-kl.md#covariance-families`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Family {
    /// b I (DDPM upper).
    Beta,
    /// (1 - abar_s)/(1 - abar_t) b I (DDPM lower).
    BetaTilde,
    /// Analytic-DPM: E[tr C]/D I.
    Analytic,
    /// Optimal diagonal: diag C(x_t).
    Diag,
    /// Optimal full: C(x_t).
    Full,
}

impl Family {
    /// All five families in display order.
    pub const ALL: [Family; 5] = [
        Family::Beta,
        Family::BetaTilde,
        Family::Analytic,
        Family::Diag,
        Family::Full,
    ];

    /// Parses `beta`, `beta-tilde`, `analytic`, `diag`, `full`.
    ///
    /// # Errors
    /// [`CovarianceError::UnknownFamily`].
    pub fn from_name(name: &str) -> Result<Self, CovarianceError> {
        match name.trim() {
            "beta" => Ok(Family::Beta),
            "beta-tilde" => Ok(Family::BetaTilde),
            "analytic" => Ok(Family::Analytic),
            "diag" => Ok(Family::Diag),
            "full" => Ok(Family::Full),
            other => Err(CovarianceError::UnknownFamily(other.to_string())),
        }
    }

    /// Parses a comma-separated list; duplicates are removed, order kept.
    ///
    /// # Errors
    /// [`CovarianceError::UnknownFamily`] for the first bad name.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, CovarianceError> {
        let mut out = Vec::new();
        for name in list.split(',').filter(|s| !s.trim().is_empty()) {
            let f = Self::from_name(name)?;
            if !out.contains(&f) {
                out.push(f);
            }
        }
        if out.is_empty() {
            return Err(CovarianceError::UnknownFamily(list.to_string()));
        }
        Ok(out)
    }

    /// The family's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Family::Beta => "beta",
            Family::BetaTilde => "beta-tilde",
            Family::Analytic => "analytic",
            Family::Diag => "diag",
            Family::Full => "full",
        }
    }
}

/// What to do with beta-tilde's degenerate last step (variance 0 when abar_{t_0} = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BetaTildeRemedy {
    /// Replace the last step's variance by the next step's value (improved DDPM's clipped log variance).
    Clip,
    /// Start the grid at t_0 = delta > 0, where abar < 1 and the variance is positive.
    EarlyStop,
}

impl BetaTildeRemedy {
    /// Parses `clip` or `early-stop`.
    ///
    /// # Errors
    /// [`CovarianceError::UnknownRemedy`].
    pub fn from_name(name: &str) -> Result<Self, CovarianceError> {
        match name {
            "clip" => Ok(Self::Clip),
            "early-stop" => Ok(Self::EarlyStop),
            other => Err(CovarianceError::UnknownRemedy(other.to_string())),
        }
    }

    /// The remedy's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Clip => "clip",
            Self::EarlyStop => "early-stop",
        }
    }
}

/// An isotropic variance sigma^2 = rho b / a^2 given by rho and a cancellation-free 1 - rho.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IsoScale {
    /// rho = a^2 sigma^2 / b.
    pub rho: f64,
    /// 1 - rho, computed without cancellation.
    pub one_minus_rho: f64,
}

impl IsoScale {
    /// `beta`: sigma^2 = b, rho = a^2, 1 - rho = b.
    #[must_use]
    pub fn beta(a2: f64, b: f64) -> Self {
        Self {
            rho: a2,
            one_minus_rho: b,
        }
    }

    /// `beta-tilde`: sigma^2 = b (1 - abar_s)/(1 - abar_t), rho = a^2 (1 - abar_s)/(1 - abar_t),
    /// 1 - rho = b / (1 - abar_t).
    #[must_use]
    pub fn beta_tilde(a2: f64, b: f64, one_minus_abar_s: f64, one_minus_abar_t: f64) -> Self {
        Self {
            rho: a2 * one_minus_abar_s / one_minus_abar_t,
            one_minus_rho: b / one_minus_abar_t,
        }
    }

    /// `analytic`: sigma^2 = E[tr C]/D, rho = 1 + b E[tr H]/D, 1 - rho = -b E[tr H]/D.
    #[must_use]
    pub fn analytic(b: f64, mean_trace_h: f64, dim: usize) -> Self {
        let omr = -b * mean_trace_h / dim as f64;
        Self {
            rho: 1.0 - omr,
            one_minus_rho: omr,
        }
    }

    /// An arbitrary variance sigma^2 (used for the clipped beta-tilde step): rho = a^2 sigma^2 / b.
    #[must_use]
    pub fn from_variance(sigma2: f64, a2: f64, b: f64) -> Self {
        let rho = a2 * sigma2 / b;
        Self {
            rho,
            one_minus_rho: 1.0 - rho,
        }
    }

    /// The variance sigma^2 = rho b / a^2.
    #[must_use]
    pub fn variance(&self, a2: f64, b: f64) -> f64 {
        self.rho * b / a2
    }
}

/// (1/2) ln det(C a^2 / b) = (1/2) sum_i ln(1 + b mu_i): the point term of the full
/// family's route-A sum (add -(D/2) ln a^2 for ln det(C/b)).
#[must_use]
pub fn half_ln_det_i_plus_bh(b: f64, mu: &[f64]) -> f64 {
    0.5 * mu.iter().map(|m| (b * m).ln_1p()).sum::<f64>()
}

/// KL(N(m, C) || N(m, sigma^2 I)) = (1/2) sum_i (u_i - ln(1 + u_i)), u_i = ((1 - rho) + b mu_i)/rho.
#[must_use]
pub fn iso_offset(scale: IsoScale, b: f64, mu: &[f64]) -> f64 {
    0.5 * mu
        .iter()
        .map(|m| u_minus_ln1p((scale.one_minus_rho + b * m) / scale.rho))
        .sum::<f64>()
}

/// KL(N(m, C) || N(m, diag C)) = -(1/2) ln det R, R the correlation matrix of I + b H.
///
/// # Formula
/// ```text
/// D = 2:   -(1/2) ln(1 - r^2),  r^2 = (b H_12)^2 / ((1 + b H_11)(1 + b H_22))
/// D > 2:   R = I + E (E zero on the diagonal), -(1/2) sum_i ln(1 + e_i), e_i eigenvalues of E
/// ```
/// `h` is column-major D x D.
#[must_use]
pub fn diag_offset(b: f64, h: &[f64], dim: usize) -> f64 {
    if dim == 1 {
        return 0.0;
    }
    if dim == 2 {
        // No buffer: this runs once per lattice node and step.
        let (d0, d1) = (1.0 + b * h[0], 1.0 + b * h[3]);
        let r2 = (b * h[2]) * (b * h[2]) / (d0 * d1);
        return -0.5 * (-r2).ln_1p();
    }
    let diag: Vec<f64> = (0..dim).map(|i| 1.0 + b * h[i * dim + i]).collect();
    let e = DMatrix::from_fn(dim, dim, |i, j| {
        if i == j {
            0.0
        } else {
            b * h[j * dim + i] / (diag[i] * diag[j]).sqrt()
        }
    });
    let eig = e.symmetric_eigenvalues();
    -0.5 * eig.iter().map(|v| v.ln_1p()).sum::<f64>()
}

/// Eigenvalues of the symmetric 2 x 2 matrix `[[a, c], [c, d]]`: the larger in magnitude first,
/// the other from the determinant (no cancellation).
#[must_use]
pub fn sym2_eigenvalues(a: f64, c: f64, d: f64) -> [f64; 2] {
    let half_tr = 0.5 * (a + d);
    let disc = (0.25 * (a - d) * (a - d) + c * c).sqrt();
    let l1 = if half_tr >= 0.0 {
        half_tr + disc
    } else {
        half_tr - disc
    };
    let det = a * d - c * c;
    let l2 = if l1 != 0.0 { det / l1 } else { 0.0 };
    [l1, l2]
}

/// Appends the eigenvalues of a symmetric column-major D x D matrix to `out` (closed form
/// for D = 1, 2, without allocating): [`sym_eigenvalues`] into a caller's buffer.
pub fn extend_sym_eigenvalues(h: &[f64], dim: usize, out: &mut Vec<f64>) {
    match dim {
        1 => out.push(h[0]),
        2 => out.extend_from_slice(&sym2_eigenvalues(h[0], h[1], h[3])),
        _ => out.extend(sym_eigenvalues(h, dim)),
    }
}

/// Eigenvalues of a symmetric column-major D x D matrix (closed form for D = 1, 2).
#[must_use]
pub fn sym_eigenvalues(h: &[f64], dim: usize) -> Vec<f64> {
    match dim {
        1 => vec![h[0]],
        2 => sym2_eigenvalues(h[0], h[1], h[3]).to_vec(),
        _ => DMatrix::from_column_slice(dim, dim, h)
            .symmetric_eigenvalues()
            .iter()
            .copied()
            .collect(),
    }
}

impl std::str::FromStr for Family {
    type Err = CovarianceError;

    /// As [`Family::from_name`].
    fn from_str(name: &str) -> Result<Self, CovarianceError> {
        Self::from_name(name)
    }
}

/// The `hutchinson-<M>` family names (path KL, samplers, learned chains): the parsed `M` when
/// `name` starts with `hutchinson-` (an error when the rest is not an unsigned integer),
/// `None` otherwise. Each caller words its own error, `M = 0` included.
#[must_use]
pub fn hutchinson_probes(name: &str) -> Option<Result<usize, std::num::ParseIntError>> {
    name.strip_prefix("hutchinson-").map(str::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hutchinson_names_give_their_probe_count() {
        // The one parser of `hutchinson-<M>` for path-kl, the samplers and learned chains.
        assert_eq!(hutchinson_probes("hutchinson-4"), Some(Ok(4)));
        assert_eq!(hutchinson_probes("hutchinson-0"), Some(Ok(0)));
        assert!(matches!(hutchinson_probes("hutchinson-x"), Some(Err(_))));
        assert!(matches!(hutchinson_probes("hutchinson--1"), Some(Err(_))));
        assert_eq!(hutchinson_probes("diag"), None);
    }

    #[test]
    fn every_family_parses_back_from_its_name() {
        // `str::parse` and `name` are inverse on every family (the one vocabulary of flags,
        // study files and JSON keys).
        for f in Family::ALL {
            assert_eq!(f.name().parse::<Family>(), Ok(f));
        }
        assert!("no-such-family".parse::<Family>().is_err());
    }
    use approx::assert_relative_eq;

    /// Independent dense formula: KL(N(0, A) || N(0, B)) = (tr(B^-1 A) - D + ln det B - ln det A)/2.
    fn gauss_kl(a: &DMatrix<f64>, bm: &DMatrix<f64>) -> f64 {
        let d = a.nrows() as f64;
        let binv = bm.clone().try_inverse().unwrap();
        0.5 * ((&binv * a).trace() - d + bm.determinant().ln() - a.determinant().ln())
    }

    #[test]
    fn offsets_match_dense_gaussian_kl() {
        // A moderately sized step so the dense formula is accurate (no small-number cancellation).
        let (a2, b) = (0.8, 0.2);
        for &dim in &[2usize, 3] {
            let h = DMatrix::from_fn(
                dim,
                dim,
                |i, j| if i == j { -1.5 + 0.3 * i as f64 } else { 0.4 },
            );
            let hv: Vec<f64> = h.iter().copied().collect();
            let c = (h.clone() * b + DMatrix::identity(dim, dim)) * (b / a2);
            let mu = sym_eigenvalues(&hv, dim);
            // beta
            let sig = DMatrix::identity(dim, dim) * b;
            // Two algebraic routes, well conditioned: 1e-12 relative.
            assert_relative_eq!(
                iso_offset(IsoScale::beta(a2, b), b, &mu),
                gauss_kl(&c, &sig),
                max_relative = 1e-12
            );
            // beta-tilde with abar_s = 0.9, abar_t = 0.72
            let s = IsoScale::beta_tilde(a2, b, 0.1, 0.28);
            let sig = DMatrix::identity(dim, dim) * (b * 0.1 / 0.28);
            assert_relative_eq!(
                iso_offset(s, b, &mu),
                gauss_kl(&c, &sig),
                max_relative = 1e-12
            );
            // diag
            let sig = DMatrix::from_diagonal(&c.diagonal());
            assert_relative_eq!(
                diag_offset(b, &hv, dim),
                gauss_kl(&c, &sig),
                max_relative = 1e-12
            );
            // full: ln det via eigenvalues equals ln det of the matrix
            assert_relative_eq!(
                half_ln_det_i_plus_bh(b, &mu),
                0.5 * (h * b + DMatrix::identity(dim, dim)).determinant().ln(),
                max_relative = 1e-12
            );
        }
    }

    #[test]
    fn family_names_round_trip_and_errors() {
        for f in Family::ALL {
            assert_eq!(Family::from_name(f.name()).unwrap(), f);
        }
        assert!(matches!(
            Family::from_name("fulll"),
            Err(CovarianceError::UnknownFamily(_))
        ));
        assert_eq!(
            Family::parse_list("full,beta,full").unwrap(),
            vec![Family::Full, Family::Beta]
        );
        assert!(Family::parse_list("").is_err());
    }
}
