//! # covlab: exact reverse covariances of Gaussian diffusion models
//!
//! covlab computes, for Gaussian-mixture data, the *exact* reverse kernels of a
//! DDPM forward process, their moments (by conditioning and by Tweedie's formulas),
//! and the exact path KL between the true reverse chain and Gaussian model chains
//! whose covariance comes from one of several families (`beta`, `beta-tilde`,
//! `analytic`, `diag`, `full`). It fits convergence rates with confidence intervals
//! and draws log-log figures.
//!
//! Layers, in dependency order (a module imports only from layers before it):
//! - [`numeric`]: compensated sums, log-sum-exp, random streams, non-finite JSON.
//! - [`process`]: noise schedules and time grids.
//! - [`data`]: Gaussian mixtures (dense and low-rank), the shipped and image data sets.
//! - [`score`]: the score-model seam (score and Hessian-vector products) and its exact mixture implementations.
//! - [`kernel`]: exact reverse kernels, covariance families, model kernels and clip bounds.
//! - [`linalg`]: the tridiagonal eigensolver and Lanczos with its a-priori bound.
//! - [`quadrature`]: cubature rules for expectations over mixtures (lattice, QMC, Gauss-Hermite).
//! - [`kl`]: the exact path KL, its Hutchinson expectation, classifier guidance.
//! - [`stats`]: slope fits, MMD², Fréchet distance, likelihood.
//! - [`sampler`]: CPU reverse samplers (DDPM/DDIM, every family, hutchinson-M, LGS).
//! - [`plot`]: log-log and log-linear figures and image grids (SVG and PNG).
//! - [`study`]: study files (`studies/*.toml`): every committed result regenerated, checked
//!   for drift and shardable; each binary's computation as a study kind.
//! - [`experiments`]: one module per study kind (the computation behind each binary).
//! - [`output`], [`error`]: atomic writes and the crate's error type.
//!
//! The architecture (layers, seams, where a new study kind or family goes) is described in
//! `docs/architecture.md`.
//!
//! Features: `candle` (`tensor`: the tensor path on candle, CPU device, tested in CI; `learned`: learned networks on it) and
//! `cuda` (candle's CUDA backend; built by `scripts/build-cuda.sh`, not in CI).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::float_cmp)]
// Numerical kernels index several arrays in lockstep; iterator zips would obscure the formulas.
#![allow(clippy::needless_range_loop)]

pub mod data;
pub mod error;
pub mod experiments;
pub mod kernel;
pub mod kl;
#[cfg(feature = "candle")]
pub mod learned;
pub mod linalg;
pub mod numeric;
pub mod output;
pub mod plot;
pub mod process;
pub mod quadrature;
pub mod sampler;
pub mod score;
pub mod stats;
pub mod study;
#[cfg(feature = "candle")]
pub mod tensor;

pub use error::{Error, Result};
