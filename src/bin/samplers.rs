//! `samplers`: MMD of CPU reverse samplers against exact draws of q_0, vs T, per family
//! (the OCM paper's toy table), with cost counts through the score seam.
//! Exit code 2 on bad input.

use std::path::PathBuf;
use std::time::Instant;

mod common;

use clap::Parser;
use common::{bad, failed, finish, Outcome};
use covlab::lowrank::LowRankScore;
use covlab::metrics::{frechet_distance_sq, mean_log_likelihood, mmd2_unbiased, MMD_BANDWIDTHS};
use covlab::plot::{LogLogFigure, Series};
use covlab::sampler::{
    analytic_trace_table, clip_range_of, sample, KernelKind, SamplerConfig, SamplerFamily,
};
use covlab::schedule::Schedule;
use covlab::score::{Counted, MixtureScore, ScoreModel};
use indicatif::{ProgressBar, ProgressStyle};
use nalgebra::DVector;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

/// MMD of reverse samplers against exact samples of q_0, per family and T.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Comma list of presets or mixture JSON files.
    #[arg(long, value_delimiter = ',', default_value = "mog40,grid9")]
    data: Vec<String>,
    /// Schedule (ddpm-linear = the OCM toy setting: N = 1000, T evenly spaced steps).
    #[arg(long, default_value = "ddpm-linear")]
    schedule: String,
    /// Comma list of families: beta, beta-tilde, analytic, diag, full, hutchinson-<M>, lgs-<k>.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "beta,beta-tilde,analytic,diag,full,lgs-1,lgs-2,lgs-4,lgs-8,hutchinson-1,hutchinson-4,hutchinson-16"
    )]
    families: Vec<String>,
    /// The T values.
    #[arg(long, value_delimiter = ',', default_value = "5,10,25,50,100,200,1000")]
    steps: Vec<usize>,
    /// Samples per cell (and exact reference samples per data set).
    #[arg(long, default_value_t = 10_000)]
    samples: usize,
    /// Kernel: ddpm or ddim (OCM-DDIM).
    #[arg(long, default_value = "ddpm")]
    kernel: String,
    /// LGS batch L (1 = a Lanczos run per step).
    #[arg(long, default_value_t = 1)]
    lgs_batch: usize,
    /// LGSb: LGS on the last fraction of the steps (1 = all).
    #[arg(long, default_value_t = 1.0)]
    lgsb_fraction: f64,
    /// Hutchinson guard probes at the last LGS step (0 = none).
    #[arg(long, default_value_t = 0)]
    guard: usize,
    /// Data points for Analytic-DPM's E||score||^2 table.
    #[arg(long, default_value_t = 2000)]
    analytic_samples: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: all cores). Results are identical for any value.
    #[arg(long)]
    threads: Option<usize>,
    /// JSON output.
    #[arg(long, default_value = "studies/results/samplers.json")]
    json: PathBuf,
    /// Figure stem: writes <stem>_<data>.svg/.png.
    #[arg(long, default_value = "figures/samplers")]
    figure: PathBuf,
}

fn main() {
    let args = Args::parse();
    finish(run(&args));
}

fn label(data: &str) -> String {
    if covlab::presets::PRESET_NAMES.contains(&data) {
        data.to_string()
    } else {
        std::path::Path::new(data)
            .file_stem()
            .map_or_else(|| "data".to_string(), |s| s.to_string_lossy().to_string())
    }
}

fn run(args: &Args) -> Result<(), Outcome> {
    if args.steps.is_empty() || args.steps.contains(&0) {
        return Err(Outcome::from(bad(anyhow::anyhow!(
            "--steps: every T must be >= 1"
        ))));
    }
    if args.samples < 4 {
        return Err(Outcome::from(bad(anyhow::anyhow!(
            "--samples must be >= 4 (MMD standard error)"
        ))));
    }
    if args.analytic_samples == 0 {
        return Err(Outcome::from(bad(anyhow::anyhow!(
            "--analytic-samples must be >= 1"
        ))));
    }
    if args.lgs_batch == 0 {
        return Err(Outcome::from(bad(anyhow::anyhow!(
            "--lgs-batch must be >= 1"
        ))));
    }
    if !(args.lgsb_fraction > 0.0 && args.lgsb_fraction <= 1.0) {
        return Err(Outcome::from(bad(anyhow::anyhow!(
            "--lgsb-fraction must be in (0, 1]"
        ))));
    }
    if let Some(t) = args.threads {
        if t == 0 {
            return Err(Outcome::from(bad(anyhow::anyhow!(
                "--threads must be >= 1"
            ))));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .map_err(failed)?;
    }
    let kernel = match args.kernel.as_str() {
        "ddpm" => KernelKind::Ddpm,
        "ddim" => KernelKind::Ddim,
        other => {
            return Err(Outcome::from(bad(anyhow::anyhow!(
                "--kernel: unknown `{other}` (ddpm or ddim)"
            ))))
        }
    };
    let schedule = Schedule::from_name(&args.schedule).map_err(bad)?;
    let families = args
        .families
        .iter()
        .map(|f| {
            SamplerFamily::from_name(f).map(|fam| match fam {
                SamplerFamily::Lgs(mut o) => {
                    o.batch = args.lgs_batch;
                    o.fraction = args.lgsb_fraction;
                    o.guard = (args.guard > 0).then_some(args.guard);
                    SamplerFamily::Lgs(o)
                }
                other => other,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let mut datas = Vec::new();
    for d in &args.data {
        let data = if covlab::image_data::shape(d).is_some() {
            Data::LowRank(covlab::image_data::load(d).map_err(bad)?)
        } else {
            Data::Dense(covlab::presets::load(d).map_err(bad)?)
        };
        datas.push((label(d), data));
    }
    for &t in &args.steps {
        schedule.grid(t, 0.0).map_err(bad)?;
    }

    let cells = datas.len() * (families.len() * args.steps.len() + 1);
    let pb = ProgressBar::new(cells as u64);
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .map_err(failed)?,
    );
    let t_all = Instant::now();
    let mut rows = Vec::new();
    for (name, data) in &datas {
        let ctx = Ctx {
            args,
            schedule: &schedule,
            families: &families,
            kernel,
            pb: &pb,
        };
        match data {
            Data::Dense(q0) => run_data(
                &ctx,
                &mut rows,
                name,
                &Counted::new(MixtureScore::new(q0.clone())),
                &|rng, n| q0.sample(rng, n),
                &|xs| {
                    let ll = mean_log_likelihood(q0, xs)?;
                    Ok((ll.value, ll.se))
                },
                clip_range_of(q0),
            )?,
            // Image presets live in [-1, 1] (digits by construction): the range of the clip.
            Data::LowRank(q0) => run_data(
                &ctx,
                &mut rows,
                name,
                &Counted::new(LowRankScore::new(q0.clone())),
                &|rng, n| q0.sample(rng, n),
                &|xs| {
                    let v = xs
                        .iter()
                        .map(|x| q0.ln_pdf(x.as_slice()))
                        .collect::<Result<Vec<_>, _>>()?;
                    let n = v.len() as f64;
                    let m = v.iter().sum::<f64>() / n;
                    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
                    Ok((m, (var / n).sqrt()))
                },
                (-1.0, 1.0),
            )?,
        }
    }
    pb.finish_and_clear();
    let wall = t_all.elapsed().as_secs_f64();

    // Table: MMD^2 (sum kernel) x 1e3 per family and T.
    for (name, _) in &datas {
        println!("\n{name}: MMD^2_u (sum of Gaussian kernels h = 2^-2..2^2) x 1e3, +- s.e.; schedule {}, kernel {}, {} samples", schedule.name(), args.kernel, args.samples);
        print!("{:>14}", "family \\ T");
        for t in &args.steps {
            print!(" {:>15}", t);
        }
        println!();
        let mut fams: Vec<String> = vec![];
        for r in &rows {
            let f = r["family"].as_str().unwrap_or("").to_string();
            if r["data"] == name.as_str() && !fams.contains(&f) {
                fams.push(f);
            }
        }
        if let Some(r) = rows
            .iter()
            .find(|r| r["data"] == name.as_str() && r["family"] == "exact")
        {
            println!(
                "{:>14} {:>7.3}±{:<7.3} (exact draws vs the reference: the noise floor)",
                "exact",
                r["mmd"].as_f64().unwrap_or(f64::NAN) * 1e3,
                r["mmd_se"].as_f64().unwrap_or(f64::NAN) * 1e3
            );
        }
        for f in fams.iter().filter(|f| f.as_str() != "exact") {
            print!("{f:>14}");
            for r in rows
                .iter()
                .filter(|r| r["data"] == name.as_str() && r["family"] == f.as_str())
            {
                print!(
                    " {:>7.3}±{:<7.3}",
                    r["mmd"].as_f64().unwrap_or(f64::NAN) * 1e3,
                    r["mmd_se"].as_f64().unwrap_or(f64::NAN) * 1e3
                );
            }
            println!();
        }
        draw(args, name, &rows).map_err(failed)?;
    }
    println!("\nwall time {wall:.1} s");

    let doc = json!({
        "study": "samplers",
        "covlab_version": env!("CARGO_PKG_VERSION"),
        "schedule": schedule.name(),
        "kernel": args.kernel,
        "seed": args.seed,
        "mmd_kind": "unbiased MMD^2 with the sum of Gaussian kernels, bandwidths 0.25, 0.5, 1, 2, 4; mmd_per_bandwidth in that order",
        "lgs": {"batch": args.lgs_batch, "fraction": args.lgsb_fraction, "guard": args.guard},
        "wall_s": wall,
        "rows": rows,
    });
    common::write_json(&args.json, &doc).map_err(failed)?;
    Ok(())
}

/// The settings shared by every data set's cells.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    args: &'a Args,
    schedule: &'a Schedule,
    families: &'a [SamplerFamily],
    kernel: KernelKind,
    pb: &'a ProgressBar,
}

/// A data set: a dense-component preset (or file) or an image (low-rank) preset.
enum Data {
    Dense(covlab::mixture::Mixture),
    LowRank(covlab::lowrank::LowRankMixture),
}

/// Draws `n` exact samples.
type Draw<'a> = &'a dyn Fn(&mut ChaCha8Rng, usize) -> Vec<DVector<f64>>;
/// Mean exact log-likelihood and its standard error.
type LogLik<'a> = &'a dyn Fn(&[DVector<f64>]) -> anyhow::Result<(f64, f64)>;

/// Runs every (T, family) cell of one data set through `model` and appends the rows.
#[allow(clippy::too_many_arguments)]
fn run_data<M: ScoreModel>(
    ctx: &Ctx<'_>,
    rows: &mut Vec<serde_json::Value>,
    name: &str,
    model: &Counted<M>,
    draw: Draw<'_>,
    loglik: LogLik<'_>,
    range: (f64, f64),
) -> Result<(), Outcome> {
    let Ctx {
        args,
        schedule,
        families,
        kernel,
        pb,
    } = *ctx;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x5eed_0000);
    let reference = draw(&mut rng, args.samples);
    let mut rng2 = ChaCha8Rng::seed_from_u64(args.seed ^ 0x5eed_0001);
    let exact = draw(&mut rng2, args.samples);
    let data_for_analytic = draw(&mut rng2, args.analytic_samples);
    // Floor: exact draws vs exact draws.
    let est = mmd2_unbiased(&exact, &reference, &MMD_BANDWIDTHS).map_err(failed)?;
    let ll = loglik(&exact).map_err(failed)?;
    rows.push(json!({
        "data": name, "family": "exact", "T": 0, "samples": args.samples,
        "mmd": est.sum.mmd2, "mmd_se": est.sum.se,
        "mmd_per_bandwidth": est.per_bandwidth.iter().map(|v| v.mmd2).collect::<Vec<_>>(),
        "frechet_sq": frechet_distance_sq(&exact, &reference).map_err(failed)?,
        "loglik": ll.0, "loglik_se": ll.1,
    }));
    pb.inc(1);
    for &t in &args.steps {
        let table = analytic_trace_table(
            model.inner(),
            schedule,
            t,
            0.0,
            &data_for_analytic,
            args.seed,
        )
        .map_err(failed)?;
        for fam in families {
            pb.set_message(format!("{name} {} T={t}", fam.name()));
            let mut cfg = SamplerConfig::new(*fam, (*schedule).clone(), t);
            cfg.kernel = kernel;
            cfg.seed = args.seed;
            cfg.clip_range = Some(range);
            cfg.analytic_trace = Some(table.clone());
            model.reset();
            let t0 = Instant::now();
            let xs = sample(model, &cfg, args.samples).map_err(failed)?;
            let wall = t0.elapsed().as_secs_f64();
            let counts = model.counts();
            let est = mmd2_unbiased(&xs, &reference, &MMD_BANDWIDTHS).map_err(failed)?;
            let ll = loglik(&xs).map_err(failed)?;
            let per = |c: u64| c as f64 / (args.samples * t) as f64;
            rows.push(json!({
                "data": name, "family": fam.name(), "T": t, "samples": args.samples,
                "mmd": est.sum.mmd2, "mmd_se": est.sum.se,
                "mmd_per_bandwidth": est.per_bandwidth.iter().map(|v| v.mmd2).collect::<Vec<_>>(),
                "frechet_sq": frechet_distance_sq(&xs, &reference).map_err(failed)?,
                "loglik": ll.0, "loglik_se": ll.1,
                "score_evals_per_step": per(counts.score),
                "hvp_per_step": per(counts.hvp),
                "oracle_per_step": per(counts.oracle),
                "sampling_wall_s": wall,
            }));
            pb.inc(1);
        }
    }
    Ok(())
}

fn draw(args: &Args, name: &str, rows: &[serde_json::Value]) -> anyhow::Result<()> {
    let mut fams: Vec<String> = vec![];
    for r in rows {
        let f = r["family"].as_str().unwrap_or("").to_string();
        if r["data"] == name && f != "exact" && !fams.contains(&f) {
            fams.push(f);
        }
    }
    let mut series = Vec::new();
    for (i, f) in fams.iter().enumerate() {
        let sel: Vec<&serde_json::Value> = rows
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
    let fig = LogLogFigure {
        title: format!("Sampler MMD^2 vs T: {name}"),
        x_label: "T (number of reverse steps)".to_string(),
        y_label: "unbiased MMD^2 (sum kernel) to exact q0 samples".to_string(),
        series,
        refs: vec![],
        caption: Some(format!(
            "{} samples; exact-vs-exact s.e. {floor:.1e} (values below are noise; non-positive values not drawn)",
            args.samples
        )),
    };
    let stem = PathBuf::from(format!("{}_{name}", args.figure.display()));
    if let Some(dir) = stem.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    fig.save(&stem)?;
    Ok(())
}
