//! A sampler checked against exact draws: `cargo run --release --example sampler_vs_exact`.
//!
//! DDPM chains with the `beta` (isotropic) and `full` (optimal full) covariances sample a
//! 2-D mixture through the score seam; the unbiased MMD² to exact draws of the data, with its
//! standard error, says how far each chain's samples are from the truth at a given T
//! (`docs/samplers.md`).

use covlab::data::mixture::Mixture;
use covlab::process::schedule::Schedule;
use covlab::sampler::{sample, SamplerConfig, SamplerFamily};
use covlab::score::MixtureScore;
use covlab::stats::{mmd2_unbiased, MMD_BANDWIDTHS};
use nalgebra::{DMatrix, DVector};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q0 = Mixture::from_dense(
        vec![0.5, 0.5],
        vec![
            DVector::from_vec(vec![-1.5, 0.0]),
            DVector::from_vec(vec![1.5, 0.0]),
        ],
        vec![
            DMatrix::identity(2, 2) * 0.05,
            DMatrix::identity(2, 2) * 0.05,
        ],
    )?;
    let n = 1000;
    let exact = q0.sample(&mut covlab::numeric::stream(7, 0), n);
    let model = MixtureScore::new(q0);
    println!("{:<6} {:>4} {:>12} {:>10}", "family", "T", "MMD^2", "se");
    for name in ["beta", "full"] {
        for steps in [5, 20] {
            let mut cfg = SamplerConfig::new(
                SamplerFamily::from_name(name)?,
                Schedule::vp_linear(),
                steps,
            );
            cfg.seed = 1;
            let xs = sample(&model, &cfg, n)?;
            let m = mmd2_unbiased(&xs, &exact, &MMD_BANDWIDTHS)?;
            println!(
                "{:<6} {:>4} {:>12.3e} {:>10.1e}",
                name, steps, m.sum.mmd2, m.sum.se
            );
        }
    }
    Ok(())
}
