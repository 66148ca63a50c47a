//! Eigendecomposition of a real symmetric tridiagonal matrix by the implicit QL algorithm
//! with Wilkinson-type shifts (EISPACK `tql2`, as in JAMA), accumulating the eigenvectors.
//!
//! # Algorithm
//! ```text
//! T = tridiag(e, d, e),  V = I
//! for l = 0..m:
//!     find the first m' >= l with |e_m'| <= eps · max_{i <= l} (|d_i| + |e_i|)   (deflation)
//!     while m' > l:
//!         shift sigma = the eigenvalue of the leading 2 x 2 block [d_l e_l; e_l d_{l+1}]
//!                       closest to d_l (Wilkinson); d_i -= sigma for i >= l (accumulated in f)
//!         one implicit QL sweep: Givens rotations G_{m'-1}, ..., G_l chase the bulge from the
//!         bottom of the unreduced block to row l; V <- V G_{m'-1} ... G_l
//!     theta_l = d_l + f
//! sort theta ascending, permuting the columns of V
//! ```
//! Each sweep is an orthogonal similarity, so `T = V diag(theta) V^T` up to a backward error of
//! order `m eps ||T||`: every pair satisfies `||T v_i - theta_i v_i|| <= c m eps ||T||` and
//! `V^T V = I` to the same order. [`eigh_tridiagonal`] checks the residual of every pair
//! against [`residual_bound`] and fails with [`TridiagonalError::Residual`] rather than return
//! a wrong eigenvector.
//!
//! Reference: Bowdler, Martin, Reinsch & Wilkinson, "The QR and QL algorithms for symmetric
//! matrices", Numer. Math. 11 (1968) (Handbook for Automatic Computation II/3).

use nalgebra::DMatrix;
use thiserror::Error;

/// The constant `c` of [`residual_bound`]: `||T v - theta v|| <= c m eps ||T||_inf`. The
/// backward error of `tql2` is a small multiple of `m eps ||T||` (a few rotations per entry per
/// sweep, about 1.5 sweeps per eigenvalue); measured residuals on random tridiagonals up to
/// `m = 120` stay below `0.1 m eps ||T||`, so `c = 10` is two orders of margin while a wrong
/// eigenvector (residual ~ the eigenvalue gap) is still caught.
pub const RESIDUAL_FACTOR: f64 = 10.0;

/// Most QL sweeps per eigenvalue before [`TridiagonalError::NoConvergence`] (LAPACK `dsteqr`
/// allows 30; convergence is cubic, typically 1 to 3 sweeps).
pub const MAX_SWEEPS: usize = 30;

/// Why a tridiagonal eigendecomposition failed.
#[derive(Clone, Debug, PartialEq, Error)]
#[non_exhaustive]
pub enum TridiagonalError {
    /// The off-diagonal does not have length `diagonal.len() - 1`.
    #[error("`off_diagonal` has length {found}, expected {expected} (diagonal length - 1)")]
    LengthMismatch {
        /// The off-diagonal's length.
        found: usize,
        /// `diagonal.len() - 1`.
        expected: usize,
    },
    /// An entry is NaN or infinite.
    #[error("`{field}`: non-finite value at index {index}")]
    NonFinite {
        /// `"diagonal"` or `"off_diagonal"`.
        field: &'static str,
        /// The entry's index.
        index: usize,
    },
    /// The QL iteration did not deflate eigenvalue `index` within [`MAX_SWEEPS`] sweeps.
    #[error("QL iteration did not converge for eigenvalue {index} within {sweeps} sweeps")]
    NoConvergence {
        /// The eigenvalue (row) being deflated.
        index: usize,
        /// Sweeps done.
        sweeps: usize,
    },
    /// An eigenpair's residual `||T v - theta v||` exceeds [`residual_bound`].
    #[error("eigenpair {index} (theta = {theta}) has residual ||T v - theta v|| = {residual:e} > bound {bound:e}")]
    Residual {
        /// The pair's index (ascending order).
        index: usize,
        /// Its eigenvalue.
        theta: f64,
        /// `||T v - theta v||_2`.
        residual: f64,
        /// [`residual_bound`].
        bound: f64,
    },
}

/// The eigendecomposition `T = V diag(values) V^T` of a symmetric tridiagonal `T`.
#[derive(Clone, Debug, PartialEq)]
pub struct TridiagonalEigen {
    /// The eigenvalues, ascending.
    pub values: Vec<f64>,
    /// The orthonormal eigenvectors as columns (`m x m`), in the order of `values`.
    pub vectors: DMatrix<f64>,
}

/// `||T||_inf = max_i (|e_{i-1}| + |d_i| + |e_i|)`, an upper bound on `||T||_2` (`T` symmetric).
#[must_use]
pub fn norm_inf(diagonal: &[f64], off_diagonal: &[f64]) -> f64 {
    let m = diagonal.len();
    (0..m)
        .map(|i| {
            let left = if i > 0 {
                off_diagonal[i - 1].abs()
            } else {
                0.0
            };
            let right = if i + 1 < m {
                off_diagonal[i].abs()
            } else {
                0.0
            };
            left + diagonal[i].abs() + right
        })
        .fold(0.0, f64::max)
}

/// The largest residual [`eigh_tridiagonal`] accepts for an eigenpair of `T`.
///
/// # Formula
/// ```text
/// bound = RESIDUAL_FACTOR · max(m, 1) · eps · ||T||_inf,   eps = 2^-52
/// ```
/// (0 for the zero matrix, whose eigenpairs are exact.)
#[must_use]
pub fn residual_bound(diagonal: &[f64], off_diagonal: &[f64]) -> f64 {
    RESIDUAL_FACTOR * diagonal.len().max(1) as f64 * f64::EPSILON * norm_inf(diagonal, off_diagonal)
}

/// `||T v - theta v||_2` for the column `v` of `vectors` at `index`.
///
/// # Formula
/// ```text
/// (T v)_i = e_{i-1} v_{i-1} + d_i v_i + e_i v_{i+1}
/// ```
#[must_use]
pub fn residual(
    diagonal: &[f64],
    off_diagonal: &[f64],
    theta: f64,
    vectors: &DMatrix<f64>,
    index: usize,
) -> f64 {
    let m = diagonal.len();
    let v = vectors.column(index);
    (0..m)
        .map(|i| {
            let mut r = (diagonal[i] - theta) * v[i];
            if i > 0 {
                r += off_diagonal[i - 1] * v[i - 1];
            }
            if i + 1 < m {
                r += off_diagonal[i] * v[i + 1];
            }
            r * r
        })
        .sum::<f64>()
        .sqrt()
}

/// The eigendecomposition of the symmetric tridiagonal `T` with diagonal `diagonal`
/// (`d_0..d_{m-1}`) and off-diagonal `off_diagonal` (`e_0..e_{m-2}`, `T_{i,i+1} = e_i`) by
/// implicit QL with Wilkinson shifts (module docs), checked: every pair's residual is at most
/// [`residual_bound`].
///
/// # Errors
/// [`TridiagonalError::LengthMismatch`], [`TridiagonalError::NonFinite`] for bad input;
/// [`TridiagonalError::NoConvergence`] if an eigenvalue does not deflate in [`MAX_SWEEPS`]
/// sweeps; [`TridiagonalError::Residual`] if a pair fails the residual check.
///
/// # Examples
/// ```
/// use covlab::linalg::tridiagonal::eigh_tridiagonal;
/// // [[2, 1], [1, 2]] has eigenvalues 1 and 3.
/// let e = eigh_tridiagonal(&[2.0, 2.0], &[1.0]).unwrap();
/// assert!((e.values[0] - 1.0).abs() < 1e-15 && (e.values[1] - 3.0).abs() < 1e-15);
/// ```
pub fn eigh_tridiagonal(
    diagonal: &[f64],
    off_diagonal: &[f64],
) -> Result<TridiagonalEigen, TridiagonalError> {
    let m = diagonal.len();
    let expected = m.saturating_sub(1);
    if off_diagonal.len() != expected {
        return Err(TridiagonalError::LengthMismatch {
            found: off_diagonal.len(),
            expected,
        });
    }
    if let Some(index) = diagonal.iter().position(|v| !v.is_finite()) {
        return Err(TridiagonalError::NonFinite {
            field: "diagonal",
            index,
        });
    }
    if let Some(index) = off_diagonal.iter().position(|v| !v.is_finite()) {
        return Err(TridiagonalError::NonFinite {
            field: "off_diagonal",
            index,
        });
    }
    let (values, vectors) = tql2(diagonal, off_diagonal)?;
    let bound = residual_bound(diagonal, off_diagonal);
    for (index, &theta) in values.iter().enumerate() {
        let r = residual(diagonal, off_diagonal, theta, &vectors, index);
        // A NaN residual fails too.
        if r.is_nan() || r > bound {
            return Err(TridiagonalError::Residual {
                index,
                theta,
                residual: r,
                bound,
            });
        }
    }
    Ok(TridiagonalEigen { values, vectors })
}

/// The unchecked implicit QL iteration (EISPACK `tql2`); inputs already validated.
fn tql2(
    diagonal: &[f64],
    off_diagonal: &[f64],
) -> Result<(Vec<f64>, DMatrix<f64>), TridiagonalError> {
    let n = diagonal.len();
    let mut d = diagonal.to_vec();
    // e[i] = T_{i,i+1}; e[n-1] = 0 terminates the deflation search.
    let mut e = vec![0.0; n];
    e[..n.saturating_sub(1)].copy_from_slice(off_diagonal);
    let mut v = DMatrix::<f64>::identity(n, n);
    let eps = f64::EPSILON;
    let mut f = 0.0;
    let mut tst1 = 0.0f64;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        // Deflation: the first negligible off-diagonal at or below row l (e[n-1] = 0 stops it).
        let mut mm = l;
        while mm < n - 1 && e[mm].abs() > eps * tst1 {
            mm += 1;
        }
        if mm > l {
            let mut sweeps = 0;
            loop {
                if sweeps == MAX_SWEEPS {
                    return Err(TridiagonalError::NoConvergence { index: l, sweeps });
                }
                sweeps += 1;
                // Wilkinson shift from the leading 2 x 2 block of the unreduced part.
                let g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let h = g - d[l];
                for di in d.iter_mut().take(n).skip(l + 2) {
                    *di -= h;
                }
                f += h;
                // Implicit QL sweep from row mm up to row l.
                p = d[mm];
                let mut c = 1.0;
                let mut c2 = c;
                let mut c3 = c;
                let el1 = e[l + 1];
                let mut s = 0.0;
                let mut s2 = 0.0;
                for i in (l..mm).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    let g = c * e[i];
                    let h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    // V <- V G_i: columns i and i + 1 (contiguous in column-major storage).
                    for k in 0..n {
                        let h = v[(k, i + 1)];
                        let vi = v[(k, i)];
                        v[(k, i + 1)] = s * vi + c * h;
                        v[(k, i)] = c * vi - s * h;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| d[a].total_cmp(&d[b]));
    let values = order.iter().map(|&i| d[i]).collect();
    let vectors = DMatrix::from_fn(n, n, |r, c| v[(r, order[c])]);
    Ok((values, vectors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `max_ij |(S^T S - I)_ij|`.
    fn orthogonality(s: &DMatrix<f64>) -> f64 {
        let m = s.ncols();
        (s.transpose() * s - DMatrix::identity(m, m)).amax()
    }

    /// Checks residuals (against the bound the solver itself enforces) and orthogonality.
    fn check(d: &[f64], e: &[f64]) -> TridiagonalEigen {
        let eig = eigh_tridiagonal(d, e).unwrap();
        let m = d.len();
        assert_eq!(eig.values.len(), m);
        assert!(eig.values.windows(2).all(|w| w[0] <= w[1]));
        let tnorm = norm_inf(d, e);
        for i in 0..m {
            let r = residual(d, e, eig.values[i], &eig.vectors, i);
            assert!(r <= residual_bound(d, e), "m {m} pair {i}: residual {r}");
        }
        // Orthogonality: the accumulated rotations are orthogonal to rounding, O(m eps); the
        // same c m eps as the residual (independent of ||T||: V does not scale with T).
        let o = orthogonality(&eig.vectors);
        assert!(
            o <= RESIDUAL_FACTOR * m as f64 * f64::EPSILON,
            "m {m}: ||S^T S - I|| = {o}"
        );
        // Trace identity: sum theta = sum d, to rounding of m terms of size ||T||.
        let tr: f64 = d.iter().sum();
        let st: f64 = eig.values.iter().sum();
        assert!((tr - st).abs() <= RESIDUAL_FACTOR * m as f64 * f64::EPSILON * tnorm * m as f64);
        eig
    }

    #[test]
    fn random_tridiagonals_m_1_to_120() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        for m in 1usize..=120 {
            let d: Vec<f64> = (0..m).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let e: Vec<f64> = (0..m.saturating_sub(1))
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect();
            check(&d, &e);
            // Positive off-diagonal, graded scales (as Lanczos produces).
            let d: Vec<f64> = (0..m).map(|i| 10f64.powf(-(i as f64) / 20.0)).collect();
            let e: Vec<f64> = (0..m.saturating_sub(1))
                .map(|_| rng.gen_range(0.0..0.5))
                .collect();
            check(&d, &e);
        }
    }

    #[test]
    fn toeplitz_1_2_1_closed_form() {
        // tridiag(-1, 2, -1) of size m: theta_j = 2 - 2 cos(j pi / (m + 1)), j = 1..m, with
        // eigenvectors sin(i j pi / (m + 1)).
        for m in [1usize, 2, 3, 10, 57, 120] {
            let d = vec![2.0; m];
            let e = vec![-1.0; m - 1];
            let eig = check(&d, &e);
            for j in 1..=m {
                let want = 2.0 - 2.0 * (j as f64 * std::f64::consts::PI / (m + 1) as f64).cos();
                // Backward stable: each eigenvalue to c m eps ||T|| (||T|| <= 4).
                let tol = RESIDUAL_FACTOR * m as f64 * f64::EPSILON * 4.0;
                assert!(
                    (eig.values[j - 1] - want).abs() <= tol,
                    "m {m} j {j}: {} vs {want}",
                    eig.values[j - 1]
                );
            }
        }
    }

    #[test]
    fn clustered_and_repeated_eigenvalues() {
        // Direct sum of identical blocks via zero off-diagonals: each eigenvalue repeated.
        let block_d = [1.0, 2.0, 3.0];
        let block_e = [0.5, 0.5];
        let mut d = Vec::new();
        let mut e = Vec::new();
        for b in 0..5 {
            if b > 0 {
                e.push(0.0);
            }
            d.extend_from_slice(&block_d);
            e.extend_from_slice(&block_e);
        }
        let eig = check(&d, &e);
        // Each block's eigenvalues appear five times.
        let single = check(&block_d, &block_e);
        for (i, t) in eig.values.iter().enumerate() {
            // Same rotations on an exactly decoupled block: equal to rounding, c m eps ||T||.
            assert!((t - single.values[i / 5]).abs() < RESIDUAL_FACTOR * 15.0 * f64::EPSILON * 4.0);
        }
        // Wilkinson's W21+: pairs of eigenvalues agreeing to ~1e-15 (clusters).
        let m = 21;
        let d: Vec<f64> = (0..m).map(|i| (10.0 - i as f64).abs()).collect();
        let e = vec![1.0; m - 1];
        let eig = check(&d, &e);
        assert!((eig.values[m - 1] - eig.values[m - 2]).abs() < 1e-12);
        // Tiny off-diagonals: eigenvalues very close to the diagonal, nearly repeated.
        let d = vec![1.0, 1.0 + 1e-14, 1.0, 1.0 - 1e-14, 1.0];
        let e = vec![1e-15, 2e-15, 1e-15, 3e-15];
        check(&d, &e);
        // The identity and zero matrices.
        check(&[1.0; 7], &[0.0; 6]);
        let z = check(&[0.0; 4], &[0.0; 3]);
        assert!(z.values.iter().all(|v| v.abs() < 1e-300));
    }

    #[test]
    fn errors() {
        assert_eq!(
            eigh_tridiagonal(&[1.0, 2.0], &[]).unwrap_err(),
            TridiagonalError::LengthMismatch {
                found: 0,
                expected: 1
            }
        );
        assert_eq!(
            eigh_tridiagonal(&[1.0, f64::NAN], &[0.0]).unwrap_err(),
            TridiagonalError::NonFinite {
                field: "diagonal",
                index: 1
            }
        );
        assert_eq!(
            eigh_tridiagonal(&[1.0, 1.0], &[f64::INFINITY]).unwrap_err(),
            TridiagonalError::NonFinite {
                field: "off_diagonal",
                index: 0
            }
        );
        let empty = eigh_tridiagonal(&[], &[]).unwrap();
        assert!(empty.values.is_empty() && empty.vectors.is_empty());
        // The residual check catches a wrong eigenvector: swap two columns of a correct one.
        let (d, e) = ([2.0, 2.0, 2.0], [-1.0, -1.0]);
        let mut eig = eigh_tridiagonal(&d, &e).unwrap();
        eig.vectors.swap_columns(0, 1);
        assert!(residual(&d, &e, eig.values[0], &eig.vectors, 0) > residual_bound(&d, &e));
    }
}
