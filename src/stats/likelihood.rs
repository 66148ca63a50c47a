//! The exact mean log-likelihood of a sample under the data mixture `q_0`, with its standard
//! error ([`mean_log_likelihood`]).

use nalgebra::DVector;
use serde::{Deserialize, Serialize};

use super::error::MetricsError;
use super::sample::validate;
use crate::data::mixture::Mixture;
use crate::numeric::{log_sum_exp, NeumaierSum};

/// A sample mean with its standard error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanEstimate {
    /// The mean `v̄ = (1/n) Σ v_i`.
    pub value: f64,
    /// Its standard error `sqrt(Σ (v_i - v̄)² / (n - 1)) / sqrt(n)`.
    pub se: f64,
}

/// Exact mean log-likelihood of a sample under the mixture `q0`, with its standard error.
///
/// # Formula
/// ```text
/// v_i = ln q0(x_i) = ln Σ_k π_k N(x_i; μ_k, Σ_k)   (log-sum-exp)
/// value = (1/n) Σ v_i,   se = sqrt(Σ (v_i - value)² / (n - 1)) / sqrt(n)
/// ```
/// For exact samples of `q0` the value estimates `-H(q0)` (the negative entropy).
///
/// # Errors
/// [`MetricsError::EmptySample`], [`MetricsError::TooFewPoints`] (`n < 2`),
/// [`MetricsError::DimensionMismatch`] (against `q0.dim()`), [`MetricsError::NonFinite`],
/// all naming sample `x`.
pub fn mean_log_likelihood(q0: &Mixture, x: &[DVector<f64>]) -> Result<MeanEstimate, MetricsError> {
    validate("x", x, Some(q0.dim()), 2)?;
    let mut terms = vec![0.0; q0.len()];
    let mut scratch = vec![0.0; 2 * q0.dim()];
    let values: Vec<f64> = x
        .iter()
        .map(|p| {
            q0.component_ln_terms_unchecked(p.as_slice(), &mut terms, &mut scratch);
            log_sum_exp(&terms)
        })
        .collect();
    let n = values.len() as f64;
    let mut s = NeumaierSum::new();
    values.iter().for_each(|&v| s.add(v));
    let mean = s.value() / n;
    let mut ss = NeumaierSum::new();
    values.iter().for_each(|&v| ss.add((v - mean) * (v - mean)));
    Ok(MeanEstimate {
        value: mean,
        se: (ss.value() / (n - 1.0) / n).sqrt(),
    })
}
