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

/// The path-KL cell: the [`EvalReport`] (whose rows serialise infinite values as strings)
/// and its wall time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct PathKlCell {
    pub(super) rows: Vec<EvalRow>,
    pub(super) cov_error: Vec<CovErrorRow>,
    pub(super) j_asymmetry: Vec<JAsymmetryRow>,
    #[serde(with = "crate::numeric::nonfinite::estimate")]
    pub(super) terminal_kl: Estimate,
    pub(super) rule: String,
    pub(super) wall_s: f64,
}

impl PathKlCell {
    pub(super) fn new(r: EvalReport, wall_s: f64) -> Self {
        let EvalReport {
            rows,
            cov_error,
            j_asymmetry,
            terminal_kl,
            rule,
        } = r;
        Self {
            rows,
            cov_error,
            j_asymmetry,
            terminal_kl,
            rule,
            wall_s,
        }
    }

    pub(super) fn report(self) -> EvalReport {
        EvalReport {
            rows: self.rows,
            cov_error: self.cov_error,
            j_asymmetry: self.j_asymmetry,
            terminal_kl: self.terminal_kl,
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
