//! `image-presets`: builds the image-sized low-rank mixtures (`digits8`, `digits32`,
//! `synth3x32`), prints their structure and exact sample statistics, and writes grids of
//! exact draws to `figures/samples_<name>.png`. Exit code 2 on bad input.

use std::path::PathBuf;

use clap::Parser;
use covlab::experiments::image_presets::ImagePresetsStudy;
use covlab::study::{run_all, Quiet, StudyKind};

mod common;

use common::{finish, Outcome};

/// Image-sized Gaussian mixtures with low-rank-plus-diagonal components: structure and exact draws.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Comma list of presets: digits8, digits32, synth3x32.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "digits8,digits32,synth3x32"
    )]
    presets: Vec<String>,
    /// Draws per grid (8 per row).
    #[arg(long, default_value_t = 64)]
    samples: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory of the grids.
    #[arg(long, default_value = "figures")]
    out: PathBuf,
}

fn main() {
    let args = Args::parse();
    finish(run(&args));
}

fn run(args: &Args) -> Result<(), Outcome> {
    let study = ImagePresetsStudy {
        presets: args.presets.clone(),
        samples: args.samples,
        seed: args.seed,
    };
    common::unique_list("--presets", &study.presets)?;
    study.validate().map_err(common::param)?;
    common::check_figures("--out", &args.out.join("samples"), &study.figures())?;
    let (out, _) = run_all(&study, &Quiet).map_err(|e| common::study_error(e, false))?;
    print!("{}", out.table);
    for path in common::save_figures(&args.out.join("samples"), &out.figures) {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
