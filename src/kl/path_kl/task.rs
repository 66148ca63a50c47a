//! One grid time's task: at ln abar_t, the entropy H(q_t), the terminal term
//! KL(q_t || N(0, I)) = E[ln q_t(x) - ln N(x; 0, I)], and for every step (s, t) ending there
//! the S_full step term (route A: E[(1/2) sum_i ln(1 + b mu_i)]; route B: E[inner KL]) and
//! each family's offset E[KL(N(m, C) || N(m, Sigma_fam))].

use crate::data::mixture::Mixture;
use crate::kernel::family::{diag_offset, iso_offset, Family, IsoScale};
use crate::kernel::model::KernelKind;
use crate::numeric::NeumaierSum;
use crate::process::schedule::Step;

use super::nodes::{build_rule, eval_nodes, Scratch};
use super::route_b::route_b_values;
use super::{PathKlError, PathKlParams, Route};

/// One step (s, t) of one grid, attached to the time t it ends at.
#[derive(Clone, Debug)]
pub(super) struct Use {
    pub(super) grid: usize,
    pub(super) step: Step,
    /// beta-tilde's isotropic scale (clipped if degenerate); None if not requested.
    pub(super) beta_tilde: Option<IsoScale>,
}

#[derive(Clone, Debug)]
pub(super) struct Task {
    pub(super) ln_abar: f64,
    pub(super) uses: Vec<Use>,
    pub(super) entropy: bool,
    /// The grids' end time t_T: compute KL(q_t || N(0, I)) here.
    pub(super) terminal: bool,
}

#[derive(Clone, Debug)]
pub(super) struct UseResult {
    pub(super) grid: usize,
    /// Route A: E[(1/2) sum ln(1 + b mu)]; route B: E[inner KL]; per slot.
    pub(super) full: Vec<f64>,
    /// Sum of |terms| for the round-off floor.
    pub(super) full_abs: f64,
    /// Route B inner-rule error estimate (|order 2 - order 1|, fine slot).
    pub(super) inner_err: f64,
    /// Per requested family (in params order), per slot.
    pub(super) offsets: Vec<Vec<f64>>,
    /// Per requested family, the sum of |terms| its offset cancels (the isotropic families'
    /// offsets are differences of logs shared with the full term, see [`IsoTerms`]); 0 for
    /// `diag` and `full`.
    pub(super) offsets_abs: Vec<f64>,
}

/// One isotropic family's per-slot constants for the offset
/// KL(N(m, C) || N(m, sigma^2 I)) = (1/2) sum_i (u_i - ln(1 + u_i)), u_i = ((1 - rho) + b mu_i)/rho.
///
/// # Formula
/// With 1 + u_i = (1 + b mu_i)/rho, the logs are those of the full term less ln rho:
/// ```text
/// offset = (1/2)(D (1 - rho) + b sum_i mu_i)/rho - (1/2) sum_i ln(1 + b mu_i) + (D/2) ln rho
/// ```
/// so a node costs a few flops per family and slot instead of D logs (or D 15-term series).
/// The difference of the three parts carries eps times their sizes, counted in the round-off
/// floor; they are O(b) where the offset is O(b^2) (cancellation of ~1e-3 at T = 1024, far
/// below the floor of the sum).
#[derive(Clone, Copy, Debug, PartialEq)]
struct IsoTerms {
    /// 1 / rho.
    inv_rho: f64,
    /// (D/2)(1 - rho) / rho.
    half_d_omr_over_rho: f64,
    /// (D/2) ln rho, from ln_1p(-(1 - rho)).
    half_d_ln_rho: f64,
}

impl IsoTerms {
    fn new(s: IsoScale, d: usize) -> Self {
        let half_d = 0.5 * d as f64;
        Self {
            inv_rho: 1.0 / s.rho,
            half_d_omr_over_rho: half_d * s.one_minus_rho / s.rho,
            half_d_ln_rho: half_d * (-s.one_minus_rho).ln_1p(),
        }
    }

    /// The offset and the size of its parts at a node with `half_b_trace` = (b/2) sum_i mu_i
    /// and `full_term` = (1/2) sum_i ln(1 + b mu_i).
    fn offset(&self, half_b_trace: f64, full_term: f64) -> (f64, f64) {
        let u_part = self.half_d_omr_over_rho + half_b_trace * self.inv_rho;
        (
            u_part - full_term + self.half_d_ln_rho,
            u_part.abs() + full_term.abs() + self.half_d_ln_rho.abs(),
        )
    }
}

#[derive(Clone, Debug)]
pub(super) struct TaskResult {
    pub(super) ln_abar: f64,
    pub(super) entropy: Option<Vec<f64>>,
    /// Per slot E[ln q_t(x) - ln N(x; 0, I)] = KL(q_t || N(0, I)), with the sum of |terms|
    /// (at the terminal time only).
    pub(super) kl_std: Option<(Vec<f64>, f64)>,
    pub(super) uses: Vec<UseResult>,
}

/// Runs one grid time's task: the cubature over q_t, its entropy and terminal term where
/// asked, and every step term and family offset of the steps ending there.
pub(super) fn run_task(
    q0: &Mixture,
    task: &Task,
    params: &PathKlParams,
    gh: &[(Vec<f64>, Vec<f64>); 2],
    scratch: &mut Scratch,
) -> Result<TaskResult, PathKlError> {
    let q = q0.marginal(task.ln_abar)?;
    let d = q.dim();
    build_rule(&q, params, task.ln_abar, &mut scratch.rule)?;
    let route_b = params.route == Route::B && !task.uses.is_empty();
    eval_nodes(&q, &scratch.rule, route_b, &mut scratch.nodes);
    let nodes = &scratch.nodes;
    let entropy = task.entropy.then(|| nodes.expect(|i| -nodes.lnq[i]).0);
    // KL(q_t || N(0, I)) from the log-ratio at the nodes: near 0 where q_t is near N(0, I), so
    // its rule error is that of a small integrand (the difference (1/2) E|x|^2 - H(q_t) of an
    // exact moment and a cubature entropy is not: in D = 64 it went negative).
    let half_ln_2pi = 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();
    let kl_std = task.terminal.then(|| {
        // One pass: the per-slot sums of the log-ratio, and the size of the terms it cancels
        // (|ln q| + |x|^2 / 2 + (D/2) ln 2 pi, for the round-off floor).
        let mut sums = vec![NeumaierSum::new(); nodes.slots];
        let mut terms = 0.0;
        for i in 0..nodes.len() {
            let half_sq = 0.5
                * nodes.x[i * d..(i + 1) * d]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f64>();
            let v = nodes.lnq[i] + half_sq + half_ln_2pi;
            let w = &nodes.w[i * nodes.slots..(i + 1) * nodes.slots];
            for (sum, &wr) in sums.iter_mut().zip(w) {
                if wr != 0.0 {
                    sum.add(wr * v);
                }
            }
            terms += w[nodes.slots - 1].abs() * (nodes.lnq[i].abs() + half_sq + half_ln_2pi);
        }
        (sums.iter().map(NeumaierSum::value).collect(), terms)
    });
    let need_trace = params.families.contains(&Family::Analytic);
    let mean_trace: Vec<f64> = if need_trace {
        nodes
            .expect(|i| (0..d).map(|j| nodes.h[i * d * d + j * d + j]).sum())
            .0
    } else {
        vec![0.0; nodes.slots]
    };
    let mut uses = Vec::with_capacity(task.uses.len());
    let ddim = params.kernel == KernelKind::Ddim && params.route == Route::A;
    let slots = nodes.slots;
    let fine = slots - 1;
    for u in &task.uses {
        let (a2, b) = (u.step.a2, u.step.b);
        let mu = |i: usize| &nodes.mu[i * d..(i + 1) * d];
        // Route B: inner KL per node for both inner orders.
        let (inner_vals, inner_err) = match params.route {
            Route::A => (Vec::new(), 0.0),
            Route::B => {
                let vals = route_b_values(q0, &q, nodes, u.step, gh, task.ln_abar)?;
                let (v2, _) = nodes.expect(|i| vals[i][1]);
                let (v1, _) = nodes.expect(|i| vals[i][0]);
                (vals, (v2[fine] - v1[fine]).abs())
            }
        };
        // Isotropic scales per family and slot (analytic's depends on the slot's E[tr H]).
        let scales: Vec<Vec<Option<IsoScale>>> = params
            .families
            .iter()
            .map(|fam| match fam {
                Family::Beta => Ok(vec![Some(IsoScale::beta(a2, b)); slots]),
                Family::BetaTilde => u
                    .beta_tilde
                    .map(|s| vec![Some(s); slots])
                    .ok_or(PathKlError::DegenerateLastStep),
                Family::Analytic => Ok((0..slots)
                    .map(|r| Some(IsoScale::analytic(b, mean_trace[r], d)))
                    .collect()),
                Family::Diag | Family::Full => Ok(vec![None; slots]),
            })
            .collect::<Result<_, _>>()?;
        let nf = params.families.len();
        // Route A's isotropic offsets from the full term's logs (a route-B full term is not
        // those logs: there each offset is evaluated on its own).
        let iso_terms: Vec<Vec<Option<IsoTerms>>> = scales
            .iter()
            .map(|per| {
                per.iter()
                    .map(|sc| {
                        sc.filter(|_| params.route == Route::A)
                            .map(|sc| IsoTerms::new(sc, d))
                    })
                    .collect()
            })
            .collect();
        let mut full_sums = vec![NeumaierSum::new(); slots];
        let mut off_sums = vec![vec![NeumaierSum::new(); slots]; nf];
        let mut off_abs = vec![0.0; nf];
        let mut full_abs = 0.0;
        for i in 0..nodes.len() {
            let w = &nodes.w[i * slots..(i + 1) * slots];
            let m = mu(i);
            // (1/2) sum_i ln(1 + b mu_i), summed in eigenvalue order as half_ln_det_i_plus_bh.
            let half_ln_det = 0.5 * m.iter().map(|x| (b * x).ln_1p()).sum::<f64>();
            let full_term = match params.route {
                Route::A => half_ln_det,
                Route::B => inner_vals[i][1],
            };
            let half_b_trace = 0.5 * b * m.iter().sum::<f64>();
            full_abs += (w[fine] * full_term).abs();
            if ddim {
                // The one jump's 1 + b mu_i ~ abar_t lambda cancels for small abar_t: each ln
                // carries eps (1 + b |mu_i|) / |1 + b mu_i| (the round-off floor scales it).
                let cond: f64 = m.iter().map(|&x| (1.0 + b * x.abs()) / (1.0 + b * x)).sum();
                full_abs += (w[fine] * cond).abs();
            } else if params.route == Route::A {
                // ln_1p(b mu_i) of an argument with relative error ~eps carries the absolute
                // error eps |b mu_i| / |1 + b mu_i|: about the term itself where b |mu_i| is
                // small, but far more where b mu_i -> -1 (a large step whose posterior
                // barely depends on x_t, e.g. snr-uniform's last step, 1 + b mu = 1.8e-6; a
                // near-singular data direction at the first step).
                let cond: f64 = m.iter().map(|&x| (b * x).abs() / (1.0 + b * x)).sum();
                full_abs += (w[fine] * cond).abs();
            }
            for r in 0..slots {
                if w[r] != 0.0 {
                    full_sums[r].add(w[r] * full_term);
                }
            }
            for (f, fam) in params.families.iter().enumerate() {
                match fam {
                    Family::Full => {}
                    Family::Diag => {
                        let v = diag_offset(b, &nodes.h[i * d * d..(i + 1) * d * d], d);
                        for r in 0..slots {
                            if w[r] != 0.0 {
                                off_sums[f][r].add(w[r] * v);
                            }
                        }
                    }
                    _ => {
                        // (scale, offset, size of its cancelling parts) of the last slot.
                        let mut last: Option<(IsoScale, f64, f64)> = None;
                        for r in 0..slots {
                            if w[r] == 0.0 {
                                continue;
                            }
                            let sc = scales[f][r].unwrap_or(IsoScale::beta(a2, b));
                            let (v, parts) = match (last, iso_terms[f][r]) {
                                (Some((ls, lv, lp)), _) if ls == sc => (lv, lp),
                                (_, Some(it)) => it.offset(half_b_trace, half_ln_det),
                                _ => (iso_offset(sc, b, m), 0.0),
                            };
                            last = Some((sc, v, parts));
                            if r == fine {
                                off_abs[f] += (w[r] * parts).abs();
                            }
                            off_sums[f][r].add(w[r] * v);
                        }
                    }
                }
            }
        }
        let full: Vec<f64> = full_sums.iter().map(NeumaierSum::value).collect();
        if full.iter().any(|v| !v.is_finite()) {
            return Err(PathKlError::NonPositiveCovariance {
                family: "full",
                time: task.ln_abar,
            });
        }
        let mut offsets = Vec::with_capacity(nf);
        for (f, fam) in params.families.iter().enumerate() {
            let per_slot: Vec<f64> = off_sums[f].iter().map(NeumaierSum::value).collect();
            if per_slot.iter().any(|v| !v.is_finite()) {
                return Err(PathKlError::NonPositiveCovariance {
                    family: fam.name(),
                    time: task.ln_abar,
                });
            }
            offsets.push(per_slot);
        }
        uses.push(UseResult {
            grid: u.grid,
            full,
            full_abs,
            inner_err,
            offsets,
            offsets_abs: off_abs,
        });
    }
    Ok(TaskResult {
        ln_abar: task.ln_abar,
        entropy,
        kl_std,
        uses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_log_offsets_equal_the_series_route_within_their_floor() {
        // Two routes to KL(N(m, C) || N(m, sigma^2 I)): iso_offset's cancellation-free
        // u - ln(1 + u) per eigenvalue, and IsoTerms' difference of the full term's logs.
        // They must agree within the round-off floor the difference is charged with, 16 eps
        // times the size of its parts and of the logs' conditioning, over small and large
        // steps, all three families' kinds of scale and eigenvalues down to 1 + b mu = 1e-3.
        let d = 2;
        for &(a2, b) in &[(1.0 - 1e-4, 1e-4), (0.99, 0.01), (0.7, 0.3)] {
            let scales = [
                IsoScale::beta(a2, b),
                // abar_s = 0.8, abar_t = a2 abar_s.
                IsoScale::beta_tilde(a2, b, 0.2, 1.0 - a2 * 0.8),
                IsoScale::analytic(b, -1.3, d),
            ];
            for sc in scales {
                let it = IsoTerms::new(sc, d);
                for &(m0, m1) in &[(-0.9, 0.3), (-0.999 / b, -2.0), (0.0, 0.0), (5.0, -40.0)] {
                    let mu = [m0, m1];
                    if mu.iter().any(|&m| 1.0 + b * m <= 0.0) {
                        continue;
                    }
                    let half_ln_det = 0.5 * mu.iter().map(|x| (b * x).ln_1p()).sum::<f64>();
                    let half_b_trace = 0.5 * b * (m0 + m1);
                    let (v, parts) = it.offset(half_b_trace, half_ln_det);
                    let reference = iso_offset(sc, b, &mu);
                    // Both routes take a log of an argument carrying eps |b mu| / |1 + b mu|
                    // (the conditioning term every family's floor already counts).
                    let cond: f64 = mu.iter().map(|&x| (b * x).abs() / (1.0 + b * x)).sum();
                    let floor = 16.0 * f64::EPSILON * (parts + cond + reference.abs());
                    assert!(
                        (v - reference).abs() <= floor,
                        "b = {b}, {sc:?}, mu = {mu:?}: {v} vs {reference} (parts {parts})"
                    );
                }
            }
        }
    }
}
