//! # covlab: exact reverse covariances of Gaussian diffusion models
//!
//! covlab computes, for Gaussian-mixture data, the *exact* reverse kernels of a
//! DDPM forward process, their moments (by conditioning and by Tweedie's formulas),
//! and the exact path KL between the true reverse chain and Gaussian model chains
//! whose covariance comes from one of several families (`beta`, `beta-tilde`,
//! `analytic`, `diag`, `full`). It fits convergence rates with confidence intervals
//! and draws log-log figures.
//!
//! Modules, one mathematical object each:
//! - [`schedule`]: noise schedules and time grids.
//! - [`mixture`]: Gaussian mixtures: density, score, Hessian, HVP, sampling, marginals.
//! - [`posterior`]: exact reverse kernels q(x_s | x_t) and their moments (two routes).
//! - [`covariance`]: the covariance families of the reverse model kernels.
//! - [`quadrature`]: cubature rules for expectations over mixtures (lattice, QMC, Gauss-Hermite).
//! - [`path_kl`]: the exact path KL (routes A and B, family offsets, terminal term).
//! - [`rates`]: slope fits with 95 % confidence intervals.
//! - [`metrics`]: sample-quality metrics: unbiased MMD² with standard errors, Fréchet distance, mean log-likelihood.
//! - [`presets`]: the shipped data sets and the JSON mixture-file format.
//! - [`plot`]: log-log figures (SVG and PNG, no system fonts needed).
//!
//! Features: none yet (the `candle` and `cuda` features arrive with the tensor path).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::float_cmp)]
// Numerical kernels index several arrays in lockstep; iterator zips would obscure the formulas.
#![allow(clippy::needless_range_loop)]

pub mod covariance;
pub mod error;
pub mod metrics;
pub mod mixture;
pub mod numeric;
pub mod path_kl;
pub mod plot;
pub mod posterior;
pub mod presets;
pub mod quadrature;
pub mod rates;
pub mod schedule;

pub use error::{Error, Result};
