//! Gaussian mixtures with low-rank-plus-diagonal components, for image-sized D.
//!
//! Component `k`: `N(mu_k, Sigma_k)`, `Sigma_k = U_k U_k^T + diag(d_k)`, `U_k` of size
//! `D x r_k`, `d_k > 0`. Everything costs `O(D r)` per component and point, by the Woodbury
//! identity and the matrix determinant lemma with the capacitance `M = I_r + U^T D^{-1} U`:
//!
//! ```text
//! Sigma^{-1} v = D^{-1} v - D^{-1} U M^{-1} U^T D^{-1} v,
//! ln det Sigma = sum_i ln d_i + ln det M.
//! ```
//!
//! The forward marginal stays in the class: `Sigma_t = (sqrt(abar) U)(sqrt(abar) U)^T +
//! diag(abar d + 1 - abar)`, mean `sqrt(abar) mu`. Score and Hessian-vector products of the
//! mixture, with responsibilities `r_k` and `g_k = -Sigma_k^{-1}(x - mu_k)`:
//!
//! ```text
//! g = sum_k r_k g_k,    H v = sum_k r_k (-Sigma_k^{-1} v + g_k (g_k . v)) - g (g . v),
//! ```
//!
//! in `O(K D r)`. [`crate::score::LowRankScore`] implements the [`crate::score::ScoreModel`] seam with them.

use nalgebra::{Cholesky, DMatrix, DVector, Dyn};
use rand::Rng;
use rand_distr::StandardNormal;
use thiserror::Error;

use crate::data::mixture::MixtureError;

/// Errors of low-rank mixtures, naming the field and component.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum LowRankError {
    /// Shapes disagree.
    #[error("low-rank mixture: `{field}[{index}]` has {found} rows, expected {expected}")]
    Shape {
        /// The field (`means`, `factors`, `diagonals`).
        field: &'static str,
        /// The component.
        index: usize,
        /// Rows found.
        found: usize,
        /// Rows expected.
        expected: usize,
    },
    /// A non-finite entry.
    #[error("low-rank mixture: `{field}[{index}]` has a non-finite entry")]
    NonFinite {
        /// The field.
        field: &'static str,
        /// The component.
        index: usize,
    },
    /// A diagonal entry is not positive.
    #[error("low-rank mixture: `diagonals[{index}]` entry {entry} = {value} must be > 0")]
    NonPositiveDiagonal {
        /// The component.
        index: usize,
        /// The entry.
        entry: usize,
        /// The value.
        value: f64,
    },
    /// Bad weights or counts.
    #[error("low-rank mixture: {0}")]
    Weights(String),
}

/// One component `N(mu, U U^T + diag(d))` with its Woodbury factors.
#[derive(Clone, Debug)]
pub struct LowRankComponent {
    mean: DVector<f64>,
    u: DMatrix<f64>,
    d: DVector<f64>,
    /// `D^{-1} U`.
    dinv_u: DMatrix<f64>,
    /// Cholesky of the capacitance `M = I + U^T D^{-1} U`.
    chol_m: Cholesky<f64, Dyn>,
    ln_det: f64,
}

impl LowRankComponent {
    /// Builds the component.
    ///
    /// # Errors
    /// Shapes, non-finite entries, `d_i <= 0` (named with component `index`).
    pub fn new(
        index: usize,
        mean: DVector<f64>,
        u: DMatrix<f64>,
        d: DVector<f64>,
    ) -> Result<Self, LowRankError> {
        let dim = mean.len();
        for (field, rows) in [("factors", u.nrows()), ("diagonals", d.len())] {
            if rows != dim {
                return Err(LowRankError::Shape {
                    field,
                    index,
                    found: rows,
                    expected: dim,
                });
            }
        }
        for (field, finite) in [
            ("means", mean.iter().all(|v| v.is_finite())),
            ("factors", u.iter().all(|v| v.is_finite())),
            ("diagonals", d.iter().all(|v| v.is_finite())),
        ] {
            if !finite {
                return Err(LowRankError::NonFinite { field, index });
            }
        }
        if let Some((entry, &value)) = d.iter().enumerate().find(|(_, v)| **v <= 0.0) {
            return Err(LowRankError::NonPositiveDiagonal {
                index,
                entry,
                value,
            });
        }
        let dinv_u = DMatrix::from_fn(dim, u.ncols(), |i, j| u[(i, j)] / d[i]);
        let m = DMatrix::identity(u.ncols(), u.ncols()) + u.transpose() * &dinv_u;
        let chol_m = Cholesky::new((&m + m.transpose()) * 0.5).ok_or_else(|| {
            LowRankError::Weights(format!("component {index}: capacitance not SPD"))
        })?;
        let ln_det_m: f64 = 2.0 * chol_m.l().diagonal().iter().map(|v| v.ln()).sum::<f64>();
        let ln_det = d.iter().map(|v| v.ln()).sum::<f64>() + ln_det_m;
        Ok(Self {
            mean,
            u,
            d,
            dinv_u,
            chol_m,
            ln_det,
        })
    }

    /// The mean.
    #[must_use]
    pub fn mean(&self) -> &DVector<f64> {
        &self.mean
    }

    /// The factor `U`.
    #[must_use]
    pub fn factor(&self) -> &DMatrix<f64> {
        &self.u
    }

    /// The diagonal `d`.
    #[must_use]
    pub fn diagonal(&self) -> &DVector<f64> {
        &self.d
    }

    /// `ln det Sigma`.
    #[must_use]
    pub fn ln_det(&self) -> f64 {
        self.ln_det
    }

    /// The dense covariance `U U^T + diag(d)` (for tests and small D).
    #[must_use]
    pub fn covariance(&self) -> DMatrix<f64> {
        &self.u * self.u.transpose() + DMatrix::from_diagonal(&self.d)
    }

    /// `diag Sigma^{-1} = 1/d - rowsum((D^{-1} U) .* (D^{-1} U M^{-1}))` (Woodbury), `O(D r^2)`.
    #[must_use]
    pub fn precision_diag(&self) -> DVector<f64> {
        // D^{-1} U M^{-1} = (M^{-1} U^T D^{-1})^T: one Cholesky solve with r right-hand sides.
        let w = self.chol_m.solve(&self.dinv_u.transpose()); // r x D
        DVector::from_fn(self.d.len(), |i, _| {
            1.0 / self.d[i]
                - (0..self.u.ncols())
                    .map(|j| self.dinv_u[(i, j)] * w[(j, i)])
                    .sum::<f64>()
        })
    }

    /// `Sigma^{-1} v` by Woodbury.
    #[must_use]
    pub fn precision_mul(&self, v: &DVector<f64>) -> DVector<f64> {
        let dv = v.component_div(&self.d);
        let w = self.chol_m.solve(&(self.u.transpose() * &dv));
        dv - &self.dinv_u * w
    }

    /// The forward marginal component at `abar`: mean `sqrt(abar) mu`, factor `sqrt(abar) U`,
    /// diagonal `abar d + (1 - abar)` (`one_minus_abar` passed without cancellation).
    ///
    /// # Errors
    /// Never for a valid component and `0 < abar <= 1`.
    pub fn forward(
        &self,
        index: usize,
        abar: f64,
        one_minus_abar: f64,
    ) -> Result<Self, LowRankError> {
        let s = abar.sqrt();
        Self::new(
            index,
            &self.mean * s,
            &self.u * s,
            self.d.map(|v| abar * v + one_minus_abar),
        )
    }
}

/// A mixture of [`LowRankComponent`]s.
#[derive(Clone, Debug)]
pub struct LowRankMixture {
    weights: Vec<f64>,
    ln_weights: Vec<f64>,
    pub(crate) components: Vec<LowRankComponent>,
    /// `diag Sigma_k^{-1}` per component, computed on first use.
    precision_diags: std::sync::OnceLock<Vec<DVector<f64>>>,
}

impl LowRankMixture {
    /// Builds the mixture.
    ///
    /// # Errors
    /// Empty, counts differ, weights negative / non-finite / not summing to 1 (within 1e-9),
    /// dimensions differ.
    pub fn new(weights: Vec<f64>, components: Vec<LowRankComponent>) -> Result<Self, LowRankError> {
        if components.is_empty() || weights.len() != components.len() {
            return Err(LowRankError::Weights(format!(
                "{} weights for {} components (need equal, >= 1)",
                weights.len(),
                components.len()
            )));
        }
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(LowRankError::Weights(
                "`weights` must be finite and >= 0".into(),
            ));
        }
        let sum: f64 = weights.iter().sum();
        if (sum - 1.0).abs() > 1e-9 {
            return Err(LowRankError::Weights(format!(
                "`weights` sum to {sum}, not 1"
            )));
        }
        let dim = components[0].mean.len();
        for (index, c) in components.iter().enumerate() {
            if c.mean.len() != dim {
                return Err(LowRankError::Shape {
                    field: "means",
                    index,
                    found: c.mean.len(),
                    expected: dim,
                });
            }
        }
        Ok(Self {
            ln_weights: weights.iter().map(|w| w.ln()).collect(),
            weights,
            components,
            precision_diags: std::sync::OnceLock::new(),
        })
    }

    /// A dense [`crate::data::mixture::Mixture`] in low-rank-plus-diagonal form, exactly: each
    /// covariance `Sigma = V diag(l) V^T` becomes `U U^T + delta I` with `delta = l_min / 2` and
    /// `U = V diag(sqrt(l - delta))` (rank D), so that the tensor path can run the dense presets
    /// (mog40, grid9, aniso2, mix6).
    ///
    /// # Errors
    /// As [`LowRankComponent::new`] (not expected for a valid mixture).
    pub fn from_mixture(q: &crate::data::mixture::Mixture) -> Result<Self, LowRankError> {
        let components = q
            .components()
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let e = nalgebra::SymmetricEigen::new(c.covariance());
                let delta = 0.5 * e.eigenvalues.min();
                let dim = c.mean().len();
                let u = DMatrix::from_fn(dim, dim, |i, j| {
                    e.eigenvectors[(i, j)] * (e.eigenvalues[j] - delta).max(0.0).sqrt()
                });
                LowRankComponent::new(k, c.mean().clone(), u, DVector::from_element(dim, delta))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(q.weights().to_vec(), components)
    }

    /// The dimension D.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.components[0].mean.len()
    }

    /// The weights.
    #[must_use]
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The components.
    #[must_use]
    pub fn components(&self) -> &[LowRankComponent] {
        &self.components
    }

    /// `diag Sigma_k^{-1}` of every component (computed once, then cached).
    #[must_use]
    pub fn precision_diags(&self) -> &[DVector<f64>] {
        self.precision_diags.get_or_init(|| {
            self.components
                .iter()
                .map(LowRankComponent::precision_diag)
                .collect()
        })
    }

    /// The forward marginal `q_t` at `ln abar_t`.
    ///
    /// # Errors
    /// As [`LowRankComponent::forward`].
    pub fn marginal(&self, ln_abar: f64) -> Result<Self, LowRankError> {
        let abar = ln_abar.exp();
        let oma = -ln_abar.exp_m1();
        let components = self
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| c.forward(i, abar, oma))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            weights: self.weights.clone(),
            ln_weights: self.ln_weights.clone(),
            components,
            precision_diags: std::sync::OnceLock::new(),
        })
    }

    /// Per component: `ln pi_k + ln N_k(x)` and `g_k = -Sigma_k^{-1}(x - mu_k)`.
    pub(crate) fn terms(&self, x: &DVector<f64>) -> (Vec<f64>, Vec<DVector<f64>>) {
        let c0 = -0.5 * self.dim() as f64 * (2.0 * std::f64::consts::PI).ln();
        let mut t = Vec::with_capacity(self.components.len());
        let mut g = Vec::with_capacity(self.components.len());
        for (k, c) in self.components.iter().enumerate() {
            let r = x - &c.mean;
            let p = c.precision_mul(&r);
            t.push(self.ln_weights[k] + c0 - 0.5 * (r.dot(&p) + c.ln_det));
            g.push(-p);
        }
        (t, g)
    }

    /// `ln q(x)` by log-sum-exp.
    ///
    /// # Errors
    /// Dimension mismatch or non-finite `x`.
    pub fn ln_pdf(&self, x: &[f64]) -> Result<f64, MixtureError> {
        let xv = self.check(x)?;
        Ok(crate::numeric::log_sum_exp(&self.terms(&xv).0))
    }

    pub(crate) fn check(&self, x: &[f64]) -> Result<DVector<f64>, MixtureError> {
        crate::data::mixture::check_point(self.dim(), x)?;
        Ok(DVector::from_column_slice(x))
    }

    /// Exact draws.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, n: usize) -> Vec<DVector<f64>> {
        let mut cdf = Vec::with_capacity(self.weights.len());
        let mut acc = 0.0;
        for w in &self.weights {
            acc += w;
            cdf.push(acc);
        }
        (0..n)
            .map(|_| {
                let u: f64 = rng.gen::<f64>() * acc;
                let k = cdf.iter().position(|&c| u < c).unwrap_or(cdf.len() - 1);
                let c = &self.components[k];
                let zr = DVector::from_fn(c.u.ncols(), |_, _| rng.sample(StandardNormal));
                let zd = DVector::from_fn(self.dim(), |i, _| {
                    c.d[i].sqrt() * rng.sample::<f64, _>(StandardNormal)
                });
                &c.mean + &c.u * zr + zd
            })
            .collect()
    }
}
