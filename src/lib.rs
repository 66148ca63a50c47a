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
//! - [`guidance`]: classifier guidance in the exact linear-Gaussian example (LGS appendix B).
//! - [`rates`]: slope fits (log-log and semilog) with 95 % confidence intervals.
//! - [`tridiagonal`]: symmetric tridiagonal eigendecomposition (implicit QL, Wilkinson shifts) with a residual check.
//! - [`lanczos`]: Lanczos approximation of `C^{1/2} z` from products `v -> C v`, with its a-priori error bound.
//! - [`model_kernel`]: model kernels in Hessian coordinates and the KL of N(m, C) to N(mu, Sigma) split into mean and covariance parts.
//! - [`hutchinson`]: the expected path KL of `hutchinson-M` over its probes (Monte Carlo).
//! - [`lowrank`]: mixtures with low-rank-plus-diagonal components (Woodbury; O(K D r) score and HVP) for image-sized D.
//! - [`image_data`]: image-sized low-rank mixtures: `digits8`, `digits32` (UCI digits, embedded), `synth3x32`.
//! - [`score`]: the score-model seam (score and Hessian-vector products) and its call counter.
//! - [`sampler`]: CPU reverse samplers (DDPM/DDIM, every family, hutchinson-M, LGS and its variants).
//! - [`metrics`]: sample-quality metrics: unbiased MMD² with standard errors, Fréchet distance, mean log-likelihood.
//! - [`presets`]: the shipped data sets and the JSON mixture-file format.
//! - [`plot`]: log-log and log-linear figures (SVG and PNG, no system fonts needed).
//! - [`study`]: study files (`studies/*.toml`): every committed result regenerated, checked
//!   for drift and shardable; each binary's computation as a study kind.
//!
//! Features: `candle` ([`tensor`]: the tensor path on candle, CPU device, tested in CI; [`learned`]: learned networks on it) and
//! `cuda` (candle's CUDA backend; built by `scripts/build-cuda.sh`, not in CI).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::float_cmp)]
// Numerical kernels index several arrays in lockstep; iterator zips would obscure the formulas.
#![allow(clippy::needless_range_loop)]

pub mod covariance;
pub mod error;
pub mod guidance;
pub mod hutchinson;
pub mod image_data;
pub mod lanczos;
#[cfg(feature = "candle")]
pub mod learned;
pub mod lowrank;
pub mod metrics;
pub mod mixture;
pub mod model_kernel;
pub mod numeric;
pub mod output;
pub mod path_kl;
pub mod plot;
pub mod posterior;
pub mod presets;
pub mod quadrature;
pub mod rates;
pub mod sampler;
pub mod schedule;
pub mod score;
pub mod study;
#[cfg(feature = "candle")]
pub mod tensor;
pub mod tridiagonal;

pub use error::{Error, Result};
