//! The per-step kernel geometry of a run: `a^2`, `b` of the covariance
//! `C = (b^2 H + b I) / a^2` and its clip bounds `[lower, upper]`, for the DDPM step (s, t)
//! and the DDIM clean-posterior step (0, t), computed once per run ([`plan()`]).

use crate::kernel::model::{clip_bounds, KernelKind};
use crate::process::schedule::Grid;

use super::{invalid, LgsOptions, SamplerConfig, SamplerError, SamplerFamily};

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
