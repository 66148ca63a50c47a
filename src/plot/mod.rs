//! Log-log and log-linear figures, written as SVG and PNG with an embedded font.
//!
//! Everything is drawn in transformed coordinates: `X = log10 x` on a log x axis (`X = x` on a
//! linear one) and `Y = log10 y`. A power law `y = c x^p` is then the straight line
//! `Y = log10 c + p X` on a log-log figure. Ticks on log axes sit at decades `Y = k` and are
//! labelled `1e{k}`; the text is rendered with the bundled DejaVu Sans (no system fonts).
//!
//! A figure ([`Plot`], in `figure`, log-log or log-linear by its [`XScale`]) holds curves
//! ([`Series`]) and reference slopes ([`RefSlope`], in `series`); writing it maps it to
//! transformed coordinates (`prepared`), picks axis ranges and ticks (`axes`) and draws it
//! (`render`, with the palette and the embedded font). [`save_image_grid`] (`image_grid`)
//! writes a PNG grid of images; every failure is a [`PlotError`] (`error`).

mod axes;
mod error;
mod figure;
mod image_grid;
mod prepared;
mod render;
mod series;

pub use error::PlotError;
pub use figure::{Plot, XScale};
pub use image_grid::save_image_grid;
pub use series::{RefSlope, Series};
