//! The shipped data sets (seeded, reproducible) and the JSON mixture-file format.
//!
//! | name | D | K | what |
//! |---|---|---|---|
//! | `mog40` | 2 | 40 | equal weights, means uniform in [-40, 40]^2 (seed 40), covariance 40 I (OCM 5.1, LGS 5.1) |
//! | `mog40-unit` | 2 | 40 | `mog40` divided by 40: means in [-1, 1]^2, covariance I / 40 |
//! | `grid9` | 2 | 9 | means {-3, 0, 3}^2, std 0.1 (OCM appendix C.1): sharp posteriors |
//! | `aniso2` | 2 | 4 | elongated, rotated, correlated components (variances 1 and 0.05): `diag` and `full` really differ |
//! | `mix6` | 6 | 5 | dense random SPD covariances (seed 6): the lattice is out of reach, QMC is used |
//!
//! Mixture files (`--data FILE.json`):
//! `{"weights": [w_k...], "means": [[...] per component], "covariances": [[[...]...] per component]}`;
//! other keys are allowed and ignored.

use std::path::Path;

use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use thiserror::Error;

use crate::data::mixture::{Mixture, MixtureError};

/// Names of the presets.
pub const PRESET_NAMES: [&str; 5] = ["mog40", "mog40-unit", "grid9", "aniso2", "mix6"];

/// Errors of presets and mixture files.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PresetError {
    /// Neither a preset nor an existing file.
    #[error("`data`: `{0}` is neither a preset (mog40, mog40-unit, grid9, aniso2, mix6) nor an existing .json file")]
    Unknown(String),
    /// The path given is a directory.
    #[error("`data`: `{0}` is a directory, expected a preset (mog40, mog40-unit, grid9, aniso2, mix6) or a mixture .json file")]
    Directory(String),
    /// The file could not be read (the OS error is the source, shown once).
    #[error("`data`: cannot read {path}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected schema.
    #[error("`data`: {path} is not a mixture file ({message}); expected {{\"weights\": [...], \"means\": [[...]...], \"covariances\": [[[...]...]...]}}")]
    Json {
        /// The path.
        path: String,
        /// serde_json's message (with line and column).
        message: String,
    },
    /// A covariance matrix is ragged (rows of different lengths).
    #[error("`covariances[{index}]`: row {row} has length {found}, expected {expected}")]
    Ragged {
        /// Component index.
        index: usize,
        /// Row index.
        row: usize,
        /// Length found.
        found: usize,
        /// Length expected.
        expected: usize,
    },
    /// The mixture itself is invalid.
    #[error(transparent)]
    Mixture(#[from] MixtureError),
}

/// The on-disk schema.
#[derive(Debug, Deserialize)]
struct MixtureFile {
    weights: Vec<f64>,
    means: Vec<Vec<f64>>,
    covariances: Vec<Vec<Vec<f64>>>,
}

/// Loads a preset by name, or a mixture file by path.
///
/// # Errors
/// [`PresetError`] naming the field or the file.
pub fn load(name_or_path: &str) -> Result<Mixture, PresetError> {
    match name_or_path {
        "mog40" => Ok(mog40(1.0)),
        "mog40-unit" => Ok(mog40(40.0)),
        "grid9" => Ok(grid9()),
        "aniso2" => Ok(aniso2()),
        "mix6" => Ok(mix6()),
        other => {
            let p = Path::new(other);
            if p.is_file() {
                from_file(p)
            } else if p.is_dir() {
                Err(PresetError::Directory(other.to_string()))
            } else {
                Err(PresetError::Unknown(other.to_string()))
            }
        }
    }
}

/// Parses a mixture from JSON text (see the module docs for the schema).
///
/// # Errors
/// Malformed JSON, ragged matrices, or an invalid mixture.
pub fn from_json_str(text: &str, origin: &str) -> Result<Mixture, PresetError> {
    let f: MixtureFile = serde_json::from_str(text).map_err(|e| PresetError::Json {
        path: origin.to_string(),
        message: e.to_string(),
    })?;
    let means: Vec<DVector<f64>> = f.means.into_iter().map(DVector::from_vec).collect();
    let mut covs = Vec::with_capacity(f.covariances.len());
    for (index, rows) in f.covariances.into_iter().enumerate() {
        let n = rows.len();
        for (row, r) in rows.iter().enumerate() {
            if r.len() != n {
                return Err(PresetError::Ragged {
                    index,
                    row,
                    found: r.len(),
                    expected: n,
                });
            }
        }
        covs.push(DMatrix::from_fn(n, n, |i, j| rows[i][j]));
    }
    Ok(Mixture::from_dense(f.weights, means, covs)?)
}

/// Reads a mixture file.
///
/// # Errors
/// I/O, JSON or validation errors, naming the file.
pub fn from_file(path: &Path) -> Result<Mixture, PresetError> {
    let text = std::fs::read_to_string(path).map_err(|source| PresetError::Io {
        path: path.display().to_string(),
        source,
    })?;
    from_json_str(&text, &path.display().to_string())
}

/// Writes a mixture in the file schema (dense covariances).
#[must_use]
pub fn to_json(m: &Mixture) -> serde_json::Value {
    let means: Vec<Vec<f64>> = m
        .components()
        .iter()
        .map(|c| c.mean().iter().copied().collect())
        .collect();
    let covs: Vec<Vec<Vec<f64>>> = m
        .components()
        .iter()
        .map(|c| {
            let s = c.covariance();
            (0..s.nrows())
                .map(|i| (0..s.ncols()).map(|j| s[(i, j)]).collect())
                .collect()
        })
        .collect();
    serde_json::json!({"weights": m.weights(), "means": means, "covariances": covs})
}

fn equal_weights(k: usize) -> Vec<f64> {
    vec![1.0 / k as f64; k]
}

/// `mog40` scaled down by `scale`: 40 components, means uniform in [-40, 40]^2 / scale
/// (ChaCha8 seed 40), covariance (40 / scale^2) I.
#[must_use]
pub fn mog40(scale: f64) -> Mixture {
    let mut rng = ChaCha8Rng::seed_from_u64(40);
    let means = (0..40)
        .map(|_| DVector::from_fn(2, |_, _| rng.gen_range(-40.0..40.0) / scale))
        .collect();
    let covs = (0..40)
        .map(|_| DMatrix::identity(2, 2) * (40.0 / (scale * scale)))
        .collect();
    Mixture::from_dense(equal_weights(40), means, covs).expect("preset is valid")
}

/// `grid9`: means {-3, 0, 3}^2, std 0.1, equal weights.
#[must_use]
pub fn grid9() -> Mixture {
    let mut means = Vec::new();
    for i in [-3.0, 0.0, 3.0] {
        for j in [-3.0, 0.0, 3.0] {
            means.push(DVector::from_vec(vec![i, j]));
        }
    }
    let covs = (0..9).map(|_| DMatrix::identity(2, 2) * 0.01).collect();
    Mixture::from_dense(equal_weights(9), means, covs).expect("preset is valid")
}

/// `aniso2`: four components with variances (1, 0.05) rotated by 30, -45, 75 and 10 degrees,
/// means (-2, -1), (2, 1), (0, 2.5), (1.5, -2), weights 0.3, 0.3, 0.2, 0.2.
#[must_use]
pub fn aniso2() -> Mixture {
    let angles = [30.0f64, -45.0, 75.0, 10.0];
    let means = [[-2.0, -1.0], [2.0, 1.0], [0.0, 2.5], [1.5, -2.0]];
    let covs = angles
        .iter()
        .map(|deg| {
            let (s, c) = deg.to_radians().sin_cos();
            let r = DMatrix::from_row_slice(2, 2, &[c, -s, s, c]);
            let m =
                &r * DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 0.05])) * r.transpose();
            (&m + m.transpose()) * 0.5
        })
        .collect();
    Mixture::from_dense(
        vec![0.3, 0.3, 0.2, 0.2],
        means.iter().map(|m| DVector::from_row_slice(m)).collect(),
        covs,
    )
    .expect("preset is valid")
}

/// `mix6`: D = 6, five components, means N(0, 4 I), covariances A A^T / 6 + 0.1 I with
/// A uniform in [-1, 1]^{6x6} (ChaCha8 seed 6), weights 0.1, 0.15, 0.2, 0.25, 0.3.
#[must_use]
pub fn mix6() -> Mixture {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let d = 6;
    let mut means = Vec::new();
    let mut covs = Vec::new();
    for _ in 0..5 {
        means.push(DVector::from_fn(d, |_, _| {
            2.0 * rng.sample::<f64, _>(rand_distr::StandardNormal)
        }));
        let a = DMatrix::from_fn(d, d, |_, _| rng.gen_range(-1.0..1.0));
        let m = &a * a.transpose() / 6.0 + DMatrix::identity(d, d) * 0.1;
        covs.push((&m + m.transpose()) * 0.5);
    }
    Mixture::from_dense(vec![0.1, 0.15, 0.2, 0.25, 0.3], means, covs).expect("preset is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_documented_shape() {
        for name in PRESET_NAMES {
            let m = load(name).unwrap();
            assert!(m.dim() == 2 || (name == "mix6" && m.dim() == 6), "{name}");
        }
        let m = mog40(1.0);
        assert_eq!(m.len(), 40);
        for c in m.components() {
            assert!(c.mean().iter().all(|v| v.abs() <= 40.0));
        }
    }

    #[test]
    fn file_round_trip_and_errors() {
        let m = aniso2();
        let text = to_json(&m).to_string();
        let back = from_json_str(&text, "mem").unwrap();
        let x = [0.3, -0.2];
        // Same numbers through JSON (shortest round-trip printing): identical densities to 1e-14.
        assert!((m.ln_pdf(&x).unwrap() - back.ln_pdf(&x).unwrap()).abs() < 1e-14);
        let bad = r#"{"weights": [0.5, 0.6], "means": [[0,0],[1,1]], "covariances": [[[1,0],[0,1]],[[1,0],[0,1]]]}"#;
        assert!(from_json_str(bad, "mem")
            .unwrap_err()
            .to_string()
            .contains("weights"));
        let bad = r#"{"weights": [1.0], "means": [[0,0]], "covariances": [[[1,0],[0]]]}"#;
        assert!(matches!(
            from_json_str(bad, "mem"),
            Err(PresetError::Ragged { .. })
        ));
        let bad = r#"{"weights": [1.0], "means": [[0,0]]"#;
        assert!(matches!(
            from_json_str(bad, "mem"),
            Err(PresetError::Json { .. })
        ));
        assert!(matches!(load("nope"), Err(PresetError::Unknown(_))));
        // A directory is said to be one, not "neither a preset nor an existing file".
        let dir = std::env::temp_dir();
        let e = load(dir.to_str().unwrap()).unwrap_err();
        assert!(matches!(e, PresetError::Directory(_)), "{e}");
        assert!(e.to_string().contains("is a directory"), "{e}");
    }
}
