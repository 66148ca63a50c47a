//! The covariance methods of a model chain and the covariance heads' `h`.
//!
//! A head with output `o` (per coordinate) at time `t` gives the diagonal model Hessian
//! coordinate
//! ```text
//! h = (o - 1) / (1 - abar_t)          (ocm, npr)
//! h = (o - 1) / (1 - abar_t) - s^2    (sn; s the served score)
//! ```
//! (`iddpm`: step-dependent, [`crate::kernel::model::iddpm_h`]); the covariance of a step is
//! `Sigma = (b^2 h + b) / a^2` ([`crate::kernel::model`]).

use super::ChainError;
use crate::kernel::family::Family;

/// A covariance head's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum HeadKind {
    /// OCM: regresses `v .* (H v)` (unbiased for `diag H`).
    Ocm,
    /// SN-DDPM: regresses `eps^2`.
    Sn,
    /// NPR-DDPM: regresses the squared noise-prediction residual.
    Npr,
    /// I-DDPM: learned log-variance interpolation, variational bound.
    Iddpm,
}

impl HeadKind {
    /// All heads.
    pub const ALL: [HeadKind; 4] = [HeadKind::Ocm, HeadKind::Sn, HeadKind::Npr, HeadKind::Iddpm];

    /// `ocm`, `sn`, `npr`, `iddpm`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ocm => "ocm",
            Self::Sn => "sn",
            Self::Npr => "npr",
            Self::Iddpm => "iddpm",
        }
    }

    /// Parses a head name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the training objective involves the score (`sn`'s does not: one `sn` network
    /// serves the exact and the learned score, which enter only through `h`).
    #[must_use]
    pub fn trained_with_score(self) -> bool {
        !matches!(self, Self::Sn)
    }
}

/// One coordinate of the head's `h` from its output `o`, `1 - abar_t` and the served score
/// `s` (used by `sn` only): `(o - 1) / (1 - abar)` (`ocm`, `npr`), `(o - 1) / (1 - abar) - s^2`
/// (`sn`). Not defined for `iddpm` (step-dependent: [`crate::kernel::model::iddpm_h`]); returns
/// NaN there.
#[must_use]
pub fn head_h(kind: HeadKind, o: f64, one_minus_abar: f64, s: f64) -> f64 {
    match kind {
        HeadKind::Ocm | HeadKind::Npr => (o - 1.0) / one_minus_abar,
        HeadKind::Sn => (o - 1.0) / one_minus_abar - s * s,
        HeadKind::Iddpm => f64::NAN,
    }
}

/// A covariance method of a model chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// A `path-kl` family (`diag`, `full`: the exact oracles).
    Family(Family),
    /// Hutchinson's diagonal with `M` probes on the chain's score.
    Hutchinson(usize),
    /// A covariance head.
    Head(HeadKind),
    /// Full covariance from the learned Jacobian's upper triangle (reverse mode, `J^T v`).
    FullJt,
    /// Full covariance from the learned Jacobian's lower triangle (forward mode, `J v`).
    FullJ,
    /// Full covariance from `(J + J^T) / 2`.
    FullSym,
}

impl Method {
    /// Parses `beta`, `beta-tilde`, `analytic`, `diag`, `full`, `hutchinson-<M>`, `ocm`, `sn`,
    /// `npr`, `iddpm`, `full-jt`, `full-j`, `full-sym`.
    ///
    /// # Errors
    /// [`ChainError::UnknownMethod`]; [`ChainError::InvalidParameter`] (`M`) for `M = 0`.
    pub fn from_name(name: &str) -> Result<Self, ChainError> {
        let name = name.trim();
        if let Ok(f) = Family::from_name(name) {
            return Ok(Self::Family(f));
        }
        if let Some(k) = HeadKind::from_name(name) {
            return Ok(Self::Head(k));
        }
        match name {
            "full-jt" => return Ok(Self::FullJt),
            "full-j" => return Ok(Self::FullJ),
            "full-sym" => return Ok(Self::FullSym),
            _ => {}
        }
        if let Some(parsed) = crate::kernel::family::hutchinson_probes(name) {
            let m = parsed.map_err(|_| ChainError::UnknownMethod(name.to_string()))?;
            if m == 0 {
                return Err(ChainError::InvalidParameter {
                    field: "M",
                    reason: format!("`{name}`: the number of probes must be >= 1"),
                });
            }
            return Ok(Self::Hutchinson(m));
        }
        Err(ChainError::UnknownMethod(name.to_string()))
    }

    /// Parses a comma list (duplicates removed, order kept).
    ///
    /// # Errors
    /// As [`Self::from_name`]; an empty list.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, ChainError> {
        let mut out = Vec::new();
        for n in list.split(',').filter(|s| !s.trim().is_empty()) {
            let m = Self::from_name(n)?;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if out.is_empty() {
            return Err(ChainError::UnknownMethod(list.to_string()));
        }
        Ok(out)
    }

    /// The method's name.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::Family(f) => f.name().to_string(),
            Self::Hutchinson(m) => format!("hutchinson-{m}"),
            Self::Head(k) => k.name().to_string(),
            Self::FullJt => "full-jt".into(),
            Self::FullJ => "full-j".into(),
            Self::FullSym => "full-sym".into(),
        }
    }

    /// Whether the method's covariance is diagonal (so it has a covariance error row).
    #[must_use]
    pub fn is_diagonal(&self) -> bool {
        matches!(
            self,
            Self::Family(Family::Beta | Family::BetaTilde | Family::Analytic)
                | Self::Hutchinson(_)
                | Self::Head(_)
        )
    }

    pub(super) fn is_jacobian_full(&self) -> bool {
        matches!(self, Self::FullJt | Self::FullJ | Self::FullSym)
    }
}

impl Method {
    /// The network-free method whose covariance part is the control variate of `self`:
    /// itself for the fixed and exact families (and exact-score Hutchinson), `diag` for the
    /// diagonal network methods, `full` for the Jacobian ones.
    pub(super) fn reference(self, learned: bool) -> Method {
        match self {
            Method::Head(_) => Method::Family(Family::Diag),
            Method::Hutchinson(_) if learned => Method::Family(Family::Diag),
            Method::FullJt | Method::FullJ | Method::FullSym => Method::Family(Family::Full),
            m => m,
        }
    }

    /// Whether the method's parts involve a network (learned mean, head or learned Jacobian).
    pub(super) fn uses_network(self, learned: bool) -> bool {
        learned || matches!(self, Method::Head(_)) || self.is_jacobian_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip() {
        let list = "beta,beta-tilde,analytic,diag,full,hutchinson-3,ocm,sn,npr,iddpm,full-jt,full-j,full-sym";
        let methods = Method::parse_list(list).unwrap();
        assert_eq!(methods.len(), 13);
        let names: Vec<String> = methods.iter().map(Method::name).collect();
        assert_eq!(names.join(","), list);
        assert_eq!(
            Method::parse_list("diag, diag,full").unwrap(),
            vec![Method::Family(Family::Diag), Method::Family(Family::Full)]
        );
    }

    #[test]
    fn bad_method_names_are_refused() {
        assert!(matches!(
            Method::from_name("hutchinson-0"),
            Err(ChainError::InvalidParameter { field: "M", .. })
        ));
        assert!(matches!(
            Method::from_name("nope"),
            Err(ChainError::UnknownMethod(_))
        ));
        assert!(matches!(
            Method::parse_list(" , "),
            Err(ChainError::UnknownMethod(_))
        ));
    }

    #[test]
    fn references_and_diagonality() {
        let diag = Method::Family(Family::Diag);
        assert_eq!(Method::Head(HeadKind::Sn).reference(false), diag);
        assert_eq!(Method::Hutchinson(2).reference(true), diag);
        assert_eq!(
            Method::Hutchinson(2).reference(false),
            Method::Hutchinson(2)
        );
        assert_eq!(Method::FullJ.reference(true), Method::Family(Family::Full));
        assert!(Method::Hutchinson(1).is_diagonal() && !Method::FullSym.is_diagonal());
        assert!(!Method::Family(Family::Full).uses_network(false));
        assert!(Method::Head(HeadKind::Ocm).uses_network(false));
    }
}
