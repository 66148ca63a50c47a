//! `bench-gpu` (feature `candle`): throughput of the tensor path on a device (`cpu`, `cuda`),
//! beside the rayon-parallel f64 core on the CPU for the ratio.
//!
//! Rows, each after a warm-up and with the device synchronised before the clock is read
//! (median of `--repeats` timings):
//! - `score`: score evaluations per second (batch B, preset of dimension D);
//! - `cv_analytic`, `cv_autograd`: covariance-vector products C v per second (the
//!   cancellation-free analytic form; reverse-mode autograd of <score, v>);
//! - `lgs<k>_step`: whole DDPM `lgs-k` steps (score, k products, batched Lanczos, mean) per
//!   second, sample-steps/s;
//! - `trajectory_<family>`: a whole `T`-step chain of N samples (`sample_tensor`), in
//!   sample-steps per second and wall seconds;
//! - the same `score`, `cv` and `lgs3_step` rows for the f64 core (`device: "f64-cpu"`).
//!
//! Writes `{"device", "rows": [{"name", "device", "preset", "D", "batch", "k", "seconds",
//! "per_second", "unit"}], ...}` and a figure of throughput against batch size per preset.

use std::path::PathBuf;

use clap::Parser;
use covlab::experiments::bench_gpu::BenchGpuStudy;
use covlab::study::{run_all, StudyKind};

mod common;

use common::{failed, Outcome};

/// Throughput of the tensor path (score, C v, LGS steps, whole chains) on a device.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Device: cpu, or cuda / cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Comma list of image presets for the per-call rows.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "digits8,digits32,synth3x32"
    )]
    presets: Vec<String>,
    /// Comma list of batch sizes for the per-call rows.
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024")]
    batches: Vec<usize>,
    /// Comma list of Lanczos steps k for the `lgs<k>_step` rows (at the largest preset and batch).
    #[arg(long, value_delimiter = ',', default_value = "1,3,10")]
    ks: Vec<usize>,
    /// Comma list of presets for the whole-chain rows.
    #[arg(long, value_delimiter = ',', default_value = "digits32,synth3x32")]
    trajectory_presets: Vec<String>,
    /// Comma list of families for the whole-chain rows.
    #[arg(long, value_delimiter = ',', default_value = "beta,lgs-3")]
    trajectory_families: Vec<String>,
    /// Samples of each whole chain (0 skips the chains).
    #[arg(long, default_value_t = 1000)]
    trajectory_samples: usize,
    /// Steps T of each whole chain (ddpm-linear).
    #[arg(long, default_value_t = 100)]
    trajectory_steps: usize,
    /// Timed repetitions per row (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Also time the f64 core on the CPU (for the ratio).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    f64_core: bool,
    /// JSON report (default `studies/results/bench_gpu_<device>.json`).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Figure stem (default `figures/bench_gpu_<device>`).
    #[arg(long)]
    figure: Option<String>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() {
    common::init_candle_threads();
    common::finish(run(&Args::parse()));
}

fn run(args: &Args) -> Result<(), Outcome> {
    let study = BenchGpuStudy {
        device: args.device.clone(),
        presets: args.presets.clone(),
        batches: args.batches.clone(),
        ks: args.ks.clone(),
        trajectory_presets: args.trajectory_presets.clone(),
        trajectory_families: args.trajectory_families.clone(),
        trajectory_samples: args.trajectory_samples,
        trajectory_steps: args.trajectory_steps,
        repeats: args.repeats,
        f64_core: args.f64_core,
        seed: args.seed,
    };
    study.validate().map_err(common::param)?;
    let dev_name = study.device_kind().map_err(common::param)?;
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("studies/results/bench_gpu_{dev_name}.json")));
    let stem = PathBuf::from(
        args.figure
            .clone()
            .unwrap_or_else(|| format!("figures/bench_gpu_{dev_name}")),
    );
    common::check_output("--json", &json_path)?;
    common::check_figures("--figure", &stem, &study.figures())?;
    let bar = common::Bar::new("bench-gpu", study.cells().map_err(failed)?.len());
    let (out, _) = run_all(&study, &bar).map_err(|e| common::study_error(e, false))?;
    bar.0.finish_and_clear();
    // The results table is the output: stdout (progress and "wrote" lines go to stderr).
    print!("{}", out.table);
    common::write_json(&json_path, &out.doc).map_err(failed)?;
    for w in common::save_figures(&stem, &out.figures) {
        eprintln!("wrote {}", w.display());
    }
    Ok(())
}
