//! The registry of study kinds: the one place that maps a study file's `kind` to the
//! experiment that computes it. A new kind is a file in `experiments/` and one arm here (and
//! its name in [`KINDS`]).

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::study::file::{parse_as, FileOf, Parsed, Registry};
use crate::study::{StudyError, StudyKind};

/// The study kinds this build knows (those behind a feature are listed either way: a file of
/// such a kind is a clear error when the feature is missing).
pub const KINDS: [&str; 11] = [
    "path-kl",
    "local-error",
    "lanczos",
    "samplers",
    "guidance",
    "image-presets",
    "validate",
    "bench-gpu",
    "learned-eval",
    "learned-train",
    "learned-curve",
];

fn parse_kind_as<P>(path: &Path, text: &str, root: &Path) -> Result<Parsed, StudyError>
where
    P: StudyKind + DeserializeOwned + Default + 'static,
{
    let f: FileOf<P> = parse_as(path, text)?;
    let mut params = f.params;
    params.set_root(root);
    Ok(Parsed {
        description: f.description,
        study: Box::new(params),
        outputs: f.outputs,
        check: f.check,
    })
}

/// The typed study of `kind`: one arm per kind (add a kind here); relative paths in its
/// parameters resolve against `root`.
fn parse_kind(path: &Path, kind: &str, text: &str, root: &Path) -> Result<Parsed, StudyError> {
    let missing = |feature| StudyError::FeatureMissing {
        path: path.to_path_buf(),
        kind: kind.to_string(),
        feature,
    };
    match kind {
        "path-kl" => parse_kind_as::<crate::experiments::path_kl::PathKlStudy>(path, text, root),
        "local-error" => {
            parse_kind_as::<crate::experiments::local_error::LocalErrorStudy>(path, text, root)
        }
        "lanczos" => parse_kind_as::<crate::experiments::lanczos::LanczosStudy>(path, text, root),
        "samplers" => {
            parse_kind_as::<crate::experiments::samplers::SamplersStudy>(path, text, root)
        }
        "guidance" => {
            parse_kind_as::<crate::experiments::guidance::GuidanceStudy>(path, text, root)
        }
        "image-presets" => {
            parse_kind_as::<crate::experiments::image_presets::ImagePresetsStudy>(path, text, root)
        }
        #[cfg(feature = "candle")]
        "validate" => {
            parse_kind_as::<crate::experiments::validate::ValidateStudy>(path, text, root)
        }
        #[cfg(feature = "candle")]
        "bench-gpu" => {
            parse_kind_as::<crate::experiments::bench_gpu::BenchGpuStudy>(path, text, root)
        }
        #[cfg(feature = "candle")]
        "learned-eval" => {
            parse_kind_as::<crate::experiments::learned::LearnedEvalStudy>(path, text, root)
        }
        #[cfg(feature = "candle")]
        "learned-train" => {
            parse_kind_as::<crate::experiments::learned::LearnedTrainStudy>(path, text, root)
        }
        #[cfg(feature = "candle")]
        "learned-curve" => {
            parse_kind_as::<crate::experiments::learned::LearnedCurveStudy>(path, text, root)
        }
        #[cfg(not(feature = "candle"))]
        "validate" | "bench-gpu" | "learned-eval" | "learned-train" | "learned-curve" => {
            Err(missing("candle"))
        }
        _ => {
            let _ = missing;
            Err(StudyError::UnknownKind {
                path: path.to_path_buf(),
                kind: kind.to_string(),
                expected: KINDS.join(", "),
            })
        }
    }
}

/// The lab's registry: every kind above, for [`crate::study::StudyFile::load`].
pub const REGISTRY: Registry = Registry {
    kinds: &KINDS,
    parse: parse_kind,
};
