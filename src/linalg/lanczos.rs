//! Lanczos approximation of `f(C) z` for a symmetric operator `C` known only through products,
//! in particular the Gaussian-sampler product `C^{1/2} z` (`docs/lanczos.md`).
//!
//! # Algorithm
//! ```text
//! q_1 = z / ||z||,  beta_0 = 0
//! for j = 1..k:
//!     w = C q_j - beta_{j-1} q_{j-1};   alpha_j = q_j . w;   w -= alpha_j q_j
//!     w -= Q_j (Q_j^T w)   (twice: classical Gram-Schmidt against q_1..q_j, two passes)
//!     beta_j = ||w||;  stop early if beta_j <= breakdown_tol * max_i ||C q_i||
//!     q_{j+1} = w / beta_j
//! T_m = tridiag(beta, alpha, beta) = S diag(theta) S^T   (m <= k steps done; implicit QL,
//!       every pair checked: ||T_m s_i - theta_i s_i|| <= 10 m eps ||T_m||, crate::linalg::tridiagonal)
//! f(C) z ≈ y_m = ||z|| Q_m f(T_m) e_1 = ||z|| Q_m S diag(f(theta)) S^T e_1
//! ```
//! Cost: `m` products with `C` and `O(D m^2)` flops of re-orthogonalisation.
//!
//! # Safeguards
//! - Full re-orthogonalisation (two classical Gram-Schmidt passes, "twice is enough") keeps
//!   `Q_m` orthonormal to rounding, so the Ritz values `theta_i` lie in `[lambda_min, lambda_max]`
//!   of `C` and no spurious copies appear.
//! - Early termination: when `beta_j` is negligible the Krylov space is invariant under `C`,
//!   and `y_m = f(C) z` exactly (up to rounding); the same holds when `m` reaches `D`.
//! - Optional clamping of the Ritz values to `[lower, upper]` (the variance bounds of the LGS
//!   paper, appendix E) before `f` is applied.
//! - Every product `C q_j` is checked for non-finite values; `sqrt` and `inv_sqrt` refuse
//!   non-positive Ritz values (the operator is then not positive definite).
//!
//! # Error bound
//! For SPD `C` with spectrum in `[lmin, lmax]` (Musco, Musco & Sidford, "Stability of the
//! Lanczos method for matrix function approximation", SODA 2018, Theorem 1 in exact
//! arithmetic): `||f(C) z - y_k|| <= 2 ||z|| E_{k-1}`, where
//! `E_n = min_{deg p <= n} max_{x in [lmin, lmax]} |f(x) - p(x)|`. For `f = sqrt` the
//! Chebyshev series on the Bernstein ellipse gives `E_n = O(rho^{-n})`,
//! `rho = (sqrt(kappa) + 1) / (sqrt(kappa) - 1)`, `kappa = lmax / lmin`
//! (in [`super::lanczos_bounds`]).

use nalgebra::DMatrix;

use thiserror::Error;

pub use super::operator::{CountingOperator, DenseOperator, LinearOperator};
use crate::linalg::tridiagonal::{eigh_tridiagonal, TridiagonalError};

/// The default `breakdown_tol` of [`LanczosParams::new`]: `beta_j <= 1e-12 · max ||C q_i||`
/// counts as an invariant Krylov space (about 5000 ulps of the operator's scale).
pub const DEFAULT_BREAKDOWN_TOL: f64 = 1e-12;

/// The relative asymmetry [`DenseOperator::new`] accepts: `|a_ij - a_ji| <= 1e-10 · max |a|`.
pub const SYMMETRY_TOL: f64 = 1e-10;

/// Why a Lanczos approximation could not be made.
#[derive(Clone, Debug, PartialEq, Error)]
#[non_exhaustive]
pub enum LanczosError {
    /// `k = 0`: at least one step (one product with `C`) is needed.
    #[error("`k` must be >= 1 (got 0)")]
    ZeroSteps,
    /// The starting vector is empty or all zeros, so `q_1 = z / ||z||` is undefined.
    #[error("`z` must be non-empty and non-zero (length {len}, ||z|| = 0)")]
    ZeroVector {
        /// The length of `z`.
        len: usize,
    },
    /// A vector's length differs from the operator's dimension.
    #[error("`{field}` has length {found} but the operator has dimension {expected}")]
    DimensionMismatch {
        /// The offending argument, e.g. `"z"`.
        field: &'static str,
        /// Its length.
        found: usize,
        /// The operator's dimension.
        expected: usize,
    },
    /// A non-finite value: in `z` (`index` = entry), in a product `C q_j` (`field = "C q"`,
    /// `index` = the step `j`, from 1) or in a matrix (`index` = column-major entry).
    #[error("`{field}`: non-finite value at index {index}")]
    NonFinite {
        /// Where: `"z"`, `"C q"` or `"matrix"`.
        field: &'static str,
        /// The entry index or Lanczos step.
        index: usize,
    },
    /// `sqrt`/`inv_sqrt` met a (clamped) Ritz value `<= 0`: the operator is not positive
    /// definite (Ritz values are Rayleigh quotients of `C`).
    #[error("`ritz_value` = {ritz_value} <= 0 (Ritz value {index}): the operator is not positive definite")]
    NonPositive {
        /// The offending Ritz value (after clamping).
        ritz_value: f64,
        /// Its index in ascending order.
        index: usize,
    },
    /// The Ritz clamp is not an interval `0 < lower <= upper` of finite numbers.
    #[error("`clamp` = [{lower}, {upper}] is invalid: need finite 0 < lower <= upper")]
    InvalidClamp {
        /// The requested lower bound.
        lower: f64,
        /// The requested upper bound.
        upper: f64,
    },
    /// `breakdown_tol` is negative or not finite.
    #[error("`breakdown_tol` = {value} is invalid: need finite >= 0")]
    InvalidTolerance {
        /// The requested tolerance.
        value: f64,
    },
    /// A matrix given to [`DenseOperator::new`] is not square.
    #[error("`matrix` is {rows} x {cols}, not square")]
    NotSquare {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// A matrix given to [`DenseOperator::new`] is not symmetric to [`SYMMETRY_TOL`].
    #[error("`matrix` is not symmetric: |a[{row},{col}] - a[{col},{row}]| = {asymmetry}")]
    NotSymmetric {
        /// Row of the first offending entry.
        row: usize,
        /// Column of the first offending entry.
        col: usize,
        /// `|a_ij - a_ji|`.
        asymmetry: f64,
    },
    /// The symmetric QR iteration on `T_m` did not converge (not expected for finite `T_m`).
    #[error("eigendecomposition of the {steps} x {steps} tridiagonal T did not converge")]
    EigenFailed {
        /// The size `m` of `T_m`.
        steps: usize,
    },
    /// An eigenpair `(theta, s)` of `T_m` from the QL iteration has residual
    /// `||T_m s - theta s||` above [`crate::linalg::tridiagonal::residual_bound`]
    /// (`10 m eps ||T_m||_inf`): its Ritz vector, and so `f(T_m) e_1`, would be wrong.
    #[error("eigendecomposition of the {steps} x {steps} tridiagonal T is inaccurate: pair {index} has residual {residual:e} > {bound:e}")]
    EigenInaccurate {
        /// The size `m` of `T_m`.
        steps: usize,
        /// The pair's index (ascending Ritz values).
        index: usize,
        /// `||T_m s - theta s||`.
        residual: f64,
        /// The accepted bound.
        bound: f64,
    },
}

/// Parameters of [`lanczos`].
#[derive(Clone, Debug, PartialEq)]
pub struct LanczosParams {
    /// The largest number of steps (products with `C`), `k >= 1`; fewer are done when the
    /// Krylov space becomes invariant or `k > D`.
    pub k: usize,
    /// Early termination when `beta_j <= breakdown_tol · max_{i <= j} ||C q_i||` (finite, `>= 0`;
    /// default [`DEFAULT_BREAKDOWN_TOL`]).
    pub breakdown_tol: f64,
    /// Clamp the Ritz values to `[lower, upper]` before applying `f` (`0 < lower <= upper`).
    pub clamp: Option<(f64, f64)>,
}

impl LanczosParams {
    /// `k` steps, `breakdown_tol = 1e-12`, no clamp.
    #[must_use]
    pub fn new(k: usize) -> Self {
        Self {
            k,
            breakdown_tol: DEFAULT_BREAKDOWN_TOL,
            clamp: None,
        }
    }

    /// The same parameters with the Ritz values clamped to `[lower, upper]` (checked by
    /// [`lanczos`]).
    #[must_use]
    pub fn with_clamp(mut self, lower: f64, upper: f64) -> Self {
        self.clamp = Some((lower, upper));
        self
    }

    /// Checks `k >= 1`, the tolerance and the clamp.
    fn validate(&self) -> Result<(), LanczosError> {
        if self.k == 0 {
            return Err(LanczosError::ZeroSteps);
        }
        if !(self.breakdown_tol.is_finite() && self.breakdown_tol >= 0.0) {
            return Err(LanczosError::InvalidTolerance {
                value: self.breakdown_tol,
            });
        }
        if let Some((lower, upper)) = self.clamp {
            if !(lower.is_finite() && upper.is_finite() && lower > 0.0 && lower <= upper) {
                return Err(LanczosError::InvalidClamp { lower, upper });
            }
        }
        Ok(())
    }
}

/// The result of `m` Lanczos steps from `z`: the orthonormal basis `Q_m`, the tridiagonal
/// `T_m` and its eigendecomposition, ready to apply any `f` as `||z|| Q_m f(T_m) e_1`.
#[derive(Clone, Debug)]
pub struct Krylov {
    /// `Q_m`, D x m with orthonormal columns `q_1..q_m`.
    basis: DMatrix<f64>,
    /// `alpha_1..alpha_m` (diagonal of `T_m`).
    alpha: Vec<f64>,
    /// `beta_1..beta_{m-1}` (off-diagonal of `T_m`).
    beta: Vec<f64>,
    /// `||z||`.
    z_norm: f64,
    /// Whether fewer than `k` steps were done (invariant Krylov space: the result is exact).
    terminated_early: bool,
    /// Eigenvalues of `T_m`, ascending, before clamping.
    ritz_raw: Vec<f64>,
    /// The same after clamping (equal to `ritz_raw` without a clamp).
    ritz: Vec<f64>,
    /// `S^T e_1`: the first components of the eigenvectors of `T_m` (same order as `ritz`).
    first: Vec<f64>,
    /// The eigenvectors `S` of `T_m` as columns (m x m).
    vectors: DMatrix<f64>,
    /// The Ritz clamp of the parameters.
    clamp: Option<(f64, f64)>,
}

/// `||v||_2` without overflow or underflow: `s sqrt(sum (v_i / s)^2)`, `s = max |v_i|`.
fn norm2(v: &[f64]) -> f64 {
    let s = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if s == 0.0 || !s.is_finite() {
        return s;
    }
    s * v.iter().map(|x| (x / s) * (x / s)).sum::<f64>().sqrt()
}

/// `u . v`.
fn dot(u: &[f64], v: &[f64]) -> f64 {
    u.iter().zip(v).map(|(a, b)| a * b).sum()
}

/// Runs up to `params.k` Lanczos steps on `op` from `z` (module docs for the recurrence).
///
/// # Formula
/// ```text
/// alpha_j = q_j . C q_j,  beta_j = ||(I - Q_j Q_j^T) C q_j||,  T_m = Q_m^T C Q_m
/// ```
/// The number of steps is `m = min(k, D)`, or the first `j` with
/// `beta_j <= breakdown_tol · max_{i <= j} ||C q_i||` (then `terminated_early()` is true, as it
/// is when `m = D < k`).
///
/// # Errors
/// [`LanczosError::ZeroSteps`], [`LanczosError::InvalidTolerance`],
/// [`LanczosError::InvalidClamp`] for bad `params`; [`LanczosError::DimensionMismatch`]
/// (`field = "z"`), [`LanczosError::NonFinite`] (`field = "z"`) and
/// [`LanczosError::ZeroVector`] for a bad `z`; [`LanczosError::NonFinite`] (`field = "C q"`)
/// when a product returns a NaN or infinity; [`LanczosError::EigenFailed`] if the eigensolver
/// of `T_m` fails, [`LanczosError::EigenInaccurate`] if an eigenpair fails its residual check.
///
/// # Examples
/// ```
/// use covlab::linalg::lanczos::{lanczos, LanczosParams};
/// use nalgebra::DMatrix;
/// let c = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![1.0, 4.0, 9.0]));
/// let kry = lanczos(&c, &[1.0, 1.0, 1.0], &LanczosParams::new(3)).unwrap();
/// let y = kry.sqrt().unwrap();
/// for (yi, want) in y.iter().zip([1.0, 2.0, 3.0]) {
///     assert!((yi - want).abs() < 1e-12);
/// }
/// ```
pub fn lanczos<O: LinearOperator + ?Sized>(
    op: &O,
    z: &[f64],
    params: &LanczosParams,
) -> Result<Krylov, LanczosError> {
    params.validate()?;
    let d = op.dim();
    if z.len() != d {
        return Err(LanczosError::DimensionMismatch {
            field: "z",
            found: z.len(),
            expected: d,
        });
    }
    if let Some(index) = z.iter().position(|v| !v.is_finite()) {
        return Err(LanczosError::NonFinite { field: "z", index });
    }
    let z_norm = norm2(z);
    if z_norm.is_nan() || z_norm <= 0.0 || z_norm.is_infinite() {
        return Err(LanczosError::ZeroVector { len: z.len() });
    }

    let kmax = params.k.min(d);
    // Columns are contiguous in nalgebra's column-major storage.
    let mut q = DMatrix::<f64>::zeros(d, kmax);
    for (qi, zi) in q.column_mut(0).iter_mut().zip(z) {
        *qi = zi / z_norm;
    }
    let mut alpha = Vec::with_capacity(kmax);
    let mut beta: Vec<f64> = Vec::with_capacity(kmax);
    let mut w = vec![0.0; d];
    let mut h = vec![0.0; kmax];
    let mut scale = 0.0f64;
    let mut terminated_early = false;
    let mut m = 0;
    while m < kmax {
        let j = m;
        op.apply(q.column(j).as_slice(), &mut w);
        if w.iter().any(|v| !v.is_finite()) {
            return Err(LanczosError::NonFinite {
                field: "C q",
                index: j + 1,
            });
        }
        scale = scale.max(norm2(&w));
        if j > 0 {
            let b = beta[j - 1];
            for (wi, qi) in w.iter_mut().zip(q.column(j - 1).iter()) {
                *wi -= b * qi;
            }
        }
        let a = dot(q.column(j).as_slice(), &w);
        for (wi, qi) in w.iter_mut().zip(q.column(j).iter()) {
            *wi -= a * qi;
        }
        alpha.push(a);
        // Two passes of classical Gram-Schmidt against q_1..q_{j+1}.
        for _ in 0..2 {
            for (i, hi) in h.iter_mut().enumerate().take(j + 1) {
                *hi = dot(q.column(i).as_slice(), &w);
            }
            for i in 0..=j {
                let hi = h[i];
                for (wi, qi) in w.iter_mut().zip(q.column(i).iter()) {
                    *wi -= hi * qi;
                }
            }
        }
        m = j + 1;
        if m == params.k {
            break;
        }
        let b = norm2(&w);
        if m == d || b <= params.breakdown_tol * scale {
            terminated_early = true;
            break;
        }
        beta.push(b);
        for (qi, wi) in q.column_mut(m).iter_mut().zip(&w) {
            *qi = wi / b;
        }
    }
    let basis = if m == kmax {
        q
    } else {
        q.columns(0, m).into_owned()
    };

    finish(basis, alpha, beta, z_norm, terminated_early, params.clamp)
}

/// Eigendecomposes `T_m` from `alpha`, `beta` and assembles the [`Krylov`].
fn finish(
    basis: DMatrix<f64>,
    alpha: Vec<f64>,
    beta: Vec<f64>,
    z_norm: f64,
    terminated_early: bool,
    clamp: Option<(f64, f64)>,
) -> Result<Krylov, LanczosError> {
    let m = alpha.len();
    let eig = eigh_tridiagonal(&alpha, &beta).map_err(|e| match e {
        TridiagonalError::Residual {
            index,
            residual,
            bound,
            ..
        } => LanczosError::EigenInaccurate {
            steps: m,
            index,
            residual,
            bound,
        },
        _ => LanczosError::EigenFailed { steps: m },
    })?;
    let ritz_raw = eig.values;
    let vectors = eig.vectors;
    let first: Vec<f64> = (0..m).map(|c| vectors[(0, c)]).collect();
    let ritz = match clamp {
        Some((lo, hi)) => ritz_raw.iter().map(|t| t.clamp(lo, hi)).collect(),
        None => ritz_raw.clone(),
    };
    Ok(Krylov {
        basis,
        alpha,
        beta,
        z_norm,
        terminated_early,
        ritz_raw,
        ritz,
        first,
        vectors,
        clamp,
    })
}

impl Krylov {
    /// The number of steps `m` done (products with `C`).
    #[must_use]
    pub fn steps(&self) -> usize {
        self.alpha.len()
    }

    /// Whether fewer than `k` steps were done because the Krylov space became invariant
    /// (`beta_m` negligible, or `m = D`): then `apply_fn` is exact up to rounding.
    #[must_use]
    pub fn terminated_early(&self) -> bool {
        self.terminated_early
    }

    /// The Ritz values (eigenvalues of `T_m`), ascending, clamped if the parameters had a clamp.
    #[must_use]
    pub fn ritz_values(&self) -> &[f64] {
        &self.ritz
    }

    /// The Ritz values before clamping, ascending.
    #[must_use]
    pub fn unclamped_ritz_values(&self) -> &[f64] {
        &self.ritz_raw
    }

    /// The diagonal `alpha_1..alpha_m` of `T_m`.
    #[must_use]
    pub fn alpha(&self) -> &[f64] {
        &self.alpha
    }

    /// The off-diagonal `beta_1..beta_{m-1}` of `T_m`.
    #[must_use]
    pub fn beta(&self) -> &[f64] {
        &self.beta
    }

    /// The first `k` steps alone: the same result as [`lanczos`] run with `k` steps (bit for bit:
    /// the recurrence does the same operations), without new products, so a sweep over
    /// `k = 1..kmax` costs `kmax` products instead of `kmax^2 / 2`. With `k >= steps()` it is a
    /// copy of `self`; a prefix `k < steps()` has `terminated_early() == false`.
    ///
    /// # Errors
    /// [`LanczosError::ZeroSteps`] for `k = 0`; [`LanczosError::EigenFailed`],
    /// [`LanczosError::EigenInaccurate`] from the eigensolver.
    pub fn prefix(&self, k: usize) -> Result<Krylov, LanczosError> {
        if k == 0 {
            return Err(LanczosError::ZeroSteps);
        }
        if k >= self.steps() {
            return Ok(self.clone());
        }
        finish(
            self.basis.columns(0, k).into_owned(),
            self.alpha[..k].to_vec(),
            self.beta[..k - 1].to_vec(),
            self.z_norm,
            false,
            self.clamp,
        )
    }

    /// `||z||`.
    #[must_use]
    pub fn z_norm(&self) -> f64 {
        self.z_norm
    }

    /// The basis `Q_m` (D x m, orthonormal columns).
    #[must_use]
    pub fn basis(&self) -> &DMatrix<f64> {
        &self.basis
    }

    /// `y = ||z|| Q_m f(T_m) e_1` with `f` applied to the (clamped) Ritz values.
    ///
    /// # Formula
    /// ```text
    /// T_m = S diag(theta) S^T,   y = ||z|| Q_m S (f(theta_i) S_{1i})_i
    /// ```
    #[must_use]
    pub fn apply_fn(&self, f: impl Fn(f64) -> f64) -> Vec<f64> {
        let m = self.steps();
        let coef: Vec<f64> = (0..m)
            .map(|i| f(self.ritz[i]) * self.first[i] * self.z_norm)
            .collect();
        // c = S coef, y = Q c.
        let c: Vec<f64> = (0..m)
            .map(|r| (0..m).map(|i| self.vectors[(r, i)] * coef[i]).sum())
            .collect();
        let d = self.basis.nrows();
        let mut y = vec![0.0; d];
        for (j, cj) in c.iter().enumerate() {
            for (yi, qi) in y.iter_mut().zip(self.basis.column(j).iter()) {
                *yi += cj * qi;
            }
        }
        y
    }

    /// Checks that every (clamped) Ritz value is `> 0`.
    fn check_positive(&self) -> Result<(), LanczosError> {
        match self.ritz.iter().position(|&t| t.is_nan() || t <= 0.0) {
            Some(index) => Err(LanczosError::NonPositive {
                ritz_value: self.ritz[index],
                index,
            }),
            None => Ok(()),
        }
    }

    /// `C^{1/2} z ≈ ||z|| Q_m T_m^{1/2} e_1`.
    ///
    /// # Errors
    /// [`LanczosError::NonPositive`] if a (clamped) Ritz value is `<= 0`.
    pub fn sqrt(&self) -> Result<Vec<f64>, LanczosError> {
        self.check_positive()?;
        Ok(self.apply_fn(f64::sqrt))
    }

    /// `C^{-1/2} z ≈ ||z|| Q_m T_m^{-1/2} e_1`.
    ///
    /// # Errors
    /// [`LanczosError::NonPositive`] if a (clamped) Ritz value is `<= 0`.
    pub fn inv_sqrt(&self) -> Result<Vec<f64>, LanczosError> {
        self.check_positive()?;
        Ok(self.apply_fn(|t| 1.0 / t.sqrt()))
    }
}

/// `C^{1/2} z` by `params.k` Lanczos steps: [`lanczos`] then [`Krylov::sqrt`].
///
/// # Errors
/// Those of [`lanczos`] and [`Krylov::sqrt`].
pub fn sqrt_mul<O: LinearOperator + ?Sized>(
    op: &O,
    z: &[f64],
    params: &LanczosParams,
) -> Result<Vec<f64>, LanczosError> {
    lanczos(op, z, params)?.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::lanczos_bounds::*;
    use crate::stats::rates::fit_geometric_decay;
    use nalgebra::DVector;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    /// A random orthogonal D x D matrix: Q of the QR factorisation of a Gaussian matrix.
    fn random_orthogonal(d: usize, rng: &mut ChaCha8Rng) -> DMatrix<f64> {
        let g = DMatrix::from_fn(d, d, |_, _| StandardNormal.sample(rng));
        g.qr().q()
    }

    /// `V diag(l) V^T` symmetrised, with its `V`.
    fn spd(l: &[f64], rng: &mut ChaCha8Rng) -> (DMatrix<f64>, DMatrix<f64>) {
        let d = l.len();
        let v = random_orthogonal(d, rng);
        let c = &v * DMatrix::from_diagonal(&DVector::from_column_slice(l)) * v.transpose();
        ((&c + c.transpose()) * 0.5, v)
    }

    /// `V diag(f(l)) V^T z`.
    fn reference(v: &DMatrix<f64>, l: &[f64], z: &[f64], f: impl Fn(f64) -> f64) -> Vec<f64> {
        let mut w = v.transpose() * DVector::from_column_slice(z);
        for (wi, li) in w.iter_mut().zip(l) {
            *wi *= f(*li);
        }
        (v * w).iter().copied().collect()
    }

    fn gaussian(d: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
        (0..d).map(|_| StandardNormal.sample(rng)).collect()
    }

    fn rel(a: &[f64], b: &[f64]) -> f64 {
        let diff: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        norm2(&diff) / norm2(b)
    }

    #[test]
    fn full_krylov_reproduces_sqrt_and_inv_sqrt() {
        let d = 50;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let l: Vec<f64> = (0..d)
            .map(|i| 0.01 * 100f64.powf(i as f64 / (d - 1) as f64))
            .collect();
        let (c, v) = spd(&l, &mut rng);
        let z = gaussian(d, &mut rng);
        let kry = lanczos(&c, &z, &LanczosParams::new(d)).unwrap();
        assert_eq!(kry.steps(), d);
        // Q orthonormal and f(T) computed from a backward-stable eigensolver: the error is a few
        // hundred ulps times kappa^{1/2} = 10 at worst; 1e-10 is the issue's tolerance.
        let y = kry.sqrt().unwrap();
        let e = rel(&y, &reference(&v, &l, &z, f64::sqrt));
        assert!(e < 1e-10, "sqrt relative error {e}");
        let y = kry.inv_sqrt().unwrap();
        let e = rel(&y, &reference(&v, &l, &z, |t| 1.0 / t.sqrt()));
        assert!(e < 1e-10, "inv_sqrt relative error {e}");
        // Q^T Q = I to rounding (two-pass Gram-Schmidt): 50 columns, entries ~1e-15.
        let q = kry.basis();
        let ortho = (q.transpose() * q - DMatrix::identity(d, d)).amax();
        assert!(ortho < 1e-12, "loss of orthogonality {ortho}");
        // Ritz values at k = D are the eigenvalues, to rounding relative to lmax = 1.
        for (t, li) in kry.ritz_values().iter().zip(&l) {
            assert!((t - li).abs() < 1e-12, "{t} vs {li}");
        }
    }

    #[test]
    fn error_within_a_priori_bound() {
        let d = 200;
        for (seed, kappa) in [(10u64, 10.0f64), (11, 100.0)] {
            for geometric in [true, false] {
                let mut rng = ChaCha8Rng::seed_from_u64(seed + u64::from(geometric));
                let lmin = 1.0 / kappa;
                let l: Vec<f64> = (0..d)
                    .map(|i| {
                        let t = i as f64 / (d - 1) as f64;
                        if geometric {
                            lmin * kappa.powf(t)
                        } else {
                            lmin + (1.0 - lmin) * t
                        }
                    })
                    .collect();
                let (c, v) = spd(&l, &mut rng);
                let z = gaussian(d, &mut rng);
                let want = reference(&v, &l, &z, f64::sqrt);
                let zn = norm2(&z);
                for k in 1..=30 {
                    let y = sqrt_mul(&c, &z, &LanczosParams::new(k)).unwrap();
                    let diff: Vec<f64> = y.iter().zip(&want).map(|(a, b)| a - b).collect();
                    let err = norm2(&diff) / zn;
                    let bound = sqrt_error_bound(l[0], l[d - 1], k);
                    // The theorem holds in exact arithmetic; rounding adds ~1e-15, far below the
                    // bound here (>= 1e-9 at k = 30, kappa = 10), so no slack is granted.
                    assert!(
                        err <= bound,
                        "kappa {kappa} geometric {geometric} k {k}: {err} > {bound}"
                    );
                }
            }
        }
    }

    #[test]
    fn early_termination_on_three_eigenvalues() {
        let d = 100;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let l: Vec<f64> = (0..d).map(|i| [0.5, 2.0, 7.0][i % 3]).collect();
        let (c, v) = spd(&l, &mut rng);
        let z = gaussian(d, &mut rng);
        let kry = lanczos(&c, &z, &LanczosParams::new(20)).unwrap();
        assert!(kry.steps() <= 3, "steps {}", kry.steps());
        assert!(kry.terminated_early());
        // The Krylov space is invariant after 3 steps: y is exact up to rounding of C (whose
        // entries carry ~1e-15 error from V diag(l) V^T), well below 1e-12.
        let e = rel(&kry.sqrt().unwrap(), &reference(&v, &l, &z, f64::sqrt));
        assert!(e < 1e-12, "relative error {e}");
    }

    #[test]
    fn error_paths() {
        let c = DMatrix::<f64>::identity(4, 4);
        let z = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(
            lanczos(&c, &z, &LanczosParams::new(0)).unwrap_err(),
            LanczosError::ZeroSteps
        );
        assert_eq!(
            lanczos(&c, &z[..3], &LanczosParams::new(2)).unwrap_err(),
            LanczosError::DimensionMismatch {
                field: "z",
                found: 3,
                expected: 4
            }
        );
        assert_eq!(
            lanczos(&c, &[1.0, f64::NAN, 0.0, 0.0], &LanczosParams::new(2)).unwrap_err(),
            LanczosError::NonFinite {
                field: "z",
                index: 1
            }
        );
        assert_eq!(
            lanczos(&c, &[0.0; 4], &LanczosParams::new(2)).unwrap_err(),
            LanczosError::ZeroVector { len: 4 }
        );
        let empty = DMatrix::<f64>::zeros(0, 0);
        assert_eq!(
            lanczos(&empty, &[], &LanczosParams::new(1)).unwrap_err(),
            LanczosError::ZeroVector { len: 0 }
        );
        // Negative definite: Lanczos itself is fine, the square root is not.
        let neg = DMatrix::from_diagonal(&DVector::from_vec(vec![-1.0, -2.0, -3.0, -4.0]));
        let kry = lanczos(&neg, &z, &LanczosParams::new(2)).unwrap();
        assert!(matches!(
            kry.sqrt(),
            Err(LanczosError::NonPositive { ritz_value, .. }) if ritz_value < 0.0
        ));
        assert!(matches!(
            kry.inv_sqrt(),
            Err(LanczosError::NonPositive { .. })
        ));
        // Indefinite with k = D: every eigenvalue is a Ritz value, so -1 is met.
        let ind = DMatrix::from_diagonal(&DVector::from_vec(vec![-1.0, 2.0, 3.0, 4.0]));
        assert!(matches!(
            sqrt_mul(&ind, &z, &LanczosParams::new(4)),
            Err(LanczosError::NonPositive { index: 0, .. })
        ));
        // A product returning NaN.
        let nan = DMatrix::from_element(4, 4, f64::NAN);
        assert_eq!(
            lanczos(&nan, &z, &LanczosParams::new(2)).unwrap_err(),
            LanczosError::NonFinite {
                field: "C q",
                index: 1
            }
        );
        for (lo, hi) in [
            (0.0, 1.0),
            (2.0, 1.0),
            (f64::NAN, 1.0),
            (1.0, f64::INFINITY),
        ] {
            let p = LanczosParams::new(2).with_clamp(lo, hi);
            assert!(matches!(
                lanczos(&c, &z, &p),
                Err(LanczosError::InvalidClamp { .. })
            ));
        }
        let p = LanczosParams {
            breakdown_tol: -1.0,
            ..LanczosParams::new(2)
        };
        assert_eq!(
            lanczos(&c, &z, &p).unwrap_err(),
            LanczosError::InvalidTolerance { value: -1.0 }
        );
        // Messages name the field.
        let msg = lanczos(&c, &z[..3], &LanczosParams::new(2))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`z`"), "{msg}");
        assert!(LanczosError::ZeroSteps.to_string().contains("`k`"));
        // Dense operator validation.
        assert_eq!(
            DenseOperator::new(DMatrix::zeros(2, 3)).unwrap_err(),
            LanczosError::NotSquare { rows: 2, cols: 3 }
        );
        assert!(matches!(
            DenseOperator::new(DMatrix::from_row_slice(2, 2, &[1.0, 0.5, 0.4, 1.0])),
            Err(LanczosError::NotSymmetric { row: 0, col: 1, .. })
        ));
        assert!(matches!(
            DenseOperator::new(DMatrix::from_row_slice(
                2,
                2,
                &[1.0, 0.0, 0.0, f64::INFINITY]
            )),
            Err(LanczosError::NonFinite {
                field: "matrix",
                index: 3
            })
        ));
        fn send_sync<T: Send + Sync + std::error::Error + 'static>() {}
        send_sync::<LanczosError>();
        send_sync::<crate::Error>();
    }

    #[test]
    fn ritz_clamp() {
        let d = 30;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let l: Vec<f64> = (0..d).map(|i| 0.01 + i as f64 / (d - 1) as f64).collect();
        let (c, _) = spd(&l, &mut rng);
        let z = gaussian(d, &mut rng);
        let (lo, hi) = (0.1, 0.5);
        let kry = lanczos(&c, &z, &LanczosParams::new(12).with_clamp(lo, hi)).unwrap();
        assert!(kry.ritz_values().iter().all(|&t| (lo..=hi).contains(&t)));
        // The raw Ritz values do reach outside (the spectrum is [0.01, 1.01]).
        let raw = kry.unclamped_ritz_values();
        assert!(raw[0] < lo && raw[raw.len() - 1] > hi);
        // C = c I: y = sqrt(clamp(c)) z, with c below, inside and above the range.
        for (cval, want) in [(0.01, lo), (0.3, 0.3), (4.0, hi)] {
            let ci = DMatrix::<f64>::identity(d, d) * cval;
            let kry = lanczos(&ci, &z, &LanczosParams::new(5).with_clamp(lo, hi)).unwrap();
            // One step: T = [c] exactly, beta_1 = 0, so the Krylov space is invariant at once.
            assert_eq!(kry.steps(), 1);
            assert!(kry.terminated_early());
            let y = kry.sqrt().unwrap();
            for (yi, zi) in y.iter().zip(&z) {
                // Two roundings (q = z/||z||, then ||z|| q): a few ulps of |z_i|.
                assert!((yi - want.sqrt() * zi).abs() < 1e-14 * zi.abs().max(1.0));
            }
        }
    }

    #[test]
    fn counting_operator_counts_products() {
        let d = 40;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let l: Vec<f64> = (0..d).map(|i| 1.0 + i as f64).collect();
        let (c, _) = spd(&l, &mut rng);
        let z = gaussian(d, &mut rng);
        for k in [1, 5, 17, 39] {
            let counted = CountingOperator::new(&c);
            let kry = lanczos(&counted, &z, &LanczosParams::new(k)).unwrap();
            assert!(!kry.terminated_early());
            assert_eq!(kry.steps(), k);
            assert_eq!(counted.count(), k);
        }
        // k > D: D products, then the space is the whole of R^D.
        let counted = CountingOperator::new(&c);
        let kry = lanczos(&counted, &z, &LanczosParams::new(d + 5)).unwrap();
        assert_eq!((counted.count(), kry.steps()), (d, d));
        assert!(kry.terminated_early());
        // Through a trait object as well.
        let dynop: &dyn LinearOperator = &c;
        let counted = CountingOperator::new(dynop);
        lanczos(&counted, &z, &LanczosParams::new(3)).unwrap();
        assert_eq!(counted.count(), 3);
    }

    #[test]
    fn prefix_equals_a_shorter_run() {
        let d = 60;
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let l: Vec<f64> = (0..d).map(|i| 0.1 + i as f64).collect();
        let (c, _) = spd(&l, &mut rng);
        let z = gaussian(d, &mut rng);
        let p = LanczosParams::new(25).with_clamp(0.5, 40.0);
        let long = lanczos(&c, &z, &p).unwrap();
        for k in [1, 2, 7, 24, 25] {
            let short = lanczos(&c, &z, &LanczosParams { k, ..p.clone() }).unwrap();
            let pre = long.prefix(k).unwrap();
            // Same floating-point operations in the same order: bitwise equal.
            let bits = |v: Vec<f64>| v.into_iter().map(f64::to_bits).collect::<Vec<_>>();
            assert_eq!(
                bits(pre.sqrt().unwrap()),
                bits(short.sqrt().unwrap()),
                "k = {k}"
            );
            assert_eq!(pre.ritz_values(), short.ritz_values());
            assert_eq!(pre.steps(), k);
        }
        assert_eq!(long.prefix(0).unwrap_err(), LanczosError::ZeroSteps);
    }

    #[test]
    fn bound_helpers() {
        // rho(100) = 11/9 exactly in real arithmetic.
        assert!((rho(100.0) - 11.0 / 9.0).abs() < 1e-15);
        assert!(rho(1.0).is_infinite() && rho(0.5).is_nan());
        for kappa in [10.0, 100.0, 1000.0] {
            let lmin = 1.0 / kappa;
            let mut prev = f64::INFINITY;
            for n in 0..60 {
                let interp = sqrt_chebyshev_interp_error(lmin, 1.0, n);
                let trunc = sqrt_chebyshev_truncation_bound(lmin, 1.0, n);
                // The interpolant's error is at most twice the truncation bound (Trefethen
                // Theorem 8.2: 4 M r^{-n} / (r - 1) for interpolation), up to rounding ~1e-15.
                assert!(
                    interp <= 2.0 * trunc + 1e-14,
                    "kappa {kappa} n {n}: {interp} vs {trunc}"
                );
                // The bound is non-increasing in k.
                let b = sqrt_error_bound(lmin, 1.0, n + 1);
                assert!(b <= prev);
                prev = b;
            }
            // Once below E_0 the bound decays exactly like rho^{-k}: bounds 10 steps apart have
            // ratio rho^{-10} up to rounding of exp/ln of numbers ~ 100 (1e-13 relative).
            let r = sqrt_error_bound(lmin, 1.0, 200) / sqrt_error_bound(lmin, 1.0, 190);
            let want = rho(kappa).powi(-10);
            assert!(
                (r / want - 1.0).abs() < 1e-9,
                "kappa {kappa}: {r} vs {want}"
            );
            // The closed form is the minimum over r: a few r < r0 give larger bounds.
            let r0 = rho(kappa);
            for frac in [0.2, 0.5, 0.9, 0.999] {
                let r = 1.0 + frac * (r0 - 1.0);
                let m = (0.5 * (1.0 + lmin) + 0.5 * (1.0 - lmin) * 0.5 * (r + 1.0 / r)).sqrt();
                for n in [0, 5, 40] {
                    let at_r = 2.0 * m * r.powi(-n) / (r - 1.0);
                    assert!(
                        sqrt_chebyshev_truncation_bound(lmin, 1.0, n as usize)
                            <= at_r * (1.0 + 1e-12)
                    );
                }
            }
        }
        // E_0 is exact: the best constant for sqrt on [1/4, 1] is 3/4, error 1/4; interpolation
        // at the single node u = 0 (x = 5/8) is a constant, so its error is >= 1/4.
        assert!(sqrt_chebyshev_interp_error(0.25, 1.0, 0) >= 0.25);
        assert!((sqrt_error_bound(0.25, 1.0, 1) - 0.5).abs() < 1e-15);
        assert!((sqrt_error_bound(0.25, 1.0, 0) - 1.0).abs() < 1e-15);
        assert!(sqrt_error_bound(0.0, 1.0, 3).is_nan());
        assert!(sqrt_error_bound(1.0, 0.5, 3).is_nan());
        assert!(sqrt_error_bound(2.0, 2.0, 3).abs() < 1e-300);
        // Geometric decay fit recovers an exact factor and stops at the floor.
        let k: Vec<f64> = (1..=20).map(f64::from).collect();
        let e: Vec<f64> = k
            .iter()
            .map(|&t| if t <= 12.0 { 0.3f64.powf(t) } else { 1e-16 })
            .collect();
        let fit = fit_geometric_decay(&k, &e, 1e-13).unwrap();
        assert_eq!(fit.fit.n, 12);
        // Exact geometric data: the factor is 0.3 up to rounding of ln/exp.
        assert!((fit.factor - 0.3).abs() < 1e-12, "{}", fit.factor);
    }
}
