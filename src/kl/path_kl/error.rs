//! The errors of the path-KL computation ([`crate::kl::path_kl::path_kl_sweep`]).

use thiserror::Error;

use crate::data::mixture::MixtureError;
use crate::process::schedule::ScheduleError;

use super::MAX_CONDITION;

/// Errors of the path-KL computation.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum PathKlError {
    /// No T values were given.
    #[error("`steps`: give at least one T value")]
    NoSteps,
    /// A schedule error.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A mixture error.
    #[error(transparent)]
    Mixture(#[from] MixtureError),
    /// The lattice would be too large.
    #[error("quadrature: the lattice at ln abar = {time} would exceed {max_nodes} nodes (or the data span more than f64 resolves at that spacing); use the QMC rule (`--rule qmc`)")]
    LatticeTooLarge {
        /// The time (ln abar) where it happened.
        time: f64,
        /// The node limit.
        max_nodes: usize,
    },
    /// Route B is only offered in low dimension.
    #[error("route b needs D <= 3 (tensor Gauss-Hermite inner rule); the data have D = {dim}")]
    RouteBDimension {
        /// The data dimension.
        dim: usize,
    },
    /// The clip remedy needs a second step.
    #[error("beta-tilde with the `clip` remedy needs T >= 2 (the last step borrows the next step's variance)")]
    ClipNeedsTwoSteps,
    /// The beta-tilde last step is degenerate and no remedy applies.
    #[error("beta-tilde's last step is degenerate (abar_{{t_0}} = 1): choose the `clip` remedy or `early_stop` > 0")]
    DegenerateLastStep,
    /// A family without a DDIM covariance.
    #[error("family `{family}` under the DDIM kernel: Sigma_0 = 0 (plain DDIM is deterministic, its path KL infinite); use analytic, diag or full")]
    DdimFamily {
        /// The family.
        family: &'static str,
    },
    /// DDIM path KL with an early stop.
    #[error("`early_stop` must be 0 with the DDIM kernel (its x_0 is the data at t = 0), got {0}")]
    DdimEarlyStop(f64),
    /// Route B's tensor Gauss-Hermite rule has more than `usize::MAX` nodes.
    #[error("route b: an inner Gauss-Hermite rule of order {order} in D = {dim} has more nodes than fit in memory (`gh_orders`)")]
    InnerRuleTooLarge {
        /// The order per dimension.
        order: usize,
        /// The dimension.
        dim: usize,
    },
    /// A data component's covariance is too ill-conditioned for f64 (see [`MAX_CONDITION`]).
    #[error("`covariances[{index}]` has condition number {condition:.3e} > {MAX_CONDITION:e}: f64 cannot resolve the path KL's covariance formulas (their round-off grows like eps x condition); rescale or regularise that component")]
    IllConditioned {
        /// The component index.
        index: usize,
        /// Its condition number lambda_max / lambda_min.
        condition: f64,
    },
    /// A model covariance was not positive (should not happen for valid data).
    #[error("family `{family}`: covariance not positive at a quadrature node (t = {time})")]
    NonPositiveCovariance {
        /// The family.
        family: &'static str,
        /// The time.
        time: f64,
    },
}
