//! Where the path KL comes from along a schedule: local error densities, the asymptotic
//! constants they predict, and the constant of the best schedule (`docs/schedules.md`).
//!
//! # Formula
//! A continuous schedule is a map `u in [0, 1] -> ln abar(u)` ([`Schedule::ln_abar_at`]); the
//! T-step grid is `u_i = i / T`. For a small step `(u - d, u)` or `(u, u + d)` the step
//! term of family `f` ([`crate::kl::path_kl::StepRow`]) behaves like
//! ```text
//! term_f = g_f(u) d^p + O(d^(p+1)),   p = 3 for full, p = 2 otherwise
//! ```
//! (the O(d^2) terms cancel for the exact covariance), so the right-end Riemann sum gives
//! ```text
//! T^(p-1) S_f(T) -> K_f = int_0^1 g_f(u) du.
//! ```
//! `g_f` is the density on the schedule's own clock; in any other time variable `tau(u)` it
//! is `c_f(tau) (dtau/du)^p`, and `K_f = int c_f (dtau/du)^(p-1) dtau`. With the ends fixed,
//! `K_f` is smallest for the grid density `du/dtau ∝ c_f^(1/p)` (Hölder), where
//! ```text
//! K_f^opt = (int c_f^(1/p) dtau)^p = (int_0^1 g_f(u)^(1/p) du)^p,
//! ```
//! the same number whichever schedule `g_f` was measured on (a reparametrisation of the
//! same ends: tested).
//!
//! # Numerics
//! - `g_f(u)`: Richardson extrapolation of `r(d) = term_f / d^p` on the steps `(u, u + d)`
//!   for `u < 1/2` and `(u - d, u)` beyond, so every node gets the same steps (for `p = 2` the
//!   covariance part alone, [`crate::kl::path_kl::StepRow::offset`]: the S_full part is
//!   O(d^3) and drops out of the limit, and it carries the entropies' round-off) over
//!   `d_k = d0 / 2^k` (`d0 = delta0`, and within `2 delta0` of an end also half the
//!   distance to it, for densities singular or schedules steep there), `levels` at a time:
//!   the table
//!   `R_{k,0} = r(d_k)`, `R_{k,j} = (2^j R_{k+1,j-1} - R_{k,j-1}) / (2^j - 1)` removes the
//!   powers `d, ..., d^(levels-1)` of `r(d) = g + a_1 d + a_2 d^2 + ...`; the value is
//!   `R_{0,levels-1}`, the error its distance to the previous level's best `R_{1,levels-2}`
//!   plus the step terms' own error estimates carried through the same table in absolute
//!   value. Each step term is exact (the path-KL cubature with its error estimate); only the
//!   limit is extrapolated. `windows` such tables on consecutive step ranges are formed and
//!   the one with the smallest error estimate kept (as in Ridders' method: large steps carry
//!   truncation, small ones round-off, and S_full's step terms, differences of entropies,
//!   reach their floor ~1e-14 at d^3 ~ 1e-9). Where even the largest steps leave a term near
//!   its floor, the error estimate says so.
//! - The integrals over `u`: composite Gauss-Legendre on panels with dyadic break points
//!   `2^-k` and `1 - 2^-k` toward both ends (where schedules and densities vary fastest) and
//!   no panel wider than 1/8, `order` nodes per panel;
//!   the error estimate is the difference to the half-order rule on the same panels plus the
//!   densities' errors times the weights.

use serde::{Deserialize, Serialize};

use crate::data::mixture::Mixture;
use crate::kernel::family::Family;
use crate::process::schedule::{Grid, Schedule};
use crate::quadrature::{gauss_legendre, Estimate};

use super::path_kl::{path_kl_grids, PathKlError, PathKlParams, PathKlReport};

/// The order `p` of a family's step terms: `term = g d^p + ...` (3 for `full`, 2 otherwise).
#[must_use]
pub fn term_order(family: Family) -> i32 {
    if family == Family::Full {
        3
    } else {
        2
    }
}

/// Parameters of the densities and their integrals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalErrorParams {
    /// The largest step `d0` of the Richardson extrapolation (in `u`, at most 1/2).
    pub delta0: f64,
    /// Dyadic panels toward both ends: break points `0, 2^-panels, ..., 1/4, 1/2` and their
    /// mirror images `1 - x`; panels wider than 1/8 are split evenly into pieces of width <= 1/8.
    pub panels: usize,
    /// Gauss-Legendre nodes per panel (even; the error estimate uses half as many).
    pub order: usize,
    /// Richardson levels of one extrapolation (2..=8).
    pub levels: usize,
    /// Extrapolations per node (>= 1): windows of `levels` consecutive steps from
    /// `d0, d0/2, ..., d0 / 2^(levels + windows - 2)`; the one with the smallest error
    /// estimate is kept (Ridders' choice: large steps carry truncation, small ones round-off).
    pub windows: usize,
}

impl Default for LocalErrorParams {
    fn default() -> Self {
        Self {
            delta0: 1.0 / 32.0,
            panels: 8,
            order: 8,
            levels: 4,
            windows: 4,
        }
    }
}

/// The density of one family at one `u`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DensityPoint {
    /// The family.
    pub family: Family,
    /// The point `u` of the schedule's clock.
    pub u: f64,
    /// `ln abar(u)`.
    pub ln_abar: f64,
    /// `g_f(u)` with its error estimate.
    pub g: Estimate,
}

/// The predicted constants of one family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Constants {
    /// The family.
    pub family: Family,
    /// Its order `p`.
    pub p: i32,
    /// `K_f = int_0^1 g_f du`: the limit of `T^(p-1) S_f(T)` on this schedule.
    pub k: Estimate,
    /// `K_f^opt = (int_0^1 g_f^(1/p) du)^p`: the limit under the best schedule with the same ends.
    pub k_opt: Estimate,
}

/// Densities at the quadrature nodes (families in the given order, `u` ascending) and the
/// constants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalErrorReport {
    /// `g_f(u)` at every node of the integration rule (both orders).
    pub densities: Vec<DensityPoint>,
    /// One entry per family.
    pub constants: Vec<Constants>,
}

/// Composite Gauss-Legendre nodes and weights on the dyadic panels, for `order` and
/// `order / 2` nodes per panel: `(u, weight_full, weight_half)` with one weight 0 where a
/// node belongs to the other rule.
fn panel_rule(lp: &LocalErrorParams) -> Vec<(f64, f64, f64)> {
    // Toward the data end: 0, 2^-panels, ..., 1/4, 1/2, with panels wider than 1/8 split
    // evenly; the noise end mirrored (1 - x).
    let mut left: Vec<f64> = vec![0.0];
    for k in (1..=lp.panels).rev() {
        let (a, b) = (0.5f64.powi(k as i32 + 1), 0.5f64.powi(k as i32));
        let pieces = ((b - a) * 8.0).ceil().max(1.0) as usize;
        for i in 0..pieces {
            left.push(a + (b - a) * (i as f64) / (pieces as f64));
        }
    }
    let mut breaks = left.clone();
    breaks.push(0.5);
    breaks.extend(left.iter().rev().map(|x| 1.0 - x));
    let mut out = Vec::new();
    for (n, full) in [(lp.order, true), (lp.order / 2, false)] {
        let (x, w) = gauss_legendre(n);
        for p in breaks.windows(2) {
            let (a, b) = (p[0], p[1]);
            for (&xi, &wi) in x.iter().zip(&w) {
                let u = a + (b - a) * xi;
                let wt = (b - a) * wi;
                out.push(if full { (u, wt, 0.0) } else { (u, 0.0, wt) });
            }
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The grid of a continuous schedule at the points `u` of its clock (`times = u`,
/// `ln abar = ln abar(u)`), refused for a discrete schedule.
pub(crate) fn clock_grid(
    schedule: &Schedule,
    early_stop: f64,
    u: &[f64],
) -> Result<Grid, PathKlError> {
    let ln_abar = u
        .iter()
        .map(|&v| {
            schedule.ln_abar_at(v, early_stop).ok_or(PathKlError::Schedule(
                crate::process::schedule::ScheduleError::InvalidParameter {
                    name: "schedule",
                    value: v,
                    reason: "local error densities and optimal grids need a continuous schedule (vp-linear, cosine, snr-uniform)",
                },
            ))
        })
        .collect::<Result<_, _>>()?;
    Ok(Grid {
        times: u.to_vec(),
        ln_abar,
    })
}

/// A one-step grid of a continuous schedule at `u`: `(u, u + d)` in the first half of the
/// clock, `(u - d, u)` in the second (so that `d <= 1/2` always fits).
fn one_step(schedule: &Schedule, early_stop: f64, u: f64, d: f64) -> Result<Grid, PathKlError> {
    let (s, t) = if u < 0.5 { (u, u + d) } else { (u - d, u) };
    clock_grid(schedule, early_stop, &[s, t])
}

/// The densities `g_f(u)` of `params.families` at the nodes of the integration rule, and the
/// constants `K_f` and `K_f^opt` (module docs).
///
/// # Errors
/// A discrete schedule, invalid `lp`, or any error of [`path_kl_grids`].
pub fn local_errors(
    q0: &Mixture,
    schedule: &Schedule,
    early_stop: f64,
    params: &PathKlParams,
    lp: &LocalErrorParams,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<LocalErrorReport, PathKlError> {
    let valid = lp.delta0 > 0.0
        && lp.delta0 <= 0.5
        && lp.order >= 2
        && lp.order.is_multiple_of(2)
        && (2..=8).contains(&lp.levels)
        && (1..=8).contains(&lp.windows);
    if !valid {
        return Err(PathKlError::Schedule(
            crate::process::schedule::ScheduleError::InvalidParameter {
                name: "local-error",
                value: lp.delta0,
                reason: "delta0 in (0, 0.5], an even order >= 2 per panel, 2..=8 levels and 1..=8 windows",
            },
        ));
    }
    let levels = lp.levels + lp.windows - 1;
    let rule = panel_rule(lp);
    // Per node, one ladder of `levels` steps from `delta0` and, within `2 delta0` of an end,
    // a second from half the distance to it: a density singular at the data end (beta-tilde
    // without early stop, ~ 1/u^2) or a schedule steep at the noise end (snr-uniform) has its
    // expansion's radius ~ that distance, while S_full's smooth density needs the larger
    // steps to stay above its round-off floor. The extrapolation with the smallest error
    // estimate over both ladders is kept.
    let mut grids = Vec::new();
    let mut ladders: Vec<Vec<(f64, usize)>> = Vec::with_capacity(rule.len());
    for &(u, ..) in &rule {
        let mut starts = vec![lp.delta0];
        let edge = 0.5 * u.min(1.0 - u);
        if edge < lp.delta0 {
            starts.push(edge);
        }
        let mut node = Vec::new();
        for d0 in starts {
            node.push((d0, grids.len()));
            for k in 0..levels {
                grids.push(one_step(
                    schedule,
                    early_stop,
                    u,
                    d0 / f64::from(1u32 << k),
                )?);
            }
        }
        ladders.push(node);
    }
    let one = PathKlParams {
        early_stop: 0.0,
        per_step: true,
        ..params.clone()
    };
    let report = path_kl_grids(q0, &grids, &one, progress)?;
    let mut densities = Vec::new();
    let mut constants = Vec::new();
    for &fam in &params.families {
        let p = term_order(fam);
        let terms = family_terms(&report, fam, grids.len())?;
        let mut g = Vec::with_capacity(rule.len());
        for (&(u, ..), node) in rule.iter().zip(&ladders) {
            let mut best = Estimate {
                value: f64::NAN,
                err: f64::INFINITY,
            };
            for &(d0, first) in node {
                let ratios: Vec<Estimate> = (0..levels)
                    .map(|k| {
                        let t = terms[first + k];
                        let dk = d0 / f64::from(1u32 << k);
                        Estimate {
                            value: t.value / dk.powi(p),
                            err: t.err / dk.powi(p),
                        }
                    })
                    .collect();
                for w in 0..lp.windows {
                    let e = richardson(&ratios[w..w + lp.levels]);
                    if e.err < best.err {
                        best = e;
                    }
                }
            }
            g.push(best);
            densities.push(DensityPoint {
                family: fam,
                u,
                ln_abar: schedule.ln_abar_at(u, early_stop).unwrap_or(f64::NAN),
                g: best,
            });
        }
        constants.push(Constants {
            family: fam,
            p,
            k: integral(&rule, &g, 1.0),
            k_opt: integral(&rule, &g, 1.0 / f64::from(p)),
        });
    }
    Ok(LocalErrorReport {
        densities,
        constants,
    })
}

/// The limit `d -> 0` of `r(d_k)`, `d_k = d0 / 2^k` (`r.len() >= 2` levels), by the
/// Richardson table of the module docs, with its error estimate.
#[must_use]
pub fn richardson(r: &[Estimate]) -> Estimate {
    let mut vals: Vec<f64> = r.iter().map(|e| e.value).collect();
    let mut errs: Vec<f64> = r.iter().map(|e| e.err).collect();
    let mut previous = f64::NAN;
    for j in 1..r.len() {
        let f = f64::from(1u32 << j);
        previous = vals[1];
        for k in 0..r.len() - j {
            vals[k] = (f * vals[k + 1] - vals[k]) / (f - 1.0);
            errs[k] = (f * errs[k + 1] + errs[k]) / (f - 1.0);
        }
    }
    Estimate {
        value: vals[0],
        err: (vals[0] - previous).abs() + errs[0],
    }
}

/// The one-step terms of `family` in grid order: the S_full part for `full` (order 3), the
/// covariance part for the others (order 2: their S_full part is O(d^3) and drops out of the
/// limit, and the covariance part has no entropy cancellation, so it keeps its precision
/// where the step terms are small).
fn family_terms(
    report: &PathKlReport,
    family: Family,
    n: usize,
) -> Result<Vec<Estimate>, PathKlError> {
    let terms: Vec<Estimate> = report
        .steps
        .iter()
        .filter(|r| r.family == family)
        .map(|r| {
            if family == Family::Full {
                r.full
            } else {
                r.offset
            }
        })
        .collect();
    if terms.len() == n {
        Ok(terms)
    } else {
        Err(PathKlError::NoSteps)
    }
}

/// `(int_0^1 g^e du)^(1/e)` on the composite rule, with its error estimate: the difference
/// to the half-order rule plus the spread from `g +- err` (negative parts clipped to 0, where
/// `g^e` with `e < 1` is not defined: a density is `>= 0`).
fn integral(rule: &[(f64, f64, f64)], g: &[Estimate], e: f64) -> Estimate {
    let sum = |shift: f64, half: bool| -> f64 {
        let s: f64 = rule
            .iter()
            .zip(g)
            .map(|(&(_, wf, wh), est)| {
                let w = if half { wh } else { wf };
                w * (est.value + shift * est.err).max(0.0).powf(e)
            })
            .sum();
        s.powf(1.0 / e)
    };
    let value = sum(0.0, false);
    let spread = (sum(1.0, false) - value)
        .abs()
        .max((value - sum(-1.0, false)).abs());
    Estimate {
        value,
        err: (value - sum(0.0, true)).abs() + spread,
    }
}

/// `T^(p-1) S_f(T)` for every T of a sweep's report, T ascending, and its Richardson
/// extrapolations in `1/T` over consecutive doublings: `M1(T) = 2 M(2T) - M(T)` and
/// `M2(T) = (4 M1(2T) - M1(T)) / 3` (errors: the sums' own, times the weights).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaledSums {
    /// The family.
    pub family: Family,
    /// Its order `p`.
    pub p: i32,
    /// `(T, T^(p-1) S_f(T))`, T ascending.
    pub scaled: Vec<(usize, Estimate)>,
    /// The last second-level extrapolation (from the three largest T, doublings), if any.
    pub extrapolated: Option<Estimate>,
}

/// [`ScaledSums`] of `family` from a sweep's rows.
#[must_use]
pub fn scaled_sums(report: &PathKlReport, family: Family) -> ScaledSums {
    let p = term_order(family);
    let mut scaled: Vec<(usize, Estimate)> = report
        .rows
        .iter()
        .filter(|r| r.family == family)
        .map(|r| {
            let f = (r.steps as f64).powi(p - 1);
            (
                r.steps,
                Estimate {
                    value: f * r.s.value,
                    err: f * r.s.err,
                },
            )
        })
        .collect();
    scaled.sort_by_key(|r| r.0);
    let n = scaled.len();
    let extrapolated = (n >= 3
        && scaled[n - 2].0 == 2 * scaled[n - 3].0
        && scaled[n - 1].0 == 2 * scaled[n - 2].0)
        .then(|| {
            let (a, b, c) = (scaled[n - 3].1, scaled[n - 2].1, scaled[n - 1].1);
            // M2 = (4 (2c - b) - (2b - a)) / 3 = (8c - 6b + a) / 3.
            Estimate {
                value: (8.0 * c.value - 6.0 * b.value + a.value) / 3.0,
                err: (8.0 * c.err + 6.0 * b.err + a.err) / 3.0,
            }
        });
    ScaledSums {
        family,
        p,
        scaled,
        extrapolated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn richardson_removes_the_powers_it_claims() {
        // r(d) = 3 + 2 d - 5 d^2 + 7 d^3 on d = 0.1 / 2^k: four levels remove d, d^2, d^3 and
        // give 3 to round-off (values O(3), the table's weights sum to ~ 8 in absolute value:
        // 1e-13); three levels leave the d^3 term times the table's factor (below).
        let r = |d: f64| 3.0 + 2.0 * d - 5.0 * d * d + 7.0 * d * d * d;
        let ests = |n: usize| -> Vec<Estimate> {
            (0..n)
                .map(|k| Estimate {
                    value: r(0.1 / f64::from(1u32 << k)),
                    err: 0.0,
                })
                .collect()
        };
        let four = richardson(&ests(4));
        assert!((four.value - 3.0).abs() < 1e-13, "{}", four.value);
        let three = richardson(&ests(3));
        // Residual of a pure d^3 term after removing d and d^2 with ratio 2:
        // (8 (d/4)^3 - 6 (d/2)^3 + d^3) / 3 = d^3 (1/8 - 3/4 + 1) / 3 = d^3 / 8.
        let want = 3.0 + 7.0 * 0.1f64.powi(3) / 8.0;
        assert!(
            (three.value - want).abs() < 1e-13,
            "{} vs {want}",
            three.value
        );
        // The error estimate covers the true error of the three-level value.
        assert!(three.err >= (three.value - 3.0).abs());
        // Input errors are carried in absolute value: 1 on each level gives (8+6+1)/3 = 5.
        let unit: Vec<Estimate> = (0..3)
            .map(|_| Estimate {
                value: 1.0,
                err: 1.0,
            })
            .collect();
        assert!((richardson(&unit).err - 5.0).abs() < 1e-12);
    }

    #[test]
    fn panel_rule_integrates_a_boundary_layer() {
        // int_0^1 e^(-u / 0.01) du = 0.01 (1 - e^-100): the dyadic panels resolve the layer
        // at the data end to ~1e-10 with 8 nodes per panel (the half rule far less: the
        // estimate is conservative).
        let lp = LocalErrorParams::default();
        let rule = panel_rule(&lp);
        let g: Vec<Estimate> = rule
            .iter()
            .map(|&(u, ..)| Estimate {
                value: (-u / 0.01).exp(),
                err: 0.0,
            })
            .collect();
        let k = integral(&rule, &g, 1.0);
        let want = 0.01 * (1.0 - (-100.0f64).exp());
        assert!(
            (k.value - want).abs() < 1e-10 * want,
            "{} vs {want}",
            k.value
        );
        assert!(k.err >= (k.value - want).abs());
        // The p-th root form: (int sqrt(g))^2 for g = e^(-u/0.01): (0.02 (1 - e^-50))^2.
        let k2 = integral(&rule, &g, 0.5);
        let want2 = (0.02 * (1.0 - (-50.0f64).exp())).powi(2);
        assert!(
            (k2.value - want2).abs() < 1e-9 * want2,
            "{} vs {want2}",
            k2.value
        );
    }
}
