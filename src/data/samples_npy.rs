//! Samples as numpy `.npy` files: an `(n, D)` array of points, batch first (`(n,)` is read as
//! `D = 1`). Read and written with the `npyz` crate; written atomically
//! ([`crate::output::write_atomic`]).
//!
//! Reading accepts little- or big-endian `float64` and `float32` (widened exactly to f64) in C
//! or Fortran order, and refuses an empty array, another dtype or rank, and any non-finite
//! entry (naming its row and column): a sample file with a NaN would otherwise give a NaN
//! score silently.

use std::path::{Path, PathBuf};

use nalgebra::DVector;
use npyz::WriterBuilder;
use thiserror::Error;

/// Why a samples file could not be read or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SamplesFileError {
    /// The file could not be opened or is not a `.npy` file.
    #[error("{}: {reason}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The array is not an `(n, D)` float array with `n >= 1` and `D >= 1`.
    #[error("{}: {reason}", .path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong with the shape or dtype.
        reason: String,
    },
    /// An entry is NaN or infinite.
    #[error("{}: entry [{row}, {col}] = {value} is not finite", .path.display())]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// Its row (the sample).
        row: usize,
        /// Its column (the coordinate).
        col: usize,
        /// The value.
        value: f64,
    },
    /// The points to write have different dimensions, or there are none.
    #[error("{}: {reason}", .path.display())]
    Points {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
}

/// Writes `points` (all of one dimension `D`, at least one) as a C-order `float64` array of
/// shape `(n, D)`.
///
/// # Errors
/// [`SamplesFileError::Points`] for no points or mixed dimensions; the output errors.
pub fn write_samples(path: &Path, points: &[DVector<f64>]) -> Result<(), SamplesFileError> {
    let points_err = |reason: String| SamplesFileError::Points {
        path: path.to_path_buf(),
        reason,
    };
    let d = points
        .first()
        .map(DVector::len)
        .ok_or_else(|| points_err("no points to write".into()))?;
    if let Some(i) = points.iter().position(|p| p.len() != d) {
        return Err(points_err(format!(
            "point {i} has dimension {}, point 0 has {d}",
            points[i].len()
        )));
    }
    crate::output::write_atomic(path, |w| {
        let mut writer = npyz::WriteOptions::<f64>::new()
            .default_dtype()
            .shape(&[points.len() as u64, d as u64])
            .writer(w)
            .begin_nd()?;
        for p in points {
            writer.extend(p.iter().copied())?;
        }
        writer.finish()
    })?;
    Ok(())
}

/// Reads an `(n, D)` (or `(n,)`, `D = 1`) float array as `n` points.
///
/// # Errors
/// See the module docs.
pub fn read_samples(path: &Path) -> Result<Vec<DVector<f64>>, SamplesFileError> {
    let read_err = |reason: String| SamplesFileError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let shape_err = |reason: String| SamplesFileError::Shape {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| read_err(e.to_string()))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
        .map_err(|e| read_err(format!("not a .npy file: {e}")))?;
    let shape = npy.shape().to_vec();
    let (n, d) = match shape.as_slice() {
        [n] => (*n, 1),
        [n, d] => (*n, *d),
        other => {
            return Err(shape_err(format!(
                "expected an (n, D) array, got shape {other:?}"
            )))
        }
    };
    let (n, d) = (
        usize::try_from(n).map_err(|_| shape_err("too many rows".into()))?,
        usize::try_from(d).map_err(|_| shape_err("too many columns".into()))?,
    );
    if n == 0 || d == 0 {
        return Err(shape_err(format!(
            "expected n >= 1 samples of dimension D >= 1, got shape {shape:?}"
        )));
    }
    let fortran = npy.order() == npyz::Order::Fortran;
    let dtype = npy.dtype().descr();
    let values: Vec<f64> = match npy.try_data::<f64>() {
        Ok(r) => r
            .into_iter()
            .collect::<std::io::Result<_>>()
            .map_err(|e| read_err(e.to_string()))?,
        Err(npy) => match npy.try_data::<f32>() {
            Ok(r) => r
                .into_iter()
                .map(|v| v.map(f64::from))
                .collect::<std::io::Result<_>>()
                .map_err(|e| read_err(e.to_string()))?,
            Err(_) => {
                return Err(shape_err(format!(
                    "expected a float64 or float32 array, got dtype {dtype}"
                )))
            }
        },
    };
    if values.len() != n * d {
        return Err(read_err(format!(
            "holds {} values, its shape {shape:?} says {}",
            values.len(),
            n * d
        )));
    }
    let at = |i: usize, j: usize| {
        if fortran {
            values[j * n + i]
        } else {
            values[i * d + j]
        }
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let p = DVector::from_fn(d, |j, _| at(i, j));
        if let Some(j) = p.iter().position(|v| !v.is_finite()) {
            return Err(SamplesFileError::NonFinite {
                path: path.to_path_buf(),
                row: i,
                col: j,
                value: p[j],
            });
        }
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("covlab-npy-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_and_the_refusals() {
        let d = dir();
        let p = d.join("x.npy");
        let pts: Vec<DVector<f64>> = (0..5)
            .map(|i| DVector::from_vec(vec![i as f64, -0.1 * i as f64, 1e-300]))
            .collect();
        write_samples(&p, &pts).unwrap();
        assert_eq!(read_samples(&p).unwrap(), pts);
        // A hand-made float32 Fortran-order (2, 2) array: [[1, 2], [3, 4]] stored by columns.
        let mut bytes = Vec::new();
        let header = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }";
        let pad = 64 - (10 + header.len() + 1) % 64;
        let header = format!("{header}{}\n", " ".repeat(pad));
        bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for v in [1.0f32, 3.0, 2.0, 4.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let f = d.join("f.npy");
        std::fs::write(&f, &bytes).unwrap();
        let got = read_samples(&f).unwrap();
        assert_eq!(got[0].as_slice(), &[1.0, 2.0]);
        assert_eq!(got[1].as_slice(), &[3.0, 4.0]);
        // A NaN is named by row and column.
        let bad = vec![
            DVector::from_vec(vec![0.0, 1.0]),
            DVector::from_vec(vec![2.0, f64::NAN]),
        ];
        write_samples(&p, &bad).unwrap();
        let e = read_samples(&p).unwrap_err().to_string();
        assert!(e.contains("[1, 1]"), "{e}");
        // Not a .npy file; mixed dimensions; no points.
        std::fs::write(&f, b"{}").unwrap();
        assert!(read_samples(&f)
            .unwrap_err()
            .to_string()
            .contains("not a .npy"));
        let mixed = vec![DVector::zeros(2), DVector::zeros(3)];
        assert!(write_samples(&p, &mixed)
            .unwrap_err()
            .to_string()
            .contains("point 1"));
        assert!(write_samples(&p, &[]).is_err());
        let _ = std::fs::remove_dir_all(d);
    }
}
