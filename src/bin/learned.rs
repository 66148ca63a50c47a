//! `learned`: learned scores and learned reverse covariances (OCM and its baselines) trained in
//! candle, judged by exact error and exact path KL on Gaussian-mixture data.
//!
//! `learned train` trains a score network by denoising score matching and the covariance heads
//! (`ocm`, `sn`, `npr`, `iddpm`) against the exact and the learned score, and writes safetensors
//! checkpoints. `learned eval` loads them and writes, per method and T, the exact path KL of
//! the chain split into `S_full`, a mean part and a covariance part, the MMD of its samples
//! (DDPM and DDIM), the covariance error against `diag C` per t and, for a learned score, the
//! asymmetry of its Jacobian. Exit code 2 on bad input.

use std::path::{Path, PathBuf};
use std::time::Instant;

mod common;

use anyhow::anyhow;
use clap::{Args as ClapArgs, Parser, Subcommand};
use common::{bad, failed, finish, write_json, Outcome};
use covlab::covariance::Family;
use covlab::gpu::candle_core::{DType, Device};
use covlab::gpu::learned::checkpoint::CheckpointMeta;
use covlab::gpu::learned::evaluate::EvalModels;
use covlab::gpu::learned::train::DataSampler;
use covlab::gpu::learned::{
    evaluate_chains, load_head, load_score, save_head, save_score, Chain, CovSource, EvalParams,
    EvalReport, EvalRule, GaussianPrior, Head, HeadKind, HeadScore, MeanSource, Method, ModelKind,
    OcmWeight, ScoreNet, TimeMixture, TrainInfo, TrainParams,
};
use covlab::gpu::{
    analytic_trace_table_tensor, rows as tensor_rows, sample_tensor, NoiseSource,
    TensorMixtureScore, TensorSampleOptions,
};
use covlab::lowrank::LowRankMixture;
use covlab::metrics::{mmd2_unbiased, MMD_BANDWIDTHS};
use covlab::mixture::Mixture;
use covlab::plot::{LogLogFigure, Series};
use covlab::quadrature::LatticeParams;
use covlab::sampler::{clip_range_of, KernelKind, SamplerConfig, SamplerFamily};
use covlab::schedule::Schedule;
use indicatif::{ProgressBar, ProgressStyle};
use nalgebra::DVector;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// Learned scores and covariances at known truth.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Train the score network and the covariance heads; write checkpoints.
    Train(TrainArgs),
    /// Evaluate model chains from checkpoints: exact path KL (mean / covariance parts), MMD,
    /// covariance error, Jacobian asymmetry.
    Eval(EvalArgs),
}

#[derive(ClapArgs, Debug)]
struct TrainArgs {
    /// Data set: mog40, mog40-unit, grid9 (2-D presets) or digits8 (D = 64).
    #[arg(long)]
    data: String,
    /// Comma list of models to train: score, ocm, sn, npr, iddpm.
    #[arg(long, value_delimiter = ',', default_value = "score,ocm,sn,npr,iddpm")]
    models: Vec<String>,
    /// Comma list of scores the heads are trained against: exact, learned.
    #[arg(long, value_delimiter = ',', default_value = "exact,learned")]
    scores: Vec<String>,
    /// Iterations of the score network.
    #[arg(long, default_value_t = 20_000)]
    iterations: usize,
    /// Iterations of each head.
    #[arg(long, default_value_t = 8_000)]
    head_iterations: usize,
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Peak learning rate (cosine decay to 0).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Seed (initialisation and every draw).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rademacher probes per row of the OCM objective (M).
    #[arg(long, default_value_t = 1)]
    probes: usize,
    /// Time weight of the ocm objective: normalized (errors in Cov(eps | x_t) units) or paper
    /// (h units, uniform in t: the paper's eq. 13); the optimum is the same.
    #[arg(long, default_value = "normalized")]
    ocm_weight: String,
    /// Hidden width of every network.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Hidden layers of every network.
    #[arg(long, default_value_t = 3)]
    layers: usize,
    /// Fourier frequencies of the time input.
    #[arg(long, default_value_t = 6)]
    fourier: usize,
    /// Checkpoint directory (files go to <out>/<data>/).
    #[arg(long, default_value = "studies/models")]
    out: PathBuf,
    /// Training log JSON (default studies/results/learned_train_<data>.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Worker threads (the weights are reproducible for a fixed count).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(ClapArgs, Debug)]
struct EvalArgs {
    /// Data set (as `train`).
    #[arg(long)]
    data: String,
    /// The mean's score: exact or learned.
    #[arg(long, default_value = "exact")]
    score: String,
    /// Comma list of methods: beta, beta-tilde, analytic, diag, full, hutchinson-<M>, ocm, sn,
    /// npr, iddpm, full-jt, full-j, full-sym (default: all that apply to the score).
    #[arg(long)]
    methods: Option<String>,
    /// The T values.
    #[arg(long, value_delimiter = ',', default_value = "5,10,25,50,100,200,1000")]
    steps: Vec<usize>,
    /// Schedule: vp-linear, ddpm-linear(-even|-quadratic), snr-uniform, cosine (as path-kl).
    #[arg(long, default_value = "vp-linear")]
    schedule: String,
    /// The T values with MMD rows (a subset of --steps), or `none` (no sampling). From T = 50 on
    /// every method is at the 2000-sample noise floor on the 2-D presets.
    #[arg(long, default_value = "5,10,25")]
    mmd_steps: String,
    /// Samples per MMD cell (and exact reference draws).
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Kernels of the MMD rows: ddpm, ddim.
    #[arg(long, value_delimiter = ',', default_value = "ddpm,ddim")]
    kernels: Vec<String>,
    /// Checkpoint directory.
    #[arg(long, default_value = "studies/models")]
    models: PathBuf,
    /// Lattice spacing (fraction of the smallest component sd of q_t) of every expectation.
    #[arg(long, default_value_t = 0.25)]
    h_frac: f64,
    /// Early stop: the grids start at t_0 = delta (0 = at the data), as in path-kl.
    #[arg(long, default_value_t = 0.0)]
    early_stop: f64,
    /// Rule of the mean and covariance parts: qmc (randomised QMC, about --qmc-nodes per time,
    /// 4 shifts) or lattice (D <= 2; tens of thousands of network evaluations per time).
    #[arg(long, default_value = "qmc")]
    rule: String,
    /// D > 2: QMC points per component and shift of S_full and of the network-free parts.
    #[arg(long, default_value_t = 64)]
    qmc_points: usize,
    /// QMC nodes per time of the finest grid (coarser grids' times get up to 32 times more).
    #[arg(long, default_value_t = EvalParams::default().qmc_nodes)]
    qmc_nodes: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// JSON output (default studies/results/learned_<data>_<score>.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Figure stem: writes <stem>_{cov_error,path_kl,mmd}... (default figures/learned:
    /// figures/learned_<kind>_<data>_<score>.svg/.png).
    #[arg(long)]
    figure: Option<PathBuf>,
    /// Worker threads.
    #[arg(long)]
    threads: Option<usize>,
}

fn main() {
    let cli = Cli::parse();
    finish(match cli.cmd {
        Cmd::Train(a) => with_threads(a.threads, || train(&a)),
        Cmd::Eval(a) => with_threads(a.threads, || eval(&a)),
    });
}

fn with_threads(
    threads: Option<usize>,
    f: impl FnOnce() -> Result<(), Outcome> + Send,
) -> Result<(), Outcome> {
    if threads == Some(0) {
        return Err(bad(anyhow!("`--threads`: must be >= 1")).into());
    }
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(failed)?;
    pool.install(f)
}

/// A data set: the dense mixture (exact evaluation), a sampler of q_0 and the clip range.
struct DataSet {
    name: String,
    q0: Mixture,
    range: (f64, f64),
}

fn load_data(name: &str) -> Result<DataSet, Outcome> {
    if covlab::image_data::shape(name).is_some() {
        let lr = covlab::image_data::load(name).map_err(bad)?;
        let q0 = dense_of(&lr).map_err(bad)?;
        // Image presets live in [-1, 1] (the samplers' clip range for them).
        return Ok(DataSet {
            name: name.into(),
            q0,
            range: (-1.0, 1.0),
        });
    }
    if !covlab::presets::PRESET_NAMES.contains(&name) {
        return Err(bad(anyhow!(
            "`--data`: unknown data set `{name}` (expected mog40, mog40-unit, grid9, aniso2, mix6, digits8)"
        ))
        .into());
    }
    let q0 = covlab::presets::load(name).map_err(bad)?;
    let range = clip_range_of(&q0);
    Ok(DataSet {
        name: name.into(),
        q0,
        range,
    })
}

fn dense_of(lr: &LowRankMixture) -> anyhow::Result<Mixture> {
    let means = lr.components().iter().map(|c| c.mean().clone()).collect();
    let covs = lr.components().iter().map(|c| c.covariance()).collect();
    Ok(Mixture::from_dense(lr.weights().to_vec(), means, covs)?)
}

fn prior_of(q0: &Mixture) -> GaussianPrior {
    let mean = q0.mean();
    let trace = q0.second_moment_trace() - mean.norm_squared();
    GaussianPrior::from_moments(mean.iter().copied().collect(), trace)
}

fn score_path(dir: &Path, data: &str) -> PathBuf {
    dir.join(data).join("score.safetensors")
}

/// `sn`'s objective does not involve the score: one network serves both.
fn head_path(dir: &Path, data: &str, kind: HeadKind, score: &str) -> PathBuf {
    match kind {
        HeadKind::Sn => dir.join(data).join("sn.safetensors"),
        _ => dir
            .join(data)
            .join(format!("{}-{score}.safetensors", kind.name())),
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{pos}}/{{len}} {{msg}} [{{elapsed_precise}} < {{eta_precise}}, {{per_sec}}]"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

fn train(args: &TrainArgs) -> Result<(), Outcome> {
    let data = load_data(&args.data)?;
    let mut kinds = Vec::new();
    let mut want_score = false;
    for m in &args.models {
        match m.trim() {
            "score" => want_score = true,
            other => kinds.push(HeadKind::from_name(other).ok_or_else(|| {
                bad(anyhow!(
                    "`--models`: unknown model `{other}` (score, ocm, sn, npr, iddpm)"
                ))
            })?),
        }
    }
    let mut scores = Vec::new();
    for s in &args.scores {
        match s.trim() {
            "exact" | "learned" => scores.push(s.trim().to_string()),
            other => {
                return Err(bad(anyhow!(
                    "`--scores`: unknown score `{other}` (exact, learned)"
                ))
                .into())
            }
        }
    }
    let ocm_weight = match args.ocm_weight.as_str() {
        "normalized" => OcmWeight::Normalized,
        "paper" => OcmWeight::Paper,
        other => return Err(bad(anyhow!("`--ocm-weight`: `{other}` (normalized, paper)")).into()),
    };
    let base = TrainParams {
        iterations: args.iterations,
        ocm_weight,
        batch: args.batch,
        lr: args.lr,
        seed: args.seed,
        probes: args.probes,
        hidden: args.hidden,
        layers: args.layers,
        fourier: args.fourier,
        ..TrainParams::default()
    };
    base.validate().map_err(bad)?;
    TrainParams {
        iterations: args.head_iterations,
        ..base.clone()
    }
    .validate()
    .map_err(bad)?;
    let device = Device::Cpu;
    let prior = prior_of(&data.q0);
    let q0 = data.q0.clone();
    let sampler = move |rng: &mut ChaCha8Rng, n: usize| q0.sample(rng, n);
    let sampler: DataSampler<'_> = &sampler;
    let mut log: Vec<Value> = Vec::new();
    let meta = |kind: ModelKind, score: Option<String>, train: &TrainParams, info: &TrainInfo| {
        CheckpointMeta {
            kind,
            data: data.name.clone(),
            score,
            shape: covlab::gpu::learned::MlpShape {
                input: prior.mean.len(),
                output: prior.mean.len(),
                hidden: train.hidden,
                layers: train.layers,
                fourier: train.fourier,
            },
            prior: prior.clone(),
            train: train.clone(),
            info: info.clone(),
            covlab_version: env!("CARGO_PKG_VERSION").into(),
        }
    };
    let mut record = |name: &str, score: Option<&str>, info: &TrainInfo, path: &Path| {
        println!(
            "{name:>8} {:>8}: {} iterations in {:.1} s ({:.0} it/s), final loss {:.5} -> {}",
            score.unwrap_or("-"),
            info.iterations,
            info.wall_s,
            info.its_per_s,
            info.final_loss,
            path.display()
        );
        log.push(json!({"model": name, "score": score, "iterations": info.iterations, "wall_s": info.wall_s,
            "its_per_s": info.its_per_s, "final_loss": info.final_loss, "threads": info.threads, "path": path.display().to_string()}));
    };
    let sp = score_path(&args.out, &data.name);
    let learned: Option<ScoreNet> = if want_score {
        let pb = bar(base.iterations as u64, "score DSM");
        let (net, info) =
            covlab::gpu::learned::train_score(sampler, prior.clone(), &base, &device, |k, l| {
                pb.set_position(k as u64);
                if k % 100 == 0 {
                    pb.set_message(format!("loss {l:.4}"));
                }
            })
            .map_err(failed)?;
        pb.finish_and_clear();
        save_score(&sp, &net, &meta(ModelKind::Score, None, &base, &info)).map_err(failed)?;
        record("score", None, &info, &sp);
        Some(net)
    } else if scores.iter().any(|s| s == "learned") && kinds.iter().any(|k| k.trained_with_score())
    {
        Some(load_score(&sp, &device).map_err(bad)?.0)
    } else {
        None
    };
    let exact = if scores.iter().any(|s| s == "exact") && !kinds.is_empty() {
        Some(TimeMixture::new(&data.q0, &device).map_err(bad)?)
    } else {
        None
    };
    let hp = TrainParams {
        iterations: args.head_iterations,
        ..base.clone()
    };
    for &kind in &kinds {
        let list: Vec<&str> = if kind.trained_with_score() {
            scores.iter().map(String::as_str).collect()
        } else {
            vec!["exact"]
        };
        for s in list {
            let teacher = match s {
                "exact" => HeadScore::Exact(
                    exact
                        .as_ref()
                        .ok_or_else(|| failed(anyhow!("no exact teacher")))?,
                ),
                _ => HeadScore::Learned(
                    learned
                        .as_ref()
                        .ok_or_else(|| failed(anyhow!("no learned score")))?,
                ),
            };
            let pb = bar(
                hp.iterations as u64,
                &format!("{} ({s} score)", kind.name()),
            );
            let (head, info) = covlab::gpu::learned::train_head(
                kind,
                sampler,
                prior.clone(),
                teacher,
                &hp,
                &device,
                |k, l| {
                    pb.set_position(k as u64);
                    if k % 100 == 0 {
                        pb.set_message(format!("loss {l:.4}"));
                    }
                },
            )
            .map_err(failed)?;
            pb.finish_and_clear();
            let path = head_path(&args.out, &data.name, kind, s);
            let score_name = if kind.trained_with_score() {
                Some(s.to_string())
            } else {
                None
            };
            save_head(
                &path,
                &head,
                &meta(ModelKind::Head(kind), score_name.clone(), &hp, &info),
            )
            .map_err(failed)?;
            record(kind.name(), score_name.as_deref(), &info, &path);
        }
    }
    let path = args.json.clone().unwrap_or_else(|| {
        PathBuf::from(format!("studies/results/learned_train_{}.json", data.name))
    });
    write_json(
        &path,
        &json!({"data": data.name, "runs": log, "params": base, "head_iterations": args.head_iterations,
            "threads": rayon::current_num_threads(), "covlab_version": env!("CARGO_PKG_VERSION")}),
    )
    .map_err(failed)?;
    Ok(())
}

/// The methods an evaluation runs by default.
fn default_methods(score: &str, dim: usize) -> String {
    let mut m = "beta,beta-tilde,analytic,diag,full,hutchinson-1,ocm,sn,npr,iddpm".to_string();
    if score == "learned" && dim == 2 {
        m.push_str(",full-jt,full-j,full-sym");
    }
    m
}

fn eval(args: &EvalArgs) -> Result<(), Outcome> {
    let start = Instant::now();
    let data = load_data(&args.data)?;
    let learned = match args.score.as_str() {
        "exact" => false,
        "learned" => true,
        other => {
            return Err(bad(anyhow!("`--score`: `{other}` (expected exact or learned)")).into())
        }
    };
    let methods = Method::parse_list(
        args.methods
            .as_deref()
            .unwrap_or(&default_methods(&args.score, data.q0.dim())),
    )
    .map_err(bad)?;
    let schedule = Schedule::from_name(&args.schedule).map_err(bad)?;
    let mut steps = args.steps.clone();
    steps.sort_unstable();
    steps.dedup();
    if steps.is_empty() || steps[0] == 0 {
        return Err(bad(anyhow!("`--steps`: every T must be >= 1")).into());
    }
    let mmd_steps = parse_mmd_steps(&args.mmd_steps)?;
    if let Some(t) = mmd_steps.iter().find(|t| !steps.contains(t)) {
        return Err(bad(anyhow!("`--mmd-steps`: T = {t} is not among --steps")).into());
    }
    let kernels: Vec<KernelKind> = args
        .kernels
        .iter()
        .map(|k| match k.trim() {
            "ddpm" => Ok(KernelKind::Ddpm),
            "ddim" => Ok(KernelKind::Ddim),
            other => Err(bad(anyhow!("`--kernels`: `{other}` (ddpm, ddim)"))),
        })
        .collect::<Result<_, _>>()?;
    if !(args.h_frac.is_finite() && args.h_frac > 0.0 && args.h_frac <= 1.0) {
        return Err(bad(anyhow!(
            "`--h-frac`: must be in (0, 1], got {}",
            args.h_frac
        ))
        .into());
    }
    let rule = match args.rule.as_str() {
        "qmc" => EvalRule::Qmc,
        "lattice" if data.q0.dim() <= 2 => EvalRule::Lattice,
        "lattice" => {
            return Err(bad(anyhow!(
                "`--rule lattice` needs D <= 2 (D = {})",
                data.q0.dim()
            ))
            .into())
        }
        other => return Err(bad(anyhow!("`--rule`: `{other}` (qmc, lattice)")).into()),
    };
    if args.qmc_nodes < 16 || args.qmc_points == 0 {
        return Err(bad(anyhow!(
            "`--qmc-nodes` must be >= 16 and `--qmc-points` >= 1"
        ))
        .into());
    }
    if !(args.early_stop.is_finite() && (0.0..1.0).contains(&args.early_stop)) {
        return Err(bad(anyhow!(
            "`--early-stop`: must be in [0, 1), got {}",
            args.early_stop
        ))
        .into());
    }
    if args.samples < 4 && !mmd_steps.is_empty() {
        return Err(bad(anyhow!("`--samples`: must be >= 4")).into());
    }
    let device = Device::Cpu;
    let net = if learned {
        Some(
            load_score(&score_path(&args.models, &data.name), &device)
                .map_err(bad)?
                .0,
        )
    } else {
        None
    };
    let mut heads: Vec<Head> = Vec::new();
    for m in &methods {
        if let Method::Head(k) = m {
            let p = head_path(&args.models, &data.name, *k, &args.score);
            heads.push(load_head(&p, &device).map_err(bad)?.0);
        }
    }
    let params = EvalParams {
        schedule: schedule.clone(),
        steps: steps.clone(),
        methods: methods.clone(),
        lattice: LatticeParams {
            h_frac: args.h_frac,
            ..LatticeParams::default()
        },
        rule,
        qmc_nodes: args.qmc_nodes,
        qmc: covlab::quadrature::QmcParams {
            points: args.qmc_points,
            ..EvalParams::default().qmc
        },
        seed: args.seed,
        early_stop: args.early_stop,
        clip_range: Some(data.range),
        ..EvalParams::default()
    };
    let models = EvalModels {
        score: net.as_ref(),
        heads: heads.iter().collect(),
    };
    let pb = bar(0, "exact path KL: grid times");
    let t0 = Instant::now();
    let report = evaluate_chains(&data.q0, &models, &params, &device, &|done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    })
    .map_err(bad)?;
    pb.finish_and_clear();
    let kl_wall = t0.elapsed().as_secs_f64();

    // MMD of the sampled chains against exact draws of q_0.
    let t1 = Instant::now();
    let mmd = mmd_rows(
        args,
        &mmd_steps,
        &data,
        &schedule,
        &methods,
        &kernels,
        net.as_ref(),
        &heads,
        &device,
    )?;
    let mmd_wall = t1.elapsed().as_secs_f64();
    let wall = start.elapsed().as_secs_f64();
    print_tables(args, &mmd_steps, &data, &report, &mmd, &steps);
    println!(
        "wall time {wall:.1} s (path KL {kl_wall:.1} s, MMD {mmd_wall:.1} s) on {} threads",
        rayon::current_num_threads()
    );

    let label = format!("{}_{}", data.name, args.score);
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("studies/results/learned_{label}.json")));
    let find_mmd = |m: &str, t: usize, k: &str| {
        mmd.iter()
            .find(|r| r.method == m && r.steps == t && r.kernel == k)
    };
    let mut rows: Vec<Value> = Vec::new();
    for r in &report.rows {
        let mm = find_mmd(&r.method, r.steps, "ddpm");
        rows.push(json!({
            "method": r.method, "T": r.steps, "kernel": "ddpm",
            "path_kl": num(r.path_kl.value), "err": r.path_kl.err,
            "mean_part": num(r.mean_part.value), "mean_part_err": r.mean_part.err,
            "cov_part": num(r.cov_part.value), "cov_part_err": r.cov_part.err,
            "s_full": r.s_full.value, "s_full_err": r.s_full.err,
            "mmd": mm.map(|m| m.mmd), "mmd_se": mm.map(|m| m.se),
        }));
    }
    for m in mmd.iter().filter(|m| m.kernel == "ddim") {
        rows.push(json!({"method": m.method, "T": m.steps, "kernel": "ddim", "path_kl": Value::Null, "err": Value::Null,
            "mean_part": Value::Null, "cov_part": Value::Null, "mmd": m.mmd, "mmd_se": m.se}));
    }
    let doc = json!({
        "data": data.name,
        "score": args.score,
        "schedule": schedule.name(),
        "dim": data.q0.dim(),
        "rule": report.rule,
        "early_stop": args.early_stop,
        "terminal_kl": report.terminal_kl.value,
        "terminal_kl_err": report.terminal_kl.err,
        "clip_range": [data.range.0, data.range.1],
        "mmd_samples": args.samples,
        "mmd_floor": mmd.iter().find(|m| m.method == "exact").map(|m| json!({"mmd": m.mmd, "mmd_se": m.se})),
        "rows": rows,
        "cov_error": report.cov_error.iter().map(|c| json!({"method": c.method, "t": c.t, "ln_abar": c.ln_abar, "mse": num(c.mse), "rel_mse": num(c.rel_mse)})).collect::<Vec<_>>(),
        "j_asymmetry": report.j_asymmetry,
        "wall_time_s": wall,
        "path_kl_wall_s": kl_wall,
        "mmd_wall_s": mmd_wall,
        "threads": rayon::current_num_threads(),
        "covlab_version": env!("CARGO_PKG_VERSION"),
    });
    write_json(&json_path, &doc).map_err(failed)?;
    let stem = args
        .figure
        .clone()
        .unwrap_or_else(|| PathBuf::from("figures/learned"));
    write_figures(&stem, &label, &schedule, &report, &mmd).map_err(failed)?;
    Ok(())
}

fn parse_mmd_steps(s: &str) -> Result<Vec<usize>, Outcome> {
    if s.trim() == "none" {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|t| match t.trim().parse::<usize>() {
            Ok(v) if v >= 1 => Ok(v),
            _ => Err(bad(anyhow!(
                "`--mmd-steps`: `{t}` is not a T >= 1 (or give `none`)"
            ))
            .into()),
        })
        .collect()
}

/// Path KLs above this are not drawn (a variance clipped to 0 at a last step to the data).
const PLOT_CAP: f64 = 1e4;

/// A JSON number, or the string "inf" for an infinite value.
fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else if v.is_nan() {
        Value::Null
    } else {
        json!("inf")
    }
}

struct MmdRow {
    method: String,
    steps: usize,
    kernel: &'static str,
    mmd: f64,
    se: f64,
}

#[allow(clippy::too_many_arguments)]
fn mmd_rows(
    args: &EvalArgs,
    mmd_steps: &[usize],
    data: &DataSet,
    schedule: &Schedule,
    methods: &[Method],
    kernels: &[KernelKind],
    net: Option<&ScoreNet>,
    heads: &[Head],
    device: &Device,
) -> Result<Vec<MmdRow>, Outcome> {
    let mut out = Vec::new();
    if mmd_steps.is_empty() {
        return Ok(out);
    }
    let n = args.samples;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x5EED);
    let reference = data.q0.sample(&mut rng, n);
    let floor =
        mmd2_unbiased(&data.q0.sample(&mut rng, n), &reference, &MMD_BANDWIDTHS).map_err(failed)?;
    out.push(MmdRow {
        method: "exact".into(),
        steps: 0,
        kernel: "-",
        mmd: floor.sum.mmd2,
        se: floor.sum.se,
    });
    let exact = TensorMixtureScore::new(
        LowRankMixture::from_mixture(&data.q0).map_err(failed)?,
        device,
    )
    .map_err(failed)?;
    let analytic_data = data.q0.sample(&mut rng, 2000);
    let sampled: Vec<Method> = methods
        .iter()
        .copied()
        .filter(|m| !matches!(m, Method::FullJt | Method::FullJ | Method::FullSym))
        .collect();
    let total: usize = kernels.len() * sampled.len() * mmd_steps.iter().sum::<usize>();
    let pb = bar(total as u64, "MMD: sampler steps");
    for &kernel in kernels {
        let kname = if kernel == KernelKind::Ddpm {
            "ddpm"
        } else {
            "ddim"
        };
        for &m in &sampled {
            if kernel == KernelKind::Ddim && m == Method::Head(HeadKind::Iddpm) {
                // I-DDPM has no DDIM kernel: beta~ = 0 for every step to the data.
                pb.inc(mmd_steps.iter().sum::<usize>() as u64);
                continue;
            }
            for &t in mmd_steps {
                let grid = schedule.grid(t, args.early_stop).map_err(bad)?;
                let mean = match net {
                    Some(nn) => MeanSource::Learned(nn),
                    None => MeanSource::Exact(&exact),
                };
                let (cov, family) = match m {
                    Method::Family(f @ (Family::Diag | Family::Full)) if net.is_some() => {
                        (CovSource::Exact(&exact), sampler_family(f))
                    }
                    Method::Family(f) => (CovSource::Mean, sampler_family(f)),
                    Method::Hutchinson(k) => (CovSource::Mean, SamplerFamily::Hutchinson(k)),
                    Method::Head(kind) => {
                        let head = heads
                            .iter()
                            .find(|h| h.kind() == kind)
                            .ok_or_else(|| failed(anyhow!("head {} not loaded", kind.name())))?;
                        (
                            CovSource::Head {
                                head,
                                range: Some(data.range),
                                grid: (kernel == KernelKind::Ddpm).then_some(&grid),
                            },
                            SamplerFamily::Diag,
                        )
                    }
                    _ => continue,
                };
                let chain = Chain { mean, cov };
                let mut cfg = SamplerConfig::new(family, schedule.clone(), t);
                cfg.kernel = kernel;
                cfg.seed = args.seed;
                cfg.early_stop = args.early_stop;
                cfg.clip_range = Some(data.range);
                if family == SamplerFamily::Analytic {
                    cfg.analytic_trace = Some(
                        analytic_trace_table_tensor(
                            &chain,
                            schedule,
                            t,
                            args.early_stop,
                            &analytic_data,
                            args.seed,
                        )
                        .map_err(failed)?,
                    );
                }
                let opts = TensorSampleOptions {
                    chunk: n,
                    source: NoiseSource::Host,
                    noise_scale: 1.0,
                };
                let before = pb.position();
                let x = sample_tensor(&chain, &cfg, n, &opts, |k| {
                    pb.set_position(before + k as u64)
                })
                .map_err(failed)?;
                let xs: Vec<DVector<f64>> =
                    tensor_rows(&x.to_dtype(DType::F64).map_err(failed)?).map_err(failed)?;
                let e = mmd2_unbiased(&xs, &reference, &MMD_BANDWIDTHS).map_err(failed)?;
                out.push(MmdRow {
                    method: m.name(),
                    steps: t,
                    kernel: kname,
                    mmd: e.sum.mmd2,
                    se: e.sum.se,
                });
            }
        }
    }
    pb.finish_and_clear();
    Ok(out)
}

fn sampler_family(f: Family) -> SamplerFamily {
    match f {
        Family::Beta => SamplerFamily::Beta,
        Family::BetaTilde => SamplerFamily::BetaTilde,
        Family::Analytic => SamplerFamily::Analytic,
        Family::Diag => SamplerFamily::Diag,
        Family::Full => SamplerFamily::Full,
    }
}

fn print_tables(
    args: &EvalArgs,
    mmd_steps: &[usize],
    data: &DataSet,
    report: &EvalReport,
    mmd: &[MmdRow],
    steps: &[usize],
) {
    println!(
        "exact path KL (terminal term excluded) of model chains on {} (D = {}), {} score, schedule {}; rule: {}",
        data.name,
        data.q0.dim(),
        args.score,
        args.schedule,
        report.rule
    );
    println!("path_kl = S_full + mean part + cov part; each cell: path_kl [mean part / cov part]");
    print!("{:>12}", "method \\ T");
    for t in steps {
        print!(" {:>34}", t);
    }
    println!();
    let mut names: Vec<&str> = Vec::new();
    for r in &report.rows {
        if !names.contains(&r.method.as_str()) {
            names.push(&r.method);
        }
    }
    if let Some(r) = report.rows.first() {
        print!("{:>12}", "S_full");
        for t in steps {
            let s = report
                .rows
                .iter()
                .find(|x| x.steps == *t)
                .map_or(r.s_full, |x| x.s_full);
            print!(" {:>34}", format!("{:.3e} +- {:.0e}", s.value, s.err));
        }
        println!();
    }
    for name in &names {
        print!("{name:>12}");
        for t in steps {
            match report
                .rows
                .iter()
                .find(|r| r.method == *name && r.steps == *t)
            {
                Some(r) => print!(
                    " {:>34}",
                    format!(
                        "{:.3e} [{:.2e} / {:.2e}]",
                        r.path_kl.value, r.mean_part.value, r.cov_part.value
                    )
                ),
                None => print!(" {:>34}", "-"),
            }
        }
        println!();
    }
    if mmd.len() > 1 {
        println!(
            "\nMMD^2_u x 1e3 (sum kernel h = 2^-2..2^2, {} samples; exact-vs-exact floor {:.2} +- {:.2})",
            args.samples,
            mmd[0].mmd * 1e3,
            mmd[0].se * 1e3
        );
        for kernel in ["ddpm", "ddim"] {
            let ms: Vec<&MmdRow> = mmd.iter().filter(|m| m.kernel == kernel).collect();
            if ms.is_empty() {
                continue;
            }
            print!("{:>12}", kernel);
            for t in mmd_steps {
                print!(" {:>16}", t);
            }
            println!();
            let mut seen: Vec<&str> = Vec::new();
            for m in &ms {
                if seen.contains(&m.method.as_str()) {
                    continue;
                }
                seen.push(&m.method);
                print!("{:>12}", m.method);
                for t in mmd_steps {
                    match ms.iter().find(|x| x.method == m.method && x.steps == *t) {
                        Some(x) => print!(
                            " {:>16}",
                            format!("{:.2} +- {:.2}", x.mmd * 1e3, x.se * 1e3)
                        ),
                        None => print!(" {:>16}", "-"),
                    }
                }
                println!();
            }
        }
    }
    let mut names: Vec<&str> = Vec::new();
    for c in &report.cov_error {
        if !names.contains(&c.method.as_str()) {
            names.push(&c.method);
        }
    }
    if !names.is_empty() {
        println!("\ncovariance MSE E(1/D)||diag Sigma - diag C||^2 of the one-step kernel (1000-step grid), relative to E(1/D)||diag C||^2:");
        let ts: Vec<f64> = {
            let mut v: Vec<f64> = report.cov_error.iter().map(|c| c.t).collect();
            v.sort_by(f64::total_cmp);
            v.dedup();
            v
        };
        let pick: Vec<f64> = ts.iter().copied().step_by((ts.len() / 6).max(1)).collect();
        print!("{:>12}", "method \\ t");
        for t in &pick {
            print!(" {:>10.4}", t);
        }
        println!();
        for name in names {
            print!("{name:>12}");
            for t in &pick {
                match report
                    .cov_error
                    .iter()
                    .find(|c| c.method == name && c.t.to_bits() == t.to_bits())
                {
                    Some(c) => print!(" {:>10.2e}", c.rel_mse),
                    None => print!(" {:>10}", "-"),
                }
            }
            println!();
        }
    }
    if !report.j_asymmetry.is_empty() {
        println!("\nlearned Jacobian: ||J - J^T||_F / ||J||_F (mean over q_t; rms) and ||J - H|| / ||H|| (rms):");
        for a in &report.j_asymmetry {
            println!(
                "  t = {:.4} (ln abar {:+.3e}): {:.3e}  {:.3e}  {:.3e}",
                a.t, a.ln_abar, a.mean_ratio, a.rms_ratio, a.rel_err_vs_h
            );
        }
    }
}

/// A series in the method's colour and marker.
fn line(name: &str, x: Vec<f64>, y: Vec<f64>, index: usize) -> Series {
    Series::new(name, x, y).with_color(index).with_marker(index)
}

fn write_figures(
    stem: &Path,
    label: &str,
    schedule: &Schedule,
    report: &EvalReport,
    mmd: &[MmdRow],
) -> anyhow::Result<()> {
    let with = |kind: &str| -> PathBuf {
        let name = format!(
            "{}_{kind}_{label}",
            stem.file_name()
                .map_or("learned".into(), |s| s.to_string_lossy().to_string())
        );
        stem.with_file_name(name)
    };
    let mut names: Vec<String> = Vec::new();
    for r in &report.rows {
        if !names.contains(&r.method) {
            names.push(r.method.clone());
        }
    }
    let color = |m: &str| names.iter().position(|n| n == m).unwrap_or(0);
    // Covariance error against t.
    let mut series = Vec::new();
    for name in &names {
        let pts: Vec<_> = report
            .cov_error
            .iter()
            .filter(|c| &c.method == name)
            .collect();
        if pts.is_empty() {
            continue;
        }
        series.push(line(
            name,
            pts.iter().map(|c| c.t).collect(),
            pts.iter().map(|c| c.mse).collect(),
            color(name),
        ));
    }
    if !series.is_empty() {
        LogLogFigure {
            title: format!("Diagonal covariance error vs t: {label}"),
            x_label: format!("t ({} time of the 1000-step grid)", schedule.name()),
            y_label: "E (1/D) ||diag Sigma_(t-1)(x_t) - diag C(x_t)||^2".into(),
            series,
            refs: vec![],
            caption: Some(
                "one-step kernel of the 1000-step grid; expectation over q_t by randomised QMC (8192 nodes per t)"
                    .into(),
            ),
        }
        .save(&with("cov_error"))?;
    }
    // Path KL against T.
    let mut series = Vec::new();
    for name in &names {
        let pts: Vec<_> = report
            .rows
            .iter()
            .filter(|r| &r.method == name && r.path_kl.value < PLOT_CAP)
            .collect();
        if pts.is_empty() {
            continue;
        }
        series.push(
            line(
                name,
                pts.iter().map(|r| r.steps as f64).collect(),
                pts.iter().map(|r| r.path_kl.value).collect(),
                color(name),
            )
            .with_err(pts.iter().map(|r| r.path_kl.err).collect()),
        );
    }
    if let Some(r0) = report.rows.first() {
        let m0 = r0.method.clone();
        let pts: Vec<_> = report.rows.iter().filter(|r| r.method == m0).collect();
        series.push(
            Series::new(
                "S_full (Gaussian limit)",
                pts.iter().map(|r| r.steps as f64).collect(),
                pts.iter().map(|r| r.s_full.value).collect(),
            )
            .dashed(),
        );
    }
    LogLogFigure {
        title: format!("Exact path KL of model chains: {label}"),
        x_label: "T (number of reverse steps)".into(),
        y_label: "path KL = S_full + mean part + cov part".into(),
        series,
        refs: vec![],
        caption: Some(format!(
            "{}; terminal KL {:.2e} excluded; bars: error estimates; values > 1e4 (degenerate last steps) not drawn",
            schedule.name(),
            report.terminal_kl.value
        )),
    }
    .save(&with("path_kl"))?;
    // MMD against T.
    let mut series = Vec::new();
    for kernel in ["ddpm", "ddim"] {
        for name in &names {
            let pts: Vec<_> = mmd
                .iter()
                .filter(|m| &m.method == name && m.kernel == kernel)
                .collect();
            if pts.is_empty() {
                continue;
            }
            let s = line(
                // One legend entry per method: DDIM's curve (dashed) shares the colour.
                if kernel == "ddim" { "" } else { name },
                pts.iter().map(|m| m.steps as f64).collect(),
                pts.iter().map(|m| m.mmd).collect(),
                color(name),
            );
            series.push(if kernel == "ddim" { s.dashed() } else { s });
        }
    }
    if !series.is_empty() {
        let floor = mmd.first().map_or(0.0, |m| m.se);
        LogLogFigure {
            title: format!("MMD^2 of samples vs T: {label} (solid: DDPM, dashed: DDIM)"),
            x_label: "T (number of reverse steps)".into(),
            y_label: "MMD^2_u (sum of Gaussian kernels)".into(),
            series,
            refs: vec![],
            caption: Some(format!(
                "non-positive estimates not drawn; exact-vs-exact s.e. {floor:.1e}"
            )),
        }
        .save(&with("mmd"))?;
    }
    Ok(())
}
