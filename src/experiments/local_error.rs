//! Study kind `local-error`: where along the chain each family loses its path KL, per
//! schedule: the local error densities `g_f(u)`, the asymptotic constants
//! `K_f = lim T^(p-1) S_f(T)` they predict, the constant `K_f^opt` of the best schedule with
//! the same ends, and the predicted `K_f` against the sums `T^(p-1) S_f(T)` measured at the
//! study's T values and extrapolated ([`crate::kl::local_error`], `docs/schedules.md`; the
//! `local-error` binary is a CLI over this).
//!
//! Cells: one per schedule.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::experiments::path_kl::{load_data, rule_choice};
use crate::kernel::family::Family;
use crate::kl::local_error::{local_errors, scaled_sums, term_order, LocalErrorParams};
use crate::kl::path_kl::{path_kl_sweep, PathKlParams};
use crate::plot::{Plot, Series, XScale};
use crate::process::schedule::Schedule;
use crate::quadrature::{Estimate, LatticeParams, QmcParams};
use crate::study::{
    ensure, from_cell, to_cell, Assembled, Figure, FigureName, Observer, ParamError, RunInfo,
    StudyError, StudyKind,
};

/// Parameters of a `local-error` study (keys as the binary's flags).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LocalErrorStudy {
    /// Preset (mog40, mog40-unit, grid9, aniso2, mix6) or a mixture JSON file.
    pub data: String,
    /// Continuous schedules: vp-linear, cosine, snr-uniform.
    pub schedules: Vec<String>,
    /// Families: beta, beta-tilde, analytic, diag, full.
    pub families: Vec<String>,
    /// Early stop of vp-linear and cosine (snr-uniform is early-stopped by its own SNR).
    pub early_stop: f64,
    /// The T values (doublings) of the measured `T^(p-1) S_f(T)`; the last three are
    /// extrapolated.
    pub steps: Vec<usize>,
    /// The largest Richardson step (in u).
    pub delta0: f64,
    /// Richardson levels per extrapolation.
    pub levels: usize,
    /// Extrapolation windows per node (the smallest error estimate is kept).
    pub windows: usize,
    /// Dyadic panels toward the data end.
    pub panels: usize,
    /// Gauss-Legendre nodes per panel (even).
    pub order: usize,
    /// Cubature rule: `auto`, `lattice`, `qmc`.
    pub rule: String,
    /// Lattice spacing as a fraction of the smallest component standard deviation.
    pub h_frac: f64,
}

impl Default for LocalErrorStudy {
    fn default() -> Self {
        let lp = LocalErrorParams::default();
        Self {
            data: "mog40".into(),
            schedules: ["vp-linear", "cosine"].map(String::from).to_vec(),
            families: ["beta", "analytic", "diag", "full"]
                .map(String::from)
                .to_vec(),
            early_stop: 0.0,
            steps: vec![256, 512, 1024],
            delta0: lp.delta0,
            levels: lp.levels,
            windows: lp.windows,
            panels: lp.panels,
            order: lp.order,
            rule: "auto".into(),
            h_frac: LatticeParams::default().h_frac,
        }
    }
}

/// The relative distance between the predicted `K` and the extrapolated sums below which the
/// table calls the sums asymptotic (the 1 % of `docs/schedules.md`); beyond it the T values
/// are too small for the limit (snr-uniform's last step spans most of the log-SNR range).
const ASYMPTOTIC_REL: f64 = 0.01;

/// Densities below this fraction of a figure's largest are not drawn (an exactly vanishing
/// density, diag on grid9, is round-off at 1e-33 and below; the JSON keeps every value).
const FIGURE_FLOOR: f64 = 1e-12;

/// An estimate as JSON-friendly numbers.
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

#[derive(Clone, Debug, Serialize, Deserialize)]
struct DensityRow {
    family: String,
    u: f64,
    ln_abar: f64,
    /// log-SNR `ln(abar / (1 - abar))` at u.
    log_snr: f64,
    g: Est,
    /// The density per unit log-SNR, `g / |d log-SNR / du|^p` (schedule-independent).
    c_log_snr: Est,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ConstantRow {
    family: String,
    p: i32,
    k: Est,
    k_opt: Est,
    /// `T^(p-1) S_f(T)` at the study's T values.
    measured: Vec<(usize, Est)>,
    /// Richardson in 1/T over the last three T values (doublings), if any.
    extrapolated: Option<Est>,
}

/// One schedule's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cell {
    schedule: String,
    densities: Vec<DensityRow>,
    constants: Vec<ConstantRow>,
}

/// log-SNR of `ln abar`: `ln abar - ln(1 - abar)`.
fn log_snr(ln_abar: f64) -> f64 {
    ln_abar - (-ln_abar.exp_m1()).ln()
}

/// `d log-SNR / du` at `u` by central differences (one-sided within `h` of the ends), with
/// `h = 1e-6`: log-SNR is smooth on the open clock, and the difference's truncation
/// `h^2 |f'''| / 6` and round-off `eps |f| / h` are ~1e-10 relative.
fn dlogsnr_du(schedule: &Schedule, early_stop: f64, u: f64) -> f64 {
    let h = 1e-6;
    let f = |v: f64| schedule.ln_abar_at(v, early_stop).map_or(f64::NAN, log_snr);
    let (a, b) = ((u - h).max(0.0), (u + h).min(1.0));
    (f(b) - f(a)) / (b - a)
}

impl LocalErrorStudy {
    fn families(&self) -> Result<Vec<Family>, ParamError> {
        Family::parse_list(&self.families.join(","))
            .map_err(|e| ParamError::new("families", "beta, beta-tilde, analytic, diag, full", e))
    }

    fn schedule(&self, name: &str) -> Result<Schedule, ParamError> {
        let s = Schedule::from_name(name)
            .map_err(|e| ParamError::new("schedules", "vp-linear, cosine or snr-uniform", e))?;
        ensure(
            s.ln_abar_at(0.5, self.early_stop_of(&s)).is_some(),
            "schedules",
            "continuous schedules (vp-linear, cosine, snr-uniform): a discrete one has no clock u",
            name,
        )?;
        Ok(s)
    }

    /// snr-uniform takes no early stop (its lambda_max is one).
    fn early_stop_of(&self, s: &Schedule) -> f64 {
        if matches!(s, Schedule::SnrUniform { .. }) {
            0.0
        } else {
            self.early_stop
        }
    }

    fn lp(&self) -> LocalErrorParams {
        LocalErrorParams {
            delta0: self.delta0,
            panels: self.panels,
            order: self.order,
            levels: self.levels,
            windows: self.windows,
        }
    }

    fn params(&self, families: &[Family], early_stop: f64) -> Result<PathKlParams, ParamError> {
        Ok(PathKlParams {
            families: families.to_vec(),
            early_stop,
            rule: rule_choice(&self.rule)?,
            lattice: LatticeParams {
                h_frac: self.h_frac,
                ..LatticeParams::default()
            },
            qmc: QmcParams::default(),
            ..PathKlParams::default()
        })
    }

    fn load(&self) -> Result<crate::data::mixture::Mixture, ParamError> {
        load_data(&self.data)
    }

    fn run_one(&self, name: &str, obs: &dyn Observer) -> Result<Cell, StudyError> {
        let schedule = self.schedule(name)?;
        let es = self.early_stop_of(&schedule);
        let families = self.families()?;
        let params = self.params(&families, es)?;
        let q0 = self.load()?;
        obs.phase(&format!("{name}: local error densities"));
        let report = local_errors(&q0, &schedule, es, &params, &self.lp(), &|d, t| {
            obs.inner(d, t)
        })?;
        obs.phase(&format!("{name}: sums at T = {:?}", self.steps));
        let sweep = path_kl_sweep(&q0, &schedule, &self.steps, &params, &|d, t| {
            obs.inner(d, t)
        })?;
        let densities = report
            .densities
            .iter()
            .map(|d| {
                let slope = dlogsnr_du(&schedule, es, d.u).abs();
                let scale = slope.powi(term_order(d.family));
                DensityRow {
                    family: d.family.name().to_string(),
                    u: d.u,
                    ln_abar: d.ln_abar,
                    log_snr: log_snr(d.ln_abar),
                    g: d.g.into(),
                    c_log_snr: Est {
                        value: d.g.value / scale,
                        err: d.g.err / scale,
                    },
                }
            })
            .collect();
        let constants = report
            .constants
            .iter()
            .map(|c| {
                let ss = scaled_sums(&sweep, c.family);
                ConstantRow {
                    family: c.family.name().to_string(),
                    p: c.p,
                    k: c.k.into(),
                    k_opt: c.k_opt.into(),
                    measured: ss.scaled.iter().map(|&(t, e)| (t, e.into())).collect(),
                    extrapolated: ss.extrapolated.map(Est::from),
                }
            })
            .collect();
        Ok(Cell {
            schedule: schedule.name(),
            densities,
            constants,
        })
    }

    fn table(&self, cells: &[Cell], info: &RunInfo) -> String {
        let mut s = format!(
            "local error densities and asymptotic constants for {} (K = lim T^(p-1) S(T), K_opt: the best schedule with the same ends)\n",
            self.data
        );
        for c in cells {
            s += &format!("schedule {}:\n", c.schedule);
            s += &format!(
                "  {:>10} {:>2} | {:>12} {:>8} | {:>12} {:>8} | {:>7} | {:>12} {:>8} | {:>9} | {}\n",
                "family", "p", "K", "err", "K_opt", "err", "K/K_opt", "measured", "err", "rel diff", "verdict"
            );
            for r in &c.constants {
                let (m, me, rel, verdict) = match r.extrapolated {
                    Some(e) => {
                        let rel = (e.value - r.k.value) / r.k.value;
                        (
                            format!("{:.6e}", e.value),
                            format!("{:.1e}", e.err),
                            format!("{rel:+.2e}"),
                            if r.k.value.abs() <= 3.0 * r.k.err {
                                // diag on product data (grid9) equals full: no O(d^2) term.
                                "K = 0: the order-p term vanishes (S ~ T^-p)"
                            } else if rel.abs() <= ASYMPTOTIC_REL {
                                "agree (1 %)"
                            } else {
                                "NOT asymptotic at these T"
                            },
                        )
                    }
                    None => ("-".into(), "-".into(), "-".into(), "-"),
                };
                s += &format!(
                    "  {:>10} {:>2} | {:>12.6e} {:>8.1e} | {:>12.6e} {:>8.1e} | {:>7.3} | {:>12} {:>8} | {:>9} | {}\n",
                    r.family,
                    r.p,
                    r.k.value,
                    r.k.err,
                    r.k_opt.value,
                    r.k_opt.err,
                    r.k.value / r.k_opt.value,
                    m,
                    me,
                    rel,
                    verdict
                );
            }
        }
        s += &format!(
            "measured: T^(p-1) S(T) at T = {:?}, Richardson-extrapolated in 1/T over the last three\nwall time {:.2} s on {} threads\n",
            self.steps, info.wall_time_s, info.threads
        );
        s
    }

    fn density_figure(&self, cell: &Cell, names: &[String]) -> Plot {
        let floor = FIGURE_FLOOR * cell.densities.iter().map(|d| d.g.value).fold(0.0, f64::max);
        let series = names
            .iter()
            .map(|f| {
                let rows: Vec<&DensityRow> = cell
                    .densities
                    .iter()
                    .filter(|d| &d.family == f && d.g.value >= floor)
                    .collect();
                Series::new(
                    f.clone(),
                    rows.iter().map(|d| d.u).collect(),
                    rows.iter().map(|d| d.g.value).collect(),
                )
                .with_err(rows.iter().map(|d| d.g.err).collect())
            })
            .collect();
        Plot {
            x_scale: XScale::Linear,
            title: format!(
                "Local error density g(u): {}, {}",
                crate::study::data_label(&self.data),
                cell.schedule
            ),
            x_label: "u (the T-step grid is u_i = i/T; 0: data end)".to_string(),
            y_label: "g(u) = lim step term / d^p (p = 3 full, 2 otherwise)".to_string(),
            series,
            refs: Vec::new(),
            caption: Some(
                "T^(p-1) S(T) -> K = int g du; bars: Richardson + quadrature error estimate; values below 1e-12 of the largest not drawn"
                    .to_string(),
            ),
        }
    }

    fn log_snr_figure(&self, cells: &[Cell], names: &[String]) -> Plot {
        let floor = FIGURE_FLOOR
            * cells
                .iter()
                .flat_map(|c| c.densities.iter().map(|d| d.c_log_snr.value))
                .fold(0.0, f64::max);
        let mut series = Vec::new();
        for (k, c) in cells.iter().enumerate() {
            for (j, f) in names.iter().enumerate() {
                let rows: Vec<&DensityRow> = c
                    .densities
                    .iter()
                    .filter(|d| {
                        &d.family == f
                            && d.log_snr.is_finite()
                            && d.g.err < d.g.value.abs()
                            && d.c_log_snr.value >= floor
                    })
                    .collect();
                let mut s = Series::new(
                    format!("{f}, {}", c.schedule),
                    rows.iter().map(|d| d.log_snr).collect(),
                    rows.iter().map(|d| d.c_log_snr.value).collect(),
                )
                .with_color(j);
                if k > 0 {
                    s = s.dashed();
                }
                series.push(s);
            }
        }
        Plot {
            x_scale: XScale::Linear,
            title: format!(
                "Local error density per unit log-SNR: {}",
                crate::study::data_label(&self.data)
            ),
            x_label: "log-SNR ln(abar / (1 - abar))".to_string(),
            y_label: "c(lambda) = g / |d lambda / du|^p".to_string(),
            series,
            refs: Vec::new(),
            caption: Some(
                "one curve per family whatever the schedule (solid: first schedule, dashed: the others); points whose error estimate exceeds the value, or below 1e-12 of the largest, left out"
                    .to_string(),
            ),
        }
    }
}

impl StudyKind for LocalErrorStudy {
    fn kind(&self) -> &'static str {
        "local-error"
    }

    fn validate(&self) -> Result<(), ParamError> {
        ensure(
            !self.schedules.is_empty(),
            "schedules",
            "at least one",
            &self.schedules,
        )?;
        crate::study::ensure_unique("schedules", &self.schedules)?;
        crate::study::ensure_unique("families", &self.families)?;
        crate::study::ensure_steps(&self.steps)?;
        crate::study::ensure_unique("steps", &self.steps)?;
        crate::study::ensure_early_stop(self.early_stop)?;
        crate::study::ensure_h_frac(self.h_frac)?;
        ensure(
            self.delta0.is_finite() && self.delta0 > 0.0 && self.delta0 <= 0.5,
            "delta0",
            "a number in (0, 0.5]",
            self.delta0,
        )?;
        ensure(
            (2..=8).contains(&self.levels),
            "levels",
            "2..=8",
            self.levels,
        )?;
        ensure(
            (1..=8).contains(&self.windows),
            "windows",
            "1..=8",
            self.windows,
        )?;
        ensure(
            (1..=20).contains(&self.panels),
            "panels",
            "1..=20",
            self.panels,
        )?;
        ensure(
            self.order >= 2 && self.order <= 64 && self.order.is_multiple_of(2),
            "order",
            "an even number in 2..=64",
            self.order,
        )?;
        let fams = self.families()?;
        ensure(!fams.is_empty(), "families", "at least one", &self.families)?;
        for s in &self.schedules {
            let sched = self.schedule(s)?;
            self.params(&fams, self.early_stop_of(&sched))?;
        }
        self.load()?;
        Ok(())
    }

    fn cells(&self) -> Result<Vec<String>, StudyError> {
        Ok(self
            .schedules
            .iter()
            .map(|s| format!("schedule={s}"))
            .collect())
    }

    fn run_cells(&self, indices: &[usize], obs: &dyn Observer) -> Result<Vec<Value>, StudyError> {
        let mut out = Vec::with_capacity(indices.len());
        for &i in indices {
            let label = format!("schedule={}", self.schedules[i]);
            obs.cell_started(i, &label);
            let cell = self.run_one(&self.schedules[i], obs)?;
            out.push(to_cell("local-error", &cell)?);
            obs.cell_done(i, &label);
        }
        Ok(out)
    }

    fn assemble(&self, cells: &[Value], info: &RunInfo) -> Result<Assembled, StudyError> {
        let cells: Vec<Cell> = cells
            .iter()
            .map(|c| from_cell("local-error", c))
            .collect::<Result<_, _>>()?;
        let names: Vec<String> = self
            .families()?
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let doc = json!({
            "data": crate::study::data_label(&self.data),
            "early_stop": self.early_stop,
            "families": names,
            "steps": self.steps,
            "local_error": {"delta0": self.delta0, "levels": self.levels, "windows": self.windows,
                "panels": self.panels, "order": self.order},
            "schedules": cells,
            "threads": info.threads,
            "wall_time_s": info.wall_time_s,
            "covlab_version": env!("CARGO_PKG_VERSION"),
        });
        let mut figures = Vec::new();
        for c in &cells {
            figures.push((
                format!("_{}", c.schedule),
                Figure::Plot(self.density_figure(c, &names)),
            ));
        }
        figures.push((
            "_log_snr".to_string(),
            Figure::Plot(self.log_snr_figure(&cells, &names)),
        ));
        Ok(Assembled {
            doc,
            figures,
            table: self.table(&cells, info),
        })
    }

    fn figures(&self) -> Vec<FigureName> {
        let mut out: Vec<FigureName> = self
            .schedules
            .iter()
            .map(|s| {
                let name = Schedule::from_name(s).map_or_else(|_| s.clone(), |x| x.name());
                FigureName::plot(format!("_{name}"))
            })
            .collect();
        out.push(FigureName::plot("_log_snr"));
        out
    }

    fn seeds(&self) -> Vec<u64> {
        Vec::new()
    }
}
