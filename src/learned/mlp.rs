//! A time-conditioned multilayer perceptron in plain candle ops.
//!
//! # Formula
//! ```text
//! e(c)  = [c, sin(pi 2^j c), cos(pi 2^j c)]_{j < F}          (Fourier features of the time input c)
//! z_0   = [u, e(c)]                                          (u: the (scaled) state, N x D_in)
//! z_l   = silu(z_{l-1} W_l + b_l),  l = 1..L                  (hidden width H)
//! out   = z_L W_{L+1} + b_{L+1}                               (N x D_out)
//! ```
//! Only matmul, add, mul, sin, cos and silu are used: every op has a backward pass in candle
//! (fused ops such as `softmax_last_dim` do not and would silently drop gradients).
//!
//! Weights are drawn on the host from a seeded ChaCha8 generator (candle's CPU generator cannot
//! be seeded): `W_l ~ N(0, 2 / fan_in)` (He), biases 0, and the output layer scaled by
//! `out_scale` so that a fresh network starts near its prior (the callers add an analytic
//! prior to the output). Trainable networks hold their parameters as [`Var`]s; a frozen copy
//! ([`TimeMlp::frozen`]) holds plain tensors, so a backward pass through it reaches only its
//! inputs.

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::LearnedError;

/// The shape of a [`TimeMlp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MlpShape {
    /// Width of the state input `D_in`.
    pub input: usize,
    /// Width of the output `D_out`.
    pub output: usize,
    /// Hidden width `H`.
    pub hidden: usize,
    /// Number of hidden layers `L >= 1`.
    pub layers: usize,
    /// Number of Fourier frequencies `F`.
    pub fourier: usize,
}

impl MlpShape {
    /// The width of `z_0`: `D_in + 1 + 2F`.
    #[must_use]
    pub fn first_width(&self) -> usize {
        self.input + 1 + 2 * self.fourier
    }

    /// The `(fan_in, fan_out)` of every linear layer, in order.
    #[must_use]
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        let mut dims = vec![(self.first_width(), self.hidden)];
        for _ in 1..self.layers {
            dims.push((self.hidden, self.hidden));
        }
        dims.push((self.hidden, self.output));
        dims
    }

    /// The number of parameters.
    #[must_use]
    pub fn parameter_count(&self) -> usize {
        self.layer_dims().iter().map(|(i, o)| i * o + o).sum()
    }

    fn validate(&self) -> Result<(), LearnedError> {
        for (field, v) in [
            ("input", self.input),
            ("output", self.output),
            ("hidden", self.hidden),
            ("layers", self.layers),
        ] {
            if v == 0 {
                return Err(LearnedError::InvalidParameter {
                    field,
                    reason: "must be >= 1".into(),
                });
            }
        }
        Ok(())
    }
}

/// A time-conditioned MLP (see the module docs).
#[derive(Clone, Debug)]
pub struct TimeMlp {
    shape: MlpShape,
    /// `W_1, b_1, W_2, b_2, ...`; `W_l` stored `(fan_in, fan_out)`, `b_l` as `(1, fan_out)`.
    params: Vec<Tensor>,
    /// The Fourier frequencies `pi 2^j`, `(1, F)`.
    freqs: Tensor,
}

impl TimeMlp {
    /// A fresh trainable network and its variables (for the optimiser), weights from
    /// ChaCha8 `seed`, f32 on `device`.
    ///
    /// # Errors
    /// A zero width; candle errors.
    pub fn init(
        shape: MlpShape,
        seed: u64,
        out_scale: f64,
        device: &Device,
    ) -> Result<(Self, Vec<Var>), LearnedError> {
        shape.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dims = shape.layer_dims();
        let mut vars = Vec::with_capacity(2 * dims.len());
        for (l, &(fan_in, fan_out)) in dims.iter().enumerate() {
            let gain = if l + 1 == dims.len() { out_scale } else { 1.0 };
            let sd = gain * (2.0 / fan_in as f64).sqrt();
            let w: Vec<f32> = (0..fan_in * fan_out)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    (sd * z) as f32
                })
                .collect();
            vars.push(Var::from_tensor(&Tensor::from_vec(
                w,
                (fan_in, fan_out),
                device,
            )?)?);
            vars.push(Var::zeros((1, fan_out), DType::F32, device)?);
        }
        let params = vars.iter().map(|v| v.as_tensor().clone()).collect();
        Ok((Self::assemble(shape, params, device)?, vars))
    }

    /// A fresh residual network over the Gaussian prior `prior` (`D -> D`, `D` the prior's
    /// dimension), its output layer scaled by 0.1 so that it starts near the prior.
    ///
    /// # Errors
    /// [`LearnedError::Shape`] when `shape` is not `D -> D`; as [`Self::init`].
    pub fn init_for(
        prior: &super::GaussianPrior,
        shape: MlpShape,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, Vec<Var>), LearnedError> {
        let d = prior.mean.len();
        if shape.input != d || shape.output != d {
            return Err(LearnedError::Shape(format!(
                "shape {} -> {} for data of dimension {d}",
                shape.input, shape.output
            )));
        }
        Self::init(shape, seed, 0.1, device)
    }

    /// A network from stored parameters `[W_1, b_1, ...]` (shapes checked).
    ///
    /// # Errors
    /// [`LearnedError::Shape`] when a tensor does not have the shape `shape` implies.
    pub fn from_params(
        shape: MlpShape,
        params: Vec<Tensor>,
        device: &Device,
    ) -> Result<Self, LearnedError> {
        shape.validate()?;
        let dims = shape.layer_dims();
        if params.len() != 2 * dims.len() {
            return Err(LearnedError::Shape(format!(
                "{} parameter tensors for {} layers (need {})",
                params.len(),
                dims.len(),
                2 * dims.len()
            )));
        }
        for (l, &(i, o)) in dims.iter().enumerate() {
            let (w, b) = (&params[2 * l], &params[2 * l + 1]);
            if w.dims() != [i, o] || b.dims() != [1, o] {
                return Err(LearnedError::Shape(format!(
                    "layer {l}: W {:?}, b {:?}, expected [{i}, {o}] and [1, {o}]",
                    w.dims(),
                    b.dims()
                )));
            }
        }
        Self::assemble(shape, params, device)
    }

    fn assemble(
        shape: MlpShape,
        params: Vec<Tensor>,
        device: &Device,
    ) -> Result<Self, LearnedError> {
        let freqs: Vec<f32> = (0..shape.fourier)
            .map(|j| (std::f64::consts::PI * f64::from(1u32 << j.min(30))) as f32)
            .collect();
        let freqs = Tensor::from_vec(freqs, (1, shape.fourier), device)?;
        Ok(Self {
            shape,
            params,
            freqs,
        })
    }

    /// A copy whose parameters are plain tensors (detached from the variables): a backward
    /// pass through it computes gradients for its inputs only.
    #[must_use]
    pub fn frozen(&self) -> Self {
        Self {
            shape: self.shape,
            params: self.params.iter().map(Tensor::detach).collect(),
            freqs: self.freqs.clone(),
        }
    }

    /// The same network with every parameter converted to `dtype` (e.g. f64 for a
    /// finite-difference check).
    ///
    /// # Errors
    /// Candle errors.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self, LearnedError> {
        Ok(Self {
            shape: self.shape,
            params: self
                .params
                .iter()
                .map(|p| p.to_dtype(dtype))
                .collect::<Result<_, _>>()?,
            freqs: self.freqs.to_dtype(dtype)?,
        })
    }

    /// The shape.
    #[must_use]
    pub fn shape(&self) -> MlpShape {
        self.shape
    }

    /// The parameters `[W_1, b_1, ...]`.
    #[must_use]
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// `out(u, c)` for states `u` `(N, D_in)` and time inputs `c` `(N, 1)`, in the dtype of
    /// the parameters.
    ///
    /// # Errors
    /// Shape mismatches; candle errors.
    pub fn forward(&self, u: &Tensor, c: &Tensor) -> Result<Tensor, LearnedError> {
        Ok(self.forward_impl(u, c, false)?.0)
    }

    /// `out(u, c)` and its Jacobian with respect to `u` by forward-mode propagation of the
    /// `D_in` unit tangents (no autograd graph):
    /// ```text
    /// dz_1 = e_j W_1[:D_in],  dz_l = (silu'(z_{l-1}) .* dz_{l-1}) W_l,
    /// silu'(z) = sigma(z) (1 + z (1 - sigma(z)))
    /// ```
    /// Returns `(out (N, D_out), jac (D_in, N, D_out))` with `jac[j, n, i] = d out_i / d u_j`
    /// at row `n`. Costs about `1 + D_in` forward passes.
    ///
    /// # Errors
    /// As [`Self::forward`].
    pub fn forward_jacobian(
        &self,
        u: &Tensor,
        c: &Tensor,
    ) -> Result<(Tensor, Tensor), LearnedError> {
        let (out, jac) = self.forward_impl(u, c, true)?;
        let jac = jac.ok_or_else(|| LearnedError::Shape("no tangents".into()))?;
        Ok((out, jac))
    }

    fn forward_impl(
        &self,
        u: &Tensor,
        c: &Tensor,
        tangents: bool,
    ) -> Result<(Tensor, Option<Tensor>), LearnedError> {
        let (n, d) = u.dims2()?;
        if d != self.shape.input || c.dims2()? != (n, 1) {
            return Err(LearnedError::Shape(format!(
                "input {:?} and time {:?}, expected (N, {}) and (N, 1)",
                u.dims(),
                c.dims(),
                self.shape.input
            )));
        }
        let mut parts = vec![u.clone(), c.clone()];
        if self.shape.fourier > 0 {
            let arg = c.broadcast_mul(&self.freqs)?;
            parts.push(arg.sin()?);
            parts.push(arg.cos()?);
        }
        let mut z = Tensor::cat(&parts, 1)?;
        let last = self.params.len() / 2 - 1;
        // Tangents over the input directions, (D_in, N, width); the first layer's are the rows
        // e_j W_1[:D_in], the same for every sample, kept as (D_in, 1, width) until multiplied.
        let mut dz: Option<Tensor> = None;
        for l in 0..=last {
            let w = &self.params[2 * l];
            let width = w.dim(1)?;
            if tangents {
                dz = Some(match dz {
                    None => w.narrow(0, 0, d)?.unsqueeze(1)?,
                    Some(t) => t
                        .reshape((d * n, t.dim(2)?))?
                        .matmul(w)?
                        .reshape((d, n, width))?,
                });
            }
            z = z.matmul(w)?.broadcast_add(&self.params[2 * l + 1])?;
            if l < last {
                if let Some(t) = dz.take() {
                    // silu'(z) = sigma(z) (1 + z (1 - sigma(z))); no autograd here, so the fused
                    // sigmoid is fine.
                    let sig = candle_nn::ops::sigmoid(&z)?;
                    let deriv = (&sig * ((&z * sig.affine(-1.0, 1.0)?)? + 1.0)?)?;
                    dz = Some(t.broadcast_mul(&deriv.unsqueeze(0)?)?);
                }
                z = z.silu()?;
            }
        }
        let jac = match dz {
            Some(t) => Some(t.reshape((d, n, self.shape.output))?),
            None => None,
        };
        Ok((z, jac))
    }
}
