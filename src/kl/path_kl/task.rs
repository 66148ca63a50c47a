//! One grid time's task: at ln abar_t, the entropy H(q_t), the terminal term
//! KL(q_t || N(0, I)) = E[ln q_t(x) - ln N(x; 0, I)], and for every step (s, t) ending there
//! the S_full step term (route A: E[(1/2) sum_i ln(1 + b mu_i)]; route B: E[inner KL]) and
//! each family's offset E[KL(N(m, C) || N(m, Sigma_fam))].

use crate::data::mixture::Mixture;
use crate::kernel::family::{diag_offset, half_ln_det_i_plus_bh, iso_offset, Family, IsoScale};
use crate::kernel::model::KernelKind;
use crate::numeric::NeumaierSum;
use crate::process::schedule::Step;

use super::nodes::{build_rule, eval_nodes};
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
) -> Result<TaskResult, PathKlError> {
    let q = q0.marginal(task.ln_abar)?;
    let d = q.dim();
    let rule = build_rule(&q, params, task.ln_abar)?;
    let route_b = params.route == Route::B && !task.uses.is_empty();
    let nodes = eval_nodes(&q, &rule, route_b);
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
                let vals = route_b_values(q0, &q, &nodes, u.step, gh, task.ln_abar)?;
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
        let mut full_sums = vec![NeumaierSum::new(); slots];
        let mut off_sums = vec![vec![NeumaierSum::new(); slots]; nf];
        let mut full_abs = 0.0;
        for i in 0..nodes.len() {
            let w = &nodes.w[i * slots..(i + 1) * slots];
            let m = mu(i);
            let full_term = match params.route {
                Route::A => half_ln_det_i_plus_bh(b, m),
                Route::B => inner_vals[i][1],
            };
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
                        let mut last: Option<(IsoScale, f64)> = None;
                        for r in 0..slots {
                            if w[r] == 0.0 {
                                continue;
                            }
                            let sc = scales[f][r].unwrap_or(IsoScale::beta(a2, b));
                            let v = match last {
                                Some((ls, lv)) if ls == sc => lv,
                                _ => iso_offset(sc, b, m),
                            };
                            last = Some((sc, v));
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
        });
    }
    Ok(TaskResult {
        ln_abar: task.ln_abar,
        entropy,
        kl_std,
        uses,
    })
}
