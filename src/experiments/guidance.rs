//! Study kind `guidance`: classifier guidance in the exact linear-Gaussian example (LGS
//! appendix B): conditional endpoint KL, path KL and Proposition 11 against T per
//! covariance choice and schedule (the `guidance` binary is a CLI over this).
//!
//! Cells: one per (schedule, choice, T), each an exact closed-form propagation (no sampling),
//! independent of every other cell.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::kl::guidance::{evaluate, Choice, GaussianExample, GuidanceError, GuidanceParams, Init};
use crate::plot::{Plot, RefSlope, Series, XScale};
use crate::process::schedule::Schedule;
use crate::stats::rates::{fit_loglog, SlopeFit};
use crate::study::{
    ensure, from_cell, to_cell, Assembled, Figure, FigureName, Observer, ParamError, RunInfo,
    StudyError, StudyKind,
};

/// Parameters of a `guidance` study (keys as the binary's flags; defaults as its defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct GuidanceStudy {
    /// Schedules (snr-uniform is the paper's appendix-B schedule).
    pub schedules: Vec<String>,
    /// Covariance choices: scalar, analytic, diag, full.
    pub choices: Vec<String>,
    /// The T values.
    pub steps: Vec<usize>,
    /// Rotation angle of R in degrees.
    pub angle: f64,
    /// Variance s_1 of z_1.
    pub var1: f64,
    /// Variance s_2 of z_2.
    pub var2: f64,
    /// Label noise sigma_y.
    pub label_noise: f64,
    /// The fixed label y.
    pub y: f64,
    /// Start of both chains: exact or standard-normal.
    pub init: String,
    /// snr-uniform: SNR at the data end.
    pub lambda_max: f64,
    /// snr-uniform: SNR at the noise end.
    pub lambda_min: f64,
    /// vp-linear: beta_min.
    pub beta_min: f64,
    /// vp-linear: beta_max.
    pub beta_max: f64,
    /// Slope-fit window `[lo, hi]` on T.
    pub window: Vec<f64>,
}

impl Default for GuidanceStudy {
    fn default() -> Self {
        let p = GuidanceParams::default();
        Self {
            schedules: vec!["snr-uniform".into(), "vp-linear".into()],
            choices: ["scalar", "analytic", "diag", "full"]
                .map(String::from)
                .to_vec(),
            steps: vec![4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
            angle: p.angle_deg,
            var1: p.var1,
            var2: p.var2,
            label_noise: p.label_noise,
            y: p.y,
            init: "exact".into(),
            lambda_max: 1e3,
            lambda_min: 1e-4,
            beta_min: 0.1,
            beta_max: 20.0,
            window: vec![64.0, 1024.0],
        }
    }
}

/// One (schedule, choice, T) row.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cell {
    choice: String,
    schedule: String,
    #[serde(rename = "T")]
    t: usize,
    #[serde(with = "crate::numeric::nonfinite")]
    endpoint_kl: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    endpoint_kl_avg: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    path_kl: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    endpoint_kl_cov: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    terminal_kl: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    unguided_endpoint_kl: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    bayes_endpoint_kl_avg: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    bayes_endpoint_kl_identity: f64,
}

/// The flag of a [`GuidanceParams`] field.
fn flag_of(field: &str) -> &'static str {
    match field {
        "angle_deg" => "angle",
        "var1" => "var1",
        "var2" => "var2",
        "label_noise" => "label-noise",
        "y" => "y",
        _ => "params",
    }
}

impl GuidanceStudy {
    fn example(&self) -> Result<GaussianExample, ParamError> {
        let init = Init::from_name(&self.init)
            .map_err(|e| ParamError::new("init", "exact or standard-normal", e))?;
        GaussianExample::new(GuidanceParams {
            angle_deg: self.angle,
            var1: self.var1,
            var2: self.var2,
            label_noise: self.label_noise,
            y: self.y,
            init,
        })
        .map_err(|e| match &e {
            GuidanceError::InvalidParameter { field, reason, .. } => {
                ParamError::new(flag_of(field), *reason, e.to_string())
            }
            _ => ParamError::new("params", "valid guidance parameters", e),
        })
    }

    fn choices(&self) -> Result<Vec<Choice>, ParamError> {
        self.choices
            .iter()
            .map(|c| {
                Choice::from_name(c)
                    .map_err(|e| ParamError::new("choices", "scalar, analytic, diag or full", e))
            })
            .collect()
    }

    fn schedules(&self) -> Result<Vec<Schedule>, ParamError> {
        self.schedules
            .iter()
            .map(|s| {
                Schedule::from_name(s)
                    .map(|sch| match sch {
                        Schedule::SnrUniform { .. } => Schedule::SnrUniform {
                            lambda_min: self.lambda_min,
                            lambda_max: self.lambda_max,
                        },
                        Schedule::VpLinear { .. } => Schedule::VpLinear {
                            beta_min: self.beta_min,
                            beta_max: self.beta_max,
                        },
                        other => other,
                    })
                    .map_err(|e| ParamError::new("schedules", "schedule names", e))
            })
            .collect()
    }

    fn sorted_steps(&self) -> Vec<usize> {
        let mut s = self.steps.clone();
        s.sort_unstable();
        s.dedup();
        s
    }

    /// (schedule index, choice index, T) of every cell, in order.
    fn specs(&self) -> Vec<(usize, usize, usize)> {
        let steps = self.sorted_steps();
        let mut out = Vec::new();
        for s in 0..self.schedules.len() {
            for c in 0..self.choices.len() {
                for &t in &steps {
                    out.push((s, c, t));
                }
            }
        }
        out
    }
}

impl StudyKind for GuidanceStudy {
    fn kind(&self) -> &'static str {
        "guidance"
    }

    fn validate(&self) -> Result<(), ParamError> {
        crate::study::ensure_steps(&self.steps)?;
        ensure(
            self.window.len() == 2
                && self.window[0].partial_cmp(&self.window[1]) == Some(std::cmp::Ordering::Less),
            "window",
            "lo,hi with lo < hi",
            &self.window,
        )?;
        self.example()?;
        self.choices()?;
        let last = *self.sorted_steps().last().unwrap_or(&1);
        for s in self.schedules()? {
            s.grid(last, 0.0)
                .map_err(|e| ParamError::new("schedules", "a valid schedule", e))?;
        }
        Ok(())
    }

    fn cells(&self) -> Result<Vec<String>, StudyError> {
        Ok(self
            .specs()
            .iter()
            .map(|&(s, c, t)| format!("{} {} T={t}", self.schedules[s], self.choices[c]))
            .collect())
    }

    fn run_cells(&self, indices: &[usize], obs: &dyn Observer) -> Result<Vec<Value>, StudyError> {
        let ex = self.example()?;
        let choices = self.choices()?;
        let schedules = self.schedules()?;
        let specs = self.specs();
        let labels = self.cells()?;
        let mut out = Vec::with_capacity(indices.len());
        for &i in indices {
            let (s, c, t) = specs[i];
            obs.cell_started(i, &labels[i]);
            let r = evaluate(&ex, choices[c], &schedules[s], t)?;
            out.push(to_cell(
                "guidance",
                &Cell {
                    choice: r.choice.name().to_string(),
                    schedule: r.schedule,
                    t: r.steps,
                    endpoint_kl: r.endpoint_kl,
                    endpoint_kl_avg: r.endpoint_kl_avg,
                    path_kl: r.path_kl,
                    endpoint_kl_cov: r.endpoint_kl_cov,
                    terminal_kl: r.terminal_kl,
                    unguided_endpoint_kl: r.unguided_endpoint_kl,
                    bayes_endpoint_kl_avg: r.bayes_endpoint_kl_avg,
                    bayes_endpoint_kl_identity: r.bayes_endpoint_kl_identity,
                },
            )?);
            obs.cell_done(i, &labels[i]);
        }
        Ok(out)
    }

    fn assemble(&self, cells: &[Value], _info: &RunInfo) -> Result<Assembled, StudyError> {
        let rows: Vec<Cell> = cells
            .iter()
            .map(|c| from_cell("guidance", c))
            .collect::<Result<_, _>>()?;
        let window = [self.window[0], self.window[1]];
        let schedules = self.schedules()?;
        let init = Init::from_name(&self.init)
            .map_err(|e| ParamError::new("init", "exact or standard-normal", e))?;
        let choice_names: Vec<&'static str> = self.choices()?.iter().map(|c| c.name()).collect();
        let mut slopes = Vec::new();
        let mut table = String::new();
        let mut figures = Vec::new();
        for schedule in &schedules {
            let sname = schedule.name();
            table += &format!(
                "\nschedule {sname}: angle {} deg, s1 {}, s2 {}, sigma_y {}, y {}, init {}\n",
                self.angle,
                self.var1,
                self.var2,
                self.label_noise,
                self.y,
                init.name()
            );
            table += &format!(
                "{:>9} {:>6} {:>13} {:>13} {:>13} {:>13} {:>11}\n",
                "choice", "T", "endpoint_kl", "endpoint_avg", "path_kl", "bayes_avg", "prop11 gap"
            );
            for choice in &choice_names {
                let sel: Vec<&Cell> = rows
                    .iter()
                    .filter(|r| r.choice == *choice && r.schedule == sname)
                    .collect();
                for r in &sel {
                    table += &format!(
                        "{:>9} {:>6} {:>13.6e} {:>13.6e} {:>13.6e} {:>13.6e} {:>11.3e}\n",
                        choice,
                        r.t,
                        r.endpoint_kl,
                        r.endpoint_kl_avg,
                        r.path_kl,
                        r.bayes_endpoint_kl_avg,
                        r.path_kl - r.bayes_endpoint_kl_avg
                    );
                }
                let x: Vec<f64> = sel.iter().map(|r| r.t as f64).collect();
                let fit = |f: fn(&Cell) -> f64| -> Option<SlopeFit> {
                    let y: Vec<f64> = sel.iter().map(|r| f(r)).collect();
                    fit_loglog(&x, &y, window).ok()
                };
                let fits = [
                    ("endpoint_kl", fit(|r| r.endpoint_kl)),
                    ("endpoint_kl_avg", fit(|r| r.endpoint_kl_avg)),
                    ("path_kl", fit(|r| r.path_kl)),
                ];
                let mut line =
                    format!("{choice:>9} slopes on T in [{}, {}]:", window[0], window[1]);
                for (name, f) in &fits {
                    match f {
                        Some(f) => {
                            line += &format!(
                                " {name} {:+.4} [{:+.4}, {:+.4}];",
                                f.slope, f.ci95[0], f.ci95[1]
                            );
                        }
                        None => line += &format!(" {name} n/a;"),
                    }
                }
                table += &line;
                table.push('\n');
                slopes.push(json!({
                    "schedule": sname,
                    "choice": choice,
                    "window": window,
                    "endpoint_kl": slope_json(&fits[0].1),
                    "endpoint_kl_avg": slope_json(&fits[1].1),
                    "path_kl": slope_json(&fits[2].1),
                }));
            }
            figures.push((
                format!("_{sname}"),
                Figure::Plot(self.figure(&sname, &choice_names, &rows)),
            ));
        }
        let results: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "choice": r.choice,
                    "schedule": r.schedule,
                    "T": r.t,
                    "endpoint_kl": r.endpoint_kl,
                    "endpoint_kl_avg": r.endpoint_kl_avg,
                    "path_kl": r.path_kl,
                    "endpoint_kl_cov": r.endpoint_kl_cov,
                    "terminal_kl": r.terminal_kl,
                    "unguided_endpoint_kl": r.unguided_endpoint_kl,
                    "bayes_endpoint_kl_avg": r.bayes_endpoint_kl_avg,
                    "bayes_endpoint_kl_identity": r.bayes_endpoint_kl_identity,
                })
            })
            .collect();
        let doc = json!({
            "study": "guidance",
            "covlab_version": env!("CARGO_PKG_VERSION"),
            "params": {
                "angle_deg": self.angle, "var1": self.var1, "var2": self.var2,
                "label_noise": self.label_noise, "y": self.y, "init": init.name(),
            },
            "notes": "endpoint_kl(_avg): Dhariwal-Nichol guided kernel N(mu + Sigma grad log q(y|x_t), Sigma); bayes_endpoint_kl_avg: exact (Bayes) guidance of the same model chain, Proposition 11's setting; path_kl: unconditional path KL of the unguided chain incl. terminal_kl",
            "slopes": slopes,
            "results": results,
        });
        Ok(Assembled {
            doc,
            figures,
            table,
        })
    }

    fn figures(&self) -> Vec<FigureName> {
        self.schedules()
            .map(|s| {
                s.iter()
                    .map(|s| FigureName::plot(format!("_{}", s.name())))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn seeds(&self) -> Vec<u64> {
        Vec::new()
    }
}

fn slope_json(f: &Option<SlopeFit>) -> Value {
    match f {
        Some(f) => json!({"slope": f.slope, "ci95": f.ci95, "n": f.n, "r_squared": f.r_squared}),
        None => Value::Null,
    }
}

impl GuidanceStudy {
    fn figure(&self, sname: &str, choices: &[&str], rows: &[Cell]) -> Plot {
        let mut series = Vec::new();
        let mut anchor = None;
        for (ci, choice) in choices.iter().enumerate() {
            let sel: Vec<&Cell> = rows
                .iter()
                .filter(|r| r.choice == *choice && r.schedule == sname)
                .collect();
            let x: Vec<f64> = sel.iter().map(|r| r.t as f64).collect();
            series.push(
                Series::new(
                    format!("{choice} endpoint KL (y = {})", self.y),
                    x.clone(),
                    sel.iter().map(|r| r.endpoint_kl).collect(),
                )
                .with_color(ci),
            );
            let path: Vec<f64> = sel.iter().map(|r| r.path_kl).collect();
            if path.iter().any(|&p| p > 0.0) {
                series.push(
                    Series::new(format!("{choice} path KL"), x.clone(), path)
                        .dashed()
                        .with_color(ci),
                );
            }
            if anchor.is_none() {
                if let (Some(&x0), Some(r)) = (x.first(), sel.first()) {
                    anchor = Some((x0, r.endpoint_kl));
                }
            }
        }
        let (x0, y0) = anchor.unwrap_or((1.0, 1.0));
        Plot {
            x_scale: XScale::Log,
            title: format!("Classifier guidance, exact Gaussian example: {sname}"),
            x_label: "T (number of reverse steps)".to_string(),
            y_label: "KL".to_string(),
            series,
            refs: vec![
                RefSlope::new(-1.0, x0, y0 * 0.3, "slope -1"),
                RefSlope::new(-2.0, x0, y0 * 0.03, "slope -2"),
            ],
            caption: Some(format!(
                "solid: KL(q(x0|y)||p(x0|y)), guided kernel; dashed: path KL (full: 0); angle {}, s1 {}, s2 {}, sig_y {}",
                self.angle, self.var1, self.var2, self.label_noise
            )),
        }
    }
}
