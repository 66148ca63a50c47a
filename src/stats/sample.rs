//! Samples of points in `R^D`: the checks every metric applies to its input samples
//! (non-empty, enough points, one dimension >= 1, finite entries) and the unbiased sample
//! mean and covariance.

use nalgebra::{DMatrix, DVector};

use super::error::MetricsError;

/// Checks a sample and returns its dimension: non-empty, at least `need` points, every point
/// of dimension `expected` (or that of the first point) >= 1, all entries finite.
pub(super) fn validate(
    sample: &'static str,
    x: &[DVector<f64>],
    expected: Option<usize>,
    need: usize,
) -> Result<usize, MetricsError> {
    let first = x.first().ok_or(MetricsError::EmptySample { sample })?;
    if x.len() < need {
        return Err(MetricsError::TooFewPoints {
            sample,
            n: x.len(),
            need,
        });
    }
    let d = match expected {
        Some(d) => d,
        None if first.is_empty() => return Err(MetricsError::ZeroDimension { sample }),
        None => first.len(),
    };
    for (index, p) in x.iter().enumerate() {
        if p.len() != d {
            return Err(MetricsError::DimensionMismatch {
                sample,
                index,
                found: p.len(),
                expected: d,
            });
        }
        if p.iter().any(|v| !v.is_finite()) {
            return Err(MetricsError::NonFinite { sample, index });
        }
    }
    Ok(d)
}

/// Unbiased sample mean and covariance.
///
/// # Formula
/// ```text
/// x̄ = (1/n) Σ x_i,   S = 1/(n-1) Σ (x_i - x̄)(x_i - x̄)ᵀ      (two passes, centred)
/// ```
///
/// # Errors
/// [`MetricsError::EmptySample`], [`MetricsError::TooFewPoints`] (`n < 2`),
/// [`MetricsError::ZeroDimension`], [`MetricsError::DimensionMismatch`],
/// [`MetricsError::NonFinite`] (sample name `x`).
///
/// # Examples
/// ```
/// use covlab::stats::sample_moments;
/// use nalgebra::DVector;
///
/// let x: Vec<_> = [1.0, 2.0, 6.0].iter().map(|&v| DVector::from_vec(vec![v])).collect();
/// let (mean, cov) = sample_moments(&x).unwrap();
/// assert!((mean[0] - 3.0).abs() < 1e-15);
/// assert!((cov[(0, 0)] - 7.0).abs() < 1e-14); // (4 + 1 + 9) / 2
/// ```
pub fn sample_moments(x: &[DVector<f64>]) -> Result<(DVector<f64>, DMatrix<f64>), MetricsError> {
    moments_named("x", x)
}

pub(super) fn moments_named(
    sample: &'static str,
    x: &[DVector<f64>],
) -> Result<(DVector<f64>, DMatrix<f64>), MetricsError> {
    let d = validate(sample, x, None, 2)?;
    let n = x.len() as f64;
    let mut mean = DVector::zeros(d);
    for p in x {
        mean += p;
    }
    mean /= n;
    let mut cov = DMatrix::zeros(d, d);
    let mut r = DVector::zeros(d);
    for p in x {
        r.copy_from(p);
        r -= &mean;
        cov.syger(1.0, &r, &r, 1.0);
    }
    cov.fill_upper_triangle_with_lower_triangle();
    cov /= n - 1.0;
    Ok((mean, cov))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn dv(v: &[f64]) -> DVector<f64> {
        DVector::from_vec(v.to_vec())
    }

    #[test]
    fn sample_moments_by_hand() {
        let x = vec![dv(&[1.0, 2.0]), dv(&[3.0, 0.0]), dv(&[2.0, 4.0])];
        let (mean, cov) = sample_moments(&x).unwrap();
        // mean (2, 2); deviations (-1, 0), (1, -2), (0, 2): S = [[2, -2], [-2, 8]] / 2.
        let want = DMatrix::from_row_slice(2, 2, &[1.0, -1.0, -1.0, 4.0]);
        assert!((mean - dv(&[2.0, 2.0])).amax() < 1e-15);
        assert!((cov - want).amax() < 1e-14);
    }
}
