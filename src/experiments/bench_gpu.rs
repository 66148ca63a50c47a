//! Study kind `bench-gpu` (feature `candle`): throughput of the tensor path on a device
//! (`cpu`, `cuda`), beside the rayon-parallel f64 core on the CPU for the ratio (the
//! `bench-gpu` binary is a CLI over this).
//!
//! Rows, each after a warm-up and with the device synchronised before the clock is read
//! (median of `repeats` timings): `score`, `cv_analytic`, `cv_autograd`, `lgs<k>_step`,
//! `trajectory_<family>`, and the f64 core's `score`, `cv_analytic`, `lgs3_step`.
//!
//! One cell: timings are machine-dependent, so the study is not compared by `study check`
//! and gains nothing from sharding.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::data::images;
use crate::kernel::posterior::CovOperator;
use crate::linalg::{lanczos, LanczosParams};
use crate::plot::{Plot, Series, XScale};
use crate::process::schedule::Schedule;
use crate::sampler::{SamplerConfig, SamplerFamily};
use crate::score::LocalScore;
use crate::study::{
    ensure, Assembled, Figure, FigureName, Observer, ParamError, RunInfo, StudyError, StudyKind,
};
use crate::tensor::{
    batch, device_from_name, sample_tensor, step_with_noise_tensor, NoiseSource, TensorLocal,
    TensorMixtureScore, TensorSampleOptions, TensorScoreModel,
};

/// A mid-trajectory time of ddpm-linear: ln abar = -1, and a step of b = 0.1.
const LN_ABAR: f64 = -1.0;
/// a^2 of the timed step.
const A2: f64 = 0.9;
/// b of the timed step.
const B: f64 = 0.1;

/// Parameters of a `bench-gpu` study (keys as the binary's flags; defaults as its defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BenchGpuStudy {
    /// Device: cpu, or cuda / cuda:N.
    pub device: String,
    /// Image presets for the per-call rows.
    pub presets: Vec<String>,
    /// Batch sizes for the per-call rows.
    pub batches: Vec<usize>,
    /// Lanczos steps k for the `lgs<k>_step` rows.
    pub ks: Vec<usize>,
    /// Presets for the whole-chain rows.
    pub trajectory_presets: Vec<String>,
    /// Families for the whole-chain rows.
    pub trajectory_families: Vec<String>,
    /// Samples of each whole chain (0 skips the chains).
    pub trajectory_samples: usize,
    /// Steps T of each whole chain (ddpm-linear).
    pub trajectory_steps: usize,
    /// Timed repetitions per row (the median is reported).
    pub repeats: usize,
    /// Also time the f64 core on the CPU.
    pub f64_core: bool,
    /// Seed.
    pub seed: u64,
}

impl Default for BenchGpuStudy {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            presets: ["digits8", "digits32", "synth3x32"]
                .map(String::from)
                .to_vec(),
            batches: vec![64, 256, 1024],
            ks: vec![1, 3, 10],
            trajectory_presets: vec!["digits32".into(), "synth3x32".into()],
            trajectory_families: vec!["beta".into(), "lgs-3".into()],
            trajectory_samples: 1000,
            trajectory_steps: 100,
            repeats: 3,
            f64_core: true,
            seed: 0,
        }
    }
}

impl BenchGpuStudy {
    /// `cuda` or `cpu`: the device kind of the name.
    ///
    /// # Errors
    /// An unknown device.
    pub fn device_kind(&self) -> Result<&'static str, ParamError> {
        let dev = device_from_name(&self.device)
            .map_err(|e| ParamError::new("device", "cpu, cuda or cuda:N", e))?;
        Ok(if dev.is_cuda() { "cuda" } else { "cpu" })
    }

    fn families(&self) -> Result<Vec<SamplerFamily>, ParamError> {
        self.trajectory_families
            .iter()
            .map(|f| {
                SamplerFamily::from_name(f)
                    .map_err(|e| ParamError::new("trajectory-families", "sampler families", e))
            })
            .collect()
    }

    #[allow(clippy::ptr_arg)] // mapped over `&Vec<String>` items
    fn load(name: &String) -> Result<(String, crate::data::lowrank::LowRankMixture), StudyError> {
        let q = images::load(name).map_err(|e| ParamError::new("presets", "image presets", e))?;
        Ok((name.clone(), q))
    }

    #[allow(clippy::too_many_lines)]
    fn bench(&self) -> Result<Vec<Value>, StudyError> {
        let dev = device_from_name(&self.device)?;
        let dev_name = self.device_kind()?;
        let fams = self.families()?;
        let presets = self
            .presets
            .iter()
            .map(Self::load)
            .collect::<Result<Vec<_>, _>>()?;
        let traj_presets = self
            .trajectory_presets
            .iter()
            .map(Self::load)
            .collect::<Result<Vec<_>, _>>()?;
        let sync_dev = dev.clone();
        let sync = move || -> Result<(), StudyError> { Ok(sync_dev.synchronize()?) };
        let nosync = || -> Result<(), StudyError> { Ok(()) };
        let mut rows = Vec::new();
        let ln_abar = LN_ABAR;
        let (a2, b) = (A2, B);
        for (name, q0) in &presets {
            let d = q0.dim();
            let model = TensorMixtureScore::new(q0.clone(), &dev)?;
            let qt = std::sync::Arc::new(q0.marginal(ln_abar)?);
            for &nb in &self.batches {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                let xs: Vec<Vec<f64>> = qt
                    .sample(&mut rng, nb)
                    .iter()
                    .map(|x| x.as_slice().to_vec())
                    .collect();
                let zs: Vec<Vec<f64>> = (0..nb)
                    .map(|_| {
                        (0..d)
                            .map(|_| rng.sample(rand_distr::StandardNormal))
                            .collect()
                    })
                    .collect();
                let x = batch(&xs, &dev)?;
                let z = batch(&zs, &dev)?;
                let s = time(self.repeats, &sync, &mut || {
                    let l = model.at(&x, ln_abar)?;
                    l.score().sum_all()?.to_scalar::<f32>()?;
                    Ok(())
                })?;
                rows.push(row(
                    "score",
                    dev_name,
                    name,
                    d,
                    nb,
                    None,
                    s,
                    nb as f64,
                    "evaluations/s",
                ));
                let local = model.at(&x, ln_abar)?;
                let op = local.cov_operator(a2, b)?;
                let s = time(self.repeats, &sync, &mut || {
                    op(&z)?;
                    Ok(())
                })?;
                rows.push(row(
                    "cv_analytic",
                    dev_name,
                    name,
                    d,
                    nb,
                    None,
                    s,
                    nb as f64,
                    "products/s",
                ));
                let s = time(self.repeats, &sync, &mut || {
                    local.mixture().hvp_autograd(&x, &z)?;
                    Ok(())
                })?;
                rows.push(row(
                    "cv_autograd",
                    dev_name,
                    name,
                    d,
                    nb,
                    None,
                    s,
                    nb as f64,
                    "products/s",
                ));
                let sched = Schedule::from_name("ddpm-linear")?;
                let last = nb == *self.batches.iter().max().unwrap_or(&nb)
                    && name == &presets[presets.len() - 1].0;
                let ks: Vec<usize> = if last { self.ks.clone() } else { vec![3] };
                for k in ks {
                    let cfg = SamplerConfig::new(
                        SamplerFamily::from_name(&format!("lgs-{k}"))?,
                        sched.clone(),
                        100,
                    );
                    let xt = batch(&xs, &dev)?;
                    let s = time(self.repeats, &sync, &mut || {
                        step_with_noise_tensor(&model, &cfg, 50, &xt, &z)?;
                        Ok(())
                    })?;
                    rows.push(row(
                        &format!("lgs{k}_step"),
                        dev_name,
                        name,
                        d,
                        nb,
                        Some(k),
                        s,
                        nb as f64,
                        "sample-steps/s",
                    ));
                }
                if self.f64_core {
                    let s = time(self.repeats, &nosync, &mut || {
                        let _ = xs
                            .par_iter()
                            .map(|xi| qt.local(xi).map(|l| l.score().len()))
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(())
                    })?;
                    rows.push(row(
                        "score",
                        "f64-cpu",
                        name,
                        d,
                        nb,
                        None,
                        s,
                        nb as f64,
                        "evaluations/s",
                    ));
                    let locals = xs
                        .par_iter()
                        .map(|xi| qt.local(xi))
                        .collect::<Result<Vec<_>, _>>()?;
                    let s = time(self.repeats, &nosync, &mut || {
                        locals.par_iter().zip(&zs).for_each(|(l, zi)| {
                            let mut out = vec![0.0; d];
                            l.hvp(zi, &mut out);
                        });
                        Ok(())
                    })?;
                    rows.push(row(
                        "cv_analytic",
                        "f64-cpu",
                        name,
                        d,
                        nb,
                        None,
                        s,
                        nb as f64,
                        "products/s",
                    ));
                    let s = time(self.repeats, &nosync, &mut || {
                        xs.par_iter()
                            .zip(&zs)
                            .map(|(xi, zi)| {
                                let l = qt.local(xi)?;
                                let op = CovOperator { local: &l, a2, b };
                                Ok(lanczos(&op, zi, &LanczosParams::new(3))?.sqrt()?)
                            })
                            .collect::<Result<Vec<_>, StudyError>>()?;
                        Ok(())
                    })?;
                    rows.push(row(
                        "lgs3_step",
                        "f64-cpu",
                        name,
                        d,
                        nb,
                        Some(3),
                        s,
                        nb as f64,
                        "sample-steps/s",
                    ));
                }
            }
        }
        // Whole chains.
        if self.trajectory_samples > 0 {
            let sched = Schedule::from_name("ddpm-linear")?;
            for (name, q0) in &traj_presets {
                let model = TensorMixtureScore::new(q0.clone(), &dev)?;
                for f in &fams {
                    let mut cfg = SamplerConfig::new(*f, sched.clone(), self.trajectory_steps);
                    cfg.seed = self.seed;
                    cfg.clip_range = Some((-1.0, 1.0));
                    let opts = TensorSampleOptions {
                        chunk: self.trajectory_samples,
                        source: NoiseSource::Device,
                        noise_scale: 1.0,
                    };
                    // Warm-up: a 2-step chain of the same size (kernels compiled, memory pools).
                    let mut warm = cfg.clone();
                    warm.steps = 2;
                    sample_tensor(&model, &warm, self.trajectory_samples, &opts, |_| {})?;
                    sync()?;
                    let t0 = Instant::now();
                    let y = sample_tensor(&model, &cfg, self.trajectory_samples, &opts, |_| {})?;
                    let _: f32 = y.sum_all().and_then(|s| s.to_scalar())?;
                    let s = t0.elapsed().as_secs_f64();
                    rows.push(row(
                        &format!("trajectory_{}", f.name()),
                        dev_name,
                        name,
                        q0.dim(),
                        self.trajectory_samples,
                        None,
                        s,
                        (self.trajectory_samples * self.trajectory_steps) as f64,
                        "sample-steps/s",
                    ));
                }
            }
        }
        Ok(rows)
    }
}

/// Median wall seconds of `repeats` calls of `f` after one warm-up call; `sync` runs before
/// each clock read (device synchronisation).
fn time(
    repeats: usize,
    sync: &dyn Fn() -> Result<(), StudyError>,
    f: &mut dyn FnMut() -> Result<(), StudyError>,
) -> Result<f64, StudyError> {
    f()?;
    sync()?;
    let mut ts = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t0 = Instant::now();
        f()?;
        sync()?;
        ts.push(t0.elapsed().as_secs_f64());
    }
    ts.sort_by(f64::total_cmp);
    Ok(ts[ts.len() / 2])
}

#[allow(clippy::too_many_arguments)]
fn row(
    name: &str,
    device: &str,
    preset: &str,
    d: usize,
    batch: usize,
    k: Option<usize>,
    seconds: f64,
    work: f64,
    unit: &str,
) -> Value {
    let per_second = work / seconds;
    json!({"name": name, "device": device, "preset": preset, "D": d, "batch": batch,
           "k": k, "seconds": seconds, "per_second": per_second, "unit": unit})
}

fn draw(doc: &Value, dev_name: &str) -> Option<Plot> {
    let rows = doc["rows"].as_array().cloned().unwrap_or_default();
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for r in &rows {
        let name = r["name"].as_str().unwrap_or("").to_string();
        if !(name == "score" || name == "lgs3_step") {
            continue;
        }
        let key = (
            name,
            r["device"].as_str().unwrap_or("").to_string(),
            r["preset"].as_str().unwrap_or("").to_string(),
        );
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    // Colour: the preset; marker: score (circle) or LGS-3 step (triangle); dashed: f64 core.
    let mut presets: Vec<&str> = Vec::new();
    for (_, _, p) in &keys {
        if !presets.contains(&p.as_str()) {
            presets.push(p);
        }
    }
    let series: Vec<Series> = keys
        .iter()
        .map(|(n, d, p)| {
            let (x, y): (Vec<f64>, Vec<f64>) = rows
                .iter()
                .filter(|r| {
                    r["name"] == n.as_str()
                        && r["device"] == d.as_str()
                        && r["preset"] == p.as_str()
                })
                .filter_map(|r| Some((r["batch"].as_f64()?, r["per_second"].as_f64()?)))
                .unzip();
            let color = presets.iter().position(|q| q == p).unwrap_or(0);
            let s = Series::new(format!("{n} {d} {p}"), x, y)
                .with_color(color)
                .with_marker(usize::from(n == "lgs3_step"));
            if d == "f64-cpu" {
                s.dashed()
            } else {
                s
            }
        })
        .collect();
    if series.is_empty() {
        return None;
    }
    Some(Plot {
        x_scale: XScale::Log,
        title: format!("tensor path throughput, {dev_name} (dashed: f64 core, CPU)"),
        x_label: "batch size".into(),
        y_label: "score: evaluations/s; lgs3_step: sample-steps/s".into(),
        series,
        refs: Vec::new(),
        caption: Some(format!(
            "{} threads; median of {} after a warm-up",
            doc["threads"], doc["repeats"]
        )),
    })
}

impl StudyKind for BenchGpuStudy {
    fn kind(&self) -> &'static str {
        "bench-gpu"
    }

    fn validate(&self) -> Result<(), ParamError> {
        ensure(self.repeats >= 1, "repeats", ">= 1", self.repeats)?;
        ensure(
            self.trajectory_steps >= 1,
            "trajectory-steps",
            ">= 1",
            self.trajectory_steps,
        )?;
        ensure(
            !self.batches.contains(&0),
            "batches",
            "every batch >= 1",
            &self.batches,
        )?;
        ensure(!self.ks.contains(&0), "ks", "every k >= 1", &self.ks)?;
        self.device_kind()?;
        self.families()?;
        for p in self.presets.iter().chain(&self.trajectory_presets) {
            if images::shape(p).is_none() {
                return Err(ParamError::new(
                    "presets",
                    "image presets (digits8, digits32, synth3x32)",
                    p,
                ));
            }
        }
        Ok(())
    }

    fn cells(&self) -> Result<Vec<String>, StudyError> {
        Ok(vec![format!("bench {}", self.device)])
    }

    fn run_cells(&self, indices: &[usize], obs: &dyn Observer) -> Result<Vec<Value>, StudyError> {
        let mut out = Vec::new();
        for &i in indices {
            obs.cell_started(i, "bench");
            out.push(Value::Array(self.bench()?));
            obs.cell_done(i, "bench");
        }
        Ok(out)
    }

    fn assemble(&self, cells: &[Value], info: &RunInfo) -> Result<Assembled, StudyError> {
        let dev_name = self.device_kind()?;
        let rows: Vec<Value> = cells
            .iter()
            .flat_map(|c| c.as_array().cloned().unwrap_or_default())
            .collect();
        let mut table = String::new();
        for r in &rows {
            table += &format!(
                "{:<20} {:<8} {:<10} D {:>5} batch {:>5} k {:>3}: {:>9.4} s  {:>12.1} {}\n",
                r["name"].as_str().unwrap_or(""),
                r["device"].as_str().unwrap_or(""),
                r["preset"].as_str().unwrap_or(""),
                r["D"],
                r["batch"],
                r["k"].as_u64().map_or("-".to_string(), |k| k.to_string()),
                r["seconds"].as_f64().unwrap_or(f64::NAN),
                r["per_second"].as_f64().unwrap_or(f64::NAN),
                r["unit"].as_str().unwrap_or(""),
            );
        }
        let doc = json!({
            "device": dev_name,
            "device_name": self.device,
            "covlab_version": env!("CARGO_PKG_VERSION"),
            "threads": info.threads,
            "repeats": self.repeats,
            "trajectory_steps": self.trajectory_steps,
            "schedule": "ddpm-linear",
            "ln_abar": LN_ABAR, "a2": A2, "b": B,
            "wall_time_s": info.wall_time_s,
            "rows": rows,
        });
        let figures = draw(&doc, dev_name)
            .map(|f| vec![(String::new(), Figure::Plot(f))])
            .unwrap_or_default();
        Ok(Assembled {
            doc,
            figures,
            table,
        })
    }

    fn figures(&self) -> Vec<FigureName> {
        let plotted = !self.presets.is_empty() && !self.batches.is_empty();
        if plotted {
            vec![FigureName::plot("")]
        } else {
            Vec::new()
        }
    }

    fn seeds(&self) -> Vec<u64> {
        vec![self.seed]
    }

    fn device(&self) -> String {
        self.device.clone()
    }
}
