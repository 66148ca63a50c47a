//! Training loops: denoising score matching for [`ScoreNet`] and the head objectives of
//! [`super::heads`], with candle-nn's AdamW, everything random drawn from one seeded host
//! ChaCha8 stream (data, times, noise, probes), so a run is reproducible for a fixed thread
//! count.
//!
//! # Formula
//! Per iteration: `x_0 ~ q_0` (`batch` draws), `lambda ~ U[lambda_min, lambda_max]` per row,
//! `eps ~ N(0, I)`, `x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps`; the loss of the model; one
//! AdamW step with the learning rate `lr (1 + cos(pi k / K)) / 2` (cosine decay to 0), no
//! weight decay.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use nalgebra::DVector;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::backbone::Arch;
use super::conditioning::{ln_abar_of_lambda, one_minus_exp, GaussianPrior, RowTimes};
use super::heads::{Head, HeadKind, HeadScore, IDDPM_REF_STEP};
use super::mlp::MlpShape;
use super::score_net::ScoreNet;
use super::unet::UnetShape;
use super::LearnedError;
use crate::process::schedule::Step;

/// Draws `n` points of the data distribution from a generator.
pub type DataSampler<'a> = &'a (dyn Fn(&mut ChaCha8Rng, usize) -> Vec<DVector<f64>> + Sync);

/// Training settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// AdamW iterations.
    pub iterations: usize,
    /// Rows per iteration.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Seed of the initialisation and of every draw.
    pub seed: u64,
    /// The log-SNR range times are drawn from (uniformly).
    pub lambda_range: (f64, f64),
    /// Rademacher probes per row for `ocm` (`M >= 1`).
    pub probes: usize,
    /// The time weight of the `ocm` objective (the optimum is the same for any weight).
    #[serde(default)]
    pub ocm_weight: OcmWeight,
    /// Hidden width.
    pub hidden: usize,
    /// Hidden layers.
    pub layers: usize,
    /// Fourier frequencies of the time input.
    pub fourier: usize,
    /// A U-Net of this shape instead of the MLP (`hidden` and `layers` then unused; its
    /// Fourier count is its own). Absent for an MLP, so MLP settings serialise as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unet: Option<UnetShape>,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            iterations: 20_000,
            batch: 256,
            lr: 2e-3,
            seed: 0,
            lambda_range: (-12.0, 10.0),
            probes: 1,
            ocm_weight: OcmWeight::Normalized,
            hidden: 128,
            layers: 3,
            fourier: 6,
            unet: None,
        }
    }
}

impl TrainParams {
    /// Checks every field.
    ///
    /// # Errors
    /// [`LearnedError::InvalidParameter`] naming the field.
    pub fn validate(&self) -> Result<(), LearnedError> {
        let bad =
            |field: &'static str, reason: String| LearnedError::InvalidParameter { field, reason };
        if self.iterations == 0 {
            return Err(bad("iterations", "must be >= 1".into()));
        }
        if self.batch < 2 {
            return Err(bad("batch", "must be >= 2".into()));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(bad("lr", format!("{} must be finite and > 0", self.lr)));
        }
        let (lo, hi) = self.lambda_range;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(bad(
                "lambda_range",
                format!("[{lo}, {hi}] must be finite with lo < hi"),
            ));
        }
        if self.probes == 0 {
            return Err(bad(
                "M",
                "the number of Rademacher probes must be >= 1".into(),
            ));
        }
        if self.hidden == 0 {
            return Err(bad("hidden", "the hidden width must be >= 1".into()));
        }
        if self.layers == 0 {
            return Err(bad(
                "layers",
                "the number of hidden layers must be >= 1".into(),
            ));
        }
        if let Some(u) = &self.unet {
            u.validate()?;
        }
        Ok(())
    }

    /// The draws' generator: ChaCha8 of the seed, on its own stream per model type.
    fn rng(&self, stream: u64) -> ChaCha8Rng {
        let rng = crate::numeric::stream(self.seed, stream);
        rng
    }

    /// The network to build for data of dimension `d`: the U-Net when `unet` is set, else the
    /// MLP of [`Self::shape`].
    #[must_use]
    pub fn arch(&self, d: usize) -> Arch {
        match &self.unet {
            Some(u) => Arch::Unet(u.clone()),
            None => Arch::Mlp(self.shape(d)),
        }
    }

    /// The MLP shape `D -> D`.
    #[must_use]
    pub fn shape(&self, d: usize) -> MlpShape {
        MlpShape {
            input: d,
            output: d,
            hidden: self.hidden,
            layers: self.layers,
            fourier: self.fourier,
        }
    }
}

/// The time weight of the `ocm` objective `E ||o - (1 + (1 - abar) v .* (H v))||^2`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OcmWeight {
    /// Weight 1 on the normalised output `o = 1 + (1 - abar) h` (errors in `Cov(eps | x_t)`
    /// units: what a step's KL sees).
    #[default]
    Normalized,
    /// Weight `1 / (1 - abar)^2`: the paper's eq. 13 in `h` units, uniform in time.
    Paper,
}

/// What a training run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainInfo {
    /// Iterations run.
    pub iterations: usize,
    /// Wall time in seconds.
    pub wall_s: f64,
    /// Iterations per second.
    pub its_per_s: f64,
    /// Mean loss over the last tenth of the iterations.
    pub final_loss: f64,
    /// Threads of the process's rayon pool (the run is reproducible for a fixed count).
    pub threads: usize,
}

/// One batch of training draws on the host.
struct Batch {
    x0: Vec<f64>,
    eps: Vec<f64>,
    times: RowTimes,
    n: usize,
    d: usize,
}

impl Batch {
    fn draw(
        rng: &mut ChaCha8Rng,
        data: DataSampler<'_>,
        n: usize,
        d: usize,
        lam: (f64, f64),
    ) -> Self {
        let x0: Vec<f64> = data(rng, n)
            .iter()
            .flat_map(|p| p.iter().copied().collect::<Vec<_>>())
            .collect();
        let ln_abar = (0..n)
            .map(|_| ln_abar_of_lambda(rng.gen_range(lam.0..lam.1)))
            .collect();
        let eps = (0..n * d)
            .map(|_| rng.sample::<f64, _>(StandardNormal))
            .collect();
        Self {
            x0,
            eps,
            times: RowTimes { ln_abar },
            n,
            d,
        }
    }

    fn xt(&self, device: &Device) -> Result<Tensor, LearnedError> {
        let mut v = Vec::with_capacity(self.n * self.d);
        for (r, &l) in self.times.ln_abar.iter().enumerate() {
            let (sa, so) = ((0.5 * l).exp(), one_minus_exp(l).sqrt());
            for j in 0..self.d {
                let k = r * self.d + j;
                v.push((sa * self.x0[k] + so * self.eps[k]) as f32);
            }
        }
        Ok(Tensor::from_vec(v, (self.n, self.d), device)?)
    }

    fn eps(&self, device: &Device) -> Result<Tensor, LearnedError> {
        let v: Vec<f32> = self.eps.iter().map(|&e| e as f32).collect();
        Ok(Tensor::from_vec(v, (self.n, self.d), device)?)
    }
}

fn rademacher(
    rng: &mut ChaCha8Rng,
    n: usize,
    d: usize,
    device: &Device,
) -> Result<Tensor, LearnedError> {
    let v: Vec<f32> = (0..n * d)
        .map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 })
        .collect();
    Ok(Tensor::from_vec(v, (n, d), device)?)
}

/// The shared loop: `loss(rng)` per iteration, AdamW with cosine decay, `progress(k, loss)`.
fn run_loop(
    vars: Vec<Var>,
    params: &TrainParams,
    rng: &mut ChaCha8Rng,
    mut loss: impl FnMut(&mut ChaCha8Rng) -> Result<Tensor, LearnedError>,
    mut progress: impl FnMut(usize, f64),
) -> Result<TrainInfo, LearnedError> {
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: params.lr,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let start = Instant::now();
    let k = params.iterations;
    let tail = (k / 10).max(1);
    let mut tail_sum = 0.0;
    for it in 0..k {
        opt.set_learning_rate(
            params.lr * 0.5 * (1.0 + (std::f64::consts::PI * it as f64 / k as f64).cos()),
        );
        let l = loss(rng)?;
        opt.backward_step(&l)?;
        let lv = f64::from(l.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        if !lv.is_finite() {
            return Err(LearnedError::InvalidParameter {
                field: "lr",
                reason: format!(
                    "the loss became non-finite at iteration {it}; lower the learning rate"
                ),
            });
        }
        if it + tail >= k {
            tail_sum += lv;
        }
        progress(it + 1, lv);
    }
    let wall_s = start.elapsed().as_secs_f64();
    Ok(TrainInfo {
        iterations: k,
        wall_s,
        its_per_s: k as f64 / wall_s.max(1e-12),
        final_loss: tail_sum / tail as f64,
        threads: rayon::current_num_threads(),
    })
}

/// Trains a [`ScoreNet`] by denoising score matching (see [`super::score_net`]).
///
/// # Errors
/// Bad parameters; candle errors; a non-finite loss.
pub fn train_score(
    data: DataSampler<'_>,
    prior: GaussianPrior,
    params: &TrainParams,
    device: &Device,
    progress: impl FnMut(usize, f64),
) -> Result<(ScoreNet, TrainInfo), LearnedError> {
    params.validate()?;
    let d = prior.mean.len();
    let (net, vars) = ScoreNet::init_arch(prior, &params.arch(d), params.seed, device)?;
    let mut rng = params.rng(1);
    let info = run_loop(
        vars,
        params,
        &mut rng,
        |rng| {
            let b = Batch::draw(rng, data, params.batch, d, params.lambda_range);
            let e = net.eps(&b.xt(device)?, &b.times)?;
            Ok((e - b.eps(device)?)?.sqr()?.mean_all()?)
        },
        progress,
    )?;
    Ok((net.frozen(), info))
}

/// Per-row columns of `iddpm`'s reference step from `lambda_s = lambda_t + IDDPM_REF_STEP`.
struct IddpmColumns {
    /// `L = ln((1 - abar_t) / (1 - abar_s))`.
    l: Tensor,
    /// `rho = b / (a^2 (1 - abar_s))`.
    rho: Tensor,
    /// `1 / L^2`.
    inv_l2: Tensor,
}

impl IddpmColumns {
    fn new(times: &RowTimes, device: &Device) -> Result<Self, LearnedError> {
        let step = |l: f64| {
            let lam = super::conditioning::lambda_of_ln_abar(l);
            Step::from_ln_abar(ln_abar_of_lambda(lam + IDDPM_REF_STEP), l)
        };
        let big_l = |l: f64| {
            let s = step(l);
            s.one_minus_abar_t().ln() - s.one_minus_abar_s().ln()
        };
        Ok(Self {
            l: times.column(big_l, DType::F32, device)?,
            rho: times.column(
                |l| {
                    let s = step(l);
                    s.b / (s.a2 * s.one_minus_abar_s())
                },
                DType::F32,
                device,
            )?,
            inv_l2: times.column(|l| big_l(l).powi(-2), DType::F32, device)?,
        })
    }
}

/// `psi(y) = e^-y - 1 + y`, by its Taylor series for `|y| <= 0.1` (5 terms: relative error
/// < 2e-9) and directly beyond (where f32 cancellation costs < 3e-5 relative).
fn psi(y: &Tensor) -> Result<Tensor, LearnedError> {
    let mask = y.detach().abs()?.gt(0.1)?.to_dtype(y.dtype())?;
    let direct = ((y.neg()?.exp()? + y)? - 1.0)?;
    // y^2 (1/2 - y/6 + y^2/24 - y^3/120 + y^4/720), Horner.
    let mut p = y.affine(1.0 / 720.0, -1.0 / 120.0)?;
    for c in [1.0 / 24.0, -1.0 / 6.0, 0.5] {
        p = ((&p * y)? + c)?;
    }
    let series = (p * y.sqr()?)?;
    let one_minus = mask.affine(-1.0, 1.0)?;
    Ok(((direct * &mask)? + (series * one_minus)?)?)
}

/// Trains a covariance head of kind `kind` against `score` (held fixed).
///
/// # Errors
/// Bad parameters (`M = 0`); candle errors; a non-finite loss.
#[allow(clippy::too_many_arguments)]
pub fn train_head(
    kind: HeadKind,
    data: DataSampler<'_>,
    prior: GaussianPrior,
    score: HeadScore<'_>,
    params: &TrainParams,
    device: &Device,
    progress: impl FnMut(usize, f64),
) -> Result<(Head, TrainInfo), LearnedError> {
    params.validate()?;
    let d = prior.mean.len();
    let (head, vars) = Head::init_arch(kind, prior, &params.arch(d), params.seed, device)?;
    let mut rng = params.rng(2);
    let m = params.probes;
    let info = run_loop(
        vars,
        params,
        &mut rng,
        |rng| {
            let b = Batch::draw(rng, data, params.batch, d, params.lambda_range);
            let xt = b.xt(device)?;
            let out = head.output(&xt, &b.times)?;
            let eps_hat = |xt: &Tensor| -> Result<Tensor, LearnedError> {
                let s = score.score(xt, &b.times)?;
                let k = b
                    .times
                    .column(|l| -one_minus_exp(l).sqrt(), DType::F32, device)?;
                Ok(s.broadcast_mul(&k)?)
            };
            let loss = match kind {
                HeadKind::Ocm => {
                    let mut acc: Option<Tensor> = None;
                    for _ in 0..m {
                        let v = rademacher(rng, b.n, d, device)?;
                        let t = (&v * score.hvp(&xt, &b.times, &v)?.detach())?;
                        acc = Some(match acc {
                            None => t,
                            Some(a) => (a + t)?,
                        });
                    }
                    let acc = acc.ok_or_else(|| LearnedError::InvalidParameter {
                        field: "M",
                        reason: "must be >= 1".into(),
                    })?;
                    let oma =
                        b.times
                            .column(|l| one_minus_exp(l) / m as f64, DType::F32, device)?;
                    let target = (acc.broadcast_mul(&oma)? + 1.0)?;
                    let sq = (out - target)?.sqr()?;
                    match params.ocm_weight {
                        OcmWeight::Normalized => sq.mean_all()?,
                        OcmWeight::Paper => {
                            let w = b.times.column(
                                |l| one_minus_exp(l).powi(-2),
                                DType::F32,
                                device,
                            )?;
                            sq.broadcast_mul(&w)?.mean_all()?
                        }
                    }
                }
                HeadKind::Sn => (out - b.eps(device)?.sqr()?)?.sqr()?.mean_all()?,
                HeadKind::Npr => {
                    let r = (b.eps(device)? - eps_hat(&xt)?)?.sqr()?;
                    (out - r)?.sqr()?.mean_all()?
                }
                HeadKind::Iddpm => {
                    let c = IddpmColumns::new(&b.times, device)?;
                    let e2 = (eps_hat(&xt)? - b.eps(device)?)?.sqr()?;
                    let re2 = e2.broadcast_mul(&c.rho)?;
                    let y = out.broadcast_mul(&c.l)?;
                    let first = ((re2.clone() + 1.0)? * psi(&y)?)?.broadcast_mul(&c.inv_l2)?;
                    let second = (re2 * out)?.broadcast_div(&c.l)?;
                    (first - second)?.mean_all()?.affine(0.5, 0.0)?
                }
            };
            Ok(loss)
        },
        progress,
    )?;
    Ok((head.frozen(), info))
}
