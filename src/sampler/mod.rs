//! CPU reverse samplers (DESIGN sections 3 and 5), batched over samples with rayon.
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

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use thiserror::Error;

use crate::data::mixture::MixtureError;
pub use crate::kernel::model::{clip_bounds, clip_range_of, KernelKind};
use crate::kernel::posterior::CovOperator;
use crate::linalg::{lanczos, Krylov, LanczosError, LanczosParams};
use crate::process::schedule::{Grid, Schedule, ScheduleError};
use crate::score::{LocalScore, ScoreModel};

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

/// LGS options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LgsOptions {
    /// Lanczos steps `k >= 1`.
    pub k: usize,
    /// Batch `L >= 1` (1 = a fresh Lanczos at every step).
    pub batch: usize,
    /// LGSb: LGS on the last `fraction` of the steps (`(0, 1]`; 1 = all).
    pub fraction: f64,
    /// Hutchinson guard at the last step with this many probes (`None`: LGS there too).
    pub guard: Option<usize>,
}

impl LgsOptions {
    /// Plain `lgs-k`.
    #[must_use]
    pub fn new(k: usize) -> Self {
        Self {
            k,
            batch: 1,
            fraction: 1.0,
            guard: None,
        }
    }
}

/// A sampler covariance family.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerFamily {
    /// `beta`.
    Beta,
    /// `beta-tilde`.
    BetaTilde,
    /// `analytic`.
    Analytic,
    /// `diag` (exact).
    Diag,
    /// `full` (exact).
    Full,
    /// `hutchinson-M`.
    Hutchinson(usize),
    /// `lgs-k` with options.
    Lgs(LgsOptions),
}

impl SamplerFamily {
    /// Parses `beta`, `beta-tilde`, `analytic`, `diag`, `full`, `hutchinson-<M>`, `lgs-<k>`.
    ///
    /// # Errors
    /// `UnknownFamily`; `InvalidParameter` for `M = 0` or `k = 0`.
    pub fn from_name(name: &str) -> Result<Self, SamplerError> {
        let parse_n = |rest: &str, field: &'static str| -> Result<usize, SamplerError> {
            let n: usize = rest
                .parse()
                .map_err(|_| SamplerError::UnknownFamily(name.to_string()))?;
            if n == 0 {
                return Err(invalid(field, format!("`{name}`: must be >= 1")));
            }
            Ok(n)
        };
        Ok(match name {
            "beta" => Self::Beta,
            "beta-tilde" => Self::BetaTilde,
            "analytic" => Self::Analytic,
            "diag" => Self::Diag,
            "full" => Self::Full,
            _ => {
                if let Some(rest) = name.strip_prefix("hutchinson-") {
                    Self::Hutchinson(parse_n(rest, "M")?)
                } else if let Some(rest) = name.strip_prefix("lgs-") {
                    Self::Lgs(LgsOptions::new(parse_n(rest, "k")?))
                } else {
                    return Err(SamplerError::UnknownFamily(name.to_string()));
                }
            }
        })
    }

    /// The family's name (`lgs-<k>` whatever its batch/fraction/guard options).
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::Beta => "beta".into(),
            Self::BetaTilde => "beta-tilde".into(),
            Self::Analytic => "analytic".into(),
            Self::Diag => "diag".into(),
            Self::Full => "full".into(),
            Self::Hutchinson(m) => format!("hutchinson-{m}"),
            Self::Lgs(o) => format!("lgs-{}", o.k),
        }
    }

    fn validate(&self) -> Result<(), SamplerError> {
        match self {
            Self::Hutchinson(0) => Err(invalid("M", "must be >= 1")),
            Self::Lgs(o) => {
                if o.k == 0 {
                    return Err(invalid("k", "must be >= 1"));
                }
                if o.batch == 0 {
                    return Err(invalid("batch", "must be >= 1"));
                }
                if !(o.fraction > 0.0 && o.fraction <= 1.0) {
                    return Err(invalid("fraction", format!("{} not in (0, 1]", o.fraction)));
                }
                if o.guard == Some(0) {
                    return Err(invalid("guard", "must be >= 1 probe"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// What a chain returns at its last step (`i = 1`, from `t_1` to `t_0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LastStep {
    /// The last kernel's mean, no noise (Ho et al., Analytic-DPM, diffusers): DDPM
    /// `x_{t_0} = (x_{t_1} + b g)/a`; OCM-DDIM `x_0 = m_0` in the DDIM map.
    #[default]
    Mean,
    /// A draw from the last kernel, its noise added as at every other step.
    Noisy,
}

impl LastStep {
    /// `mean` or `noisy`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Noisy => "noisy",
        }
    }

    /// The last step named `mean` or `noisy`.
    ///
    /// # Errors
    /// Any other name (returned).
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name {
            "mean" => Ok(Self::Mean),
            "noisy" => Ok(Self::Noisy),
            other => Err(other.to_string()),
        }
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

/// The geometry of one kernel: `a^2`, `b` of the covariance `(b^2 H + b I)/a^2` and the clip
/// bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct KernelGeom {
    pub(crate) a2: f64,
    pub(crate) b: f64,
    pub(crate) lower: f64,
    pub(crate) upper: f64,
}

impl KernelGeom {
    /// `(b^2 h + b) / a^2`: the variance for a Hessian eigen/diagonal value `h`.
    pub(crate) fn var(&self, h: f64) -> f64 {
        (self.b * self.b * h + self.b) / self.a2
    }
    /// Clamped to `[lower, upper]`.
    pub(crate) fn clip(&self, v: f64) -> f64 {
        v.max(self.lower).min(self.upper)
    }
}

/// Everything a run needs per grid step, computed once.
pub(crate) struct Plan {
    pub(crate) grid: Grid,
    /// Per step i (index i-1): the DDPM geometry of (s, t).
    pub(crate) ddpm: Vec<KernelGeom>,
    /// Per step i: the clean-posterior geometry of (0, t) for DDIM.
    pub(crate) ddim: Vec<KernelGeom>,
}

impl Plan {
    /// The geometry of step `i` for the run's kernel.
    pub(crate) fn geom(&self, kernel: KernelKind, i: usize) -> KernelGeom {
        match kernel {
            KernelKind::Ddpm => self.ddpm[i - 1],
            KernelKind::Ddim => self.ddim[i - 1],
        }
    }

    /// The number of final steps LGS covers (LGSb: the last `fraction`).
    pub(crate) fn lgs_steps(&self, o: &LgsOptions) -> usize {
        ((o.fraction * self.grid.steps() as f64).ceil() as usize).max(1)
    }
}

pub(crate) fn plan(cfg: &SamplerConfig) -> Result<Plan, SamplerError> {
    cfg.family.validate()?;
    if let Some((lo, hi)) = cfg.clip_range {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(invalid(
                "clip_range",
                format!("[{lo}, {hi}] must be finite with lo < hi"),
            ));
        }
    }
    let grid = cfg.schedule.grid(cfg.steps, cfg.early_stop)?;
    if matches!(cfg.family, SamplerFamily::Analytic) {
        match &cfg.analytic_trace {
            None => return Err(SamplerError::MissingAnalyticTable),
            Some(t) if t.len() != grid.steps() || t.iter().any(|v| !v.is_finite()) => {
                return Err(invalid(
                    "analytic_trace",
                    format!("needs {} finite values, got {}", grid.steps(), t.len()),
                ))
            }
            _ => {}
        }
    }
    let half_w2 = cfg.clip_range.map(|(lo, hi)| ((hi - lo) / 2.0).powi(2));
    let mut ddpm = Vec::with_capacity(grid.steps());
    let mut ddim = Vec::with_capacity(grid.steps());
    for i in 1..=grid.steps() {
        let st = grid.step(i);
        let oma_t = grid.one_minus_abar(i);
        let (lower, upper) = clip_bounds(&grid, i, cfg.clip_range);
        ddpm.push(KernelGeom {
            a2: st.a2,
            b: st.b,
            lower,
            upper,
        });
        ddim.push(KernelGeom {
            a2: grid.abar(i),
            b: oma_t,
            lower: 0.0,
            upper: half_w2.unwrap_or(f64::INFINITY),
        });
    }
    Ok(Plan { grid, ddpm, ddim })
}

/// Rademacher probes: `v_j = +-1`.
pub(crate) fn rademacher<R: Rng>(rng: &mut R, d: usize) -> Vec<f64> {
    (0..d)
        .map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 })
        .collect()
}

pub(crate) fn normals<R: Rng>(rng: &mut R, d: usize) -> Vec<f64> {
    (0..d).map(|_| rng.sample(StandardNormal)).collect()
}

/// Hutchinson's estimate `h = (1/M) sum_m v_m .* (H v_m)` of `diag H` (unbiased for any
/// symmetric `H`: `E[v_i v_j] = delta_ij`).
pub fn hutchinson_diag<L: LocalScore, R: Rng>(local: &L, m: usize, rng: &mut R) -> Vec<f64> {
    let d = local.score().len();
    let mut h = vec![0.0; d];
    let mut hv = vec![0.0; d];
    for _ in 0..m {
        let v = rademacher(rng, d);
        local.hvp(&v, &mut hv);
        for i in 0..d {
            h[i] += v[i] * hv[i];
        }
    }
    for x in &mut h {
        *x /= m as f64;
    }
    h
}

/// `C^{1/2} z` for the exact `C = (b^2 H + b I)/a^2` by a symmetric eigendecomposition
/// (eigenvalues below 0 by round-off are set to 0).
fn full_sqrt_mul<L: LocalScore>(local: &L, g: &KernelGeom, z: &[f64]) -> Vec<f64> {
    let d = z.len();
    let h = local.hessian();
    let c = DMatrix::from_fn(d, d, |i, j| {
        (g.b * g.b * h[(i, j)] + if i == j { g.b } else { 0.0 }) / g.a2
    });
    let e = SymmetricEigen::new(c);
    let zv = DVector::from_column_slice(z);
    let coef = e.eigenvectors.transpose() * zv;
    let scaled = DVector::from_fn(d, |i, _| e.eigenvalues[i].max(0.0).sqrt() * coef[i]);
    (e.eigenvectors * scaled).as_slice().to_vec()
}

/// A Lanczos run at a block's first step, kept for the steps it serves.
struct Block {
    krylovs: Vec<Krylov>,
    /// The geometry of the step the Lanczos ran at.
    g0: KernelGeom,
}

/// `C_l^{1/2} z_l` from a Krylov run on `C_0` at a block step: the Ritz value `theta` of
/// `C_0` maps to `h = (a_0^2 theta - b_0) / b_0^2` of `H`, then to `C_l = (b_l^2 h + b_l)/a_l^2`,
/// clamped to `[lower_l, upper_l]`.
fn block_noise(kr: &Krylov, g0: &KernelGeom, gl: &KernelGeom) -> Vec<f64> {
    if g0 == gl {
        return kr.apply_fn(|th| gl.clip(th).sqrt());
    }
    kr.apply_fn(|th| {
        let h = (g0.a2 * th - g0.b) / (g0.b * g0.b);
        gl.clip(gl.var(h)).sqrt()
    })
}

/// The OCM-DDIM map `x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s) (x_t - sqrt(abar_t) x_0) /
/// sqrt(1 - abar_t)` of step `i`.
fn ddim_map(plan: &Plan, i: usize, x: &[f64], x0: &[f64]) -> Vec<f64> {
    let abar_s = plan.grid.abar(i - 1);
    let abar_t = plan.grid.abar(i);
    let c = (plan.grid.one_minus_abar(i - 1) / plan.grid.one_minus_abar(i)).sqrt();
    (0..x.len())
        .map(|j| abar_s.sqrt() * x0[j] + c * (x[j] - abar_t.sqrt() * x0[j]))
        .collect()
}

/// One reverse step for one sample with noise `z`: returns `x_s`. Draws any Rademacher
/// probes / extra block noise vectors from `rng`, in a fixed order. At the last step (`i = 1`)
/// with [`LastStep::Mean`], returns the kernel's mean (`z` unused, nothing drawn).
#[allow(clippy::too_many_arguments)]
fn step_one<M: ScoreModel>(
    model: &M,
    cfg: &SamplerConfig,
    plan: &Plan,
    i: usize,
    x: &[f64],
    z: &[f64],
    rng: &mut ChaCha8Rng,
    block: &mut Option<Block>,
) -> Result<Vec<f64>, SamplerError> {
    let d = x.len();
    let ln_t = plan.grid.ln_abar[i];
    let local = model.at(x, ln_t)?;
    let g = local.score();
    let ddim = cfg.kernel == KernelKind::Ddim;
    let geom = plan.geom(cfg.kernel, i);
    let a = geom.a2.sqrt();
    let mean: Vec<f64> = (0..d).map(|j| (x[j] + geom.b * g[j]) / a).collect();
    if i == 1 && cfg.last_step == LastStep::Mean {
        return Ok(if ddim {
            ddim_map(plan, i, x, &mean)
        } else {
            mean
        });
    }
    let hutch = |m: usize, rng: &mut ChaCha8Rng| -> Vec<f64> {
        let h = hutchinson_diag(&local, m, rng);
        (0..d)
            .map(|j| geom.clip(geom.var(h[j])).sqrt() * z[j])
            .collect()
    };
    let noise: Vec<f64> = match cfg.family {
        SamplerFamily::Beta | SamplerFamily::BetaTilde if ddim => vec![0.0; d],
        SamplerFamily::Beta => z.iter().map(|v| geom.b.sqrt() * v).collect(),
        SamplerFamily::BetaTilde => z.iter().map(|v| geom.lower.sqrt() * v).collect(),
        SamplerFamily::Analytic => {
            let tr = cfg
                .analytic_trace
                .as_ref()
                .ok_or(SamplerError::MissingAnalyticTable)?[i - 1];
            let s = geom.clip(geom.var(tr / d as f64)).sqrt();
            z.iter().map(|v| s * v).collect()
        }
        SamplerFamily::Diag => {
            let h = local.hessian_diag();
            (0..d)
                .map(|j| geom.var(h[j]).max(0.0).sqrt() * z[j])
                .collect()
        }
        SamplerFamily::Full => full_sqrt_mul(&local, &geom, z),
        SamplerFamily::Hutchinson(m) => hutch(m, rng),
        SamplerFamily::Lgs(o) => {
            let lgs_steps = plan.lgs_steps(&o);
            if i == 1 && o.guard.is_some() {
                hutch(o.guard.unwrap_or(1), rng)
            } else if i > lgs_steps {
                // LGSb: beta-tilde before the LGS stretch.
                z.iter().map(|v| geom.lower.sqrt() * v).collect()
            } else if o.batch == 1 {
                let op = CovOperator {
                    local: &local,
                    a2: geom.a2,
                    b: geom.b,
                };
                let kr = lanczos(&op, z, &LanczosParams::new(o.k))?;
                if let Some(bad) = kr.ritz_values().iter().find(|t| !t.is_finite()) {
                    return Err(SamplerError::Lanczos(LanczosError::NonPositive {
                        ritz_value: *bad,
                        index: 0,
                    }));
                }
                kr.apply_fn(|th| geom.clip(th).sqrt())
            } else {
                // Position of step i in its block, counted from the block's first step.
                let pos = (lgs_steps - i) % o.batch;
                if pos == 0 || block.is_none() {
                    let op = CovOperator {
                        local: &local,
                        a2: geom.a2,
                        b: geom.b,
                    };
                    // z is used at this step; the block's other vectors are drawn now.
                    let mut krylovs = Vec::with_capacity(o.batch);
                    krylovs.push(lanczos(&op, z, &LanczosParams::new(o.k))?);
                    for _ in 1..o.batch {
                        let zl = normals(rng, d);
                        krylovs.push(lanczos(&op, &zl, &LanczosParams::new(o.k))?);
                    }
                    *block = Some(Block { krylovs, g0: geom });
                }
                let bl = block.as_ref().ok_or_else(|| invalid("batch", "no block"))?;
                let kr = &bl.krylovs[pos.min(bl.krylovs.len() - 1)];
                block_noise(kr, &bl.g0, &geom)
            }
        }
    };
    if ddim {
        let x0: Vec<f64> = (0..d).map(|j| mean[j] + noise[j]).collect();
        Ok(ddim_map(plan, i, x, &x0))
    } else {
        Ok((0..d).map(|j| mean[j] + noise[j]).collect())
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
