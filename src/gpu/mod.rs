//! The tensor path (feature `candle`; `cuda` adds candle's CUDA backend): a low-rank image
//! mixture in candle ops, batched over N samples, in f32, on any [`Device`].
//!
//! Every quantity is the f64 core's formula ([`crate::lowrank`]) written over tensors of shape
//! `(K, N, D)`: with `R = x - mu_k`, `Dv = R / d_k`,
//!
//! ```text
//! Sigma_k^{-1} R = Dv - ((Dv U_k) M_k^{-T}) (D^{-1} U_k)^T,
//! ln pi_k N_k(x) = ln pi_k - D/2 ln 2 pi - 1/2 (R . Sigma_k^{-1} R + ln det Sigma_k),
//! ln q = LSE_k(terms)  (log-sum-exp from max, sub, exp, sum, log: all with a backward pass),
//! score = -sum_k r_k Sigma_k^{-1} R,     H v = sum_k r_k (-Sigma_k^{-1} v + (g_k - g) ((g_k - g) . v)).
//! ```
//!
//! `H v` is also available by reverse-mode autograd of `sum_n <score(x_n), v_n>` (candle has
//! reverse mode only; for the symmetric Hessian of `ln q` the gradient is `H v`). Only ops
//! with a backward pass are used (no fused softmax / norm ops, which drop gradients); the
//! log-sum-exp's max is detached, which leaves the value and the gradient exact.

use candle_core::{DType, Device, Tensor, Var};

use crate::lowrank::LowRankMixture;

pub use candle_core;

/// A [`LowRankMixture`] (all components of the same rank) as f32 tensors on a device.
#[derive(Debug)]
pub struct TensorMixture {
    /// `(K, D)` means.
    means: Tensor,
    /// `(K, D, r)` factors `U_k`.
    u: Tensor,
    /// `(K, r, D)` transposed `D^{-1} U_k`.
    dinv_u_t: Tensor,
    /// `(K, r, r)` transposed inverse capacitances `M_k^{-T}`.
    minv_t: Tensor,
    /// `(K, D)` diagonals.
    d: Tensor,
    /// `(K, 1)`: `ln pi_k - D/2 ln 2 pi - 1/2 ln det Sigma_k`.
    consts: Tensor,
    /// `(K, D)`: `1 - 1/d_k`, formed in f64.
    one_minus_dinv: Tensor,
    /// `(K, D)`: `Sigma_k^{-1} mu_k`, formed in f64.
    p_mu: Tensor,
    /// `(K, D)`: `diag Sigma_k^{-1} = 1/d - rowsum((D^{-1} U) .* (D^{-1} U M^{-1}))`, formed in f64.
    p_diag: Tensor,
    dim: usize,
}

/// Errors of the tensor path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// A candle error.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The mixture does not fit the batched layout.
    #[error("tensor mixture: {0}")]
    Layout(String),
}

fn f32s(v: impl Iterator<Item = f64>) -> Vec<f32> {
    v.map(|x| x as f32).collect()
}

impl TensorMixture {
    /// Uploads `q` (equal ranks required) to `device`, computing the Woodbury factors in f64.
    ///
    /// # Errors
    /// Unequal ranks; candle errors.
    pub fn new(q: &LowRankMixture, device: &Device) -> Result<Self, TensorError> {
        let k = q.components().len();
        let d = q.dim();
        let r = q.components()[0].factor().ncols();
        if q.components().iter().any(|c| c.factor().ncols() != r) {
            return Err(TensorError::Layout(
                "all components need the same rank".into(),
            ));
        }
        let mut means = Vec::with_capacity(k * d);
        let mut u = Vec::with_capacity(k * d * r);
        let mut dinv_u_t = Vec::with_capacity(k * d * r);
        let mut minv_t = Vec::with_capacity(k * r * r);
        let mut dg = Vec::with_capacity(k * d);
        let mut consts = Vec::with_capacity(k);
        let mut omd = Vec::with_capacity(k * d);
        let mut p_mu = Vec::with_capacity(k * d);
        let mut p_diag = Vec::with_capacity(k * d);
        let c0 = -0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();
        for (i, c) in q.components().iter().enumerate() {
            means.extend(f32s(c.mean().iter().copied()));
            omd.extend(f32s(c.diagonal().iter().map(|v| (v - 1.0) / v)));
            p_mu.extend(f32s(c.precision_mul(c.mean()).iter().copied()));
            dg.extend(f32s(c.diagonal().iter().copied()));
            let uu = c.factor();
            for row in 0..d {
                u.extend(f32s((0..r).map(|j| uu[(row, j)])));
            }
            for j in 0..r {
                dinv_u_t.extend(f32s((0..d).map(|row| uu[(row, j)] / c.diagonal()[row])));
            }
            let dinv_u = nalgebra::DMatrix::from_fn(d, r, |a, b| uu[(a, b)] / c.diagonal()[a]);
            let m = nalgebra::DMatrix::identity(r, r) + uu.transpose() * &dinv_u;
            let minv = m.try_inverse().ok_or_else(|| {
                TensorError::Layout(format!("component {i}: singular capacitance"))
            })?;
            for a in 0..r {
                minv_t.extend(f32s((0..r).map(|b| minv[(b, a)])));
            }
            let dum = &dinv_u * &minv;
            p_diag.extend(f32s((0..d).map(|row| {
                1.0 / c.diagonal()[row]
                    - (0..r)
                        .map(|j| dinv_u[(row, j)] * dum[(row, j)])
                        .sum::<f64>()
            })));
            consts.push((q.weights()[i].ln() + c0 - 0.5 * c.ln_det()) as f32);
        }
        Ok(Self {
            means: Tensor::from_vec(means, (k, d), device)?,
            u: Tensor::from_vec(u, (k, d, r), device)?,
            dinv_u_t: Tensor::from_vec(dinv_u_t, (k, r, d), device)?,
            minv_t: Tensor::from_vec(minv_t, (k, r, r), device)?,
            d: Tensor::from_vec(dg, (k, d), device)?,
            consts: Tensor::from_vec(consts, (k, 1), device)?,
            one_minus_dinv: Tensor::from_vec(omd, (k, d), device)?,
            p_mu: Tensor::from_vec(p_mu, (k, d), device)?,
            p_diag: Tensor::from_vec(p_diag, (k, d), device)?,
            dim: d,
        })
    }

    /// The dimension D.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `Sigma_k^{-1} v` for `v` of shape `(K, N, D)`.
    fn precision_mul(&self, v: &Tensor) -> Result<Tensor, TensorError> {
        let dv = v.broadcast_div(&self.d.unsqueeze(1)?)?;
        let w = dv.matmul(&self.u)?; // (K, N, r)
        let w2 = w.matmul(&self.minv_t)?; // (K, N, r)
        Ok((&dv - w2.matmul(&self.dinv_u_t)?)?)
    }

    /// Per component: terms `(K, N)` and `P R = Sigma_k^{-1}(x - mu_k)` `(K, N, D)`.
    fn terms(&self, x: &Tensor) -> Result<(Tensor, Tensor), TensorError> {
        let r = x.unsqueeze(0)?.broadcast_sub(&self.means.unsqueeze(1)?)?;
        let pr = self.precision_mul(&r)?;
        let quad = (&r * &pr)?.sum(2)?; // (K, N)
        let terms = self.consts.broadcast_add(&quad.affine(-0.5, 0.0)?)?;
        Ok((terms, pr))
    }

    /// `ln q(x)` for `x` of shape `(N, D)`: log-sum-exp over components from basic ops.
    ///
    /// # Errors
    /// Candle errors (shapes).
    pub fn ln_pdf(&self, x: &Tensor) -> Result<Tensor, TensorError> {
        let (terms, _) = self.terms(x)?;
        log_sum_exp0(&terms)
    }

    /// The score `(N, D)` and the responsibilities `(K, N)` and `g_k` `(K, N, D)`.
    fn score_parts(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor), TensorError> {
        let (terms, pr) = self.terms(x)?;
        let lse = log_sum_exp0(&terms)?; // (N)
        let resp = terms.broadcast_sub(&lse.unsqueeze(0)?)?.exp()?; // (K, N)
        let gk = pr.neg()?;
        let g = gk.broadcast_mul(&resp.unsqueeze(2)?)?.sum(0)?; // (N, D)
        Ok((g, resp, gk))
    }

    /// The score `grad ln q(x)`, shape `(N, D)`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn score(&self, x: &Tensor) -> Result<Tensor, TensorError> {
        Ok(self.score_parts(x)?.0)
    }

    /// `H v` by the analytic formula, `x` and `v` of shape `(N, D)`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn hvp(&self, x: &Tensor, v: &Tensor) -> Result<Tensor, TensorError> {
        self.hvp_at(&self.score_parts(x)?, v)
    }

    /// `H v` from precomputed score parts (score, responsibilities, `g_k`), so that several
    /// products at the same points (Lanczos) evaluate the responsibilities once.
    fn hvp_at(&self, parts: &(Tensor, Tensor, Tensor), v: &Tensor) -> Result<Tensor, TensorError> {
        // Centred form: sum_k r_k g_k g_k^T - g g^T = sum_k r_k (g_k - g)(g_k - g)^T, which
        // avoids the cancellation of the two large outer-product sums in f32.
        let (g, resp, gk) = parts;
        let vk = v.unsqueeze(0)?.broadcast_as(gk.shape())?.contiguous()?;
        let pv = self.precision_mul(&vk)?; // (K, N, D)
        let dk = gk.broadcast_sub(&g.unsqueeze(0)?)?; // g_k - g
        let dkv = (&dk * &vk)?.sum_keepdim(2)?; // (K, N, 1)
        let per = (dk.broadcast_mul(&dkv)? - pv)?; // (K, N, D)
        Ok(per.broadcast_mul(&resp.unsqueeze(2)?)?.sum(0)?)
    }

    /// `diag H = sum_k r_k (-diag Sigma_k^{-1} + (g_k - g)^2)`, shape `(N, D)`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn hessian_diag(&self, x: &Tensor) -> Result<Tensor, TensorError> {
        let (g, resp, gk) = self.score_parts(x)?;
        let dk = gk.broadcast_sub(&g.unsqueeze(0)?)?;
        let per = dk.sqr()?.broadcast_sub(&self.p_diag.unsqueeze(1)?)?;
        Ok(per.broadcast_mul(&resp.unsqueeze(2)?)?.sum(0)?)
    }

    /// `H v` by reverse-mode autograd of `sum_n <score(x_n), v_n>` with respect to `x`.
    ///
    /// # Errors
    /// Candle errors; a missing gradient (an op without backward).
    pub fn hvp_autograd(&self, x: &Tensor, v: &Tensor) -> Result<Tensor, TensorError> {
        let xv = Var::from_tensor(x)?;
        let s = self.score(xv.as_tensor())?;
        let loss = (s * v.detach())?.sum_all()?;
        let grads = loss.backward()?;
        grads
            .get(xv.as_tensor())
            .cloned()
            .ok_or_else(|| TensorError::Layout("no gradient reached x".into()))
    }

    /// `x + score(x) = sum_k r_k [(1 - 1/d_k) .* x + D_k^{-1} U_k M_k^{-1} U_k^T D_k^{-1} x + Sigma_k^{-1} mu_k]`,
    /// written without the cancellation of `x` against the score at large noise levels
    /// (`1 - 1/d_k` and `Sigma_k^{-1} mu_k` are formed in f64).
    ///
    /// # Errors
    /// Candle errors.
    pub fn x_plus_score(&self, x: &Tensor) -> Result<Tensor, TensorError> {
        let (_, resp, _) = self.score_parts(x)?;
        let xk = x
            .unsqueeze(0)?
            .broadcast_as((self.means.dim(0)?, x.dim(0)?, self.dim))?
            .contiguous()?;
        let dvx = xk.broadcast_div(&self.d.unsqueeze(1)?)?;
        let corr = dvx
            .matmul(&self.u)?
            .matmul(&self.minv_t)?
            .matmul(&self.dinv_u_t)?;
        let per = ((xk.broadcast_mul(&self.one_minus_dinv.unsqueeze(1)?)? + corr)?
            .broadcast_add(&self.p_mu.unsqueeze(1)?))?;
        Ok(per.broadcast_mul(&resp.unsqueeze(2)?)?.sum(0)?)
    }

    /// The posterior mean of a step, `m = (x + b score) / a = (a^2 x + b (x + score)) / a`
    /// (the second form, with [`Self::x_plus_score`], keeps f32 accuracy when `a^2` is small).
    ///
    /// # Errors
    /// Candle errors.
    pub fn posterior_mean(&self, x: &Tensor, a: f64, b: f64) -> Result<Tensor, TensorError> {
        let xs = self.x_plus_score(x)?;
        Ok((x.affine(a, 0.0)? + xs.affine(b / a, 0.0)?)?)
    }
}

impl TensorMixture {
    /// `C^{1/2} z` per sample for `C = (b^2 H(x_n) + b I) / a^2`, by `k` Lanczos steps run
    /// batched over the N samples (one tridiagonal per sample): the Krylov vectors, products
    /// and full reorthogonalisation (two classical Gram-Schmidt passes) are `(N, D)` tensor ops;
    /// the `k x k` tridiagonal eigenproblems are solved on the host in f64; Ritz values are
    /// clamped to `[lower, upper]`; `y = ||z|| Q_m S f(theta) S^T e_1` is formed on the device.
    /// A sample whose `beta_j <= 1e-6 max_i |alpha_i|` (f32 breakdown: the Krylov space is
    /// invariant to working precision) uses its first `j` steps only.
    ///
    /// # Errors
    /// Candle errors; `k = 0`.
    pub fn lanczos_sqrt(
        &self,
        x: &Tensor,
        z: &Tensor,
        (a2, b): (f64, f64),
        k: usize,
        (lower, upper): (f64, f64),
    ) -> Result<Tensor, TensorError> {
        if k == 0 {
            return Err(TensorError::Layout("k must be >= 1".into()));
        }
        let parts = self.score_parts(x)?;
        let znorm = z.sqr()?.sum_keepdim(1)?.sqrt()?; // (N, 1)
        let mut qs = vec![z.broadcast_div(&znorm)?];
        let mut alphas: Vec<Vec<f32>> = Vec::with_capacity(k);
        let mut betas: Vec<Vec<f32>> = Vec::with_capacity(k);
        for j in 0..k {
            let q = qs[j].clone();
            let hv = self.hvp_at(&parts, &q)?;
            let mut w = (hv.affine(b * b / a2, 0.0)? + q.affine(b / a2, 0.0)?)?;
            let alpha = (&q * &w)?.sum_keepdim(1)?;
            w = (w - q.broadcast_mul(&alpha)?)?;
            if j > 0 {
                let bprev =
                    Tensor::from_vec(betas[j - 1].clone(), (betas[j - 1].len(), 1), x.device())?;
                w = (w - qs[j - 1].broadcast_mul(&bprev)?)?;
            }
            for _pass in 0..2 {
                for qi in &qs {
                    let c = (qi * &w)?.sum_keepdim(1)?;
                    w = (w - qi.broadcast_mul(&c)?)?;
                }
            }
            let beta = w.sqr()?.sum_keepdim(1)?.sqrt()?;
            alphas.push(alpha.flatten_all()?.to_vec1::<f32>()?);
            let bv = beta.flatten_all()?.to_vec1::<f32>()?;
            if j + 1 < k {
                // Guard the division; broken-down samples are truncated on the host.
                let safe = beta.clamp(1e-30f32, f32::MAX)?;
                qs.push(w.broadcast_div(&safe)?);
            }
            betas.push(bv);
        }
        let n = alphas[0].len();
        let zn = znorm.flatten_all()?.to_vec1::<f32>()?;
        let mut coef = vec![0f32; n * k];
        for s in 0..n {
            let scale = alphas.iter().map(|a| a[s].abs()).fold(0f32, f32::max);
            let m = (0..k)
                .find(|&j| j + 1 < k && betas[j][s] <= 1e-6 * scale)
                .map_or(k, |j| j + 1);
            let t = nalgebra::DMatrix::from_fn(m, m, |i, j| {
                if i == j {
                    f64::from(alphas[i][s])
                } else if i + 1 == j {
                    f64::from(betas[i][s])
                } else if j + 1 == i {
                    f64::from(betas[j][s])
                } else {
                    0.0
                }
            });
            let e = nalgebra::SymmetricEigen::new(t);
            for r in 0..m {
                let c: f64 = (0..m)
                    .map(|i| {
                        let th = e.eigenvalues[i].max(lower).min(upper);
                        e.eigenvectors[(r, i)] * th.max(0.0).sqrt() * e.eigenvectors[(0, i)]
                    })
                    .sum();
                coef[s * k + r] = (c * f64::from(zn[s])) as f32;
            }
        }
        let coef = Tensor::from_vec(coef, (n, k), x.device())?;
        let mut y = qs[0].zeros_like()?;
        for (j, q) in qs.iter().enumerate() {
            y = (y + q.broadcast_mul(&coef.narrow(1, j, 1)?)?)?;
        }
        Ok(y)
    }
}

/// The noise of a tensor reverse step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TensorNoise {
    /// `sqrt(b) z`.
    Beta,
    /// `sqrt(lower) z` (beta-tilde: `lower = b (1 - abar_s)/(1 - abar_t)`).
    BetaTilde,
    /// `Lanczos_k(C, z)` with Ritz values clamped to `[lower, upper]`.
    Lgs(usize),
    /// `sqrt(max(diag C, 0)) .* z` with the exact `diag C = (b^2 diag H + b) / a^2`.
    Diag,
}

/// One reverse step's geometry: `a^2`, `b` and the clamp `[lower, upper]` (see
/// [`crate::sampler::clip_bounds`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorStep {
    /// `a^2 = abar_t / abar_s`.
    pub a2: f64,
    /// `b = 1 - a^2`.
    pub b: f64,
    /// Lower clamp (beta-tilde's variance).
    pub lower: f64,
    /// Upper clamp.
    pub upper: f64,
}

impl TensorMixture {
    /// One DDPM step for a batch: `x_s = (x_t + b score) / a + noise(z)`, where this mixture is
    /// `q_t` (the marginal at the step's later time).
    ///
    /// # Errors
    /// Candle errors.
    pub fn ddpm_step(
        &self,
        x: &Tensor,
        z: &Tensor,
        step: TensorStep,
        noise: TensorNoise,
    ) -> Result<Tensor, TensorError> {
        let mean = self.posterior_mean(x, step.a2.sqrt(), step.b)?;
        let n = match noise {
            TensorNoise::Beta => z.affine(step.b.sqrt(), 0.0)?,
            TensorNoise::BetaTilde => z.affine(step.lower.max(0.0).sqrt(), 0.0)?,
            TensorNoise::Lgs(k) => {
                self.lanczos_sqrt(x, z, (step.a2, step.b), k, (step.lower, step.upper))?
            }
            TensorNoise::Diag => {
                let var = self
                    .hessian_diag(x)?
                    .affine(step.b * step.b / step.a2, step.b / step.a2)?;
                (var.relu()?.sqrt()? * z)?
            }
        };
        Ok((mean + n)?)
    }
}

/// A whole DDPM trajectory on tensors: from `x_T` (`(N, D)`) through steps `T..1` of `grid`,
/// step `i` using the noise `noises[T - i]` (`(N, D)` each), the marginal `q_{t_i}` of `q0`
/// uploaded per step, and the clamp of [`crate::sampler::clip_bounds`] with `clip_range`.
/// Given the same `x_T` and noises, the f64 sampler's steps must reproduce it (shared-noise
/// validation).
///
/// # Errors
/// Candle or layout errors; a wrong number of noises.
pub fn ddpm_trajectory(
    q0: &LowRankMixture,
    grid: &crate::schedule::Grid,
    x_t: &Tensor,
    noises: &[Tensor],
    noise: TensorNoise,
    clip_range: Option<(f64, f64)>,
) -> Result<Tensor, TensorError> {
    let t = grid.steps();
    if noises.len() != t {
        return Err(TensorError::Layout(format!(
            "{} noises for {t} steps",
            noises.len()
        )));
    }
    let mut x = x_t.clone();
    for i in (1..=t).rev() {
        let qt = q0
            .marginal(grid.ln_abar[i])
            .map_err(|e| TensorError::Layout(e.to_string()))?;
        let tm = TensorMixture::new(&qt, x.device())?;
        let st = grid.step(i);
        let (lower, upper) = crate::sampler::clip_bounds(grid, i, clip_range);
        let step = TensorStep {
            a2: st.a2,
            b: st.b,
            lower,
            upper,
        };
        x = tm.ddpm_step(&x, &noises[t - i], step, noise)?;
    }
    Ok(x)
}

/// `LSE` over dimension 0 of a `(K, N)` tensor: `m + ln sum_k exp(t_k - m)` with the max `m`
/// detached (the value and the gradient do not depend on `m`).
///
/// # Errors
/// Candle errors.
pub fn log_sum_exp0(t: &Tensor) -> Result<Tensor, TensorError> {
    let m = t.max_keepdim(0)?.detach();
    let s = t.broadcast_sub(&m)?.exp()?.sum(0)?.log()?;
    Ok((s + m.squeeze(0)?)?)
}

/// The relative error `||a - b|| / ||b||` of an f32 batch `a` against the f64 batch `b`
/// (Frobenius norms over all samples).
#[must_use]
pub fn relative_error(a: &[Vec<f32>], b: &[Vec<f64>]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (ra, rb) in a.iter().zip(b) {
        for (x, y) in ra.iter().zip(rb) {
            num += (f64::from(*x) - y).powi(2);
            den += y * y;
        }
    }
    (num / den).sqrt()
}

/// `(N, D)` f32 tensor from f64 rows.
///
/// # Errors
/// Candle errors (ragged rows).
pub fn batch(rows: &[Vec<f64>], device: &Device) -> Result<Tensor, TensorError> {
    let n = rows.len();
    let d = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.iter().map(|&v| v as f32))
        .collect();
    Ok(Tensor::from_vec(flat, (n, d), device)?.to_dtype(DType::F32)?)
}
