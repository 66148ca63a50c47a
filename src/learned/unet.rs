//! A small time-conditioned U-Net in plain candle ops: the convolutional backbone of the image
//! models (`--net unet`), in place of [`super::TimeMlp`] behind the same Gaussian-prior
//! residual ([`super::PriorNet`]).
//!
//! # Architecture
//! ```text
//! input   u (N, D) seen as images (N, C, H, W);  time input c (N, 1)
//! time    e(c) = [c, sin(pi 2^j c), cos(pi 2^j c)]_{j<F};  tau = W_t2 silu(W_t1 e(c) + b_t1) + b_t2   (N, E)
//! stem    h = conv3x3(u)                                                      (base channels)
//! down    level i = 0..L-1: h = Res_i(h), keep h as skip_i, then avgpool 2x2 (not after the last)
//! middle  h = Res_mid(h)
//! up      level i = L-1..0: h = Res'_i([h, skip_i]), then nearest 2x upsampling (not after level 0)
//! out     F = conv3x3(silu(GN(h)))                                            (C channels, flattened to (N, D))
//! Res(x)  = skip(x) + conv3x3(silu(GN(conv3x3(silu(GN(x))) + W_tau silu(tau) + b_tau)))
//! ```
//! Level `i` has `base * mult_i` channels with `mult = 1, 2, 2, ...`; `GN` is group norm over
//! `groups` channel groups (mean and variance over a group's channels and pixels, eps 1e-5,
//! per-channel scale and shift); `skip` is the identity or a 1x1 convolution when the channel
//! count changes. `E = 2 base`.
//!
//! Only ops with a backward pass in candle are used (matmul, zero padding, slices, broadcast arithmetic,
//! reductions, sqrt, silu, sin, cos, `avg_pool2d` with kernel = stride); convolutions are
//! im2col and a matrix product. Nearest upsampling is
//! a broadcast and a reshape, not `upsample_nearest2d`, whose backward in candle 0.11
//! overwrites instead of accumulating the gradient of its input.
//!
//! Weights are drawn on the host from a seeded ChaCha8 generator in the fixed order of
//! [`UnetShape::param_specs`]: convolution and linear weights `N(0, 2 / fan_in)` (He), biases
//! and group-norm shifts 0, group-norm scales 1, the output convolution scaled by
//! `out_scale` so that a fresh network starts near its prior.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var, D};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::LearnedError;

/// The group-norm epsilon.
const GN_EPS: f64 = 1e-5;

/// Rows per piece of [`TimeUnet::forward`].
const FORWARD_ROWS: usize = 2048;

/// Replicas (rows x probes) per reverse pass of [`TimeUnet::forward_jacobian`].
const JACOBIAN_REPLICAS: usize = 1024;

/// The shape of a [`TimeUnet`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnetShape {
    /// Image channels `C`.
    pub channels: usize,
    /// Image height `H`.
    pub height: usize,
    /// Image width `W`.
    pub width: usize,
    /// Channels of the first level `base`.
    pub base: usize,
    /// Number of resolutions `L >= 1` (`H` and `W` must be divisible by `2^(L-1)`).
    pub levels: usize,
    /// Group-norm groups (must divide `base`).
    pub groups: usize,
    /// Fourier frequencies of the time input `F`.
    pub fourier: usize,
}

/// How a parameter is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// `N(0, gain^2 2 / fan_in)`.
    He {
        /// The fan-in.
        fan_in: usize,
        /// The gain (1, or the output layer's scale).
        gain: f64,
    },
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
}

/// One parameter: its name (the checkpoint's tensor name), dimensions and initialisation.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// Name, e.g. `down0.conv1.w`.
    pub name: String,
    /// Dimensions.
    pub dims: Vec<usize>,
    /// Initialisation.
    pub init: Init,
}

impl UnetShape {
    /// The data dimension `D = C H W`.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The time-embedding width `E = 2 base`.
    #[must_use]
    pub fn embed(&self) -> usize {
        2 * self.base
    }

    /// The channels of level `i`: `base * (1, 2, 2, ...)_i`.
    #[must_use]
    pub fn level_channels(&self, i: usize) -> usize {
        if i == 0 {
            self.base
        } else {
            2 * self.base
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`LearnedError::InvalidParameter`] naming the field.
    pub fn validate(&self) -> Result<(), LearnedError> {
        let bad =
            |field: &'static str, reason: String| LearnedError::InvalidParameter { field, reason };
        for (field, v) in [
            ("channels", self.channels),
            ("height", self.height),
            ("width", self.width),
            ("base", self.base),
            ("levels", self.levels),
            ("groups", self.groups),
        ] {
            if v == 0 {
                return Err(bad(field, "must be >= 1".into()));
            }
        }
        if self.base % self.groups != 0 {
            return Err(bad(
                "groups",
                format!(
                    "{} groups do not divide {} base channels",
                    self.groups, self.base
                ),
            ));
        }
        let f = 1usize << (self.levels - 1).min(20);
        if self.levels > 8 || self.height % f != 0 || self.width % f != 0 {
            return Err(bad(
                "levels",
                format!(
                    "{} resolutions need H and W divisible by 2^{} (the image is {}x{})",
                    self.levels,
                    self.levels - 1,
                    self.height,
                    self.width
                ),
            ));
        }
        Ok(())
    }

    fn res_specs(&self, name: &str, cin: usize, cout: usize, specs: &mut Vec<ParamSpec>) {
        let he = |fan_in| Init::He { fan_in, gain: 1.0 };
        let mut push = |suffix: &str, dims: Vec<usize>, init: Init| {
            specs.push(ParamSpec {
                name: format!("{name}.{suffix}"),
                dims,
                init,
            });
        };
        push("gn1.g", vec![cin], Init::Ones);
        push("gn1.b", vec![cin], Init::Zeros);
        push("conv1.w", vec![cout, cin, 3, 3], he(9 * cin));
        push("conv1.b", vec![cout], Init::Zeros);
        push("time.w", vec![self.embed(), cout], he(self.embed()));
        push("time.b", vec![cout], Init::Zeros);
        push("gn2.g", vec![cout], Init::Ones);
        push("gn2.b", vec![cout], Init::Zeros);
        push("conv2.w", vec![cout, cout, 3, 3], he(9 * cout));
        push("conv2.b", vec![cout], Init::Zeros);
        if cin != cout {
            push("skip.w", vec![cout, cin, 1, 1], he(cin));
            push("skip.b", vec![cout], Init::Zeros);
        }
    }

    /// Every parameter in initialisation order (see the module docs), the output
    /// convolution's weights with gain `out_scale`.
    #[must_use]
    pub fn param_specs(&self, out_scale: f64) -> Vec<ParamSpec> {
        let mut s = Vec::new();
        let he = |fan_in| Init::He { fan_in, gain: 1.0 };
        let (e, t_in) = (self.embed(), 1 + 2 * self.fourier);
        let push = |s: &mut Vec<ParamSpec>, name: &str, dims: Vec<usize>, init: Init| {
            s.push(ParamSpec {
                name: name.into(),
                dims,
                init,
            });
        };
        push(&mut s, "time1.w", vec![t_in, e], he(t_in));
        push(&mut s, "time1.b", vec![e], Init::Zeros);
        push(&mut s, "time2.w", vec![e, e], he(e));
        push(&mut s, "time2.b", vec![e], Init::Zeros);
        push(
            &mut s,
            "stem.w",
            vec![self.base, self.channels, 3, 3],
            he(9 * self.channels),
        );
        push(&mut s, "stem.b", vec![self.base], Init::Zeros);
        let mut ch = self.base;
        for i in 0..self.levels {
            let c = self.level_channels(i);
            self.res_specs(&format!("down{i}"), ch, c, &mut s);
            ch = c;
        }
        self.res_specs("mid", ch, ch, &mut s);
        for i in (0..self.levels).rev() {
            let c = self.level_channels(i);
            self.res_specs(&format!("up{i}"), ch + c, c, &mut s);
            ch = c;
        }
        push(&mut s, "out.gn.g", vec![ch], Init::Ones);
        push(&mut s, "out.gn.b", vec![ch], Init::Zeros);
        push(
            &mut s,
            "out.w",
            vec![self.channels, ch, 3, 3],
            Init::He {
                fan_in: 9 * ch,
                gain: out_scale,
            },
        );
        push(&mut s, "out.b", vec![self.channels], Init::Zeros);
        s
    }

    /// The number of parameters.
    #[must_use]
    pub fn parameter_count(&self) -> usize {
        self.param_specs(1.0)
            .iter()
            .map(|p| p.dims.iter().product::<usize>())
            .sum()
    }
}

/// A time-conditioned U-Net (see the module docs).
#[derive(Clone, Debug)]
pub struct TimeUnet {
    shape: UnetShape,
    params: BTreeMap<String, Tensor>,
    /// The Fourier frequencies `pi 2^j`, `(1, F)`.
    freqs: Tensor,
}

impl TimeUnet {
    /// A fresh trainable network and its variables (in [`UnetShape::param_specs`] order),
    /// weights from ChaCha8 `seed`, f32 on `device`.
    ///
    /// # Errors
    /// A bad shape; candle errors.
    pub fn init(
        shape: UnetShape,
        seed: u64,
        out_scale: f64,
        device: &Device,
    ) -> Result<(Self, Vec<Var>), LearnedError> {
        shape.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut vars = Vec::new();
        let mut params = BTreeMap::new();
        for spec in shape.param_specs(out_scale) {
            let n: usize = spec.dims.iter().product();
            let v: Vec<f32> = match spec.init {
                Init::He { fan_in, gain } => {
                    let sd = gain * (2.0 / fan_in as f64).sqrt();
                    (0..n)
                        .map(|_| {
                            let z: f64 = StandardNormal.sample(&mut rng);
                            (sd * z) as f32
                        })
                        .collect()
                }
                Init::Zeros => vec![0.0; n],
                Init::Ones => vec![1.0; n],
            };
            let var = Var::from_tensor(&Tensor::from_vec(v, spec.dims.as_slice(), device)?)?;
            params.insert(spec.name, var.as_tensor().clone());
            vars.push(var);
        }
        Ok((Self::assemble(shape, params, device)?, vars))
    }

    /// A network from stored parameters (names and shapes checked against `shape`).
    ///
    /// # Errors
    /// [`LearnedError::Shape`] naming a missing or misshapen tensor.
    pub fn from_params(
        shape: UnetShape,
        mut stored: BTreeMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self, LearnedError> {
        shape.validate()?;
        let mut params = BTreeMap::new();
        for spec in shape.param_specs(1.0) {
            let t = stored
                .remove(&spec.name)
                .ok_or_else(|| LearnedError::Shape(format!("missing tensor `{}`", spec.name)))?;
            if t.dims() != spec.dims.as_slice() {
                return Err(LearnedError::Shape(format!(
                    "tensor `{}` is {:?}, expected {:?}",
                    spec.name,
                    t.dims(),
                    spec.dims
                )));
            }
            params.insert(spec.name, t);
        }
        Self::assemble(shape, params, device)
    }

    fn assemble(
        shape: UnetShape,
        params: BTreeMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self, LearnedError> {
        let dtype = params.values().next().map_or(DType::F32, Tensor::dtype);
        let freqs: Vec<f64> = (0..shape.fourier)
            .map(|j| std::f64::consts::PI * f64::from(1u32 << j.min(30)))
            .collect();
        let freqs = Tensor::from_vec(freqs, (1, shape.fourier), device)?
            .to_dtype(DType::F32)?
            .to_dtype(dtype)?;
        Ok(Self {
            shape,
            params,
            freqs,
        })
    }

    /// The shape.
    #[must_use]
    pub fn shape(&self) -> &UnetShape {
        &self.shape
    }

    /// The parameters by name.
    #[must_use]
    pub fn params(&self) -> &BTreeMap<String, Tensor> {
        &self.params
    }

    /// A copy whose parameters are plain tensors (detached from the variables).
    #[must_use]
    pub fn frozen(&self) -> Self {
        Self {
            shape: self.shape.clone(),
            params: self
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.detach()))
                .collect(),
            freqs: self.freqs.clone(),
        }
    }

    /// The same network with every parameter in `dtype`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self, LearnedError> {
        Ok(Self {
            shape: self.shape.clone(),
            params: self
                .params
                .iter()
                .map(|(k, v)| Ok((k.clone(), v.to_dtype(dtype)?)))
                .collect::<Result<_, LearnedError>>()?,
            freqs: self.freqs.to_dtype(dtype)?,
        })
    }

    fn p(&self, name: &str) -> Result<&Tensor, LearnedError> {
        self.params
            .get(name)
            .ok_or_else(|| LearnedError::Shape(format!("no parameter `{name}`")))
    }

    /// `x W + b` for `x` `(N, in)`, `W` `(in, out)`, `b` `(out)`.
    fn linear(&self, x: &Tensor, name: &str) -> Result<Tensor, LearnedError> {
        let w = self.p(&format!("{name}.w"))?;
        let b = self.p(&format!("{name}.b"))?;
        Ok(x.matmul(w)?.broadcast_add(&b.unsqueeze(0)?)?)
    }

    /// A `k x k` convolution (cross-correlation, "same" padding, `k` odd) and its bias, as
    /// im2col and one matrix product: the `k^2` shifted views of the zero-padded input are
    /// stacked as `(N, C_in k^2, H W)` and multiplied by the weights `(C_out, C_in k^2)`.
    /// The same numbers as candle's `conv2d`, but its backward pass is matrix products and
    /// slices, where candle's CPU backward of `conv2d` (a direct `conv_transpose2d`) took 85 %
    /// of a training step.
    fn conv(&self, x: &Tensor, name: &str) -> Result<Tensor, LearnedError> {
        let w = self.p(&format!("{name}.w"))?;
        let b = self.p(&format!("{name}.b"))?;
        let (n, c, h, wd) = x.dims4()?;
        let (cout, cin, k, _) = w.dims4()?;
        if cin != c {
            return Err(LearnedError::Shape(format!(
                "`{name}`: {c} input channels for a kernel of {cin}"
            )));
        }
        let cols = if k == 1 {
            x.reshape((n, c, h * wd))?
        } else {
            let pad = k / 2;
            let xp = x.pad_with_zeros(2, pad, pad)?.pad_with_zeros(3, pad, pad)?;
            let mut shifts = Vec::with_capacity(k * k);
            for dy in 0..k {
                for dx in 0..k {
                    shifts.push(xp.narrow(2, dy, h)?.narrow(3, dx, wd)?);
                }
            }
            Tensor::stack(&shifts, 2)?.reshape((n, c * k * k, h * wd))?
        };
        let y = w.reshape((cout, cin * k * k))?.broadcast_matmul(&cols)?;
        Ok(y.broadcast_add(&b.reshape((1, cout, 1))?)?
            .reshape((n, cout, h, wd))?)
    }

    /// Group norm with `groups` groups (see the module docs).
    fn group_norm(&self, x: &Tensor, name: &str) -> Result<Tensor, LearnedError> {
        let (n, c, h, w) = x.dims4()?;
        let g = self.shape.groups.min(c);
        let xg = x.reshape((n, g, (c / g) * h * w))?;
        let mean = xg.mean_keepdim(D::Minus1)?;
        let centred = xg.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred
            .broadcast_div(&(var + GN_EPS)?.sqrt()?)?
            .reshape((n, c, h, w))?;
        let gamma = self.p(&format!("{name}.g"))?.reshape((1, c, 1, 1))?;
        let beta = self.p(&format!("{name}.b"))?.reshape((1, c, 1, 1))?;
        Ok(normed.broadcast_mul(&gamma)?.broadcast_add(&beta)?)
    }

    /// The residual block `name` (see the module docs); `tau_act = silu(tau)`.
    fn res_block(&self, x: &Tensor, tau_act: &Tensor, name: &str) -> Result<Tensor, LearnedError> {
        let h = self.group_norm(x, &format!("{name}.gn1"))?.silu()?;
        let h = self.conv(&h, &format!("{name}.conv1"))?;
        let t = self.linear(tau_act, &format!("{name}.time"))?;
        let h = h.broadcast_add(&t.unsqueeze(2)?.unsqueeze(3)?)?;
        let h = self.group_norm(&h, &format!("{name}.gn2"))?.silu()?;
        let h = self.conv(&h, &format!("{name}.conv2"))?;
        let skip = if self.params.contains_key(&format!("{name}.skip.w")) {
            self.conv(x, &format!("{name}.skip"))?
        } else {
            x.clone()
        };
        Ok((skip + h)?)
    }

    /// `F(u, c)` for states `u` `(N, D)` and time inputs `c` `(N, 1)`, `(N, D)` in the dtype of
    /// the parameters.
    ///
    /// # Errors
    /// Shape mismatches; candle errors.
    pub fn forward(&self, u: &Tensor, c: &Tensor) -> Result<Tensor, LearnedError> {
        let n = u.dims2()?.0;
        if n <= FORWARD_ROWS || c.dims2()?.0 != n {
            return self.forward_rows(u, c);
        }
        // Rows in chunks: im2col holds 9 C H W floats per row and layer (an evaluation batch of
        // 16k digits8 rows peaked at 21 GB in one piece). Rows are independent (group norm is
        // per row), so chunking is exact.
        let mut parts = Vec::new();
        for start in (0..n).step_by(FORWARD_ROWS) {
            let m = FORWARD_ROWS.min(n - start);
            parts.push(self.forward_rows(&u.narrow(0, start, m)?, &c.narrow(0, start, m)?)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// [`Self::forward`] on one chunk of rows.
    fn forward_rows(&self, u: &Tensor, c: &Tensor) -> Result<Tensor, LearnedError> {
        let s = &self.shape;
        let (n, d) = u.dims2()?;
        if d != s.dim() || c.dims2()? != (n, 1) {
            return Err(LearnedError::Shape(format!(
                "input {:?} and time {:?}, expected (N, {}) and (N, 1)",
                u.dims(),
                c.dims(),
                s.dim()
            )));
        }
        let mut parts = vec![c.clone()];
        if s.fourier > 0 {
            let arg = c.broadcast_mul(&self.freqs)?;
            parts.push(arg.sin()?);
            parts.push(arg.cos()?);
        }
        let e = Tensor::cat(&parts, 1)?;
        let tau = self.linear(&self.linear(&e, "time1")?.silu()?, "time2")?;
        let tau_act = tau.silu()?;
        let mut h = self.conv(&u.reshape((n, s.channels, s.height, s.width))?, "stem")?;
        let mut skips = Vec::with_capacity(s.levels);
        for i in 0..s.levels {
            h = self.res_block(&h, &tau_act, &format!("down{i}"))?;
            skips.push(h.clone());
            if i + 1 < s.levels {
                h = h.avg_pool2d(2)?;
            }
        }
        h = self.res_block(&h, &tau_act, "mid")?;
        for i in (0..s.levels).rev() {
            let skip = skips
                .pop()
                .ok_or_else(|| LearnedError::Shape("no skip".into()))?;
            h = self.res_block(&Tensor::cat(&[&h, &skip], 1)?, &tau_act, &format!("up{i}"))?;
            if i > 0 {
                h = upsample2(&h)?;
            }
        }
        let h = self.group_norm(&h, "out.gn")?.silu()?;
        Ok(self.conv(&h, "out")?.reshape((n, d))?)
    }

    /// `F(u, c)` and its Jacobian with respect to `u` by `D` reverse-mode products per row
    /// (the rows replicated `D` times, probe `e_k` on replica `k`): returns `(out (N, D),
    /// jac (D, N, D))` with `jac[j, n, i] = d out_i / d u_j`, the layout of
    /// [`super::TimeMlp::forward_jacobian`]. Costs about `3 D` forward passes.
    ///
    /// # Errors
    /// As [`Self::forward`].
    pub fn forward_jacobian(
        &self,
        u: &Tensor,
        c: &Tensor,
    ) -> Result<(Tensor, Tensor), LearnedError> {
        let frozen = self.frozen();
        let out = frozen.forward(u, c)?;
        let (n, d) = u.dims2()?;
        // Rows in chunks of at most JACOBIAN_REPLICAS / D: the reverse pass keeps every
        // activation of D N replicas alive (about 0.6 MB per replica at base 16 on 8 x 8),
        // and the evaluation's batches of 16k rows would need tens of GB at once.
        let rows = (JACOBIAN_REPLICAS / d.max(1)).max(1);
        let mut parts = Vec::new();
        for start in (0..n).step_by(rows) {
            let m = rows.min(n - start);
            let (us, cs) = (u.narrow(0, start, m)?, c.narrow(0, start, m)?);
            parts.push(frozen.jacobian_rows(&us, &cs)?);
        }
        let jac = Tensor::cat(&parts, 1)?;
        Ok((out, jac))
    }

    /// The Jacobian of [`Self::forward_jacobian`] for one chunk of rows: `(D, N, D)`.
    fn jacobian_rows(&self, u: &Tensor, c: &Tensor) -> Result<Tensor, LearnedError> {
        let (n, d) = u.dims2()?;
        // Replica k of row r at (k N + r): probe e_k.
        let ur = Var::from_tensor(
            &u.detach()
                .unsqueeze(0)?
                .broadcast_as((d, n, d))?
                .reshape((d * n, d))?
                .contiguous()?,
        )?;
        let cr = c
            .detach()
            .unsqueeze(0)?
            .broadcast_as((d, n, 1))?
            .reshape((d * n, 1))?
            .contiguous()?;
        let probes = Tensor::eye(d, u.dtype(), u.device())?
            .unsqueeze(1)?
            .broadcast_as((d, n, d))?
            .reshape((d * n, d))?
            .contiguous()?;
        let f = self.forward(ur.as_tensor(), &cr)?;
        let g = crate::tensor::grad_of_dot(&f, &probes, &ur)?; // row (k, r): d F_k / d u_i
        Ok(g.reshape((d, n, d))?.permute((2, 1, 0))?.contiguous()?)
    }
}

/// Nearest 2x upsampling `(N, C, H, W) -> (N, C, 2H, 2W)` as a broadcast (differentiable).
fn upsample2(x: &Tensor) -> Result<Tensor, LearnedError> {
    let (n, c, h, w) = x.dims4()?;
    Ok(x.reshape((n, c, h, 1, w, 1))?
        .broadcast_as((n, c, h, 2, w, 2))?
        .reshape((n, c, 2 * h, 2 * w))?)
}
