//! Errors of the study harness and of the study kinds: a parameter outside its domain
//! ([`ParamError`], naming the key) and everything a study can fail on ([`StudyError`]).

use std::path::PathBuf;

use thiserror::Error;

/// A parameter outside its domain, naming the key (kebab-case, as in study files; the
/// binaries print it as the flag `--key`).
#[derive(Debug, Error, Clone, PartialEq)]
#[error("`{key}`: expected {expected}, got {got}")]
pub struct ParamError {
    /// The key (study file) or flag name without the leading `--` (binary).
    pub key: &'static str,
    /// What was expected.
    pub expected: String,
    /// What was given.
    pub got: String,
}

impl ParamError {
    /// A parameter error for `key`.
    pub fn new(
        key: &'static str,
        expected: impl Into<String>,
        got: impl std::fmt::Display,
    ) -> Self {
        Self {
            key,
            expected: expected.into(),
            got: got.to_string(),
        }
    }

    /// The message with the key written as a command-line flag (`--early-stop`).
    #[must_use]
    pub fn as_flag(&self) -> String {
        format!(
            "`--{}`: expected {}, got {}",
            self.key, self.expected, self.got
        )
    }
}

/// Errors of the study runner and of the study kinds.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StudyError {
    /// A file could not be read or written (the message names the path; the OS error is the
    /// source, printed once by `{:#}` chains).
    #[error("{}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A study file does not parse into its typed form (unknown key, wrong type).
    #[error("{path}{line}: key `{key}`: {message}", line = line.map(|l| format!(":{l}")).unwrap_or_default())]
    Syntax {
        /// The study file.
        path: PathBuf,
        /// The line of the offending value, when known.
        line: Option<usize>,
        /// The key path (`params.steps`), `.` for the document.
        key: String,
        /// The parser's message (what was expected).
        message: String,
    },
    /// A study file names an unknown kind.
    #[error("{path}: key `kind`: unknown study kind `{kind}`, expected one of {expected}")]
    UnknownKind {
        /// The study file.
        path: PathBuf,
        /// The kind given.
        kind: String,
        /// The kinds known.
        expected: String,
    },
    /// A study kind needs a cargo feature this build lacks.
    #[error("{path}: study kind `{kind}` needs the `{feature}` feature (build with --features {feature})")]
    FeatureMissing {
        /// The study file.
        path: PathBuf,
        /// The kind.
        kind: String,
        /// The missing feature.
        feature: &'static str,
    },
    /// A parameter value is invalid.
    #[error("{path}: key `params.{}`: expected {}, got {}", .error.key, .error.expected, .error.got)]
    Param {
        /// The study file.
        path: PathBuf,
        /// What is wrong.
        error: ParamError,
    },
    /// A parameter value is invalid (no file: the kind was built in code).
    #[error(transparent)]
    BadParam(#[from] ParamError),
    /// An input file (a study file, a shard) is missing, a directory or unreadable: the
    /// user's input (exit 2). The OS error, if any, is the source.
    #[error("{}: {what}", .path.display())]
    Input {
        /// The path given.
        path: PathBuf,
        /// What is wrong (`not found`, `is a directory`, ...).
        what: String,
        /// The OS error, if any.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A study file's other sections are invalid (outputs, check).
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        /// The study file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What was expected.
        message: String,
    },
    /// An output file could not be checked or written.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// A computation failed.
    #[error(transparent)]
    Covlab(#[from] crate::Error),
    /// A cell value or shard file does not have the shape its kind writes (the JSON error is
    /// the source).
    #[error("{what}")]
    Json {
        /// What was being read.
        what: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// Shard outputs do not fit together.
    #[error("merge: {0}")]
    Merge(String),
    /// A kind's assembled figures differ from the outputs it declares.
    #[error("internal: {kind} produced figures {produced:?} but declares {declared:?}")]
    Outputs {
        /// The kind.
        kind: &'static str,
        /// The figure suffixes produced.
        produced: Vec<String>,
        /// The figure suffixes declared.
        declared: Vec<String>,
    },
    /// The tensor path failed.
    #[cfg(feature = "candle")]
    #[error(transparent)]
    Tensor(#[from] crate::tensor::TensorError),
    /// A learned model could not be trained or evaluated.
    #[cfg(feature = "candle")]
    #[error(transparent)]
    Learned(#[from] crate::learned::LearnedError),
    /// A study case could not be computed.
    #[error("{case}: {reason}")]
    Case {
        /// The case.
        case: String,
        /// What went wrong.
        reason: String,
    },
    /// A low-rank mixture could not be built.
    #[error(transparent)]
    LowRank(#[from] crate::data::lowrank::LowRankError),
    /// A thread pool could not be built.
    #[error("thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}

macro_rules! from_module_errors {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for StudyError {
            fn from(e: $t) -> Self {
                StudyError::Covlab(crate::Error::from(e))
            }
        })*
    };
}

from_module_errors!(
    crate::process::schedule::ScheduleError,
    crate::data::mixture::MixtureError,
    crate::kernel::family::CovarianceError,
    crate::kl::path_kl::PathKlError,
    crate::stats::rates::RatesError,
    crate::data::presets::PresetError,
    crate::kl::guidance::GuidanceError,
    crate::linalg::lanczos::LanczosError,
    crate::sampler::SamplerError,
    crate::kl::hutchinson::HutchinsonError,
    crate::stats::MetricsError,
    crate::data::images::ImageDataError,
    crate::plot::PlotError,
);

#[cfg(feature = "candle")]
impl From<crate::tensor::candle_core::Error> for StudyError {
    fn from(e: crate::tensor::candle_core::Error) -> Self {
        StudyError::Tensor(crate::tensor::TensorError::from(e))
    }
}

impl StudyError {
    /// Whether the error is the user's input (exit code 2 in the binaries) rather than a
    /// failure of the computation or of I/O (exit code 1).
    #[must_use]
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            StudyError::Syntax { .. }
                | StudyError::UnknownKind { .. }
                | StudyError::FeatureMissing { .. }
                | StudyError::Param { .. }
                | StudyError::BadParam(_)
                | StudyError::Invalid { .. }
                | StudyError::Input { .. }
                | StudyError::Merge(_)
        )
    }
}
