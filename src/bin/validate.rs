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

use clap::Parser;
use covlab::experiments::validate::{all_passed, ValidateStudy};
use covlab::study::{run_all, StudyKind};

mod common;

use common::{failed, Outcome};

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
    /// Comma list of families: beta, beta-tilde, analytic, diag, full, `hutchinson-<M>`, `lgs-<k>`.
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

fn main() {
    common::init_candle_threads();
    common::finish_check(run(&Args::parse()));
}

fn run(args: &Args) -> Result<bool, Outcome> {
    let study = ValidateStudy {
        device: args.device.clone(),
        data: args.data.clone(),
        batch: args.batch,
        steps: args.steps,
        families: args.families.clone(),
        kernels: args.kernels.clone(),
        samples: args.samples,
        ce_data: args.ce_data.clone(),
        ce_steps: args.ce_steps,
        ce_samples: args.ce_samples,
        analytic_samples: args.analytic_samples,
        perturb: args.perturb,
        seed: args.seed,
    };
    common::unique_list("--data", &study.data)?;
    common::unique_list("--families", &study.families)?;
    study.validate().map_err(common::param)?;
    common::check_output("--json", &args.json)?;
    let bar = common::Bar::new("validate: parts", study.cells().map_err(failed)?.len());
    let (out, wall) = run_all(&study, &bar).map_err(|e| common::study_error(e, false))?;
    bar.0.finish_and_clear();
    print!("{}", out.table);
    common::write_json(&args.json, &out.doc).map_err(failed)?;
    eprintln!("({wall:.1} s)");
    Ok(all_passed(&out.doc))
}
