//! Study kinds `learned-eval` and `learned-train` (feature `candle`): learned scores and learned
//! reverse covariances trained in candle and judged by exact error and exact path KL on
//! Gaussian-mixture data (the `learned` binary's `eval` and `train` are CLIs over these).
//!
//! - [`LearnedEvalStudy`] loads checkpoints and computes, per method and T, the exact path KL
//!   of the chain split into `S_full`, a mean part and a covariance part
//!   ([`crate::learned::evaluate_chains`]), the MMD of sampled chains (DDPM and DDIM)
//!   against exact draws, the covariance error against `diag C` per t and, for a learned
//!   score, the asymmetry of its Jacobian.
//! - [`LearnedCurveStudy`] trains covariance heads against the exact score at a list of
//!   iteration budgets and evaluates each in memory: the learning curve of the covariance part
//!   of the exact path KL and of the diagonal error, beside the exact oracles.
//! - [`LearnedTrainStudy`] trains the score network and the covariance heads and writes their
//!   safetensors checkpoints (side outputs under the `out` directory, rewritten by every run)
//!   and the training log (its results JSON).
//!
//! Relative checkpoint directories resolve against the study root (`study --root`); the
//! binary's root is the working directory.

use std::path::{Path, PathBuf};

use crate::data::mixture::Mixture;
use crate::learned::{GaussianPrior, HeadKind};
use crate::study::ParamError;

pub mod curve;
pub mod eval;
pub mod train;

pub use curve::LearnedCurveStudy;
pub use eval::LearnedEvalStudy;
pub use train::LearnedTrainStudy;

/// A data set: the dense mixture (exact evaluation and the training draws), its name and the
/// samplers' clip range.
#[derive(Clone, Debug)]
pub(crate) struct DataSet {
    pub(crate) name: String,
    pub(crate) q0: Mixture,
    pub(crate) range: (f64, f64),
}

/// Loads a 2-D preset or an image preset (as a dense mixture; image presets live in [-1, 1],
/// the samplers' clip range for them).
pub(crate) fn load_data(name: &str) -> Result<DataSet, ParamError> {
    let expected = "mog40, mog40-unit, grid9, aniso2, mix6 or an image preset (digits8)";
    if crate::data::dataset::is_image(name) {
        let lr =
            crate::data::images::load(name).map_err(|e| ParamError::new("data", expected, e))?;
        let means = lr.components().iter().map(|c| c.mean().clone()).collect();
        let covs = lr.components().iter().map(|c| c.covariance()).collect();
        let q0 = Mixture::from_dense(lr.weights().to_vec(), means, covs)
            .map_err(|e| ParamError::new("data", expected, e))?;
        return Ok(DataSet {
            name: name.into(),
            q0,
            range: crate::data::dataset::IMAGE_RANGE,
        });
    }
    if !crate::data::presets::PRESET_NAMES.contains(&name) {
        return Err(ParamError::new(
            "data",
            expected,
            format!("unknown data set `{name}`"),
        ));
    }
    let q0 = crate::data::presets::load(name).map_err(|e| ParamError::new("data", expected, e))?;
    let range = crate::sampler::clip_range_of(&q0);
    Ok(DataSet {
        name: name.into(),
        q0,
        range,
    })
}

/// The dimension of a data set without building it (an image preset's from its shape: its
/// dense mixture takes long to build for D = 1024).
pub(crate) fn data_dim(name: &str) -> Result<usize, ParamError> {
    match crate::data::images::shape(name) {
        Some((c, h, w)) => Ok(c * h * w),
        None => Ok(load_data(name)?.q0.dim()),
    }
}

/// The data's moment-matched Gaussian, the prior every network is a residual of.
pub(crate) fn prior_of(q0: &Mixture) -> GaussianPrior {
    let mean = q0.mean();
    let trace = q0.second_moment_trace() - mean.norm_squared();
    GaussianPrior::from_moments(mean.iter().copied().collect(), trace)
}

/// The directory of a data set's checkpoints: `<dir>/<data>` for the MLPs, `<dir>/<data>/unet`
/// for the U-Nets (`net`: `mlp` or `unet`).
#[must_use]
pub fn model_dir(dir: &Path, data: &str, net: &str) -> PathBuf {
    match net {
        "unet" => dir.join(data).join("unet"),
        _ => dir.join(data),
    }
}

/// The score network's checkpoint: `<dir>/<data>/score.safetensors`.
#[must_use]
pub fn score_path(dir: &Path, data: &str) -> PathBuf {
    score_path_net(dir, data, "mlp")
}

/// The score network's checkpoint of architecture `net` (under [`model_dir`]).
#[must_use]
pub fn score_path_net(dir: &Path, data: &str, net: &str) -> PathBuf {
    model_dir(dir, data, net).join("score.safetensors")
}

/// A head's checkpoint: `<dir>/<data>/<kind>-<score>.safetensors`, or `sn.safetensors` (`sn`'s
/// objective does not involve the score: one network serves both).
#[must_use]
pub fn head_path(dir: &Path, data: &str, kind: HeadKind, score: &str) -> PathBuf {
    head_path_net(dir, data, kind, score, "mlp")
}

/// A head's checkpoint of architecture `net` (under [`model_dir`], named as [`head_path`]).
#[must_use]
pub fn head_path_net(dir: &Path, data: &str, kind: HeadKind, score: &str, net: &str) -> PathBuf {
    let d = model_dir(dir, data, net);
    match kind {
        HeadKind::Sn => d.join("sn.safetensors"),
        _ => d.join(format!("{}-{score}.safetensors", kind.name())),
    }
}

/// Checks a `net` key: `mlp`, or `unet` on an image data set; returns the U-Net's image shape.
pub(crate) fn parse_net(
    net: &str,
    data: &str,
) -> Result<Option<(usize, usize, usize)>, ParamError> {
    match net {
        "mlp" => Ok(None),
        "unet" => crate::data::images::shape(data).map(Some).ok_or_else(|| {
            ParamError::new(
                "net",
                "mlp, or unet on an image data set (digits8, digits32, synth3x32)",
                format!("unet on `{data}`, which is not an image data set"),
            )
        }),
        other => Err(ParamError::new(
            "net",
            "mlp or unet",
            format!("unknown network `{other}`"),
        )),
    }
}
