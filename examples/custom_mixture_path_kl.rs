//! The exact path KL of a mixture you define, for every covariance family, and the rate it
//! decays at: `cargo run --release --example custom_mixture_path_kl`.
//!
//! The path KL `S(T) = KL(q(x_{0:T}) || p(x_{0:T}))` between the true reverse chain and a
//! Gaussian model chain with exact means and a family's covariance is computed by quadrature
//! with an error bar (`docs/path-kl.md`); `full` (the optimal full covariance) decays like
//! `1/T^2`, the isotropic and diagonal families like `1/T`.

use covlab::data::mixture::Mixture;
use covlab::kernel::family::Family;
use covlab::kl::path_kl::{path_kl_sweep, PathKlParams};
use covlab::process::schedule::Schedule;
use nalgebra::{DMatrix, DVector};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Two correlated Gaussians in 2-D, weights 0.3 and 0.7.
    let q0 = Mixture::from_dense(
        vec![0.3, 0.7],
        vec![
            DVector::from_vec(vec![-1.0, 0.5]),
            DVector::from_vec(vec![1.5, -0.5]),
        ],
        vec![
            DMatrix::from_row_slice(2, 2, &[0.30, 0.12, 0.12, 0.20]),
            DMatrix::from_row_slice(2, 2, &[0.10, -0.04, -0.04, 0.25]),
        ],
    )?;
    let steps = [8, 16, 32, 64];
    let params = PathKlParams {
        families: vec![Family::Beta, Family::Analytic, Family::Diag, Family::Full],
        ..PathKlParams::default()
    };
    let report = path_kl_sweep(&q0, &Schedule::vp_linear(), &steps, &params, &|_, _| {})?;
    println!("{:<10} {:>5} {:>14} {:>10}", "family", "T", "S(T)", "+-");
    for row in &report.rows {
        println!(
            "{:<10} {:>5} {:>14.6e} {:>10.1e}",
            row.family.name(),
            row.steps,
            row.s.value,
            row.s.err
        );
    }
    // The local slope between the two largest T of each family: about -1 or -2.
    for fam in &params.families {
        let at = |t: usize| {
            report
                .rows
                .iter()
                .find(|r| r.family == *fam && r.steps == t)
                .map(|r| r.s.value)
        };
        if let (Some(a), Some(b)) = (at(32), at(64)) {
            println!("{:<10} slope 32 -> 64: {:+.2}", fam.name(), (b / a).log2());
        }
    }
    Ok(())
}
