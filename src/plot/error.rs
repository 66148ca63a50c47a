//! Why a figure could not be written ([`PlotError`]), and the conversion of any drawing-backend
//! error into it.

use thiserror::Error;

/// Why a figure could not be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PlotError {
    /// A parent directory could not be created (the OS error, shown once).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The figure file could not be checked or written (names the path).
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// The drawing backend failed (message of the plotters error, which is generic).
    #[error("drawing failed: {0}")]
    Draw(String),
    /// The figure has no series.
    #[error("no data: the figure has no series")]
    NoData,
    /// A series has no drawable point: none with finite `y > 0` (and finite `x`, `x > 0` on a
    /// log x axis).
    #[error(
        "series {index} (\"{series}\") has no point with finite y > 0 (and x > 0 on a log x axis)"
    )]
    NonPositive {
        /// The series label.
        series: String,
        /// The index of the series in `series`.
        index: usize,
    },
    /// A series' `y` (or `err`) length differs from its `x` length.
    #[error("series \"{series}\": {field} has {got} entries but x has {expected}")]
    LengthMismatch {
        /// The series label.
        series: String,
        /// The field with the wrong length: `"y"` or `"err"`.
        field: &'static str,
        /// The length of `x`.
        expected: usize,
        /// The length of the field.
        got: usize,
    },
    /// A reference slope has a non-finite `power`, or `x0`/`y0` that is not finite and `> 0`.
    #[error("reference slope \"{label}\": {field} = {value} is invalid (power must be finite, x0 and y0 finite and > 0)")]
    InvalidRef {
        /// The reference label.
        label: String,
        /// The offending field: `"power"`, `"x0"` or `"y0"`.
        field: &'static str,
        /// The offending value.
        value: f64,
    },
    /// The embedded font could not be registered with plotters.
    #[error("font: {0}")]
    Font(String),
}

/// Converts any plotters error to [`PlotError::Draw`].
pub(super) fn draw_err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}
