//! Gaussian mixtures q = sum_k pi_k N(mu_k, Sigma_k): checked construction, the
//! forward marginals q_t, log density, score, Hessian, Hessian-vector products and
//! exact sampling.
//!
//! Every component keeps the eigendecomposition Sigma_k = U diag(sigma) U^T, so the
//! marginal covariance B_k = abar Sigma_k + (1 - abar) I and every reverse-kernel
//! quantity of [`crate::kernel::posterior`] are functions of the same eigenvectors.
//! Isotropic and diagonal components take O(D) fast paths.
//!
//! Responsibilities are computed in log space (log-sum-exp); the Hessian is formed in
//! the centred form H = sum_k r_k (g_k - g)(g_k - g)^T - sum_k r_k B_k^{-1}, which avoids
//! the cancellation of the textbook form sum_k r_k g_k g_k^T - g g^T.

use nalgebra::{DMatrix, DVector};
use rand::Rng;
use rand_distr::StandardNormal;
use thiserror::Error;

use crate::numeric::log_sum_exp;

/// Relative tolerance on sum of weights = 1 (a file written with 15-16 digits passes,
/// a typo does not).
pub const WEIGHT_SUM_TOL: f64 = 1e-9;
/// Relative tolerance of the symmetry check |S_ij - S_ji| <= tol * max |S|.
pub const SYMMETRY_TOL: f64 = 1e-10;

/// The largest `|mean entry| / smallest standard deviation` of a component: the points
/// `x = mu + sd z` where the lab evaluates q carry an absolute round-off `eps |mu|`, which is
/// `eps x ratio` of the component's width; at 1e7 that is 2e-9 of a standard deviation, and
/// beyond it f64 stops resolving the component at its own location (means at 1e25 with unit
/// variances otherwise gave one lattice node and a silent wrong path KL).
pub const MAX_MEAN_TO_SD: f64 = 1e7;

/// The largest magnitude of a mean entry or covariance eigenvalue: squares and products of
/// such numbers stay finite in f64 (1e308 entries otherwise overflowed mid-computation).
pub const MAX_MAGNITUDE: f64 = 1e100;

/// Errors of mixture construction and evaluation.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum MixtureError {
    /// The mixture has no components.
    #[error("mixture: `weights` is empty (need at least one component)")]
    Empty,
    /// A weight is negative, zero or not finite.
    #[error("mixture: `weights[{index}]` = {value} must be finite and > 0")]
    BadWeight {
        /// Component index.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// The weights do not sum to one.
    #[error("mixture: `weights` sum to {sum}, expected 1 (tolerance {WEIGHT_SUM_TOL:e})")]
    WeightSum {
        /// The actual sum.
        sum: f64,
    },
    /// Numbers of weights, means and covariances differ.
    #[error("mixture: {weights} weights, {means} means and {covariances} covariances: counts must agree")]
    CountMismatch {
        /// Number of weights.
        weights: usize,
        /// Number of means.
        means: usize,
        /// Number of covariances.
        covariances: usize,
    },
    /// A mean or covariance has the wrong dimension.
    #[error("mixture: `{field}[{index}]` has dimension {found}, expected {expected}")]
    DimensionMismatch {
        /// Which field (`means`, `covariances`, `x`).
        field: &'static str,
        /// Component index.
        index: usize,
        /// Dimension found.
        found: usize,
        /// Dimension expected.
        expected: usize,
    },
    /// The dimension is zero.
    #[error("mixture: dimension must be >= 1 (`means[0]` is empty)")]
    ZeroDimension,
    /// A mean entry or a covariance eigenvalue is too large for f64 products.
    #[error("mixture: `{field}[{index}]` has a magnitude {value:e} > {MAX_MAGNITUDE:e} (squares would overflow f64); rescale the data")]
    TooLarge {
        /// Which field.
        field: &'static str,
        /// Component index.
        index: usize,
        /// The offending magnitude.
        value: f64,
    },
    /// A mean is too far from the origin for f64 to resolve the component's width there.
    #[error("mixture: `means[{index}]` is {ratio:.3e} of its component's smallest standard deviation from the origin (> {MAX_MEAN_TO_SD:e}): f64 cannot resolve the component there; centre or rescale the data")]
    Unresolved {
        /// Component index.
        index: usize,
        /// `max |mean entry| / sqrt(smallest eigenvalue)`.
        ratio: f64,
    },
    /// A mean or covariance entry is NaN or infinite.
    #[error("mixture: `{field}[{index}]` contains a non-finite entry")]
    NonFinite {
        /// Which field.
        field: &'static str,
        /// Component index.
        index: usize,
    },
    /// A covariance is not symmetric.
    #[error("mixture: `covariances[{index}]` is not symmetric (entry ({row}, {col}) differs from its transpose by {diff:e})")]
    NotSymmetric {
        /// Component index.
        index: usize,
        /// Row of the worst entry.
        row: usize,
        /// Column of the worst entry.
        col: usize,
        /// The asymmetry.
        diff: f64,
    },
    /// A covariance is not positive definite.
    #[error("mixture: `covariances[{index}]` is not positive definite (smallest eigenvalue {min_eigenvalue:e})")]
    NotPositiveDefinite {
        /// Component index.
        index: usize,
        /// Its smallest eigenvalue.
        min_eigenvalue: f64,
    },
    /// abar outside (0, 1].
    #[error("mixture: abar = {0} must lie in (0, 1]")]
    BadAbar(f64),
    /// A score model behind the seam (a tensor model, a network) failed.
    #[error("score model: {0}")]
    Model(String),
}

/// The covariance of one component, with the structure used for fast paths.
#[derive(Clone, Debug, PartialEq)]
pub enum CovarianceKind {
    /// sigma^2 I.
    Isotropic(f64),
    /// diag(d).
    Diagonal(DVector<f64>),
    /// A dense SPD matrix.
    Dense(DMatrix<f64>),
}

/// One Gaussian component N(mean, cov) with its eigendecomposition cached.
#[derive(Clone, Debug)]
pub struct Component {
    mean: DVector<f64>,
    cov: CovarianceKind,
    /// Eigenvalues of the covariance (ascending for dense; entries for diagonal; one value repeated for isotropic).
    eigenvalues: DVector<f64>,
    /// Eigenvectors (columns); `None` means the identity (isotropic and diagonal).
    eigenvectors: Option<DMatrix<f64>>,
    /// Precision matrix for dense components.
    precision: Option<DMatrix<f64>>,
    ln_det: f64,
}

impl Component {
    /// Checked construction from a mean and a covariance structure.
    ///
    /// # Errors
    /// Non-finite entries, dimension mismatch, asymmetry or a non-positive eigenvalue,
    /// reported for component `index`.
    pub fn new(
        mean: DVector<f64>,
        cov: CovarianceKind,
        index: usize,
    ) -> Result<Self, MixtureError> {
        let d = mean.len();
        if d == 0 {
            return Err(MixtureError::ZeroDimension);
        }
        if mean.iter().any(|v| !v.is_finite()) {
            return Err(MixtureError::NonFinite {
                field: "means",
                index,
            });
        }
        let (eigenvalues, eigenvectors, precision) = match &cov {
            CovarianceKind::Isotropic(v) => {
                if !v.is_finite() {
                    return Err(MixtureError::NonFinite {
                        field: "covariances",
                        index,
                    });
                }
                (DVector::from_element(d, *v), None, None)
            }
            CovarianceKind::Diagonal(dg) => {
                if dg.len() != d {
                    return Err(MixtureError::DimensionMismatch {
                        field: "covariances",
                        index,
                        found: dg.len(),
                        expected: d,
                    });
                }
                if dg.iter().any(|v| !v.is_finite()) {
                    return Err(MixtureError::NonFinite {
                        field: "covariances",
                        index,
                    });
                }
                (dg.clone(), None, None)
            }
            CovarianceKind::Dense(m) => {
                if m.nrows() != d || m.ncols() != d {
                    return Err(MixtureError::DimensionMismatch {
                        field: "covariances",
                        index,
                        found: m.nrows().max(m.ncols()),
                        expected: d,
                    });
                }
                if m.iter().any(|v| !v.is_finite()) {
                    return Err(MixtureError::NonFinite {
                        field: "covariances",
                        index,
                    });
                }
                let scale = m.amax().max(f64::MIN_POSITIVE);
                let mut worst = (0, 0, 0.0f64);
                for i in 0..d {
                    for j in 0..i {
                        let diff = (m[(i, j)] - m[(j, i)]).abs();
                        if diff > worst.2 {
                            worst = (i, j, diff);
                        }
                    }
                }
                if worst.2 > SYMMETRY_TOL * scale {
                    return Err(MixtureError::NotSymmetric {
                        index,
                        row: worst.0,
                        col: worst.1,
                        diff: worst.2,
                    });
                }
                let sym = (m + m.transpose()) * 0.5;
                let eig = sym.clone().symmetric_eigen();
                let mut order: Vec<usize> = (0..d).collect();
                order.sort_by(|&a, &b| eig.eigenvalues[a].total_cmp(&eig.eigenvalues[b]));
                let vals = DVector::from_iterator(d, order.iter().map(|&i| eig.eigenvalues[i]));
                let vecs = DMatrix::from_fn(d, d, |r, c| eig.eigenvectors[(r, order[c])]);
                let min = vals[0];
                if min <= 0.0 {
                    return Err(MixtureError::NotPositiveDefinite {
                        index,
                        min_eigenvalue: min,
                    });
                }
                let inv_vals = vals.map(|v| 1.0 / v);
                let precision = &vecs * DMatrix::from_diagonal(&inv_vals) * vecs.transpose();
                let precision = (&precision + precision.transpose()) * 0.5;
                (vals, Some(vecs), Some(precision))
            }
        };
        let min = eigenvalues.iter().copied().fold(f64::INFINITY, f64::min);
        if min <= 0.0 {
            return Err(MixtureError::NotPositiveDefinite {
                index,
                min_eigenvalue: min,
            });
        }
        let max_ev = eigenvalues.iter().copied().fold(0.0, f64::max);
        if max_ev > MAX_MAGNITUDE {
            return Err(MixtureError::TooLarge {
                field: "covariances",
                index,
                value: max_ev,
            });
        }
        let max_mean = mean.amax();
        if max_mean > MAX_MAGNITUDE {
            return Err(MixtureError::TooLarge {
                field: "means",
                index,
                value: max_mean,
            });
        }
        let ratio = max_mean / min.sqrt();
        if ratio > MAX_MEAN_TO_SD {
            return Err(MixtureError::Unresolved { index, ratio });
        }
        let ln_det = eigenvalues.iter().map(|v| v.ln()).sum();
        Ok(Self {
            mean,
            cov,
            eigenvalues,
            eigenvectors,
            precision,
            ln_det,
        })
    }

    /// The mean.
    #[must_use]
    pub fn mean(&self) -> &DVector<f64> {
        &self.mean
    }

    /// The covariance structure.
    #[must_use]
    pub fn covariance_kind(&self) -> &CovarianceKind {
        &self.cov
    }

    /// The covariance as a dense matrix.
    #[must_use]
    pub fn covariance(&self) -> DMatrix<f64> {
        match &self.cov {
            CovarianceKind::Isotropic(v) => DMatrix::identity(self.dim(), self.dim()) * *v,
            CovarianceKind::Diagonal(d) => DMatrix::from_diagonal(d),
            CovarianceKind::Dense(m) => m.clone(),
        }
    }

    /// Eigenvalues of the covariance.
    #[must_use]
    pub fn eigenvalues(&self) -> &DVector<f64> {
        &self.eigenvalues
    }

    /// Eigenvectors of the covariance (columns), `None` for the identity basis.
    #[must_use]
    pub fn eigenvectors(&self) -> Option<&DMatrix<f64>> {
        self.eigenvectors.as_ref()
    }

    /// Dimension D.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// ln det Sigma.
    #[must_use]
    pub fn ln_det(&self) -> f64 {
        self.ln_det
    }

    /// Writes Sigma^{-1} r into `out`.
    pub fn precision_mul(&self, r: &[f64], out: &mut [f64]) {
        match &self.cov {
            CovarianceKind::Isotropic(v) => {
                for (o, x) in out.iter_mut().zip(r) {
                    *o = x / v;
                }
            }
            CovarianceKind::Diagonal(d) => {
                for ((o, x), v) in out.iter_mut().zip(r).zip(d.iter()) {
                    *o = x / v;
                }
            }
            CovarianceKind::Dense(_) => {
                let p = self
                    .precision
                    .as_ref()
                    .expect("dense components cache their precision");
                let d = r.len();
                for i in 0..d {
                    let mut s = 0.0;
                    for j in 0..d {
                        s += p[(i, j)] * r[j];
                    }
                    out[i] = s;
                }
            }
        }
    }

    /// Entry (i, j) of the precision matrix Sigma^{-1}.
    #[must_use]
    pub fn precision_entry(&self, i: usize, j: usize) -> f64 {
        match &self.cov {
            CovarianceKind::Isotropic(v) => {
                if i == j {
                    1.0 / v
                } else {
                    0.0
                }
            }
            CovarianceKind::Diagonal(d) => {
                if i == j {
                    1.0 / d[i]
                } else {
                    0.0
                }
            }
            CovarianceKind::Dense(_) => self.precision.as_ref().expect("cached")[(i, j)],
        }
    }

    /// The same component under the forward map x -> sqrt(abar) x + sqrt(1 - abar) eps:
    /// N(sqrt(abar) mu, abar Sigma + (1 - abar) I). `one_minus_abar` is passed separately for precision.
    #[must_use]
    pub fn forward(&self, abar: f64, one_minus_abar: f64) -> Component {
        let mean = &self.mean * abar.sqrt();
        let eigenvalues = self.eigenvalues.map(|v| abar * v + one_minus_abar);
        let ln_det = eigenvalues.iter().map(|v| v.ln()).sum();
        let (cov, precision) = match &self.cov {
            CovarianceKind::Isotropic(v) => {
                (CovarianceKind::Isotropic(abar * v + one_minus_abar), None)
            }
            CovarianceKind::Diagonal(d) => (
                CovarianceKind::Diagonal(d.map(|v| abar * v + one_minus_abar)),
                None,
            ),
            CovarianceKind::Dense(_) => {
                let u = self
                    .eigenvectors
                    .as_ref()
                    .expect("dense components cache eigenvectors");
                let c = u * DMatrix::from_diagonal(&eigenvalues) * u.transpose();
                let p = u * DMatrix::from_diagonal(&eigenvalues.map(|v| 1.0 / v)) * u.transpose();
                (
                    CovarianceKind::Dense((&c + c.transpose()) * 0.5),
                    Some((&p + p.transpose()) * 0.5),
                )
            }
        };
        Component {
            mean,
            cov,
            eigenvalues,
            eigenvectors: self.eigenvectors.clone(),
            precision,
            ln_det,
        }
    }

    /// ln N(x; mu, Sigma) = -(D ln 2 pi + ln det Sigma + r^T Sigma^{-1} r) / 2, r = x - mu.
    /// `scratch` must have length 2 D.
    #[must_use]
    pub fn ln_pdf_with(&self, x: &[f64], scratch: &mut [f64]) -> f64 {
        let d = self.dim();
        let (r, pr) = scratch.split_at_mut(d);
        for i in 0..d {
            r[i] = x[i] - self.mean[i];
        }
        self.precision_mul(r, &mut pr[..d]);
        let quad: f64 = r.iter().zip(pr.iter()).map(|(a, b)| a * b).sum();
        -0.5 * (d as f64 * (2.0 * std::f64::consts::PI).ln() + self.ln_det + quad)
    }

    /// Applies Sigma^{1/2} (symmetric root) to z, in place into `out`.
    pub fn sqrt_cov_mul(&self, z: &[f64], out: &mut [f64]) {
        let d = self.dim();
        match &self.eigenvectors {
            None => {
                for i in 0..d {
                    out[i] = self.eigenvalues[i].sqrt() * z[i];
                }
            }
            Some(u) => {
                // U diag(sqrt(l)) U^T z
                let mut tmp = vec![0.0; d];
                for c in 0..d {
                    let mut s = 0.0;
                    for r in 0..d {
                        s += u[(r, c)] * z[r];
                    }
                    tmp[c] = s * self.eigenvalues[c].sqrt();
                }
                for r in 0..d {
                    let mut s = 0.0;
                    for c in 0..d {
                        s += u[(r, c)] * tmp[c];
                    }
                    out[r] = s;
                }
            }
        }
    }
}

/// A Gaussian mixture sum_k pi_k N(mu_k, Sigma_k).
#[derive(Clone, Debug)]
pub struct Mixture {
    weights: Vec<f64>,
    ln_weights: Vec<f64>,
    components: Vec<Component>,
    /// Isotropic fast path: per component (ln pi_k - (1/2)(D ln 2 pi + ln det), 1/sigma_k^2,
    /// mean), present when every component is isotropic.
    iso: Option<IsoCache>,
}

/// Flat per-component data of an all-isotropic mixture.
#[derive(Clone, Debug)]
struct IsoCache {
    ln_norm: Vec<f64>,
    inv_var: Vec<f64>,
    means: Vec<f64>,
}

impl IsoCache {
    fn build(ln_weights: &[f64], components: &[Component]) -> Option<Self> {
        let d = components.first()?.dim();
        let mut out = IsoCache {
            ln_norm: Vec::new(),
            inv_var: Vec::new(),
            means: Vec::new(),
        };
        for (lw, c) in ln_weights.iter().zip(components) {
            let CovarianceKind::Isotropic(v) = c.covariance_kind() else {
                return None;
            };
            out.ln_norm
                .push(lw - 0.5 * (d as f64 * (2.0 * std::f64::consts::PI).ln() + c.ln_det()));
            out.inv_var.push(1.0 / v);
            out.means.extend(c.mean().iter());
        }
        Some(out)
    }
}

/// Local geometry of ln q at a point: log density, score and Hessian.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalGeometry {
    /// ln q(x).
    pub ln_q: f64,
    /// Responsibilities r_k(x).
    pub resp: Vec<f64>,
    /// Score grad ln q(x).
    pub score: DVector<f64>,
    /// Hessian of ln q at x.
    pub hessian: DMatrix<f64>,
}

impl Mixture {
    /// Checked construction.
    ///
    /// # Errors
    /// Empty mixture, bad weights (non-finite, <= 0, not summing to 1 within
    /// [`WEIGHT_SUM_TOL`]) or dimension mismatches between components.
    pub fn new(weights: Vec<f64>, components: Vec<Component>) -> Result<Self, MixtureError> {
        if weights.is_empty() {
            return Err(MixtureError::Empty);
        }
        if weights.len() != components.len() {
            return Err(MixtureError::CountMismatch {
                weights: weights.len(),
                means: components.len(),
                covariances: components.len(),
            });
        }
        for (index, &w) in weights.iter().enumerate() {
            if !w.is_finite() || w <= 0.0 {
                return Err(MixtureError::BadWeight { index, value: w });
            }
        }
        let sum: f64 = weights.iter().sum();
        if (sum - 1.0).abs() > WEIGHT_SUM_TOL {
            return Err(MixtureError::WeightSum { sum });
        }
        let d = components[0].dim();
        for (index, c) in components.iter().enumerate() {
            if c.dim() != d {
                return Err(MixtureError::DimensionMismatch {
                    field: "means",
                    index,
                    found: c.dim(),
                    expected: d,
                });
            }
        }
        // Renormalise the tiny residual so that sum pi = 1 to round-off.
        let weights: Vec<f64> = weights.iter().map(|w| w / sum).collect();
        let ln_weights: Vec<f64> = weights.iter().map(|w| w.ln()).collect();
        let iso = IsoCache::build(&ln_weights, &components);
        Ok(Self {
            weights,
            ln_weights,
            components,
            iso,
        })
    }

    /// Dense construction from weights, means and covariance matrices; a covariance that is
    /// exactly a multiple of the identity (or exactly diagonal) takes the fast path.
    ///
    /// # Errors
    /// As [`Mixture::new`] and [`Component::new`].
    pub fn from_dense(
        weights: Vec<f64>,
        means: Vec<DVector<f64>>,
        covs: Vec<DMatrix<f64>>,
    ) -> Result<Self, MixtureError> {
        if weights.len() != means.len() || weights.len() != covs.len() {
            return Err(MixtureError::CountMismatch {
                weights: weights.len(),
                means: means.len(),
                covariances: covs.len(),
            });
        }
        if weights.is_empty() {
            return Err(MixtureError::Empty);
        }
        let d = means[0].len();
        if d == 0 {
            return Err(MixtureError::ZeroDimension);
        }
        let mut comps = Vec::with_capacity(means.len());
        for (index, (m, c)) in means.into_iter().zip(covs).enumerate() {
            if m.len() != d {
                return Err(MixtureError::DimensionMismatch {
                    field: "means",
                    index,
                    found: m.len(),
                    expected: d,
                });
            }
            if c.nrows() != d || c.ncols() != d {
                return Err(MixtureError::DimensionMismatch {
                    field: "covariances",
                    index,
                    found: c.nrows().max(c.ncols()),
                    expected: d,
                });
            }
            comps.push(Component::new(m, classify(c), index)?);
        }
        Self::new(weights, comps)
    }

    /// Dimension D.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.components[0].dim()
    }

    /// Number of components K.
    #[must_use]
    pub fn len(&self) -> usize {
        self.components.len()
    }

    /// Always false (a mixture has at least one component).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.components.is_empty()
    }

    /// Weights pi_k.
    #[must_use]
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// ln pi_k.
    #[must_use]
    pub fn ln_weights(&self) -> &[f64] {
        &self.ln_weights
    }

    /// The components.
    #[must_use]
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The marginal q_t of the forward process at ln abar_t:
    /// sum_k pi_k N(sqrt(abar) mu_k, abar Sigma_k + (1 - abar) I).
    ///
    /// # Errors
    /// [`MixtureError::BadAbar`] unless ln_abar <= 0 and finite.
    pub fn marginal(&self, ln_abar: f64) -> Result<Mixture, MixtureError> {
        if !(ln_abar.is_finite() && ln_abar <= 0.0) {
            return Err(MixtureError::BadAbar(ln_abar.exp()));
        }
        let abar = ln_abar.exp();
        let oma = -ln_abar.exp_m1();
        let components: Vec<Component> = self
            .components
            .iter()
            .map(|c| c.forward(abar, oma))
            .collect();
        let iso = IsoCache::build(&self.ln_weights, &components);
        Ok(Mixture {
            weights: self.weights.clone(),
            ln_weights: self.ln_weights.clone(),
            components,
            iso,
        })
    }

    pub(crate) fn check_x(&self, x: &[f64]) -> Result<(), MixtureError> {
        check_point(self.dim(), x)
    }

    /// ln pi_k + ln N(x; mu_k, Sigma_k) for every k, into `out` (no checks).
    pub fn component_ln_terms_unchecked(&self, x: &[f64], out: &mut [f64], scratch: &mut [f64]) {
        for (k, c) in self.components.iter().enumerate() {
            out[k] = self.ln_weights[k] + c.ln_pdf_with(x, scratch);
        }
    }

    /// ln q(x) = ln sum_k pi_k N(x; mu_k, Sigma_k).
    ///
    /// # Errors
    /// Dimension mismatch or non-finite x.
    pub fn ln_pdf(&self, x: &[f64]) -> Result<f64, MixtureError> {
        self.check_x(x)?;
        let mut terms = vec![0.0; self.len()];
        let mut scratch = vec![0.0; 2 * self.dim()];
        self.component_ln_terms_unchecked(x, &mut terms, &mut scratch);
        Ok(log_sum_exp(&terms))
    }

    /// Responsibilities r_k(x) = pi_k N(x; mu_k, Sigma_k) / q(x).
    ///
    /// # Errors
    /// Dimension mismatch or non-finite x.
    pub fn responsibilities(&self, x: &[f64]) -> Result<Vec<f64>, MixtureError> {
        Ok(self.geometry(x)?.resp)
    }

    /// Log density, responsibilities, score and Hessian at x.
    ///
    /// # Formula
    /// ```text
    /// g_k = -Sigma_k^{-1} (x - mu_k),  g = sum_k r_k g_k
    /// H   = sum_k r_k (g_k - g)(g_k - g)^T - sum_k r_k Sigma_k^{-1}
    /// ```
    ///
    /// # Errors
    /// Dimension mismatch or non-finite x.
    pub fn geometry(&self, x: &[f64]) -> Result<LocalGeometry, MixtureError> {
        self.check_x(x)?;
        let mut ws = Workspace::new(self.dim(), self.len());
        let ln_q = self.geometry_unchecked(x, &mut ws);
        let d = self.dim();
        Ok(LocalGeometry {
            ln_q,
            resp: ws.resp.clone(),
            score: DVector::from_column_slice(&ws.score),
            hessian: DMatrix::from_column_slice(d, d, &ws.hessian),
        })
    }

    /// Geometry kernel without checks or allocation: fills `ws.resp`, `ws.score`,
    /// `ws.hessian` (column-major D x D) and returns ln q(x). Components whose
    /// responsibility is below e^-60 relative to the largest are skipped (their
    /// contribution is below 1e-26 relative).
    pub fn geometry_unchecked(&self, x: &[f64], ws: &mut Workspace) -> f64 {
        self.geometry_above_unchecked(x, ws, f64::NEG_INFINITY)
            .unwrap_or(f64::NEG_INFINITY)
    }

    /// Upper bound-free peak level: max_k (ln pi_k - (1/2) ln det(2 pi Sigma_k)) <= ln max_x q(x).
    /// Used to skip nodes whose density is negligible relative to the mode.
    #[must_use]
    pub fn ln_peak_lower_bound(&self) -> f64 {
        let d = self.dim() as f64;
        self.components
            .iter()
            .zip(&self.ln_weights)
            .map(|(c, lw)| lw - 0.5 * (d * (2.0 * std::f64::consts::PI).ln() + c.ln_det()))
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// As [`Mixture::geometry_unchecked`], but returns `None` (after computing only the
    /// component log terms) when ln q(x) < `threshold`.
    pub fn geometry_above_unchecked(
        &self,
        x: &[f64],
        ws: &mut Workspace,
        threshold: f64,
    ) -> Option<f64> {
        if let Some(iso) = &self.iso {
            return Self::geometry_iso(iso, x, ws, threshold);
        }
        let d = self.dim();
        let k = self.len();
        self.component_ln_terms_unchecked(x, &mut ws.terms, &mut ws.scratch);
        let ln_q = ws.responsibilities_from_terms(threshold)?;
        ws.score.iter_mut().for_each(|v| *v = 0.0);
        ws.hessian.iter_mut().for_each(|v| *v = 0.0);
        // g_k for active components, stored in ws.gk (k x d)
        for j in 0..k {
            if ws.resp[j] == 0.0 {
                continue;
            }
            let c = &self.components[j];
            for i in 0..d {
                ws.scratch[i] = c.mean[i] - x[i];
            }
            let (r, out) = ws.scratch.split_at_mut(d);
            c.precision_mul(r, &mut out[..d]);
            for i in 0..d {
                ws.gk[j * d + i] = out[i];
                ws.score[i] += ws.resp[j] * out[i];
            }
        }
        for j in 0..k {
            let r = ws.resp[j];
            if r == 0.0 {
                continue;
            }
            let c = &self.components[j];
            for col in 0..d {
                let dc = ws.gk[j * d + col] - ws.score[col];
                for row in col..d {
                    let dr = ws.gk[j * d + row] - ws.score[row];
                    ws.hessian[col * d + row] += r * (dr * dc - c.precision_entry(row, col));
                }
            }
        }
        for col in 0..d {
            for row in 0..col {
                ws.hessian[col * d + row] = ws.hessian[row * d + col];
            }
        }
        Some(ln_q)
    }

    /// The isotropic fast path of [`Mixture::geometry_above_unchecked`]: the same formulas
    /// with Sigma_k^{-1} = I / sigma_k^2, on flat arrays.
    fn geometry_iso(iso: &IsoCache, x: &[f64], ws: &mut Workspace, threshold: f64) -> Option<f64> {
        let d = x.len();
        let k = iso.inv_var.len();
        for j in 0..k {
            let mu = &iso.means[j * d..(j + 1) * d];
            let mut r2 = 0.0;
            for i in 0..d {
                let dx = x[i] - mu[i];
                r2 += dx * dx;
            }
            let t = iso.ln_norm[j] - 0.5 * r2 * iso.inv_var[j];
            ws.terms[j] = t;
        }
        let ln_q = ws.responsibilities_from_terms(threshold)?;
        ws.score.iter_mut().for_each(|v| *v = 0.0);
        ws.hessian.iter_mut().for_each(|v| *v = 0.0);
        let mut mean_prec = 0.0;
        for j in 0..k {
            let r = ws.resp[j];
            if r == 0.0 {
                continue;
            }
            let mu = &iso.means[j * d..(j + 1) * d];
            for i in 0..d {
                let g = (mu[i] - x[i]) * iso.inv_var[j];
                ws.gk[j * d + i] = g;
                ws.score[i] += r * g;
            }
            mean_prec += r * iso.inv_var[j];
        }
        for j in 0..k {
            let r = ws.resp[j];
            if r == 0.0 {
                continue;
            }
            for col in 0..d {
                let dc = ws.gk[j * d + col] - ws.score[col];
                for row in col..d {
                    ws.hessian[col * d + row] += r * (ws.gk[j * d + row] - ws.score[row]) * dc;
                }
            }
        }
        for col in 0..d {
            ws.hessian[col * d + col] -= mean_prec;
            for row in 0..col {
                ws.hessian[col * d + row] = ws.hessian[row * d + col];
            }
        }
        Some(ln_q)
    }

    /// Score grad ln q(x).
    ///
    /// # Errors
    /// Dimension mismatch or non-finite x.
    pub fn score(&self, x: &[f64]) -> Result<DVector<f64>, MixtureError> {
        Ok(self.geometry(x)?.score)
    }

    /// Hessian of ln q at x.
    ///
    /// # Errors
    /// Dimension mismatch or non-finite x.
    pub fn hessian(&self, x: &[f64]) -> Result<DMatrix<f64>, MixtureError> {
        Ok(self.geometry(x)?.hessian)
    }

    /// Hessian-vector product without forming H, O(K D) for isotropic/diagonal components:
    ///
    /// # Formula
    /// ```text
    /// H v = sum_k r_k (g_k (g_k . v) - Sigma_k^{-1} v) - g (g . v)
    /// ```
    /// (evaluated in the centred form sum_k r_k (g_k - g)((g_k - g) . v) - sum_k r_k Sigma_k^{-1} v).
    ///
    /// # Errors
    /// Dimension mismatch or non-finite x or v.
    pub fn hvp(&self, x: &[f64], v: &[f64]) -> Result<DVector<f64>, MixtureError> {
        self.check_x(x)?;
        if v.len() != self.dim() {
            return Err(MixtureError::DimensionMismatch {
                field: "v",
                index: 0,
                found: v.len(),
                expected: self.dim(),
            });
        }
        if v.iter().any(|a| !a.is_finite()) {
            return Err(MixtureError::NonFinite {
                field: "v",
                index: 0,
            });
        }
        let d = self.dim();
        let mut terms = vec![0.0; self.len()];
        let mut scratch = vec![0.0; 2 * d];
        self.component_ln_terms_unchecked(x, &mut terms, &mut scratch);
        let lse = log_sum_exp(&terms);
        let resp: Vec<f64> = terms.iter().map(|t| (t - lse).exp()).collect();
        let mut gks = Vec::with_capacity(self.len());
        let mut g = vec![0.0; d];
        for (c, r) in self.components.iter().zip(&resp) {
            let diff: Vec<f64> = (0..d).map(|i| c.mean[i] - x[i]).collect();
            let mut gk = vec![0.0; d];
            c.precision_mul(&diff, &mut gk);
            for i in 0..d {
                g[i] += r * gk[i];
            }
            gks.push(gk);
        }
        let mut out = DVector::zeros(d);
        let mut pv = vec![0.0; d];
        for ((c, r), gk) in self.components.iter().zip(&resp).zip(&gks) {
            let dot: f64 = (0..d).map(|i| (gk[i] - g[i]) * v[i]).sum();
            c.precision_mul(v, &mut pv);
            for i in 0..d {
                out[i] += r * ((gk[i] - g[i]) * dot - pv[i]);
            }
        }
        Ok(out)
    }

    /// Draws `n` exact samples: pick k with probability pi_k, then mu_k + Sigma_k^{1/2} z.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, n: usize) -> Vec<DVector<f64>> {
        let d = self.dim();
        let mut cdf = Vec::with_capacity(self.len());
        let mut acc = 0.0;
        for w in &self.weights {
            acc += w;
            cdf.push(acc);
        }
        let mut z = vec![0.0; d];
        let mut y = vec![0.0; d];
        (0..n)
            .map(|_| {
                let u: f64 = rng.gen::<f64>() * acc;
                let k = cdf.iter().position(|&c| u < c).unwrap_or(self.len() - 1);
                for zi in z.iter_mut() {
                    *zi = rng.sample(StandardNormal);
                }
                let c = &self.components[k];
                c.sqrt_cov_mul(&z, &mut y);
                DVector::from_iterator(d, (0..d).map(|i| c.mean[i] + y[i]))
            })
            .collect()
    }

    /// Mean of the mixture, sum_k pi_k mu_k.
    #[must_use]
    pub fn mean(&self) -> DVector<f64> {
        let mut m = DVector::zeros(self.dim());
        for (w, c) in self.weights.iter().zip(&self.components) {
            m += c.mean() * *w;
        }
        m
    }

    /// E|x|^2 = sum_k pi_k (|mu_k|^2 + tr Sigma_k).
    #[must_use]
    pub fn second_moment_trace(&self) -> f64 {
        self.weights
            .iter()
            .zip(&self.components)
            .map(|(w, c)| w * (c.mean.norm_squared() + c.eigenvalues.sum()))
            .sum()
    }

    /// Smallest and largest eigenvalue over all component covariances.
    #[must_use]
    pub fn eigenvalue_range(&self) -> (f64, f64) {
        let mut lo = f64::INFINITY;
        let mut hi = 0.0f64;
        for c in &self.components {
            for &v in c.eigenvalues.iter() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        (lo, hi)
    }
}

/// Checks a point `x` of dimension `dim`: `DimensionMismatch` or `NonFinite`, field `x`.
pub(crate) fn check_point(dim: usize, x: &[f64]) -> Result<(), MixtureError> {
    if x.len() != dim {
        return Err(MixtureError::DimensionMismatch {
            field: "x",
            index: 0,
            found: x.len(),
            expected: dim,
        });
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(MixtureError::NonFinite {
            field: "x",
            index: 0,
        });
    }
    Ok(())
}

/// Scratch buffers for [`Mixture::geometry_unchecked`], one per thread.
#[derive(Clone, Debug)]
pub struct Workspace {
    terms: Vec<f64>,
    scratch: Vec<f64>,
    gk: Vec<f64>,
    /// Responsibilities r_k (after a call).
    pub resp: Vec<f64>,
    /// Score (after a call).
    pub score: Vec<f64>,
    /// Hessian, column-major D x D (after a call).
    pub hessian: Vec<f64>,
}

impl Workspace {
    /// From `terms` (ln pi_k + ln N_k(x)), fills the responsibilities r_k = softmax(terms)
    /// (terms more than 60 below the largest count as 0) and returns ln q(x) by
    /// log-sum-exp; `None` when ln q(x) < `threshold`.
    fn responsibilities_from_terms(&mut self, threshold: f64) -> Option<f64> {
        let k = self.terms.len();
        let m = self.terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if m + (k as f64).ln() < threshold {
            return None;
        }
        let mut total = 0.0;
        for (r, t) in self.resp.iter_mut().zip(&self.terms) {
            *r = if t - m > -60.0 { (t - m).exp() } else { 0.0 };
            total += *r;
        }
        let ln_q = m + total.ln();
        if ln_q < threshold {
            return None;
        }
        self.resp.iter_mut().for_each(|r| *r /= total);
        Some(ln_q)
    }

    /// Buffers for dimension `d` and `k` components.
    #[must_use]
    pub fn new(d: usize, k: usize) -> Self {
        Self {
            terms: vec![0.0; k],
            scratch: vec![0.0; 2 * d],
            gk: vec![0.0; k * d],
            resp: vec![0.0; k],
            score: vec![0.0; d],
            hessian: vec![0.0; d * d],
        }
    }
}

/// Picks the fast-path structure of a dense covariance: isotropic if it is exactly
/// c I, diagonal if exactly diagonal, dense otherwise.
#[must_use]
pub fn classify(c: DMatrix<f64>) -> CovarianceKind {
    let d = c.nrows();
    if d != c.ncols() || d == 0 {
        return CovarianceKind::Dense(c);
    }
    let off_zero = (0..d).all(|i| (0..d).all(|j| i == j || c[(i, j)] == 0.0));
    if !off_zero {
        return CovarianceKind::Dense(c);
    }
    let first = c[(0, 0)];
    if (0..d).all(|i| c[(i, i)].to_bits() == first.to_bits()) {
        CovarianceKind::Isotropic(first)
    } else {
        CovarianceKind::Diagonal(c.diagonal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A random dense mixture in dimension d with K components (seeded).
    fn random_dense(d: usize, k: usize, seed: u64) -> Mixture {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut means = Vec::new();
        let mut covs = Vec::new();
        for _ in 0..k {
            means.push(DVector::from_fn(d, |_, _| rng.gen_range(-2.0..2.0)));
            let a = DMatrix::from_fn(d, d, |_, _| rng.gen_range(-1.0..1.0));
            covs.push(&a * a.transpose() + DMatrix::identity(d, d) * 0.3);
        }
        let mut w: Vec<f64> = (0..k).map(|_| rng.gen_range(0.5..1.5)).collect();
        let s: f64 = w.iter().sum();
        w.iter_mut().for_each(|v| *v /= s);
        Mixture::from_dense(w, means, covs).expect("valid random mixture")
    }

    #[test]
    fn score_hessian_hvp_match_finite_differences() {
        for &d in &[2usize, 5] {
            let mix = random_dense(d, 3, 7 + d as u64);
            let x: Vec<f64> = (0..d).map(|i| 0.3 * i as f64 - 0.4).collect();
            let geo = mix.geometry(&x).unwrap();
            // Central differences with h = 1e-5: truncation O(h^2 f''') ~ 1e-10, round-off
            // O(eps |f| / h) ~ 1e-11; so 1e-7 relative (scaled by the largest entry) is safe.
            let h = 1e-5;
            for i in 0..d {
                let mut xp = x.clone();
                let mut xm = x.clone();
                xp[i] += h;
                xm[i] -= h;
                let fd = (mix.ln_pdf(&xp).unwrap() - mix.ln_pdf(&xm).unwrap()) / (2.0 * h);
                assert_relative_eq!(geo.score[i], fd, epsilon = 1e-7 * geo.score.amax().max(1.0));
                let gp = mix.score(&xp).unwrap();
                let gm = mix.score(&xm).unwrap();
                for j in 0..d {
                    let fdh = (gp[j] - gm[j]) / (2.0 * h);
                    assert_relative_eq!(
                        geo.hessian[(j, i)],
                        fdh,
                        epsilon = 1e-7 * geo.hessian.amax().max(1.0)
                    );
                }
            }
            let v: Vec<f64> = (0..d).map(|i| 1.0 - 0.2 * i as f64).collect();
            let hv = mix.hvp(&x, &v).unwrap();
            let hv2 = &geo.hessian * DVector::from_column_slice(&v);
            // Two algebraic routes to the same product: round-off only (1e-12 relative).
            for i in 0..d {
                assert_relative_eq!(hv[i], hv2[i], epsilon = 1e-12 * hv2.amax().max(1.0));
            }
        }
    }

    #[test]
    fn isotropic_fast_path_equals_generic_path() {
        // The same mixture once with isotropic components (fast path) and once with the
        // covariances stored as dense matrices (generic path): identical formulas, so
        // agreement to round-off (1e-12 relative to the largest entry).
        let q = crate::data::presets::mog40(1.0).marginal(-0.3).unwrap();
        let dense: Vec<Component> = q
            .components()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Component::new(c.mean().clone(), CovarianceKind::Dense(c.covariance()), i).unwrap()
            })
            .collect();
        let g = Mixture::new(q.weights().to_vec(), dense).unwrap();
        assert!(q.iso.is_some() && g.iso.is_none());
        for x in [[0.0, 0.0], [13.0, -27.0], [-60.0, 45.0]] {
            let a = q.geometry(&x).unwrap();
            let b = g.geometry(&x).unwrap();
            assert_relative_eq!(a.ln_q, b.ln_q, max_relative = 1e-12);
            assert!((&a.score - &b.score).amax() <= 1e-12 * b.score.amax().max(1e-300));
            assert!((&a.hessian - &b.hessian).amax() <= 1e-12 * b.hessian.amax());
        }
    }

    #[test]
    fn marginal_is_the_forward_convolution() {
        let mix = random_dense(3, 2, 3);
        let ln_abar = (0.3f64).ln();
        let m = mix.marginal(ln_abar).unwrap();
        for (c0, ct) in mix.components().iter().zip(m.components()) {
            let expect = c0.covariance() * 0.3 + DMatrix::identity(3, 3) * 0.7;
            // eigen-reconstruction: round-off only.
            assert!((ct.covariance() - expect).amax() < 1e-13);
            assert!((ct.mean() - c0.mean() * 0.3f64.sqrt()).amax() < 1e-15);
        }
    }

    #[test]
    fn sampling_moments_match() {
        let mix = random_dense(2, 3, 11);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let n = 200_000;
        let xs = mix.sample(&mut rng, n);
        let mean: DVector<f64> = xs.iter().fold(DVector::zeros(2), |a, x| a + x) / n as f64;
        let sm: f64 = xs.iter().map(|x| x.norm_squared()).sum::<f64>() / n as f64;
        // Monte Carlo: std error of the mean ~ sqrt(var / n) ~ 3e-3; allow 5 sigma ~ 0.02.
        assert!((mean - mix.mean()).amax() < 0.02);
        assert_relative_eq!(sm, mix.second_moment_trace(), max_relative = 0.02);
    }

    #[test]
    fn bad_input_is_rejected_with_the_field_named() {
        let m = DVector::from_vec(vec![0.0, 0.0]);
        let c = DMatrix::identity(2, 2);
        let e = Mixture::from_dense(
            vec![0.5, 0.6],
            vec![m.clone(), m.clone()],
            vec![c.clone(), c.clone()],
        )
        .unwrap_err();
        assert!(matches!(e, MixtureError::WeightSum { .. }));
        assert!(e.to_string().contains("weights"));
        let asym = DMatrix::from_row_slice(2, 2, &[1.0, 0.5, 0.4, 1.0]);
        let e = Mixture::from_dense(vec![1.0], vec![m.clone()], vec![asym]).unwrap_err();
        assert!(matches!(e, MixtureError::NotSymmetric { .. }));
        let indef = DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 2.0, 1.0]);
        let e = Mixture::from_dense(vec![1.0], vec![m.clone()], vec![indef]).unwrap_err();
        assert!(matches!(e, MixtureError::NotPositiveDefinite { .. }));
        assert!(e.to_string().contains("covariances[0]"));
        let e = Mixture::from_dense(
            vec![1.0],
            vec![DVector::from_vec(vec![0.0; 3])],
            vec![c.clone()],
        )
        .unwrap_err();
        assert!(matches!(e, MixtureError::DimensionMismatch { .. }));
        let e = Mixture::from_dense(vec![f64::NAN], vec![m.clone()], vec![c.clone()]).unwrap_err();
        assert!(matches!(e, MixtureError::BadWeight { .. }));
        let mix = Mixture::from_dense(vec![1.0], vec![m], vec![c]).unwrap();
        assert!(mix.ln_pdf(&[f64::NAN, 0.0]).is_err());
        fn send_sync<T: Send + Sync>() {}
        send_sync::<MixtureError>();
    }
}
