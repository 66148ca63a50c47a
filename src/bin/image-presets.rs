//! `image-presets`: builds the image-sized low-rank mixtures (`digits8`, `digits32`,
//! `synth3x32`), prints their structure and exact sample statistics, and writes grids of
//! exact draws to `figures/samples_<name>.png`. Exit code 2 on bad input.

use std::path::PathBuf;

use clap::Parser;
use covlab::image_data::{self, IMAGE_PRESETS};
use covlab::plot::save_image_grid;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod common;

use common::{bad, failed, finish, Outcome};

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
    if args.samples == 0 {
        return Err(bad(anyhow::anyhow!("--samples must be >= 1")).into());
    }
    std::fs::create_dir_all(&args.out).map_err(failed)?;
    for name in &args.presets {
        let q = image_data::load(name).map_err(bad)?;
        let shape = image_data::shape(name).ok_or_else(|| {
            bad(anyhow::anyhow!(
                "no image shape for `{name}` (one of {IMAGE_PRESETS:?})"
            ))
        })?;
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let xs = q.sample(&mut rng, args.samples);
        let ranks: Vec<usize> = q.components().iter().map(|c| c.factor().ncols()).collect();
        let ll: f64 = xs
            .iter()
            .map(|x| q.ln_pdf(x.as_slice()).map_err(failed))
            .collect::<Result<Vec<_>, _>>()?
            .iter()
            .sum::<f64>()
            / xs.len() as f64;
        println!(
            "{name}: D = {}, K = {}, ranks {:?}, mean ln q0 of {} exact draws = {ll:.3}",
            q.dim(),
            q.components().len(),
            ranks,
            xs.len()
        );
        let images: Vec<Vec<f64>> = xs.iter().map(|x| x.as_slice().to_vec()).collect();
        let scale = if shape.1 <= 8 { 8 } else { 3 };
        let path = args.out.join(format!("samples_{name}.png"));
        save_image_grid(&images, shape, 8, (-1.0, 1.0), scale, &path).map_err(failed)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
