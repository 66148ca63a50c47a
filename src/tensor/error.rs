//! Errors of the tensor path.

/// Errors of the tensor path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// A candle error.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The input does not fit the batched layout (shapes, ranks, counts).
    #[error("tensor path: {0}")]
    Layout(String),
    /// The model or the device cannot do what was asked (names what to use instead).
    #[error("tensor path: {0}")]
    Unsupported(String),
    /// A sampler parameter was invalid (the f64 sampler's check).
    #[error(transparent)]
    Sampler(#[from] crate::sampler::SamplerError),
    /// The eigendecomposition of a sample's Lanczos tridiagonal failed or was inaccurate.
    #[error("tensor path: Lanczos tridiagonal of sample {sample}: {source}")]
    Tridiagonal {
        /// The sample (row of the batch).
        sample: usize,
        /// The eigensolver's error.
        source: crate::linalg::tridiagonal::TridiagonalError,
    },
}
