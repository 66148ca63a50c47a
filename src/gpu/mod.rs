//! The tensor path (feature `candle`; `cuda` adds candle's CUDA backend): image mixtures,
//! samplers and validation quantities in candle ops, batched over N samples, in f32, on any
//! [`Device`]. Nothing here is CPU-specific; the f64 core is the reference it is tested
//! against.
//!
//! - [`mixture`]: [`TensorMixture`], a low-rank mixture's `ln q`, score, posterior mean and
//!   `H v` (analytic, and by reverse-mode autograd).
//! - [`lanczos`]: Lanczos batched over samples, one tridiagonal per sample.
//! - [`score`]: the batched score-model seam [`TensorScoreModel`], the exact
//!   [`TensorMixtureScore`], and [`AsScoreModel`] (any tensor model as the CPU seam).
//! - [`sampler`]: DDPM / OCM-DDIM samplers over the seam, every family of the f64 sampler.
//! - [`cross_entropy`]: path-KL differences between families as differences of
//!   cross-entropies `E_q[-ln p(x_s | x_t)]`, by Monte Carlo in any dimension.
//! - [`learned`]: learned scores and covariance heads (OCM, SN, NPR, I-DDPM) trained with
//!   candle-nn, model chains for the samplers, and the exact path KL of learned chains split into
//!   mean and covariance parts.

use candle_core::{DType, Device, Tensor, Var};

pub mod cross_entropy;
pub mod lanczos;
pub mod learned;
pub mod mixture;
pub mod sampler;
pub mod score;

pub use candle_core;
pub use cross_entropy::{cross_entropy_path_kl, CrossEntropyParams, CrossEntropyRow};
pub use lanczos::{lanczos_batched, BatchedKrylov};
pub use mixture::{CovGeometry, ScoreParts, TensorMixture};
pub use sampler::{
    analytic_trace_table_tensor, sample_tensor, step_with_noise_tensor, NoiseSource,
    TensorSampleOptions, FULL_MAX_DIM,
};
pub use score::{
    AsScoreModel, CovOperator, MixtureLocal, TensorLocal, TensorMixtureScore, TensorScoreModel,
};

/// Errors of the tensor path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// A candle error.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The input does not fit the batched layout (shapes, ranks, counts).
    #[error("tensor path: {0}")]
    Layout(String),
    /// The model or the device cannot do what was asked (names what to use instead).
    #[error("tensor path: {0}")]
    Unsupported(String),
    /// A sampler parameter was invalid (the f64 sampler's check).
    #[error(transparent)]
    Sampler(#[from] crate::sampler::SamplerError),
    /// The eigendecomposition of a sample's Lanczos tridiagonal failed or was inaccurate.
    #[error("tensor path: Lanczos tridiagonal of sample {sample}: {source}")]
    Tridiagonal {
        /// The sample (row of the batch).
        sample: usize,
        /// The eigensolver's error.
        source: crate::tridiagonal::TridiagonalError,
    },
}

pub(crate) fn f32s(v: impl Iterator<Item = f64>) -> Vec<f32> {
    v.map(|x| x as f32).collect()
}

/// The device named `cpu` or `cuda` (`cuda:N` for GPU N).
///
/// # Errors
/// An unknown name; `cuda` without the `cuda` feature or without a CUDA device (the message
/// says which).
pub fn device_from_name(name: &str) -> Result<Device, TensorError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        TensorError::Unsupported(format!(
                            "unknown device `{name}` (cpu, cuda, cuda:N)"
                        ))
                    })?,
                None => {
                    return Err(TensorError::Unsupported(format!(
                        "unknown device `{name}` (cpu, cuda, cuda:N)"
                    )))
                }
            };
            if !cfg!(feature = "cuda") {
                return Err(TensorError::Unsupported(
                    "device `cuda`: this binary was built without the `cuda` feature (scripts/build-cuda.sh builds it)".into(),
                ));
            }
            Device::new_cuda(ordinal).map_err(|e| {
                // candle appends a backtrace when RUST_BACKTRACE is set: keep the first line.
                let msg = e.to_string();
                let first = msg.lines().next().unwrap_or("unknown error");
                TensorError::Unsupported(format!(
                    "device `{name}`: no usable CUDA device ({first}); run on a GPU machine or use --device cpu"
                ))
            })
        }
    }
}

/// `LSE` over dimension 0 of a `(K, N)` tensor: `m + ln sum_k exp(t_k - m)` with the max `m`
/// detached (the value and the gradient do not depend on `m`).
///
/// # Errors
/// Candle errors.
pub fn log_sum_exp0(t: &Tensor) -> Result<Tensor, TensorError> {
    let m = t.max_keepdim(0)?.detach();
    let s = t.broadcast_sub(&m)?.exp()?.sum(0)?.log()?;
    Ok((s + m.squeeze(0)?)?)
}

/// The gradient of `sum_n <s_n, v_n>` (with `v` held fixed) with respect to the variable `x`
/// that `s` was computed from: `J^T v` per row by reverse-mode autograd.
///
/// # Errors
/// Candle errors; [`TensorError::Layout`] when no gradient reaches `x` (an op without a
/// backward pass on the way).
pub fn grad_of_dot(s: &Tensor, v: &Tensor, x: &Var) -> Result<Tensor, TensorError> {
    let loss = (s * v.detach())?.sum_all()?;
    let grads = loss.backward()?;
    grads
        .get(x.as_tensor())
        .cloned()
        .ok_or_else(|| TensorError::Layout("no gradient reached x".into()))
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
