//! `score-samples`: a user's samples (an `(n, D)` `.npy` file, float64 or float32) against
//! exact draws of a Gaussian-mixture data set: unbiased MMD² (sum kernel over the lab's
//! bandwidths) with its standard errors and null z-score, the mean log-likelihood under `q_0`
//! beside the exact draws' own, and the squared Fréchet distance beside the floor of two exact
//! sets (see `covlab::stats::check`).
//!
//! A table on stdout, the JSON to `--json` (or, without it, on stdout after the table with
//! `--json -`). `--max-z Z` makes it a test: exit 1 when `|z| > Z`. Exit code 2 on bad input.

use std::path::PathBuf;

mod common;

use clap::Parser;
use common::{bad, failed, finish_check, Outcome};
use covlab::stats::check::check_samples;

/// Scores samples in a .npy file against exact draws of a data set (MMD, log-likelihood, Fréchet).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Preset (mog40, mog40-unit, grid9, aniso2, mix6) or a mixture JSON file.
    #[arg(long)]
    data: String,
    /// The samples: an (n, D) .npy array (float64 or float32), n >= 4.
    #[arg(long)]
    samples: PathBuf,
    /// Number of exact reference draws.
    #[arg(long, default_value_t = 10_000)]
    reference_n: usize,
    /// Seed of the reference draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// JSON output file (`-`: stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Exit 1 when |MMD² / se_null| exceeds this (a two-sided test of "the samples are exact").
    #[arg(long)]
    max_z: Option<f64>,
    /// Worker threads (default: all cores). Results are identical for any value.
    #[arg(long)]
    threads: Option<usize>,
}

fn main() {
    let args = Args::parse();
    finish_check(run(&args));
}

fn run(args: &Args) -> Result<bool, Outcome> {
    let q0 = covlab::data::presets::load(&args.data)
        .map_err(|e| bad(anyhow::Error::from(e).context("`--data`")))?;
    if let Some(z) = args.max_z {
        if !(z.is_finite() && z > 0.0) {
            return Err(bad(anyhow::anyhow!("`--max-z`: expected a number > 0, got {z}")).into());
        }
    }
    if args.reference_n < 4 {
        return Err(bad(anyhow::anyhow!(
            "`--reference-n`: expected >= 4, got {}",
            args.reference_n
        ))
        .into());
    }
    let to_file = args.json.as_ref().filter(|p| p.as_os_str() != "-");
    if let Some(p) = to_file {
        common::check_output("--json", p)?;
    }
    let samples = covlab::data::samples_npy::read_samples(&args.samples)
        .map_err(|e| bad(anyhow::Error::from(e).context("`--samples`")))?;
    let pool = common::thread_pool(args.threads)?;
    let c = pool
        .install(|| check_samples(&q0, &samples, args.reference_n, args.seed))
        .map_err(|e| bad(anyhow::Error::from(e).context("`--samples`")))?;
    let dll = c.log_likelihood.value - c.reference_log_likelihood.value;
    let dll_se = c.log_likelihood.se.hypot(c.reference_log_likelihood.se);
    println!(
        "samples {} (n = {}, D = {}) against {} exact draws of {} (seed {})",
        args.samples.display(),
        c.n,
        q0.dim(),
        c.reference_n,
        args.data,
        c.seed
    );
    println!(
        "  MMD^2          {:+.4e}  se {:.2e}  null se {:.2e}  z {:+.2}",
        c.mmd2.mmd2, c.mmd2.se, c.mmd2.se_null, c.mmd2_z
    );
    println!(
        "  log-likelihood {:+.5}  se {:.1e}  (exact draws {:+.5}; difference {:+.5} +- {:.1e})",
        c.log_likelihood.value, c.log_likelihood.se, c.reference_log_likelihood.value, dll, dll_se
    );
    println!(
        "  Frechet^2      {:.4e}  (two exact sets: {:.4e})",
        c.frechet_sq, c.frechet_sq_floor
    );
    let pass = args.max_z.is_none_or(|z| c.mmd2_z.abs() <= z);
    let doc = serde_json::json!({
        "data": args.data,
        "samples": args.samples.display().to_string(),
        "dim": q0.dim(),
        "mmd_kind": "unbiased MMD^2 with the sum of Gaussian kernels, bandwidths 0.25, 0.5, 1, 2, 4",
        "check": c,
        "max_z": args.max_z,
        "pass": pass,
        "covlab_version": env!("CARGO_PKG_VERSION"),
    });
    match (&args.json, to_file) {
        (_, Some(p)) => common::write_json(p, &doc).map_err(failed)?,
        (Some(_), None) => println!("{}", serde_json::to_string_pretty(&doc).map_err(failed)?),
        (None, None) => {}
    }
    if !pass {
        eprintln!(
            "check failed: |z| = {:.2} > --max-z {}",
            c.mmd2_z.abs(),
            args.max_z.unwrap_or(f64::NAN)
        );
    }
    Ok(pass)
}
