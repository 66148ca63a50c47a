//! Classifier guidance in the exact linear-Gaussian example (`docs/guidance.md`; LGS paper,
//! appendices A and B).
//!
//! Data `x_0 = R z` in 2-D, `z_1 ~ N(0, s_1)`, `z_2 ~ N(0, s_2)` independent, `R` the
//! rotation by `angle`; a label `y = z_1 + sigma_y n`, `n ~ N(0, 1)`. With `w = R e_1`:
//!
//! - marginal `q_t = N(0, S_t)`, `S_t = abar_t S_0 + (1 - abar_t) I`, `S_0 = R diag(s_1, s_2) R^T`;
//! - the exact noisy classifier `q(y | x_t) = N(y; g_t^T x_t, v_t)` with
//!   `g_t = sqrt(abar_t) s_1 S_t^{-1} w` and `v_t = s_1 + sigma_y^2 - abar_t s_1^2 w^T S_t^{-1} w`,
//!   so `grad_x log q(y | x_t) = g_t (y - g_t^T x_t) / v_t`;
//! - the exact reverse kernel of a step `s < t` (`x_t = a x_s + sqrt(b) eps`):
//!   `q(x_s | x_t) = N(A x_t, C)`, `A = a S_s S_t^{-1}`, `C = S_s - a^2 S_s S_t^{-1} S_s`
//!   (state independent);
//! - the guided kernel of Dhariwal and Nichol:
//!   `p(x_s | x_t, y) = N(A x_t + Sigma grad log q(y | x_t), Sigma)`, i.e. `x_s = M x_t + c y + Sigma^{1/2} xi`
//!   with `M = A - Sigma g_t g_t^T / v_t` and `c = Sigma g_t / v_t`, and
//!   `Sigma` one of the [`Choice`]s.
//!
//! Everything is linear-Gaussian: given `y`, the chain's law at every step is
//! `N(alpha_t y, P_t)` with `alpha_s = M alpha_t + c`, `P_s = M P_t M^T + Sigma`, so the
//! conditional endpoint KL `KL(q(x_0 | y) || p(x_0 | y))` is exact for one `y` and in
//! expectation over `y ~ q(y)` (only `E y^2 = s_1 + sigma_y^2` enters), with no sampling.
//!
//! Besides the guided chain of the paper, [`evaluate`] reports the *exact-guidance*
//! (Bayes) conditional of the same model chain, `p(x_0 | y) ∝ p(x_0) q(y | x_0)`, for which
//! Proposition 11 holds: `E_y KL(q(x_0|y) || p(x_0|y)) = KL(q_0 || p_0) - KL(q(y) || p(y))
//! <= path KL`. The guided kernel above is *not* exact guidance (its normaliser is not
//! `q(y | x_t)`), so the proposition does not cover it; see the README for what the lab finds.

mod chain;
mod example;
mod kl;

pub use chain::{evaluate, guided_endpoint, model_covariance, sample_guided, GuidanceRow};
pub use example::{Classifier, Gauss2, GaussianExample, LinearKernel};
pub use kl::{gaussian_kl, kl_cov_part, kl_mean_part};

use thiserror::Error;

use crate::process::schedule::ScheduleError;

/// Errors of the guidance example, each naming the offending field.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum GuidanceError {
    /// A parameter is out of its domain.
    #[error("invalid guidance parameter `{field}` = {value}: {reason}")]
    InvalidParameter {
        /// The field name.
        field: &'static str,
        /// The offending value.
        value: f64,
        /// What was expected.
        reason: &'static str,
    },
    /// An unknown covariance choice.
    #[error("unknown guidance covariance choice `{0}` (expected scalar, analytic, diag or full)")]
    UnknownChoice(String),
    /// An unknown initialisation.
    #[error("unknown initialisation `{0}` (expected exact or standard-normal)")]
    UnknownInit(String),
    /// A step's model covariance is degenerate (not positive definite), so its path-KL term
    /// is infinite.
    #[error("step {step}: the `{choice}` covariance is not positive definite (its path-KL term is infinite)")]
    DegenerateCovariance {
        /// The choice.
        choice: &'static str,
        /// The step index `i` (from `t_{i-1}` to `t_i`).
        step: usize,
    },
    /// The schedule or grid failed.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// The model covariance `Sigma_t` of the guided kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Choice {
    /// The scalar DDPM choice `beta-tilde`: `Sigma = b (1 - abar_s)/(1 - abar_t) I`; at a
    /// degenerate last step (`abar_s = 1`) it borrows the next step's variance (the
    /// `clip` remedy of `path-kl`).
    Scalar,
    /// The Analytic-DPM scalar `Sigma = tr(C)/2 I` (exact for Gaussian data).
    Analytic,
    /// The diagonal of the exact covariance in x coordinates, `diag(C)`.
    Diag,
    /// The exact (unconditional) covariance `C`.
    Full,
}

impl Choice {
    /// All choices, in output order.
    pub const ALL: [Choice; 4] = [Choice::Scalar, Choice::Analytic, Choice::Diag, Choice::Full];

    /// The contract name: `scalar`, `analytic`, `diag`, `full`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Choice::Scalar => "scalar",
            Choice::Analytic => "analytic",
            Choice::Diag => "diag",
            Choice::Full => "full",
        }
    }

    /// Parses a contract name (`beta-tilde` is accepted for `scalar`).
    ///
    /// # Errors
    /// [`GuidanceError::UnknownChoice`].
    pub fn from_name(name: &str) -> Result<Self, GuidanceError> {
        match name {
            "scalar" | "beta-tilde" => Ok(Choice::Scalar),
            "analytic" => Ok(Choice::Analytic),
            "diag" => Ok(Choice::Diag),
            "full" => Ok(Choice::Full),
            other => Err(GuidanceError::UnknownChoice(other.to_string())),
        }
    }
}

/// Where both chains start at the last grid time `t_T`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// The exact marginals: `q(x_T)` unguided and `q(x_T | y)` guided (so all error is the
    /// kernels'; the terminal KL is 0).
    Exact,
    /// `N(0, I)` for both (the sampler's practice; adds the terminal KL
    /// `KL(q_T || N(0, I))` to the path KL).
    StandardNormal,
}

impl Init {
    /// `exact` or `standard-normal`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Init::Exact => "exact",
            Init::StandardNormal => "standard-normal",
        }
    }

    /// Parses `exact` or `standard-normal`.
    ///
    /// # Errors
    /// [`GuidanceError::UnknownInit`].
    pub fn from_name(name: &str) -> Result<Self, GuidanceError> {
        match name {
            "exact" => Ok(Init::Exact),
            "standard-normal" => Ok(Init::StandardNormal),
            other => Err(GuidanceError::UnknownInit(other.to_string())),
        }
    }
}

/// Parameters of the example.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuidanceParams {
    /// Rotation angle of `R` in degrees (not a multiple of 90 for the counterexample).
    pub angle_deg: f64,
    /// `s_1 = Var z_1` (the labelled direction).
    pub var1: f64,
    /// `s_2 = Var z_2`.
    pub var2: f64,
    /// The label noise standard deviation `sigma_y`.
    pub label_noise: f64,
    /// The fixed label `y` of the conditional endpoint KL.
    pub y: f64,
    /// The start of both chains.
    pub init: Init,
}

impl Default for GuidanceParams {
    /// `angle = 30 deg`, `s_1 = 4`, `s_2 = 0.25`, `sigma_y = 0.5`, `y = 2`, exact start:
    /// a strongly anisotropic, rotated data covariance and an informative label, so the
    /// scalar, diagonal and full choices separate clearly.
    fn default() -> Self {
        Self {
            angle_deg: 30.0,
            var1: 4.0,
            var2: 0.25,
            label_noise: 0.5,
            y: 2.0,
            init: Init::Exact,
        }
    }
}
