//! One data-set loader for every experiment: a name is an image preset (a low-rank mixture
//! on `[-1, 1]^D`, see [`crate::data::images`]), a dense preset or a mixture JSON file
//! ([`crate::data::presets`]); and the per-coordinate data range that the Analytic-DPM clip
//! of a sampler needs.

use nalgebra::{DMatrix, DVector};
use thiserror::Error;

use super::images::{self, ImageDataError};
use super::lowrank::LowRankMixture;
use super::mixture::Mixture;
use super::presets::{self, PresetError};

/// The range of the image presets: pixels live in `[-1, 1]` by construction.
pub const IMAGE_RANGE: (f64, f64) = (-1.0, 1.0);

/// A loaded data set.
#[derive(Clone, Debug)]
pub enum DataSet {
    /// A dense-component preset or mixture file.
    Dense(Mixture),
    /// An image preset (low-rank-plus-diagonal components).
    LowRank(LowRankMixture),
}

/// Why a data set could not be loaded (the underlying loader's message).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataSetError {
    /// An image preset failed to build.
    #[error(transparent)]
    Image(#[from] ImageDataError),
    /// A dense preset or mixture file failed.
    #[error(transparent)]
    Preset(#[from] PresetError),
}

/// Whether `name` is an image preset.
#[must_use]
pub fn is_image(name: &str) -> bool {
    images::shape(name).is_some()
}

impl DataSet {
    /// The data set `name`: an image preset as [`DataSet::LowRank`], anything else as a dense
    /// preset or mixture JSON file.
    ///
    /// # Errors
    /// The loader's error.
    pub fn load(name: &str) -> Result<Self, DataSetError> {
        if is_image(name) {
            Ok(Self::LowRank(images::load(name)?))
        } else {
            Ok(Self::Dense(presets::load(name)?))
        }
    }

    /// The samplers' clip range: [`IMAGE_RANGE`] for image presets, [`mixture_range`] for
    /// dense mixtures.
    #[must_use]
    pub fn clip_range(&self) -> (f64, f64) {
        match self {
            Self::Dense(q) => mixture_range(q),
            Self::LowRank(_) => IMAGE_RANGE,
        }
    }
}

/// `[min_k min_i (mu_ki - 4 sd_ki), max_k max_i (mu_ki + 4 sd_ki)]` over components given as
/// (mean, covariance).
fn four_sd_range<'a>(
    components: impl Iterator<Item = (&'a DVector<f64>, DMatrix<f64>)>,
) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (mean, cov) in components {
        for i in 0..mean.len() {
            let sd = cov[(i, i)].sqrt();
            lo = lo.min(mean[i] - 4.0 * sd);
            hi = hi.max(mean[i] + 4.0 * sd);
        }
    }
    (lo, hi)
}

/// A per-coordinate data range for the Analytic-DPM clip of mixture data: the component
/// means -/+ 4 standard deviations (mixture data are unbounded; the range holds all but
/// ~6e-5 of each component's mass per coordinate).
#[must_use]
pub fn mixture_range(q0: &Mixture) -> (f64, f64) {
    four_sd_range(q0.components().iter().map(|c| (c.mean(), c.covariance())))
}

/// [`mixture_range`] of a low-rank mixture (its components' dense covariances).
#[must_use]
pub fn lowrank_range(q0: &LowRankMixture) -> (f64, f64) {
    four_sd_range(q0.components().iter().map(|c| (c.mean(), c.covariance())))
}
