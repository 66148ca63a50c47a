//! One Gaussian component `N(mu, Sigma)` ([`Component`]): checked construction with the
//! eigendecomposition `Sigma = U diag(sigma) U^T` cached, the covariance structure of its fast
//! paths ([`CovarianceKind`], [`classify`]), its forward map, log density, precision and
//! square-root products; and the tolerances and magnitude limits a component must meet.

use nalgebra::{DMatrix, DVector};

use super::MixtureError;

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
    pub(super) mean: DVector<f64>,
    cov: CovarianceKind,
    /// Eigenvalues of the covariance (ascending for dense; entries for diagonal; one value repeated for isotropic).
    pub(super) eigenvalues: DVector<f64>,
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
