//! `validate` (feature `candle`): the tensor path against the f64 core.
//!
//! 1. Per step, for the same x_t and z at steps T, T/2 and 1: the tensor posterior mean, the
//!    analytic H v against autograd H v, each family's step (DDPM and OCM-DDIM) against the f64
//!    sampler's `step_with_noise`, and (D <= 64) the tensor `lgs-D` step against the f64
//!    `full` step.
//! 2. Whole trajectories with shared noise (the tensor sampler with host noise draws what the
//!    f64 sampler draws): endpoint distance, per family and kernel.
//! 3. Samples against exact draws of q_0: MMD^2, Frechet distance and exact mean
//!    log-likelihood of the tensor chain and of an independent f64 chain; checked: the two
//!    chains agree in law (MMD^2 z-score under equal laws, log-likelihood z-score).
//! 4. Path-KL differences between families as differences of cross-entropies by Monte Carlo
//!    (tensor model), against the exact path KL of the core on a 2-D preset.
//!
//! Prints a table, writes `{"device", "checks": [{"name", "data", "family", "value",
//! "tolerance", "pass"}], ...}`, exits 1 when a check fails, 2 on bad input. `--perturb F`
//! scales the tensor chain's noise by F (a deliberately wrong covariance F^2 C) to check the
//! checks.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use covlab::covariance::Family;
use covlab::gpu::{
    analytic_trace_table_tensor, batch, cross_entropy_path_kl, device_from_name,
    relative_error as rel, rows, sample_tensor, step_with_noise_tensor, CrossEntropyParams,
    NoiseSource, TensorLocal, TensorMixtureScore, TensorSampleOptions, TensorScoreModel,
};
use covlab::lowrank::{LowRankMixture, LowRankScore};
use covlab::metrics::{frechet_distance_sq, mmd2_unbiased, MMD_BANDWIDTHS};
use covlab::path_kl::{path_kl_sweep, PathKlParams};
use covlab::sampler::{
    sample, step_with_noise, KernelKind, LgsOptions, SamplerConfig, SamplerFamily,
};
use covlab::schedule::Schedule;
use covlab::{image_data, presets};
use indicatif::{ProgressBar, ProgressStyle};
use nalgebra::DVector;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

mod common;

use common::{bad, failed, Outcome};

/// The tensor path (candle) against the f64 core: per step, trajectories, sample metrics,
/// cross-entropy path-KL differences.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Device: cpu, or cuda / cuda:N (needs the `cuda` feature and a GPU).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Comma list of data: image presets (digits8, digits32, synth3x32) or dense presets
    /// (mog40, mog40-unit, grid9, aniso2, mix6).
    #[arg(long, value_delimiter = ',', default_value = "digits8,digits32")]
    data: Vec<String>,
    /// Samples per batch in the per-step and trajectory checks.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Number of steps T (ddpm-linear) of parts 1-3.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Comma list of families: beta, beta-tilde, analytic, diag, full, hutchinson-<M>, lgs-<k>.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "beta,beta-tilde,analytic,diag,hutchinson-4,lgs-3"
    )]
    families: Vec<String>,
    /// Comma list of kernels for parts 1 and 2: ddpm, ddim.
    #[arg(long, value_delimiter = ',', default_value = "ddpm,ddim")]
    kernels: Vec<String>,
    /// Samples per chain in part 3 (0 skips it).
    #[arg(long, default_value_t = 400)]
    samples: usize,
    /// Dense 2-D preset of part 4 (`none` skips it).
    #[arg(long, default_value = "mog40")]
    ce_data: String,
    /// T of part 4 (vp-linear, the path-kl default schedule).
    #[arg(long, default_value_t = 8)]
    ce_steps: usize,
    /// Pairs (x_s, x_t) per step in part 4.
    #[arg(long, default_value_t = 20_000)]
    ce_samples: usize,
    /// Data draws for the analytic family's E||score||^2 table.
    #[arg(long, default_value_t = 500)]
    analytic_samples: usize,
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

/// Documented tolerances. f32 vs f64, relative: the targets (mean 1e-5; sqrt(C) z and
/// the step 1e-4; analytic vs autograd H v 1e-4; trajectories, which the reverse chain does not
/// amplify, 1e-4). Statistical checks: |z| <= 4 (false alarm ~6e-5 per check).
const TOL_MEAN: f64 = 1e-5;
const TOL_STEP: f64 = 1e-4;
const TOL_HVP: f64 = 1e-4;
const TOL_TRAJ: f64 = 1e-4;
const TOL_Z: f64 = 4.0;

fn main() {
    common::init_candle_threads();
    let args = Args::parse();
    match run(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => common::finish(Err(e)),
    }
}

fn kernel(name: &str) -> Result<KernelKind, Outcome> {
    match name {
        "ddpm" => Ok(KernelKind::Ddpm),
        "ddim" => Ok(KernelKind::Ddim),
        _ => Err(bad(anyhow::anyhow!("--kernels: unknown `{name}` (ddpm, ddim)")).into()),
    }
}

/// A preset as a low-rank mixture: image presets directly, dense presets exactly converted.
fn load(name: &str) -> Result<LowRankMixture, Outcome> {
    if image_data::shape(name).is_some() {
        return image_data::load(name).map_err(|e| bad(e).into());
    }
    let q = presets::load(name).map_err(|e| bad(anyhow::anyhow!("--data `{name}`: {e}")))?;
    LowRankMixture::from_mixture(&q).map_err(failed)
}

/// The per-coordinate data range for the clip of mixture data (image presets: [-1, 1]).
fn clip_range(name: &str, q: &LowRankMixture) -> (f64, f64) {
    if image_data::shape(name).is_some() {
        return (-1.0, 1.0);
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for c in q.components() {
        let cov = c.covariance();
        for i in 0..q.dim() {
            let sd = cov[(i, i)].sqrt();
            lo = lo.min(c.mean()[i] - 4.0 * sd);
            hi = hi.max(c.mean()[i] + 4.0 * sd);
        }
    }
    (lo, hi)
}

struct Report {
    checks: Vec<Value>,
    metrics: Vec<Value>,
    all: bool,
}

impl Report {
    fn push(&mut self, name: String, data: &str, family: &str, value: f64, tol: f64) {
        let pass = value.is_finite() && value <= tol;
        println!(
            "{:<46} {:<10} {:<16} {:>10.3e} {:>8.0e} {}",
            name,
            data,
            family,
            value,
            tol,
            if pass { "pass" } else { "FAIL" }
        );
        self.checks.push(json!({"name": name, "data": data, "family": family, "value": value, "tolerance": tol, "pass": pass}));
        self.all &= pass;
    }
}

fn to_rows(v: &[DVector<f64>]) -> Vec<Vec<f64>> {
    v.iter().map(|x| x.as_slice().to_vec()).collect()
}

fn f32_rows(t: &covlab::gpu::candle_core::Tensor) -> Result<Vec<Vec<f32>>, Outcome> {
    t.to_vec2::<f32>().map_err(failed)
}

fn run(args: &Args) -> Result<bool, Outcome> {
    if args.batch == 0 || args.steps < 2 || args.ce_steps < 2 {
        return Err(bad(anyhow::anyhow!(
            "--batch must be >= 1, --steps and --ce-steps >= 2"
        ))
        .into());
    }
    if !(args.perturb.is_finite() && args.perturb > 0.0) {
        return Err(bad(anyhow::anyhow!("--perturb must be finite and > 0")).into());
    }
    let dev = device_from_name(&args.device).map_err(|e| bad(anyhow::anyhow!("--device: {e}")))?;
    let fams = args
        .families
        .iter()
        .map(|f| SamplerFamily::from_name(f).map_err(|e| bad(anyhow::anyhow!("--families: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let kernels = args
        .kernels
        .iter()
        .map(|k| kernel(k))
        .collect::<Result<Vec<_>, _>>()?;
    let data = args
        .data
        .iter()
        .map(|n| Ok((n.clone(), load(n)?)))
        .collect::<Result<Vec<_>, Outcome>>()?;
    let ce_q = if args.ce_data == "none" {
        None
    } else {
        let q = presets::load(&args.ce_data)
            .map_err(|e| bad(anyhow::anyhow!("--ce-data `{}`: {e}", args.ce_data)))?;
        if q.dim() > 3 {
            return Err(bad(anyhow::anyhow!(
                "--ce-data: the exact path KL needs D <= 3 (lattice); `{}` has D = {}",
                args.ce_data,
                q.dim()
            ))
            .into());
        }
        Some(q)
    };
    let sched = Schedule::from_name("ddpm-linear").map_err(bad)?;
    let grid = sched.grid(args.steps, 0.0).map_err(bad)?;
    let t = args.steps;
    let started = Instant::now();
    let mut rep = Report {
        checks: Vec::new(),
        metrics: Vec::new(),
        all: true,
    };
    println!(
        "{:<46} {:<10} {:<16} {:>10} {:>8} result",
        "check", "data", "family", "value", "tol"
    );
    let bar = ProgressBar::new((data.len() * 3 + usize::from(ce_q.is_some())) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .map_err(failed)?,
    );
    for (name, q0) in &data {
        let d = q0.dim();
        let cpu = LowRankScore::new(q0.clone());
        let gpu = TensorMixtureScore::new(q0.clone(), &dev).map_err(failed)?;
        let range = clip_range(name, q0);
        let mut drng = ChaCha8Rng::seed_from_u64(args.seed ^ 0xda7a);
        let draws = q0.sample(&mut drng, args.analytic_samples.max(2));
        let table = covlab::sampler::analytic_trace_table(&cpu, &sched, t, 0.0, &draws, args.seed)
            .map_err(failed)?;
        let table_t =
            analytic_trace_table_tensor(&gpu, &sched, t, 0.0, &draws, args.seed).map_err(failed)?;
        let table_err = table
            .iter()
            .zip(&table_t)
            .map(|(a, b)| (a - b).abs() / a.abs())
            .fold(0.0, f64::max);
        rep.push(
            "analytic E||score||^2 table".into(),
            name,
            "analytic",
            table_err,
            TOL_STEP,
        );
        let config = |fam: SamplerFamily, kernel: KernelKind, seed: u64| {
            let mut c = SamplerConfig::new(fam, sched.clone(), t);
            c.kernel = kernel;
            c.seed = seed;
            c.clip_range = Some(range);
            c.analytic_trace = Some(table.clone());
            c
        };
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
        bar.set_message(format!("{name}: per step"));
        for i in [t, t / 2, 1] {
            let qt = std::sync::Arc::new(q0.marginal(grid.ln_abar[i]).map_err(failed)?);
            let mut srng = ChaCha8Rng::seed_from_u64(args.seed ^ ((i as u64) << 8));
            let xs = to_rows(&qt.sample(&mut srng, args.batch));
            let zs = normal(args.batch);
            let vs = normal(args.batch);
            let x = batch(&xs, &dev).map_err(failed)?;
            let z = batch(&zs, &dev)
                .and_then(|z| Ok(z.affine(args.perturb, 0.0)?))
                .map_err(failed)?;
            let v = batch(&vs, &dev).map_err(failed)?;
            let st = grid.step(i);
            let (a, b) = (st.a2.sqrt(), st.b);
            let local = gpu.at(&x, grid.ln_abar[i]).map_err(failed)?;
            let mean = local
                .x_plus_score()
                .and_then(|xs| Ok((x.affine(a, 0.0)? + xs.affine(b / a, 0.0)?)?))
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
            rep.push(
                format!("step {i}: posterior mean"),
                name,
                "-",
                rel(&f32_rows(&mean)?, &want),
                TOL_MEAN,
            );
            let h1 = local.hvp(&v).map_err(failed)?;
            let h2 = local.mixture().hvp_autograd(&x, &v).map_err(failed)?;
            let h2f: Vec<Vec<f64>> = f32_rows(&h2)?
                .iter()
                .map(|r| r.iter().map(|&v| f64::from(v)).collect())
                .collect();
            rep.push(
                format!("step {i}: analytic vs autograd H v"),
                name,
                "-",
                rel(&f32_rows(&h1)?, &h2f),
                TOL_HVP,
            );
            let mut cases: Vec<(SamplerFamily, KernelKind, String)> = Vec::new();
            for k in &kernels {
                for f in &fams {
                    if matches!(f, SamplerFamily::Full) && d > covlab::gpu::FULL_MAX_DIM {
                        continue;
                    }
                    let label = match k {
                        KernelKind::Ddpm => f.name(),
                        KernelKind::Ddim => format!("{} ddim", f.name()),
                    };
                    cases.push((*f, *k, label));
                }
            }
            if d <= 64 {
                cases.push((
                    SamplerFamily::Lgs(LgsOptions::new(d)),
                    KernelKind::Ddpm,
                    format!("lgs-{d} vs full"),
                ));
            }
            for (fam, k, label) in &cases {
                let mut c = config(*fam, *k, args.seed);
                let mut want_cfg = c.clone();
                if label.ends_with("vs full") {
                    // lgs-D is the exact C^{1/2} z only without the Ritz clamp (the f64 `full`
                    // step does not clip).
                    c.clip_range = None;
                    want_cfg = config(SamplerFamily::Full, *k, args.seed);
                    want_cfg.clip_range = None;
                }
                let y = step_with_noise_tensor(&gpu, &c, i, &x, &z).map_err(failed)?;
                let want = xs
                    .iter()
                    .zip(&zs)
                    .map(|(xi, zi)| step_with_noise(&cpu, &want_cfg, i, xi, zi))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(failed)?;
                rep.push(
                    format!("step {i}: step vs f64 sampler"),
                    name,
                    label,
                    rel(&f32_rows(&y)?, &want),
                    TOL_STEP,
                );
            }
        }
        bar.inc(1);
        // 2. Trajectories with shared noise.
        bar.set_message(format!("{name}: trajectories"));
        let opts = TensorSampleOptions {
            chunk: args.batch,
            source: NoiseSource::Host,
            noise_scale: args.perturb,
        };
        for k in &kernels {
            for f in &fams {
                if matches!(f, SamplerFamily::Full) && d > covlab::gpu::FULL_MAX_DIM {
                    continue;
                }
                let c = config(*f, *k, args.seed);
                let y = sample_tensor(&gpu, &c, args.batch, &opts, |_| {}).map_err(failed)?;
                let want = to_rows(&sample(&cpu, &c, args.batch).map_err(failed)?);
                let label = match k {
                    KernelKind::Ddpm => f.name(),
                    KernelKind::Ddim => format!("{} ddim", f.name()),
                };
                rep.push(
                    format!("trajectory T = {t}: endpoint"),
                    name,
                    &label,
                    rel(&f32_rows(&y)?, &want),
                    TOL_TRAJ,
                );
            }
        }
        bar.inc(1);
        // 3. Samples against exact draws.
        if args.samples >= 4 {
            bar.set_message(format!("{name}: sample metrics"));
            let exact = q0.sample(
                &mut ChaCha8Rng::seed_from_u64(args.seed ^ 0xe8ac),
                args.samples,
            );
            let loglik = |x: &[DVector<f64>]| -> Result<(f64, f64), Outcome> {
                let v = x
                    .iter()
                    .map(|p| q0.ln_pdf(p.as_slice()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(failed)?;
                let n = v.len() as f64;
                let m = v.iter().sum::<f64>() / n;
                let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
                Ok((m, (var / n).sqrt()))
            };
            let opts3 = TensorSampleOptions {
                chunk: 1024,
                source: NoiseSource::Device,
                noise_scale: args.perturb,
            };
            for f in &fams {
                if matches!(f, SamplerFamily::Full) && d > covlab::gpu::FULL_MAX_DIM {
                    continue;
                }
                let fname = f.name();
                let tensor = rows(
                    &sample_tensor(
                        &gpu,
                        &config(*f, KernelKind::Ddpm, args.seed),
                        args.samples,
                        &opts3,
                        |_| {},
                    )
                    .map_err(failed)?,
                )
                .map_err(failed)?;
                // An independent f64 chain (another seed): the two must agree in law.
                let reference = sample(
                    &cpu,
                    &config(*f, KernelKind::Ddpm, args.seed ^ 0x5eed),
                    args.samples,
                )
                .map_err(failed)?;
                let between =
                    mmd2_unbiased(&tensor, &reference, &MMD_BANDWIDTHS).map_err(failed)?;
                let to_exact_t = mmd2_unbiased(&tensor, &exact, &MMD_BANDWIDTHS).map_err(failed)?;
                let to_exact_f =
                    mmd2_unbiased(&reference, &exact, &MMD_BANDWIDTHS).map_err(failed)?;
                let (ll_t, ll_t_se) = loglik(&tensor)?;
                let (ll_f, ll_f_se) = loglik(&reference)?;
                let fr_t = frechet_distance_sq(&tensor, &exact).map_err(failed)?;
                let fr_f = frechet_distance_sq(&reference, &exact).map_err(failed)?;
                rep.push(
                    format!("samples n = {}: MMD^2(tensor, f64) / se_null", args.samples),
                    name,
                    &fname,
                    (between.sum.mmd2 / between.sum.se_null).abs(),
                    TOL_Z,
                );
                rep.push(
                    format!(
                        "samples n = {}: mean ln q0, |z| tensor vs f64",
                        args.samples
                    ),
                    name,
                    &fname,
                    (ll_t - ll_f).abs() / (ll_t_se.powi(2) + ll_f_se.powi(2)).sqrt(),
                    TOL_Z,
                );
                rep.metrics.push(json!({
                    "data": name, "family": fname, "T": t, "samples": args.samples,
                    "mmd_tensor": to_exact_t.sum.mmd2, "mmd_tensor_se": to_exact_t.sum.se,
                    "mmd_f64": to_exact_f.sum.mmd2, "mmd_f64_se": to_exact_f.sum.se,
                    "frechet_sq_tensor": fr_t, "frechet_sq_f64": fr_f,
                    "loglik_tensor": ll_t, "loglik_tensor_se": ll_t_se,
                    "loglik_f64": ll_f, "loglik_f64_se": ll_f_se,
                }));
            }
        }
        bar.inc(1);
    }
    // 4. Cross-entropy path-KL differences against the exact core.
    let mut ce_rows = Vec::new();
    if let Some(q) = &ce_q {
        bar.set_message(format!("{}: cross-entropies", args.ce_data));
        let ce_fams: Vec<(SamplerFamily, Family)> =
            std::iter::once((SamplerFamily::Full, Family::Full))
                .chain(fams.iter().filter_map(|f| match f {
                    SamplerFamily::Beta => Some((*f, Family::Beta)),
                    SamplerFamily::BetaTilde => Some((*f, Family::BetaTilde)),
                    SamplerFamily::Analytic => Some((*f, Family::Analytic)),
                    SamplerFamily::Diag => Some((*f, Family::Diag)),
                    _ => None,
                }))
                .collect();
        let q0 = LowRankMixture::from_mixture(q).map_err(failed)?;
        let gpu = TensorMixtureScore::new(q0.clone(), &dev).map_err(failed)?;
        let vp = Schedule::vp_linear();
        let report = path_kl_sweep(
            q,
            &vp,
            &[args.ce_steps],
            &PathKlParams::default(),
            &|_, _| {},
        )
        .map_err(failed)?;
        let draws = q.sample(&mut ChaCha8Rng::seed_from_u64(args.seed ^ 0xa7), 20_000);
        let mut c = SamplerConfig::new(SamplerFamily::Full, vp.clone(), args.ce_steps);
        c.analytic_trace = Some(
            covlab::sampler::analytic_trace_table(
                &covlab::score::MixtureScore::new(q.clone()),
                &vp,
                args.ce_steps,
                0.0,
                &draws,
                args.seed,
            )
            .map_err(failed)?,
        );
        let fam_list: Vec<SamplerFamily> = ce_fams.iter().map(|p| p.0).collect();
        let params = CrossEntropyParams {
            samples_per_step: args.ce_samples,
            chunk: 8192,
            seed: args.seed,
            covariance_scale: args.perturb,
        };
        let res = cross_entropy_path_kl(&gpu, &q0, &c, &fam_list, 0, &params).map_err(failed)?;
        let full = report
            .get(Family::Full, args.ce_steps)
            .map_or(f64::NAN, |r| r.s.value);
        for (row, (_, fam)) in res.iter().zip(&ce_fams).skip(1) {
            let exact = report
                .get(*fam, args.ce_steps)
                .map_or(f64::NAN, |r| r.s.value)
                - full;
            rep.push(
                format!("path KL - full, T = {}: |MC - exact| / se", args.ce_steps),
                &args.ce_data,
                &row.family,
                (row.diff - exact).abs() / row.diff_se,
                TOL_Z,
            );
            ce_rows.push(json!({
                "family": row.family, "T": args.ce_steps, "diff_mc": row.diff, "diff_se": row.diff_se,
                "diff_exact": exact, "cross_entropy": row.cross_entropy, "cross_entropy_se": row.se,
            }));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let doc = json!({
        "device": args.device,
        "covlab_version": env!("CARGO_PKG_VERSION"),
        "seed": args.seed,
        "batch": args.batch,
        "steps": t,
        "schedule": "ddpm-linear",
        "samples": args.samples,
        "perturb": args.perturb,
        "ce_data": args.ce_data,
        "ce_steps": args.ce_steps,
        "ce_schedule": "vp-linear",
        "ce_samples_per_step": args.ce_samples,
        "tolerances": {"mean": TOL_MEAN, "step": TOL_STEP, "hvp": TOL_HVP, "trajectory": TOL_TRAJ, "z": TOL_Z},
        "wall_time_s": started.elapsed().as_secs_f64(),
        "checks": rep.checks,
        "sample_metrics": rep.metrics,
        "cross_entropy": ce_rows,
    });
    common::write_json(&args.json, &doc).map_err(failed)?;
    let failed_n = doc["checks"].as_array().map_or(0, |c| {
        c.iter().filter(|c| c["pass"] == json!(false)).count()
    });
    eprintln!(
        "{} checks, {} failed ({:.1} s)",
        doc["checks"].as_array().map_or(0, Vec::len),
        failed_n,
        started.elapsed().as_secs_f64()
    );
    Ok(rep.all)
}
