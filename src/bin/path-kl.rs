//! `path-kl`: exact path KL of Gaussian reverse chains for Gaussian-mixture data.
//!
//! Prints a table of S_fam(T) with error estimates, the terminal KL and the fitted
//! slopes with 95 % intervals; writes JSON and a log-log figure. Exit code 2 on bad
//! input (unknown preset/family/schedule, malformed file, invalid numbers).

use std::path::PathBuf;

mod common;

use clap::{Parser, ValueEnum};
use common::{finish, Outcome};
use covlab::experiments::path_kl::PathKlStudy;
use covlab::quadrature::{LatticeParams, QmcParams};
use covlab::study::StudyKind;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RouteArg {
    A,
    B,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RuleArg {
    Auto,
    Lattice,
    Qmc,
}

/// Exact path KL between the true reverse chain and Gaussian model chains, for Gaussian-mixture data.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Preset (mog40, mog40-unit, grid9, aniso2, mix6) or a mixture JSON file.
    #[arg(long, default_value = "mog40")]
    data: String,
    /// Schedule: a preset (vp-linear, ddpm-linear(-even|-quadratic), snr-uniform, cosine),
    /// `diffusers:<linear|scaled_linear|squaredcos_cap_v2>` (diffusers' float32 alphas_cumprod
    /// and timesteps, with the options below) or a schedule file `*.json`
    /// (`{"alphas_cumprod": [...], "timesteps": [...]}`, see docs/schedules.md).
    #[arg(long, default_value = "vp-linear")]
    schedule: String,
    #[command(flatten)]
    schedule_flags: common::ScheduleFlags,
    /// Print the grids (JSON: schedule, early_stop, grids [{T, times, abar, timesteps}]) on
    /// stdout and exit, computing nothing and writing no file.
    #[arg(long)]
    print_grid: bool,
    /// Comma list of families: beta, beta-tilde, analytic, diag, full, `hutchinson-<M>`
    /// (expected over the probes, by Monte Carlo: S_diag + a Monte Carlo excess, 2 s.e. bars).
    /// Default: beta,beta-tilde,analytic,diag,full (ddpm), analytic,diag,full (ddim).
    #[arg(long)]
    families: Option<String>,
    /// Model chain kernel: ddpm (ancestral) or ddim (OCM-DDIM: each step is the one jump
    /// (0, t) through an affine map, so S grows like T; families analytic, diag, full).
    #[arg(long, default_value = "ddpm")]
    kernel: String,
    /// The T values (comma list).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "8,16,32,64,128,256,512,1024"
    )]
    steps: Vec<usize>,
    /// Early stop: the grid starts at t_0 = delta (0 = start at the data).
    #[arg(long, default_value_t = 0.0)]
    early_stop: f64,
    /// Route for S_full: a (telescoping) or b (direct inner quadrature, slower).
    #[arg(long, value_enum, default_value = "a")]
    route: RouteArg,
    /// beta-tilde's degenerate last step: clip (borrow the next step's variance) or early-stop
    /// (start at --early-stop, 1e-3 if not given).
    #[arg(long, default_value = "clip")]
    beta_tilde_remedy: String,
    /// Slope-fit window lo,hi on T (default: 128,1024 clipped to the T values given, or the last 4 T values).
    #[arg(long, value_delimiter = ',')]
    window: Option<Vec<f64>>,
    /// JSON output file (default `studies/results/path_kl_<data>[_<schedule>][_route_b][_ddim].json`).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Figure path stem; writes `<stem>.svg` and `<stem>.png` (default `figures/path_kl_<data>`...).
    #[arg(long)]
    figure: Option<PathBuf>,
    /// Worker threads (default: all cores). Results are identical for any value.
    #[arg(long)]
    threads: Option<usize>,
    /// Cubature rule over q_t.
    #[arg(long, value_enum, default_value = "auto")]
    rule: RuleArg,
    /// Lattice spacing as a fraction of the smallest component standard deviation.
    #[arg(long, default_value_t = LatticeParams::default().h_frac)]
    h_frac: f64,
    /// QMC points per component per shift.
    #[arg(long, default_value_t = QmcParams::default().points)]
    qmc_points: usize,
    /// QMC random shifts (replicates, >= 2).
    #[arg(long, default_value_t = QmcParams::default().shifts)]
    qmc_shifts: usize,
    /// Monte Carlo draws of x_t per step for the `hutchinson-<M>` families.
    #[arg(long, default_value_t = 4000)]
    hutchinson_points: usize,
    /// Seed of the QMC shifts (and of the `hutchinson-<M>` Monte Carlo).
    #[arg(long, default_value_t = QmcParams::default().seed)]
    seed: u64,
    /// Also write every step's term (s, t, term, err, and its S_full and covariance parts)
    /// per family and T to the JSON (`steps`), and a figure of the largest T's step terms
    /// along the chain (`<stem>_steps`).
    #[arg(long)]
    per_step: bool,
}

fn main() {
    let args = Args::parse();
    finish(run(&args));
}

/// The study parameters of the flags.
fn study(args: &Args) -> PathKlStudy {
    PathKlStudy {
        data: args.data.clone(),
        schedule: args.schedule.clone(),
        num_train_timesteps: args.schedule_flags.num_train_timesteps,
        beta_start: args.schedule_flags.beta_start,
        beta_end: args.schedule_flags.beta_end,
        timestep_spacing: args.schedule_flags.timestep_spacing.clone(),
        steps_offset: args.schedule_flags.steps_offset,
        families: args
            .families
            .as_deref()
            .unwrap_or(if args.kernel == "ddim" {
                "analytic,diag,full"
            } else {
                "beta,beta-tilde,analytic,diag,full"
            })
            .split(',')
            .map(|s| s.trim().to_string())
            .collect(),
        steps: args.steps.clone(),
        early_stop: args.early_stop,
        route: match args.route {
            RouteArg::A => "a",
            RouteArg::B => "b",
        }
        .to_string(),
        beta_tilde_remedy: args.beta_tilde_remedy.clone(),
        window: args.window.clone(),
        rule: match args.rule {
            RuleArg::Auto => "auto",
            RuleArg::Lattice => "lattice",
            RuleArg::Qmc => "qmc",
        }
        .to_string(),
        h_frac: args.h_frac,
        qmc_points: args.qmc_points,
        qmc_shifts: args.qmc_shifts,
        hutchinson_points: args.hutchinson_points,
        seed: args.seed,
        kernel: args.kernel.clone(),
        per_step: args.per_step,
    }
}

fn run(args: &Args) -> Result<(), Outcome> {
    let study = study(args);
    common::unique_list("--families", &study.families)?;
    common::unique_list("--steps", &study.steps)?;
    study.validate().map_err(common::param)?;
    if args.print_grid {
        let doc = serde_json::json!({
            "schedule": study.schedule().map_err(common::param)?.name(),
            "early_stop": study.effective_early_stop().map_err(common::param)?,
            "grids": study.grids().map_err(common::param)?,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(common::failed)?
        );
        return Ok(());
    }
    let stem = study.default_stem().map_err(common::param)?;
    let pool = common::thread_pool(args.threads)?;
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("studies/results/{stem}.json")));
    let fig_path = args
        .figure
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("figures/{stem}")));
    // Every output path is proved writable before the sweep runs (exit 2 naming the flag).
    common::check_output("--json", &json_path)?;
    common::check_figures("--figure", &fig_path, &study.figures())?;
    common::run_with_bar(&study, "path KL", &pool, &json_path, &fig_path)
}
