//! `lanczos`: the measured error of the Lanczos approximation `y_k ≈ C^{1/2} z` against the
//! a-priori bound `2 E_{k-1}` (Musco, Musco & Sidford 2018; `docs/lanczos.md#the-a-priori-bound`).
//!
//! Cases:
//! - synthetic SPD operators `C = V diag(l) V^T` with a prescribed spectrum in
//!   `[1/kappa, 1]` (geometric or uniform), for each `--dims` × `--kappas`; `V` is a product of
//!   `REFLECTORS` Householder reflections with Gaussian directions, applied matrix-free
//!   (`O(D r)` per product, `r` = `REFLECTORS`), and the reference `C^{1/2} z = V (l^{1/2} .* V^T z)` is exact to
//!   rounding without any eigendecomposition. The error distribution does not depend on `V`:
//!   `V^T z ~ N(0, I)` for any orthogonal `V`.
//! - mixture posteriors: for each `--data` preset, a forward trajectory `x_t` (vp-linear,
//!   20-step grid) and the covariance of the clean-data posterior `q(x_0 | x_t)`,
//!   `C = (b^2 H + b I) / a^2` with `a^2 = abar_t`, `b = 1 - abar_t`, applied matrix-free through
//!   the Hessian-vector product of `ln q_t` (what a sampler does); reference from the dense
//!   eigendecomposition of the same `C` (mog40 and mix6 have D = 2 and 6, so `k <= D`; the
//!   image presets `digits8` (D = 64) and `digits32` (D = 1024) are low-rank mixtures whose
//!   `C` is assembled densely from D products for the reference).
//!
//! The error is normalised by `||z||` (`||C^{1/2} z - y_k|| / ||z||`) so that it is comparable
//! with the bound. Also times one Lanczos `C^{1/2} z` against a dense symmetric
//! eigendecomposition. Exit code 2 on bad input; exit code 1 (after writing the outputs) when
//! a case's error exceeds the bound plus the rounding allowance, naming the case and `k`.

use std::path::PathBuf;

mod common;

use clap::Parser;
use common::{failed, finish, Outcome};
use covlab::experiments::lanczos::LanczosStudy;
use covlab::study::{run_all, StudyKind};

/// Lanczos error against its a-priori bound, on synthetic spectra and mixture posteriors.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// JSON output file.
    #[arg(long, default_value = "studies/results/lanczos.json")]
    json: PathBuf,
    /// Figure path stem STEM: writes STEM_geometric, STEM_uniform and STEM_mixture_DATA (.svg/.png).
    #[arg(long, default_value = "figures/lanczos")]
    figure: PathBuf,
    /// Worker threads (default: all cores). Results are identical for any value.
    #[arg(long)]
    threads: Option<usize>,
    /// Seed: case i draws from ChaCha8 stream i of this seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Dimensions D of the synthetic cases (comma list).
    #[arg(long, value_delimiter = ',', default_value = "100,1024,3072")]
    dims: Vec<usize>,
    /// Condition numbers kappa = lmax / lmin of the synthetic cases (comma list, each > 1).
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    kappas: Vec<f64>,
    /// Largest number of Lanczos steps k (every k = 1..kmax is reported).
    #[arg(long, default_value_t = 40)]
    kmax: usize,
    /// Mixture presets or mixture JSON files for the posterior part (comma list; "" for none).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mog40,mix6,digits8,digits32"
    )]
    data: Vec<String>,
    /// D of the timing run (Lanczos vs dense eigendecomposition); 0 skips it.
    #[arg(long, default_value_t = 3072)]
    timing_dim: usize,
    /// k of the timing run.
    #[arg(long, default_value_t = 20)]
    timing_k: usize,
}

fn main() {
    let args = Args::parse();
    finish(run(&args));
}

fn run(args: &Args) -> Result<(), Outcome> {
    let study = LanczosStudy {
        seed: args.seed,
        dims: args.dims.clone(),
        kappas: args.kappas.clone(),
        kmax: args.kmax,
        data: args.data.clone(),
        timing_dim: args.timing_dim,
        timing_k: args.timing_k,
    };
    common::unique_list("--data", &study.data)?;
    study.validate().map_err(common::param)?;
    common::check_output("--json", &args.json)?;
    common::check_figures("--figure", &args.figure, &study.figures())?;
    let pool = common::thread_pool(args.threads)?;
    let bar = common::Bar::new("lanczos: cases", study.cells().map_err(failed)?.len());
    let (out, _) = pool
        .install(|| run_all(&study, &bar))
        .map_err(|e| common::study_error(e, false))?;
    bar.0.finish_and_clear();
    print!("{}", out.table);
    common::write_json(&args.json, &out.doc).map_err(Outcome::Failed)?;
    for w in common::save_figures(&args.figure, &out.figures) {
        eprintln!("wrote {}", w.display());
    }
    let failed = out.failed_checks();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed_checks(&failed))
    }
}

/// The failed bound checks as a failure (exit 1) naming every case.
fn failed_checks(failed: &[String]) -> Outcome {
    Outcome::Failed(anyhow::anyhow!(
        "{} case(s) exceed the a-priori bound:\n  {}",
        failed.len(),
        failed.join("\n  ")
    ))
}
