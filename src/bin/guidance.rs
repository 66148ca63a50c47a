//! `guidance`: classifier guidance in the exact linear-Gaussian example (LGS appendix B).
//!
//! For each schedule, covariance choice and T, propagates the guided chain's Gaussian law
//! exactly and prints the conditional endpoint KL at the fixed label y, its average over y,
//! the unconditional path KL and the exact-guidance (Proposition 11) endpoint KL; fits
//! slopes on a window of T; writes JSON and one log-log figure per schedule.
//! Exit code 2 on bad input.

use std::path::PathBuf;

mod common;

use clap::Parser;
use common::{failed, finish, Outcome};
use covlab::experiments::guidance::GuidanceStudy;
use covlab::kl::guidance::GuidanceParams;
use covlab::study::{run_all, Quiet, StudyKind};

/// Exact classifier-guidance counterexample: conditional endpoint KL vs T per covariance choice.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Comma list of schedules (snr-uniform is the paper's appendix-B schedule).
    #[arg(long, value_delimiter = ',', default_value = "snr-uniform,vp-linear")]
    schedules: Vec<String>,
    /// Comma list of covariance choices: scalar (beta-tilde), analytic, diag, full.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "scalar,analytic,diag,full"
    )]
    choices: Vec<String>,
    /// The T values.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "4,8,16,32,64,128,256,512,1024,2048,4096"
    )]
    steps: Vec<usize>,
    /// Rotation angle of R in degrees.
    #[arg(long, default_value_t = GuidanceParams::default().angle_deg)]
    angle: f64,
    /// Variance s_1 of z_1 (the labelled coordinate).
    #[arg(long, default_value_t = GuidanceParams::default().var1)]
    var1: f64,
    /// Variance s_2 of z_2.
    #[arg(long, default_value_t = GuidanceParams::default().var2)]
    var2: f64,
    /// Label noise standard deviation sigma_y (y = z_1 + sigma_y n).
    #[arg(long, default_value_t = GuidanceParams::default().label_noise)]
    label_noise: f64,
    /// The fixed label y of endpoint_kl.
    #[arg(long, default_value_t = GuidanceParams::default().y)]
    y: f64,
    /// Start of both chains: exact (q(x_T) / q(x_T | y)) or standard-normal.
    #[arg(long, default_value = "exact")]
    init: String,
    /// snr-uniform: SNR at the data end (lambda_max; the paper's schedule has SNR increments
    /// (lambda_max - lambda_min)/T).
    #[arg(long, default_value_t = 1e3)]
    lambda_max: f64,
    /// snr-uniform: SNR at the noise end (lambda_min).
    #[arg(long, default_value_t = 1e-4)]
    lambda_min: f64,
    /// vp-linear: beta_min.
    #[arg(long, default_value_t = 0.1)]
    beta_min: f64,
    /// vp-linear: beta_max.
    #[arg(long, default_value_t = 20.0)]
    beta_max: f64,
    /// Slope-fit window lo,hi on T.
    #[arg(long, value_delimiter = ',', default_value = "64,1024")]
    window: Vec<f64>,
    /// JSON output file.
    #[arg(long, default_value = "studies/results/guidance.json")]
    json: PathBuf,
    /// Figure stem: writes `<stem>_<schedule>.svg/.png`.
    #[arg(long, default_value = "figures/guidance")]
    figure: PathBuf,
}

fn main() {
    let args = Args::parse();
    finish(run(&args));
}

fn run(args: &Args) -> Result<(), Outcome> {
    let study = GuidanceStudy {
        schedules: args.schedules.clone(),
        choices: args.choices.clone(),
        steps: args.steps.clone(),
        angle: args.angle,
        var1: args.var1,
        var2: args.var2,
        label_noise: args.label_noise,
        y: args.y,
        init: args.init.clone(),
        lambda_max: args.lambda_max,
        lambda_min: args.lambda_min,
        beta_min: args.beta_min,
        beta_max: args.beta_max,
        window: args.window.clone(),
    };
    common::unique_list("--steps", &study.steps)?;
    study.validate().map_err(common::param)?;
    common::check_output("--json", &args.json)?;
    common::check_figures("--figure", &args.figure, &study.figures())?;
    // Every computation error comes from the input (degenerate steps): exit 2.
    let (out, _) = run_all(&study, &Quiet).map_err(|e| common::study_error(e, true))?;
    print!("{}", out.table);
    // The JSON first (it is the result), then the figures, which never fail the run.
    common::write_json(&args.json, &out.doc).map_err(failed)?;
    for w in common::save_figures(&args.figure, &out.figures) {
        eprintln!("wrote {}", w.display());
    }
    Ok(())
}
