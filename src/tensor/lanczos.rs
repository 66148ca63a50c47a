//! Lanczos batched over samples: one Krylov space and one tridiagonal per sample, for
//! `f(C_n) z_n` with `C_n` available only through products `v -> C_n v` on `(N, D)` tensors.
//!
//! The recurrence, the products and the full reorthogonalisation (two classical Gram-Schmidt
//! passes) are tensor ops on the device; the `k x k` tridiagonal eigenproblems are solved on the
//! host in f64 (`docs/lanczos.md`):
//!
//! ```text
//! q_1 = z / ||z||;  w = C q_j - beta_{j-1} q_{j-1};  alpha_j = q_j . w;  w -= alpha_j q_j;
//! w -= Q (Q^T w) (twice);  beta_j = ||w||;  q_{j+1} = w / beta_j;
//! f(C) z ~ ||z|| Q_m S f(theta) S^T e_1,   T_m = S diag(theta) S^T.
//! ```
//!
//! Breakdown: a sample whose `beta_j <= 1e-6 max_i |alpha_i|` (the Krylov space is invariant to
//! f32 working precision) keeps its first `j` steps only.

use candle_core::Tensor;
use nalgebra::DMatrix;

use super::TensorError;
use crate::linalg::tridiagonal::eigh_tridiagonal;

/// f32 breakdown threshold: `beta_j <= BREAKDOWN * max |alpha|` ends a sample's recurrence.
const BREAKDOWN: f32 = 1e-6;

/// The Krylov data of a batched Lanczos run: the basis `Q` on the device and, per sample, the
/// Ritz values and eigenvectors of its tridiagonal (host, f64).
#[derive(Debug)]
pub struct BatchedKrylov {
    /// `q_1..q_k`, each `(N, D)`.
    qs: Vec<Tensor>,
    /// Per sample: the Ritz values `theta` (length `m_n <= k`).
    ritz: Vec<Vec<f64>>,
    /// Per sample: `S` (`m_n x m_n`), eigenvectors of `T_m`.
    vecs: Vec<DMatrix<f64>>,
    /// Per sample `||z_n||`.
    znorm: Vec<f64>,
}

/// Runs `k` Lanczos steps for every sample of `z` (`(N, D)`) with the operator `op`, which maps
/// an `(N, D)` batch `v` to `(C_n v_n)_n`.
///
/// # Errors
/// `k = 0`; candle errors; a non-finite tridiagonal entry (names the sample);
/// [`TensorError::Tridiagonal`] when the eigendecomposition of a sample's `T_m` fails or an
/// eigenpair fails its residual check.
pub fn lanczos_batched(
    op: &dyn Fn(&Tensor) -> Result<Tensor, TensorError>,
    z: &Tensor,
    k: usize,
) -> Result<BatchedKrylov, TensorError> {
    if k == 0 {
        return Err(TensorError::Layout("Lanczos needs k >= 1".into()));
    }
    let znorm_t = z.sqr()?.sum_keepdim(1)?.sqrt()?; // (N, 1)
    let mut qs = vec![z.broadcast_div(&znorm_t)?];
    let mut alphas: Vec<Vec<f32>> = Vec::with_capacity(k);
    let mut betas: Vec<Vec<f32>> = Vec::with_capacity(k);
    let mut beta_prev: Option<Tensor> = None;
    for j in 0..k {
        let q = qs[j].clone();
        let mut w = op(&q)?;
        let alpha = (&q * &w)?.sum_keepdim(1)?;
        w = (w - q.broadcast_mul(&alpha)?)?;
        if let Some(bp) = &beta_prev {
            w = (w - qs[j - 1].broadcast_mul(bp)?)?;
        }
        for _pass in 0..2 {
            for qi in &qs {
                let c = (qi * &w)?.sum_keepdim(1)?;
                w = (w - qi.broadcast_mul(&c)?)?;
            }
        }
        let beta = w.sqr()?.sum_keepdim(1)?.sqrt()?;
        alphas.push(alpha.flatten_all()?.to_vec1::<f32>()?);
        betas.push(beta.flatten_all()?.to_vec1::<f32>()?);
        if j + 1 < k {
            // Guard the division; broken-down samples are truncated on the host.
            let safe = beta.clamp(1e-30f32, f32::MAX)?;
            qs.push(w.broadcast_div(&safe)?);
        }
        beta_prev = Some(beta);
    }
    let n = alphas[0].len();
    let znorm: Vec<f64> = znorm_t
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect();
    let mut ritz = Vec::with_capacity(n);
    let mut vecs = Vec::with_capacity(n);
    for s in 0..n {
        let scale = alphas.iter().map(|a| a[s].abs()).fold(0f32, f32::max);
        let m = (0..k)
            .find(|&j| j + 1 < k && betas[j][s] <= BREAKDOWN * scale)
            .map_or(k, |j| j + 1);
        let diag: Vec<f64> = (0..m).map(|i| f64::from(alphas[i][s])).collect();
        let off: Vec<f64> = (0..m - 1).map(|i| f64::from(betas[i][s])).collect();
        if diag.iter().chain(&off).any(|v| !v.is_finite()) {
            return Err(TensorError::Layout(format!(
                "Lanczos: non-finite tridiagonal for sample {s}"
            )));
        }
        // Implicit QL with a residual check on every pair (SymmetricEigen of nalgebra 0.33
        // returns wrong eigenvectors on some Lanczos tridiagonals).
        let e = eigh_tridiagonal(&diag, &off)
            .map_err(|source| TensorError::Tridiagonal { sample: s, source })?;
        ritz.push(e.values);
        vecs.push(e.vectors);
    }
    Ok(BatchedKrylov {
        qs,
        ritz,
        vecs,
        znorm,
    })
}

impl BatchedKrylov {
    /// The Ritz values of sample `n`.
    #[must_use]
    pub fn ritz_values(&self, n: usize) -> &[f64] {
        &self.ritz[n]
    }

    /// `y_n = ||z_n|| Q_m S f(theta) S^T e_1` for every sample, shape `(N, D)`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn apply_fn(&self, f: impl Fn(f64) -> f64) -> Result<Tensor, TensorError> {
        let k = self.qs.len();
        let n = self.ritz.len();
        let mut coef = vec![0f32; n * k];
        for s in 0..n {
            let (th, sv) = (&self.ritz[s], &self.vecs[s]);
            let m = th.len();
            let fth: Vec<f64> = th.iter().map(|&t| f(t)).collect();
            for r in 0..m {
                let c: f64 = (0..m).map(|i| sv[(r, i)] * fth[i] * sv[(0, i)]).sum();
                coef[s * k + r] = (c * self.znorm[s]) as f32;
            }
        }
        let dev = self.qs[0].device();
        let coef = Tensor::from_vec(coef, (n, k), dev)?;
        let mut y = self.qs[0].zeros_like()?;
        for (j, q) in self.qs.iter().enumerate() {
            y = (y + q.broadcast_mul(&coef.narrow(1, j, 1)?)?)?;
        }
        Ok(y)
    }
}
