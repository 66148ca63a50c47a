//! Statistics of results: slope fits with confidence intervals ([`rates`]) and the
//! sample-quality metrics: unbiased MMD² with its standard errors ([`mmd`]), the Fréchet
//! distance of Gaussians and of sample moments ([`frechet`]), the exact mean log-likelihood
//! under `q_0` ([`likelihood`]), the sample checks and unbiased moments they share
//! ([`sample`]), a user's samples against exact draws ([`check`]) and their error ([`error`]).

pub mod check;
pub mod error;
pub mod frechet;
pub mod likelihood;
pub mod mmd;
mod mmd_tiles;
pub mod rates;
pub mod sample;

pub use check::{check_samples, SampleCheck};
pub use error::MetricsError;
pub use frechet::{frechet_distance_sq, frechet_gaussian_sq, PSD_TOL};
pub use likelihood::{mean_log_likelihood, MeanEstimate};
pub use mmd::{
    mmd2_unbiased, mmd2_unbiased_with, MmdEstimate, MmdReference, MmdValue, MMD_BANDWIDTHS,
};
pub use sample::sample_moments;
