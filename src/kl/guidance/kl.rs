//! Gaussian KL divergences in 2-D, split into the covariance part
//! `0.5 sum_i (delta_i - ln(1 + delta_i))` and the mean part `0.5 dm^T Q^{-1} dm` of
//! `KL(N(m_p, P) || N(m_q, Q))`.

use nalgebra::{Matrix2, SymmetricEigen, Vector2};

use crate::numeric::u_minus_ln1p;

use super::Gauss2;

/// `M^{-1}` of a 2x2 matrix by the adjugate.
pub(super) fn inv2(m: &Matrix2<f64>) -> Matrix2<f64> {
    let det = m[(0, 0)] * m[(1, 1)] - m[(0, 1)] * m[(1, 0)];
    Matrix2::new(m[(1, 1)], -m[(0, 1)], -m[(1, 0)], m[(0, 0)]) / det
}

/// The covariance part of `KL(N(., P) || N(., Q))`:
/// `0.5 sum_i (delta_i - ln(1 + delta_i))` with `delta_i` the eigenvalues of
/// `L^{-1} (P - Q) L^{-T}`, `Q = L L^T`, which is free of cancellation when `P ~ Q`.
/// Returns `+inf` if `Q` is not positive definite.
#[must_use]
pub fn kl_cov_part(p: &Matrix2<f64>, q: &Matrix2<f64>) -> f64 {
    let Some(ch) = q.cholesky() else {
        return f64::INFINITY;
    };
    let l_inv = ch.l().try_inverse().unwrap_or_else(Matrix2::zeros);
    let d = l_inv * (p - q) * l_inv.transpose();
    let d = (d + d.transpose()) * 0.5;
    let e = SymmetricEigen::new(d).eigenvalues;
    0.5 * (u_minus_ln1p(e[0]) + u_minus_ln1p(e[1]))
}

/// The mean part `0.5 dm^T Q^{-1} dm` of a Gaussian KL with model covariance `Q`.
#[must_use]
pub fn kl_mean_part(dm: &Vector2<f64>, q: &Matrix2<f64>) -> f64 {
    0.5 * dm.dot(&(inv2(q) * dm))
}

/// `KL(N(m_p, P) || N(m_q, Q))`.
#[must_use]
pub fn gaussian_kl(p: &Gauss2, q: &Gauss2) -> f64 {
    kl_cov_part(&p.cov, &q.cov) + kl_mean_part(&(p.mean - q.mean), &q.cov)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_parts_match_the_textbook_formula() {
        let p = Gauss2 {
            mean: Vector2::new(0.3, -0.2),
            cov: Matrix2::new(2.0, 0.3, 0.3, 1.0),
        };
        let q = Gauss2 {
            mean: Vector2::new(-0.1, 0.4),
            cov: Matrix2::new(1.5, -0.2, -0.2, 0.7),
        };
        let qi = inv2(&q.cov);
        let dm = p.mean - q.mean;
        let text = 0.5
            * ((qi * p.cov).trace() - 2.0
                + (q.cov.determinant() / p.cov.determinant()).ln()
                + dm.dot(&(qi * dm)));
        // 1e-14: O(1) KL, both routes a few dozen flops.
        assert!((gaussian_kl(&p, &q) - text).abs() < 1e-14);
    }
}
