//! Errors of the learned models.

use thiserror::Error;

/// Errors of the learned models.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LearnedError {
    /// A candle error.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// A tensor-path error.
    #[error(transparent)]
    Tensor(#[from] crate::tensor::TensorError),
    /// A tensor does not have the shape the model needs.
    #[error("shape: {0}")]
    Shape(String),
    /// A parameter out of its domain.
    #[error("invalid parameter `{field}`: {reason}")]
    InvalidParameter {
        /// The field.
        field: &'static str,
        /// What was expected.
        reason: String,
    },
    /// A checkpoint is missing, unreadable or does not hold the expected model.
    #[error("checkpoint `{path}`: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An unknown method name.
    #[error("unknown method `{0}` (expected beta, beta-tilde, analytic, diag, full, hutchinson-<M>, ocm, sn, npr, iddpm, full-jt, full-j, full-sym)")]
    UnknownMethod(String),
    /// The data do not suit the request (e.g. a dense component where diagonal ones are needed).
    #[error("data: {0}")]
    Data(String),
    /// A mixture error.
    #[error(transparent)]
    Mixture(#[from] crate::data::mixture::MixtureError),
    /// A path-KL error (the `S_full` part).
    #[error(transparent)]
    PathKl(#[from] crate::kl::path_kl::PathKlError),
    /// A schedule error.
    #[error(transparent)]
    Schedule(#[from] crate::process::schedule::ScheduleError),
    /// A sampler error.
    #[error(transparent)]
    Sampler(#[from] crate::sampler::SamplerError),
}
