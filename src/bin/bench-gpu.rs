//! `bench-gpu` (feature `candle`): throughput of the tensor path on a device (`cpu`, `cuda`),
//! beside the rayon-parallel f64 core on the CPU for the ratio.
//!
//! Rows, each after a warm-up and with the device synchronised before the clock is read
//! (median of `--repeats` timings):
//! - `score`: score evaluations per second (batch B, preset of dimension D);
//! - `cv_analytic`, `cv_autograd`: covariance-vector products C v per second (the
//!   cancellation-free analytic form; reverse-mode autograd of <score, v>);
//! - `lgs<k>_step`: whole DDPM `lgs-k` steps (score, k products, batched Lanczos, mean) per
//!   second, sample-steps/s;
//! - `trajectory_<family>`: a whole `T`-step chain of N samples (`sample_tensor`), in
//!   sample-steps per second and wall seconds;
//! - the same `score`, `cv` and `lgs3_step` rows for the f64 core (`device: "f64-cpu"`).
//!
//! Writes `{"device", "rows": [{"name", "device", "preset", "D", "batch", "k", "seconds",
//! "per_second", "unit"}], ...}` and a figure of throughput against batch size per preset.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use covlab::gpu::{
    batch, device_from_name, sample_tensor, step_with_noise_tensor, NoiseSource, TensorLocal,
    TensorMixtureScore, TensorSampleOptions, TensorScoreModel,
};
use covlab::image_data;
use covlab::lanczos::{lanczos, LanczosParams, LinearOperator};
use covlab::lowrank::LowRankLocal;
use covlab::plot::{LogLogFigure, Series};
use covlab::sampler::{SamplerConfig, SamplerFamily};
use covlab::schedule::Schedule;
use covlab::score::LocalScore;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::{json, Value};

mod common;

use common::{bad, failed, Outcome};

/// Throughput of the tensor path (score, C v, LGS steps, whole chains) on a device.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Device: cpu, or cuda / cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Comma list of image presets for the per-call rows.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "digits8,digits32,synth3x32"
    )]
    presets: Vec<String>,
    /// Comma list of batch sizes for the per-call rows.
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024")]
    batches: Vec<usize>,
    /// Comma list of Lanczos steps k for the `lgs<k>_step` rows (at the largest preset and batch).
    #[arg(long, value_delimiter = ',', default_value = "1,3,10")]
    ks: Vec<usize>,
    /// Comma list of presets for the whole-chain rows.
    #[arg(long, value_delimiter = ',', default_value = "digits32,synth3x32")]
    trajectory_presets: Vec<String>,
    /// Comma list of families for the whole-chain rows.
    #[arg(long, value_delimiter = ',', default_value = "beta,lgs-3")]
    trajectory_families: Vec<String>,
    /// Samples of each whole chain (0 skips the chains).
    #[arg(long, default_value_t = 1000)]
    trajectory_samples: usize,
    /// Steps T of each whole chain (ddpm-linear).
    #[arg(long, default_value_t = 100)]
    trajectory_steps: usize,
    /// Timed repetitions per row (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Also time the f64 core on the CPU (for the ratio).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    f64_core: bool,
    /// JSON report (default studies/results/bench_gpu_<device>.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Figure stem (default figures/bench_gpu_<device>).
    #[arg(long)]
    figure: Option<String>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() {
    common::init_candle_threads();
    common::finish(run(&Args::parse()));
}

/// Median wall seconds of `repeats` calls of `f` after one warm-up call; `sync` runs before
/// each clock read (device synchronisation).
fn time(
    repeats: usize,
    sync: &dyn Fn() -> anyhow::Result<()>,
    f: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
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

/// `v -> (b^2 H v + b v) / a^2` from the f64 core.
struct CoreOp<'a> {
    local: &'a LowRankLocal,
    a2: f64,
    b: f64,
}

impl LinearOperator for CoreOp<'_> {
    fn dim(&self) -> usize {
        self.local.score().len()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        self.local.hvp(v, out);
        covlab::posterior::hvp_to_cov(out, v, self.a2, self.b);
    }
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
    eprintln!(
        "{name:<20} {device:<8} {preset:<10} D {d:>5} batch {batch:>5} k {:>3}: {seconds:>9.4} s  {per_second:>12.1} {unit}",
        k.map_or("-".to_string(), |k| k.to_string())
    );
    json!({"name": name, "device": device, "preset": preset, "D": d, "batch": batch,
           "k": k, "seconds": seconds, "per_second": per_second, "unit": unit})
}

fn run(args: &Args) -> Result<(), Outcome> {
    if args.repeats == 0 || args.batches.contains(&0) || args.ks.contains(&0) {
        return Err(bad(anyhow::anyhow!(
            "--repeats, --batches and --ks must be >= 1"
        ))
        .into());
    }
    let dev = device_from_name(&args.device).map_err(|e| bad(anyhow::anyhow!("--device: {e}")))?;
    let dev_name = if dev.is_cuda() { "cuda" } else { "cpu" };
    let fams = args
        .trajectory_families
        .iter()
        .map(|f| {
            SamplerFamily::from_name(f)
                .map_err(|e| bad(anyhow::anyhow!("--trajectory-families: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let load = |name: &String| {
        image_data::load(name).map_err(|e| Outcome::from(bad(anyhow::anyhow!("--presets: {e}"))))
    };
    let presets = args
        .presets
        .iter()
        .map(|n| Ok((n.clone(), load(n)?)))
        .collect::<Result<Vec<_>, Outcome>>()?;
    let traj_presets = args
        .trajectory_presets
        .iter()
        .map(|n| Ok((n.clone(), load(n)?)))
        .collect::<Result<Vec<_>, Outcome>>()?;
    let sync_dev = dev.clone();
    let sync = move || -> anyhow::Result<()> { Ok(sync_dev.synchronize()?) };
    let nosync = || -> anyhow::Result<()> { Ok(()) };
    let started = Instant::now();
    let mut rows = Vec::new();
    // A mid-trajectory time of ddpm-linear: ln abar = -1, and a step of b = 0.1.
    let ln_abar = -1.0f64;
    let (a2, b) = (0.9, 0.1);
    let n_calls = presets.len() * args.batches.len();
    let bar = ProgressBar::new((n_calls + traj_presets.len() * fams.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .map_err(failed)?,
    );
    for (name, q0) in &presets {
        let d = q0.dim();
        let model = TensorMixtureScore::new(q0.clone(), &dev).map_err(failed)?;
        let qt = std::sync::Arc::new(q0.marginal(ln_abar).map_err(failed)?);
        for &nb in &args.batches {
            bar.set_message(format!("{name} batch {nb}"));
            let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
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
            let x = batch(&xs, &dev).map_err(failed)?;
            let z = batch(&zs, &dev).map_err(failed)?;
            let s = time(args.repeats, &sync, &mut || {
                let l = model.at(&x, ln_abar)?;
                l.score().sum_all()?.to_scalar::<f32>()?;
                Ok(())
            })
            .map_err(failed)?;
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
            let local = model.at(&x, ln_abar).map_err(failed)?;
            let op = local.cov_operator(a2, b).map_err(failed)?;
            let s = time(args.repeats, &sync, &mut || {
                op(&z)?;
                Ok(())
            })
            .map_err(failed)?;
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
            let s = time(args.repeats, &sync, &mut || {
                local.mixture().hvp_autograd(&x, &z)?;
                Ok(())
            })
            .map_err(failed)?;
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
            let sched = Schedule::from_name("ddpm-linear").map_err(failed)?;
            let last = nb == *args.batches.iter().max().unwrap_or(&nb)
                && name == &presets[presets.len() - 1].0;
            let ks: Vec<usize> = if last { args.ks.clone() } else { vec![3] };
            for k in ks {
                let cfg = SamplerConfig::new(
                    SamplerFamily::from_name(&format!("lgs-{k}")).map_err(failed)?,
                    sched.clone(),
                    100,
                );
                let xt = batch(&xs, &dev).map_err(failed)?;
                let s = time(args.repeats, &sync, &mut || {
                    step_with_noise_tensor(&model, &cfg, 50, &xt, &z)?;
                    Ok(())
                })
                .map_err(failed)?;
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
            if args.f64_core {
                let s = time(args.repeats, &nosync, &mut || {
                    let _ = xs
                        .par_iter()
                        .map(|xi| qt.local(xi).map(|l| l.score().len()))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(())
                })
                .map_err(failed)?;
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
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(failed)?;
                let s = time(args.repeats, &nosync, &mut || {
                    locals.par_iter().zip(&zs).for_each(|(l, zi)| {
                        let mut out = vec![0.0; d];
                        l.hvp(zi, &mut out);
                    });
                    Ok(())
                })
                .map_err(failed)?;
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
                let s = time(args.repeats, &nosync, &mut || {
                    xs.par_iter()
                        .zip(&zs)
                        .map(|(xi, zi)| {
                            let l = qt.local(xi)?;
                            let op = CoreOp { local: &l, a2, b };
                            Ok(lanczos(&op, zi, &LanczosParams::new(3))?.sqrt()?)
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    Ok(())
                })
                .map_err(failed)?;
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
            bar.inc(1);
        }
    }
    // Whole chains.
    if args.trajectory_samples > 0 {
        let sched = Schedule::from_name("ddpm-linear").map_err(failed)?;
        for (name, q0) in &traj_presets {
            let model = TensorMixtureScore::new(q0.clone(), &dev).map_err(failed)?;
            for f in &fams {
                bar.set_message(format!("{name} {} chain", f.name()));
                let mut cfg = SamplerConfig::new(*f, sched.clone(), args.trajectory_steps);
                cfg.seed = args.seed;
                cfg.clip_range = Some((-1.0, 1.0));
                let opts = TensorSampleOptions {
                    chunk: args.trajectory_samples,
                    source: NoiseSource::Device,
                    noise_scale: 1.0,
                };
                // Warm-up: a 2-step chain of the same size (kernels compiled, memory pools).
                let mut warm = cfg.clone();
                warm.steps = 2;
                sample_tensor(&model, &warm, args.trajectory_samples, &opts, |_| {})
                    .map_err(failed)?;
                sync().map_err(failed)?;
                let t0 = Instant::now();
                let y = sample_tensor(&model, &cfg, args.trajectory_samples, &opts, |_| {})
                    .map_err(failed)?;
                let _: f32 = y.sum_all().and_then(|s| s.to_scalar()).map_err(failed)?;
                let s = t0.elapsed().as_secs_f64();
                rows.push(row(
                    &format!("trajectory_{}", f.name()),
                    dev_name,
                    name,
                    q0.dim(),
                    args.trajectory_samples,
                    None,
                    s,
                    (args.trajectory_samples * args.trajectory_steps) as f64,
                    "sample-steps/s",
                ));
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("studies/results/bench_gpu_{dev_name}.json")));
    let doc = json!({
        "device": dev_name,
        "device_name": args.device,
        "covlab_version": env!("CARGO_PKG_VERSION"),
        "threads": rayon::current_num_threads(),
        "repeats": args.repeats,
        "trajectory_steps": args.trajectory_steps,
        "schedule": "ddpm-linear",
        "ln_abar": ln_abar, "a2": a2, "b": b,
        "wall_time_s": started.elapsed().as_secs_f64(),
        "rows": rows,
    });
    common::write_json(&json_path, &doc).map_err(failed)?;
    let stem = args
        .figure
        .clone()
        .unwrap_or_else(|| format!("figures/bench_gpu_{dev_name}"));
    draw(&doc, &stem, dev_name).map_err(failed)?;
    Ok(())
}

/// Throughput against batch size: one line per (row name, device, preset).
fn draw(doc: &Value, stem: &str, dev_name: &str) -> anyhow::Result<()> {
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
        return Ok(());
    }
    LogLogFigure {
        title: format!("tensor path throughput, {dev_name} (dashed: f64 core, CPU)"),
        x_label: "batch size".into(),
        y_label: "score: evaluations/s; lgs3_step: sample-steps/s".into(),
        series,
        refs: Vec::new(),
        caption: Some(format!(
            "{} threads; median of {} after a warm-up",
            doc["threads"], doc["repeats"]
        )),
    }
    .save(std::path::Path::new(stem))?;
    Ok(())
}
