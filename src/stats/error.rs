//! The error of the sample-quality metrics ([`MetricsError`]): a bad sample (empty, too few
//! points, wrong dimension, non-finite), bad bandwidths, and bad Gaussian arguments of the
//! Fréchet distance (shape, symmetry, positive semidefiniteness, eigensolver).

use thiserror::Error;

/// Errors of the metrics.
#[derive(Clone, Debug, PartialEq, Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A sample has no points.
    #[error("metrics: sample `{sample}` is empty")]
    EmptySample {
        /// Which sample (`x`, `y`).
        sample: &'static str,
    },
    /// A sample has fewer points than the statistic needs.
    #[error("metrics: sample `{sample}` has {n} point(s), need at least {need}")]
    TooFewPoints {
        /// Which sample.
        sample: &'static str,
        /// Its number of points.
        n: usize,
        /// The number needed.
        need: usize,
    },
    /// The points of a sample have dimension zero.
    #[error("metrics: `{sample}[0]` has dimension 0, need >= 1")]
    ZeroDimension {
        /// Which sample.
        sample: &'static str,
    },
    /// A point has a different dimension from the first point of `x` (or from the model).
    #[error("metrics: `{sample}[{index}]` has dimension {found}, expected {expected}")]
    DimensionMismatch {
        /// Which sample.
        sample: &'static str,
        /// Index of the point.
        index: usize,
        /// Its dimension.
        found: usize,
        /// The expected dimension.
        expected: usize,
    },
    /// A point has a NaN or infinite coordinate.
    #[error("metrics: `{sample}[{index}]` has a non-finite entry")]
    NonFinite {
        /// Which sample.
        sample: &'static str,
        /// Index of the point.
        index: usize,
    },
    /// The bandwidth list is empty.
    #[error("metrics: `bandwidths` is empty (need at least one)")]
    NoBandwidths,
    /// A bandwidth is not finite and positive.
    #[error("metrics: `bandwidths[{index}]` = {value} must be finite and > 0")]
    BadBandwidth {
        /// Its index in the list.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A mean or covariance argument has the wrong shape.
    #[error("metrics: `{field}` is {rows}x{cols}, expected {expected_rows}x{expected_cols}")]
    ShapeMismatch {
        /// Which argument (`mu1`, `cov1`, `mu2`, `cov2`).
        field: &'static str,
        /// Rows found.
        rows: usize,
        /// Columns found.
        cols: usize,
        /// Rows expected.
        expected_rows: usize,
        /// Columns expected.
        expected_cols: usize,
    },
    /// A mean or covariance argument has a NaN or infinite entry.
    #[error("metrics: `{field}` has a non-finite entry")]
    NonFiniteArgument {
        /// Which argument.
        field: &'static str,
    },
    /// A covariance is not symmetric.
    #[error("metrics: `{field}` is not symmetric (entry ({row}, {col}) differs from its transpose by {diff:e})")]
    NotSymmetric {
        /// Which argument.
        field: &'static str,
        /// Row of the worst entry.
        row: usize,
        /// Column of the worst entry.
        col: usize,
        /// The asymmetry.
        diff: f64,
    },
    /// A covariance has an eigenvalue below `-PSD_TOL · max |λ|`.
    #[error(
        "metrics: `{field}` is not positive semidefinite (smallest eigenvalue {min_eigenvalue:e})"
    )]
    NotPositiveSemidefinite {
        /// Which argument.
        field: &'static str,
        /// Its smallest eigenvalue.
        min_eigenvalue: f64,
    },
    /// The symmetric eigensolver did not converge.
    #[error("metrics: the symmetric eigendecomposition of `{field}` did not converge")]
    EigenNoConvergence {
        /// Which matrix (`cov1`, `cov2`, or `cov1^1/2 cov2 cov1^1/2`).
        field: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{frechet_distance_sq, mmd2_unbiased, sample_moments, MMD_BANDWIDTHS};
    use nalgebra::DVector;

    #[test]
    fn error_cases() {
        fn send_sync<T: Send + Sync + std::error::Error + 'static>(_: &T) {}
        let p = |v: &[f64]| DVector::from_vec(v.to_vec());
        let ok = vec![p(&[0.0, 0.0]), p(&[1.0, 0.0]), p(&[0.0, 1.0])];
        let e = mmd2_unbiased(&[], &ok, &MMD_BANDWIDTHS).unwrap_err();
        send_sync(&e);
        assert_eq!(e, MetricsError::EmptySample { sample: "x" });
        assert_eq!(
            mmd2_unbiased(&ok, &ok[..1], &MMD_BANDWIDTHS).unwrap_err(),
            MetricsError::TooFewPoints {
                sample: "y",
                n: 1,
                need: 2
            }
        );
        let mut bad = ok.clone();
        bad[2] = p(&[0.0, 1.0, 2.0]);
        let e = mmd2_unbiased(&ok, &bad, &MMD_BANDWIDTHS).unwrap_err();
        assert_eq!(
            e,
            MetricsError::DimensionMismatch {
                sample: "y",
                index: 2,
                found: 3,
                expected: 2
            }
        );
        assert!(e.to_string().contains("y[2]"), "{e}");
        bad[2] = p(&[0.0, f64::NAN]);
        assert_eq!(
            mmd2_unbiased(&bad, &ok, &MMD_BANDWIDTHS).unwrap_err(),
            MetricsError::NonFinite {
                sample: "x",
                index: 2
            }
        );
        bad[2] = p(&[f64::INFINITY, 0.0]);
        assert_eq!(
            mmd2_unbiased(&ok, &bad, &MMD_BANDWIDTHS).unwrap_err(),
            MetricsError::NonFinite {
                sample: "y",
                index: 2
            }
        );
        let empty_dim = vec![DVector::<f64>::zeros(0); 3];
        assert_eq!(
            mmd2_unbiased(&empty_dim, &ok, &MMD_BANDWIDTHS).unwrap_err(),
            MetricsError::ZeroDimension { sample: "x" }
        );
        assert_eq!(
            mmd2_unbiased(&ok, &ok, &[]).unwrap_err(),
            MetricsError::NoBandwidths
        );
        for bad_h in [0.0, -1.0, f64::INFINITY] {
            assert_eq!(
                mmd2_unbiased(&ok, &ok, &[1.0, bad_h]).unwrap_err(),
                MetricsError::BadBandwidth {
                    index: 1,
                    value: bad_h
                }
            );
        }
        assert!(matches!(
            mmd2_unbiased(&ok, &ok, &[f64::NAN]).unwrap_err(),
            MetricsError::BadBandwidth { index: 0, .. }
        ));
        assert_eq!(
            sample_moments(&ok[..1]).unwrap_err(),
            MetricsError::TooFewPoints {
                sample: "x",
                n: 1,
                need: 2
            }
        );
        assert_eq!(
            frechet_distance_sq(&ok, &[]).unwrap_err(),
            MetricsError::EmptySample { sample: "y" }
        );
        assert_eq!(
            frechet_distance_sq(&ok, &bad).unwrap_err(),
            MetricsError::NonFinite {
                sample: "y",
                index: 2
            }
        );
        let crate_err: crate::Error = e.into();
        assert!(crate_err.to_string().contains("y[2]"));
    }
}
