//! The tensor score-model seam: what a tensor sampler sees of the data, batched over samples.
//!
//! A [`TensorScoreModel`] gives, for a batch `x` (`(N, D)`) at a time `ln abar_t`, a
//! [`TensorLocal`]: the score `grad ln q_t(x_n)` per sample and products `v -> H v` (for the
//! exact mixture the symmetric Hessian; for a learned network reverse-mode autograd of
//! `<s(x), v>`, i.e. `J^T v`). It is the batched twin of [`crate::score::ScoreModel`], and
//! [`AsScoreModel`] turns any tensor model into that CPU seam, so the f64 samplers can run a
//! candle model unchanged.
//!
//! [`TensorMixtureScore`] is the exact model of a [`LowRankMixture`]: the forward marginal
//! `q_t` is built in f64, uploaded once per time and cached.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use super::mixture::{ScoreParts, TensorMixture};
use super::TensorError;
use crate::data::lowrank::LowRankMixture;
use crate::data::mixture::MixtureError;
use crate::score::{LocalScore, MarginalCache, ScoreModel};

/// The score and Hessian-vector products of `ln q_t` at a batch of points.
pub trait TensorLocal {
    /// The points `x`, `(N, D)`.
    fn x(&self) -> &Tensor;

    /// The score `grad ln q_t(x_n)`, `(N, D)`.
    fn score(&self) -> &Tensor;

    /// `(H_n v_n)_n` for `v` of shape `(N, D)` (one Jacobian-vector product of the score).
    ///
    /// # Errors
    /// Candle errors.
    fn hvp(&self, v: &Tensor) -> Result<Tensor, TensorError>;

    /// The exact `diag H_n`, `(N, D)`, where the model has it in closed form.
    ///
    /// # Errors
    /// [`TensorError::Unsupported`] for models without a closed form (the default).
    fn hessian_diag(&self) -> Result<Tensor, TensorError> {
        Err(TensorError::Unsupported(
            "this score model has no closed-form diag H (use hutchinson-<M> or lgs-<k>)".into(),
        ))
    }

    /// The covariance operator `v -> C v` of a reverse kernel with geometry `(a^2, b)`,
    /// `C = (b^2 H + b I) / a^2`. Default: from [`Self::hvp`]; models that can form it without
    /// the cancellation of `b^2 H` against `b I` override it.
    ///
    /// # Errors
    /// Candle errors.
    fn cov_operator(&self, a2: f64, b: f64) -> Result<CovOperator<'_>, TensorError> {
        Ok(Box::new(move |v: &Tensor| {
            Ok((self.hvp(v)?.affine(b * b / a2, 0.0)? + v.affine(b / a2, 0.0)?)?)
        }))
    }

    /// The exact `diag C` of a reverse kernel with geometry `(a^2, b)`, `(N, D)`. Default:
    /// `(b^2 diag H + b) / a^2` from [`Self::hessian_diag`].
    ///
    /// # Errors
    /// As [`Self::hessian_diag`].
    fn cov_diag(&self, a2: f64, b: f64) -> Result<Tensor, TensorError> {
        Ok(self.hessian_diag()?.affine(b * b / a2, b / a2)?)
    }

    /// `x + score(x)`, which Tweedie's mean `(x + b score)/a = a x + (b/a)(x + score)` needs.
    /// Default: the plain sum; models that can form it without cancellation override it.
    ///
    /// # Errors
    /// Candle errors.
    fn x_plus_score(&self) -> Result<Tensor, TensorError> {
        Ok((self.x() + self.score())?)
    }
}

/// A batched linear operator `v -> (C_n v_n)_n` on `(N, D)` tensors.
pub type CovOperator<'a> = Box<dyn Fn(&Tensor) -> Result<Tensor, TensorError> + 'a>;

/// A batched score model: local score information at `(x, ln abar_t)`.
pub trait TensorScoreModel: Sync {
    /// The local information type.
    type Local<'a>: TensorLocal
    where
        Self: 'a;

    /// The dimension `D`.
    fn dim(&self) -> usize;

    /// The device the model's tensors live on.
    fn device(&self) -> &Device;

    /// The score at the batch `x` (`(N, D)`, f32) at time `ln abar_t`: one batched score
    /// evaluation.
    ///
    /// # Errors
    /// Model-specific; candle errors.
    fn at(&self, x: &Tensor, ln_abar: f64) -> Result<Self::Local<'_>, TensorError>;
}

/// The exact score model of a [`LowRankMixture`] on a device (marginals built in f64, uploaded
/// once per time and cached by the bits of `ln abar_t`).
#[derive(Debug)]
pub struct TensorMixtureScore {
    q0: LowRankMixture,
    device: Device,
    cache: MarginalCache<TensorMixture>,
}

impl TensorMixtureScore {
    /// Wraps `q0` for `device`.
    ///
    /// # Errors
    /// Unequal component ranks (the batched layout needs one rank).
    pub fn new(q0: LowRankMixture, device: &Device) -> Result<Self, TensorError> {
        let r = q0.components()[0].factor().ncols();
        if q0.components().iter().any(|c| c.factor().ncols() != r) {
            return Err(TensorError::Layout(
                "all components need the same rank".into(),
            ));
        }
        Ok(Self {
            q0,
            device: device.clone(),
            cache: MarginalCache::default(),
        })
    }

    /// The data mixture `q_0`.
    #[must_use]
    pub fn data(&self) -> &LowRankMixture {
        &self.q0
    }

    /// The uploaded marginal `q_t` at `ln abar_t`.
    ///
    /// # Errors
    /// A bad `ln abar_t`; candle errors.
    pub fn marginal(&self, ln_abar: f64) -> Result<Arc<TensorMixture>, TensorError> {
        self.cache.get_or_build(ln_abar, || {
            let qt = self
                .q0
                .marginal(ln_abar)
                .map_err(|e| TensorError::Layout(format!("marginal at ln abar {ln_abar}: {e}")))?;
            TensorMixture::new(&qt, &self.device)
        })
    }
}

/// [`TensorLocal`] of the exact mixture.
#[derive(Debug)]
pub struct MixtureLocal {
    mixture: Arc<TensorMixture>,
    parts: ScoreParts,
}

impl MixtureLocal {
    /// The uploaded marginal these points were evaluated with.
    #[must_use]
    pub fn mixture(&self) -> &TensorMixture {
        &self.mixture
    }
}

impl TensorLocal for MixtureLocal {
    fn x(&self) -> &Tensor {
        &self.parts.x
    }
    fn score(&self) -> &Tensor {
        &self.parts.score
    }
    fn hvp(&self, v: &Tensor) -> Result<Tensor, TensorError> {
        self.mixture.hvp_at(&self.parts, v)
    }
    fn hessian_diag(&self) -> Result<Tensor, TensorError> {
        self.mixture.hessian_diag_at(&self.parts)
    }
    fn x_plus_score(&self) -> Result<Tensor, TensorError> {
        self.mixture.x_plus_score_at(&self.parts)
    }
    fn cov_operator(&self, a2: f64, b: f64) -> Result<CovOperator<'_>, TensorError> {
        let geom = self.mixture.cov_geometry(a2, b)?;
        Ok(Box::new(move |v: &Tensor| {
            self.mixture.cov_mul_at(&self.parts, &geom, v)
        }))
    }
    fn cov_diag(&self, a2: f64, b: f64) -> Result<Tensor, TensorError> {
        let geom = self.mixture.cov_geometry(a2, b)?;
        self.mixture.cov_diag_at(&self.parts, &geom)
    }
}

impl TensorScoreModel for TensorMixtureScore {
    type Local<'a> = MixtureLocal;

    fn dim(&self) -> usize {
        self.q0.dim()
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn at(&self, x: &Tensor, ln_abar: f64) -> Result<MixtureLocal, TensorError> {
        let mixture = self.marginal(ln_abar)?;
        let parts = mixture.parts(x)?;
        Ok(MixtureLocal { mixture, parts })
    }
}

/// Any [`TensorScoreModel`] as the CPU samplers' [`ScoreModel`] seam: each call evaluates a
/// batch of one point on the model's device and copies the result to the host (f32 to f64).
/// Slow per point; it exists so that the f64 samplers, metrics and counters run a candle
/// model unchanged, and so that the two seams can be checked against each other.
#[derive(Debug)]
pub struct AsScoreModel<M>(pub M);

/// [`LocalScore`] of [`AsScoreModel`].
pub struct AsLocal<'a, M: TensorScoreModel + 'a> {
    local: M::Local<'a>,
    score: Vec<f64>,
    device: Device,
}

fn to_host_row(t: &Tensor) -> Result<Vec<f64>, TensorError> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

impl<M: TensorScoreModel> LocalScore for AsLocal<'_, M> {
    fn score(&self) -> &[f64] {
        &self.score
    }

    /// `H v` on the device. A device error here (none is expected once the score was
    /// evaluated at the same point) fills `out` with NaN, which the samplers report as a
    /// non-finite state or Ritz value rather than passing on silently.
    fn hvp(&self, v: &[f64], out: &mut [f64]) {
        let d = v.len();
        let res = Tensor::from_vec(
            v.iter().map(|&x| x as f32).collect::<Vec<f32>>(),
            (1, d),
            &self.device,
        )
        .map_err(TensorError::from)
        .and_then(|vt| self.local.hvp(&vt))
        .and_then(|h| to_host_row(&h));
        match res {
            Ok(h) if h.len() == d => out.copy_from_slice(&h),
            _ => out.iter_mut().for_each(|o| *o = f64::NAN),
        }
    }
}

impl<M: TensorScoreModel> ScoreModel for AsScoreModel<M> {
    type Local<'a>
        = AsLocal<'a, M>
    where
        M: 'a;

    fn dim(&self) -> usize {
        self.0.dim()
    }

    fn at(&self, x: &[f64], ln_abar: f64) -> Result<AsLocal<'_, M>, MixtureError> {
        crate::data::mixture::check_point(self.0.dim(), x)?;
        let device = self.0.device().clone();
        let run = || -> Result<_, TensorError> {
            let xt = Tensor::from_vec(
                x.iter().map(|&v| v as f32).collect::<Vec<f32>>(),
                (1, x.len()),
                &device,
            )?;
            let local = self.0.at(&xt, ln_abar)?;
            let score = to_host_row(local.score())?;
            Ok((local, score))
        };
        let (local, score) = run().map_err(|e| MixtureError::Model(e.to_string()))?;
        if score.iter().any(|v| !v.is_finite()) {
            return Err(MixtureError::Model(format!(
                "non-finite score at ln abar {ln_abar}"
            )));
        }
        Ok(AsLocal {
            local,
            score,
            device,
        })
    }
}
