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
//! - [`host`], [`ops`]: host conversions, a stable log-sum-exp and `J^T v` by autograd.
//!
//! The learned networks built on this path are [`crate::learned`].

use candle_core::Device;

pub mod cross_entropy;
pub mod error;
pub mod host;
pub mod lanczos;
pub mod mixture;
pub mod ops;
pub mod sampler;
pub mod score;

pub use candle_core;
pub use cross_entropy::{cross_entropy_path_kl, CrossEntropyParams, CrossEntropyRow};
pub use error::TensorError;
pub(crate) use host::f32s;
pub use host::{batch, host_flat, relative_error, rows};
pub use lanczos::{lanczos_batched, BatchedKrylov};
pub use mixture::{CovGeometry, ScoreParts, TensorMixture};
pub use ops::{grad_of_dot, log_sum_exp0};
pub use sampler::{
    analytic_trace_table_tensor, sample_tensor, step_with_noise_tensor, NoiseSource,
    TensorSampleOptions, FULL_MAX_DIM,
};
pub use score::{
    AsScoreModel, CovOperator, MixtureLocal, TensorLocal, TensorMixtureScore, TensorScoreModel,
};

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
