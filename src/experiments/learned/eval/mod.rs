//! Study kind `learned-eval`: model chains from checkpoints judged at known truth (the
//! `learned eval` binary is a CLI over this).
//!
//! Per method and T: the exact path KL of the chain split into `S_full`, a mean part and a
//! covariance part ([`evaluate_chains`]); the MMD of sampled chains (DDPM and DDIM) against
//! exact draws of q_0; the covariance error against `diag C` per t; for a learned score, the
//! asymmetry of its Jacobian.
//!
//! Cells: first the whole path-KL evaluation, one cell (the T values share grid times, and a
//! time's number of QMC nodes depends on the coarsest T that uses it; the methods share the
//! network batches and the reference pass), then, with MMD rows, the exact-vs-exact floor and
//! one cell per sampled chain (kernel, method, T). Every chain samples with `seed` and is
//! compared with the same reference draws (seeded by `seed` alone), so an MMD cell is the same
//! in any shard; the chains' f32 arithmetic does not depend on the rayon thread count.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device};
use nalgebra::DVector;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{data_dim, head_path_net, load_data, parse_net, score_path_net, DataSet};
use crate::data::lowrank::LowRankMixture;
use crate::kernel::family::Family;
use crate::learned::{
    evaluate_chains, load_head_for, load_score_for, Arch, Chain, CovErrorRow, CovSource,
    EvalModels, EvalParams, EvalReport, EvalRow, EvalRule, Expected, Head, HeadKind, JAsymmetryRow,
    MeanSource, Method, PassCount, Passes, ScoreNet,
};
use crate::plot::{Plot, Series, XScale};
use crate::process::schedule::Schedule;
use crate::quadrature::{Estimate, LatticeParams, QmcParams};
use crate::sampler::{KernelKind, LastStep, LgsOptions, SamplerConfig, SamplerFamily};
use crate::stats::{frechet_distance_sq, mmd2_unbiased, MMD_BANDWIDTHS};
use crate::study::{
    ensure, ensure_steps, from_cell, to_cell, Assembled, Figure, FigureName, Observer, ParamError,
    RunInfo, StudyError, StudyKind,
};
use crate::tensor::{
    analytic_trace_table_tensor, rows as tensor_rows, sample_tensor, NoiseSource,
    TensorMixtureScore, TensorSampleOptions,
};

mod cells;
mod report;
mod run;

use cells::*;

const KIND: &str = "learned-eval";

/// Path KLs above this are not drawn (a variance clipped to 0 at a last step to the data).
const PLOT_CAP: f64 = 1e4;

/// Data draws of the samplers' Analytic-DPM table in the MMD rows.
const ANALYTIC_DRAWS: usize = 2000;

/// Parameters of a `learned-eval` study (keys as the binary's `eval` flags; defaults as its
/// defaults; `data` has none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LearnedEvalStudy {
    /// Data set: mog40, mog40-unit, grid9, aniso2, mix6 or an image preset (digits8).
    pub data: String,
    /// The mean's score: `exact` or `learned`.
    pub score: String,
    /// Methods (`None`: every method that applies to the score; see [`default_methods`]).
    pub methods: Option<Vec<String>>,
    /// The T values.
    pub steps: Vec<usize>,
    /// Schedule (as `path-kl`).
    pub schedule: String,
    /// The T values with MMD rows (a subset of `steps`; empty: no sampling; `None`: the T
    /// values of `steps` among 5, 10, 25, or the smallest of `steps` if none is, see
    /// [`default_mmd_steps`]).
    pub mmd_steps: Option<Vec<usize>>,
    /// Samples per MMD cell (and exact reference draws).
    pub samples: usize,
    /// Kernels of the MMD rows: ddpm, ddim.
    pub kernels: Vec<String>,
    /// The sampled chains' last step: `mean` (the last kernel's mean, no noise: diffusers'
    /// and Ho et al.'s choice) or `noisy` (a draw from the last kernel, the chain whose exact
    /// path KL the rows report).
    pub last_step: String,
    /// LGSb (`lgsb-<k>` methods): the fraction of the steps, the last ones, that use LGS.
    pub lgsb_fraction: f64,
    /// Checkpoint directory (relative: under the study root).
    pub models: PathBuf,
    /// Network of the checkpoints: `mlp` (under `<models>/<data>/`) or `unet` (under
    /// `<models>/<data>/unet/`, image data sets).
    pub net: String,
    /// Network of the covariance heads: `mlp` or `unet` (`None`: as `net`), read from `net`'s
    /// directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_net: Option<String>,
    /// Lattice spacing (fraction of the smallest component sd of q_t).
    pub h_frac: f64,
    /// Early stop: the grids start at t_0 = delta (0: at the data).
    pub early_stop: f64,
    /// Rule of the mean and covariance parts: `qmc` or `lattice` (D <= 2).
    pub rule: String,
    /// D > 2: QMC points per component and shift of `S_full` and of the network-free parts.
    pub qmc_points: usize,
    /// QMC nodes per time of the finest grid.
    pub qmc_nodes: usize,
    /// Seed.
    pub seed: u64,
    /// The directory a relative `models` resolves against (the study root; empty: the
    /// working directory). Not a study-file key.
    #[serde(skip)]
    pub root: PathBuf,
}

impl Default for LearnedEvalStudy {
    fn default() -> Self {
        Self {
            data: String::new(),
            score: "exact".into(),
            methods: None,
            steps: vec![5, 10, 25, 50, 100, 200, 1000],
            schedule: "vp-linear".into(),
            mmd_steps: None,
            samples: 2000,
            kernels: vec!["ddpm".into(), "ddim".into()],
            last_step: "mean".into(),
            lgsb_fraction: 0.5,
            models: PathBuf::from("studies/models"),
            net: "mlp".into(),
            head_net: None,
            h_frac: 0.25,
            early_stop: 0.0,
            rule: "qmc".into(),
            qmc_points: 64,
            qmc_nodes: EvalParams::default().qmc_nodes,
            seed: 0,
            root: PathBuf::new(),
        }
    }
}

/// The methods an evaluation runs by default: every method that applies to the score (the
/// Jacobian ones for a learned score in D = 2).
#[must_use]
pub fn default_methods(score: &str, dim: usize) -> String {
    let mut m = "beta,beta-tilde,analytic,diag,full,hutchinson-1,ocm,sn,npr,iddpm".to_string();
    if score == "learned" && dim == 2 {
        m.push_str(",full-jt,full-j,full-sym");
    }
    m
}

/// The parameters checked and resolved, before the data are built.
struct Plan {
    /// The data dimension `D`.
    dim: usize,
    learned: bool,
    methods: Vec<Method>,
    /// The sampled-only LGS variants (DDPM).
    lgs: Vec<LgsVariant>,
    last_step: LastStep,
    schedule: Schedule,
    /// Sorted, without duplicates.
    steps: Vec<usize>,
    /// The T values with MMD rows (`mmd-steps`, or its default [`default_mmd_steps`]).
    mmd_steps: Vec<usize>,
    kernels: Vec<KernelKind>,
    rule: EvalRule,
}

/// The parameters checked and resolved, with the data.
struct Setup {
    plan: Plan,
    data: DataSet,
}

impl std::ops::Deref for Setup {
    type Target = Plan;
    fn deref(&self) -> &Plan {
        &self.plan
    }
}

/// The MMD T values when `mmd-steps` is not given: the T values of `steps` (sorted) among
/// [`DEFAULT_MMD_STEPS`], or, when none is, the smallest T of `steps`. MMD separates the
/// methods only at small T (from T = 50 on every method is at the 2000-sample noise floor on
/// the 2-D presets) and it is the costliest part (one sampled chain per method, kernel and T),
/// so the default keeps the small T values the user asked for; with the default `steps` it is
/// 5, 10, 25.
#[must_use]
pub fn default_mmd_steps(steps: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = steps
        .iter()
        .copied()
        .filter(|t| DEFAULT_MMD_STEPS.contains(t))
        .collect();
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        out.extend(steps.iter().copied().min());
    }
    out
}

/// The MMD T values of the default `steps` (see [`default_mmd_steps`]).
pub const DEFAULT_MMD_STEPS: [usize; 3] = [5, 10, 25];

impl StudyKind for LearnedEvalStudy {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// The flags, then every checkpoint the run needs (before the data are built: an image
    /// preset's dense mixture takes long), then the data.
    fn validate(&self) -> Result<(), ParamError> {
        let plan = self.plan()?;
        self.load_models(&plan, &Device::Cpu)?;
        self.setup().map(|_| ())
    }

    fn cells(&self) -> Result<Vec<String>, StudyError> {
        let s = self.setup()?;
        Ok(self.specs(&s).into_iter().map(Self::label_of).collect())
    }

    fn run_cells(&self, indices: &[usize], obs: &dyn Observer) -> Result<Vec<Value>, StudyError> {
        let s = self.setup()?;
        let specs = self.specs(&s);
        let device = Device::Cpu;
        let models = self.load_models(&s, &device)?;
        let inputs = if indices
            .iter()
            .any(|&i| !matches!(specs[i], CellSpec::PathKl | CellSpec::PathKlDdim))
        {
            Some(self.mmd_inputs(&s, &device)?)
        } else {
            None
        };
        let mut out = Vec::with_capacity(indices.len());
        for &i in indices {
            let spec = specs[i];
            let label = Self::label_of(spec);
            obs.cell_started(i, &label);
            let value = match (spec, &inputs) {
                (CellSpec::PathKl, _) => {
                    self.path_kl_cell(&s, &models, KernelKind::Ddpm, &device, obs)?
                }
                (CellSpec::PathKlDdim, _) => {
                    self.path_kl_cell(&s, &models, KernelKind::Ddim, &device, obs)?
                }
                (CellSpec::Floor, Some(inp)) => {
                    let start = Instant::now();
                    let e = mmd2_unbiased(&inp.floor_draws, &inp.reference, &MMD_BANDWIDTHS)?;
                    let frechet_sq = frechet_distance_sq(&inp.floor_draws, &inp.reference)?;
                    to_cell(
                        KIND,
                        &MmdCell {
                            method: "exact".into(),
                            steps: 0,
                            kernel: "-".into(),
                            mmd: e.sum.mmd2,
                            se: e.sum.se,
                            wall_s: start.elapsed().as_secs_f64(),
                            frechet_sq,
                            passes: (0, 0, 0),
                        },
                    )?
                }
                (CellSpec::Chain { kernel, method, t }, Some(inp)) => to_cell(
                    KIND,
                    &self.chain_cell(&s, &models, inp, (kernel, method, t), obs)?,
                )?,
                (_, None) => {
                    return Err(StudyError::Case {
                        case: label,
                        reason: "no MMD inputs".into(),
                    })
                }
            };
            out.push(value);
            obs.cell_done(i, &label);
        }
        Ok(out)
    }

    fn assemble(&self, cells: &[Value], info: &RunInfo) -> Result<Assembled, StudyError> {
        let s = self.setup()?;
        let specs = self.specs(&s);
        if specs.len() != cells.len() {
            return Err(StudyError::Case {
                case: KIND.into(),
                reason: format!("{} cells for {} specs", cells.len(), specs.len()),
            });
        }
        let (mut pk, mut pk_ddim, mut mmd) = (None, None, Vec::new());
        for (spec, c) in specs.iter().zip(cells) {
            match spec {
                CellSpec::PathKl => pk = Some(from_cell::<PathKlCell>(KIND, c)?),
                CellSpec::PathKlDdim => pk_ddim = Some(from_cell::<PathKlCell>(KIND, c)?),
                _ => mmd.push(from_cell::<MmdCell>(KIND, c)?),
            }
        }
        let pk = pk.ok_or_else(|| StudyError::Case {
            case: KIND.into(),
            reason: "no path-KL cell".into(),
        })?;
        let kl_wall = pk.wall_s + pk_ddim.as_ref().map_or(0.0, |p| p.wall_s);
        let report = pk.report();
        let ddim = pk_ddim.map(PathKlCell::report);
        let mmd_wall: f64 = mmd.iter().map(|m| m.wall_s).sum();
        let doc = self.doc(&s, &report, ddim.as_ref(), &mmd, (kl_wall, mmd_wall, info));
        let mut table = self.table(&s, &report, &mmd);
        if let Some(d) = &ddim {
            table += &self.kl_table(
                &s,
                &s.mmd_steps,
                d,
                "\nOCM-DDIM chains (each step the one jump (0, t): the sums grow like T)",
            );
        }
        table += &format!(
            "wall time {:.1} s (path KL {kl_wall:.1} s, MMD {mmd_wall:.1} s) on {} threads\n",
            info.wall_time_s, info.threads
        );
        let figures = self.figures_of(&s, &report, &mmd);
        Ok(Assembled {
            doc,
            figures,
            table,
        })
    }

    fn figures(&self) -> Vec<FigureName> {
        let Ok(s) = self.setup() else {
            return Vec::new();
        };
        let label = self.figure_label();
        let mut out = Vec::new();
        if s.methods.iter().any(Method::is_diagonal) {
            out.push(FigureName::plot(format!("_cov_error_{label}")));
        }
        out.push(FigureName::plot(format!("_path_kl_{label}")));
        if self
            .specs(&s)
            .iter()
            .any(|c| matches!(c, CellSpec::Chain { .. }))
        {
            out.push(FigureName::plot(format!("_mmd_{label}")));
        }
        out
    }

    fn seeds(&self) -> Vec<u64> {
        vec![self.seed]
    }

    fn set_root(&mut self, root: &std::path::Path) {
        self.root = root.to_path_buf();
    }
}
