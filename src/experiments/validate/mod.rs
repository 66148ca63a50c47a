//! Study kind `validate` (feature `candle`): the tensor path against the f64 core (the
//! `validate` binary is a CLI over this).
//!
//! 1. Per step, for the same x_t and z at steps T, T/2 and 1: the tensor posterior mean, the
//!    analytic H v against autograd H v, each family's step (DDPM and OCM-DDIM) against the f64
//!    sampler's `step_with_noise`, and (D <= 64) the tensor `lgs-D` step against the f64
//!    `full` step.
//! 2. Whole trajectories with shared noise: endpoint distance, per family and kernel.
//! 3. Samples against exact draws of q_0: MMD^2, Frechet distance and exact mean
//!    log-likelihood of the tensor chain and of an independent f64 chain; checked: the two
//!    chains agree in law (MMD^2 z-score under equal laws, log-likelihood z-score).
//! 4. Path-KL differences between families as differences of cross-entropies by Monte Carlo
//!    (tensor model), against the exact path KL of the core on a 2-D preset.
//!
//! Cells: one per data set (parts 1-3; every seed derives from `seed` alone), then part 4.

use nalgebra::DVector;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::data::lowrank::LowRankMixture;
use crate::data::{images, presets};
use crate::kernel::family::Family;
use crate::kl::path_kl::{path_kl_sweep, PathKlParams};
use crate::process::schedule::Schedule;
use crate::sampler::{
    sample, step_with_noise, KernelKind, LastStep, LgsOptions, SamplerConfig, SamplerFamily,
};
use crate::score::LowRankScore;
use crate::stats::{frechet_distance_sq, mmd2_unbiased, MMD_BANDWIDTHS};
use crate::study::{
    ensure, from_cell, to_cell, Assembled, FigureName, Observer, ParamError, RunInfo, StudyError,
    StudyKind,
};
use crate::tensor::{
    analytic_trace_table_tensor, batch, cross_entropy_path_kl, device_from_name,
    relative_error as rel, rows, sample_tensor, step_with_noise_tensor, CrossEntropyParams,
    NoiseSource, TensorLocal, TensorMixtureScore, TensorSampleOptions, TensorScoreModel,
};

/// Documented tolerances. f32 vs f64, relative: the targets (mean 1e-5; sqrt(C) z and
/// the step 1e-4; analytic vs autograd H v 1e-4; trajectories, which the reverse chain does not
/// amplify, 1e-4). Statistical checks: |z| <= 4 (false alarm ~6e-5 per check).
pub const TOL_MEAN: f64 = 1e-5;
/// Step tolerance (relative).
pub const TOL_STEP: f64 = 1e-4;
/// Analytic vs autograd H v (relative).
pub const TOL_HVP: f64 = 1e-4;
/// Trajectory endpoints (relative).
pub const TOL_TRAJ: f64 = 1e-4;
/// z-scores of the statistical checks.
pub const TOL_Z: f64 = 4.0;

mod checks;

use checks::*;

/// Parameters of a `validate` study (keys as the binary's flags; defaults as its defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ValidateStudy {
    /// Device: cpu, or cuda / cuda:N.
    pub device: String,
    /// Data: image presets or dense presets.
    pub data: Vec<String>,
    /// Samples per batch in the per-step and trajectory checks.
    pub batch: usize,
    /// Number of steps T (ddpm-linear) of parts 1-3.
    pub steps: usize,
    /// Families.
    pub families: Vec<String>,
    /// Kernels for parts 1 and 2: ddpm, ddim.
    pub kernels: Vec<String>,
    /// Samples per chain in part 3 (0 skips it).
    pub samples: usize,
    /// Dense 2-D preset of part 4 (`none` skips it).
    pub ce_data: String,
    /// T of part 4.
    pub ce_steps: usize,
    /// Pairs per step in part 4.
    pub ce_samples: usize,
    /// Data draws for the analytic family's table.
    pub analytic_samples: usize,
    /// Scale of the tensor chain's noise (1 = correct).
    pub perturb: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for ValidateStudy {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            data: vec!["digits8".into(), "digits32".into()],
            batch: 16,
            steps: 20,
            families: "beta,beta-tilde,analytic,diag,hutchinson-4,lgs-3"
                .split(',')
                .map(String::from)
                .collect(),
            kernels: vec!["ddpm".into(), "ddim".into()],
            samples: 400,
            ce_data: "mog40".into(),
            ce_steps: 8,
            ce_samples: 20_000,
            analytic_samples: 500,
            perturb: 1.0,
            seed: 0,
        }
    }
}

fn kernel(name: &str) -> Result<KernelKind, ParamError> {
    KernelKind::from_name(name).map_err(|e| ParamError::new("kernels", "ddpm or ddim", e))
}

/// A preset as a low-rank mixture: image presets directly, dense presets exactly converted.
fn load(name: &str) -> Result<LowRankMixture, StudyError> {
    if images::shape(name).is_some() {
        return Ok(images::load(name)?);
    }
    let q =
        presets::load(name).map_err(|e| ParamError::new("data", "image or dense presets", e))?;
    Ok(LowRankMixture::from_mixture(&q)?)
}

impl ValidateStudy {
    fn families(&self) -> Result<Vec<SamplerFamily>, ParamError> {
        self.families
            .iter()
            .map(|f| {
                SamplerFamily::from_name(f)
                    .map_err(|e| ParamError::new("families", "sampler families", e))
            })
            .collect()
    }

    fn kernels(&self) -> Result<Vec<KernelKind>, ParamError> {
        self.kernels.iter().map(|k| kernel(k)).collect()
    }

    fn ce_mixture(&self) -> Result<Option<crate::data::mixture::Mixture>, ParamError> {
        if self.ce_data == "none" {
            return Ok(None);
        }
        let q = presets::load(&self.ce_data)
            .map_err(|e| ParamError::new("ce-data", "a dense 2-D preset or none", e))?;
        if q.dim() > 3 {
            return Err(ParamError::new(
                "ce-data",
                "a preset with D <= 3 (the exact path KL needs the lattice)",
                format!("`{}` with D = {}", self.ce_data, q.dim()),
            ));
        }
        Ok(Some(q))
    }
}

impl StudyKind for ValidateStudy {
    fn kind(&self) -> &'static str {
        "validate"
    }

    fn validate(&self) -> Result<(), ParamError> {
        ensure(self.batch >= 1, "batch", ">= 1", self.batch)?;
        ensure(self.steps >= 2, "steps", ">= 2", self.steps)?;
        ensure(self.ce_steps >= 2, "ce-steps", ">= 2", self.ce_steps)?;
        ensure(
            self.perturb.is_finite() && self.perturb > 0.0,
            "perturb",
            "finite and > 0",
            self.perturb,
        )?;
        device_from_name(&self.device)
            .map_err(|e| ParamError::new("device", "cpu, cuda or cuda:N", e))?;
        ensure(
            self.ce_samples >= 2,
            "ce-samples",
            ">= 2 (a standard error needs two)",
            self.ce_samples,
        )?;
        let fams = self.families()?;
        self.kernels()?;
        for d in &self.data {
            let dim = match images::shape(d) {
                Some((c, h, w)) => c * h * w,
                None => presets::load(d)
                    .map_err(|e| ParamError::new("data", "image or dense presets", e))?
                    .dim(),
            };
            // A requested family that cannot be checked is an error, not a silent skip.
            if fams.contains(&SamplerFamily::Full) && dim > crate::tensor::FULL_MAX_DIM {
                return Err(ParamError::new(
                    "families",
                    format!(
                        "families the tensor path can check on every data set: `full` needs \
                         D <= {} (a dense D x D covariance per sample), `{d}` has D = {dim}; \
                         use lgs-<k> there or drop `{d}`",
                        crate::tensor::FULL_MAX_DIM
                    ),
                    "full",
                ));
            }
        }
        self.ce_mixture()?;
        Ok(())
    }

    fn cells(&self) -> Result<Vec<String>, StudyError> {
        let mut out = self.data.clone();
        if self.ce_data != "none" {
            out.push(format!("cross-entropies {}", self.ce_data));
        }
        Ok(out)
    }

    fn run_cells(&self, indices: &[usize], obs: &dyn Observer) -> Result<Vec<Value>, StudyError> {
        let labels = self.cells()?;
        let mut out = Vec::with_capacity(indices.len());
        for &i in indices {
            obs.cell_started(i, &labels[i]);
            let rep = if i < self.data.len() {
                let q0 = load(&self.data[i])?;
                self.run_data(&self.data[i], &q0)?
            } else {
                let q = self.ce_mixture()?.ok_or_else(|| {
                    ParamError::new("ce-data", "a dense 2-D preset", &self.ce_data)
                })?;
                self.run_ce(&q)?
            };
            out.push(to_cell("validate", &rep)?);
            obs.cell_done(i, &labels[i]);
        }
        Ok(out)
    }

    fn assemble(&self, cells: &[Value], info: &RunInfo) -> Result<Assembled, StudyError> {
        let mut all = Report::default();
        for c in cells {
            let r: Report = from_cell("validate", c)?;
            all.checks.extend(r.checks);
            all.metrics.extend(r.metrics);
            all.cross_entropy.extend(r.cross_entropy);
            all.lines.extend(r.lines);
        }
        let failed = all
            .checks
            .iter()
            .filter(|c| c["pass"] == json!(false))
            .count();
        let mut table = format!(
            "{:<46} {:<10} {:<16} {:>10} {:>8} result\n",
            "check", "data", "family", "value", "tol"
        );
        for l in &all.lines {
            table += l;
            table.push('\n');
        }
        table += &format!("{} checks, {failed} failed\n", all.checks.len());
        let doc = json!({
            "device": self.device,
            "covlab_version": env!("CARGO_PKG_VERSION"),
            "seed": self.seed,
            "batch": self.batch,
            "steps": self.steps,
            "schedule": "ddpm-linear",
            "samples": self.samples,
            "perturb": self.perturb,
            "ce_data": self.ce_data,
            "ce_steps": self.ce_steps,
            "ce_schedule": "vp-linear",
            "ce_samples_per_step": self.ce_samples,
            "tolerances": {"mean": TOL_MEAN, "step": TOL_STEP, "hvp": TOL_HVP, "trajectory": TOL_TRAJ, "z": TOL_Z},
            "wall_time_s": info.wall_time_s,
            "checks": all.checks,
            "sample_metrics": all.metrics,
            "cross_entropy": all.cross_entropy,
        });
        Ok(Assembled {
            doc,
            figures: Vec::new(),
            table,
        })
    }

    fn figures(&self) -> Vec<FigureName> {
        Vec::new()
    }

    fn seeds(&self) -> Vec<u64> {
        vec![self.seed]
    }

    fn device(&self) -> String {
        self.device.clone()
    }
}

/// Whether every check of a `validate` results JSON passed.
#[must_use]
pub fn all_passed(doc: &Value) -> bool {
    doc["checks"]
        .as_array()
        .is_some_and(|c| c.iter().all(|c| c["pass"] == json!(true)))
}
