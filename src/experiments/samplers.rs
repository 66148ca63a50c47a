//! Study kind `samplers`: MMD, Fréchet distance and exact log-likelihood of the CPU reverse
//! samplers against exact draws of q_0, per data set, T and family, with call counts (the
//! `samplers` binary is a CLI over this).
//!
//! Cells, per data set in order: the exact-vs-exact floor, then every (T, family). Each cell
//! draws its reference and data from seeds that depend only on `seed` (not on the cell's
//! neighbours) and samples with `seed`; the sampler is bit-identical for any thread count, so
//! a cell is the same in any shard.

use std::collections::BTreeMap;
use std::time::Instant;

use nalgebra::DVector;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::data::dataset::DataSet;
use crate::plot::{Plot, Series, XScale};
use crate::process::schedule::Schedule;
use crate::process::spec::{grid_records, DiffusersOptions, GridRecord};
use crate::sampler::{
    analytic_trace_table, clip_range_of, sample, KernelKind, LastStep, SamplerConfig, SamplerFamily,
};
use crate::score::LowRankScore;
use crate::score::{Counted, MixtureScore, ScoreModel};
use crate::stats::{
    frechet_distance_sq, mean_log_likelihood, mmd2_unbiased_with, MmdReference, MMD_BANDWIDTHS,
};
use crate::study::{
    ensure, Assembled, Figure, FigureName, Observer, ParamError, RunInfo, StudyError, StudyKind,
};

/// Parameters of a `samplers` study (keys as the binary's flags; defaults as its defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SamplersStudy {
    /// Presets or mixture JSON files.
    pub data: Vec<String>,
    /// Schedule (ddpm-linear: the OCM toy setting): a preset, `diffusers:<beta_schedule>` or a
    /// schedule file `*.json`.
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
    /// Families: beta, beta-tilde, analytic, diag, full, `hutchinson-<M>`, `lgs-<k>`.
    pub families: Vec<String>,
    /// The T values.
    pub steps: Vec<usize>,
    /// Samples per cell (and exact reference samples per data set).
    pub samples: usize,
    /// Kernel: `ddpm` or `ddim`.
    pub kernel: String,
    /// LGS batch L.
    pub lgs_batch: usize,
    /// LGSb fraction.
    pub lgsb_fraction: f64,
    /// Hutchinson guard probes at the last LGS step (0 = none).
    pub guard: usize,
    /// Data points for Analytic-DPM's E||score||^2 table.
    pub analytic_samples: usize,
    /// Seed.
    pub seed: u64,
    /// The last step: `mean` (the last kernel's mean, no noise: Ho et al., Analytic-DPM,
    /// diffusers) or `noisy` (a draw from the last kernel).
    pub last_step: String,
    /// Where to write each cell's draws as `.npy` (`<data>_<family>_T<T>.npy`, and the
    /// exact draws of the floor as `<data>_exact.npy`); `None`: not written. Not a study-file
    /// key (the binary's `--save-samples`).
    #[serde(skip)]
    pub save_samples: Option<std::path::PathBuf>,
}

impl Default for SamplersStudy {
    fn default() -> Self {
        Self {
            data: vec!["mog40".into(), "grid9".into()],
            schedule: "ddpm-linear".into(),
            num_train_timesteps: None,
            beta_start: None,
            beta_end: None,
            timestep_spacing: None,
            steps_offset: None,
            families: "beta,beta-tilde,analytic,diag,full,lgs-1,lgs-2,lgs-4,lgs-8,hutchinson-1,hutchinson-4,hutchinson-16"
                .split(',')
                .map(String::from)
                .collect(),
            steps: vec![5, 10, 25, 50, 100, 200, 1000],
            samples: 10_000,
            kernel: "ddpm".into(),
            lgs_batch: 1,
            lgsb_fraction: 1.0,
            guard: 0,
            analytic_samples: 2000,
            seed: 0,
            last_step: "mean".into(),
            save_samples: None,
        }
    }
}

/// What one cell computes.
#[derive(Clone, Copy, Debug)]
enum CellSpec {
    /// Exact draws vs the reference (the noise floor).
    Floor { data: usize },
    /// One sampler family at one T.
    Family {
        data: usize,
        t: usize,
        family: usize,
    },
}

impl SamplersStudy {
    fn kernel(&self) -> Result<KernelKind, ParamError> {
        KernelKind::from_name(&self.kernel)
            .map_err(|e| ParamError::new("kernel", "ddpm or ddim", e))
    }

    fn last_step(&self) -> Result<LastStep, ParamError> {
        LastStep::from_name(&self.last_step)
            .map_err(|e| ParamError::new("last-step", "mean or noisy", e))
    }

    /// The schedule of the `schedule` key and its diffusers options.
    ///
    /// # Errors
    /// A [`ParamError`] naming the key at fault.
    pub fn schedule(&self) -> Result<Schedule, ParamError> {
        crate::study::schedule_param(
            &self.schedule,
            &DiffusersOptions {
                num_train_timesteps: self.num_train_timesteps,
                beta_start: self.beta_start,
                beta_end: self.beta_end,
                timestep_spacing: self.timestep_spacing.clone(),
                steps_offset: self.steps_offset,
            },
        )
    }

    /// The grids of the T values (the `grid` key).
    ///
    /// # Errors
    /// The schedule's, and a T it cannot make a grid of (named `steps`).
    pub fn grids(&self) -> Result<Vec<GridRecord>, ParamError> {
        grid_records(&self.schedule()?, &self.steps, 0.0)
            .map_err(|e| ParamError::new("steps", "T values the schedule allows", e))
    }

    fn families(&self) -> Result<Vec<SamplerFamily>, ParamError> {
        self.families
            .iter()
            .map(|f| {
                SamplerFamily::from_name(f)
                    .map(|fam| match fam {
                        SamplerFamily::Lgs(mut o) => {
                            o.batch = self.lgs_batch;
                            o.fraction = self.lgsb_fraction;
                            o.guard = (self.guard > 0).then_some(self.guard);
                            SamplerFamily::Lgs(o)
                        }
                        other => other,
                    })
                    .map_err(|e| {
                        ParamError::new(
                            "families",
                            "beta, beta-tilde, analytic, diag, full, hutchinson-<M>, lgs-<k>",
                            e,
                        )
                    })
            })
            .collect()
    }

    fn load(&self, name: &str) -> Result<DataSet, ParamError> {
        DataSet::load(name)
            .map_err(|e| ParamError::new("data", "a preset or a mixture JSON file", e.to_string()))
    }

    fn specs(&self) -> Vec<CellSpec> {
        let mut out = Vec::new();
        for data in 0..self.data.len() {
            out.push(CellSpec::Floor { data });
            for &t in &self.steps {
                for family in 0..self.families.len() {
                    out.push(CellSpec::Family { data, t, family });
                }
            }
        }
        out
    }

    fn label(&self, spec: CellSpec) -> String {
        match spec {
            CellSpec::Floor { data } => {
                format!("{} exact", crate::study::data_label(&self.data[data]))
            }
            CellSpec::Family { data, t, family } => format!(
                "{} {} T={t}",
                crate::study::data_label(&self.data[data]),
                self.families[family]
            ),
        }
    }
}

/// Exact draws of a data set.
type Draw<'a> = &'a dyn Fn(&mut ChaCha8Rng, usize) -> Vec<DVector<f64>>;
/// Mean exact log-likelihood and its standard error.
type LogLik<'a> = &'a dyn Fn(&[DVector<f64>]) -> Result<(f64, f64), StudyError>;

/// The settings of one data set's cells.
struct DataRun<'a, M: ScoreModel> {
    study: &'a SamplersStudy,
    name: String,
    model: &'a Counted<M>,
    draw: Draw<'a>,
    loglik: LogLik<'a>,
    range: (f64, f64),
}

impl<M: ScoreModel> DataRun<'_, M> {
    /// Writes `points` as `<save-samples>/<file>` when the study saves its draws.
    fn save(&self, file: &str, points: &[DVector<f64>]) -> Result<(), StudyError> {
        let Some(dir) = &self.study.save_samples else {
            return Ok(());
        };
        crate::data::samples_npy::write_samples(&dir.join(file), points).map_err(|e| match e {
            crate::data::samples_npy::SamplesFileError::Output(o) => StudyError::Output(o),
            other => StudyError::Merge(format!("samplers: {other}")),
        })
    }

    /// Runs the cells `todo` (index, spec) of this data set; returns (index, row) pairs.
    fn run(
        &self,
        todo: &[(usize, CellSpec)],
        obs: &dyn Observer,
    ) -> Result<Vec<(usize, Value)>, StudyError> {
        let s = self.study;
        let schedule = s.schedule()?;
        let families = s.families()?;
        let kernel = s.kernel()?;
        let last_step = s.last_step()?;
        let mut rng = ChaCha8Rng::seed_from_u64(s.seed ^ 0x5eed_0000);
        let reference = (self.draw)(&mut rng, s.samples);
        // The reference's own MMD pass, once for every cell of this data set.
        let reference_mmd = MmdReference::new(&reference, &MMD_BANDWIDTHS)?;
        let mut rng2 = ChaCha8Rng::seed_from_u64(s.seed ^ 0x5eed_0001);
        let exact = (self.draw)(&mut rng2, s.samples);
        let data_for_analytic = (self.draw)(&mut rng2, s.analytic_samples);
        let mut tables: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        let mut out = Vec::with_capacity(todo.len());
        for &(index, spec) in todo {
            let label = s.label(spec);
            obs.cell_started(index, &label);
            let row = match spec {
                CellSpec::Floor { .. } => {
                    self.save(&format!("{}_exact.npy", self.name), &exact)?;
                    let est = mmd2_unbiased_with(&exact, &reference_mmd)?;
                    let ll = (self.loglik)(&exact)?;
                    json!({
                        "data": self.name, "family": "exact", "T": 0, "samples": s.samples,
                        "mmd": est.sum.mmd2, "mmd_se": est.sum.se,
                        "mmd_per_bandwidth": est.per_bandwidth.iter().map(|v| v.mmd2).collect::<Vec<_>>(),
                        "frechet_sq": frechet_distance_sq(&exact, &reference)?,
                        "loglik": ll.0, "loglik_se": ll.1,
                    })
                }
                CellSpec::Family { t, family, .. } => {
                    if let std::collections::btree_map::Entry::Vacant(e) = tables.entry(t) {
                        e.insert(analytic_trace_table(
                            self.model.inner(),
                            &schedule,
                            t,
                            0.0,
                            &data_for_analytic,
                            s.seed,
                        )?);
                    }
                    let fam = families[family];
                    let mut cfg = SamplerConfig::new(fam, schedule.clone(), t);
                    cfg.kernel = kernel;
                    cfg.last_step = last_step;
                    cfg.seed = s.seed;
                    cfg.clip_range = Some(self.range);
                    cfg.analytic_trace = tables.get(&t).cloned();
                    self.model.reset();
                    let t0 = Instant::now();
                    let xs = sample(self.model, &cfg, s.samples)?;
                    let wall = t0.elapsed().as_secs_f64();
                    self.save(&format!("{}_{}_T{t}.npy", self.name, fam.name()), &xs)?;
                    let counts = self.model.counts();
                    let est = mmd2_unbiased_with(&xs, &reference_mmd)?;
                    let ll = (self.loglik)(&xs)?;
                    let per = |c: u64| c as f64 / (s.samples * t) as f64;
                    json!({
                        "data": self.name, "family": fam.name(), "T": t, "samples": s.samples,
                        "mmd": est.sum.mmd2, "mmd_se": est.sum.se,
                        "mmd_per_bandwidth": est.per_bandwidth.iter().map(|v| v.mmd2).collect::<Vec<_>>(),
                        "frechet_sq": frechet_distance_sq(&xs, &reference)?,
                        "loglik": ll.0, "loglik_se": ll.1,
                        "score_evals_per_step": per(counts.score),
                        "hvp_per_step": per(counts.hvp),
                        "oracle_per_step": per(counts.oracle),
                        "sampling_wall_s": wall,
                    })
                }
            };
            obs.cell_done(index, &label);
            out.push((index, row));
        }
        Ok(out)
    }
}

impl StudyKind for SamplersStudy {
    fn kind(&self) -> &'static str {
        "samplers"
    }

    fn validate(&self) -> Result<(), ParamError> {
        crate::study::ensure_steps(&self.steps)?;
        ensure(
            self.samples >= 4,
            "samples",
            ">= 4 (MMD standard error)",
            self.samples,
        )?;
        ensure(
            self.analytic_samples >= 1,
            "analytic-samples",
            ">= 1",
            self.analytic_samples,
        )?;
        ensure(self.lgs_batch >= 1, "lgs-batch", ">= 1", self.lgs_batch)?;
        ensure(
            self.lgsb_fraction > 0.0 && self.lgsb_fraction <= 1.0,
            "lgsb-fraction",
            "a number in (0, 1]",
            self.lgsb_fraction,
        )?;
        ensure(
            !self.data.is_empty(),
            "data",
            "at least one data set",
            &self.data,
        )?;
        ensure(
            !self.families.is_empty(),
            "families",
            "at least one family",
            &self.families,
        )?;
        self.kernel()?;
        self.last_step()?;
        self.families()?;
        for d in &self.data {
            if crate::data::images::shape(d).is_none() {
                self.load(d)?;
            }
        }
        self.grids()?;
        Ok(())
    }

    fn cells(&self) -> Result<Vec<String>, StudyError> {
        Ok(self.specs().into_iter().map(|s| self.label(s)).collect())
    }

    fn run_cells(&self, indices: &[usize], obs: &dyn Observer) -> Result<Vec<Value>, StudyError> {
        let specs = self.specs();
        let mut rows: Vec<(usize, Value)> = Vec::with_capacity(indices.len());
        for (di, name) in self.data.iter().enumerate() {
            let todo: Vec<(usize, CellSpec)> = indices
                .iter()
                .map(|&i| (i, specs[i]))
                .filter(|(_, s)| match s {
                    CellSpec::Floor { data } | CellSpec::Family { data, .. } => *data == di,
                })
                .collect();
            if todo.is_empty() {
                continue;
            }
            let label = crate::study::data_label(name);
            let done = match self.load(name)? {
                DataSet::Dense(q0) => self.run_data(
                    label,
                    &Counted::new(MixtureScore::new(q0.clone())),
                    &|rng, n| q0.sample(rng, n),
                    &|xs| {
                        let ll = mean_log_likelihood(&q0, xs)?;
                        Ok((ll.value, ll.se))
                    },
                    clip_range_of(&q0),
                    (&todo, obs),
                )?,
                // Image presets live in [-1, 1] (digits by construction): the range of the clip.
                DataSet::LowRank(q0) => self.run_data(
                    label,
                    &Counted::new(LowRankScore::new(q0.clone())),
                    &|rng, n| q0.sample(rng, n),
                    &|xs| {
                        let v = xs
                            .iter()
                            .map(|x| q0.ln_pdf(x.as_slice()))
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(crate::study::mean_se(&v))
                    },
                    crate::data::dataset::IMAGE_RANGE,
                    (&todo, obs),
                )?,
            };
            rows.extend(done);
        }
        rows.sort_by_key(|r| r.0);
        Ok(rows.into_iter().map(|r| r.1).collect())
    }

    fn assemble(&self, cells: &[Value], info: &RunInfo) -> Result<Assembled, StudyError> {
        let schedule = self.schedule()?;
        let rows = cells.to_vec();
        let mut table = String::new();
        let mut figures = Vec::new();
        for d in &self.data {
            let name = crate::study::data_label(d);
            table += &self.table(&name, &schedule, &rows);
            figures.push((format!("_{name}"), Figure::Plot(self.figure(&name, &rows))));
        }
        table += &format!("\nwall time {:.1} s\n", info.wall_time_s);
        let doc = json!({
            "study": "samplers",
            "covlab_version": env!("CARGO_PKG_VERSION"),
            "schedule": schedule.name(),
            "kernel": self.kernel,
            "last_step": self.last_step,
            "seed": self.seed,
            "mmd_kind": "unbiased MMD^2 with the sum of Gaussian kernels, bandwidths 0.25, 0.5, 1, 2, 4; mmd_per_bandwidth in that order",
            "lgs": {"batch": self.lgs_batch, "fraction": self.lgsb_fraction, "guard": self.guard},
            "wall_s": info.wall_time_s,
            "rows": rows,
            "grid": self.grids()?,
        });
        Ok(Assembled {
            doc,
            figures,
            table,
        })
    }

    fn figures(&self) -> Vec<FigureName> {
        self.data
            .iter()
            .map(|d| FigureName::plot(format!("_{}", crate::study::data_label(d))))
            .collect()
    }

    fn seeds(&self) -> Vec<u64> {
        vec![self.seed]
    }
}

impl SamplersStudy {
    /// Runs the cells `todo` of one data set through `model`.
    #[allow(clippy::too_many_arguments)]
    fn run_data<M: ScoreModel>(
        &self,
        name: String,
        model: &Counted<M>,
        draw: Draw<'_>,
        loglik: LogLik<'_>,
        range: (f64, f64),
        (todo, obs): (&[(usize, CellSpec)], &dyn Observer),
    ) -> Result<Vec<(usize, Value)>, StudyError> {
        DataRun {
            study: self,
            name,
            model,
            draw,
            loglik,
            range,
        }
        .run(todo, obs)
    }

    /// The families of `name` in row order (without the exact floor).
    fn families_of(name: &str, rows: &[Value]) -> Vec<String> {
        let mut fams: Vec<String> = vec![];
        for r in rows {
            let f = r["family"].as_str().unwrap_or("").to_string();
            if r["data"] == name && f != "exact" && !fams.contains(&f) {
                fams.push(f);
            }
        }
        fams
    }

    fn table(&self, name: &str, schedule: &Schedule, rows: &[Value]) -> String {
        let mut s = format!(
            "\n{name}: MMD^2_u (sum of Gaussian kernels h = 2^-2..2^2) x 1e3, +- s.e.; schedule {}, kernel {}, last step {}, {} samples\n",
            schedule.name(),
            self.kernel,
            self.last_step,
            self.samples
        );
        s += &format!("{:>14}", "family \\ T");
        for t in &self.steps {
            s += &format!(" {t:>15}");
        }
        s.push('\n');
        let f = |r: &Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN) * 1e3;
        if let Some(r) = rows
            .iter()
            .find(|r| r["data"] == name && r["family"] == "exact")
        {
            s += &format!(
                "{:>14} {:>7.3}±{:<7.3} (exact draws vs the reference: the noise floor)\n",
                "exact",
                f(r, "mmd"),
                f(r, "mmd_se")
            );
        }
        for fam in Self::families_of(name, rows) {
            s += &format!("{fam:>14}");
            for r in rows
                .iter()
                .filter(|r| r["data"] == name && r["family"] == fam.as_str())
            {
                s += &format!(" {:>7.3}±{:<7.3}", f(r, "mmd"), f(r, "mmd_se"));
            }
            s.push('\n');
        }
        s
    }

    fn figure(&self, name: &str, rows: &[Value]) -> Plot {
        let mut series = Vec::new();
        for (i, f) in Self::families_of(name, rows).iter().enumerate() {
            let sel: Vec<&Value> = rows
                .iter()
                .filter(|r| r["data"] == name && r["family"] == f.as_str())
                .collect();
            let x = sel
                .iter()
                .map(|r| r["T"].as_f64().unwrap_or(f64::NAN))
                .collect();
            let y = sel
                .iter()
                .map(|r| r["mmd"].as_f64().unwrap_or(f64::NAN))
                .collect();
            let mut s = Series::new(f.clone(), x, y).with_color(i);
            if f.starts_with("lgs") || f.starts_with("hutchinson") {
                s = s.dashed();
            }
            series.push(s);
        }
        let floor = rows
            .iter()
            .find(|r| r["data"] == name && r["family"] == "exact")
            .and_then(|r| r["mmd_se"].as_f64())
            .unwrap_or(f64::NAN);
        Plot {
            x_scale: XScale::Log,
            title: format!("Sampler MMD^2 vs T: {name}"),
            x_label: "T (number of reverse steps)".to_string(),
            y_label: "unbiased MMD^2 (sum kernel) to exact q0 samples".to_string(),
            series,
            refs: vec![],
            caption: Some(format!(
                "{} samples; last step {}; exact-vs-exact s.e. {floor:.1e} (values below are noise; non-positive values not drawn)",
                self.samples, self.last_step
            )),
        }
    }
}
