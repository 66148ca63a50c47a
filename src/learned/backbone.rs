//! The network behind every learned model: a [`TimeMlp`] or a convolutional [`TimeUnet`], both
//! maps `F(u, c)` from the scaled state `u` `(N, D)` and the time input `c` `(N, 1)` to `(N, D)`.

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::mlp::{MlpShape, TimeMlp};
use super::unet::{TimeUnet, UnetShape};
use super::LearnedError;

/// The architecture and shape of a network to build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    /// A time-conditioned MLP.
    Mlp(MlpShape),
    /// A time-conditioned U-Net on images.
    Unet(UnetShape),
}

impl Arch {
    /// `mlp` or `unet`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Mlp(_) => "mlp",
            Self::Unet(_) => "unet",
        }
    }

    /// The input (= output) dimension `D`.
    #[must_use]
    pub fn dim(&self) -> usize {
        match self {
            Self::Mlp(s) => s.input,
            Self::Unet(s) => s.dim(),
        }
    }

    /// The number of parameters.
    #[must_use]
    pub fn parameter_count(&self) -> usize {
        match self {
            Self::Mlp(s) => s.parameter_count(),
            Self::Unet(s) => s.parameter_count(),
        }
    }
}

/// A network of either architecture.
#[derive(Clone, Debug)]
pub enum Backbone {
    /// A time-conditioned MLP.
    Mlp(TimeMlp),
    /// A time-conditioned U-Net.
    Unet(TimeUnet),
}

impl Backbone {
    /// A fresh trainable network of `arch` and its variables (seeded), its output scaled by
    /// `out_scale`.
    ///
    /// # Errors
    /// A bad shape; candle errors.
    pub fn init(
        arch: &Arch,
        seed: u64,
        out_scale: f64,
        device: &Device,
    ) -> Result<(Self, Vec<Var>), LearnedError> {
        Ok(match arch {
            Arch::Mlp(s) => {
                let (m, v) = TimeMlp::init(*s, seed, out_scale, device)?;
                (Self::Mlp(m), v)
            }
            Arch::Unet(s) => {
                let (m, v) = TimeUnet::init(s.clone(), seed, out_scale, device)?;
                (Self::Unet(m), v)
            }
        })
    }

    /// The architecture and shape.
    #[must_use]
    pub fn arch(&self) -> Arch {
        match self {
            Self::Mlp(m) => Arch::Mlp(m.shape()),
            Self::Unet(u) => Arch::Unet(u.shape().clone()),
        }
    }

    /// The MLP, if this is one.
    #[must_use]
    pub fn mlp(&self) -> Option<&TimeMlp> {
        match self {
            Self::Mlp(m) => Some(m),
            Self::Unet(_) => None,
        }
    }

    /// A copy with plain-tensor parameters.
    #[must_use]
    pub fn frozen(&self) -> Self {
        match self {
            Self::Mlp(m) => Self::Mlp(m.frozen()),
            Self::Unet(u) => Self::Unet(u.frozen()),
        }
    }

    /// The same network in `dtype`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self, LearnedError> {
        Ok(match self {
            Self::Mlp(m) => Self::Mlp(m.to_dtype(dtype)?),
            Self::Unet(u) => Self::Unet(u.to_dtype(dtype)?),
        })
    }

    /// `F(u, c)`.
    ///
    /// # Errors
    /// Shape mismatches; candle errors.
    pub fn forward(&self, u: &Tensor, c: &Tensor) -> Result<Tensor, LearnedError> {
        match self {
            Self::Mlp(m) => m.forward(u, c),
            Self::Unet(n) => n.forward(u, c),
        }
    }

    /// `F(u, c)` and `jac[j, n, i] = d F_i / d u_j` (forward-mode tangents for the MLP,
    /// `D` reverse-mode products for the U-Net).
    ///
    /// # Errors
    /// As [`Self::forward`].
    pub fn forward_jacobian(
        &self,
        u: &Tensor,
        c: &Tensor,
    ) -> Result<(Tensor, Tensor), LearnedError> {
        match self {
            Self::Mlp(m) => m.forward_jacobian(u, c),
            Self::Unet(n) => n.forward_jacobian(u, c),
        }
    }

    /// The parameters as named tensors: the MLP's `w{l}`, `b{l}`, the U-Net's by
    /// [`UnetShape::param_specs`] name.
    #[must_use]
    pub fn named_params(&self) -> Vec<(String, Tensor)> {
        match self {
            Self::Mlp(m) => m
                .params()
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let name = if i % 2 == 0 {
                        format!("w{}", i / 2)
                    } else {
                        format!("b{}", i / 2)
                    };
                    (name, p.clone())
                })
                .collect(),
            Self::Unet(u) => u
                .params()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}
