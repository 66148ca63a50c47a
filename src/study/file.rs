//! Study files: `studies/<name>.toml`, parsed with serde into typed structs.
//!
//! # Format
//! ```text
//! kind = "path-kl"                  # the study kind (one of study::KINDS)
//! description = "..."               # one line: what the result shows
//!
//! [params]                          # the kind's parameters (kebab-case keys; omitted = the
//! data = "mog40"                    #   binary's default)
//!
//! [outputs]                         # paths relative to the root (the parent of studies/)
//! json = "studies/results/path_kl_mog40.json"
//! figure = "figures/path_kl_mog40"  # stem; the kind appends suffixes and .svg/.png
//!
//! [check]                           # drift tolerances (see study::check)
//! quick = true
//! rel = 1e-9
//! ignore = ["wall_time_s"]
//! ```
//! Unknown keys anywhere, a wrong type, an unknown kind or an invalid value are errors that
//! name the file, the key and what was expected.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::check::CheckSpec;
use super::{FigureName, StudyError, StudyKind};

/// Where a study writes its outputs (relative to the root).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Outputs {
    /// The results JSON.
    pub json: PathBuf,
    /// The figure stem (the kind appends its suffixes and extensions); none for kinds without
    /// figures.
    #[serde(default)]
    pub figure: Option<PathBuf>,
}

/// A parsed study file.
#[derive(Debug)]
pub struct StudyFile {
    /// The file.
    pub path: PathBuf,
    /// The root the outputs are relative to (the parent of the file's directory).
    pub root: PathBuf,
    /// The file stem (`path_kl_mog40`).
    pub name: String,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// One line: what the result shows.
    pub description: String,
    /// The typed parameters of the kind.
    pub study: Box<dyn StudyKind>,
    /// Where the outputs go.
    pub outputs: Outputs,
    /// Drift tolerances.
    pub check: CheckSpec,
}

/// The first pass: only the kind.
#[derive(Deserialize)]
struct KindOnly {
    kind: String,
}

/// The second pass: the whole file with the kind's params type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileOf<P> {
    #[allow(dead_code)]
    pub(crate) kind: String,
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) params: P,
    pub(crate) outputs: Outputs,
    #[serde(default)]
    pub(crate) check: CheckSpec,
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Deserialises `text` as `T`, turning errors into [`StudyError::Syntax`] with the key path
/// and line.
pub(crate) fn parse_as<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, StudyError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        StudyError::Syntax {
            path: path.to_path_buf(),
            line: inner.span().map(|s| line_of(text, s.start)),
            key,
            message: inner.message().to_string(),
        }
    })
}

/// The parts of a file common to every kind.
pub(crate) struct Parsed {
    pub(crate) description: String,
    pub(crate) study: Box<dyn StudyKind>,
    pub(crate) outputs: Outputs,
    pub(crate) check: CheckSpec,
}

/// SHA-256 of `bytes`, lower-case hex.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The study kinds a harness run knows: their names and the parser of a file of each kind.
/// The harness itself knows no kind; the lab's registry is
/// [`crate::experiments::registry::REGISTRY`], passed in by whoever loads a file.
#[derive(Clone, Copy)]
pub struct Registry {
    /// The kind names (for messages).
    pub kinds: &'static [&'static str],
    /// Parses the file of `kind` at `path` (text, root for relative paths).
    pub(crate) parse: fn(&Path, &str, &str, &Path) -> Result<Parsed, StudyError>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds)
            .finish()
    }
}

impl StudyFile {
    /// Reads and parses a study file, validating every parameter.
    ///
    /// # Errors
    /// [`StudyError::Io`] when unreadable; [`StudyError::Syntax`] (unknown key, wrong type:
    /// key path and line), [`StudyError::UnknownKind`], [`StudyError::FeatureMissing`],
    /// [`StudyError::Param`] (a value out of its domain, e.g. an unknown preset) and
    /// [`StudyError::Invalid`] (outputs or tolerances), each naming the file and the key.
    pub fn load(path: &Path, registry: &Registry) -> Result<Self, StudyError> {
        let input = |what: &str, source| StudyError::Input {
            path: path.to_path_buf(),
            what: what.to_string(),
            source,
        };
        if path.is_dir() {
            return Err(input("is a directory, expected a study file (.toml)", None));
        }
        let bytes = std::fs::read(path).map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::NotFound {
                "no such study file"
            } else {
                "cannot read the study file"
            };
            input(what, Some(e))
        })?;
        let text = String::from_utf8(bytes.clone()).map_err(|e| StudyError::Syntax {
            path: path.to_path_buf(),
            line: None,
            key: ".".into(),
            message: format!("not UTF-8: {e}"),
        })?;
        Self::parse(path, &text, sha256_hex(&bytes), registry)
    }

    /// Parses the text of a study file at `path` (used for the name, the root and messages).
    ///
    /// # Errors
    /// As [`StudyFile::load`], without I/O.
    pub fn parse(
        path: &Path,
        text: &str,
        sha256: String,
        registry: &Registry,
    ) -> Result<Self, StudyError> {
        let kind: KindOnly = parse_as(path, text)?;
        let root = path
            .parent()
            .and_then(Path::parent)
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let root = if root.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            root
        };
        let parsed = (registry.parse)(path, &kind.kind, text, &root)?;
        parsed.study.validate().map_err(|error| StudyError::Param {
            path: path.to_path_buf(),
            error,
        })?;
        let invalid = |key: &str, message: String| StudyError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        parsed
            .check
            .validate()
            .map_err(|(key, message)| invalid(&key, message))?;
        // Outputs stay under the root: relative paths without `..` (a study file cannot
        // overwrite files outside the repository).
        for (key, p) in [
            ("outputs.json", Some(&parsed.outputs.json)),
            ("outputs.figure", parsed.outputs.figure.as_ref()),
        ] {
            if let Some(p) = p {
                if let Err(message) = ensure_under_root(p) {
                    return Err(invalid(key, message));
                }
            }
        }
        let figures = parsed.study.figures();
        if !figures.is_empty() && parsed.outputs.figure.is_none() {
            return Err(invalid(
                "outputs.figure",
                format!(
                    "a figure stem (kind `{}` writes figures), got nothing",
                    kind.kind
                ),
            ));
        }
        if figures.is_empty() && parsed.outputs.figure.is_some() {
            return Err(invalid(
                "outputs.figure",
                format!("nothing (kind `{}` writes no figure)", kind.kind),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            root,
            name: path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().to_string()),
            sha256,
            description: parsed.description,
            study: parsed.study,
            outputs: parsed.outputs,
            check: parsed.check,
        })
    }

    /// The results JSON's path (under the root).
    #[must_use]
    pub fn json_path(&self) -> PathBuf {
        self.root.join(&self.outputs.json)
    }

    /// The figure stem's path (under the root), if the kind writes figures.
    #[must_use]
    pub fn figure_stem(&self) -> Option<PathBuf> {
        self.outputs.figure.as_ref().map(|f| self.root.join(f))
    }

    /// Every output file (JSON first, then the figures), under the root.
    #[must_use]
    pub fn output_paths(&self) -> Vec<PathBuf> {
        let mut out = vec![self.json_path()];
        if let Some(stem) = self.figure_stem() {
            for f in self.study.figures() {
                out.extend(f.paths(&stem));
            }
        }
        out
    }

    /// The figure names the kind declares.
    #[must_use]
    pub fn figure_names(&self) -> Vec<FigureName> {
        self.study.figures()
    }
}

/// `Ok` when `p` is a relative path made of plain names (and `.`): it cannot leave the root.
fn ensure_under_root(p: &Path) -> Result<(), String> {
    use std::path::Component;
    let escapes = p
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes || p.as_os_str().is_empty() || p.file_name().is_none() {
        Err(format!(
            "a relative path under the root without `..`, got `{}`",
            p.display()
        ))
    } else {
        Ok(())
    }
}

/// Output files that two study files both write: `(path, first study, second study)` per
/// collision (running either would silently overwrite the other's result).
#[must_use]
pub fn collisions(files: &[StudyFile]) -> Vec<(PathBuf, String, String)> {
    let mut owner: std::collections::BTreeMap<PathBuf, &str> = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for f in files {
        for p in f.output_paths() {
            // Compare lexically normalised paths (`./a` and `a` are the same file).
            let key: PathBuf = p
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect();
            match owner.get(&key) {
                Some(&first) if first != f.name => out.push((p, first.to_string(), f.name.clone())),
                Some(_) => {}
                None => {
                    owner.insert(key, &f.name);
                }
            }
        }
    }
    out
}

/// The study files under `root/studies` (`*.toml`), sorted by name.
///
/// # Errors
/// When the directory cannot be read.
pub fn discover(root: &Path) -> Result<Vec<PathBuf>, StudyError> {
    let dir = root.join("studies");
    let entries = std::fs::read_dir(&dir).map_err(|source| StudyError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}
