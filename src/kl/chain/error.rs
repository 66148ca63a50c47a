//! Errors of the chain evaluator (the messages of `crate::learned::LearnedError`'s variants
//! of the same names, where the feature `candle` has it).

use thiserror::Error;

/// Errors of the chain evaluator.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ChainError {
    /// A parameter out of its domain.
    #[error("invalid parameter `{field}`: {reason}")]
    InvalidParameter {
        /// The field.
        field: &'static str,
        /// What was expected.
        reason: String,
    },
    /// An unknown method name.
    #[error("unknown method `{0}` (expected beta, beta-tilde, analytic, diag, full, hutchinson-<M>, ocm, sn, npr, iddpm, full-jt, full-j, full-sym)")]
    UnknownMethod(String),
    /// A mixture error.
    #[error(transparent)]
    Mixture(#[from] crate::data::mixture::MixtureError),
    /// A path-KL error (the `S_full` part).
    #[error(transparent)]
    PathKl(#[from] crate::kl::path_kl::PathKlError),
    /// A schedule error.
    #[error(transparent)]
    Schedule(#[from] crate::process::schedule::ScheduleError),
    /// An error of the networks behind [`super::Networks`] (passed through unchanged).
    #[error(transparent)]
    Network(Box<dyn std::error::Error + Send + Sync>),
}
