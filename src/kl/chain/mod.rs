//! The exact path KL of model chains (a mean from the exact or a learned score, a covariance
//! from a method), split into the Gaussian part, a mean part and a covariance part, and the
//! error of each method's diagonal covariance against the optimal `diag C`.
//!
//! # Formula
//! For a Gaussian model kernel `N(mu, Sigma)` the cross-entropy of `q(. | x_t)` depends on it only
//! through its mean `m` and covariance `C`, so
//! ```text
//! KL(q(. | x_t) || N(mu, Sigma)) = KL(q(. | x_t) || N(m, C)) + KL(N(m, C) || N(mu, Sigma)),
//! path_kl(T) = S_full(T) + sum_steps E_{q_t}[mean part] + sum_steps E_{q_t}[cov part]
//! ```
//! (terminal term excluded), with `S_full` from [`crate::kl::path_kl::path_kl_sweep`] and the parts
//! from [`crate::kernel::model::kl_parts`] at each node of a rule over `q_t` ([`EvalRule`]: the
//! nested lattice in `D <= 2`, or randomised QMC with its own shifts at every time; the
//! networks are evaluated in batches at all nodes of a time first). Every expectation carries
//! the rule's error estimate; the reported `err` adds those of `S_full` and of the parts.
//!
//! Methods (`X` is the model's Hessian coordinate, [`crate::kernel::model`]; every learned or
//! estimated `X` is clipped to [`crate::kernel::model::h_bounds`], the samplers' Analytic-DPM range):
//!
//! | method | `X` |
//! |---|---|
//! | `beta`, `beta-tilde`, `analytic`, `diag`, `full` | as `path-kl` (`beta-tilde` with the `clip` remedy at a last step to the data); `analytic` uses `E tr H` for the exact score, `-E ||s_theta||^2` for a learned one (Analytic-DPM) |
//! | `hutchinson-M` | `(1/M) sum_m v_m .* (H v_m)` (`J^T v_m` for a learned score), expected over the probes exactly in `D = 2` (`v_1 v_2` is the only random quantity), by one probe set per node beyond |
//! | `ocm`, `sn`, `npr`, `iddpm` | the head's `h` ([`HeadKind`], [`head_h`]) |
//! | `full-jt`, `full-j`, `full-sym` | the learned score's Jacobian made symmetric from the upper triangle of `J` (what reverse-mode products `J^T v` see: the lower triangle of `J^T`), from its lower triangle (`J v`, forward mode), or `(J + J^T)/2`; eigenvalues clamped to the clip range (the samplers' Ritz clamp) |
//!
//! `diag` and `full` are the exact `diag C` and `C` (oracles) whatever the mean.
//!
//! Everything here is `f64` and needs no tensor library: the networks (feature `candle`,
//! `crate::learned`) are reached through [`Networks`], which returns their outputs at the
//! nodes as host buffers; [`NoNetworks`] is the exact chain (exact score, no heads).
//!
//! Files: [`method`] (the methods, the heads' `h`), [`params`] (settings and rows), `nodes`
//! (the rule's nodes and the network seam), `parts` (per-node KL parts), `pass` (one pass over
//! the grid times), `evaluate` (the entry), `curves` (covariance error and Jacobian asymmetry),
//! [`error`].

mod curves;
pub mod error;
mod evaluate;
pub mod method;
mod nodes;
pub mod params;
mod parts;
mod pass;

pub use error::ChainError;
pub use evaluate::evaluate_chains;
pub use method::{head_h, HeadKind, Method};
pub use nodes::{NetOutputs, Networks, NoNetworks};
pub use params::{CovErrorRow, EvalParams, EvalReport, EvalRow, EvalRule, JAsymmetryRow};
