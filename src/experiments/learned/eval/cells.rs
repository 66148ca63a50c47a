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
        method: ChainMethod,
        t: usize,
    },
}

/// The method of a sampled chain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum ChainMethod {
    /// A method with an exact path KL.
    Eval(Method),
    /// An LGS variant: sampled only (see [`LgsVariant`]).
    Lgs(LgsVariant),
}

impl ChainMethod {
    pub(super) fn name(&self) -> String {
        match self {
            Self::Eval(m) => m.name(),
            Self::Lgs(v) => v.name(),
        }
    }
}

/// An LGS sampler of the LGS paper on the chain's own score: `lgs-<k>` (a fresh `k`-step
/// Lanczos run at every step), `lgs-<k>-b<L>` (LGS-batched: at a block's first step `L`
/// Lanczos runs, reused by the block's `L` steps) and `lgsb-<k>[-b<L>]` (LGSb: that on the
/// last `lgsb-fraction` of the steps, `beta-tilde` before). Its kernel is not Gaussian (the
/// Krylov basis depends on the noise), so it has MMD rows and no exact path KL.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct LgsVariant {
    pub(super) k: usize,
    pub(super) batch: usize,
    pub(super) lgsb: bool,
}

impl LgsVariant {
    /// Parses the names above; `None` for a name that is not an LGS variant.
    pub(super) fn parse(name: &str) -> Option<Result<Self, String>> {
        let (lgsb, rest) = if let Some(r) = name.strip_prefix("lgsb-") {
            (true, r)
        } else {
            (false, name.strip_prefix("lgs-")?)
        };
        let bad =
            || format!("`{name}`: expected lgs-<k>, lgs-<k>-b<L> or lgsb-<k>[-b<L>], k, L >= 1");
        let (k, batch) = match rest.split_once("-b") {
            Some((k, l)) => (k.parse::<usize>(), l.parse::<usize>()),
            None => (rest.parse::<usize>(), Ok(1)),
        };
        Some(match (k, batch) {
            (Ok(k), Ok(batch)) if k >= 1 && batch >= 1 => Ok(Self { k, batch, lgsb }),
            _ => Err(bad()),
        })
    }

    pub(super) fn name(&self) -> String {
        let head = if self.lgsb { "lgsb" } else { "lgs" };
        if self.batch == 1 {
            format!("{head}-{}", self.k)
        } else {
            format!("{head}-{}-b{}", self.k, self.batch)
        }
    }

    /// The sampler family, LGSb on the last `fraction` of the steps.
    pub(super) fn family(&self, fraction: f64) -> SamplerFamily {
        SamplerFamily::Lgs(LgsOptions {
            k: self.k,
            batch: self.batch,
            fraction: if self.lgsb { fraction } else { 1.0 },
            guard: None,
        })
    }
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
    /// The squared Frechet distance of the samples' moments to the reference draws'.
    #[serde(default, with = "crate::numeric::nonfinite")]
    pub(super) frechet_sq: f64,
    /// Network passes per sample `(score, products, head)` (all samples in one batch).
    #[serde(default)]
    pub(super) passes: Passes,
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
