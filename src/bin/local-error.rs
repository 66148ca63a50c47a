//! `local-error`: where along the chain each covariance family loses its path KL.
//!
//! For each continuous schedule: the local error densities `g_f(u)` (the limit of a step's
//! term over `d^p`, `p = 3` for full, 2 otherwise), the asymptotic constants
//! `K_f = lim T^(p-1) S_f(T)` they predict, the constant `K_f^opt` of the best schedule with
//! the same ends, and the sums `T^(p-1) S_f(T)` measured at `--steps` and extrapolated
//! (docs/schedules.md). Prints the table, writes JSON and figures. Exit code 2 on bad input.

use std::path::PathBuf;

mod common;

use clap::Parser;
use common::{finish, Outcome};
use covlab::experiments::local_error::LocalErrorStudy;
use covlab::study::StudyKind;

/// Local error densities and asymptotic constants of the exact path KL per covariance family.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Preset (mog40, mog40-unit, grid9, aniso2, mix6) or a mixture JSON file.
    #[arg(long, default_value = "mog40")]
    data: String,
    /// Comma list of continuous schedules: vp-linear, cosine, snr-uniform (snr-uniform's
    /// last steps span most of the log-SNR range: its sums are not asymptotic at practical T
    /// and its noise-end densities are not resolved, docs/schedules.md).
    #[arg(long, value_delimiter = ',', default_value = "vp-linear,cosine")]
    schedules: Vec<String>,
    /// Comma list of families: beta, beta-tilde, analytic, diag, full (beta-tilde's density
    /// is not integrable at the data end without an early stop).
    #[arg(long, value_delimiter = ',', default_value = "beta,analytic,diag,full")]
    families: Vec<String>,
    /// Early stop of vp-linear and cosine (0: start at the data).
    #[arg(long, default_value_t = 0.0)]
    early_stop: f64,
    /// The T values (doublings) of the measured T^(p-1) S(T), the last three extrapolated.
    #[arg(long, value_delimiter = ',', default_value = "256,512,1024")]
    steps: Vec<usize>,
    /// The largest Richardson step d0 (in u).
    #[arg(long, default_value_t = LocalErrorStudy::default().delta0)]
    delta0: f64,
    /// Richardson levels per extrapolation.
    #[arg(long, default_value_t = LocalErrorStudy::default().levels)]
    levels: usize,
    /// Extrapolation windows per node (the smallest error estimate is kept).
    #[arg(long, default_value_t = LocalErrorStudy::default().windows)]
    windows: usize,
    /// Dyadic panels toward the data end.
    #[arg(long, default_value_t = LocalErrorStudy::default().panels)]
    panels: usize,
    /// Gauss-Legendre nodes per panel (even).
    #[arg(long, default_value_t = LocalErrorStudy::default().order)]
    order: usize,
    /// Cubature rule over q_t: auto, lattice or qmc.
    #[arg(long, default_value = "auto")]
    rule: String,
    /// Lattice spacing as a fraction of the smallest component standard deviation.
    #[arg(long, default_value_t = LocalErrorStudy::default().h_frac)]
    h_frac: f64,
    /// JSON output file (default `studies/results/local_error_<data>.json`).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Figure path stem (default `figures/local_error_<data>`): writes `<stem>_<schedule>` and
    /// `<stem>_log_snr` (.svg and .png).
    #[arg(long)]
    figure: Option<PathBuf>,
    /// Worker threads (default: all cores). Results are identical for any value.
    #[arg(long)]
    threads: Option<usize>,
}

fn main() {
    finish(run(&Args::parse()));
}

fn run(args: &Args) -> Result<(), Outcome> {
    let study = LocalErrorStudy {
        data: args.data.clone(),
        schedules: args
            .schedules
            .iter()
            .map(|s| s.trim().to_string())
            .collect(),
        families: args.families.iter().map(|s| s.trim().to_string()).collect(),
        early_stop: args.early_stop,
        steps: args.steps.clone(),
        delta0: args.delta0,
        levels: args.levels,
        windows: args.windows,
        panels: args.panels,
        order: args.order,
        rule: args.rule.clone(),
        h_frac: args.h_frac,
    };
    study.validate().map_err(common::param)?;
    let label = covlab::study::data_label(&study.data);
    let pool = common::thread_pool(args.threads)?;
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("studies/results/local_error_{label}.json")));
    let fig_path = args
        .figure
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("figures/local_error_{label}")));
    common::check_output("--json", &json_path)?;
    common::check_figures("--figure", &fig_path, &study.figures())?;
    common::run_with_bar(&study, "local errors", &pool, &json_path, &fig_path)
}
