//! Covariance heads: networks whose output gives a diagonal reverse covariance for every
//! step `(s, t)`, each trained by its own objective with the score held fixed.
//!
//! Every head outputs, per coordinate, a quantity `o(x_t, t)` (its Gaussian-prior value plus an
//! MLP residual) from which the covariance of the step from `s` to `t` is formed, here written
//! through the diagonal "Hessian" `h` of [`crate::kernel::model`] (`Sigma = (b^2 h + b) / a^2`):
//!
//! | head | target of `o` (its optimum) | objective | `h` |
//! |---|---|---|---|
//! | `ocm` | `1 + (1 - abar) diag H` | `E ||o - (1 + (1 - abar) v .* (H v))||^2`, Rademacher `v` (OCM eq. 11-13) | `(o - 1) / (1 - abar)` |
//! | `sn` | `E[eps^2 \| x_t]` | `E ||o - eps^2||^2` (SN-DDPM eq. 22) | `(o - 1) / (1 - abar) - s^2` (eq. 23) |
//! | `npr` | `E[(eps - eps_hat)^2 \| x_t]` | `E ||o - (eps - eps_hat)^2||^2` (NPR-DDPM) | `(o - 1) / (1 - abar)` |
//! | `iddpm` | `v*` with `beta^v* beta~^(1 - v*)` the VLB optimum | the VLB term of a fine reference step | [`crate::kernel::model::iddpm_h`] |
//!
//! `eps_hat = -sqrt(1 - abar) s(x_t)` is the noise prediction of the score the head serves
//! (exact or learned); `H` is the Hessian of `ln q_t` for the exact score and the Jacobian of the
//! learned score (reverse mode, `J^T v`: `E_v[v .* (J^T v)] = diag J`) otherwise.
//!
//! Why these `h`: with `C_0 = Cov(x_0 | x_t)` and `Cov(eps | x_t) = I + (1 - abar) H`,
//! `diag C_0 = ((1 - abar)^2 h + (1 - abar)) / abar` for every head, and the step covariance
//! `sigma~^2 + gamma^2 diag C_0` (`gamma^2 = abar_s b^2 / (1 - abar_t)^2`) equals
//! `(b^2 h + b) / a^2` (the SN, NPR and OCM step covariances all reduce to this identity;
//! `docs/learned.md#covariance-heads`). `ocm` is written in
//! the normalised `o = 1 + (1 - abar) h`: the same minimiser as the paper's `||h - v .* H v||^2`,
//! with the time weight `(1 - abar)^2` (the objective is unbiased pointwise in `t`, so a time
//! weight does not move its optimum).
//!
//! `iddpm` (I-DDPM): the log-variance interpolation `Sigma = exp(v ln beta + (1 - v) ln beta~)`
//! of a reference step from `lambda_s = lambda_t + IDDPM_REF_STEP` to `t`, trained on that
//! step's variational-bound term with the mean held fixed:
//! ```text
//! l(v) = (1/2) [(1 + rho e^2) psi(v L) - rho e^2 v L] / L^2,   psi(y) = e^-y - 1 + y,
//! L = ln((1 - abar_t) / (1 - abar_s)),  rho = b / (a^2 (1 - abar_s)),  e = eps_hat - eps
//! ```
//! (the VLB term minus its `v`-free constant, divided by `L^2`: a time weight that makes the
//! curvature in `v` O(1) at every `t`; minimiser `v L = ln(1 + rho E[e^2 | x_t])`). Skip steps
//! use the same `v` with `beta -> b`, `beta~ -> b (1 - abar_s)/(1 - abar_t)` (Nichol & Dhariwal's
//! rescaling).

use candle_core::{Device, Tensor, Var};

use super::backbone::{Arch, Backbone};
use super::conditioning::{one_minus_exp, GaussianPrior, PriorNet, RowTimes};
use super::mlp::{MlpShape, TimeMlp};
use super::score_net::ScoreNet;
use super::time_mixture::TimeMixture;
use super::LearnedError;
pub use crate::kl::chain::{head_h, HeadKind};

/// The reference step of `iddpm`'s training, in log-SNR: `lambda_s = lambda_t + 0.02`
/// (about a thousand steps over the trained range).
pub const IDDPM_REF_STEP: f64 = 0.02;

/// The score a head is trained against or serves.
#[derive(Clone, Copy, Debug)]
pub enum HeadScore<'a> {
    /// The exact mixture score (per-row times).
    Exact(&'a TimeMixture),
    /// A learned score network (frozen).
    Learned(&'a ScoreNet),
}

impl HeadScore<'_> {
    /// `"exact"` or `"learned"`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Exact(_) => "exact",
            Self::Learned(_) => "learned",
        }
    }

    /// The score at `x`, one time per row (no graph kept).
    ///
    /// # Errors
    /// As the model's score.
    pub fn score(&self, x: &Tensor, times: &RowTimes) -> Result<Tensor, LearnedError> {
        let s = match self {
            Self::Exact(m) => m.score(x, times)?,
            Self::Learned(n) => n.score(x, times)?,
        };
        Ok(s.detach())
    }

    /// `H v` (exact, symmetric) or `J^T v` (learned) per row, by reverse-mode autograd.
    ///
    /// # Errors
    /// As the model's score.
    pub fn hvp(&self, x: &Tensor, times: &RowTimes, v: &Tensor) -> Result<Tensor, LearnedError> {
        match self {
            Self::Exact(m) => m.hvp(x, times, v),
            Self::Learned(n) => n.jt_v(x, times, v),
        }
    }
}

impl std::ops::Deref for Head {
    type Target = PriorNet;
    /// The residual network (its MLP, prior and device).
    fn deref(&self) -> &PriorNet {
        &self.net
    }
}

/// A trained (or training) covariance head.
#[derive(Clone, Debug)]
pub struct Head {
    kind: HeadKind,
    net: PriorNet,
}

impl Head {
    /// A fresh head of shape `shape` (`D -> D`) and its variables.
    ///
    /// # Errors
    /// As [`TimeMlp::init_for`].
    pub fn init(
        kind: HeadKind,
        prior: GaussianPrior,
        shape: MlpShape,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, Vec<Var>), LearnedError> {
        let (net, vars) = PriorNet::init(prior, shape, seed, device)?;
        Ok((Self { kind, net }, vars))
    }

    /// A fresh head of architecture `arch` (`D -> D`) and its variables.
    ///
    /// # Errors
    /// As [`PriorNet::init_arch`].
    pub fn init_arch(
        kind: HeadKind,
        prior: GaussianPrior,
        arch: &Arch,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, Vec<Var>), LearnedError> {
        let (net, vars) = PriorNet::init_arch(prior, arch, seed, device)?;
        Ok((Self { kind, net }, vars))
    }

    /// A head from its parts (checkpoint loading).
    #[must_use]
    pub fn from_parts(kind: HeadKind, mlp: TimeMlp, prior: GaussianPrior, device: &Device) -> Self {
        Self::from_backbone(kind, Backbone::Mlp(mlp), prior, device)
    }

    /// A head from a backbone of either architecture (checkpoint loading).
    #[must_use]
    pub fn from_backbone(
        kind: HeadKind,
        net: Backbone,
        prior: GaussianPrior,
        device: &Device,
    ) -> Self {
        Self {
            kind,
            net: PriorNet::new(net, prior, device),
        }
    }

    /// The same head with plain-tensor parameters.
    #[must_use]
    pub fn frozen(&self) -> Self {
        Self {
            kind: self.kind,
            net: self.net.frozen(),
        }
    }

    /// The kind.
    #[must_use]
    pub fn kind(&self) -> HeadKind {
        self.kind
    }

    /// The raw output `o(x, t)` `(N, D)`: its prior value plus the MLP residual
    /// (`ocm`, `npr`: `n_G`; `sn`: `n_G + eps_G^2`; `iddpm`: `n_G / abar`).
    ///
    /// # Errors
    /// Shapes, bad times; candle errors.
    pub fn output(&self, x: &Tensor, times: &RowTimes) -> Result<Tensor, LearnedError> {
        let (dt, dev) = (x.dtype(), x.device());
        let (u, f) = self.net.residual(x, times)?;
        let g = self.prior();
        let base = match self.kind {
            HeadKind::Ocm | HeadKind::Npr => times
                .column(|l| g.cov_eps(l), dt, dev)?
                .broadcast_as(f.shape())?,
            HeadKind::Sn => {
                let e = g.eps(&u, times)?;
                (e.sqr()?
                    + times
                        .column(|l| g.cov_eps(l), dt, dev)?
                        .broadcast_as(f.shape())?)?
            }
            HeadKind::Iddpm => times
                .column(|l| g.var / g.marginal_var(l), dt, dev)?
                .broadcast_as(f.shape())?,
        };
        Ok((base + f)?)
    }

    /// The head's `h` at the points `x` (all at `ln abar`), flat row-major `N x D` on the host,
    /// for `ocm`, `sn` and `npr` (see the module table); `score` is the score the head serves,
    /// needed by `sn`. Not clipped.
    ///
    /// # Errors
    /// `iddpm` (its covariance depends on the step: use [`Self::output`] with
    /// [`crate::kernel::model::iddpm_h`]); `sn` without a score; candle errors.
    pub fn h_values(
        &self,
        out: &[f64],
        ln_abar: f64,
        score: Option<&[f64]>,
    ) -> Result<Vec<f64>, LearnedError> {
        let oma = one_minus_exp(ln_abar);
        match self.kind {
            HeadKind::Ocm | HeadKind::Npr => Ok(out
                .iter()
                .map(|&o| head_h(self.kind, o, oma, 0.0))
                .collect()),
            HeadKind::Sn => {
                let s = score.ok_or_else(|| LearnedError::InvalidParameter {
                    field: "score",
                    reason: "the sn head needs the score it serves".into(),
                })?;
                if s.len() != out.len() {
                    return Err(LearnedError::Shape(format!(
                        "{} scores for {} outputs",
                        s.len(),
                        out.len()
                    )));
                }
                Ok(out
                    .iter()
                    .zip(s)
                    .map(|(&o, &s)| head_h(self.kind, o, oma, s))
                    .collect())
            }
            HeadKind::Iddpm => Err(LearnedError::InvalidParameter {
                field: "method",
                reason: "iddpm's covariance depends on the step; use model_kernel::iddpm_h".into(),
            }),
        }
    }
}
