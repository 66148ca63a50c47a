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

use super::{data_dim, head_path, load_data, score_path, DataSet};
use crate::data::lowrank::LowRankMixture;
use crate::kernel::family::Family;
use crate::learned::{
    evaluate_chains, load_head_for, load_score_for, Chain, CovErrorRow, CovSource, EvalModels,
    EvalParams, EvalReport, EvalRow, EvalRule, Expected, Head, HeadKind, JAsymmetryRow, MeanSource,
    Method, ScoreNet,
};
use crate::plot::{LogLogFigure, Series};
use crate::process::schedule::Schedule;
use crate::quadrature::{Estimate, LatticeParams, QmcParams};
use crate::sampler::{KernelKind, SamplerConfig, SamplerFamily};
use crate::stats::{mmd2_unbiased, MMD_BANDWIDTHS};
use crate::study::{
    ensure, ensure_steps, from_cell, to_cell, Assembled, Figure, FigureName, Observer, ParamError,
    RunInfo, StudyError, StudyKind,
};
use crate::tensor::{
    analytic_trace_table_tensor, rows as tensor_rows, sample_tensor, NoiseSource,
    TensorMixtureScore, TensorSampleOptions,
};

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
    /// Checkpoint directory (relative: under the study root).
    pub models: PathBuf,
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
            models: PathBuf::from("studies/models"),
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

/// What one cell computes.
#[derive(Clone, Copy, Debug)]
enum CellSpec {
    /// Every path-KL row, the covariance errors and the Jacobian asymmetry.
    PathKl,
    /// The OCM-DDIM chains' path-KL rows (at the MMD T values; each step the one jump (0, t)).
    PathKlDdim,
    /// Exact draws against the reference (the MMD noise floor).
    Floor,
    /// One sampled chain.
    Chain {
        kernel: KernelKind,
        method: Method,
        t: usize,
    },
}

/// An estimate whose value may be infinite (a degenerate kernel).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Est {
    #[serde(with = "crate::numeric::nonfinite")]
    value: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    err: f64,
}

impl From<Estimate> for Est {
    fn from(e: Estimate) -> Self {
        Self {
            value: e.value,
            err: e.err,
        }
    }
}

impl From<Est> for Estimate {
    fn from(e: Est) -> Self {
        Self {
            value: e.value,
            err: e.err,
        }
    }
}

/// [`EvalRow`] as a cell writes it (infinite values as strings).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RowCell {
    method: String,
    steps: usize,
    path_kl: Est,
    mean_part: Est,
    cov_part: Est,
    s_full: Est,
}

/// [`CovErrorRow`] as a cell writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CovCell {
    method: String,
    #[serde(with = "crate::numeric::nonfinite")]
    t: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    ln_abar: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    mse: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    rel_mse: f64,
}

/// [`JAsymmetryRow`] as a cell writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct AsymCell {
    #[serde(with = "crate::numeric::nonfinite")]
    t: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    ln_abar: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    mean_ratio: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    rms_ratio: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    rel_err_vs_h: f64,
}

/// The path-KL cell: the [`EvalReport`] and its wall time.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PathKlCell {
    rows: Vec<RowCell>,
    cov_error: Vec<CovCell>,
    j_asymmetry: Vec<AsymCell>,
    terminal_kl: Est,
    rule: String,
    wall_s: f64,
}

impl PathKlCell {
    fn new(r: EvalReport, wall_s: f64) -> Self {
        Self {
            rows: r
                .rows
                .into_iter()
                .map(|r| RowCell {
                    method: r.method,
                    steps: r.steps,
                    path_kl: r.path_kl.into(),
                    mean_part: r.mean_part.into(),
                    cov_part: r.cov_part.into(),
                    s_full: r.s_full.into(),
                })
                .collect(),
            cov_error: r
                .cov_error
                .into_iter()
                .map(|c| CovCell {
                    method: c.method,
                    t: c.t,
                    ln_abar: c.ln_abar,
                    mse: c.mse,
                    rel_mse: c.rel_mse,
                })
                .collect(),
            j_asymmetry: r
                .j_asymmetry
                .into_iter()
                .map(|a| AsymCell {
                    t: a.t,
                    ln_abar: a.ln_abar,
                    mean_ratio: a.mean_ratio,
                    rms_ratio: a.rms_ratio,
                    rel_err_vs_h: a.rel_err_vs_h,
                })
                .collect(),
            terminal_kl: r.terminal_kl.into(),
            rule: r.rule,
            wall_s,
        }
    }

    fn report(self) -> EvalReport {
        EvalReport {
            rows: self
                .rows
                .into_iter()
                .map(|r| EvalRow {
                    method: r.method,
                    steps: r.steps,
                    path_kl: r.path_kl.into(),
                    mean_part: r.mean_part.into(),
                    cov_part: r.cov_part.into(),
                    s_full: r.s_full.into(),
                })
                .collect(),
            cov_error: self
                .cov_error
                .into_iter()
                .map(|c| CovErrorRow {
                    method: c.method,
                    t: c.t,
                    ln_abar: c.ln_abar,
                    mse: c.mse,
                    rel_mse: c.rel_mse,
                })
                .collect(),
            j_asymmetry: self
                .j_asymmetry
                .into_iter()
                .map(|a| JAsymmetryRow {
                    t: a.t,
                    ln_abar: a.ln_abar,
                    mean_ratio: a.mean_ratio,
                    rms_ratio: a.rms_ratio,
                    rel_err_vs_h: a.rel_err_vs_h,
                })
                .collect(),
            terminal_kl: self.terminal_kl.into(),
            rule: self.rule,
        }
    }
}

/// An MMD cell: the floor (method `exact`, T 0, kernel `-`) or one chain.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct MmdCell {
    method: String,
    steps: usize,
    kernel: String,
    #[serde(with = "crate::numeric::nonfinite")]
    mmd: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    se: f64,
    wall_s: f64,
}

/// The checkpoints an evaluation needs.
struct Models {
    net: Option<ScoreNet>,
    heads: Vec<Head>,
}

/// What every MMD cell shares: the reference draws, the floor's draws, the Analytic-DPM
/// table's data and the exact score on the device, all from `seed` alone.
struct MmdInputs {
    reference: Vec<DVector<f64>>,
    floor_draws: Vec<DVector<f64>>,
    analytic_data: Vec<DVector<f64>>,
    exact: TensorMixtureScore,
}

impl LearnedEvalStudy {
    /// `<data>_<score>`: the name of the default JSON and of the figures.
    #[must_use]
    pub fn label(&self) -> String {
        format!("{}_{}", self.data, self.score)
    }

    /// The figures' label: `<data>` with the exact score (the names issue 9 fixed as an
    /// interface, `figures/learned_cov_error_<data>.png` ...), `<data>_learned` with the
    /// learned one.
    #[must_use]
    pub fn figure_label(&self) -> String {
        if self.score == "exact" {
            self.data.clone()
        } else {
            format!("{}_{}", self.data, self.score)
        }
    }

    fn models_dir(&self) -> PathBuf {
        self.root.join(&self.models)
    }

    /// The parameters checked and resolved without building the data's mixture (cheap: the
    /// dimension of an image preset comes from its shape).
    fn plan(&self) -> Result<Plan, ParamError> {
        let dim = data_dim(&self.data)?;
        let learned = match self.score.as_str() {
            "exact" => false,
            "learned" => true,
            other => return Err(ParamError::new("score", "exact or learned", other)),
        };
        let methods_text = self
            .methods
            .as_ref()
            .map_or_else(|| default_methods(&self.score, dim), |m| m.join(","));
        let methods = Method::parse_list(&methods_text)
            .map_err(|e| ParamError::new("methods", "covariance methods", e))?;
        if !learned {
            if let Some(m) = methods
                .iter()
                .find(|m| matches!(m, Method::FullJt | Method::FullJ | Method::FullSym))
            {
                return Err(ParamError::new(
                    "methods",
                    "methods of the exact score",
                    format!(
                        "{} (it needs a learned score: the exact Hessian is symmetric, use full)",
                        m.name()
                    ),
                ));
            }
        }
        let schedule = Schedule::from_name(&self.schedule)
            .map_err(|e| ParamError::new("schedule", "a schedule name", e))?;
        ensure_steps(&self.steps)?;
        let mut steps = self.steps.clone();
        steps.sort_unstable();
        steps.dedup();
        let mmd_steps = match &self.mmd_steps {
            Some(m) => m.clone(),
            None => default_mmd_steps(&steps),
        };
        if let Some(t) = mmd_steps.iter().find(|t| !steps.contains(t)) {
            return Err(ParamError::new(
                "mmd-steps",
                "T values among `steps`",
                format!("T = {t}"),
            ));
        }
        let kernels = self
            .kernels
            .iter()
            .map(|k| {
                KernelKind::from_name(k.trim())
                    .map_err(|e| ParamError::new("kernels", "ddpm or ddim", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        crate::study::ensure_h_frac(self.h_frac)?;
        let rule = match self.rule.as_str() {
            "qmc" => EvalRule::Qmc,
            "lattice" if dim <= 2 => EvalRule::Lattice,
            "lattice" => {
                return Err(ParamError::new(
                    "rule",
                    "qmc (lattice needs D <= 2)",
                    format!("lattice with D = {dim}"),
                ))
            }
            other => return Err(ParamError::new("rule", "qmc or lattice", other)),
        };
        ensure(self.qmc_nodes >= 16, "qmc-nodes", ">= 16", self.qmc_nodes)?;
        ensure(self.qmc_points >= 1, "qmc-points", ">= 1", self.qmc_points)?;
        crate::study::ensure_early_stop(self.early_stop)?;
        ensure(
            self.samples >= 4 || mmd_steps.is_empty(),
            "samples",
            ">= 4 (MMD standard error)",
            self.samples,
        )?;
        for &t in &steps {
            schedule.grid(t, self.early_stop).map_err(|e| {
                ParamError::new("steps", "T values the schedule allows with early-stop", e)
            })?;
        }
        // A single step to the data (T = 1, no early stop): beta-tilde's variance there is
        // 0 and the clip remedy (and iddpm's clipped beta~) borrows the next step's, which
        // does not exist.
        if self.early_stop == 0.0 && steps.contains(&1) {
            if let Some(m) = methods.iter().find(|m| {
                matches!(
                    m,
                    Method::Family(Family::BetaTilde) | Method::Head(HeadKind::Iddpm)
                )
            }) {
                return Err(ParamError::new(
                    "steps",
                    format!(
                        "T >= 2 for {} with early-stop 0 (its last step to the data borrows the next step's variance)",
                        m.name()
                    ),
                    "T = 1",
                ));
            }
        }
        Ok(Plan {
            dim,
            learned,
            methods,
            schedule,
            steps,
            mmd_steps,
            kernels,
            rule,
        })
    }

    /// [`Self::plan`], the checkpoints checked, then the data.
    fn setup(&self) -> Result<Setup, ParamError> {
        let plan = self.plan()?;
        let data = load_data(&self.data)?;
        if data.q0.dim() != plan.dim {
            return Err(ParamError::new(
                "data",
                format!("data of dimension {}", plan.dim),
                format!("D = {}", data.q0.dim()),
            ));
        }
        Ok(Setup { plan, data })
    }

    /// The methods with an OCM-DDIM covariance whose DDIM chains are sampled: not `beta`,
    /// `beta-tilde` (Sigma_0 = 0: plain DDIM, infinite KL), `iddpm` (no DDIM kernel) or the
    /// Jacobian chains (not sampled).
    fn ddim_methods(s: &Setup) -> Vec<Method> {
        s.methods
            .iter()
            .copied()
            .filter(|m| {
                !matches!(
                    m,
                    Method::Family(Family::Beta | Family::BetaTilde)
                        | Method::Head(HeadKind::Iddpm)
                        | Method::FullJt
                        | Method::FullJ
                        | Method::FullSym
                )
            })
            .collect()
    }

    /// Whether the DDIM path KL is computed: DDIM chains are sampled, with an early stop of 0
    /// (the DDIM kernel's x_0 is the data at t = 0) and some method with a DDIM covariance.
    fn ddim_path_kl(&self, s: &Setup) -> bool {
        !s.mmd_steps.is_empty()
            && s.kernels.contains(&KernelKind::Ddim)
            && self.early_stop == 0.0
            && !Self::ddim_methods(s).is_empty()
    }

    fn specs(&self, s: &Setup) -> Vec<CellSpec> {
        let mut out = vec![CellSpec::PathKl];
        if s.mmd_steps.is_empty() {
            return out;
        }
        if self.ddim_path_kl(s) {
            out.push(CellSpec::PathKlDdim);
        }
        out.push(CellSpec::Floor);
        for &kernel in &s.kernels {
            // The Jacobian chains are evaluated, not sampled; I-DDPM has no DDIM kernel
            // (beta~ = 0 for every step to the data).
            let skip = |m: Method| {
                matches!(m, Method::FullJt | Method::FullJ | Method::FullSym)
                    || (kernel == KernelKind::Ddim && m == Method::Head(HeadKind::Iddpm))
            };
            for &method in s.methods.iter().filter(|m| !skip(**m)) {
                for &t in &s.mmd_steps {
                    out.push(CellSpec::Chain { kernel, method, t });
                }
            }
        }
        out
    }

    fn label_of(spec: CellSpec) -> String {
        match spec {
            CellSpec::PathKl => "exact path KL".into(),
            CellSpec::PathKlDdim => "exact path KL, DDIM".into(),
            CellSpec::Floor => "MMD floor".into(),
            CellSpec::Chain { kernel, method, t } => {
                format!("MMD {} {} T = {t}", kernel.name(), method.name())
            }
        }
    }

    /// Loads every checkpoint the run needs (the score network for the learned score, a
    /// head per head method) and checks each against the run: kind, data set, dimension,
    /// the score a head was trained against, finite weights. A missing, corrupt or
    /// mismatched file is a bad `models` directory, named with the file.
    fn load_models(&self, p: &Plan, device: &Device) -> Result<Models, ParamError> {
        let dir = self.models_dir();
        let bad = |e| ParamError::new("models", "a directory holding the checkpoints", e);
        let expected = Expected {
            data: &self.data,
            dim: p.dim,
            score: &self.score,
        };
        let net = if p.learned {
            Some(
                load_score_for(&score_path(&dir, &self.data), device, &expected)
                    .map_err(bad)?
                    .0,
            )
        } else {
            None
        };
        let mut heads = Vec::new();
        for m in &p.methods {
            if let Method::Head(k) = m {
                let path = head_path(&dir, &self.data, *k, &self.score);
                heads.push(load_head_for(&path, *k, device, &expected).map_err(bad)?.0);
            }
        }
        Ok(Models { net, heads })
    }

    fn mmd_inputs(&self, s: &Setup, device: &Device) -> Result<MmdInputs, StudyError> {
        let n = self.samples;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x5EED);
        let reference = s.data.q0.sample(&mut rng, n);
        let floor_draws = s.data.q0.sample(&mut rng, n);
        let analytic_data = s.data.q0.sample(&mut rng, ANALYTIC_DRAWS);
        let exact = TensorMixtureScore::new(LowRankMixture::from_mixture(&s.data.q0)?, device)?;
        Ok(MmdInputs {
            reference,
            floor_draws,
            analytic_data,
            exact,
        })
    }

    /// The path-KL rows of `kernel`'s chains: every method and T (DDPM), or the DDIM
    /// methods at the MMD T values (DDIM).
    fn path_kl_cell(
        &self,
        s: &Setup,
        models: &Models,
        kernel: KernelKind,
        device: &Device,
        obs: &dyn Observer,
    ) -> Result<Value, StudyError> {
        let start = Instant::now();
        let (steps, methods) = match kernel {
            KernelKind::Ddpm => (s.steps.clone(), s.methods.clone()),
            KernelKind::Ddim => {
                let mut t = s.mmd_steps.clone();
                t.sort_unstable();
                t.dedup();
                (t, Self::ddim_methods(s))
            }
        };
        let params = EvalParams {
            schedule: s.schedule.clone(),
            steps,
            methods,
            kernel,
            lattice: LatticeParams {
                h_frac: self.h_frac,
                ..LatticeParams::default()
            },
            rule: s.rule,
            qmc_nodes: self.qmc_nodes,
            qmc: QmcParams {
                points: self.qmc_points,
                ..EvalParams::default().qmc
            },
            seed: self.seed,
            early_stop: self.early_stop,
            clip_range: Some(s.data.range),
            ..EvalParams::default()
        };
        let eval_models = EvalModels {
            score: models.net.as_ref(),
            heads: models.heads.iter().collect(),
        };
        let report = evaluate_chains(&s.data.q0, &eval_models, &params, device, &|done, total| {
            obs.inner(done, total);
        })?;
        to_cell(
            KIND,
            &PathKlCell::new(report, start.elapsed().as_secs_f64()),
        )
    }

    fn chain_cell(
        &self,
        s: &Setup,
        models: &Models,
        inputs: &MmdInputs,
        (kernel, m, t): (KernelKind, Method, usize),
        obs: &dyn Observer,
    ) -> Result<MmdCell, StudyError> {
        let start = Instant::now();
        let grid = s.schedule.grid(t, self.early_stop)?;
        let mean = match &models.net {
            Some(nn) => MeanSource::Learned(nn),
            None => MeanSource::Exact(&inputs.exact),
        };
        let (cov, family) = match m {
            Method::Family(f @ (Family::Diag | Family::Full)) if models.net.is_some() => {
                (CovSource::Exact(&inputs.exact), sampler_family(f))
            }
            Method::Family(f) => (CovSource::Mean, sampler_family(f)),
            Method::Hutchinson(k) => (CovSource::Mean, SamplerFamily::Hutchinson(k)),
            Method::Head(kind) => {
                let head = models
                    .heads
                    .iter()
                    .find(|h| h.kind() == kind)
                    .ok_or_else(|| StudyError::Case {
                        case: format!("MMD {}", m.name()),
                        reason: "head not loaded".into(),
                    })?;
                (
                    CovSource::Head {
                        head,
                        range: Some(s.data.range),
                        grid: (kernel == KernelKind::Ddpm).then_some(&grid),
                    },
                    SamplerFamily::Diag,
                )
            }
            Method::FullJt | Method::FullJ | Method::FullSym => {
                return Err(StudyError::Case {
                    case: format!("MMD {}", m.name()),
                    reason: "the Jacobian chains are not sampled".into(),
                })
            }
        };
        let chain = Chain { mean, cov };
        let mut cfg = SamplerConfig::new(family, s.schedule.clone(), t);
        cfg.kernel = kernel;
        cfg.seed = self.seed;
        cfg.early_stop = self.early_stop;
        cfg.clip_range = Some(s.data.range);
        if family == SamplerFamily::Analytic {
            cfg.analytic_trace = Some(analytic_trace_table_tensor(
                &chain,
                &s.schedule,
                t,
                self.early_stop,
                &inputs.analytic_data,
                self.seed,
            )?);
        }
        let n = self.samples;
        let opts = TensorSampleOptions {
            chunk: n,
            source: NoiseSource::Host,
            noise_scale: 1.0,
        };
        let x = sample_tensor(&chain, &cfg, n, &opts, |k| obs.inner(k, t))?;
        let xs: Vec<DVector<f64>> = tensor_rows(&x.to_dtype(DType::F64)?)?;
        let e = mmd2_unbiased(&xs, &inputs.reference, &MMD_BANDWIDTHS)?;
        Ok(MmdCell {
            method: m.name(),
            steps: t,
            kernel: kernel.name().into(),
            mmd: e.sum.mmd2,
            se: e.sum.se,
            wall_s: start.elapsed().as_secs_f64(),
        })
    }

    /// The results JSON (the binary's keys).
    fn doc(
        &self,
        s: &Setup,
        report: &EvalReport,
        ddim: Option<&EvalReport>,
        mmd: &[MmdCell],
        walls: (f64, f64, &RunInfo),
    ) -> Value {
        let (kl_wall, mmd_wall, info) = walls;
        let find_mmd = |m: &str, t: usize, k: &str| {
            mmd.iter()
                .find(|r| r.method == m && r.steps == t && r.kernel == k)
        };
        let mut rows: Vec<Value> = Vec::new();
        for r in &report.rows {
            let mm = find_mmd(&r.method, r.steps, "ddpm");
            rows.push(json!({
                "method": r.method, "T": r.steps, "kernel": "ddpm",
                "path_kl": inf_str(r.path_kl.value), "err": r.path_kl.err,
                "mean_part": inf_str(r.mean_part.value), "mean_part_err": r.mean_part.err,
                "cov_part": inf_str(r.cov_part.value), "cov_part_err": r.cov_part.err,
                "s_full": r.s_full.value, "s_full_err": r.s_full.err,
                "mmd": mm.map(|m| m.mmd), "mmd_se": mm.map(|m| m.se),
            }));
        }
        for m in mmd.iter().filter(|m| m.kernel == "ddim") {
            let kl = ddim.and_then(|d| {
                d.rows
                    .iter()
                    .find(|r| r.method == m.method && r.steps == m.steps)
            });
            let deterministic = m.method == "beta" || m.method == "beta-tilde";
            rows.push(match kl {
                Some(r) => json!({"method": m.method, "T": m.steps, "kernel": "ddim",
                    "path_kl": inf_str(r.path_kl.value), "err": r.path_kl.err,
                    "mean_part": inf_str(r.mean_part.value), "mean_part_err": r.mean_part.err,
                    "cov_part": inf_str(r.cov_part.value), "cov_part_err": r.cov_part.err,
                    "s_full": r.s_full.value, "s_full_err": r.s_full.err,
                    "mmd": m.mmd, "mmd_se": m.se}),
                // Plain DDIM (Sigma_0 = 0): a deterministic kernel, infinite KL.
                None if deterministic && self.early_stop == 0.0 => json!({"method": m.method, "T": m.steps, "kernel": "ddim",
                    "path_kl": "inf", "err": Value::Null, "mean_part": Value::Null, "cov_part": "inf",
                    "mmd": m.mmd, "mmd_se": m.se}),
                None => json!({"method": m.method, "T": m.steps, "kernel": "ddim", "path_kl": Value::Null, "err": Value::Null,
                    "mean_part": Value::Null, "cov_part": Value::Null, "mmd": m.mmd, "mmd_se": m.se}),
            });
        }
        json!({
            "data": s.data.name,
            "score": self.score,
            "schedule": s.schedule.name(),
            "dim": s.data.q0.dim(),
            "rule": report.rule,
            "early_stop": self.early_stop,
            "terminal_kl": report.terminal_kl.value,
            "terminal_kl_err": report.terminal_kl.err,
            "clip_range": [s.data.range.0, s.data.range.1],
            "mmd_samples": self.samples,
            "mmd_floor": mmd.iter().find(|m| m.method == "exact").map(|m| json!({"mmd": m.mmd, "mmd_se": m.se})),
            "rows": rows,
            "cov_error": report.cov_error.iter().map(|c| json!({"method": c.method, "t": c.t, "ln_abar": c.ln_abar, "mse": inf_str(c.mse), "rel_mse": inf_str(c.rel_mse)})).collect::<Vec<_>>(),
            "j_asymmetry": report.j_asymmetry,
            "wall_time_s": info.wall_time_s,
            "path_kl_wall_s": kl_wall,
            "mmd_wall_s": mmd_wall,
            "threads": info.threads,
            "covlab_version": env!("CARGO_PKG_VERSION"),
        })
    }
}

/// A JSON number, or the string "inf" for an infinite value (null for NaN): the binary's
/// contract.
fn inf_str(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else if v.is_nan() {
        Value::Null
    } else {
        json!("inf")
    }
}

fn sampler_family(f: Family) -> SamplerFamily {
    match f {
        Family::Beta => SamplerFamily::Beta,
        Family::BetaTilde => SamplerFamily::BetaTilde,
        Family::Analytic => SamplerFamily::Analytic,
        Family::Diag => SamplerFamily::Diag,
        Family::Full => SamplerFamily::Full,
    }
}

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
                    to_cell(
                        KIND,
                        &MmdCell {
                            method: "exact".into(),
                            steps: 0,
                            kernel: "-".into(),
                            mmd: e.sum.mmd2,
                            se: e.sum.se,
                            wall_s: start.elapsed().as_secs_f64(),
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

impl LearnedEvalStudy {
    /// The text tables the binary prints.
    #[allow(clippy::too_many_lines)]
    fn table(&self, s: &Setup, report: &EvalReport, mmd: &[MmdCell]) -> String {
        use std::fmt::Write;
        let mut o = self.kl_table(
            s,
            &s.steps,
            report,
            &format!(
                "exact path KL (terminal term excluded) of model chains on {} (D = {}), {} score, schedule {}; rule: {}",
                s.data.name,
                s.data.q0.dim(),
                self.score,
                self.schedule,
                report.rule
            ),
        );
        if mmd.len() > 1 {
            let _ = writeln!(
                o,
                "\nMMD^2_u x 1e3 (sum kernel h = 2^-2..2^2, {} samples; exact-vs-exact floor {:.2} +- {:.2})",
                self.samples,
                mmd[0].mmd * 1e3,
                mmd[0].se * 1e3
            );
            for kernel in ["ddpm", "ddim"] {
                let ms: Vec<&MmdCell> = mmd.iter().filter(|m| m.kernel == kernel).collect();
                if ms.is_empty() {
                    continue;
                }
                let _ = write!(o, "{kernel:>12}");
                for t in &s.mmd_steps {
                    let _ = write!(o, " {t:>16}");
                }
                o.push('\n');
                let mut seen: Vec<&str> = Vec::new();
                for m in &ms {
                    if seen.contains(&m.method.as_str()) {
                        continue;
                    }
                    seen.push(&m.method);
                    let _ = write!(o, "{:>12}", m.method);
                    for t in &s.mmd_steps {
                        match ms.iter().find(|x| x.method == m.method && x.steps == *t) {
                            Some(x) => {
                                let _ = write!(
                                    o,
                                    " {:>16}",
                                    format!("{:.2} +- {:.2}", x.mmd * 1e3, x.se * 1e3)
                                );
                            }
                            None => {
                                let _ = write!(o, " {:>16}", "-");
                            }
                        }
                    }
                    o.push('\n');
                }
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for c in &report.cov_error {
            if !names.contains(&c.method.as_str()) {
                names.push(&c.method);
            }
        }
        if !names.is_empty() {
            let _ = writeln!(o, "\ncovariance MSE E(1/D)||diag Sigma - diag C||^2 of the one-step kernel (1000-step grid), relative to E(1/D)||diag C||^2:");
            let ts: Vec<f64> = {
                let mut v: Vec<f64> = report.cov_error.iter().map(|c| c.t).collect();
                v.sort_by(f64::total_cmp);
                v.dedup();
                v
            };
            let pick: Vec<f64> = ts.iter().copied().step_by((ts.len() / 6).max(1)).collect();
            let _ = write!(o, "{:>12}", "method \\ t");
            for t in &pick {
                let _ = write!(o, " {t:>10.4}");
            }
            o.push('\n');
            for name in names {
                let _ = write!(o, "{name:>12}");
                for t in &pick {
                    match report
                        .cov_error
                        .iter()
                        .find(|c| c.method == name && c.t.to_bits() == t.to_bits())
                    {
                        Some(c) => {
                            let _ = write!(o, " {:>10.2e}", c.rel_mse);
                        }
                        None => {
                            let _ = write!(o, " {:>10}", "-");
                        }
                    }
                }
                o.push('\n');
            }
        }
        if !report.j_asymmetry.is_empty() {
            let _ = writeln!(o, "\nlearned Jacobian: ||J - J^T||_F / ||J||_F (mean over q_t; rms) and ||J - H|| / ||H|| (rms):");
            for a in &report.j_asymmetry {
                let _ = writeln!(
                    o,
                    "  t = {:.4} (ln abar {:+.3e}): {:.3e}  {:.3e}  {:.3e}",
                    a.t, a.ln_abar, a.mean_ratio, a.rms_ratio, a.rel_err_vs_h
                );
            }
        }
        o
    }

    /// The path-KL block of the table: `heading`, then S_full and each method per T.
    fn kl_table(&self, _s: &Setup, steps: &[usize], report: &EvalReport, heading: &str) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(o, "{heading}");
        let _ = writeln!(
            o,
            "path_kl = S_full + mean part + cov part; each cell: path_kl [mean part / cov part]"
        );
        let _ = write!(o, "{:>12}", "method \\ T");
        for t in steps {
            let _ = write!(o, " {t:>34}");
        }
        o.push('\n');
        let mut names: Vec<&str> = Vec::new();
        for r in &report.rows {
            if !names.contains(&r.method.as_str()) {
                names.push(&r.method);
            }
        }
        if let Some(r) = report.rows.first() {
            let _ = write!(o, "{:>12}", "S_full");
            for t in steps {
                let sf = report
                    .rows
                    .iter()
                    .find(|x| x.steps == *t)
                    .map_or(r.s_full, |x| x.s_full);
                let _ = write!(o, " {:>34}", format!("{:.3e} +- {:.0e}", sf.value, sf.err));
            }
            o.push('\n');
        }
        for name in &names {
            let _ = write!(o, "{name:>12}");
            for t in steps {
                match report
                    .rows
                    .iter()
                    .find(|r| r.method == *name && r.steps == *t)
                {
                    Some(r) => {
                        let _ = write!(
                            o,
                            " {:>34}",
                            format!(
                                "{:.3e} [{:.2e} / {:.2e}]",
                                r.path_kl.value, r.mean_part.value, r.cov_part.value
                            )
                        );
                    }
                    None => {
                        let _ = write!(o, " {:>34}", "-");
                    }
                }
            }
            o.push('\n');
        }
        o
    }

    /// The figures: covariance error vs t, path KL vs T, MMD vs T (suffixes
    /// `_{cov_error,path_kl,mmd}_<data>` with the exact score, `..._<data>_learned` with the
    /// learned one; a figure without a series is not drawn).
    fn figures_of(&self, s: &Setup, report: &EvalReport, mmd: &[MmdCell]) -> Vec<(String, Figure)> {
        let label = self.figure_label();
        let schedule = &s.schedule;
        let line = |name: &str, x: Vec<f64>, y: Vec<f64>, index: usize| {
            Series::new(name, x, y).with_color(index).with_marker(index)
        };
        let mut names: Vec<String> = Vec::new();
        for r in &report.rows {
            if !names.contains(&r.method) {
                names.push(r.method.clone());
            }
        }
        let color = |m: &str| names.iter().position(|n| n == m).unwrap_or(0);
        let mut out = Vec::new();
        // Covariance error against t.
        let mut series = Vec::new();
        for name in &names {
            let pts: Vec<_> = report
                .cov_error
                .iter()
                .filter(|c| &c.method == name)
                .collect();
            if pts.is_empty() {
                continue;
            }
            series.push(line(
                name,
                pts.iter().map(|c| c.t).collect(),
                pts.iter().map(|c| c.mse).collect(),
                color(name),
            ));
        }
        // A method without a drawable value (all infinite, or MMD^2 <= 0) is left out.
        series.retain(|s| s.has_drawable_point(true));
        if !series.is_empty() {
            out.push((
                format!("_cov_error_{label}"),
                Figure::LogLog(LogLogFigure {
                    title: format!("Diagonal covariance error vs t: {label}"),
                    x_label: format!("t ({} time of the 1000-step grid)", schedule.name()),
                    y_label: "E (1/D) ||diag Sigma_(t-1)(x_t) - diag C(x_t)||^2".into(),
                    series,
                    refs: vec![],
                    caption: Some(
                        "one-step kernel of the 1000-step grid; expectation over q_t by randomised QMC (8192 nodes per t)"
                            .into(),
                    ),
                }),
            ));
        }
        // Path KL against T.
        let mut series = Vec::new();
        for name in &names {
            let pts: Vec<_> = report
                .rows
                .iter()
                .filter(|r| &r.method == name && r.path_kl.value < PLOT_CAP)
                .collect();
            if pts.is_empty() {
                continue;
            }
            series.push(
                line(
                    name,
                    pts.iter().map(|r| r.steps as f64).collect(),
                    pts.iter().map(|r| r.path_kl.value).collect(),
                    color(name),
                )
                .with_err(pts.iter().map(|r| r.path_kl.err).collect()),
            );
        }
        if let Some(r0) = report.rows.first() {
            let pts: Vec<_> = report
                .rows
                .iter()
                .filter(|r| r.method == r0.method)
                .collect();
            series.push(
                Series::new(
                    "S_full (Gaussian limit)",
                    pts.iter().map(|r| r.steps as f64).collect(),
                    pts.iter().map(|r| r.s_full.value).collect(),
                )
                .dashed(),
            );
        }
        series.retain(|s| s.has_drawable_point(true));
        out.push((
            format!("_path_kl_{label}"),
            Figure::LogLog(LogLogFigure {
                title: format!("Exact path KL of model chains: {label}"),
                x_label: "T (number of reverse steps)".into(),
                y_label: "path KL = S_full + mean part + cov part".into(),
                series,
                refs: vec![],
                caption: Some(format!(
                    "{}; terminal KL {:.2e} excluded; bars: error estimates; values > 1e4 (degenerate last steps) not drawn",
                    schedule.name(),
                    report.terminal_kl.value
                )),
            }),
        ));
        // MMD against T.
        let mut series = Vec::new();
        for kernel in ["ddpm", "ddim"] {
            for name in &names {
                let pts: Vec<_> = mmd
                    .iter()
                    .filter(|m| &m.method == name && m.kernel == kernel)
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let s = line(
                    // One legend entry per method: DDIM's curve (dashed) shares the colour.
                    if kernel == "ddim" { "" } else { name },
                    pts.iter().map(|m| m.steps as f64).collect(),
                    pts.iter().map(|m| m.mmd).collect(),
                    color(name),
                );
                series.push(if kernel == "ddim" { s.dashed() } else { s });
            }
        }
        // A method without a drawable value (all infinite, or MMD^2 <= 0) is left out.
        series.retain(|s| s.has_drawable_point(true));
        if !series.is_empty() {
            let floor = mmd.first().map_or(0.0, |m| m.se);
            out.push((
                format!("_mmd_{label}"),
                Figure::LogLog(LogLogFigure {
                    title: format!("MMD^2 of samples vs T: {label} (solid: DDPM, dashed: DDIM)"),
                    x_label: "T (number of reverse steps)".into(),
                    y_label: "MMD^2_u (sum of Gaussian kernels)".into(),
                    series,
                    refs: vec![],
                    caption: Some(format!(
                        "non-positive estimates not drawn; exact-vs-exact s.e. {floor:.1e}"
                    )),
                }),
            ));
        }
        out
    }
}
