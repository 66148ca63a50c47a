//! Study kind `path-kl`: exact path KL per covariance family against T, fitted slopes
//! (the `path-kl` binary is a CLI over this).
//!
//! Cells: one per T value (ascending). A run over a subset of T values is one
//! [`path_kl_sweep`] over that subset: the sweep shares expectations at common grid times
//! between T values, but each T's sums are accumulated in the same order from the same
//! per-time values whatever other T values run (the per-time lattice or QMC rule depends only
//! on the time and the parameters), so a cell is bit-identical in any subset (tested). The
//! `hutchinson-<M>` families add a Monte Carlo excess per T (seeded, per T).

mod report;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::kernel::family::{BetaTildeRemedy, Family};
use crate::kl::hutchinson::{hutchinson_excess, hutchinson_path_kl, HutchinsonMc};
use crate::kl::path_kl::{path_kl_sweep, PathKlParams, Route, RuleChoice};
use crate::process::schedule::Schedule;
use crate::process::spec::{grid_records, DiffusersOptions, GridRecord};
use crate::quadrature::{LatticeParams, QmcParams};
use crate::sampler::KernelKind;
use crate::stats::rates::{fit_loglog, SlopeFit};
use crate::study::{
    ensure, from_cell, to_cell, Assembled, Figure, FigureName, Observer, ParamError, RunInfo,
    StudyError, StudyKind,
};

/// Parameters of a `path-kl` study (keys as the binary's flags; defaults as its defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct PathKlStudy {
    /// Preset (mog40, mog40-unit, grid9, aniso2, mix6) or a mixture JSON file.
    pub data: String,
    /// Schedule: a preset name, `diffusers:<beta_schedule>` or a schedule file `*.json`.
    pub schedule: String,
    /// diffusers' `num_train_timesteps` (with `diffusers:`; default 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_train_timesteps: Option<usize>,
    /// diffusers' `beta_start` (with `diffusers:`; default 1e-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_start: Option<f64>,
    /// diffusers' `beta_end` (with `diffusers:`; default 0.02).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_end: Option<f64>,
    /// diffusers' `timestep_spacing` (with `diffusers:` or a file without `timesteps`;
    /// default `leading`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestep_spacing: Option<String>,
    /// diffusers' `steps_offset` (as `timestep-spacing`; default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps_offset: Option<usize>,
    /// Families: beta, beta-tilde, analytic, diag, full, `hutchinson-<M>`.
    pub families: Vec<String>,
    /// The T values.
    pub steps: Vec<usize>,
    /// Early stop delta (0: start at the data).
    pub early_stop: f64,
    /// Route for S_full: `a` or `b`.
    pub route: String,
    /// beta-tilde's degenerate last step: `clip` or `early-stop`.
    pub beta_tilde_remedy: String,
    /// Slope-fit window `[lo, hi]` (default: 128..1024 clipped to the T values, or the last 4).
    pub window: Option<Vec<f64>>,
    /// Cubature rule: `auto`, `lattice`, `qmc`.
    pub rule: String,
    /// Lattice spacing as a fraction of the smallest component standard deviation.
    pub h_frac: f64,
    /// QMC points per component per shift.
    pub qmc_points: usize,
    /// QMC random shifts (>= 2).
    pub qmc_shifts: usize,
    /// Monte Carlo draws of x_t per step for `hutchinson-<M>`.
    pub hutchinson_points: usize,
    /// Seed of the QMC shifts and of the `hutchinson-<M>` Monte Carlo.
    pub seed: u64,
    /// Model chain kernel: `ddpm` (ancestral) or `ddim` (OCM-DDIM; families analytic, diag,
    /// full; early stop 0).
    pub kernel: String,
    /// Every step's term per family and T in the JSON (`steps`) and a figure of them along
    /// the chain (`<stem>_steps`).
    pub per_step: bool,
}

impl Default for PathKlStudy {
    fn default() -> Self {
        Self {
            data: "mog40".into(),
            schedule: "vp-linear".into(),
            num_train_timesteps: None,
            beta_start: None,
            beta_end: None,
            timestep_spacing: None,
            steps_offset: None,
            families: ["beta", "beta-tilde", "analytic", "diag", "full"]
                .map(String::from)
                .to_vec(),
            steps: vec![8, 16, 32, 64, 128, 256, 512, 1024],
            early_stop: 0.0,
            route: "a".into(),
            beta_tilde_remedy: "clip".into(),
            window: None,
            rule: "auto".into(),
            h_frac: LatticeParams::default().h_frac,
            qmc_points: QmcParams::default().points,
            qmc_shifts: QmcParams::default().shifts,
            hutchinson_points: 4000,
            seed: QmcParams::default().seed,
            kernel: "ddpm".into(),
            per_step: false,
        }
    }
}

/// The families split into the core families of the sweep and the hutchinson-M probes.
struct Families {
    core: Vec<Family>,
    hutch: Vec<usize>,
}

/// One T's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cell {
    #[serde(rename = "T")]
    t: usize,
    dim: usize,
    rule: String,
    beta_tilde_last_step: String,
    terminal_kl: Est,
    entropy_start: Est,
    entropy_end: Est,
    rows: Vec<Row>,
    hutchinson: Vec<Row>,
    /// Per-step terms (`per-step`), families in order, then i.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    steps: Vec<StepTerm>,
}

/// One step's term of one family (`per-step`): the step (s, t) = (t_{i-1}, t_i), the term
/// with its error, and its two parts (S_full's and the covariance part).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StepTerm {
    family: String,
    i: usize,
    s: f64,
    t: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    term: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    err: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    full: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    full_err: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    offset: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    offset_err: f64,
}

/// An estimate that may be non-finite.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Est {
    #[serde(with = "crate::numeric::nonfinite")]
    value: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    err: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    family: String,
    #[serde(with = "crate::numeric::nonfinite")]
    s: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    err: f64,
}

/// `[lo, hi]` of the default slope window: 128..1024 if it holds 3 T values, else the last 4.
#[must_use]
pub fn default_window(steps: &[usize]) -> [f64; 2] {
    let mut s: Vec<usize> = steps.to_vec();
    s.sort_unstable();
    let in_default: Vec<usize> = s
        .iter()
        .copied()
        .filter(|&t| (128..=1024).contains(&t))
        .collect();
    if in_default.len() >= 3 {
        return [
            in_default[0] as f64,
            *in_default.last().unwrap_or(&1024) as f64,
        ];
    }
    let tail = &s[s.len().saturating_sub(4)..];
    match (tail.first(), tail.last()) {
        (Some(&a), Some(&b)) => [a as f64, b as f64],
        _ => [1.0, 1.0],
    }
}

impl PathKlStudy {
    fn families_split(&self) -> Result<Families, ParamError> {
        let mut core = Vec::new();
        let mut hutch = Vec::new();
        for name in self.families.iter().map(|s| s.trim()) {
            if let Some(parsed) = crate::kernel::family::hutchinson_probes(name) {
                match parsed {
                    Ok(m) if m >= 1 => hutch.push(m),
                    _ => {
                        return Err(ParamError::new(
                            "families",
                            "hutchinson-<M> with an integer M >= 1",
                            name,
                        ))
                    }
                }
            } else {
                core.push(name.to_string());
            }
        }
        if !hutch.is_empty() && !core.iter().any(|c| c == "diag") {
            core.push("diag".into());
        }
        let core = Family::parse_list(&core.join(",")).map_err(|e| {
            ParamError::new(
                "families",
                "beta, beta-tilde, analytic, diag, full or hutchinson-<M>",
                e,
            )
        })?;
        Ok(Families { core, hutch })
    }

    fn kernel(&self) -> Result<KernelKind, ParamError> {
        KernelKind::from_name(&self.kernel)
            .map_err(|e| ParamError::new("kernel", "ddpm or ddim", e))
    }

    fn remedy(&self) -> Result<BetaTildeRemedy, ParamError> {
        BetaTildeRemedy::from_name(&self.beta_tilde_remedy)
            .map_err(|e| ParamError::new("beta-tilde-remedy", "clip or early-stop", e))
    }

    /// The early stop in force: `early-stop` with the `early-stop` remedy and no delta is 1e-3.
    ///
    /// # Errors
    /// An unknown remedy.
    pub fn effective_early_stop(&self) -> Result<f64, ParamError> {
        Ok(
            if self.remedy()? == BetaTildeRemedy::EarlyStop && self.early_stop == 0.0 {
                1e-3
            } else {
                self.early_stop
            },
        )
    }

    /// The T values, ascending and without repeats.
    #[must_use]
    pub fn sorted_steps(&self) -> Vec<usize> {
        let mut s = self.steps.clone();
        s.sort_unstable();
        s.dedup();
        s
    }

    /// The slope window in force.
    #[must_use]
    pub fn window(&self) -> [f64; 2] {
        match &self.window {
            Some(w) if w.len() == 2 => [w[0], w[1]],
            _ => default_window(&self.sorted_steps()),
        }
    }

    /// The binary's default output stem:
    /// `path_kl_<data>[_<schedule>][_es<delta>][_route_b][_ddim]`.
    ///
    /// # Errors
    /// An unknown schedule or remedy.
    pub fn default_stem(&self) -> Result<String, ParamError> {
        let mut stem = format!("path_kl_{}", crate::study::data_label(&self.data));
        self.schedule()?;
        if self.schedule != "vp-linear" {
            stem.push_str(&format!(
                "_{}",
                crate::study::schedule_label(&self.schedule)
            ));
        }
        if let Some(s) = &self.timestep_spacing {
            stem.push_str(&format!("_{}", crate::study::schedule_label(s)));
        }
        let es = self.effective_early_stop()?;
        if es > 0.0 {
            stem.push_str(&format!("_es{es}"));
        }
        if self.route == "b" {
            stem.push_str("_route_b");
        }
        if self.kernel()? == KernelKind::Ddim {
            stem.push_str("_ddim");
        }
        Ok(stem)
    }

    /// The diffusers options of the schedule keys.
    #[must_use]
    pub fn schedule_options(&self) -> DiffusersOptions {
        DiffusersOptions {
            num_train_timesteps: self.num_train_timesteps,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
            timestep_spacing: self.timestep_spacing.clone(),
            steps_offset: self.steps_offset,
        }
    }

    /// The schedule of the `schedule` key and its options.
    ///
    /// # Errors
    /// A [`ParamError`] naming the key at fault.
    pub fn schedule(&self) -> Result<Schedule, ParamError> {
        crate::study::schedule_param(&self.schedule, &self.schedule_options())
    }

    /// The grids of the sweep, T ascending (the `grid` key; `path-kl --print-grid`).
    ///
    /// # Errors
    /// The schedule's, and a T it cannot make a grid of (named `steps`).
    pub fn grids(&self) -> Result<Vec<GridRecord>, ParamError> {
        grid_records(&self.schedule()?, &self.steps, self.effective_early_stop()?)
            .map_err(|e| ParamError::new("steps", "T values the schedule and early stop allow", e))
    }

    fn sweep_params(&self, fams: &Families) -> Result<PathKlParams, ParamError> {
        Ok(PathKlParams {
            families: fams.core.clone(),
            route: match self.route.as_str() {
                "a" => Route::A,
                "b" => Route::B,
                other => return Err(ParamError::new("route", "a or b", other)),
            },
            remedy: self.remedy()?,
            early_stop: self.effective_early_stop()?,
            rule: rule_choice(&self.rule)?,
            lattice: LatticeParams {
                h_frac: self.h_frac,
                ..LatticeParams::default()
            },
            qmc: QmcParams {
                points: self.qmc_points,
                shifts: self.qmc_shifts,
                seed: self.seed,
            },
            kernel: self.kernel()?,
            per_step: self.per_step,
            ..PathKlParams::default()
        })
    }

    fn load(&self) -> Result<crate::data::mixture::Mixture, ParamError> {
        load_data(&self.data)
    }
}

/// The cubature rule of a `rule` key: `auto`, `lattice` or `qmc`.
pub(crate) fn rule_choice(rule: &str) -> Result<RuleChoice, ParamError> {
    match rule {
        "auto" => Ok(RuleChoice::Auto),
        "lattice" => Ok(RuleChoice::Lattice),
        "qmc" => Ok(RuleChoice::Qmc),
        other => Err(ParamError::new("rule", "auto, lattice or qmc", other)),
    }
}

/// The data of a `data` key: a preset or a mixture JSON file.
pub(crate) fn load_data(data: &str) -> Result<crate::data::mixture::Mixture, ParamError> {
    crate::data::presets::load(data).map_err(|e| {
        ParamError::new(
            "data",
            "a preset (mog40, mog40-unit, grid9, aniso2, mix6) or a valid mixture JSON file",
            e,
        )
    })
}

impl StudyKind for PathKlStudy {
    fn kind(&self) -> &'static str {
        "path-kl"
    }

    fn validate(&self) -> Result<(), ParamError> {
        crate::study::ensure_steps(&self.steps)?;
        crate::study::ensure_early_stop(self.early_stop)?;
        crate::study::ensure_h_frac(self.h_frac)?;
        ensure(self.qmc_shifts >= 2, "qmc-shifts", ">= 2", self.qmc_shifts)?;
        ensure(self.qmc_points >= 1, "qmc-points", ">= 1", self.qmc_points)?;
        if let Some(w) = &self.window {
            ensure(
                w.len() == 2 && w[0].is_finite() && w[1].is_finite() && w[0] > 0.0 && w[0] < w[1],
                "window",
                "lo,hi with 0 < lo < hi",
                w,
            )?;
        }
        let fams = self.families_split()?;
        if !fams.hutch.is_empty() {
            ensure(
                self.hutchinson_points >= 2,
                "hutchinson-points",
                ">= 2",
                self.hutchinson_points,
            )?;
        }
        self.remedy()?;
        self.grids()?;
        if self.kernel()? == KernelKind::Ddim {
            ensure(
                fams.hutch.is_empty(),
                "families",
                "analytic, diag or full with kernel ddim (hutchinson-<M> is DDPM only)",
                &self.families,
            )?;
            ensure(
                !fams
                    .core
                    .iter()
                    .any(|f| matches!(f, Family::Beta | Family::BetaTilde)),
                "families",
                "analytic, diag or full with kernel ddim (beta and beta-tilde give Sigma_0 = 0: plain DDIM, deterministic, infinite KL)",
                &self.families,
            )?;
            ensure(
                self.effective_early_stop()? == 0.0,
                "early-stop",
                "0 with kernel ddim (its x_0 is the data at t = 0)",
                self.early_stop,
            )?;
        }
        self.sweep_params(&fams)?;
        self.load()?;
        Ok(())
    }

    fn cells(&self) -> Result<Vec<String>, StudyError> {
        Ok(self
            .sorted_steps()
            .iter()
            .map(|t| format!("T={t}"))
            .collect())
    }

    fn run_cells(&self, indices: &[usize], obs: &dyn Observer) -> Result<Vec<Value>, StudyError> {
        if indices.is_empty() {
            return Ok(Vec::new());
        }
        let all = self.sorted_steps();
        let steps: Vec<usize> = indices.iter().map(|&i| all[i]).collect();
        let fams = self.families_split()?;
        let params = self.sweep_params(&fams)?;
        let q0 = self.load()?;
        let schedule = self.schedule()?;
        let labels: Vec<String> = steps.iter().map(|t| format!("T={t}")).collect();
        for (&i, l) in indices.iter().zip(&labels) {
            obs.cell_started(i, l);
        }
        let report = path_kl_sweep(&q0, &schedule, &steps, &params, &|d, t| obs.inner(d, t))?;
        let range = crate::sampler::clip_range_of(&q0);
        let mut out = Vec::with_capacity(steps.len());
        for ((&i, l), &t) in indices.iter().zip(&labels).zip(&steps) {
            let rows: Vec<Row> = fams
                .core
                .iter()
                .filter_map(|&f| report.get(f, t))
                .map(|r| Row {
                    family: r.family.name().to_string(),
                    s: r.s.value,
                    err: r.s.err,
                })
                .collect();
            let mut hutchinson = Vec::new();
            for &m in &fams.hutch {
                let mc = HutchinsonMc {
                    probes: m,
                    points: self.hutchinson_points,
                    seed: self.seed,
                    clip_range: Some(range),
                };
                let ex = hutchinson_excess(&q0, &schedule, t, params.early_stop, &mc)?;
                let d = report.get(Family::Diag, t).map(|r| r.s).ok_or_else(|| {
                    StudyError::Merge(format!("path-kl: S_diag missing at T = {t}"))
                })?;
                // S_diag + the Monte Carlo excess (independent errors add in quadrature).
                let h = hutchinson_path_kl(d, ex);
                hutchinson.push(Row {
                    family: format!("hutchinson-{m}"),
                    s: h.value,
                    err: h.err,
                });
            }
            let est = |e: crate::quadrature::Estimate| Est {
                value: e.value,
                err: e.err,
            };
            let steps_here: Vec<StepTerm> = report
                .steps
                .iter()
                .filter(|r| r.steps == t)
                .map(|r| StepTerm {
                    family: r.family.name().to_string(),
                    i: r.index,
                    s: r.time_s,
                    t: r.time_t,
                    term: r.term.value,
                    err: r.term.err,
                    full: r.full.value,
                    full_err: r.full.err,
                    offset: r.offset.value,
                    offset_err: r.offset.err,
                })
                .collect();
            out.push(to_cell(
                "path-kl",
                &Cell {
                    t,
                    dim: report.dim,
                    rule: report.rule.clone(),
                    beta_tilde_last_step: report.beta_tilde_last_step.clone(),
                    terminal_kl: est(report.terminal_kl),
                    entropy_start: est(report.entropy_start),
                    entropy_end: est(report.entropy_end),
                    rows,
                    hutchinson,
                    steps: steps_here,
                },
            )?);
            obs.cell_done(i, l);
        }
        Ok(out)
    }

    fn assemble(&self, cells: &[Value], info: &RunInfo) -> Result<Assembled, StudyError> {
        let cells: Vec<Cell> = cells
            .iter()
            .map(|c| from_cell("path-kl", c))
            .collect::<Result<_, _>>()?;
        let first = cells
            .first()
            .ok_or_else(|| StudyError::Merge("path-kl: no cells".into()))?;
        let fams = self.families_split()?;
        let schedule = self.schedule()?;
        let remedy = self.remedy()?;
        let early_stop = self.effective_early_stop()?;
        let window = self.window();
        let last_step = if cells.iter().any(|c| c.beta_tilde_last_step == "clipped") {
            "clipped".to_string()
        } else {
            first.beta_tilde_last_step.clone()
        };
        // Series per family, T ascending: core families, then hutchinson-M.
        let mut names: Vec<String> = fams.core.iter().map(|f| f.name().to_string()).collect();
        let n_core = names.len();
        names.extend(fams.hutch.iter().map(|m| format!("hutchinson-{m}")));
        let series: Vec<Vec<(usize, Row)>> = names
            .iter()
            .enumerate()
            .map(|(k, name)| {
                cells
                    .iter()
                    .filter_map(|c| {
                        let list = if k < n_core { &c.rows } else { &c.hutchinson };
                        list.iter()
                            .find(|r| &r.family == name)
                            .map(|r| (c.t, r.clone()))
                    })
                    .collect()
            })
            .collect();
        let fits: Vec<Result<SlopeFit, String>> = series
            .iter()
            .map(|rows| {
                let x: Vec<f64> = rows.iter().map(|r| r.0 as f64).collect();
                let y: Vec<f64> = rows.iter().map(|r| r.1.s).collect();
                fit_loglog(&x, &y, window).map_err(|e| e.to_string())
            })
            .collect();
        let label = crate::study::data_label(&self.data);
        let route = if self.route == "b" { "b" } else { "a" };
        let mut results = Vec::new();
        for (k, rows) in series.iter().enumerate() {
            for (t, r) in rows {
                if k < n_core {
                    results.push(json!({"family": r.family, "T": t, "S": r.s, "err": r.err}));
                } else {
                    let s = if r.s.is_finite() {
                        json!(r.s)
                    } else {
                        json!("inf")
                    };
                    results.push(json!({"family": r.family, "T": t, "S": s, "err": r.err,
                        "method": "S_diag + Monte Carlo excess over x_t and probes"}));
                }
            }
        }
        let range = crate::sampler::clip_range_of(&self.load()?);
        let hutch = !fams.hutch.is_empty();
        let steps_json: Vec<Value> = cells
            .iter()
            .flat_map(|c| {
                c.steps.iter().map(move |r| {
                    json!({"family": r.family, "T": c.t, "i": r.i, "s": r.s, "t": r.t,
                        "term": r.term, "err": r.err, "full": r.full, "full_err": r.full_err,
                        "offset": r.offset, "offset_err": r.offset_err})
                })
            })
            .collect();
        let mut doc = json!({
            "data": label,
            "schedule": schedule.name(),
            "kernel": self.kernel()?.name(),
            "dim": first.dim,
            "route": route,
            "rule": first.rule,
            "early_stop": early_stop,
            "beta_tilde_remedy": remedy.name(),
            "beta_tilde_last_step": last_step,
            "terminal_kl": first.terminal_kl.value,
            "terminal_kl_err": first.terminal_kl.err,
            "entropy_start": {"value": first.entropy_start.value, "err": first.entropy_start.err},
            "entropy_end": {"value": first.entropy_end.value, "err": first.entropy_end.err},
            "results": results,
            "grid": self.grids()?,
            "slopes": names.iter().zip(&fits).filter_map(|(f, s)| s.as_ref().ok().map(|s| json!({"family": f, "window": s.window, "slope": s.slope, "ci95": s.ci95, "stderr": s.stderr, "n": s.n}))).collect::<Vec<_>>(),
            "hutchinson_points": if hutch { json!(self.hutchinson_points) } else { Value::Null },
            "hutchinson_clip_range": if hutch { json!([range.0, range.1]) } else { Value::Null },
            "threads": info.threads,
            "wall_time_s": info.wall_time_s,
            "covlab_version": env!("CARGO_PKG_VERSION"),
        });
        if self.per_step {
            doc["steps"] = json!(steps_json);
        }
        let table = self.table(&cells, &names, n_core, &series, &fits, &last_step, info);
        let figure = self.figure(
            &label, &schedule, &names, n_core, &series, &fits, first, &last_step, early_stop,
        );
        let mut figures = vec![(String::new(), Figure::Plot(figure))];
        if self.per_step {
            if let Some(last) = cells.last() {
                figures.push((
                    "_steps".to_string(),
                    Figure::Plot(self.steps_figure(&label, &schedule, &fams.core, last)),
                ));
            }
        }
        Ok(Assembled {
            doc,
            figures,
            table,
        })
    }

    fn figures(&self) -> Vec<FigureName> {
        let mut out = vec![FigureName::plot("")];
        if self.per_step {
            out.push(FigureName::plot("_steps"));
        }
        out
    }

    fn seeds(&self) -> Vec<u64> {
        vec![self.seed]
    }
}
