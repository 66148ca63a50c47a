//! `validate` (feature `candle`): the tensor path against the f64 core on image mixtures.
//!
//! 1. Per step, for the same x_t and z at steps T, T/2 and 1: the tensor posterior mean, the
//!    analytic H v against autograd H v, each family's step against the f64 sampler's
//!    `step_with_noise`, and (D <= 64) the tensor `lgs-D` step against the f64 `full` step.
//! 2. Whole trajectories with shared x_T and noises: endpoint distance, per family.
//!
//! Prints a table, writes `{"device", "checks": [{"name", "data", "family", "value",
//! "tolerance", "pass"}]}`, exits 1 when a check fails, 2 on bad input. `--perturb F` scales
//! the tensor chain's noise by F (a deliberately wrong covariance F^2 C) to check the checks.

use std::path::PathBuf;

use clap::Parser;
use covlab::gpu::candle_core::{Device, Tensor};
use covlab::gpu::{
    batch, ddpm_trajectory, relative_error as rel, TensorMixture, TensorNoise, TensorStep,
};
use covlab::image_data;
use covlab::lowrank::LowRankScore;
use covlab::sampler::{clip_bounds, step_with_noise, LgsOptions, SamplerConfig, SamplerFamily};
use covlab::schedule::Schedule;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

mod common;

use common::{bad, failed, BadInput, Outcome};

/// The tensor path (candle) against the f64 core: per-step and trajectory checks.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Device: cpu, or cuda (needs the `cuda` feature and a GPU).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Comma list of image presets: digits8, digits32, synth3x32.
    #[arg(long, value_delimiter = ',', default_value = "digits8,digits32")]
    data: Vec<String>,
    /// Samples per batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Number of steps T (ddpm-linear).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Comma list of families: beta, beta-tilde, diag, lgs-<k>.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "beta,beta-tilde,diag,lgs-3"
    )]
    families: Vec<String>,
    /// Scale of the tensor chain's noise (1 = correct; != 1 must make the checks fail).
    #[arg(long, default_value_t = 1.0)]
    perturb: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// JSON report.
    #[arg(long, default_value = "studies/results/validate.json")]
    json: PathBuf,
}

/// Documented tolerances (relative, f32 vs f64): the targets.
const TOL_MEAN: f64 = 1e-5;
const TOL_STEP: f64 = 1e-4;
const TOL_HVP: f64 = 1e-4;
const TOL_TRAJ: f64 = 1e-4;

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            common::finish(Err(e));
        }
    }
}

fn parse_family(name: &str) -> Result<(SamplerFamily, TensorNoise), BadInput> {
    match name {
        "beta" => Ok((SamplerFamily::Beta, TensorNoise::Beta)),
        "beta-tilde" => Ok((SamplerFamily::BetaTilde, TensorNoise::BetaTilde)),
        "diag" => Ok((SamplerFamily::Diag, TensorNoise::Diag)),
        _ => match name
            .strip_prefix("lgs-")
            .and_then(|k| k.parse::<usize>().ok())
        {
            Some(k) if k >= 1 => Ok((SamplerFamily::Lgs(LgsOptions::new(k)), TensorNoise::Lgs(k))),
            _ => Err(bad(anyhow::anyhow!(
                "--families: unknown `{name}` (beta, beta-tilde, diag, lgs-<k> with k >= 1)"
            ))),
        },
    }
}

fn device(name: &str) -> Result<Device, Outcome> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(|e| {
            bad(anyhow::anyhow!(
                "--device cuda: {e} (build with --features cuda, run on a GPU machine)"
            ))
            .into()
        }),
        other => Err(bad(anyhow::anyhow!("--device: unknown `{other}` (cpu or cuda)")).into()),
    }
}

fn run(args: &Args) -> Result<bool, Outcome> {
    if args.batch == 0 || args.steps < 2 {
        return Err(bad(anyhow::anyhow!("--batch must be >= 1 and --steps >= 2")).into());
    }
    if !(args.perturb.is_finite() && args.perturb > 0.0) {
        return Err(bad(anyhow::anyhow!("--perturb must be finite and > 0")).into());
    }
    let dev = device(&args.device)?;
    let fams = args
        .families
        .iter()
        .map(|f| parse_family(f))
        .collect::<Result<Vec<_>, _>>()?;
    let sched = Schedule::from_name("ddpm-linear").map_err(bad)?;
    let grid = sched.grid(args.steps, 0.0).map_err(bad)?;
    let t = args.steps;
    let mut checks = Vec::new();
    let mut push = |name: String, data: &str, family: &str, value: f64, tol: f64| {
        let pass = value.is_finite() && value <= tol;
        println!(
            "{:<44} {:<10} {:<11} {:>10.3e} {:>8.0e} {}",
            name,
            data,
            family,
            value,
            tol,
            if pass { "pass" } else { "FAIL" }
        );
        checks.push(json!({"name": name, "data": data, "family": family, "value": value, "tolerance": tol, "pass": pass}));
        pass
    };
    println!(
        "{:<44} {:<10} {:<11} {:>10} {:>8} result",
        "check", "data", "family", "value", "tol"
    );
    let mut all = true;
    for name in &args.data {
        let q0 = image_data::load(name).map_err(bad)?;
        let d = q0.dim();
        let model = LowRankScore::new(q0.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let mut normal = |n: usize| -> Vec<Vec<f64>> {
            (0..n)
                .map(|_| {
                    (0..d)
                        .map(|_| rng.sample(rand_distr::StandardNormal))
                        .collect()
                })
                .collect()
        };
        // 1. Per step.
        for i in [t, t / 2, 1] {
            let qt = std::sync::Arc::new(q0.marginal(grid.ln_abar[i]).map_err(failed)?);
            let tm = TensorMixture::new(&qt, &dev).map_err(failed)?;
            let mut srng = ChaCha8Rng::seed_from_u64(args.seed ^ (i as u64) << 8);
            let xs: Vec<Vec<f64>> = qt
                .sample(&mut srng, args.batch)
                .iter()
                .map(|x| x.as_slice().to_vec())
                .collect();
            let zs = normal(args.batch);
            let vs = normal(args.batch);
            let (x, z, v) = (
                batch(&xs, &dev).map_err(failed)?,
                batch(&zs, &dev).map_err(failed)?,
                batch(&vs, &dev).map_err(failed)?,
            );
            let st = grid.step(i);
            let (a, b) = (st.a2.sqrt(), st.b);
            let mean = tm
                .posterior_mean(&x, a, b)
                .and_then(|m| Ok(m.to_vec2::<f32>()?))
                .map_err(failed)?;
            let want: Vec<Vec<f64>> = xs
                .iter()
                .map(|xi| {
                    let s = qt
                        .local(xi)
                        .map(|l| covlab::score::LocalScore::score(&l).to_vec())
                        .unwrap_or_default();
                    xi.iter().zip(&s).map(|(x, g)| (x + b * g) / a).collect()
                })
                .collect();
            all &= push(
                format!("step {i}: posterior mean"),
                name,
                "-",
                rel(&mean, &want),
                TOL_MEAN,
            );
            let h1 = tm
                .hvp(&x, &v)
                .and_then(|h| Ok(h.to_vec2::<f32>()?))
                .map_err(failed)?;
            let h2 = tm
                .hvp_autograd(&x, &v)
                .and_then(|h| Ok(h.to_vec2::<f32>()?))
                .map_err(failed)?;
            let h2f: Vec<Vec<f64>> = h2
                .iter()
                .map(|r| r.iter().map(|&v| f64::from(v)).collect())
                .collect();
            all &= push(
                format!("step {i}: analytic vs autograd H v"),
                name,
                "-",
                rel(&h1, &h2f),
                TOL_HVP,
            );
            let (lower, upper) = clip_bounds(&grid, i, None);
            let ts = TensorStep {
                a2: st.a2,
                b,
                lower,
                upper,
            };
            let mut tensor_families = fams.clone();
            if d <= 64 {
                tensor_families.push((SamplerFamily::Full, TensorNoise::Lgs(d)));
            }
            for (fam, noise) in &tensor_families {
                let zt = z
                    .affine(args.perturb, 0.0)
                    .map_err(|e| failed(anyhow::anyhow!(e)))?;
                let y = tm
                    .ddpm_step(&x, &zt, ts, *noise)
                    .and_then(|y| Ok(y.to_vec2::<f32>()?))
                    .map_err(failed)?;
                let cfg = SamplerConfig::new(*fam, sched.clone(), t);
                let want = xs
                    .iter()
                    .zip(&zs)
                    .map(|(xi, zi)| step_with_noise(&model, &cfg, i, xi, zi))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(failed)?;
                let label = if matches!(fam, SamplerFamily::Full) {
                    format!("lgs-{d} vs full")
                } else {
                    fam.name()
                };
                all &= push(
                    format!("step {i}: step vs f64 sampler"),
                    name,
                    &label,
                    rel(&y, &want),
                    TOL_STEP,
                );
            }
        }
        // 2. Trajectories with shared noise.
        let x_t = normal(args.batch);
        let zs: Vec<Vec<Vec<f64>>> = (0..t).map(|_| normal(args.batch)).collect();
        let noises = zs
            .iter()
            .map(|z| batch(z, &dev).and_then(|b| Ok(b.affine(args.perturb, 0.0)?)))
            .collect::<Result<Vec<Tensor>, _>>()
            .map_err(failed)?;
        for (fam, noise) in &fams {
            let y = ddpm_trajectory(
                &q0,
                &grid,
                &batch(&x_t, &dev).map_err(failed)?,
                &noises,
                *noise,
                None,
            )
            .and_then(|y| Ok(y.to_vec2::<f32>()?))
            .map_err(failed)?;
            let cfg = SamplerConfig::new(*fam, sched.clone(), t);
            let mut xs = x_t.clone();
            for i in (1..=t).rev() {
                for (n, x) in xs.iter_mut().enumerate() {
                    *x = step_with_noise(&model, &cfg, i, x, &zs[t - i][n]).map_err(failed)?;
                }
            }
            all &= push(
                format!("trajectory T = {t}: endpoint"),
                name,
                &fam.name(),
                rel(&y, &xs),
                TOL_TRAJ,
            );
        }
    }
    let doc = json!({
        "device": args.device,
        "covlab_version": env!("CARGO_PKG_VERSION"),
        "seed": args.seed,
        "batch": args.batch,
        "steps": t,
        "perturb": args.perturb,
        "checks": checks,
    });
    common::write_json(&args.json, &doc).map_err(failed)?;
    Ok(all)
}
