//! A learned score: `s(x, t) = -eps_hat(x, t) / sqrt(1 - abar_t)` with
//! `eps_hat = eps_G + F(u, c)` (the Gaussian prior's noise prediction plus an MLP residual),
//! trained by denoising score matching ([`super::train::train_score`]).
//!
//! # Formula
//! ```text
//! L_DSM = E_{lambda ~ U[lambda_min, lambda_max], x_0, eps} ||eps_hat(sqrt(abar) x_0 + sqrt(1 - abar) eps, t) - eps||^2
//! ```
//! Uniform in the log-SNR with the eps-loss is the ELBO weighting (`b / (1 - abar_t) ~ d lambda`
//! for fine steps), so the path KL's mean part is what this loss controls.
//!
//! As a [`TensorScoreModel`], `H v` is reverse-mode autograd of `sum_n <s(x_n), v_n>`, i.e.
//! `J^T v` (the Jacobian of a learned score is not symmetric); the network's parameters are
//! plain tensors there, so the backward pass reaches only `x`.

use candle_core::{DType, Device, Tensor, Var};

use super::backbone::{Arch, Backbone};
use super::conditioning::{one_minus_exp, GaussianPrior, PriorNet, RowTimes};
use super::mlp::{MlpShape, TimeMlp};
use super::LearnedError;
use crate::tensor::{grad_of_dot, TensorError, TensorLocal, TensorScoreModel};

impl std::ops::Deref for ScoreNet {
    type Target = PriorNet;
    /// The residual network (its MLP, prior and device).
    fn deref(&self) -> &PriorNet {
        &self.net
    }
}

/// A learned score network (see the module docs).
#[derive(Clone, Debug)]
pub struct ScoreNet {
    net: PriorNet,
}

impl ScoreNet {
    /// A fresh network of shape `shape` (`D -> D`) and its variables.
    ///
    /// # Errors
    /// As [`TimeMlp::init_for`].
    pub fn init(
        prior: GaussianPrior,
        shape: MlpShape,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, Vec<Var>), LearnedError> {
        let (net, vars) = PriorNet::init(prior, shape, seed, device)?;
        Ok((Self { net }, vars))
    }

    /// A fresh network of architecture `arch` (`D -> D`) and its variables.
    ///
    /// # Errors
    /// As [`PriorNet::init_arch`].
    pub fn init_arch(
        prior: GaussianPrior,
        arch: &Arch,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, Vec<Var>), LearnedError> {
        let (net, vars) = PriorNet::init_arch(prior, arch, seed, device)?;
        Ok((Self { net }, vars))
    }

    /// A network from its parts (checkpoint loading).
    #[must_use]
    pub fn from_parts(mlp: TimeMlp, prior: GaussianPrior, device: &Device) -> Self {
        Self::from_backbone(Backbone::Mlp(mlp), prior, device)
    }

    /// A network from a backbone of either architecture (checkpoint loading).
    #[must_use]
    pub fn from_backbone(net: Backbone, prior: GaussianPrior, device: &Device) -> Self {
        Self {
            net: PriorNet::new(net, prior, device),
        }
    }

    /// The same network with plain-tensor parameters (for evaluation and as a frozen teacher).
    #[must_use]
    pub fn frozen(&self) -> Self {
        Self {
            net: self.net.frozen(),
        }
    }

    /// The same network in `dtype` (f64 for finite-difference checks).
    ///
    /// # Errors
    /// Candle errors.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self, LearnedError> {
        Ok(Self {
            net: self.net.to_dtype(dtype)?,
        })
    }

    /// `eps_hat(x, t)`, `(N, D)`, one time per row.
    ///
    /// # Errors
    /// Shapes, bad times; candle errors.
    pub fn eps(&self, x: &Tensor, times: &RowTimes) -> Result<Tensor, LearnedError> {
        let (u, f) = self.net.residual(x, times)?;
        Ok((self.prior().eps(&u, times)? + f)?)
    }

    /// `s(x, t) = -eps_hat / sqrt(1 - abar)`, `(N, D)`.
    ///
    /// # Errors
    /// As [`Self::eps`].
    pub fn score(&self, x: &Tensor, times: &RowTimes) -> Result<Tensor, LearnedError> {
        let e = self.eps(x, times)?;
        let k = times.column(|l| -one_minus_exp(l).sqrt().recip(), x.dtype(), x.device())?;
        Ok(e.broadcast_mul(&k)?)
    }

    /// The score and its Jacobian `J_ij = d s_i / d x_j` per row by forward-mode tangents
    /// ([`Backbone::forward_jacobian`]: exact; forward-mode tangents for an MLP, `D` reverse-mode
    /// products for a U-Net):
    /// `J = -c_in^2 I - (c_in / sqrt(1 - abar)) J_F(u)`. Returns `(s (N, D), J)` with `J`
    /// flat per row, column-major: `J_ij` at `n D^2 + j D + i`.
    ///
    /// # Errors
    /// As [`Self::eps`].
    pub fn score_and_jacobian(
        &self,
        x: &Tensor,
        times: &RowTimes,
    ) -> Result<(Tensor, Vec<f64>), LearnedError> {
        times.validate()?;
        let (n, d) = x.dims2()?;
        let u = self.prior().scaled_input(x, times)?;
        let c = times.time_input(x.dtype(), x.device())?;
        let (f, jf) = self.backbone().forward_jacobian(&u, &c)?;
        let e = (self.prior().eps(&u, times)? + f)?;
        let k = times.column(|l| -one_minus_exp(l).sqrt().recip(), x.dtype(), x.device())?;
        let s = e.broadcast_mul(&k)?;
        let jf = crate::tensor::host_flat(&jf)?; // [j, n, i]
        let mut jac = vec![0.0; n * d * d];
        for (r, &l) in times.ln_abar.iter().enumerate() {
            let c_in2 = self.prior().marginal_var(l).recip();
            let g = c_in2.sqrt() / one_minus_exp(l).sqrt();
            for j in 0..d {
                for i in 0..d {
                    let diag = if i == j { c_in2 } else { 0.0 };
                    jac[r * d * d + j * d + i] = -diag - g * jf[(j * n + r) * d + i];
                }
            }
        }
        Ok((s, jac))
    }

    /// `J^T v` per row: the gradient of `sum_n <s(x_n), v_n>` with respect to `x`
    /// (reverse mode; `J_ij = d s_i / d x_j`).
    ///
    /// # Errors
    /// As [`Self::eps`]; no gradient reaching `x`.
    pub fn jt_v(&self, x: &Tensor, times: &RowTimes, v: &Tensor) -> Result<Tensor, LearnedError> {
        let xv = Var::from_tensor(&x.detach())?;
        let s = self.score(xv.as_tensor(), times)?;
        Ok(grad_of_dot(&s, v, &xv)?)
    }
}

/// [`TensorLocal`] of a [`ScoreNet`]: the points (as a variable), the score and the graph
/// that `J^T v` is taken through.
#[derive(Debug)]
pub struct NetLocal {
    x: Var,
    score: Tensor,
}

impl NetLocal {
    /// `J^T v` per row.
    ///
    /// # Errors
    /// Candle errors.
    pub fn jt_v(&self, v: &Tensor) -> Result<Tensor, LearnedError> {
        Ok(grad_of_dot(&self.score, v, &self.x)?)
    }
}

/// A learned-model error as a tensor-path error (what the sampler seam returns).
pub(crate) fn to_tensor_error(e: LearnedError) -> TensorError {
    match e {
        LearnedError::Tensor(t) => t,
        LearnedError::Candle(c) => TensorError::Candle(c),
        other => TensorError::Unsupported(other.to_string()),
    }
}

impl TensorLocal for NetLocal {
    fn x(&self) -> &Tensor {
        self.x.as_tensor()
    }
    fn score(&self) -> &Tensor {
        &self.score
    }
    /// `J^T v` (reverse mode): the product LGS and Hutchinson see for a learned score.
    fn hvp(&self, v: &Tensor) -> Result<Tensor, TensorError> {
        self.jt_v(v).map_err(to_tensor_error)
    }
}

impl TensorScoreModel for ScoreNet {
    type Local<'a> = NetLocal;

    fn dim(&self) -> usize {
        self.prior().mean.len()
    }

    fn device(&self) -> &Device {
        self.net.device()
    }

    fn at(&self, x: &Tensor, ln_abar: f64) -> Result<NetLocal, TensorError> {
        let n = x.dim(0)?;
        let xv = Var::from_tensor(&x.detach())?;
        let score = self
            .score(xv.as_tensor(), &RowTimes::same(ln_abar, n))
            .map_err(to_tensor_error)?;
        Ok(NetLocal { x: xv, score })
    }
}
