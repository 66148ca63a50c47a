//! Study kind `learned-curve`: the learning curve of the covariance heads against the exact
//! score, judged at known truth (`learned curve` is a CLI over this).
//!
//! For each head kind `k` and iteration budget `N`, a head is trained from the same seed with
//! `N` AdamW iterations (its cosine learning-rate decay spans the `N`: each budget is its own
//! run, as a head trained for `N` iterations would be) and evaluated in memory: the exact path
//! KL of its chain at each T, split into `S_full`, the mean part (0: the mean is the exact
//! score's) and the covariance part `sum_steps E_{q_t}[KL(N(m, C) || N(m, Sigma_k))]`, and
//! its diagonal error `E_{q_t}[(1/D) ||diag Sigma_k - diag C||^2]` along t, for the one-step
//! kernels of the smallest T's grid (relative to `E (1/D) ||diag C||^2`). The exact
//! oracles (`oracles`, e.g. `analytic` and `diag`) are evaluated once as the ceilings: the
//! covariance part of `diag` is the least a diagonal head can reach.
//!
//! Whether a gap between a head and the exact diagonal is the method or the budget is then
//! read off the curve: a gap that closes as `N` grows is the budget's.
//!
//! Cells: the oracles, then one per (head, budget), in that order; every cell is
//! independent of the others (its own training run from `seed`), so shards merge exactly.
//! Training is reproducible on a fixed thread count ([`crate::learned::train`]).

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{LearnedEvalStudy, LearnedTrainStudy};
use crate::learned::{CovErrorRow, EvalRow, HeadKind, Method, TrainParams};
use crate::plot::{Plot, Series, XScale};
use crate::study::{
    ensure, from_cell, to_cell, Assembled, Figure, FigureName, Observer, ParamError, RunInfo,
    StudyError, StudyKind,
};

const KIND: &str = "learned-curve";

/// Parameters of a `learned-curve` study (training keys as `learned-train`'s, evaluation
/// keys as `learned-eval`'s; `data` has no default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LearnedCurveStudy {
    /// Data set: a 2-D preset (mog40, mog40-unit, grid9) or digits8 (MLP heads).
    pub data: String,
    /// Head kinds: ocm, npr, sn, iddpm (each trained against the exact score).
    pub heads: Vec<String>,
    /// Iteration budgets (each a training run of its own).
    pub iterations: Vec<usize>,
    /// The exact oracles evaluated beside the heads (e.g. analytic, diag, full).
    pub oracles: Vec<String>,
    /// The T values of the path KL.
    pub steps: Vec<usize>,
    /// Schedule.
    pub schedule: String,
    /// Early stop: the grids start at t_0 = delta (0: at the data).
    pub early_stop: f64,
    /// Lattice spacing of `S_full` (fraction of the smallest component sd of q_t).
    pub h_frac: f64,
    /// Rule of the mean and covariance parts: `qmc` or `lattice` (D <= 2).
    pub rule: String,
    /// QMC nodes per time of the finest grid.
    pub qmc_nodes: usize,
    /// D > 2: QMC points per component and shift of `S_full`.
    pub qmc_points: usize,
    /// Batch size of the training.
    pub batch: usize,
    /// Peak learning rate (cosine decay to 0 over each budget).
    pub lr: f64,
    /// Seed of the training (initialisation and draws) and of the evaluation.
    pub seed: u64,
    /// Training seeds (`None`: `seed` alone): every (head, budget) is trained once per seed
    /// and evaluated with `seed`; the figures show the mean over the seeds with its standard
    /// error, the JSON each run and, with two or more seeds, their spread (`seed_spread`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_seeds: Option<Vec<u64>>,
    /// Rademacher probes per row of the OCM objective (M).
    pub probes: usize,
    /// Time weight of the ocm objective: `normalized` or `paper`.
    pub ocm_weight: String,
    /// Hidden width of the heads.
    pub hidden: usize,
    /// Hidden layers of the heads.
    pub layers: usize,
    /// Fourier frequencies of the time input.
    pub fourier: usize,
}

impl Default for LearnedCurveStudy {
    fn default() -> Self {
        let t = TrainParams::default();
        let e = LearnedEvalStudy::default();
        Self {
            data: String::new(),
            heads: vec!["ocm".into(), "npr".into()],
            iterations: vec![2_000, 5_000, 10_000, 20_000, 50_000],
            oracles: vec!["analytic".into(), "diag".into()],
            steps: vec![10, 100],
            schedule: e.schedule,
            early_stop: 1e-3,
            h_frac: e.h_frac,
            rule: e.rule,
            qmc_nodes: e.qmc_nodes,
            qmc_points: e.qmc_points,
            batch: t.batch,
            lr: t.lr,
            seed: t.seed,
            train_seeds: None,
            probes: t.probes,
            ocm_weight: "normalized".into(),
            hidden: t.hidden,
            layers: t.layers,
            fourier: t.fourier,
        }
    }
}

/// A cell: the oracles (`head` = `None`) or one head at one budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CellSpec {
    Oracles,
    Head {
        kind: HeadKind,
        iterations: usize,
        seed: u64,
    },
}

/// A computed cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CurveCell {
    /// The head kind, `None` for the oracles' cell.
    head: Option<String>,
    /// Training iterations (0 for the oracles).
    iterations: usize,
    /// Training seed (`None` in cells written before the key: `seed`).
    #[serde(default)]
    train_seed: Option<u64>,
    /// Training wall time, rate and final loss (`None` for the oracles).
    train: Option<TrainLog>,
    /// The path-KL rows (per method and T).
    rows: Vec<EvalRow>,
    /// The diagonal error per t (diagonal methods).
    cov_error: Vec<CovErrorRow>,
    /// Wall time of the evaluation.
    eval_wall_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainLog {
    wall_s: f64,
    its_per_s: f64,
    final_loss: f64,
}

impl LearnedCurveStudy {
    fn head_kinds(&self) -> Result<Vec<HeadKind>, ParamError> {
        let mut out = Vec::new();
        for h in &self.heads {
            let k = HeadKind::from_name(h.trim()).ok_or_else(|| {
                ParamError::new(
                    "heads",
                    "ocm, npr, sn, iddpm",
                    format!("unknown head `{h}`"),
                )
            })?;
            if out.contains(&k) {
                return Err(ParamError::new("heads", "distinct head kinds", h.clone()));
            }
            out.push(k);
        }
        ensure(!out.is_empty(), "heads", "at least one head kind", "[]")?;
        Ok(out)
    }

    fn budgets(&self) -> Result<Vec<usize>, ParamError> {
        ensure(
            !self.iterations.is_empty(),
            "iterations",
            "at least one budget",
            "[]",
        )?;
        crate::study::ensure_unique("iterations", &self.iterations)?;
        Ok(self.iterations.clone())
    }

    /// The training seeds, `[seed]` by default.
    fn train_seed_list(&self) -> Vec<u64> {
        self.train_seeds.clone().unwrap_or_else(|| vec![self.seed])
    }

    /// The training settings of one head at `iterations` from `seed` as a `learned-train`
    /// study.
    fn trainer(&self, kind: HeadKind, iterations: usize, seed: u64) -> LearnedTrainStudy {
        LearnedTrainStudy {
            data: self.data.clone(),
            models: vec![kind.name().into()],
            scores: vec!["exact".into()],
            head_iterations: iterations,
            batch: self.batch,
            lr: self.lr,
            seed,
            probes: self.probes,
            ocm_weight: self.ocm_weight.clone(),
            hidden: self.hidden,
            layers: self.layers,
            fourier: self.fourier,
            ..LearnedTrainStudy::default()
        }
    }

    /// The evaluation of `methods` as a `learned-eval` study (exact score, no sampling).
    fn evaluator(&self, methods: Vec<String>) -> LearnedEvalStudy {
        LearnedEvalStudy {
            data: self.data.clone(),
            score: "exact".into(),
            methods: Some(methods),
            steps: self.steps.clone(),
            schedule: self.schedule.clone(),
            mmd_steps: Some(Vec::new()),
            h_frac: self.h_frac,
            early_stop: self.early_stop,
            rule: self.rule.clone(),
            qmc_points: self.qmc_points,
            qmc_nodes: self.qmc_nodes,
            seed: self.seed,
            ..LearnedEvalStudy::default()
        }
    }

    /// The grid of the diagonal-error curve: the smallest T's, whose one-step kernels are
    /// the chain's coarsest (on a fine grid the kernel variance `(b^2 h + b) / a^2` hides the
    /// error of `h` behind the step's `b`: on the 1000-step grid a head's relative error is
    /// ~1e-5 at any budget).
    fn curve_grid(&self) -> usize {
        self.steps.iter().copied().min().unwrap_or(10)
    }

    fn specs(&self) -> Result<Vec<CellSpec>, ParamError> {
        let kinds = self.head_kinds()?;
        let budgets = self.budgets()?;
        let seeds = self.train_seed_list();
        let mut out = vec![CellSpec::Oracles];
        for &kind in &kinds {
            for &iterations in &budgets {
                for &seed in &seeds {
                    out.push(CellSpec::Head {
                        kind,
                        iterations,
                        seed,
                    });
                }
            }
        }
        Ok(out)
    }

    fn label_of(spec: CellSpec) -> String {
        match spec {
            CellSpec::Oracles => "oracles".into(),
            CellSpec::Head {
                kind,
                iterations,
                seed,
            } => format!("{} {iterations} its seed {seed}", kind.name()),
        }
    }

    /// Every key checked: the head kinds and budgets, each training run's settings (as
    /// `learned-train` checks them), the oracles and the evaluation (as `learned-eval`).
    fn check(&self) -> Result<(), ParamError> {
        let kinds = self.head_kinds()?;
        let budgets = self.budgets()?;
        if let Some(seeds) = &self.train_seeds {
            ensure(!seeds.is_empty(), "train-seeds", "at least one seed", "[]")?;
            crate::study::ensure_unique("train-seeds", seeds)?;
        }
        for &kind in &kinds {
            for &n in &budgets {
                self.trainer(kind, n, self.seed)
                    .validate()
                    .map_err(|mut e| {
                        if e.key == "head-iterations" {
                            e.key = "iterations";
                        } else if e.key == "models" {
                            e.key = "heads";
                        }
                        e
                    })?;
            }
        }
        ensure(
            !self.oracles.is_empty(),
            "oracles",
            "at least one method",
            "[]",
        )?;
        for o in &self.oracles {
            match Method::from_name(o) {
                Ok(Method::Family(_)) => {}
                _ => {
                    return Err(ParamError::new(
                        "oracles",
                        "exact covariance families (beta, beta-tilde, analytic, diag, full)",
                        o.clone(),
                    ))
                }
            }
        }
        let mut all = self.oracles.clone();
        all.extend(kinds.iter().map(|k| k.name().to_string()));
        let eval = self.evaluator(all);
        // The evaluation's own plan (steps, schedule, rule, early stop, ...); `setup` does
        // not read checkpoints.
        eval.plan_only()
    }

    fn compute(&self, spec: CellSpec, obs: &dyn Observer) -> Result<CurveCell, StudyError> {
        match spec {
            CellSpec::Oracles => {
                let start = Instant::now();
                let report = self.evaluator(self.oracles.clone()).evaluate_in_memory(
                    &[],
                    self.curve_grid(),
                    obs,
                )?;
                Ok(CurveCell {
                    head: None,
                    iterations: 0,
                    train_seed: None,
                    train: None,
                    rows: report.rows,
                    cov_error: report.cov_error,
                    eval_wall_s: start.elapsed().as_secs_f64(),
                })
            }
            CellSpec::Head {
                kind,
                iterations,
                seed,
            } => {
                obs.phase(&format!(
                    "train {} ({iterations} its, seed {seed})",
                    kind.name()
                ));
                let (head, info) = self
                    .trainer(kind, iterations, seed)
                    .train_exact_head(kind, obs)?;
                obs.phase(&format!("evaluate {} ({iterations} its)", kind.name()));
                let start = Instant::now();
                let report = self
                    .evaluator(vec![kind.name().into()])
                    .evaluate_in_memory(&[&head], self.curve_grid(), obs)?;
                Ok(CurveCell {
                    head: Some(kind.name().into()),
                    iterations,
                    train_seed: Some(seed),
                    train: Some(TrainLog {
                        wall_s: info.wall_s,
                        its_per_s: info.its_per_s,
                        final_loss: info.final_loss,
                    }),
                    rows: report.rows,
                    cov_error: report.cov_error,
                    eval_wall_s: start.elapsed().as_secs_f64(),
                })
            }
        }
    }
}

/// The covariance part of one (head, budget, T) over the training seeds.
struct Spread {
    head: String,
    iterations: usize,
    steps: usize,
    n: usize,
    mean: f64,
    /// Sample standard deviation over the seeds (0 for one seed).
    sd: f64,
    /// `sd / sqrt(n)`, or the evaluation's error estimate for one seed.
    se: f64,
    min: f64,
    max: f64,
    path_kl_mean: f64,
    /// Mean over the seeds of the mean relative diagonal error.
    rel_mse: Option<f64>,
}

impl LearnedCurveStudy {
    /// Per head, budget and T (in the parameters' order): the covariance part's mean over the
    /// training seeds, its spread and standard error.
    fn seed_spread(&self, heads: &[CurveCell]) -> Vec<Spread> {
        let mut steps = self.steps.clone();
        steps.sort_unstable();
        steps.dedup();
        let mut out = Vec::new();
        for h in &self.heads {
            let h = h.trim();
            for &n_its in &self.iterations {
                let runs: Vec<&CurveCell> = heads
                    .iter()
                    .filter(|c| c.head.as_deref() == Some(h) && c.iterations == n_its)
                    .collect();
                let rel: Vec<f64> = runs
                    .iter()
                    .filter_map(|c| mean_cov_error(&c.cov_error, h).map(|m| m.1))
                    .collect();
                for &t in &steps {
                    let rows: Vec<&EvalRow> = runs
                        .iter()
                        .filter_map(|c| c.rows.iter().find(|r| r.steps == t))
                        .collect();
                    if rows.is_empty() {
                        continue;
                    }
                    let n = rows.len();
                    let v: Vec<f64> = rows.iter().map(|r| r.cov_part.value).collect();
                    let mean = v.iter().sum::<f64>() / n as f64;
                    let sd = if n > 1 {
                        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
                    } else {
                        0.0
                    };
                    out.push(Spread {
                        head: h.to_string(),
                        iterations: n_its,
                        steps: t,
                        n,
                        mean,
                        sd,
                        se: if n > 1 {
                            sd / (n as f64).sqrt()
                        } else {
                            rows[0].cov_part.err
                        },
                        min: v.iter().copied().fold(f64::INFINITY, f64::min),
                        max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        path_kl_mean: rows.iter().map(|r| r.path_kl.value).sum::<f64>() / n as f64,
                        rel_mse: (!rel.is_empty())
                            .then(|| rel.iter().sum::<f64>() / rel.len() as f64),
                    });
                }
            }
        }
        out
    }
}

/// A path-KL row as JSON (the keys of `learned-eval`'s rows).
fn row_json(r: &EvalRow) -> Value {
    json!({
        "method": r.method, "T": r.steps,
        "path_kl": r.path_kl.value, "err": r.path_kl.err,
        "mean_part": r.mean_part.value, "mean_part_err": r.mean_part.err,
        "cov_part": r.cov_part.value, "cov_part_err": r.cov_part.err,
        "s_full": r.s_full.value, "s_full_err": r.s_full.err,
    })
}

/// The mean over the curve's times of the diagonal error and of its relative value
/// (`None` when the method has no curve).
fn mean_cov_error(rows: &[CovErrorRow], method: &str) -> Option<(f64, f64)> {
    let pts: Vec<_> = rows.iter().filter(|c| c.method == method).collect();
    if pts.is_empty() {
        return None;
    }
    let n = pts.len() as f64;
    Some((
        pts.iter().map(|c| c.mse).sum::<f64>() / n,
        pts.iter().map(|c| c.rel_mse).sum::<f64>() / n,
    ))
}

impl StudyKind for LearnedCurveStudy {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn validate(&self) -> Result<(), ParamError> {
        self.check()
    }

    fn cells(&self) -> Result<Vec<String>, StudyError> {
        self.check()?;
        Ok(self.specs()?.into_iter().map(Self::label_of).collect())
    }

    fn run_cells(&self, indices: &[usize], obs: &dyn Observer) -> Result<Vec<Value>, StudyError> {
        self.check()?;
        let specs = self.specs()?;
        let mut out = Vec::with_capacity(indices.len());
        for &i in indices {
            let label = Self::label_of(specs[i]);
            obs.cell_started(i, &label);
            out.push(to_cell(KIND, &self.compute(specs[i], obs)?)?);
            obs.cell_done(i, &label);
        }
        Ok(out)
    }

    fn assemble(&self, cells: &[Value], info: &RunInfo) -> Result<Assembled, StudyError> {
        let specs = self.specs()?;
        if specs.len() != cells.len() {
            return Err(StudyError::Case {
                case: KIND.into(),
                reason: format!("{} cells for {} specs", cells.len(), specs.len()),
            });
        }
        let cells: Vec<CurveCell> = cells
            .iter()
            .map(|c| from_cell(KIND, c))
            .collect::<Result<_, _>>()?;
        let (oracles, heads) = cells.split_first().ok_or_else(|| StudyError::Case {
            case: KIND.into(),
            reason: "no oracle cell".into(),
        })?;
        let mut table = format!(
            "{} with the exact score, {}, early stop {:e}: covariance part of the exact path KL (+- err)\n",
            self.data, self.schedule, self.early_stop
        );
        for r in &oracles.rows {
            table += &format!(
                "{:>10} {:>7}  T = {:>4}: cov part {:.5} +- {:.1e}\n",
                r.method, "exact", r.steps, r.cov_part.value, r.cov_part.err
            );
        }
        let many = self.train_seed_list().len() > 1;
        let mut curve = Vec::new();
        for c in heads {
            let method = c.head.clone().unwrap_or_default();
            let seed = c.train_seed.unwrap_or(self.seed);
            let (mse, rel) = mean_cov_error(&c.cov_error, &method).unwrap_or((f64::NAN, f64::NAN));
            let who = if many {
                format!("{:>7} s{seed:<3}", c.iterations)
            } else {
                format!("{:>7}", c.iterations)
            };
            for r in &c.rows {
                table += &format!(
                    "{:>10} {who}  T = {:>4}: cov part {:.5} +- {:.1e}   mean diag mse {:.3e} (rel {:.3e})\n",
                    method, r.steps, r.cov_part.value, r.cov_part.err, mse, rel
                );
            }
            let train = c.train.as_ref();
            curve.push(json!({
                "head": method,
                "iterations": c.iterations,
                "train_seed": seed,
                "train": {
                    "wall_s": train.map(|t| t.wall_s),
                    "its_per_s": train.map(|t| t.its_per_s),
                    "final_loss": train.map(|t| t.final_loss),
                },
                "path_kl_wall_s": c.eval_wall_s,
                "rows": c.rows.iter().map(row_json).collect::<Vec<_>>(),
                "diag_mse_mean": mse,
                "diag_rel_mse_mean": rel,
                "cov_error": c.cov_error.iter().map(|e| json!({
                    "t": e.t, "ln_abar": e.ln_abar, "mse": e.mse, "rel_mse": e.rel_mse,
                })).collect::<Vec<_>>(),
            }));
        }
        let spread = self.seed_spread(heads);
        if many {
            for p in &spread {
                table += &format!(
                    "{:>10} {:>7}  T = {:>4}: cov part over {} seeds: mean {:.5} +- {:.1e} (s.e.), min {:.5}, max {:.5}\n",
                    p.head, p.iterations, p.steps, p.n, p.mean, p.se, p.min, p.max
                );
            }
        }
        table += &format!(
            "wall time {:.1} s on {} threads\n",
            info.wall_time_s, info.threads
        );
        let oracle_rows: Vec<Value> = oracles.rows.iter().map(row_json).collect();
        let doc = json!({
            "data": self.data,
            "score": "exact",
            "schedule": self.schedule,
            "early_stop": self.early_stop,
            "steps": self.steps,
            "curve_grid": self.curve_grid(),
            "heads": self.heads,
            "iterations": self.iterations,
            "oracles": oracle_rows,
            "oracle_cov_error": oracles.cov_error.iter().map(|e| json!({
                "method": e.method, "t": e.t, "mse": e.mse, "rel_mse": e.rel_mse,
            })).collect::<Vec<_>>(),
            "curve": curve,
            "train_seeds": self.train_seed_list(),
            "seed_spread": if many {
                spread.iter().map(|p| json!({
                    "head": p.head, "iterations": p.iterations, "T": p.steps, "n": p.n,
                    "cov_part_mean": p.mean, "cov_part_sd": p.sd, "cov_part_se": p.se,
                    "cov_part_min": p.min, "cov_part_max": p.max,
                    "path_kl_mean": p.path_kl_mean,
                })).collect::<Vec<_>>()
            } else {
                Vec::new()
            },
            "params": self,
            "threads": info.threads,
            "wall_time_s": info.wall_time_s,
        });
        let figures = self.draw(oracles, &spread);
        Ok(Assembled {
            doc,
            figures,
            table,
        })
    }

    /// The covariance part against the budget, and the diagonal error against the budget
    /// when some head or oracle is diagonal (has a curve).
    fn figures(&self) -> Vec<FigureName> {
        let mut out = vec![FigureName::plot(format!("_cov_part_{}", self.data))];
        let diagonal = self
            .heads
            .iter()
            .chain(&self.oracles)
            .any(|m| Method::from_name(m).is_ok_and(|m| m.is_diagonal()));
        if diagonal {
            out.push(FigureName::plot(format!("_diag_mse_{}", self.data)));
        }
        out
    }

    fn seeds(&self) -> Vec<u64> {
        vec![self.seed]
    }
}

impl LearnedCurveStudy {
    /// The two figures: the covariance part against the budget (one curve per head and T;
    /// the oracles dashed, flat), and the mean relative diagonal error against the budget.
    fn draw(&self, oracles: &CurveCell, spread: &[Spread]) -> Vec<(String, Figure)> {
        let kinds: Vec<String> = self.heads.iter().map(|h| h.trim().to_string()).collect();
        let budgets: Vec<f64> = self.iterations.iter().map(|&n| n as f64).collect();
        let (lo, hi) = budgets
            .iter()
            .fold((f64::INFINITY, 0.0_f64), |(a, b), &x| (a.min(x), b.max(x)));
        let mut steps = self.steps.clone();
        steps.sort_unstable();
        steps.dedup();
        // An oracle whose covariance part is round-off (the exact diagonal where C is diagonal,
        // as on grid9) is named in the caption instead of drawn 30 decades below the heads.
        let top = spread
            .iter()
            .map(|p| p.max)
            .filter(|v| v.is_finite())
            .fold(0.0_f64, f64::max);
        let mut zero: Vec<String> = Vec::new();
        let mut series = Vec::new();
        let mut index = 0;
        for (ti, &t) in steps.iter().enumerate() {
            for k in &kinds {
                let pts: Vec<(f64, f64, f64)> = spread
                    .iter()
                    .filter(|p| &p.head == k && p.steps == t)
                    .map(|p| (p.iterations as f64, p.mean, p.se))
                    .collect();
                series.push(
                    Series::new(
                        format!("{k}, T = {t}"),
                        pts.iter().map(|p| p.0).collect(),
                        pts.iter().map(|p| p.1).collect(),
                    )
                    .with_err(pts.iter().map(|p| p.2).collect())
                    .with_color(index)
                    .with_marker(ti),
                );
                index += 1;
            }
            for r in oracles.rows.iter().filter(|r| r.steps == t) {
                if r.cov_part.value <= 1e-12 * top {
                    zero.push(format!("{} at T = {t}", r.method));
                    continue;
                }
                series.push(
                    Series::new(
                        format!("{} (exact), T = {t}", r.method),
                        vec![lo, hi],
                        vec![r.cov_part.value; 2],
                    )
                    .with_color(index)
                    .dashed(),
                );
                index += 1;
            }
        }
        series.retain(|s| s.has_drawable_point(true));
        let seeds = self.train_seed_list();
        let caption = if seeds.len() > 1 {
            format!(
                "{} with the exact score, {}, early stop {:e}; each budget {} runs (seeds {:?}, cosine lr over the budget); mean, bars: s.e. over the seeds",
                self.data, self.schedule, self.early_stop, seeds.len(), seeds
            )
        } else {
            format!(
                "{} with the exact score, {}, early stop {:e}; each budget its own run from seed {} (cosine lr over the budget); bars: error estimates",
                self.data, self.schedule, self.early_stop, seeds[0]
            )
        };
        let cov_caption = if zero.is_empty() {
            caption
        } else {
            format!(
                "{caption}; exact 0 (round-off, not drawn): {}",
                zero.join(", ")
            )
        };
        let mut out = vec![(
            format!("_cov_part_{}", self.data),
            Figure::Plot(Plot {
                x_scale: XScale::Log,
                title: format!(
                    "Covariance part of the exact path KL vs training budget: {}",
                    self.data
                ),
                x_label: "AdamW iterations of the head".into(),
                y_label: "sum_steps E KL(N(m, C) || N(m, Sigma))".into(),
                series,
                refs: vec![],
                caption: Some(cov_caption),
            }),
        )];
        let mut series = Vec::new();
        for (i, k) in kinds.iter().enumerate() {
            // One point per budget (the spread's first T: the error does not depend on T),
            // the mean over the seeds.
            let pts: Vec<(f64, f64)> = spread
                .iter()
                .filter(|p| &p.head == k && Some(&p.steps) == steps.first())
                .filter_map(|p| p.rel_mse.map(|r| (p.iterations as f64, r)))
                .collect();
            series.push(
                Series::new(
                    k.clone(),
                    pts.iter().map(|p| p.0).collect(),
                    pts.iter().map(|p| p.1).collect(),
                )
                .with_color(i)
                .with_marker(i),
            );
        }
        for o in &self.oracles {
            if let Some((_, rel)) = mean_cov_error(&oracles.cov_error, o) {
                series.push(
                    Series::new(format!("{o} (exact)"), vec![lo, hi], vec![rel; 2])
                        .with_color(kinds.len() + series.len())
                        .dashed(),
                );
            }
        }
        series.retain(|s| s.has_drawable_point(true));
        if !series.is_empty() {
            out.push((
                format!("_diag_mse_{}", self.data),
                Figure::Plot(Plot {
                    x_scale: XScale::Log,
                    title: format!("Diagonal error of the heads vs training budget: {}", self.data),
                    x_label: "AdamW iterations of the head".into(),
                    y_label: format!(
                        "relative diag error, mean over the {}-step kernels",
                        self.curve_grid()
                    ),
                    series,
                    refs: vec![],
                    caption: Some(format!(
                        "E ||diag Sigma - diag C||^2 / E ||diag C||^2 over q_t at the {}-step grid's times; {}, exact score, mean over seeds {:?}",
                        self.curve_grid(),
                        self.data,
                        seeds
                    )),
                }),
            ));
        }
        out
    }
}
