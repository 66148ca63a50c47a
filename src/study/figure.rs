//! The figures a study writes: log-log and log-linear plots (SVG and PNG) and image grids
//! (PNG), each saved under the study's figure stem plus a per-figure suffix.

use std::path::{Path, PathBuf};

use crate::plot::{save_image_grid, Plot, PlotError};

/// One figure, ready to be saved.
#[derive(Clone, Debug)]
pub enum Figure {
    /// A log-log or log-linear plot: `<stem>.svg` and `<stem>.png`.
    Plot(Plot),
    /// A grid of images: `<stem>.png`.
    ImageGrid {
        /// The images, each `channels x height x width` values.
        images: Vec<Vec<f64>>,
        /// `(channels, height, width)`.
        shape: (usize, usize, usize),
        /// Images per row.
        cols: usize,
        /// The value range mapped to 0..255.
        range: (f64, f64),
        /// Pixels per image pixel.
        scale: u32,
    },
}

/// Extensions of a plot.
pub const PLOT_EXTENSIONS: &[&str] = &["svg", "png"];
/// Extensions of an image grid.
pub const GRID_EXTENSIONS: &[&str] = &["png"];

/// A figure's name: the suffix appended to the figure stem and the files' extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FigureName {
    /// Appended to the stem (`""`, `"_mog40"`).
    pub suffix: String,
    /// The extensions written.
    pub extensions: &'static [&'static str],
}

impl FigureName {
    /// A plot (SVG and PNG) with `suffix`.
    pub fn plot(suffix: impl Into<String>) -> Self {
        Self {
            suffix: suffix.into(),
            extensions: PLOT_EXTENSIONS,
        }
    }

    /// An image grid (PNG) with `suffix`.
    pub fn grid(suffix: impl Into<String>) -> Self {
        Self {
            suffix: suffix.into(),
            extensions: GRID_EXTENSIONS,
        }
    }

    /// The files written under `stem`.
    #[must_use]
    pub fn paths(&self, stem: &Path) -> Vec<PathBuf> {
        self.extensions
            .iter()
            .map(|e| PathBuf::from(format!("{}{}.{e}", stem.display(), self.suffix)))
            .collect()
    }
}

impl Figure {
    /// The extensions this figure writes.
    #[must_use]
    pub fn extensions(&self) -> &'static [&'static str] {
        match self {
            Figure::Plot(_) => PLOT_EXTENSIONS,
            Figure::ImageGrid { .. } => GRID_EXTENSIONS,
        }
    }

    /// Saves the figure at `path_stem` (extensions added; parent directories created).
    ///
    /// # Errors
    /// Drawing or I/O errors.
    pub fn save(&self, path_stem: &Path) -> Result<(), PlotError> {
        match self {
            Figure::Plot(f) => f.save(path_stem),
            Figure::ImageGrid {
                images,
                shape,
                cols,
                range,
                scale,
            } => {
                let path = PathBuf::from(format!("{}.png", path_stem.display()));
                save_image_grid(images, *shape, *cols, *range, *scale, &path)
            }
        }
    }
}

/// Saves every figure of `figures` under `stem` + suffix, going on after a failed one;
/// returns the files written and, per failed figure, its suffix and error.
#[must_use]
pub fn save_each(
    stem: &Path,
    figures: &[(String, Figure)],
) -> (Vec<PathBuf>, Vec<(String, PlotError)>) {
    let mut written = Vec::new();
    let mut failed = Vec::new();
    for (suffix, fig) in figures {
        match save_one(stem, suffix, fig) {
            Ok(w) => written.extend(w),
            Err(e) => failed.push((suffix.clone(), e)),
        }
    }
    (written, failed)
}

/// Saves every figure of `figures` under `stem` + suffix; returns the files written.
///
/// # Errors
/// The first drawing or I/O error.
pub fn save_all(stem: &Path, figures: &[(String, Figure)]) -> Result<Vec<PathBuf>, PlotError> {
    let mut written = Vec::new();
    for (suffix, fig) in figures {
        written.extend(save_one(stem, suffix, fig)?);
    }
    Ok(written)
}

/// Saves `fig` under `stem` + `suffix`; returns its files.
fn save_one(stem: &Path, suffix: &str, fig: &Figure) -> Result<Vec<PathBuf>, PlotError> {
    let s = PathBuf::from(format!("{}{suffix}", stem.display()));
    fig.save(&s)?;
    Ok(FigureName {
        suffix: suffix.to_string(),
        extensions: fig.extensions(),
    }
    .paths(stem))
}
