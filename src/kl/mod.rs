//! Exact KL divergences: the path KL between the true reverse chain and Gaussian model chains
//! ([`path_kl`], `docs/path-kl.md`), where along a schedule it comes from ([`local_error`]:
//! local error densities and asymptotic constants, `docs/schedules.md`), the KL-optimal grids
//! per family ([`optimal_grid`]), its expectation over Hutchinson probes ([`hutchinson`]),
//! and classifier guidance in the exact linear-Gaussian example ([`guidance`]), and the exact
//! path KL of model chains split into `S_full`, a mean part and a covariance part, over
//! quadrature nodes in `f64` with the networks behind a trait ([`chain`]), and the same for any
//! kernel given as a function of the points and the step ([`model_chain`]: a user's model).

pub mod chain;
pub mod guidance;
pub mod hutchinson;
pub mod local_error;
pub mod model_chain;
pub mod optimal_grid;
pub mod path_kl;
