//! [`TensorMixture`]: a low-rank image mixture in candle ops, batched over N samples, f32.
//!
//! Every quantity is the f64 core's formula ([`crate::data::lowrank`]) written over tensors of shape
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

use candle_core::{Device, Tensor, Var};

use super::{f32s, log_sum_exp0, TensorError};
use crate::data::lowrank::LowRankMixture;

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
    /// `(K r, D)`: the `F_k^T = (D_k^{-1} U_k)^T` stacked (the same data as `dinv_u_t`).
    f_cat_t: Tensor,
    /// `(D, K r)`: `[F_1 .. F_K]`.
    f_cat: Tensor,
    /// `(K, D)`: `1 / d_k`, formed in f64.
    dinv: Tensor,
    /// `(K, D)` diagonals `d_k` in f64 (host), for the cancellation-free covariance.
    d_host: Vec<f64>,
    /// `(K, D)` `diag Sigma_k^{-1}` in f64 (host).
    p_diag_host: Vec<f64>,
    dim: usize,
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
            dg.extend(c.diagonal().iter().copied());
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
            p_diag.extend((0..d).map(|row| {
                1.0 / c.diagonal()[row]
                    - (0..r)
                        .map(|j| dinv_u[(row, j)] * dum[(row, j)])
                        .sum::<f64>()
            }));
            consts.push((q.weights()[i].ln() + c0 - 0.5 * c.ln_det()) as f32);
        }
        Ok(Self {
            means: Tensor::from_vec(means, (k, d), device)?,
            u: Tensor::from_vec(u, (k, d, r), device)?,
            dinv_u_t: Tensor::from_vec(dinv_u_t.clone(), (k, r, d), device)?,
            f_cat_t: Tensor::from_vec(dinv_u_t.clone(), (k * r, d), device)?,
            f_cat: Tensor::from_vec(dinv_u_t, (k * r, d), device)?
                .t()?
                .contiguous()?,
            dinv: Tensor::from_vec(f32s(dg.iter().map(|v| 1.0 / v)), (k, d), device)?,
            minv_t: Tensor::from_vec(minv_t, (k, r, r), device)?,
            d: Tensor::from_vec(f32s(dg.iter().copied()), (k, d), device)?,
            consts: Tensor::from_vec(consts, (k, 1), device)?,
            one_minus_dinv: Tensor::from_vec(omd, (k, d), device)?,
            p_mu: Tensor::from_vec(p_mu, (k, d), device)?,
            p_diag: Tensor::from_vec(f32s(p_diag.iter().copied()), (k, d), device)?,
            d_host: dg,
            p_diag_host: p_diag,
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

    /// The score and its per-component pieces at `x` (`(N, D)`): one score evaluation, reused
    /// by every product at the same points.
    ///
    /// # Errors
    /// Candle errors (shapes).
    pub fn parts(&self, x: &Tensor) -> Result<ScoreParts, TensorError> {
        let (terms, pr) = self.terms(x)?;
        let lse = log_sum_exp0(&terms)?; // (N)
        let resp = terms.broadcast_sub(&lse.unsqueeze(0)?)?.exp()?; // (K, N)
        let gk = pr.neg()?;
        let score = gk.broadcast_mul(&resp.unsqueeze(2)?)?.sum(0)?; // (N, D)
                                                                    // g_k - g, sample-major for the batched products.
        let dk_t = gk
            .broadcast_sub(&score.unsqueeze(0)?)?
            .transpose(0, 1)?
            .contiguous()?; // (N, K, D)
        let resp_t = resp.t()?.contiguous()?; // (N, K)
        Ok(ScoreParts {
            x: x.clone(),
            score,
            resp,
            gk,
            dk_t,
            resp_t,
        })
    }

    /// The score `grad ln q(x)`, shape `(N, D)`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn score(&self, x: &Tensor) -> Result<Tensor, TensorError> {
        Ok(self.parts(x)?.score)
    }

    /// `H v` by the analytic formula, `x` and `v` of shape `(N, D)`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn hvp(&self, x: &Tensor, v: &Tensor) -> Result<Tensor, TensorError> {
        self.hvp_at(&self.parts(x)?, v)
    }

    /// `sum_k r_k F_k M_k^{-1} F_k^T v` for `v` `(N, D)`, `F_k = D_k^{-1} U_k`: one `(N, D) x
    /// (D, K r)` product, the `K` small `r x r` solves, one `(N, K r) x (K r, D)` product.
    fn lowrank_at(&self, parts: &ScoreParts, v: &Tensor) -> Result<Tensor, TensorError> {
        let (n, _) = v.dims2()?;
        let (k, r, _) = self.minv_t.dims3()?;
        let w = v.matmul(&self.f_cat)?; // (N, K r)
        let w = w.reshape((n, k, r))?.transpose(0, 1)?.contiguous()?; // (K, N, r)
        let w = w
            .matmul(&self.minv_t)?
            .broadcast_mul(&parts.resp.unsqueeze(2)?)?;
        let w = w.transpose(0, 1)?.contiguous()?.reshape((n, k * r))?;
        Ok(w.matmul(&self.f_cat_t)?)
    }

    /// `sum_k r_k (g_k - g) ((g_k - g) . v)` for `v` `(N, D)`: two batched products with the
    /// sample-major `g_k - g` of [`ScoreParts`].
    fn outer_at(parts: &ScoreParts, v: &Tensor) -> Result<Tensor, TensorError> {
        let dkv = parts.dk_t.matmul(&v.unsqueeze(2)?)?; // (N, K, 1)
        let c = dkv.broadcast_mul(&parts.resp_t.unsqueeze(2)?)?; // (N, K, 1)
        Ok(c.transpose(1, 2)?.matmul(&parts.dk_t)?.squeeze(1)?) // (N, D)
    }

    /// `H v` at precomputed [`ScoreParts`], in the centred form
    /// `H v = sum_k r_k (-Sigma_k^{-1} v + (g_k - g) ((g_k - g) . v))`, which avoids the
    /// cancellation of the two large outer-product sums `sum_k r_k g_k g_k^T - g g^T` in f32.
    /// With Woodbury, `Sigma_k^{-1} v = v / d_k - F_k M_k^{-1} F_k^T v`, so
    ///
    /// ```text
    /// H v = -v .* (R D^{-1}) + sum_k r_k F_k M_k^{-1} F_k^T v + sum_k r_k (g_k - g)((g_k - g) . v),
    /// ```
    /// `R` the `(N, K)` responsibilities, `D^{-1}` the `(K, D)` inverse diagonals: no
    /// `(K, N, D)` tensor is formed per product (two passes over the stored `g_k - g`).
    ///
    /// # Errors
    /// Candle errors.
    pub fn hvp_at(&self, parts: &ScoreParts, v: &Tensor) -> Result<Tensor, TensorError> {
        let diag = (v * parts.resp_t.matmul(&self.dinv)?)?;
        Ok(((self.lowrank_at(parts, v)? - diag)? + Self::outer_at(parts, v)?)?)
    }

    /// `diag H = sum_k r_k (-diag Sigma_k^{-1} + (g_k - g)^2)`, shape `(N, D)`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn hessian_diag(&self, x: &Tensor) -> Result<Tensor, TensorError> {
        self.hessian_diag_at(&self.parts(x)?)
    }

    /// [`Self::hessian_diag`] at precomputed [`ScoreParts`].
    ///
    /// # Errors
    /// Candle errors.
    pub fn hessian_diag_at(&self, parts: &ScoreParts) -> Result<Tensor, TensorError> {
        Ok((Self::outer_diag_at(parts)? - parts.resp_t.matmul(&self.p_diag)?)?)
    }

    /// `sum_k r_k (g_k - g)^2` (element-wise), `(N, D)`: one batched product.
    fn outer_diag_at(parts: &ScoreParts) -> Result<Tensor, TensorError> {
        Ok(parts
            .resp_t
            .unsqueeze(1)?
            .matmul(&parts.dk_t.sqr()?)?
            .squeeze(1)?)
    }

    /// `H v` by reverse-mode autograd of `sum_n <score(x_n), v_n>` with respect to `x`.
    ///
    /// # Errors
    /// Candle errors; a missing gradient (an op without backward).
    pub fn hvp_autograd(&self, x: &Tensor, v: &Tensor) -> Result<Tensor, TensorError> {
        let xv = Var::from_tensor(x)?;
        let s = self.score(xv.as_tensor())?;
        super::grad_of_dot(&s, v, &xv)
    }

    /// `x + score(x) = sum_k r_k [(1 - 1/d_k) .* x + D_k^{-1} U_k M_k^{-1} U_k^T D_k^{-1} x + Sigma_k^{-1} mu_k]`,
    /// written without the cancellation of `x` against the score at large noise levels
    /// (`1 - 1/d_k` and `Sigma_k^{-1} mu_k` are formed in f64).
    ///
    /// # Errors
    /// Candle errors.
    pub fn x_plus_score(&self, x: &Tensor) -> Result<Tensor, TensorError> {
        self.x_plus_score_at(&self.parts(x)?)
    }

    /// [`Self::x_plus_score`] at precomputed [`ScoreParts`].
    ///
    /// # Errors
    /// Candle errors.
    pub fn x_plus_score_at(&self, parts: &ScoreParts) -> Result<Tensor, TensorError> {
        // sum_k r_k [(1 - 1/d_k) .* x + F_k M_k^{-1} F_k^T x + Sigma_k^{-1} mu_k]
        let x = &parts.x;
        let diag = (x * parts.resp_t.matmul(&self.one_minus_dinv)?)?;
        let shift = parts.resp_t.matmul(&self.p_mu)?;
        Ok(((diag + self.lowrank_at(parts, x)?)? + shift)?)
    }

    /// The pieces of the reverse-kernel covariance `C = (b^2 H + b I)/a^2` of a step with
    /// geometry `(a^2, b)` (this mixture being `q_t`), formed in f64 without cancellation.
    ///
    /// # Formula
    /// ```text
    /// B_{t,k} = U_k U_k^T + diag(d_k) (this mixture's components),  B_{s,k} = (B_{t,k} - b I)/a^2
    ///         = U_k U_k^T / a^2 + diag(d_s,k),   d_s,k = (d_k - b)/a^2   (f64),
    /// C = sum_k r_k S_k + (b^2/a^2) sum_k r_k (g_k - g)(g_k - g)^T,   S_k = b B_{t,k}^{-1} B_{s,k},
    /// diag S_k = b (1 - b diag B_{t,k}^{-1}) / a^2   (f64),
    /// S_k v = b E_k .* v + (b^2/a^2) F_k M_k^{-1} F_k^T v,   E_k = (d_k - b) / (a^2 d_k)   (f64),
    /// ```
    /// the last from Woodbury for `B_{t,k}^{-1}` (`F_k = D_k^{-1} U_k`, `M_k = I + U_k^T F_k`):
    /// `S_k = (b/a^2)(I - b B_{t,k}^{-1})` and every term is positive.
    /// The textbook `(b^2 H + b I)/a^2` cancels when `C << b / a^2` (the noisy steps of a DDIM
    /// clean-data posterior, where `a^2 = abar_t ~ 1e-4`): in f32 that loses `b / (a^2 C)` in
    /// relative accuracy (measured 2e-3 on digits32); here every term is positive.
    ///
    /// # Errors
    /// Candle errors.
    pub fn cov_geometry(&self, a2: f64, b: f64) -> Result<CovGeometry, TensorError> {
        let k = self.means.dim(0)?;
        let dev = self.means.device();
        let e = f32s(self.d_host.iter().map(|&d| (d - b) / (a2 * d)));
        let s_diag = f32s(self.p_diag_host.iter().map(|&p| b * (1.0 - b * p) / a2));
        Ok(CovGeometry {
            a2,
            b,
            e: Tensor::from_vec(e, (k, self.dim), dev)?,
            s_diag: Tensor::from_vec(s_diag, (k, self.dim), dev)?,
        })
    }

    /// `C v` (see [`Self::cov_geometry`]) at [`ScoreParts`] for `v` of shape `(N, D)`:
    ///
    /// ```text
    /// C v = b v .* (R E) + (b^2/a^2) [ sum_k r_k F_k M_k^{-1} F_k^T v + sum_k r_k (g_k - g)((g_k - g) . v) ].
    /// ```
    ///
    /// # Errors
    /// Candle errors.
    pub fn cov_mul_at(
        &self,
        parts: &ScoreParts,
        geom: &CovGeometry,
        v: &Tensor,
    ) -> Result<Tensor, TensorError> {
        let c = geom.b * geom.b / geom.a2;
        let diag = (v * parts.resp_t.matmul(&geom.e)?)?.affine(geom.b, 0.0)?;
        let rest = (self.lowrank_at(parts, v)? + Self::outer_at(parts, v)?)?;
        Ok((diag + rest.affine(c, 0.0)?)?)
    }

    /// `diag C` (see [`Self::cov_geometry`]) at [`ScoreParts`], `(N, D)`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn cov_diag_at(
        &self,
        parts: &ScoreParts,
        geom: &CovGeometry,
    ) -> Result<Tensor, TensorError> {
        let outer = Self::outer_diag_at(parts)?.affine(geom.b * geom.b / geom.a2, 0.0)?;
        Ok((outer + parts.resp_t.matmul(&geom.s_diag)?)?)
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

/// The per-step pieces of [`TensorMixture::cov_geometry`].
#[derive(Clone, Debug)]
pub struct CovGeometry {
    /// `a^2`.
    pub a2: f64,
    /// `b`.
    pub b: f64,
    /// `(K, D)` `E_k = (d_k - b) / (a^2 d_k)`.
    e: Tensor,
    /// `(K, D)` `diag S_k`.
    s_diag: Tensor,
}

/// The score of a [`TensorMixture`] at a batch of points with the pieces products reuse.
#[derive(Clone, Debug)]
pub struct ScoreParts {
    /// The points `(N, D)`.
    pub x: Tensor,
    /// The score `g = sum_k r_k g_k`, `(N, D)`.
    pub score: Tensor,
    /// The responsibilities `r_k(x)`, `(K, N)`.
    pub resp: Tensor,
    /// `g_k = -Sigma_k^{-1} (x - mu_k)`, `(K, N, D)`.
    pub gk: Tensor,
    /// `g_k - g`, sample-major, `(N, K, D)`.
    pub dk_t: Tensor,
    /// The responsibilities, sample-major, `(N, K)`.
    pub resp_t: Tensor,
}
