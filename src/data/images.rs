//! Image-sized mixtures with low-rank-plus-diagonal components (presets `digits8`,
//! `digits32`, `synth3x32`).
//!
//! - `digits8` (D = 64): the UCI digits (embedded, `data/digits.csv.gz`), pixels scaled from
//!   0..16 to [-1, 1] by `v / 8 - 1`; one component per class with the class mean, the top
//!   `r` principal directions `U = V_r Lambda_r^{1/2}` of the class covariance, and the residual
//!   variance `d_i = max(C_ii - (U U^T)_ii, floor)`; weights = class frequencies.
//! - `digits32` (D = 1024): the same images upsampled bilinearly to 32x32 by a linear map `A`
//!   (1024 x 64): mean `A mu`, covariance `A C A^T` whose top `r` eigenpairs come from the thin
//!   SVD of `A V Lambda^{1/2}`; residual diagonal as above.
//! - `synth3x32` (D = 3072, 3x32x32): four components with smooth means and smooth, spatially
//!   correlated factors (random low-frequency cosine fields, seeded), `d = 0.01`.

use std::io::Read;

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use crate::data::lowrank::{LowRankComponent, LowRankError, LowRankMixture};

/// The embedded digits file.
const DIGITS_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Default PCA rank of the digit components.
pub const DIGITS_RANK: usize = 8;

/// Residual variance floor (pixel standard deviation 0.03 on the [-1, 1] scale): border
/// pixels that are constant within a class would otherwise have zero variance.
pub const RESIDUAL_FLOOR: f64 = 1e-3;

/// The image preset names.
pub const IMAGE_PRESETS: [&str; 3] = ["digits8", "digits32", "synth3x32"];

/// Errors of the image presets.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ImageDataError {
    /// The embedded data could not be read.
    #[error("digits data, line {line}: {reason}")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// An unknown preset.
    #[error("unknown image preset `{0}` (expected digits8, digits32 or synth3x32)")]
    Unknown(String),
    /// A component could not be built.
    #[error(transparent)]
    LowRank(#[from] LowRankError),
}

/// The image shape of a preset: (channels, height, width).
#[must_use]
pub fn shape(name: &str) -> Option<(usize, usize, usize)> {
    match name {
        "digits8" => Some((1, 8, 8)),
        "digits32" => Some((1, 32, 32)),
        "synth3x32" => Some((3, 32, 32)),
        _ => None,
    }
}

/// Loads a preset by name.
///
/// # Errors
/// `Unknown` for other names; data or component errors.
pub fn load(name: &str) -> Result<LowRankMixture, ImageDataError> {
    match name {
        "digits8" => digits8(DIGITS_RANK),
        "digits32" => digits32(DIGITS_RANK),
        "synth3x32" => Ok(synth3x32(6, 3)?),
        other => Err(ImageDataError::Unknown(other.to_string())),
    }
}

/// The digits as (pixels scaled to [-1, 1], label) pairs.
///
/// # Errors
/// `Malformed` naming the line.
pub fn digits() -> Result<Vec<(DVector<f64>, usize)>, ImageDataError> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_GZ)
        .read_to_string(&mut text)
        .map_err(|e| ImageDataError::Malformed {
            line: 0,
            reason: e.to_string(),
        })?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let bad = |reason: String| ImageDataError::Malformed {
                line: i + 1,
                reason,
            };
            let vals: Vec<u32> = line
                .split(',')
                .map(|t| t.trim().parse::<u32>())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if vals.len() != 65 || vals[..64].iter().any(|&v| v > 16) || vals[64] > 9 {
                return Err(bad("expected 64 values in 0..16 and a label in 0..9".into()));
            }
            Ok((
                DVector::from_iterator(64, vals[..64].iter().map(|&v| f64::from(v) / 8.0 - 1.0)),
                vals[64] as usize,
            ))
        })
        .collect()
}

/// Class means, covariances (1/(n-1)) and frequencies.
fn class_moments(
    data: &[(DVector<f64>, usize)],
) -> (Vec<DVector<f64>>, Vec<DMatrix<f64>>, Vec<f64>) {
    let mut means = Vec::new();
    let mut covs = Vec::new();
    let mut weights = Vec::new();
    for c in 0..10 {
        let xs: Vec<&DVector<f64>> = data
            .iter()
            .filter(|(_, l)| *l == c)
            .map(|(x, _)| x)
            .collect();
        let n = xs.len() as f64;
        let m = xs.iter().fold(DVector::zeros(64), |a, x| a + *x) / n;
        let mut s = DMatrix::zeros(64, 64);
        for x in &xs {
            let r = *x - &m;
            s += &r * r.transpose();
        }
        means.push(m);
        covs.push(s / (n - 1.0));
        weights.push(n / data.len() as f64);
    }
    (means, covs, weights)
}

/// Top-`r` factor of a PSD matrix given as `B B^T` (thin SVD of `B`) and the residual
/// diagonal `max(diag(B B^T) - diag(U U^T), floor)`.
fn factor_from_root(b: &DMatrix<f64>, r: usize) -> (DMatrix<f64>, DVector<f64>) {
    let svd = b.clone().svd(true, false);
    let u_full = svd.u.unwrap_or_else(|| DMatrix::zeros(b.nrows(), 0));
    let mut idx: Vec<usize> = (0..svd.singular_values.len()).collect();
    idx.sort_by(|&i, &j| svd.singular_values[j].total_cmp(&svd.singular_values[i]));
    let r = r.min(idx.len());
    let u = DMatrix::from_fn(b.nrows(), r, |i, j| {
        u_full[(i, idx[j])] * svd.singular_values[idx[j]]
    });
    let d = DVector::from_fn(b.nrows(), |i, _| {
        let total: f64 = b.row(i).iter().map(|v| v * v).sum();
        let kept: f64 = u.row(i).iter().map(|v| v * v).sum();
        (total - kept).max(RESIDUAL_FLOOR)
    });
    (u, d)
}

/// `C^{1/2}` columns: `V Lambda^{1/2}` (negative round-off eigenvalues set to 0).
fn psd_root(c: &DMatrix<f64>) -> DMatrix<f64> {
    let e = SymmetricEigen::new((c + c.transpose()) * 0.5);
    let mut v = e.eigenvectors;
    for j in 0..v.ncols() {
        let s = e.eigenvalues[j].max(0.0).sqrt();
        v.column_mut(j).scale_mut(s);
    }
    v
}

fn build(
    means: Vec<DVector<f64>>,
    roots: Vec<DMatrix<f64>>,
    weights: Vec<f64>,
    r: usize,
) -> Result<LowRankMixture, ImageDataError> {
    let comps = means
        .into_iter()
        .zip(roots)
        .enumerate()
        .map(|(k, (m, b))| {
            let (u, d) = factor_from_root(&b, r);
            LowRankComponent::new(k, m, u, d)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let s: f64 = weights.iter().sum();
    Ok(LowRankMixture::new(
        weights.iter().map(|w| w / s).collect(),
        comps,
    )?)
}

/// `digits8` with PCA rank `r`.
///
/// # Errors
/// Data or component errors.
pub fn digits8(r: usize) -> Result<LowRankMixture, ImageDataError> {
    let (means, covs, weights) = class_moments(&digits()?);
    let roots = covs.iter().map(psd_root).collect();
    build(means, roots, weights, r)
}

/// The bilinear 8 -> 32 upsampling of one axis (32 x 8; half-pixel centres, edge clamp).
fn upsample_axis() -> DMatrix<f64> {
    DMatrix::from_fn(32, 8, |o, i| {
        let p = ((o as f64 + 0.5) / 4.0 - 0.5).clamp(0.0, 7.0);
        let lo = p.floor();
        let f = p - lo;
        let lo = lo as usize;
        if i == lo {
            1.0 - f + if lo == 7 { f } else { 0.0 }
        } else if i == lo + 1 {
            f
        } else {
            0.0
        }
    })
}

/// The 2-D upsampling map `A` (1024 x 64), row-major pixels: `A = A1 (x) A1`.
#[must_use]
pub fn upsample_map() -> DMatrix<f64> {
    let a1 = upsample_axis();
    a1.kronecker(&a1)
}

/// `digits32` with PCA rank `r`.
///
/// # Errors
/// Data or component errors.
pub fn digits32(r: usize) -> Result<LowRankMixture, ImageDataError> {
    let (means, covs, weights) = class_moments(&digits()?);
    let a = upsample_map();
    let means = means.iter().map(|m| &a * m).collect();
    let roots = covs.iter().map(|c| &a * psd_root(c)).collect();
    build(means, roots, weights, r)
}

/// A smooth random field on `channels x 32 x 32`: `sum_{a, b < 4} c cos(pi a (y + 1/2)/32)
/// cos(pi b (x + 1/2)/32)` per channel with `c ~ U(-1, 1) / (1 + a + b)`, scaled to RMS `rms`.
fn smooth_field<R: Rng>(rng: &mut R, channels: usize, rms: f64) -> DVector<f64> {
    let n = 32;
    let mut f: DVector<f64> = DVector::zeros(channels * n * n);
    for ch in 0..channels {
        for a in 0..4 {
            for b in 0..4 {
                let c: f64 = rng.gen_range(-1.0..1.0) / (1.0 + (a + b) as f64);
                for y in 0..n {
                    let cy = (std::f64::consts::PI * a as f64 * (y as f64 + 0.5) / n as f64).cos();
                    for x in 0..n {
                        let cx =
                            (std::f64::consts::PI * b as f64 * (x as f64 + 0.5) / n as f64).cos();
                        f[ch * n * n + y * n + x] += c * cy * cx;
                    }
                }
            }
        }
    }
    let cur = (f.norm_squared() / f.len() as f64).sqrt();
    if cur > 0.0 {
        f *= rms / cur;
    }
    f
}

/// `synth3x32`: four equally weighted components on 3x32x32, smooth means (RMS 0.4), rank-`r`
/// smooth factors (each column RMS 0.15), `d = 0.01`; seeded by `seed`.
///
/// # Errors
/// Component errors (none for valid parameters).
pub fn synth3x32(r: usize, seed: u64) -> Result<LowRankMixture, LowRankError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = 3 * 32 * 32;
    let comps = (0..4)
        .map(|k| {
            let mean = smooth_field(&mut rng, 3, 0.4);
            let mut u = DMatrix::zeros(d, r);
            for j in 0..r {
                u.set_column(j, &smooth_field(&mut rng, 3, 0.15));
            }
            LowRankComponent::new(k, mean, u, DVector::from_element(d, 0.01))
        })
        .collect::<Result<Vec<_>, _>>()?;
    LowRankMixture::new(vec![0.25; 4], comps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_parse_and_upsampling_preserves_constants() {
        let d = digits().unwrap();
        assert_eq!(d.len(), 1797);
        assert!(d
            .iter()
            .all(|(x, l)| x.len() == 64 && *l < 10 && x.iter().all(|v| (-1.0..=1.0).contains(v))));
        // Bilinear interpolation reproduces constant images exactly (rows of A sum to 1).
        let a = upsample_map();
        for i in 0..1024 {
            let s: f64 = a.row(i).iter().sum();
            assert!((s - 1.0).abs() < 1e-15);
        }
    }

    #[test]
    fn digits8_components_match_class_moments_on_the_kept_subspace() {
        // With r = 64 the factor reproduces the class covariance except where the floor
        // lifts the residual diagonal: off-diagonal entries agree to round-off (1e-10).
        let data = digits().unwrap();
        let (_, covs, _) = class_moments(&data);
        let q = digits8(64).unwrap();
        let c = q.components()[3].covariance();
        for i in 0..64 {
            for j in 0..64 {
                if i != j {
                    assert!((c[(i, j)] - covs[3][(i, j)]).abs() < 1e-10);
                }
            }
        }
        assert!((q.weights().iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(load("digits64").is_err());
    }
}
