//! An exact reverse kernel at one point, by its two independent routes:
//! `cargo run --release --example exact_posterior`.
//!
//! The kernel `q(x_s | x_t)` of a Gaussian-mixture forward process is itself a Gaussian
//! mixture; its mean and covariance follow by conditioning each component (the truth) and by
//! Tweedie's formulas from the score and Hessian of `q_t`:
//! `m = (x_t + b grad ln q_t) / a`, `C = (b^2 H + b I) / a^2` (`docs/path-kl.md`). The two
//! routes agree to round-off.

use covlab::data::mixture::Mixture;
use covlab::kernel::posterior::{tweedie_moments, ReverseKernel};
use covlab::process::schedule::Schedule;
use nalgebra::{DMatrix, DVector};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q0 = Mixture::from_dense(
        vec![0.5, 0.5],
        vec![
            DVector::from_vec(vec![-2.0, 0.0]),
            DVector::from_vec(vec![2.0, 1.0]),
        ],
        vec![DMatrix::identity(2, 2) * 0.1, DMatrix::identity(2, 2) * 0.4],
    )?;
    // The step from t_9 to t_10 of a 20-step linear VP grid.
    let grid = Schedule::vp_linear().grid(20, 0.0)?;
    let step = grid.step(10);
    let kernel = ReverseKernel::new(&q0, step)?;
    let x_t = [0.3, -0.2];
    let exact = kernel.moments(&x_t)?;
    let tweedie = tweedie_moments(kernel.marginal_t(), &step, &x_t)?;
    println!("a^2 = {:.6}, b = {:.6}", step.a2, step.b);
    println!("mean (conditioning): {:?}", exact.mean.as_slice());
    println!("mean (Tweedie):      {:?}", tweedie.mean.as_slice());
    println!("covariance (conditioning): {}", exact.cov);
    println!("covariance (Tweedie):      {}", tweedie.cov);
    let dm = (&exact.mean - &tweedie.mean).amax();
    let dc = (&exact.cov - &tweedie.cov).amax();
    println!("max |difference|: mean {dm:.1e}, covariance {dc:.1e}");
    Ok(())
}
