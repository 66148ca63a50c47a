//! The exact score of a Gaussian mixture with diagonal components, in candle ops, with one
//! time per row: the teacher of the covariance heads when they are trained with the exact
//! score (random times per row cannot share one uploaded marginal).
//!
//! # Formula
//! ```text
//! B_kn = abar_n diag(Sigma_k) + (1 - abar_n)          (per coordinate)
//! l_kn = ln pi_k - (1/2) sum_d [ln B_knd + (x_nd - sqrt(abar_n) mu_kd)^2 / B_knd]
//! r_kn = softmax_k(l_kn)      (max detached)
//! s_n  = -sum_k r_kn (x_n - sqrt(abar_n) mu_k) / B_kn
//! ```
//! Built from exp, log, sum, mul and div only, so reverse-mode autograd of `<s, v>` gives the
//! exact `H v` (the symmetric Hessian of `ln q_t`).

use candle_core::{Device, Tensor, Var};

use super::conditioning::{one_minus_exp, RowTimes};
use super::LearnedError;
use crate::data::mixture::{CovarianceKind, Mixture};
use crate::tensor::grad_of_dot;

/// A diagonal-component mixture on a device (see the module docs).
#[derive(Clone, Debug)]
pub struct TimeMixture {
    /// `(1, K, D)` component means.
    means: Tensor,
    /// `(1, K, D)` component variances.
    vars: Tensor,
    /// `(1, K)` log weights.
    ln_w: Tensor,
    dim: usize,
}

impl TimeMixture {
    /// Uploads `q0` (f32).
    ///
    /// # Errors
    /// [`LearnedError::Data`] for a component that is not diagonal; candle errors.
    pub fn new(q0: &Mixture, device: &Device) -> Result<Self, LearnedError> {
        let (k, d) = (q0.len(), q0.dim());
        let mut means = Vec::with_capacity(k * d);
        let mut vars = Vec::with_capacity(k * d);
        for (j, c) in q0.components().iter().enumerate() {
            match c.covariance_kind() {
                CovarianceKind::Dense(_) => {
                    return Err(LearnedError::Data(format!(
                        "component {j} has a dense covariance; the per-row-time mixture score needs diagonal components"
                    )))
                }
                _ => {
                    let cov = c.covariance();
                    means.extend(c.mean().iter().map(|&v| v as f32));
                    vars.extend((0..d).map(|i| cov[(i, i)] as f32));
                }
            }
        }
        let ln_w: Vec<f32> = q0.ln_weights().iter().map(|&v| v as f32).collect();
        Ok(Self {
            means: Tensor::from_vec(means, (1, k, d), device)?,
            vars: Tensor::from_vec(vars, (1, k, d), device)?,
            ln_w: Tensor::from_vec(ln_w, (1, k), device)?,
            dim: d,
        })
    }

    /// The dimension.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The exact score at `x` `(N, D)`, one time per row.
    ///
    /// # Errors
    /// Shapes, bad times; candle errors.
    pub fn score(&self, x: &Tensor, times: &RowTimes) -> Result<Tensor, LearnedError> {
        times.validate()?;
        let (n, d) = x.dims2()?;
        if d != self.dim || n != times.len() {
            return Err(LearnedError::Shape(format!(
                "x {:?} with {} times for a mixture of dimension {}",
                x.dims(),
                times.len(),
                self.dim
            )));
        }
        let (dt, dev) = (x.dtype(), x.device());
        let col3 = |f: &dyn Fn(f64) -> f64| -> Result<Tensor, LearnedError> {
            Ok(times.column(f, dt, dev)?.unsqueeze(2)?)
        };
        let sa = col3(&|l| (0.5 * l).exp())?;
        let abar = col3(&|l| l.exp())?;
        let oma = col3(&one_minus_exp)?;
        let means = self.means.to_dtype(dt)?;
        let vars = self.vars.to_dtype(dt)?;
        let diff = x.unsqueeze(1)?.broadcast_sub(&means.broadcast_mul(&sa)?)?; // (N, K, D)
        let b = vars.broadcast_mul(&abar)?.broadcast_add(&oma)?; // (N, K, D)
        let g = (diff / &b)?; // (x - A_k) / B_k
        let quad = ((&g * &g.broadcast_mul(&b)?)? + b.log()?)?.sum(2)?; // (N, K)
        let logits = self
            .ln_w
            .to_dtype(dt)?
            .broadcast_sub(&quad.affine(0.5, 0.0)?)?;
        let m = logits.max_keepdim(1)?.detach();
        let e = logits.broadcast_sub(&m)?.exp()?;
        let r = e.broadcast_div(&e.sum_keepdim(1)?)?; // (N, K)
        Ok(g.broadcast_mul(&r.unsqueeze(2)?)?.sum(1)?.neg()?)
    }

    /// `H v` per row by reverse-mode autograd of `sum_n <s(x_n), v_n>`.
    ///
    /// # Errors
    /// As [`Self::score`].
    pub fn hvp(&self, x: &Tensor, times: &RowTimes, v: &Tensor) -> Result<Tensor, LearnedError> {
        let xv = Var::from_tensor(&x.detach())?;
        let s = self.score(xv.as_tensor(), times)?;
        Ok(grad_of_dot(&s, v, &xv)?)
    }
}
