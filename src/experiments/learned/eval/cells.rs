//! The cells of a learned-eval study and their JSON: path-KL rows (S_full, mean and
//! covariance parts), covariance errors against t, Jacobian asymmetries and MMD of the chains.

use super::*;

/// What one cell computes.
#[derive(Clone, Copy, Debug)]
pub(super) enum CellSpec {
    /// Every path-KL row, the covariance errors and the Jacobian asymmetry.
    PathKl,
    /// The OCM-DDIM chains' path-KL rows (at the MMD T values; each step the one jump (0, t)).
    PathKlDdim,
    /// Exact draws against the reference (the MMD noise floor).
    Floor,
    /// One sampled chain.
    Chain {
        kernel: KernelKind,
        method: Method,
        t: usize,
    },
}

/// An estimate whose value may be infinite (a degenerate kernel).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(super) struct Est {
    #[serde(with = "crate::numeric::nonfinite")]
    pub(super) value: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    pub(super) err: f64,
}

impl From<Estimate> for Est {
    fn from(e: Estimate) -> Self {
        Self {
            value: e.value,
            err: e.err,
        }
    }
}

impl From<Est> for Estimate {
    fn from(e: Est) -> Self {
        Self {
            value: e.value,
            err: e.err,
        }
    }
}

/// [`EvalRow`] as a cell writes it (infinite values as strings).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct RowCell {
    pub(super) method: String,
    pub(super) steps: usize,
    pub(super) path_kl: Est,
    pub(super) mean_part: Est,
    pub(super) cov_part: Est,
    pub(super) s_full: Est,
}

/// [`CovErrorRow`] as a cell writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct CovCell {
    pub(super) method: String,
    #[serde(with = "crate::numeric::nonfinite")]
    pub(super) t: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    pub(super) ln_abar: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    pub(super) mse: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    pub(super) rel_mse: f64,
}

/// [`JAsymmetryRow`] as a cell writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct AsymCell {
    #[serde(with = "crate::numeric::nonfinite")]
    pub(super) t: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    pub(super) ln_abar: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    pub(super) mean_ratio: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    pub(super) rms_ratio: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    pub(super) rel_err_vs_h: f64,
}

/// The path-KL cell: the [`EvalReport`] and its wall time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct PathKlCell {
    pub(super) rows: Vec<RowCell>,
    pub(super) cov_error: Vec<CovCell>,
    pub(super) j_asymmetry: Vec<AsymCell>,
    pub(super) terminal_kl: Est,
    pub(super) rule: String,
    pub(super) wall_s: f64,
}

impl PathKlCell {
    pub(super) fn new(r: EvalReport, wall_s: f64) -> Self {
        Self {
            rows: r
                .rows
                .into_iter()
                .map(|r| RowCell {
                    method: r.method,
                    steps: r.steps,
                    path_kl: r.path_kl.into(),
                    mean_part: r.mean_part.into(),
                    cov_part: r.cov_part.into(),
                    s_full: r.s_full.into(),
                })
                .collect(),
            cov_error: r
                .cov_error
                .into_iter()
                .map(|c| CovCell {
                    method: c.method,
                    t: c.t,
                    ln_abar: c.ln_abar,
                    mse: c.mse,
                    rel_mse: c.rel_mse,
                })
                .collect(),
            j_asymmetry: r
                .j_asymmetry
                .into_iter()
                .map(|a| AsymCell {
                    t: a.t,
                    ln_abar: a.ln_abar,
                    mean_ratio: a.mean_ratio,
                    rms_ratio: a.rms_ratio,
                    rel_err_vs_h: a.rel_err_vs_h,
                })
                .collect(),
            terminal_kl: r.terminal_kl.into(),
            rule: r.rule,
            wall_s,
        }
    }

    pub(super) fn report(self) -> EvalReport {
        EvalReport {
            rows: self
                .rows
                .into_iter()
                .map(|r| EvalRow {
                    method: r.method,
                    steps: r.steps,
                    path_kl: r.path_kl.into(),
                    mean_part: r.mean_part.into(),
                    cov_part: r.cov_part.into(),
                    s_full: r.s_full.into(),
                })
                .collect(),
            cov_error: self
                .cov_error
                .into_iter()
                .map(|c| CovErrorRow {
                    method: c.method,
                    t: c.t,
                    ln_abar: c.ln_abar,
                    mse: c.mse,
                    rel_mse: c.rel_mse,
                })
                .collect(),
            j_asymmetry: self
                .j_asymmetry
                .into_iter()
                .map(|a| JAsymmetryRow {
                    t: a.t,
                    ln_abar: a.ln_abar,
                    mean_ratio: a.mean_ratio,
                    rms_ratio: a.rms_ratio,
                    rel_err_vs_h: a.rel_err_vs_h,
                })
                .collect(),
            terminal_kl: self.terminal_kl.into(),
            rule: self.rule,
        }
    }
}

/// An MMD cell: the floor (method `exact`, T 0, kernel `-`) or one chain.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct MmdCell {
    pub(super) method: String,
    pub(super) steps: usize,
    pub(super) kernel: String,
    #[serde(with = "crate::numeric::nonfinite")]
    pub(super) mmd: f64,
    #[serde(with = "crate::numeric::nonfinite")]
    pub(super) se: f64,
    pub(super) wall_s: f64,
}

/// The checkpoints an evaluation needs.
pub(super) struct Models {
    pub(super) net: Option<ScoreNet>,
    pub(super) heads: Vec<Head>,
}

/// What every MMD cell shares: the reference draws, the floor's draws, the Analytic-DPM
/// table's data and the exact score on the device, all from `seed` alone.
pub(super) struct MmdInputs {
    pub(super) reference: Vec<DVector<f64>>,
    pub(super) floor_draws: Vec<DVector<f64>>,
    pub(super) analytic_data: Vec<DVector<f64>>,
    pub(super) exact: TensorMixtureScore,
}
