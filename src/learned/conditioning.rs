//! The time input of the networks and the Gaussian prior they are residuals of.
//!
//! # Formula
//! ```text
//! lambda = ln abar - ln(1 - abar)              (log-SNR; c = lambda / LAMBDA_SCALE is the network's time input)
//! ln abar = -ln(1 + e^-lambda),  1 - abar = 1 / (1 + e^lambda)
//! prior N(mu_d, v_d I) of the data:  c_in = (abar v_d + 1 - abar)^(-1/2),  u = c_in (x - sqrt(abar) mu_d)
//! eps_G = sqrt(1 - abar) c_in u                (the noise prediction of the Gaussian prior)
//! n_G   = abar v_d / (abar v_d + 1 - abar)    (its Cov(eps | x_t), per coordinate)
//! ```
//! Every network here predicts a residual over its Gaussian-prior value, so an untrained network
//! is the moment-matched Gaussian model and training only has to learn the mixture structure.

use candle_core::{DType, Device, Tensor};

use super::LearnedError;

/// The log-SNR scale of the time input `c = lambda / LAMBDA_SCALE`.
pub const LAMBDA_SCALE: f64 = 12.0;

/// `-expm1(x) = 1 - e^x` without cancellation.
#[must_use]
pub fn one_minus_exp(x: f64) -> f64 {
    0.0 - x.exp_m1()
}

/// `ln abar` of the log-SNR `lambda`: `-ln(1 + e^-lambda)`.
#[must_use]
pub fn ln_abar_of_lambda(lambda: f64) -> f64 {
    -(-lambda).exp().ln_1p()
}

/// The log-SNR of `ln abar` (`+inf` at `ln abar = 0`).
#[must_use]
pub fn lambda_of_ln_abar(ln_abar: f64) -> f64 {
    ln_abar - one_minus_exp(ln_abar).ln()
}

/// One time (`ln abar`) per row of a batch, with the per-row columns the networks need.
#[derive(Clone, Debug, PartialEq)]
pub struct RowTimes {
    /// `ln abar_t` per row (all `< 0`).
    pub ln_abar: Vec<f64>,
}

impl RowTimes {
    /// `n` rows at the same time.
    #[must_use]
    pub fn same(ln_abar: f64, n: usize) -> Self {
        Self {
            ln_abar: vec![ln_abar; n],
        }
    }

    /// The number of rows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ln_abar.len()
    }

    /// True without rows.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ln_abar.is_empty()
    }

    /// The `(N, 1)` column `f(ln abar_n)` in `dtype`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn column(
        &self,
        f: impl Fn(f64) -> f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, LearnedError> {
        let v: Vec<f64> = self.ln_abar.iter().map(|&l| f(l)).collect();
        Ok(Tensor::from_vec(v, (self.len(), 1), device)?.to_dtype(dtype)?)
    }

    /// The network time input `c = lambda / LAMBDA_SCALE`, `(N, 1)`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn time_input(&self, dtype: DType, device: &Device) -> Result<Tensor, LearnedError> {
        self.column(|l| lambda_of_ln_abar(l) / LAMBDA_SCALE, dtype, device)
    }

    /// Checks that every time is finite and `< 0` (the networks are not defined at the data).
    ///
    /// # Errors
    /// [`LearnedError::InvalidParameter`] naming `ln_abar`.
    pub fn validate(&self) -> Result<(), LearnedError> {
        match self.ln_abar.iter().find(|l| !(l.is_finite() && **l < 0.0)) {
            Some(l) => Err(LearnedError::InvalidParameter {
                field: "ln_abar",
                reason: format!("{l}: a network time must be finite and < 0 (t > 0)"),
            }),
            None => Ok(()),
        }
    }
}

/// The moment-matched Gaussian `N(mu_d, v_d I)` of the data (see the module docs).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GaussianPrior {
    /// The data mean `mu_d`.
    pub mean: Vec<f64>,
    /// The mean per-coordinate data variance `v_d`.
    pub var: f64,
}

impl GaussianPrior {
    /// The prior of a data set with mean `mean` and total variance `trace` (`v_d = trace / D`).
    #[must_use]
    pub fn from_moments(mean: Vec<f64>, trace: f64) -> Self {
        let d = mean.len().max(1) as f64;
        Self {
            mean,
            var: trace / d,
        }
    }

    /// `abar v_d + 1 - abar`.
    #[must_use]
    pub fn marginal_var(&self, ln_abar: f64) -> f64 {
        ln_abar.exp() * self.var + one_minus_exp(ln_abar)
    }

    /// `n_G = abar v_d / (abar v_d + 1 - abar)`.
    #[must_use]
    pub fn cov_eps(&self, ln_abar: f64) -> f64 {
        ln_abar.exp() * self.var / self.marginal_var(ln_abar)
    }

    /// The scaled input `u = c_in (x - sqrt(abar) mu_d)`, `(N, D)` in the dtype of `x`.
    ///
    /// # Errors
    /// Candle errors; a mean of the wrong dimension.
    pub fn scaled_input(&self, x: &Tensor, times: &RowTimes) -> Result<Tensor, LearnedError> {
        let (n, d) = x.dims2()?;
        if d != self.mean.len() || n != times.len() {
            return Err(LearnedError::Shape(format!(
                "x {:?} with {} times for a prior of dimension {}",
                x.dims(),
                times.len(),
                self.mean.len()
            )));
        }
        let (dt, dev) = (x.dtype(), x.device());
        let mean = Tensor::from_vec(self.mean.clone(), (1, d), dev)?.to_dtype(dt)?;
        let sa = times.column(|l| (0.5 * l).exp(), dt, dev)?;
        let c_in = times.column(|l| self.marginal_var(l).sqrt().recip(), dt, dev)?;
        Ok(x.broadcast_sub(&sa.broadcast_mul(&mean)?)?
            .broadcast_mul(&c_in)?)
    }

    /// `eps_G = sqrt(1 - abar) c_in u` from the scaled input `u`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn eps(&self, u: &Tensor, times: &RowTimes) -> Result<Tensor, LearnedError> {
        let col = times.column(
            |l| (one_minus_exp(l) / self.marginal_var(l)).sqrt(),
            u.dtype(),
            u.device(),
        )?;
        Ok(u.broadcast_mul(&col)?)
    }
}

/// A network that is a residual over the Gaussian prior: a backbone (MLP or U-Net) of the
/// scaled input `u = c_in (x - sqrt(abar) mu_d)` and the time input, with the prior it is
/// scaled by. [`super::ScoreNet`] and [`super::Head`] are this plus how they read the output.
#[derive(Clone, Debug)]
pub struct PriorNet {
    net: super::Backbone,
    prior: GaussianPrior,
    device: Device,
}

impl PriorNet {
    /// A fresh MLP network of shape `shape` (`D -> D`) and its variables.
    ///
    /// # Errors
    /// As [`super::TimeMlp::init_for`].
    pub fn init(
        prior: GaussianPrior,
        shape: super::MlpShape,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, Vec<candle_core::Var>), LearnedError> {
        let (mlp, vars) = super::TimeMlp::init_for(&prior, shape, seed, device)?;
        Ok((Self::new(super::Backbone::Mlp(mlp), prior, device), vars))
    }

    /// A fresh network of architecture `arch` (`D -> D`, `D` the prior's dimension) and its
    /// variables, its output scaled by 0.1 so that it starts near the prior.
    ///
    /// # Errors
    /// [`LearnedError::Shape`] when `arch` does not map `D -> D`; a bad shape; candle errors.
    pub fn init_arch(
        prior: GaussianPrior,
        arch: &super::Arch,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, Vec<candle_core::Var>), LearnedError> {
        if let super::Arch::Mlp(shape) = arch {
            return Self::init(prior, *shape, seed, device);
        }
        let d = prior.mean.len();
        if arch.dim() != d {
            return Err(LearnedError::Shape(format!(
                "a {} for D = {} on data of dimension {d}",
                arch.name(),
                arch.dim()
            )));
        }
        let (net, vars) = super::Backbone::init(arch, seed, 0.1, device)?;
        Ok((Self::new(net, prior, device), vars))
    }

    /// A network from its parts (checkpoint loading).
    #[must_use]
    pub fn new(net: super::Backbone, prior: GaussianPrior, device: &Device) -> Self {
        Self {
            net,
            prior,
            device: device.clone(),
        }
    }

    /// The same network with plain-tensor parameters.
    #[must_use]
    pub fn frozen(&self) -> Self {
        Self::new(self.net.frozen(), self.prior.clone(), &self.device)
    }

    /// The same network in `dtype`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self, LearnedError> {
        Ok(Self::new(
            self.net.to_dtype(dtype)?,
            self.prior.clone(),
            &self.device,
        ))
    }

    /// The backbone network.
    #[must_use]
    pub fn backbone(&self) -> &super::Backbone {
        &self.net
    }

    /// The MLP, if the backbone is one.
    #[must_use]
    pub fn mlp(&self) -> Option<&super::TimeMlp> {
        self.net.mlp()
    }

    /// The Gaussian prior.
    #[must_use]
    pub fn prior(&self) -> &GaussianPrior {
        &self.prior
    }

    /// The device.
    #[must_use]
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `(u, F(u, c))`: the scaled input and the network residual, one time per row.
    ///
    /// # Errors
    /// Shapes, bad times; candle errors.
    pub fn residual(&self, x: &Tensor, times: &RowTimes) -> Result<(Tensor, Tensor), LearnedError> {
        times.validate()?;
        let u = self.prior.scaled_input(x, times)?;
        let c = times.time_input(x.dtype(), x.device())?;
        let f = self.net.forward(&u, &c)?;
        Ok((u, f))
    }
}
