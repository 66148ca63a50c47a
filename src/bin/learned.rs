//! `learned`: learned scores and learned reverse covariances (OCM and its baselines) trained in
//! candle, judged by exact error and exact path KL on Gaussian-mixture data.
//!
//! `learned train` trains a score network by denoising score matching and the covariance heads
//! (`ocm`, `sn`, `npr`, `iddpm`) against the exact and the learned score, and writes safetensors
//! checkpoints. `learned eval` loads them and writes, per method and T, the exact path KL of
//! the chain split into `S_full`, a mean part and a covariance part, the MMD of its samples
//! (DDPM and DDIM), the covariance error against `diag C` per t and, for a learned score, the
//! asymmetry of its Jacobian. `learned curve` trains heads against the exact score at a list of
//! iteration budgets and evaluates each in memory: the learning curve of the covariance part
//! of the exact path KL. Exit code 2 on bad input.
//!
//! A CLI over the study kinds `learned-train`, `learned-eval` and `learned-curve`
//! ([`covlab::experiments::learned`]): the committed results are their study files
//! `studies/learned_*.toml`.

use std::path::PathBuf;

mod common;

use anyhow::anyhow;
use clap::{Args as ClapArgs, Parser, Subcommand};
use common::{bad, failed, finish, write_json, Outcome};
use covlab::experiments::learned::{LearnedCurveStudy, LearnedEvalStudy, LearnedTrainStudy};
use covlab::learned::EvalParams;
use covlab::study::{run_all, Observer, StudyKind};
use indicatif::{ProgressBar, ProgressStyle};

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
    /// Learning curve of covariance heads against the exact score: each iteration budget a
    /// training run of its own, evaluated in memory (exact covariance part of the path KL,
    /// diagonal error) beside the exact oracles; no checkpoint is written.
    Curve(CurveArgs),
}

#[derive(ClapArgs, Debug)]
struct CurveArgs {
    /// Data set: mog40, mog40-unit, grid9 (2-D presets) or digits8 (D = 64).
    #[arg(long)]
    data: String,
    /// Comma list of head kinds: ocm, npr, sn, iddpm.
    #[arg(long, value_delimiter = ',', default_value = "ocm,npr")]
    heads: Vec<String>,
    /// Comma list of iteration budgets (each its own run from --seed).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "2000,5000,10000,20000,50000"
    )]
    iterations: Vec<usize>,
    /// Comma list of exact oracles evaluated beside the heads (beta, beta-tilde, analytic,
    /// diag, full).
    #[arg(long, value_delimiter = ',', default_value = "analytic,diag")]
    oracles: Vec<String>,
    /// The T values.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    steps: Vec<usize>,
    /// Schedule (as path-kl).
    #[arg(long, default_value = "vp-linear")]
    schedule: String,
    /// Early stop: the grids start at t_0 = delta (0 = at the data).
    #[arg(long, default_value_t = 1e-3)]
    early_stop: f64,
    /// Lattice spacing of S_full (fraction of the smallest component sd of q_t).
    #[arg(long, default_value_t = 0.25)]
    h_frac: f64,
    /// Rule of the covariance part: qmc or lattice (D <= 2).
    #[arg(long, default_value = "qmc")]
    rule: String,
    /// QMC nodes per time of the finest grid.
    #[arg(long, default_value_t = EvalParams::default().qmc_nodes)]
    qmc_nodes: usize,
    /// D > 2: QMC points per component and shift of S_full.
    #[arg(long, default_value_t = 64)]
    qmc_points: usize,
    #[command(flatten)]
    opt: Optimisation,
    /// Comma list of training seeds (default: --seed): each (head, budget) is trained once per
    /// seed and evaluated with --seed; the figures show the mean and its standard error over
    /// the seeds.
    #[arg(long, value_delimiter = ',')]
    train_seeds: Option<Vec<u64>>,
    /// JSON output (default `studies/results/learned_curve_<data>.json`).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Figure stem: writes `<stem>_{cov_part,diag_mse}_<data>.svg/.png` (default
    /// figures/learned_curve).
    #[arg(long)]
    figure: Option<PathBuf>,
    /// Worker threads (the weights are reproducible for a fixed count).
    #[arg(long)]
    threads: Option<usize>,
}

/// The training flags `train` and `curve` share (the same names and defaults).
#[derive(ClapArgs, Debug)]
struct Optimisation {
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Peak learning rate (cosine decay to 0 over the run's iterations).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Seed (initialisation and every draw; `curve`: also the evaluation).
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
    #[command(flatten)]
    opt: Optimisation,
    /// Network: mlp, or unet (a time-conditioned U-Net, image data sets only; its checkpoints
    /// go to `<out>/<data>/unet/`).
    #[arg(long, default_value = "mlp")]
    net: String,
    /// Network of the covariance heads: mlp or unet (default: --net). The heads go beside the
    /// score, under --net's directory.
    #[arg(long)]
    head_net: Option<String>,
    /// U-Net: channels of the first resolution (the others have twice as many).
    #[arg(long, default_value_t = 32)]
    channels: usize,
    /// U-Net: resolutions (2 for 8x8 images, 3 for 32x32).
    #[arg(long, default_value_t = 2)]
    levels: usize,
    /// U-Net: group-norm groups (must divide --channels).
    #[arg(long, default_value_t = 8)]
    groups: usize,
    /// Checkpoint directory (files go to `<out>/<data>/`).
    #[arg(long, default_value = "studies/models")]
    out: PathBuf,
    /// Training log JSON (default `studies/results/learned_train_<data>.json`).
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
    /// Comma list of methods: beta, beta-tilde, analytic, diag, full, `hutchinson-<M>`, ocm, sn,
    /// npr, iddpm, full-jt, full-j, full-sym (default: all that apply to the score), and the
    /// sampled-only LGS variants `lgs-<k>`, `lgs-<k>-b<L>` (LGS-batched), `lgsb-<k>[-b<L>]`
    /// (LGSb; DDPM MMD rows, no exact path KL).
    #[arg(long)]
    methods: Option<String>,
    /// The T values.
    #[arg(long, value_delimiter = ',', default_value = "5,10,25,50,100,200,1000")]
    steps: Vec<usize>,
    /// Schedule: vp-linear, ddpm-linear(-even|-quadratic), snr-uniform, cosine (as path-kl).
    #[arg(long, default_value = "vp-linear")]
    schedule: String,
    /// The T values with MMD rows (a subset of --steps), or `none` (no sampling). Default: the
    /// T values of --steps among 5, 10, 25 (all three with the default --steps), or the
    /// smallest T of --steps if none is: MMD separates the methods only at small T (from
    /// T = 50 on every method is at the 2000-sample noise floor on the 2-D presets) and is
    /// the costliest part (one sampled chain per method, kernel and T).
    #[arg(long)]
    mmd_steps: Option<String>,
    /// Samples per MMD cell (and exact reference draws).
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Kernels of the MMD rows: ddpm, ddim.
    #[arg(long, value_delimiter = ',', default_value = "ddpm,ddim")]
    kernels: Vec<String>,
    /// The sampled chains' last step: mean (no noise) or noisy (a draw from the last kernel:
    /// the chain whose exact path KL the rows report).
    #[arg(long, default_value = "mean")]
    last_step: String,
    /// LGSb: the fraction of the steps (the last ones) that use LGS; beta-tilde before.
    #[arg(long, default_value_t = 0.5)]
    lgsb_fraction: f64,
    /// Checkpoint directory.
    #[arg(long, default_value = "studies/models")]
    models: PathBuf,
    /// Network of the checkpoints: mlp (`<models>/<data>/`) or unet (`<models>/<data>/unet/`;
    /// outputs then named `..._<data>_unet...`).
    #[arg(long, default_value = "mlp")]
    net: String,
    /// Network of the covariance heads: mlp or unet (default: --net; read from --net's
    /// directory).
    #[arg(long)]
    head_net: Option<String>,
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
    /// JSON output (default `studies/results/learned_<data>_<score>.json`).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Figure stem: writes `<stem>_{cov_error,path_kl,mmd}`... (default figures/learned:
    /// `figures/learned_<kind>_<data>.svg/.png` with the exact score, `..._<data>_learned` with the learned one).
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
        Cmd::Curve(a) => with_threads(a.threads, || curve(&a)),
    });
}

fn with_threads(
    threads: Option<usize>,
    f: impl FnOnce() -> Result<(), Outcome> + Send,
) -> Result<(), Outcome> {
    let pool = common::thread_pool(threads)?;
    pool.install(f)
}

/// Progress on stderr: the cell or phase as the message, its inner progress as the bar.
struct Progress(ProgressBar);

impl Progress {
    fn new() -> Self {
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} {pos}/{len} [{elapsed_precise} < {eta_precise}, {per_sec}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self(pb)
    }

    fn start(&self, label: &str) {
        self.0.set_message(label.to_string());
        self.0.set_position(0);
    }
}

impl Observer for Progress {
    fn cell_started(&self, _index: usize, label: &str) {
        self.start(label);
    }
    fn phase(&self, label: &str) {
        self.start(label);
    }
    fn inner(&self, done: usize, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(done as u64);
    }
}

fn train(args: &TrainArgs) -> Result<(), Outcome> {
    let study = LearnedTrainStudy {
        data: args.data.clone(),
        models: args.models.clone(),
        scores: args.scores.clone(),
        iterations: args.iterations,
        head_iterations: args.head_iterations,
        batch: args.opt.batch,
        lr: args.opt.lr,
        seed: args.opt.seed,
        probes: args.opt.probes,
        ocm_weight: args.opt.ocm_weight.clone(),
        hidden: args.opt.hidden,
        layers: args.opt.layers,
        fourier: args.opt.fourier,
        net: args.net.clone(),
        head_net: args.head_net.clone(),
        channels: args.channels,
        levels: args.levels,
        groups: args.groups,
        out: args.out.clone(),
        root: PathBuf::new(),
    };
    let path = args.json.clone().unwrap_or_else(|| {
        PathBuf::from(format!("studies/results/learned_train_{}.json", args.data))
    });
    study.validate().map_err(common::param)?;
    common::check_output("--json", &path)?;
    let out = run_printing(&study)?;
    write_json(&path, &out.doc).map_err(failed)?;
    Ok(())
}

/// Validates and runs `study` with a progress bar on stderr, prints its table on stdout.
fn run_printing(study: &dyn StudyKind) -> Result<covlab::study::Assembled, Outcome> {
    study.validate().map_err(common::param)?;
    let bar = Progress::new();
    let (out, _) = run_all(study, &bar).map_err(|e| common::study_error(e, false))?;
    bar.0.finish_and_clear();
    print!("{}", out.table);
    Ok(out)
}

fn eval(args: &EvalArgs) -> Result<(), Outcome> {
    let mmd_steps = args.mmd_steps.as_deref().map(parse_mmd_steps).transpose()?;
    let study = LearnedEvalStudy {
        data: args.data.clone(),
        score: args.score.clone(),
        methods: args
            .methods
            .as_ref()
            .map(|m| m.split(',').map(String::from).collect()),
        steps: args.steps.clone(),
        schedule: args.schedule.clone(),
        mmd_steps,
        samples: args.samples,
        kernels: args.kernels.clone(),
        last_step: args.last_step.clone(),
        lgsb_fraction: args.lgsb_fraction,
        models: args.models.clone(),
        net: args.net.clone(),
        head_net: args.head_net.clone(),
        h_frac: args.h_frac,
        early_stop: args.early_stop,
        rule: args.rule.clone(),
        qmc_points: args.qmc_points,
        qmc_nodes: args.qmc_nodes,
        seed: args.seed,
        root: PathBuf::new(),
    };
    if let Some(m) = &study.methods {
        common::unique_list("--methods", m)?;
    }
    common::unique_list("--steps", &study.steps)?;
    study.validate().map_err(common::param)?;
    let json_path = args.json.clone().unwrap_or_else(|| {
        PathBuf::from(format!("studies/results/learned_{}.json", study.label()))
    });
    let stem = args
        .figure
        .clone()
        .unwrap_or_else(|| PathBuf::from("figures/learned"));
    common::check_output("--json", &json_path)?;
    common::check_figures("--figure", &stem, &study.figures())?;
    let out = run_printing(&study)?;
    write_json(&json_path, &out.doc).map_err(failed)?;
    for w in common::save_figures(&stem, &out.figures) {
        eprintln!("wrote {}", w.display());
    }
    Ok(())
}

fn curve(args: &CurveArgs) -> Result<(), Outcome> {
    let study = LearnedCurveStudy {
        data: args.data.clone(),
        heads: args.heads.clone(),
        iterations: args.iterations.clone(),
        oracles: args.oracles.clone(),
        steps: args.steps.clone(),
        schedule: args.schedule.clone(),
        early_stop: args.early_stop,
        h_frac: args.h_frac,
        rule: args.rule.clone(),
        qmc_nodes: args.qmc_nodes,
        qmc_points: args.qmc_points,
        batch: args.opt.batch,
        lr: args.opt.lr,
        seed: args.opt.seed,
        train_seeds: args.train_seeds.clone(),
        probes: args.opt.probes,
        ocm_weight: args.opt.ocm_weight.clone(),
        hidden: args.opt.hidden,
        layers: args.opt.layers,
        fourier: args.opt.fourier,
    };
    common::unique_list("--heads", &study.heads)?;
    if let Some(s) = &study.train_seeds {
        common::unique_list("--train-seeds", s)?;
    }
    common::unique_list("--iterations", &study.iterations)?;
    common::unique_list("--oracles", &study.oracles)?;
    common::unique_list("--steps", &study.steps)?;
    study.validate().map_err(common::param)?;
    let json_path = args.json.clone().unwrap_or_else(|| {
        PathBuf::from(format!("studies/results/learned_curve_{}.json", study.data))
    });
    let stem = args
        .figure
        .clone()
        .unwrap_or_else(|| PathBuf::from("figures/learned_curve"));
    common::check_output("--json", &json_path)?;
    common::check_figures("--figure", &stem, &study.figures())?;
    let out = run_printing(&study)?;
    write_json(&json_path, &out.doc).map_err(failed)?;
    for w in common::save_figures(&stem, &out.figures) {
        eprintln!("wrote {}", w.display());
    }
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
