//! CPU reverse samplers (`docs/samplers.md`), batched over samples with rayon.
//!
//! A sampler sees only the [`ScoreModel`] seam and the schedule. Step `i` goes from
//! `t = t_i` to `s = t_{i-1}` with `a^2 = abar_t / abar_s`, `b = 1 - a^2`; the mean is
//! Tweedie's `m = (x_t + b g) / a` with `g = grad ln q_t(x_t)`, and the covariance
//! `C = (b^2 H + b I) / a^2` is reached through Hessian-vector products `H v`.
//!
//! Families (the `path-kl` names plus `hutchinson-<M>` and `lgs-<k>`):
//!
//! | family | noise |
//! |---|---|
//! | `beta` | `sqrt(b) z` |
//! | `beta-tilde` | `sigma~ z`, `sigma~^2 = b (1 - abar_s) / (1 - abar_t)` (0 at a degenerate last step: the mean only) |
//! | `analytic` | `sigma z`, `sigma^2 = (b + b^2 E[tr H] / D) / a^2` from a Monte Carlo table of `E ||g||^2 = -E tr H` over data (Analytic-DPM), clipped to `[lower, upper]` |
//! | `diag` | `sqrt(diag C) .* z` (exact diagonal) |
//! | `full` | `C^{1/2} z`, symmetric square root by eigendecomposition (exact) |
//! | `hutchinson-M` | `sqrt(clip((b^2 h + b) / a^2)) .* z`, `h = (1/M) sum_m v_m .* (H v_m)`, Rademacher `v_m` |
//! | `lgs-k` | `Lanczos_k(C, z)`: `||z|| Q_k f(T_k) e_1`, `f = sqrt` of the Ritz value clamped to `[lower, upper]` |
//!
//! The clip range `[lower, upper]` is Analytic-DPM's: `lower = sigma~^2` (rigorous:
//! `C >= sigma~^2 I` for any data), `upper = sigma~^2 + abar_s b^2 / (1 - abar_t)^2 ((hi - lo)/2)^2`
//! for data in `[lo, hi]` per coordinate (for unbounded mixture data a range of the caller's
//! choosing; without one, `upper = inf`).
//!
//! LGS options: batched (`L`: every `L` steps, `L` Lanczos runs at the current state, one per
//! noise vector, whose Ritz pairs serve the next `L` steps, the covariance being mapped from
//! the block's step to each step through `H = (a_0^2 C_0 - b_0 I) / b_0^2`), LGSb (LGS only on
//! the last `fraction` of the steps, `beta-tilde` before), and a Hutchinson guard at the last
//! step.
//!
//! DDIM variant (OCM-DDIM): `x_0 ~ N(m_0, Sigma_0)` from the clean-data posterior of `t`
//! (`a^2 = abar_t`, `b = 1 - abar_t`, the family's covariance for that step; `beta` and
//! `beta-tilde` give `Sigma_0 = 0`, plain DDIM), then
//! `x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s) (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t)`.
//!
//! **The last step** (`i = 1`, from `t_1` to `t_0`): by default ([`LastStep::Mean`]) every
//! family returns the last kernel's mean and adds no noise, as Ho et al.'s code, Analytic-DPM
//! and diffusers do (no noise when `t == 0`): DDPM `x_{t_0} = m = (x_{t_1} + b g)/a`, OCM-DDIM
//! `x_0 = m_0` in the DDIM map (`x_{t_0} = m_0` when `t_0 = 0`). The covariance is not
//! evaluated there (no products at the last step). [`LastStep::Noisy`] draws from the last
//! kernel as at every other step. The path KL ([`crate::kl::path_kl`]) is that of the noisy
//! chain: a KL between two chains needs a non-degenerate last kernel; the mean-only last step
//! is the sample the user keeps, the last kernel's mean.
//!
//! Every sample has its own ChaCha8 stream (`seed`, stream = sample index), so samples are
//! bit-identical for any thread count.

mod family;
mod plan;
mod step;

pub use family::{LastStep, LgsOptions, SamplerFamily};
pub(crate) use plan::{plan, KernelGeom, Plan};
pub use step::hutchinson_diag;
pub(crate) use step::normals;
/// Rademacher probes, for the tensor samplers.
#[cfg(feature = "candle")]
pub(crate) use step::rademacher;

use nalgebra::DVector;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use thiserror::Error;

use crate::data::mixture::MixtureError;
pub use crate::kernel::model::{clip_bounds, clip_range_of, KernelKind};
use crate::linalg::LanczosError;
use crate::process::schedule::{Schedule, ScheduleError};
use crate::score::{LocalScore, ScoreModel};

use step::step_one;

/// Sampler errors, each naming the offending field.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SamplerError {
    /// An unknown family name.
    #[error("unknown sampler family `{0}` (expected beta, beta-tilde, analytic, diag, full, hutchinson-<M>, lgs-<k>)")]
    UnknownFamily(String),
    /// A parameter out of its domain.
    #[error("invalid sampler parameter `{field}`: {reason}")]
    InvalidParameter {
        /// The field.
        field: &'static str,
        /// What was expected.
        reason: String,
    },
    /// The `analytic` family needs its E[tr H] table.
    #[error("the analytic family needs `analytic_trace` (one E[tr H] per grid time t_1..t_T)")]
    MissingAnalyticTable,
    /// The model failed.
    #[error(transparent)]
    Model(#[from] MixtureError),
    /// Lanczos failed.
    #[error(transparent)]
    Lanczos(#[from] LanczosError),
    /// The schedule failed.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SamplerError {
    SamplerError::InvalidParameter {
        field,
        reason: reason.into(),
    }
}

/// A sampler run's configuration.
#[derive(Clone, Debug)]
pub struct SamplerConfig {
    /// The family.
    pub family: SamplerFamily,
    /// The kernel.
    pub kernel: KernelKind,
    /// The schedule.
    pub schedule: Schedule,
    /// The number of steps T.
    pub steps: usize,
    /// The early stop delta of the grid.
    pub early_stop: f64,
    /// The seed.
    pub seed: u64,
    /// The data range `[lo, hi]` per coordinate for the upper clip (None: no upper clip).
    pub clip_range: Option<(f64, f64)>,
    /// `E_{q_t}[tr H]` at `t_1..t_T` (index `i - 1`), needed by `analytic`.
    pub analytic_trace: Option<Vec<f64>>,
    /// The last step: the last kernel's mean (default) or a draw from it.
    pub last_step: LastStep,
}

impl SamplerConfig {
    /// DDPM, no early stop, seed 0, no clip range, no analytic table, the mean at the last
    /// step.
    #[must_use]
    pub fn new(family: SamplerFamily, schedule: Schedule, steps: usize) -> Self {
        Self {
            family,
            kernel: KernelKind::Ddpm,
            schedule,
            steps,
            early_stop: 0.0,
            seed: 0,
            clip_range: None,
            analytic_trace: None,
            last_step: LastStep::Mean,
        }
    }
}

/// One DDPM/DDIM step at grid step `i` from `x_t` with the given noise `z` (probes, if the
/// family needs them, come from a generator seeded by `cfg.seed`; LGS batching does not
/// apply to a single step). Used to compare families on the same noise. At `i = 1` it
/// follows `cfg.last_step` (the mean, `z` unused, by default) as [`sample`] does.
///
/// # Errors
/// As [`sample`].
pub fn step_with_noise<M: ScoreModel>(
    model: &M,
    cfg: &SamplerConfig,
    i: usize,
    x_t: &[f64],
    z: &[f64],
) -> Result<Vec<f64>, SamplerError> {
    let pl = plan(cfg)?;
    if i == 0 || i > pl.grid.steps() {
        return Err(invalid(
            "i",
            format!("step {i} not in 1..={}", pl.grid.steps()),
        ));
    }
    if z.len() != x_t.len() {
        return Err(invalid("z", "length differs from x_t"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut block = None;
    step_one(model, cfg, &pl, i, x_t, z, &mut rng, &mut block)
}

/// Draws `n` samples: `x_T ~ N(0, I)`, then T reverse steps. Sample `j` uses the ChaCha8
/// stream `j` of `cfg.seed`; the result does not depend on the thread count.
///
/// # Errors
/// Bad parameters (`k = 0`, `M = 0`, batch 0, fraction outside (0, 1], a bad clip range, a
/// missing analytic table), schedule errors, model errors, Lanczos errors.
pub fn sample<M: ScoreModel>(
    model: &M,
    cfg: &SamplerConfig,
    n: usize,
) -> Result<Vec<DVector<f64>>, SamplerError> {
    let pl = plan(cfg)?;
    let d = model.dim();
    (0..n)
        .into_par_iter()
        .map(|j| {
            let mut rng = crate::numeric::stream(cfg.seed, j as u64);
            let mut x = normals(&mut rng, d);
            let mut block = None;
            for i in (1..=pl.grid.steps()).rev() {
                let z = normals(&mut rng, d);
                x = step_one(model, cfg, &pl, i, &x, &z, &mut rng, &mut block)?;
            }
            Ok(DVector::from_vec(x))
        })
        .collect()
}

/// Analytic-DPM's table `E_{q_t}[tr H] = -E ||grad ln q_t||^2` at `t_1..t_T`, by Monte Carlo
/// over `data` (x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, one eps per data point from
/// `seed`), through the score seam as Analytic-DPM does with its network.
///
/// # Errors
/// Schedule or model errors; `data` empty.
pub fn analytic_trace_table<M: ScoreModel>(
    model: &M,
    schedule: &Schedule,
    steps: usize,
    early_stop: f64,
    data: &[DVector<f64>],
    seed: u64,
) -> Result<Vec<f64>, SamplerError> {
    if data.is_empty() {
        return Err(invalid("data", "needs at least one data point"));
    }
    let grid = schedule.grid(steps, early_stop)?;
    (1..=grid.steps())
        .into_par_iter()
        .map(|i| {
            let mut rng = crate::numeric::stream(seed, i as u64);
            let (sa, so) = (grid.abar(i).sqrt(), grid.one_minus_abar(i).sqrt());
            let mut acc = 0.0;
            for x0 in data {
                let xt: Vec<f64> = x0
                    .iter()
                    .map(|v| sa * v + so * rng.sample::<f64, _>(StandardNormal))
                    .collect();
                let loc = model.at(&xt, grid.ln_abar[i])?;
                acc += loc.score().iter().map(|g| g * g).sum::<f64>();
            }
            Ok(-acc / data.len() as f64)
        })
        .collect()
}
