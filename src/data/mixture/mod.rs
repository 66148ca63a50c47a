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
//!
//! The files: the mixture, its construction, log density, forward marginals and exact
//! sampling here; one Gaussian component with its cached eigendecomposition and the
//! magnitude limits (`component`); the local geometry of ln q, i.e. responsibilities,
//! score, Hessian and Hessian-vector products (`geometry`); the same geometry on a tensor
//! lattice for axis-aligned components, from per-axis tables (`lattice_geometry`); the error
//! (`error`).

use nalgebra::{DMatrix, DVector};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::numeric::log_sum_exp;

mod component;
mod error;
mod geometry;
mod lattice_geometry;

pub use component::{
    classify, Component, CovarianceKind, MAX_MAGNITUDE, MAX_MEAN_TO_SD, SYMMETRY_TOL,
};
pub use error::MixtureError;
use geometry::IsoCache;
pub use geometry::{LocalGeometry, Workspace};
pub use lattice_geometry::{SeparableLattice, SeparableWorkspace};

/// Relative tolerance on sum of weights = 1 (a file written with 15-16 digits passes,
/// a typo does not).
pub const WEIGHT_SUM_TOL: f64 = 1e-9;

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

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A random dense mixture in dimension d with K components (seeded).
    pub(super) fn random_dense(d: usize, k: usize, seed: u64) -> Mixture {
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
