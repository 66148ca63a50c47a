//! The crate error: one variant per module error, converted with `?`.

use thiserror::Error;

/// Any error covlab's library functions return.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A schedule or grid could not be built.
    #[error(transparent)]
    Schedule(#[from] crate::process::schedule::ScheduleError),
    /// A mixture was invalid.
    #[error(transparent)]
    Mixture(#[from] crate::data::mixture::MixtureError),
    /// A covariance family name or parameter was invalid.
    #[error(transparent)]
    Covariance(#[from] crate::kernel::family::CovarianceError),
    /// A path-KL computation failed.
    #[error(transparent)]
    PathKl(#[from] crate::kl::path_kl::PathKlError),
    /// A slope fit failed.
    #[error(transparent)]
    Rates(#[from] crate::stats::rates::RatesError),
    /// A preset or mixture file could not be loaded.
    #[error(transparent)]
    Preset(#[from] crate::data::presets::PresetError),
    /// The guidance example failed.
    #[error(transparent)]
    Guidance(#[from] crate::kl::guidance::GuidanceError),
    /// A Lanczos approximation failed.
    #[error(transparent)]
    Lanczos(#[from] crate::linalg::lanczos::LanczosError),
    /// A sampler failed.
    #[error(transparent)]
    Sampler(#[from] crate::sampler::SamplerError),
    /// A Hutchinson-expectation error.
    #[error(transparent)]
    Hutchinson(#[from] crate::kl::hutchinson::HutchinsonError),
    /// A sample metric could not be computed.
    #[error(transparent)]
    Metrics(#[from] crate::stats::MetricsError),
    /// An image preset could not be built.
    #[error(transparent)]
    ImageData(#[from] crate::data::images::ImageDataError),
    /// A figure could not be drawn.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
}

/// `Result` with the crate [`Error`](enum@Error).
pub type Result<T> = std::result::Result<T, Error>;
