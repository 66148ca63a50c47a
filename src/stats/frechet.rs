//! The squared Fréchet (2-Wasserstein) distance between Gaussians, and between the sample
//! moments of two samples.
//!
//! # Fréchet distance (Dowson and Landau 1982)
//! `d² = |μ₁ - μ₂|² + tr(S₁ + S₂ - 2 (S₁^{1/2} S₂ S₁^{1/2})^{1/2})` with symmetric
//! eigendecompositions; see [`frechet_gaussian_sq`].

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use super::error::MetricsError;
use super::sample::{moments_named, validate};
use crate::data::mixture::SYMMETRY_TOL;

/// Relative tolerance below which a negative eigenvalue of an input covariance is taken as
/// round-off and clamped to zero: `λ >= -PSD_TOL · max |λ|`.
pub const PSD_TOL: f64 = 1e-10;

/// Checks a mean and covariance argument of dimension `d`.
fn check_gaussian(
    mu: &DVector<f64>,
    mu_name: &'static str,
    cov: &DMatrix<f64>,
    cov_name: &'static str,
    d: usize,
) -> Result<(), MetricsError> {
    if mu.len() != d {
        return Err(MetricsError::ShapeMismatch {
            field: mu_name,
            rows: mu.len(),
            cols: 1,
            expected_rows: d,
            expected_cols: 1,
        });
    }
    if cov.nrows() != d || cov.ncols() != d {
        return Err(MetricsError::ShapeMismatch {
            field: cov_name,
            rows: cov.nrows(),
            cols: cov.ncols(),
            expected_rows: d,
            expected_cols: d,
        });
    }
    if mu.iter().any(|v| !v.is_finite()) {
        return Err(MetricsError::NonFiniteArgument { field: mu_name });
    }
    if cov.iter().any(|v| !v.is_finite()) {
        return Err(MetricsError::NonFiniteArgument { field: cov_name });
    }
    let scale = cov.amax().max(f64::MIN_POSITIVE);
    let mut worst = (0, 0, 0.0f64);
    for i in 0..d {
        for j in 0..i {
            let diff = (cov[(i, j)] - cov[(j, i)]).abs();
            if diff > worst.2 {
                worst = (i, j, diff);
            }
        }
    }
    if worst.2 > SYMMETRY_TOL * scale {
        return Err(MetricsError::NotSymmetric {
            field: cov_name,
            row: worst.0,
            col: worst.1,
            diff: worst.2,
        });
    }
    Ok(())
}

/// Eigenvalues and eigenvectors of the symmetric part of `m`.
fn sym_eigen(
    m: &DMatrix<f64>,
    field: &'static str,
) -> Result<SymmetricEigen<f64, nalgebra::Dyn>, MetricsError> {
    let sym = (m + m.transpose()) * 0.5;
    SymmetricEigen::try_new(sym, f64::EPSILON, 0).ok_or(MetricsError::EigenNoConvergence { field })
}

/// Eigenvalues with round-off negatives (`>= -PSD_TOL · max |λ|`) clamped to 0.
fn clamp_psd(vals: &DVector<f64>, field: &'static str) -> Result<DVector<f64>, MetricsError> {
    let max_abs = vals.amax();
    let min = vals.min();
    if min < -PSD_TOL * max_abs {
        return Err(MetricsError::NotPositiveSemidefinite {
            field,
            min_eigenvalue: min,
        });
    }
    Ok(vals.map(|v| v.max(0.0)))
}

/// Squared Fréchet (2-Wasserstein) distance between `N(mu1, cov1)` and `N(mu2, cov2)`.
///
/// # Formula
/// ```text
/// d² = |μ₁ - μ₂|² + tr S₁ + tr S₂ - 2 tr (S₁^{1/2} S₂ S₁^{1/2})^{1/2}
/// S₁^{1/2} = U diag(sqrt λ) Uᵀ   from S₁ = U diag(λ) Uᵀ
/// tr (M)^{1/2} = Σ sqrt(λ_i(M)),  M = S₁^{1/2} S₂ S₁^{1/2} (symmetrised)
/// ```
/// Eigenvalues of `S₁`, `S₂` in `[-PSD_TOL · max|λ|, 0)` are round-off and clamped to 0;
/// those of `M` (PSD by construction) are clamped to 0 whatever their size. The result is
/// clamped to `>= 0` (for `S₁ = S₂`, `μ₁ = μ₂` it is a round-off-sized number otherwise).
///
/// # Errors
/// [`MetricsError::ShapeMismatch`] (dimension taken from `mu1`, which must be >= 1),
/// [`MetricsError::NonFiniteArgument`], [`MetricsError::NotSymmetric`] (relative tolerance
/// [`SYMMETRY_TOL`]), [`MetricsError::NotPositiveSemidefinite`],
/// [`MetricsError::EigenNoConvergence`].
///
/// # Examples
/// ```
/// use covlab::stats::frechet_gaussian_sq;
/// use nalgebra::{DMatrix, DVector};
///
/// // 1-D: (μ₁ - μ₂)² + (σ₁ - σ₂)² = 1 + (2 - 3)² = 2.
/// let d2 = frechet_gaussian_sq(
///     &DVector::from_vec(vec![0.0]), &DMatrix::from_element(1, 1, 4.0),
///     &DVector::from_vec(vec![1.0]), &DMatrix::from_element(1, 1, 9.0),
/// ).unwrap();
/// assert!((d2 - 2.0).abs() < 1e-13);
/// ```
pub fn frechet_gaussian_sq(
    mu1: &DVector<f64>,
    cov1: &DMatrix<f64>,
    mu2: &DVector<f64>,
    cov2: &DMatrix<f64>,
) -> Result<f64, MetricsError> {
    let d = mu1.len();
    if d == 0 {
        return Err(MetricsError::ShapeMismatch {
            field: "mu1",
            rows: 0,
            cols: 1,
            expected_rows: 1,
            expected_cols: 1,
        });
    }
    check_gaussian(mu1, "mu1", cov1, "cov1", d)?;
    check_gaussian(mu2, "mu2", cov2, "cov2", d)?;
    let e1 = sym_eigen(cov1, "cov1")?;
    let l1 = clamp_psd(&e1.eigenvalues, "cov1")?;
    let e2 = sym_eigen(cov2, "cov2")?;
    let l2 = clamp_psd(&e2.eigenvalues, "cov2")?;
    let root1 =
        &e1.eigenvectors * DMatrix::from_diagonal(&l1.map(f64::sqrt)) * e1.eigenvectors.transpose();
    let mid = &root1 * cov2 * &root1;
    let em = sym_eigen(&mid, "cov1^1/2 cov2 cov1^1/2")?;
    let cross: f64 = em.eigenvalues.iter().map(|v| v.max(0.0).sqrt()).sum();
    let mean_term = (mu1 - mu2).norm_squared();
    Ok((mean_term + l1.sum() + l2.sum() - 2.0 * cross).max(0.0))
}

/// Squared Fréchet distance between the sample moments of `x` and `y`: the closed form
/// [`frechet_gaussian_sq`] at the unbiased sample means and covariances ([`sample_moments`]).
///
/// # Formula
/// ```text
/// d² = |x̄ - ȳ|² + tr(S_x + S_y - 2 (S_x^{1/2} S_y S_x^{1/2})^{1/2}),   S = 1/(n-1) Σ (x_i - x̄)(x_i - x̄)ᵀ
/// ```
/// A plug-in estimate: biased upwards by `O(1/n)` at equal distributions.
///
/// When a sample has fewer points than dimensions (image data), the same number is computed
/// from Gram matrices instead of `D x D` eigendecompositions: with the centred, scaled rows
/// `X = (x_i - x̄)ᵀ / sqrt(n-1)` (`n x D`) and `Y` likewise, `S_x = XᵀX`, `S_y = YᵀY`, the
/// eigenvalues of `S_x^{1/2} S_y S_x^{1/2}` are the squared singular values of `G = X Yᵀ`
/// (`n x m`), so
/// ```text
/// d² = |x̄ - ȳ|² + ||X||_F² + ||Y||_F² - 2 Σ σ_i(G)      (singular values of G)
/// ```
/// at `O(n m D + n m min(n, m))` instead of `O(D³)`, and more accurately: the `D x D` route
/// takes square roots of the (round-off) zero eigenvalues of a rank-deficient
/// `S_x^{1/2} S_y S_x^{1/2}`, an `O(sqrt(eps))` error each.
///
/// # Errors
/// As [`sample_moments`] for each sample (`x`, `y`, at least 2 points each),
/// [`MetricsError::DimensionMismatch`] if the dimensions differ, and as
/// [`frechet_gaussian_sq`].
///
/// [`sample_moments`]: super::sample_moments
pub fn frechet_distance_sq(x: &[DVector<f64>], y: &[DVector<f64>]) -> Result<f64, MetricsError> {
    let d = validate("x", x, None, 2)?;
    validate("y", y, Some(d), 2)?;
    if x.len().min(y.len()) < d {
        return frechet_gram_sq(x, y);
    }
    let (mx, sx) = moments_named("x", x)?;
    let (my, sy) = moments_named("y", y)?;
    frechet_gaussian_sq(&mx, &sx, &my, &sy)
}

/// Centred rows scaled by `1/sqrt(n-1)` (`n x D`) and the mean.
fn centred_rows(x: &[DVector<f64>]) -> (DMatrix<f64>, DVector<f64>) {
    let n = x.len();
    let d = x[0].len();
    let mut mean = DVector::zeros(d);
    for p in x {
        mean += p;
    }
    mean /= n as f64;
    let s = 1.0 / ((n - 1) as f64).sqrt();
    let m = DMatrix::from_fn(n, d, |i, j| (x[i][j] - mean[j]) * s);
    (m, mean)
}

/// [`frechet_distance_sq`] by Gram matrices (validated samples).
fn frechet_gram_sq(x: &[DVector<f64>], y: &[DVector<f64>]) -> Result<f64, MetricsError> {
    let (xm, mx) = centred_rows(x);
    let (ym, my) = centred_rows(y);
    let g = &xm * ym.transpose(); // n x m
                                  // The nuclear norm from the singular values of G directly: its zero singular values come
                                  // out as O(eps ||G||), where square roots of the eigenvalues of G Gᵀ would give O(sqrt(eps)).
    let sv = g
        .try_svd(false, false, f64::EPSILON, 0)
        .ok_or(MetricsError::EigenNoConvergence {
            field: "G = X Yᵀ"
        })?;
    let cross: f64 = sv.singular_values.iter().sum();
    let mean_term = (&mx - &my).norm_squared();
    Ok((mean_term + xm.norm_squared() + ym.norm_squared() - 2.0 * cross).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::sample::tests::dv;
    use crate::stats::sample_moments;

    #[test]
    fn frechet_by_gram_matrices_equals_the_dense_closed_form() {
        // The Gram route and the D x D route compute the same number. Full-rank covariances
        // (n, m > D): both are accurate, 1e-10 relative. Rank-deficient (n or m <= D, where
        // frechet_distance_sq takes the Gram route): the dense route takes square roots of
        // the zero eigenvalues of S1^1/2 S2 S1^1/2, which come out as +-eps |M|, and so errs by
        // ~(D - n) sqrt(eps |M|) ~ 1e-7 relative here (measured 3.3e-9): 1e-6.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for (n, m, d, tol) in [
            (40usize, 50usize, 6usize, 1e-10),
            (12, 20, 30, 1e-6),
            (25, 9, 40, 1e-6),
            (5, 5, 6, 1e-6),
        ] {
            let x: Vec<DVector<f64>> = (0..n)
                .map(|_| DVector::from_fn(d, |j, _| rng.gen::<f64>() * (1.0 + j as f64 / 10.0)))
                .collect();
            let y: Vec<DVector<f64>> = (0..m)
                .map(|_| DVector::from_fn(d, |_, _| rng.gen::<f64>() + 0.3))
                .collect();
            let (mx, sx) = sample_moments(&x).unwrap();
            let (my, sy) = sample_moments(&y).unwrap();
            let dense = frechet_gaussian_sq(&mx, &sx, &my, &sy).unwrap();
            let gram = frechet_gram_sq(&x, &y).unwrap();
            assert!(
                (dense - gram).abs() <= tol * dense.abs().max(1.0),
                "n {n} m {m} d {d}: {dense} vs {gram}"
            );
            let public = frechet_distance_sq(&x, &y).unwrap();
            assert!(
                (public - if n.min(m) < d { gram } else { dense }).abs() < 1e-15 * public.max(1.0)
            );
        }
    }

    #[test]
    fn frechet_closed_form_by_hand() {
        // 1-D: (μ₁ - μ₂)² + (σ₁ - σ₂)²; the eigen route rounds at ~1e-15 relative.
        let d2 = frechet_gaussian_sq(
            &dv(&[0.3]),
            &DMatrix::from_element(1, 1, 2.0),
            &dv(&[-1.2]),
            &DMatrix::from_element(1, 1, 0.5),
        )
        .unwrap();
        let want = 1.5f64.powi(2) + (2f64.sqrt() - 0.5f64.sqrt()).powi(2);
        assert!((d2 - want).abs() < 1e-13 * want, "{d2} vs {want}");
        // Commuting (diagonal) covariances: Σ (sqrt a_i - sqrt b_i)², plus |Δμ|².
        let a = [1.0, 4.0, 0.25];
        let b = [9.0, 1.0, 0.25];
        let d2 = frechet_gaussian_sq(
            &dv(&[0.0, 0.0, 0.0]),
            &DMatrix::from_diagonal(&dv(&a)),
            &dv(&[1.0, 0.0, -2.0]),
            &DMatrix::from_diagonal(&dv(&b)),
        )
        .unwrap();
        let want = 5.0
            + a.iter()
                .zip(&b)
                .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
                .sum::<f64>();
        assert!((d2 - want).abs() < 1e-13 * want, "{d2} vs {want}");
        // Rotating both covariances by one orthogonal Q leaves d² unchanged (non-diagonal path).
        let (c, s) = (0.6f64, 0.8f64);
        let q = DMatrix::from_row_slice(2, 2, &[c, -s, s, c]);
        let s1 = &q * DMatrix::from_diagonal(&dv(&[1.0, 4.0])) * q.transpose();
        let s2 = &q * DMatrix::from_diagonal(&dv(&[9.0, 1.0])) * q.transpose();
        let d2 = frechet_gaussian_sq(&dv(&[0.0, 0.0]), &s1, &dv(&[0.0, 0.0]), &s2).unwrap();
        // (1 - 3)² + (2 - 1)² = 5, to rounding of the 2x2 eigensolves.
        assert!((d2 - 5.0).abs() < 1e-12, "{d2}");
        // Identical Gaussians: 0 (clamped from a round-off-sized value), symmetric in its arguments.
        assert!(frechet_gaussian_sq(&dv(&[1.0, 2.0]), &s1, &dv(&[1.0, 2.0]), &s1).unwrap() < 1e-12);
        let d12 = frechet_gaussian_sq(&dv(&[0.0, 1.0]), &s1, &dv(&[0.5, 0.0]), &s2).unwrap();
        let d21 = frechet_gaussian_sq(&dv(&[0.5, 0.0]), &s2, &dv(&[0.0, 1.0]), &s1).unwrap();
        assert!((d12 - d21).abs() < 1e-12 * d12);
        // A singular (PSD) covariance is accepted: N(0, diag(1, 0)) vs N(0, I): (1 - 0)² = 1.
        let sing = DMatrix::from_diagonal(&dv(&[1.0, 0.0]));
        let d2 = frechet_gaussian_sq(
            &dv(&[0.0, 0.0]),
            &sing,
            &dv(&[0.0, 0.0]),
            &DMatrix::identity(2, 2),
        )
        .unwrap();
        assert!((d2 - 1.0).abs() < 1e-12, "{d2}");
    }

    #[test]
    fn frechet_argument_errors() {
        let i2 = DMatrix::<f64>::identity(2, 2);
        let z = dv(&[0.0, 0.0]);
        let asym = DMatrix::from_row_slice(2, 2, &[1.0, 0.5, 0.0, 1.0]);
        assert!(matches!(
            frechet_gaussian_sq(&z, &i2, &z, &asym),
            Err(MetricsError::NotSymmetric { field: "cov2", .. })
        ));
        let indef = DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 2.0, 1.0]);
        let e = frechet_gaussian_sq(&z, &indef, &z, &i2).unwrap_err();
        assert!(
            matches!(
                e,
                MetricsError::NotPositiveSemidefinite { field: "cov1", .. }
            ),
            "{e:?}"
        );
        assert_eq!(
            frechet_gaussian_sq(&z, &i2, &dv(&[0.0]), &i2),
            Err(MetricsError::ShapeMismatch {
                field: "mu2",
                rows: 1,
                cols: 1,
                expected_rows: 2,
                expected_cols: 1
            })
        );
        assert!(matches!(
            frechet_gaussian_sq(&z, &DMatrix::identity(3, 3), &z, &i2),
            Err(MetricsError::ShapeMismatch { field: "cov1", .. })
        ));
        assert_eq!(
            frechet_gaussian_sq(&dv(&[f64::NAN, 0.0]), &i2, &z, &i2),
            Err(MetricsError::NonFiniteArgument { field: "mu1" })
        );
        assert!(matches!(
            frechet_gaussian_sq(
                &dv(&[]),
                &DMatrix::zeros(0, 0),
                &dv(&[]),
                &DMatrix::zeros(0, 0)
            ),
            Err(MetricsError::ShapeMismatch { field: "mu1", .. })
        ));
    }
}
