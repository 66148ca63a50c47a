//! The settings of a chain evaluation and the rows it reports: per method and `T`,
//! ```text
//! path_kl(T) = S_full(T) + sum_steps E_{q_t}[mean part] + sum_steps E_{q_t}[cov part],
//! ```
//! the covariance error `E_{q_t}[(1/D) ||diag Sigma - diag C||^2]` and the Jacobian asymmetry
//! `||J - J^T||_F / ||J||_F`.

use serde::{Deserialize, Serialize};

use super::Method;
use crate::kernel::model::KernelKind;
use crate::process::schedule::Schedule;
use crate::quadrature::{Estimate, LatticeParams, QmcParams};

/// Settings of [`evaluate_chains`](super::evaluate_chains).
#[derive(Clone, Debug, PartialEq)]
pub struct EvalParams {
    /// The schedule.
    pub schedule: Schedule,
    /// The T values.
    pub steps: Vec<usize>,
    /// Early stop: every grid starts at `t_0 = delta` (0: at the data), as in `path-kl`.
    pub early_stop: f64,
    /// The methods.
    pub methods: Vec<Method>,
    /// The rule of the expectations of the mean and covariance parts.
    pub rule: EvalRule,
    /// The lattice of `S_full` (D <= 2) and of [`EvalRule::Lattice`].
    pub lattice: LatticeParams,
    /// Randomised-QMC nodes per time of [`EvalRule::Qmc`] (split over the components and
    /// `qmc.shifts` replicates; each time gets its own shifts), for the times of the finest
    /// grid; a time whose coarsest grid has `T_min` steps gets `min(32, T_max / T_min)` times
    /// more, so that every T's sum rests on a comparable number of node-steps. The curves use
    /// 32 times as many.
    pub qmc_nodes: usize,
    /// QMC parameters (`S_full` in D > 2; the shifts and seed of [`EvalRule::Qmc`]).
    pub qmc: QmcParams,
    /// Seed (probes and draws in D > 2).
    pub seed: u64,
    /// The data range of the clip.
    pub clip_range: Option<(f64, f64)>,
    /// Number of times of the covariance-error and asymmetry curves.
    pub curve_times: usize,
    /// The grid whose one-step kernels the covariance error is measured on.
    pub curve_grid: usize,
    /// Rows per network batch.
    pub batch: usize,
    /// The chains' kernel: DDPM ancestral, or OCM-DDIM, whose step (s, t) is the one jump
    /// (0, t) seen through an affine map (see [`crate::kl::path_kl`]): the rows are then
    /// `S^DDIM_full(T)` plus the one-jump mean and covariance parts summed over the steps, and
    /// the curves are not computed.
    pub kernel: KernelKind,
}

impl Default for EvalParams {
    fn default() -> Self {
        Self {
            schedule: Schedule::vp_linear(),
            steps: vec![5, 10, 25, 50, 100, 200, 1000],
            early_stop: 0.0,
            methods: Vec::new(),
            // h = 0.25 sd: coarser lattices gave refinement error estimates that missed the
            // true error against path-kl's h = 0.175 (by 20x on mog40 at h = 0.35).
            lattice: LatticeParams {
                h_frac: 0.25,
                ..LatticeParams::default()
            },
            rule: EvalRule::Qmc,
            qmc_nodes: 256,
            qmc: QmcParams {
                points: 256,
                shifts: 4,
                ..QmcParams::default()
            },
            seed: 0,
            clip_range: None,
            curve_times: 24,
            curve_grid: 1000,
            batch: 16_384,
            kernel: KernelKind::Ddpm,
        }
    }
}

/// The rule of the expectations over `q_t` of the mean and covariance parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalRule {
    /// The nested trapezoid lattice (D <= 2; spectrally accurate, a network evaluation at
    /// every node that carries mass: tens of thousands per time).
    Lattice,
    /// Randomised QMC (R_D Kronecker points per component, random shifts as replicates,
    /// err = 2 s.e.): about a thousand nodes per time, any D.
    Qmc,
}

/// One path-KL result (infinite values serialise as `"inf"`, see [`crate::numeric::nonfinite`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// The method.
    pub method: String,
    /// T.
    pub steps: usize,
    /// `S_full(T) + mean part + cov part` (`+inf` if some kernel is degenerate).
    #[serde(with = "crate::numeric::nonfinite::estimate")]
    pub path_kl: Estimate,
    /// `sum_steps E[(1/2)(m - mu)^T Sigma^-1 (m - mu)]`.
    #[serde(with = "crate::numeric::nonfinite::estimate")]
    pub mean_part: Estimate,
    /// `sum_steps E[KL(N(m, C) || N(m, Sigma))]`.
    #[serde(with = "crate::numeric::nonfinite::estimate")]
    pub cov_part: Estimate,
    /// `S_full(T)`.
    #[serde(with = "crate::numeric::nonfinite::estimate")]
    pub s_full: Estimate,
}

/// One covariance-error point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CovErrorRow {
    /// The method.
    pub method: String,
    /// The schedule time `t` (a node of the `curve_grid`-step grid).
    #[serde(with = "crate::numeric::nonfinite")]
    pub t: f64,
    /// `ln abar_t`.
    #[serde(with = "crate::numeric::nonfinite")]
    pub ln_abar: f64,
    /// `E_{q_t}[(1/D) ||diag Sigma(x_t) - diag C(x_t)||^2]` of the one-step kernel ending at `t`.
    #[serde(with = "crate::numeric::nonfinite")]
    pub mse: f64,
    /// The same relative to `E_{q_t}[(1/D) ||diag C||^2]`.
    #[serde(with = "crate::numeric::nonfinite")]
    pub rel_mse: f64,
}

/// The asymmetry of the learned score's Jacobian at one time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JAsymmetryRow {
    /// The schedule time.
    #[serde(with = "crate::numeric::nonfinite")]
    pub t: f64,
    /// `ln abar_t`.
    #[serde(with = "crate::numeric::nonfinite")]
    pub ln_abar: f64,
    /// `E_{q_t}[||J - J^T||_F / ||J||_F]`.
    #[serde(with = "crate::numeric::nonfinite")]
    pub mean_ratio: f64,
    /// `sqrt(E ||J - J^T||_F^2 / E ||J||_F^2)`.
    #[serde(with = "crate::numeric::nonfinite")]
    pub rms_ratio: f64,
    /// `sqrt(E ||J - H||_F^2 / E ||H||_F^2)`: the Jacobian's error against the exact Hessian.
    #[serde(with = "crate::numeric::nonfinite")]
    pub rel_err_vs_h: f64,
}

/// What [`evaluate_chains`](super::evaluate_chains) computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// One row per method and T (methods in the requested order).
    pub rows: Vec<EvalRow>,
    /// Covariance errors per diagonal method and time.
    pub cov_error: Vec<CovErrorRow>,
    /// The learned Jacobian's asymmetry per time (empty for the exact score).
    pub j_asymmetry: Vec<JAsymmetryRow>,
    /// `KL(q_{t_T} || N(0, I))` (not included in `path_kl`).
    #[serde(with = "crate::numeric::nonfinite::estimate")]
    pub terminal_kl: Estimate,
    /// The rule over `q_t`.
    pub rule: String,
}
