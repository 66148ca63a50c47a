//! The error of mixture construction and evaluation ([`MixtureError`]), naming the field and
//! the component.

use thiserror::Error;

use super::{MAX_MAGNITUDE, MAX_MEAN_TO_SD, WEIGHT_SUM_TOL};

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
