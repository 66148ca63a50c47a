//! The sampler covariance families (`beta`, `beta-tilde`, `analytic`, `diag`, `full`,
//! `hutchinson-<M>`, `lgs-<k>` with its LGS options) and the last-step choice, with their
//! names and parsing.

use super::{invalid, SamplerError};

/// LGS options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LgsOptions {
    /// Lanczos steps `k >= 1`.
    pub k: usize,
    /// Batch `L >= 1` (1 = a fresh Lanczos at every step).
    pub batch: usize,
    /// LGSb: LGS on the last `fraction` of the steps (`(0, 1]`; 1 = all).
    pub fraction: f64,
    /// Hutchinson guard at the last step with this many probes (`None`: LGS there too).
    pub guard: Option<usize>,
}

impl LgsOptions {
    /// Plain `lgs-k`.
    #[must_use]
    pub fn new(k: usize) -> Self {
        Self {
            k,
            batch: 1,
            fraction: 1.0,
            guard: None,
        }
    }
}

/// A sampler covariance family.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerFamily {
    /// `beta`.
    Beta,
    /// `beta-tilde`.
    BetaTilde,
    /// `analytic`.
    Analytic,
    /// `diag` (exact).
    Diag,
    /// `full` (exact).
    Full,
    /// `hutchinson-M`.
    Hutchinson(usize),
    /// `lgs-k` with options.
    Lgs(LgsOptions),
}

impl SamplerFamily {
    /// Parses `beta`, `beta-tilde`, `analytic`, `diag`, `full`, `hutchinson-<M>`, `lgs-<k>`.
    ///
    /// # Errors
    /// `UnknownFamily`; `InvalidParameter` for `M = 0` or `k = 0`.
    pub fn from_name(name: &str) -> Result<Self, SamplerError> {
        let parse_n = |parsed: Result<usize, std::num::ParseIntError>,
                       field: &'static str|
         -> Result<usize, SamplerError> {
            let n = parsed.map_err(|_| SamplerError::UnknownFamily(name.to_string()))?;
            if n == 0 {
                return Err(invalid(field, format!("`{name}`: must be >= 1")));
            }
            Ok(n)
        };
        Ok(match name {
            "beta" => Self::Beta,
            "beta-tilde" => Self::BetaTilde,
            "analytic" => Self::Analytic,
            "diag" => Self::Diag,
            "full" => Self::Full,
            _ => {
                if let Some(parsed) = crate::kernel::family::hutchinson_probes(name) {
                    Self::Hutchinson(parse_n(parsed, "M")?)
                } else if let Some(rest) = name.strip_prefix("lgs-") {
                    Self::Lgs(LgsOptions::new(parse_n(rest.parse(), "k")?))
                } else {
                    return Err(SamplerError::UnknownFamily(name.to_string()));
                }
            }
        })
    }

    /// The family's name (`lgs-<k>` whatever its batch/fraction/guard options).
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::Beta => "beta".into(),
            Self::BetaTilde => "beta-tilde".into(),
            Self::Analytic => "analytic".into(),
            Self::Diag => "diag".into(),
            Self::Full => "full".into(),
            Self::Hutchinson(m) => format!("hutchinson-{m}"),
            Self::Lgs(o) => format!("lgs-{}", o.k),
        }
    }

    pub(super) fn validate(&self) -> Result<(), SamplerError> {
        match self {
            Self::Hutchinson(0) => Err(invalid("M", "must be >= 1")),
            Self::Lgs(o) => {
                if o.k == 0 {
                    return Err(invalid("k", "must be >= 1"));
                }
                if o.batch == 0 {
                    return Err(invalid("batch", "must be >= 1"));
                }
                if !(o.fraction > 0.0 && o.fraction <= 1.0) {
                    return Err(invalid("fraction", format!("{} not in (0, 1]", o.fraction)));
                }
                if o.guard == Some(0) {
                    return Err(invalid("guard", "must be >= 1 probe"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// What a chain returns at its last step (`i = 1`, from `t_1` to `t_0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LastStep {
    /// The last kernel's mean, no noise (Ho et al., Analytic-DPM, diffusers): DDPM
    /// `x_{t_0} = (x_{t_1} + b g)/a`; OCM-DDIM `x_0 = m_0` in the DDIM map.
    #[default]
    Mean,
    /// A draw from the last kernel, its noise added as at every other step.
    Noisy,
}

impl LastStep {
    /// `mean` or `noisy`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Noisy => "noisy",
        }
    }

    /// The last step named `mean` or `noisy`.
    ///
    /// # Errors
    /// Any other name (returned).
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name {
            "mean" => Ok(Self::Mean),
            "noisy" => Ok(Self::Noisy),
            other => Err(other.to_string()),
        }
    }
}
