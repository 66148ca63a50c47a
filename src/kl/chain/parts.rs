//! The per-node KL parts of a method's Gaussian kernel `N(mu, Sigma)` against the exact
//! kernel's moments `(m, C)`:
//! ```text
//! mean part = (1/2) (m - mu)^T Sigma^-1 (m - mu),   cov part = KL(N(m, C) || N(m, Sigma)),
//! ```
//! ([`crate::kernel::model::kl_parts`]) with `Sigma = (b^2 X + b) / a^2` from the method's `X`;
//! Hutchinson in `D = 2` is expected exactly over the probes,
//! `E = sum_k C(M, k) 2^-M f(diag J + eps_k (J_21, J_12))`, `eps_k = (2k - M) / M`.
//! Also the diagonal covariance error `(1/D) ||diag Sigma - diag C||^2` of the curves.

use rand::Rng;

use super::nodes::{Buf, NodeSet};
use super::{head_h, ChainError, HeadKind, Method};
use crate::kernel::family::{Family, IsoScale};
use crate::kernel::model::{clamp_eigenvalues, iddpm_h, kl_parts, KlParts, ModelCov};
use crate::process::schedule::Step;

/// The symmetric matrix made from the upper (`upper = true`) or lower triangle of `j`, or the
/// symmetric part (`None`).
pub(super) fn symmetrised(j: &[f64], d: usize, upper: Option<bool>) -> Vec<f64> {
    let mut out = vec![0.0; d * d];
    for c in 0..d {
        for r in 0..d {
            let (a, b) = (j[c * d + r], j[r * d + c]); // J_rc, J_cr
            out[c * d + r] = match upper {
                None => 0.5 * (a + b),
                // Upper triangle: entry (min, max).
                Some(true) => {
                    if r <= c {
                        a
                    } else {
                        b
                    }
                }
                Some(false) => {
                    if r >= c {
                        a
                    } else {
                        b
                    }
                }
            };
        }
    }
    out
}

/// One step's context for the per-node KL.
pub(super) struct StepCtx {
    pub(super) step: Step,
    /// beta-tilde's variance with the clip remedy when the step goes to the data.
    pub(super) bt_clip: Option<f64>,
    /// Per-slot `E tr H / D` (exact score), for `analytic`.
    pub(super) exact_trace: Vec<f64>,
    /// Per-slot `-E ||s_theta||^2 / D` (learned score; the exact trace otherwise).
    pub(super) model_trace: Vec<f64>,
    pub(super) bounds: (f64, f64),
}

impl StepCtx {
    pub(super) fn new(
        nodes: &NodeSet,
        step: Step,
        bt_clip: Option<f64>,
        bounds: (f64, f64),
    ) -> Self {
        let d = nodes.d;
        let exact_trace =
            nodes.expect(|i| (0..d).map(|j| nodes.node_h(i)[j * d + j]).sum::<f64>() / d as f64);
        let model_trace = match &nodes.st {
            Some(st) => nodes
                .expect(|i| -st[i * d..(i + 1) * d].iter().map(|v| v * v).sum::<f64>() / d as f64),
            None => exact_trace.clone(),
        };
        Self {
            step,
            bt_clip,
            exact_trace,
            model_trace,
            bounds,
        }
    }
}

/// The expected KL parts of `method` at node `i` (expected over the probes for Hutchinson);
/// `None` for a degenerate (non positive definite) kernel. With `exact`, the method is
/// evaluated with the exact score (no mean part, the exact `E tr H`, probes on `H`).
#[allow(clippy::too_many_arguments)]
pub(super) fn node_parts(
    nodes: &NodeSet,
    i: usize,
    method: Method,
    ctx: &StepCtx,
    slot: usize,
    seed: u64,
    exact: bool,
) -> Result<Option<KlParts>, ChainError> {
    let (d, b, a2) = (nodes.d, ctx.step.b, ctx.step.a2);
    let h = nodes.node_h(i);
    let delta = if exact {
        Buf::from_fn(d, |_| 0.0)
    } else {
        nodes.delta(i)
    };
    let (lo, hi) = ctx.bounds;
    let clip = |v: f64| v.max(lo).min(hi);
    let iso = |sc: IsoScale| kl_parts(b, h, &ModelCov::Iso(sc), &delta);
    Ok(match method {
        Method::Family(Family::Beta) => iso(IsoScale::beta(a2, b)),
        Method::Family(Family::BetaTilde) => {
            let oma_s = ctx.step.one_minus_abar_s();
            if oma_s > 0.0 {
                iso(IsoScale::beta_tilde(
                    a2,
                    b,
                    oma_s,
                    ctx.step.one_minus_abar_t(),
                ))
            } else {
                let v = ctx
                    .bt_clip
                    .ok_or(crate::kl::path_kl::PathKlError::ClipNeedsTwoSteps)?;
                iso(IsoScale::from_variance(v, a2, b))
            }
        }
        Method::Family(Family::Analytic) => {
            let x = clip(if exact {
                ctx.exact_trace[slot]
            } else {
                ctx.model_trace[slot]
            });
            iso(IsoScale {
                rho: 1.0 + b * x,
                one_minus_rho: -b * x,
            })
        }
        Method::Family(Family::Diag) => {
            let x = Buf::from_fn(d, |j| h[j * d + j]);
            kl_parts(b, h, &ModelCov::Diag(&x), &delta)
        }
        Method::Family(Family::Full) => kl_parts(b, h, &ModelCov::Full(h), &delta),
        Method::Hutchinson(m) => {
            let jm = if exact { h } else { nodes.model_jac(i) };
            if d == 2 {
                // v .* (J^T v) = diag J + eps (J_21, J_12), eps = mean of M signs v_1 v_2.
                let mut acc = KlParts {
                    mean: 0.0,
                    cov: 0.0,
                };
                for k in 0..=m {
                    let p = binomial_half(m, k);
                    let eps = (2.0 * k as f64 - m as f64) / m as f64;
                    let x = [clip(jm[0] + eps * jm[1]), clip(jm[3] + eps * jm[2])];
                    match kl_parts(b, h, &ModelCov::Diag(&x), &delta) {
                        Some(pp) => {
                            acc.mean += p * pp.mean;
                            acc.cov += p * pp.cov;
                        }
                        None => return Ok(None),
                    }
                }
                Some(acc)
            } else {
                let mut rng = crate::numeric::stream(seed, i as u64);
                let mut x = vec![0.0; d];
                for _ in 0..m {
                    let v: Vec<f64> = (0..d)
                        .map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 })
                        .collect();
                    for r in 0..d {
                        // (J^T v)_r = sum_c J_cr v_c
                        let jt: f64 = (0..d).map(|c| jm[r * d + c] * v[c]).sum();
                        x[r] += v[r] * jt / m as f64;
                    }
                }
                let x: Vec<f64> = x.into_iter().map(clip).collect();
                kl_parts(b, h, &ModelCov::Diag(&x), &delta)
            }
        }
        Method::Head(kind) => {
            let out = nodes.head(kind).ok_or_else(|| {
                ChainError::UnknownMethod(format!("{} (no head loaded)", kind.name()))
            })?;
            let o = &out[i * d..(i + 1) * d];
            let x: Vec<f64> = match kind {
                HeadKind::Iddpm => o
                    .iter()
                    .map(|&v| iddpm_h(v, &ctx.step, ctx.bt_clip).map(clip))
                    .collect::<Option<_>>()
                    .ok_or(crate::kl::path_kl::PathKlError::ClipNeedsTwoSteps)?,
                _ => {
                    let oma = ctx.step.one_minus_abar_t();
                    let s = nodes.score(i);
                    (0..d)
                        .map(|j| clip(head_h(kind, o[j], oma, s[j])))
                        .collect()
                }
            };
            kl_parts(b, h, &ModelCov::Diag(&x), &delta)
        }
        Method::FullJt | Method::FullJ | Method::FullSym => {
            let upper = match method {
                Method::FullJt => Some(true),
                Method::FullJ => Some(false),
                _ => None,
            };
            let x = clamp_eigenvalues(&symmetrised(nodes.model_jac(i), d, upper), d, lo, hi);
            kl_parts(b, h, &ModelCov::Full(&x), &delta)
        }
    })
}

/// `C(m, k) / 2^m`.
pub(super) fn binomial_half(m: usize, k: usize) -> f64 {
    let mut ln = 0.0;
    for j in 0..k {
        ln += ((m - j) as f64).ln() - ((j + 1) as f64).ln();
    }
    (ln - m as f64 * std::f64::consts::LN_2).exp()
}

/// `(1/D) ||diag Sigma - diag C||^2` at node `j` for a diagonal method (expected over the
/// probes for Hutchinson in D = 2).
pub(super) fn diag_sq_error(nodes: &NodeSet, j: usize, m: Method, ctx: &StepCtx) -> Option<f64> {
    let d = nodes.d;
    let (a2, b) = (ctx.step.a2, ctx.step.b);
    let var = |x: f64| (b * b * x + b) / a2;
    let h = nodes.node_h(j);
    let c: Vec<f64> = (0..d).map(|i| var(h[i * d + i])).collect();
    let (lo, hi) = ctx.bounds;
    let clip = |v: f64| v.max(lo).min(hi);
    let sq = |x: &[f64]| (0..d).map(|i| (var(x[i]) - c[i]).powi(2)).sum::<f64>() / d as f64;
    Some(match m {
        Method::Family(Family::Beta) => (0..d).map(|i| (b - c[i]).powi(2)).sum::<f64>() / d as f64,
        Method::Family(Family::BetaTilde) => {
            let oma_s = ctx.step.one_minus_abar_s();
            let v = if oma_s > 0.0 {
                b * oma_s / ctx.step.one_minus_abar_t()
            } else {
                ctx.bt_clip?
            };
            (0..d).map(|i| (v - c[i]).powi(2)).sum::<f64>() / d as f64
        }
        Method::Family(Family::Analytic) => sq(&vec![clip(ctx.model_trace[nodes.slots - 1]); d]),
        Method::Hutchinson(m) if d == 2 => {
            let jm = nodes.model_jac(j);
            (0..=m)
                .map(|k| {
                    let eps = (2.0 * k as f64 - m as f64) / m as f64;
                    binomial_half(m, k)
                        * sq(&[clip(jm[0] + eps * jm[1]), clip(jm[3] + eps * jm[2])])
                })
                .sum()
        }
        Method::Head(kind) => {
            let o = &nodes.head(kind)?[j * d..(j + 1) * d];
            let oma = ctx.step.one_minus_abar_t();
            let s = nodes.score(j);
            let x: Vec<f64> = (0..d)
                .map(|i| match kind {
                    HeadKind::Iddpm => iddpm_h(o[i], &ctx.step, ctx.bt_clip).map(clip),
                    _ => Some(clip(head_h(kind, o[i], oma, s[i]))),
                })
                .collect::<Option<_>>()?;
            sq(&x)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_weights_sum_to_one() {
        for m in 1..12 {
            let s: f64 = (0..=m).map(|k| binomial_half(m, k)).sum();
            assert!((s - 1.0).abs() < 1e-14, "{m}: {s}");
        }
        assert!((binomial_half(4, 2) - 6.0 / 16.0).abs() < 1e-15);
    }

    #[test]
    fn symmetrised_takes_the_named_triangle() {
        // Column-major J = [[1, 2], [3, 4]]: J_12 = 2 at index 2, J_21 = 3 at index 1.
        let j = [1.0, 3.0, 2.0, 4.0];
        assert_eq!(symmetrised(&j, 2, Some(true)), vec![1.0, 2.0, 2.0, 4.0]);
        assert_eq!(symmetrised(&j, 2, Some(false)), vec![1.0, 3.0, 3.0, 4.0]);
        assert_eq!(symmetrised(&j, 2, None), vec![1.0, 2.5, 2.5, 4.0]);
    }
}
