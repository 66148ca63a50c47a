//! A user's samples against exact draws of `q_0`: the lab's sample check.
//!
//! With `y_1..y_m` exact draws of `q_0` (seeded: stream 0 of `seed`) and `z_1..z_m` a second,
//! independent set (stream 1), for samples `x_1..x_n`:
//! ```text
//! mmd2            = MMD²_u(x, y) with the sum kernel over MMD_BANDWIDTHS, its s.e. and null s.e.
//! log_likelihood  = (1/n) Σ ln q_0(x_i) ± s.e.;  reference: the same for y (estimates -H(q_0))
//! frechet_sq      = ||m_x - m_y||² + tr(S_x + S_y - 2 (S_x^{1/2} S_y S_x^{1/2})^{1/2})
//! frechet_sq_floor = the same between z and y: what two exact sets of these sizes give
//! ```
//! Samples that are exact draws give `|mmd2| < 3 se_null` about 99.7 % of the time, a
//! likelihood equal to the reference within the combined s.e., and a Fréchet distance near
//! its floor.

use nalgebra::DVector;
use serde::{Deserialize, Serialize};

use super::{
    frechet_distance_sq, mean_log_likelihood, mmd2_unbiased, MeanEstimate, MetricsError, MmdValue,
    MMD_BANDWIDTHS,
};
use crate::data::mixture::Mixture;

/// The result of [`check_samples`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleCheck {
    /// Number of samples `n`.
    pub n: usize,
    /// Number of exact reference draws `m`.
    pub reference_n: usize,
    /// The seed of the reference draws.
    pub seed: u64,
    /// `MMD²_u` (sum kernel over [`MMD_BANDWIDTHS`]) between the samples and the reference.
    pub mmd2: MmdValue,
    /// `mmd2 / se_null`: the z-score of a test of equality.
    pub mmd2_z: f64,
    /// Mean log-likelihood of the samples under `q_0`.
    pub log_likelihood: MeanEstimate,
    /// Mean log-likelihood of the reference draws (estimates `-H(q_0)`).
    pub reference_log_likelihood: MeanEstimate,
    /// Squared Fréchet distance between the samples' and the reference's moments.
    pub frechet_sq: f64,
    /// The same between a second exact set and the reference (the noise floor).
    pub frechet_sq_floor: f64,
}

/// Checks `samples` against `reference_n` exact draws of `q0` (see the module docs).
///
/// # Errors
/// [`MetricsError`] naming `x` (the samples) for an empty sample, fewer than 4 points, a
/// dimension other than `q0.dim()` or a non-finite value; `reference_n < 4` as
/// [`MetricsError::TooFewPoints`] naming `y`.
pub fn check_samples(
    q0: &Mixture,
    samples: &[DVector<f64>],
    reference_n: usize,
    seed: u64,
) -> Result<SampleCheck, MetricsError> {
    super::sample::validate("x", samples, Some(q0.dim()), 4)?;
    if reference_n < 4 {
        return Err(MetricsError::TooFewPoints {
            sample: "y",
            n: reference_n,
            need: 4,
        });
    }
    let reference = q0.sample(&mut crate::numeric::rng::stream(seed, 0), reference_n);
    let second = q0.sample(&mut crate::numeric::rng::stream(seed, 1), reference_n);
    let mmd = mmd2_unbiased(samples, &reference, &MMD_BANDWIDTHS)?.sum;
    Ok(SampleCheck {
        n: samples.len(),
        reference_n,
        seed,
        mmd2: mmd,
        mmd2_z: mmd.mmd2 / mmd.se_null,
        log_likelihood: mean_log_likelihood(q0, samples)?,
        reference_log_likelihood: mean_log_likelihood(q0, &reference)?,
        frechet_sq: frechet_distance_sq(samples, &reference)?,
        frechet_sq_floor: frechet_distance_sq(&second, &reference)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_draws_pass_and_shifted_draws_fail() {
        let q0 = crate::data::presets::load("grid9").unwrap();
        let exact = q0.sample(&mut crate::numeric::rng::stream(7, 3), 600);
        let c = check_samples(&q0, &exact, 600, 0).unwrap();
        // Exact draws: |z| < 4 (a 4-sigma event for the null s.e.: fails ~1e-4 of seeds).
        assert!(c.mmd2_z.abs() < 4.0, "{c:?}");
        let ll = c.log_likelihood.value - c.reference_log_likelihood.value;
        let se = c.log_likelihood.se.hypot(c.reference_log_likelihood.se);
        assert!(ll.abs() < 4.0 * se, "{c:?}");
        // Shifted by 0.5 in every coordinate (about a component's standard deviation):
        // overwhelming MMD and a Fréchet distance well above its floor (the mean shift alone
        // adds 0.5² D).
        let shifted: Vec<DVector<f64>> = exact.iter().map(|x| x.add_scalar(0.5)).collect();
        let s = check_samples(&q0, &shifted, 600, 0).unwrap();
        assert!(s.mmd2_z > 10.0, "{s:?}");
        assert!(
            s.frechet_sq > 0.2 * q0.dim() as f64 + s.frechet_sq_floor,
            "{s:?}"
        );
        let e = check_samples(&q0, &exact[..3], 600, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains('x'), "{e}");
    }
}
