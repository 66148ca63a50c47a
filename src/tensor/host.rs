//! Host conversions between f64 rows and f32 `(N, D)` tensors.

use candle_core::{DType, Device, Tensor};

use super::TensorError;

/// The f32 values of an f64 iterator (the tensor path computes in f32).
pub(crate) fn f32s(v: impl Iterator<Item = f64>) -> Vec<f32> {
    v.map(|x| x as f32).collect()
}

/// `(N, D)` tensor to a flat f64 host vector.
///
/// # Errors
/// Candle errors.
pub fn host_flat(t: &Tensor) -> Result<Vec<f64>, TensorError> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

/// The relative error `||a - b|| / ||b||` of an f32 batch `a` against the f64 batch `b`
/// (Frobenius norms over all samples).
#[must_use]
pub fn relative_error(a: &[Vec<f32>], b: &[Vec<f64>]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (ra, rb) in a.iter().zip(b) {
        for (x, y) in ra.iter().zip(rb) {
            num += (f64::from(*x) - y).powi(2);
            den += y * y;
        }
    }
    (num / den).sqrt()
}

/// `(N, D)` f32 tensor from f64 rows.
///
/// # Errors
/// Candle errors (ragged rows).
pub fn batch(rows: &[Vec<f64>], device: &Device) -> Result<Tensor, TensorError> {
    let n = rows.len();
    let d = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.iter().map(|&v| v as f32))
        .collect();
    Ok(Tensor::from_vec(flat, (n, d), device)?.to_dtype(DType::F32)?)
}

/// The rows of an `(N, D)` tensor as f64 vectors on the host.
///
/// # Errors
/// Candle errors (not 2-D).
pub fn rows(t: &Tensor) -> Result<Vec<nalgebra::DVector<f64>>, TensorError> {
    Ok(t.to_dtype(DType::F64)?
        .to_vec2::<f64>()?
        .into_iter()
        .map(nalgebra::DVector::from_vec)
        .collect())
}
