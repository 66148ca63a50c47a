//! The exact path KL between the true reverse chain of a Gaussian-mixture forward
//! process and Gaussian model chains N(m(x_t), Sigma_fam(x_t)) (`docs/path-kl.md`).
//!
//! # Formula
//! ```text
//! KL(q(x_{0:T}) || p(x_{0:T})) = KL(q_{t_T} || N(0, I)) + S_fam(T),
//! S_fam(T) = sum_steps E_{q_t}[KL(q(x_s | x_t) || N(m, Sigma_fam))] = S_full(T) + G_fam(T),
//! G_fam(T) = sum_steps E_{q_t}[KL(N(m, C) || N(m, Sigma_fam))]          (closed form per x_t)
//! ```
//! **Route A** (telescoping): E_{q_t}[H(q(x_s|x_t))] = H(q_s) + (D/2) ln(2 pi e b) - H(q_t), so
//! ```text
//! S_full(T) = sum_steps E_{q_t}[(1/2) sum_i ln(1 + b mu_i(x_t))] + (D/2) ln(abar_{t_0} / abar_{t_T})
//!             + H(q_{t_T}) - H(q_{t_0}),
//! ```
//! with mu_i the eigenvalues of the Hessian of ln q_t (C = (b/a^2)(I + b H)). The sum is O(1)
//! and the result O(1/T^2): the expectations must be accurate to ~1e-12 absolute, which the
//! spectrally convergent lattice rule delivers in D <= 3.
//!
//! **Route B** (direct): for each x_t the inner KL(q(.|x_t) || N(m, C)) =
//! sum_k w_k E_{N(m_k, S_k)}[ln q(y|x_t) - ln N(y; m, C)] is computed by a tensor
//! Gauss-Hermite rule under each posterior component (orders `gh_orders`, the difference of
//! the two is the inner error estimate), with q(y|x_t), m and C by the conditioning route.
//! (A single rule under N(m, C) was tried first: its estimate was unreliable for the
//! multimodal posteriors of coarse steps.)
//!
//! **DDIM chains** ([`KernelKind::Ddim`], OCM-DDIM: `docs/path-kl.md#ocm-ddim-chains`). The model kernel
//! of a step (s, t) is the affine image x_0 -> c x_0 + d x_t (c = sqrt(abar_s) -
//! sqrt(1 - abar_s) sqrt(abar_t) / sqrt(1 - abar_t) != 0) of N(mu_0, Sigma_0), the family's
//! covariance for the one jump (0, t). The reference chain is the Markov chain whose kernel is
//! the same image of the true q(x_0 | x_t) (the moments OCM-DDIM matches; its marginals are
//! the q_t, so its path KL bounds KL(q_0 || p_0)). KL is invariant under a bijective affine
//! map, so each step term is the DDPM term of the one jump (0, t), whatever s is:
//! ```text
//! S^DDIM_fam(T) = sum_{i=1..T} E_{q_{t_i}}[KL(q(x_0 | x_{t_i}) || N(mu_0, Sigma_0,fam))],
//! S^DDIM_full(T) = sum_i ( E[(1/2) sum ln(1 + b_i mu)] + (D/2) ln(abar_0 / abar_{t_i})
//!                          + H(q_{t_i}) - H(q_0) ),  b_i = 1 - abar_{t_i} / abar_0.
//! ```
//! The terms do not shrink with the step: a DDIM chain's path KL grows like T (each kernel's
//! shape error is scale-free). `beta` and `beta-tilde` give Sigma_0 = 0 (plain DDIM, a
//! deterministic kernel, infinite KL) and are refused; the early stop must be 0 (the kernel's
//! x_0 is the data at t = 0).
//!
//! Every expectation over q_t is taken with a rule that carries its own error estimate
//! ([`crate::quadrature`]): nested lattices in D <= 3, randomised QMC beyond. All T values
//! of a sweep share the expectations at common grid times (nested grids), and times are
//! processed in parallel with results combined in a fixed order (identical for any
//! thread count).

mod error;
mod nodes;
mod route_b;
mod task;

pub use error::PathKlError;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::mixture::Mixture;
use crate::kernel::family::{BetaTildeRemedy, Family, IsoScale};
use crate::kernel::model::KernelKind;
use crate::numeric::NeumaierSum;
use crate::process::schedule::{Grid, Schedule, Step};
use crate::quadrature::{gauss_hermite_tensor, ErrorModel, Estimate, LatticeParams, QmcParams};

use nodes::uses_lattice;
use task::{run_task, Task, TaskResult, Use};

/// Relative round-off floor added to every error estimate: 16 eps times the sum of the
/// absolute values of the terms that were added, where each route-A step term
/// `(1/2) sum_i ln(1 + b mu_i)` also counts with the error of its argument,
/// `sum_i |b mu_i| / |1 + b mu_i|`.
///
/// # Formula
/// ```text
/// err += 16 eps (sum_terms |term| + sum_nodes w sum_i |b mu_i| / |1 + b mu_i|)
/// ```
/// A route-A isotropic family (beta, beta-tilde, analytic) adds the sizes of the three parts
/// its offset is the difference of (`task::IsoTerms`): its round-off is its own.
///
/// Measured on single Gaussians, where S_full = 0 exactly: snr-uniform's last step has
/// 1 + b mu = 1.8e-6 (|S_full| = 3.5e-11 against a plain floor of 1e-13; the same number in
/// 50-digit arithmetic of the closed form is 4e-46, in f64 3.5e-11), diag(1, 10^-k) has
/// 1 + b mu ~ 10^-k at the first step (|S_full| ~ 20 eps 10^k).
pub const ROUNDOFF_FLOOR: f64 = 16.0 * f64::EPSILON;

/// The largest condition number of a component covariance that the path KL accepts: the
/// first step's `1 + b mu` is then ~ 1 / kappa, so its round-off (~ eps kappa relative, see
/// [`ROUNDOFF_FLOOR`]) stays below ~1e-5; beyond it f64 does not resolve the covariance
/// formulas (diag(1, 1e-16) gave S_full = -0.104 where 0 is exact) and the input is refused.
pub const MAX_CONDITION: f64 = 1e10;

/// Which route computes S_full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// Telescoping entropies (fast; needs accurate expectations).
    A,
    /// Direct inner quadrature of each reverse-kernel KL (independent, slower).
    B,
}

/// Which cubature rule to use over q_t.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleChoice {
    /// Lattice for D <= 2, QMC otherwise.
    Auto,
    /// Nested trapezoid lattice (D <= 3).
    Lattice,
    /// Randomised QMC.
    Qmc,
}

/// Parameters of a path-KL sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathKlParams {
    /// Families to report.
    pub families: Vec<Family>,
    /// Route for S_full.
    pub route: Route,
    /// Remedy for beta-tilde's degenerate last step.
    pub remedy: BetaTildeRemedy,
    /// Early stop delta (the grid starts at t_0 = delta), 0 for none.
    pub early_stop: f64,
    /// Rule choice.
    pub rule: RuleChoice,
    /// Lattice parameters.
    pub lattice: LatticeParams,
    /// QMC parameters.
    pub qmc: QmcParams,
    /// Inner Gauss-Hermite orders per dimension for route B (the second is the reported one).
    pub gh_orders: [usize; 2],
    /// The model chain's kernel.
    #[serde(default)]
    pub kernel: KernelKind,
    /// Also report every step's term ([`PathKlReport::steps`]); needs H(q_t) at every grid
    /// time (route A), one more expectation per time.
    #[serde(default)]
    pub per_step: bool,
}

impl Default for PathKlParams {
    fn default() -> Self {
        Self {
            families: Family::ALL.to_vec(),
            route: Route::A,
            remedy: BetaTildeRemedy::Clip,
            early_stop: 0.0,
            rule: RuleChoice::Auto,
            lattice: LatticeParams::default(),
            qmc: QmcParams::default(),
            gh_orders: [8, 12],
            kernel: KernelKind::Ddpm,
            per_step: false,
        }
    }
}

/// One result: S_fam(T) with its error estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FamilyRow {
    /// The family.
    pub family: Family,
    /// T.
    pub steps: usize,
    /// S_fam(T).
    pub s: Estimate,
}

/// One step's term of one family: E_{q_t}[KL(q(x_s | x_t) || N(m, Sigma_fam))] for the step
/// (s, t) = (t_{i-1}, t_i) of the T-step grid, so that S_fam(T) = sum_i term_i.
///
/// # Formula
/// Route A (DDPM), per cubature slot, with the entropies at both ends of the step:
/// ```text
/// term_i = E[(1/2) sum_j ln(1 + b mu_j)] + (D/2)(ln abar_s - ln abar_t) + H(q_t) - H(q_s)
///          + E[KL(N(m, C) || N(m, Sigma_fam))]
/// ```
/// (route B: the inner KL directly; DDIM: the jump (t_0, t_i), module docs). The error
/// estimate is the rule's on this difference plus the round-off floor of its parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// The family.
    pub family: Family,
    /// T of the grid.
    pub steps: usize,
    /// The step's index i in 1..=T.
    pub index: usize,
    /// The grid time s = t_{i-1}.
    pub time_s: f64,
    /// The grid time t = t_i.
    pub time_t: f64,
    /// ln abar_s.
    pub ln_abar_s: f64,
    /// ln abar_t.
    pub ln_abar_t: f64,
    /// The step term with its error estimate: `full + offset`.
    pub term: Estimate,
    /// Its S_full part, E[KL(q(x_s | x_t) || N(m, C))] (the same for every family).
    pub full: Estimate,
    /// Its covariance part, E[KL(N(m, C) || N(m, Sigma_fam))] (0 for `full`), computed per
    /// node without the entropies' cancellation: where `full` is O(d^3), this part alone is
    /// the O(d^2) term (`crate::kl::local_error`).
    pub offset: Estimate,
}

/// The result of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathKlReport {
    /// Data dimension.
    pub dim: usize,
    /// KL(q_{t_T} || N(0, I)), integrated as E[ln q_{t_T}(x) - ln N(x; 0, I)] (a small integrand).
    pub terminal_kl: Estimate,
    /// H(q_{t_0}).
    pub entropy_start: Estimate,
    /// H(q_{t_T}).
    pub entropy_end: Estimate,
    /// One row per family and T (families in the requested order, T ascending).
    pub rows: Vec<FamilyRow>,
    /// Route used for S_full.
    pub route: Route,
    /// Rule used ("lattice" or "qmc") and its error model.
    pub rule: String,
    /// What happened at beta-tilde's last step: "clipped", "early-stop", "not-degenerate" or "not-requested".
    pub beta_tilde_last_step: String,
    /// Every step's term per family and T (families in the requested order, then T, then
    /// i), when [`PathKlParams::per_step`] is set; empty otherwise.
    #[serde(default)]
    pub steps: Vec<StepRow>,
}

impl PathKlReport {
    /// The row for a family and T.
    #[must_use]
    pub fn get(&self, family: Family, steps: usize) -> Option<&FamilyRow> {
        self.rows
            .iter()
            .find(|r| r.family == family && r.steps == steps)
    }
}

/// `max(1, max_k lambda_max(Sigma_k) / lambda_min(Sigma_k))` over the data components.
///
/// # Errors
/// [`PathKlError::IllConditioned`] beyond [`MAX_CONDITION`].
fn max_condition(q0: &Mixture) -> Result<f64, PathKlError> {
    let mut kappa = 1.0f64;
    for (index, c) in q0.components().iter().enumerate() {
        let ev = c.eigenvalues();
        let condition = ev.max() / ev.min();
        if !matches!(
            condition.partial_cmp(&MAX_CONDITION),
            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
        ) {
            return Err(PathKlError::IllConditioned { index, condition });
        }
        kappa = kappa.max(condition);
    }
    Ok(kappa)
}

/// Computes S_fam(T) for every requested family and T, and the terminal KL.
///
/// # Arguments
/// * `q0` - the data distribution.
/// * `schedule` - the noise schedule; grids are built with `params.early_stop`.
/// * `steps` - the T values.
/// * `params` - families, route, remedy, rule.
/// * `progress` - called with (done, total) after each grid time is processed.
///
/// # Errors
/// Invalid schedule or T, lattice too large, route B in D > 3, beta-tilde degenerate
/// without remedy.
pub fn path_kl_sweep(
    q0: &Mixture,
    schedule: &Schedule,
    steps: &[usize],
    params: &PathKlParams,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<PathKlReport, PathKlError> {
    if steps.is_empty() {
        return Err(PathKlError::NoSteps);
    }
    let grids: Vec<Grid> = steps
        .iter()
        .map(|&t| schedule.grid(t, params.early_stop))
        .collect::<Result<_, _>>()?;
    path_kl_grids(q0, &grids, params, progress)
}

/// As [`path_kl_sweep`], on explicit grids (any times; `params.early_stop` is not applied
/// again, the grids carry their own start). Grids that share a time share its expectations.
/// The terminal KL and the end entropies are those of the first grid.
///
/// # Errors
/// As [`path_kl_sweep`]; [`PathKlError::NoSteps`] if `grids` is empty.
pub fn path_kl_grids(
    q0: &Mixture,
    grids: &[Grid],
    params: &PathKlParams,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<PathKlReport, PathKlError> {
    if grids.is_empty() {
        return Err(PathKlError::NoSteps);
    }
    let d = q0.dim();
    if params.route == Route::B && d > 3 {
        return Err(PathKlError::RouteBDimension { dim: d });
    }
    max_condition(q0)?;
    let ddim = params.kernel == KernelKind::Ddim;
    if ddim {
        if let Some(f) = params
            .families
            .iter()
            .find(|f| matches!(f, Family::Beta | Family::BetaTilde))
        {
            return Err(PathKlError::DdimFamily { family: f.name() });
        }
        if params.early_stop != 0.0 {
            return Err(PathKlError::DdimEarlyStop(params.early_stop));
        }
    }
    let want_bt = params.families.contains(&Family::BetaTilde);
    let mut last_step = if want_bt {
        "not-degenerate"
    } else {
        "not-requested"
    }
    .to_string();
    let mut tasks: BTreeMap<u64, Task> = BTreeMap::new();
    let key = |l: f64| (-l).to_bits();
    for (g, grid) in grids.iter().enumerate() {
        for (ln, terminal) in [(grid.ln_abar[0], false), (grid.ln_abar[grid.steps()], true)] {
            let task = tasks.entry(key(ln)).or_insert(Task {
                ln_abar: ln,
                uses: Vec::new(),
                entropy: true,
                terminal,
            });
            task.entropy = true;
            task.terminal |= terminal;
        }
        for i in 1..=grid.steps() {
            // DDIM: the one jump (t_0, t_i) (module docs).
            let step = if ddim { grid.jump(i) } else { grid.step(i) };
            let beta_tilde = if want_bt {
                let oma_s = grid.one_minus_abar(i - 1);
                if oma_s > 0.0 {
                    Some(IsoScale::beta_tilde(
                        step.a2,
                        step.b,
                        oma_s,
                        grid.one_minus_abar(i),
                    ))
                } else {
                    match params.remedy {
                        BetaTildeRemedy::Clip => {
                            if grid.steps() < 2 {
                                return Err(PathKlError::ClipNeedsTwoSteps);
                            }
                            let next = grid.step(i + 1);
                            let sigma2 =
                                next.b * grid.one_minus_abar(i) / grid.one_minus_abar(i + 1);
                            last_step = "clipped".to_string();
                            Some(IsoScale::from_variance(sigma2, step.a2, step.b))
                        }
                        BetaTildeRemedy::EarlyStop => return Err(PathKlError::DegenerateLastStep),
                    }
                }
            } else {
                None
            };
            let ln_t = grid.ln_abar[i];
            // DDIM's route A needs H(q_t) at every step's t.
            let task = tasks.entry(key(ln_t)).or_insert(Task {
                ln_abar: ln_t,
                uses: Vec::new(),
                entropy: false,
                terminal: false,
            });
            // Per-step terms of route A need it at every time too.
            task.entropy |= ddim || params.per_step;
            task.uses.push(Use {
                grid: g,
                step,
                beta_tilde,
            });
        }
    }
    if want_bt && params.early_stop > 0.0 && last_step == "not-degenerate" {
        last_step = "early-stop".to_string();
    }
    let tasks: Vec<Task> = tasks.into_values().collect();
    let total = tasks.len();
    let done = AtomicUsize::new(0);
    let [n1, n2] = params.gh_orders;
    // The inner Gauss-Hermite rules serve route B only (D <= 3, checked above).
    let gh = if params.route == Route::B {
        let rule = |n: usize| {
            gauss_hermite_tensor(n, d).ok_or(PathKlError::InnerRuleTooLarge { order: n, dim: d })
        };
        [rule(n1)?, rule(n2)?]
    } else {
        [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())]
    };
    let results: Vec<TaskResult> = tasks
        .par_iter()
        .map_init(nodes::Scratch::new, |scratch, t| {
            let r = run_task(q0, t, params, &gh, scratch);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            r
        })
        .collect::<Result<_, _>>()?;
    // Fixed-order assembly (identical for any thread count).
    // The rule's shape without building it again: lattices have 3 nested slots, QMC one per shift.
    let (model, slots) = if uses_lattice(params, d) {
        (ErrorModel::Refinement, 3)
    } else {
        (ErrorModel::Replicates, params.qmc.shifts.max(2))
    };
    // H(q_t) per slot by time, looked up once per grid end (and per step with `per_step`).
    let entropies: BTreeMap<u64, &Vec<f64>> = results
        .iter()
        .filter_map(|r| r.entropy.as_ref().map(|h| (key(r.ln_abar), h)))
        .collect();
    let entropy_at = |ln: f64| -> Vec<f64> {
        entropies
            .get(&key(ln))
            .map_or_else(|| vec![f64::NAN; slots], |h| (*h).clone())
    };
    let nf = params.families.len();
    let mut full: Vec<Vec<NeumaierSum>> = vec![vec![NeumaierSum::new(); slots]; grids.len()];
    let mut abs = vec![0.0; grids.len()];
    let mut inner = vec![0.0; grids.len()];
    let mut off: Vec<Vec<Vec<NeumaierSum>>> =
        vec![vec![vec![NeumaierSum::new(); slots]; nf]; grids.len()];
    let mut off_abs = vec![vec![0.0; nf]; grids.len()];
    // DDIM route A: every step adds its own telescoping terms
    // (D/2) ln(abar_0 / abar_t) + H(q_t) - H(q_0) (module docs).
    let ddim_a = ddim && params.route == Route::A;
    let h_zero = entropy_at(grids[0].ln_abar[0]);
    for r in &results {
        let jump = if ddim_a { r.entropy.as_deref() } else { None };
        for u in &r.uses {
            let half_ln = 0.5 * d as f64 * (grids[u.grid].ln_abar[0] - r.ln_abar);
            for s in 0..slots {
                full[u.grid][s].add(u.full[s]);
                if let Some(h) = jump {
                    full[u.grid][s].add(half_ln + h[s] - h_zero[s]);
                }
                for f in 0..nf {
                    off[u.grid][f][s].add(u.offsets[f][s]);
                }
            }
            abs[u.grid] += u.full_abs;
            for (a, v) in off_abs[u.grid].iter_mut().zip(&u.offsets_abs) {
                *a += v;
            }
            if let Some(h) = jump {
                abs[u.grid] += half_ln.abs() + h[slots - 1].abs() + h_zero[slots - 1].abs();
            }
            inner[u.grid] += u.inner_err;
        }
    }
    let steps_rows = if params.per_step {
        step_rows(
            d,
            grids,
            &tasks,
            &results,
            params,
            model,
            slots,
            &entropy_at,
        )
    } else {
        Vec::new()
    };
    let mut rows = Vec::new();
    let t_last = grids[0].ln_abar[grids[0].steps()];
    let h_end = entropy_at(t_last);
    let h_start = entropy_at(grids[0].ln_abar[0]);
    for (f, fam) in params.families.iter().enumerate() {
        for (g, grid) in grids.iter().enumerate() {
            let l0 = grid.ln_abar[0];
            let lt = grid.ln_abar[grid.steps()];
            let (h0, ht) = (entropy_at(l0), entropy_at(lt));
            let mut per_slot = Vec::with_capacity(slots);
            for s in 0..slots {
                let sf = match params.route {
                    Route::A if !ddim => {
                        full[g][s].value() + 0.5 * d as f64 * (l0 - lt) + ht[s] - h0[s]
                    }
                    _ => full[g][s].value(),
                };
                per_slot.push(sf + off[g][f][s].value());
            }
            let mut est = model.combine(&per_slot);
            let floor_terms = match params.route {
                Route::A if !ddim => {
                    abs[g]
                        + ht[slots - 1].abs()
                        + h0[slots - 1].abs()
                        + 0.5 * d as f64 * (l0 - lt).abs()
                }
                _ => abs[g],
            };
            est.err += ROUNDOFF_FLOOR * (floor_terms + off_abs[g][f]) + inner[g];
            rows.push(FamilyRow {
                family: *fam,
                steps: grid.steps(),
                s: est,
            });
        }
    }
    let (term_slots, term_abs) = results
        .iter()
        .find(|r| key(r.ln_abar) == key(t_last))
        .and_then(|r| r.kl_std.clone())
        .unwrap_or_else(|| (vec![f64::NAN; slots], 0.0));
    let mut terminal_kl = model.combine(&term_slots);
    terminal_kl.err += ROUNDOFF_FLOOR * term_abs;
    let rule = match model {
        ErrorModel::Refinement => "lattice (trapezoid, nested h/2h refinement)".to_string(),
        ErrorModel::Replicates => format!(
            "qmc (R_D Kronecker, {} points/component, {} random shifts, err = 2 s.e.)",
            params.qmc.points, params.qmc.shifts
        ),
    };
    Ok(PathKlReport {
        dim: d,
        terminal_kl,
        entropy_start: model.combine(&h_start),
        entropy_end: model.combine(&h_end),
        rows,
        route: params.route,
        rule,
        beta_tilde_last_step: last_step,
        steps: steps_rows,
    })
}

/// Every step's term per family ([`StepRow`]), from the per-time results: families in
/// `params` order, then grids, then steps (DDIM: the jump from t_0, so `time_s = t_0`).
#[allow(clippy::too_many_arguments)]
fn step_rows(
    dim: usize,
    grids: &[Grid],
    tasks: &[Task],
    results: &[TaskResult],
    params: &PathKlParams,
    model: ErrorModel,
    slots: usize,
    entropy_at: &dyn Fn(f64) -> Vec<f64>,
) -> Vec<StepRow> {
    let route_a = params.route == Route::A;
    // (grid, index, ln abar_t, the use's result), then in grid and step order.
    let mut uses: Vec<(usize, usize, f64, &task::UseResult, Step)> = Vec::new();
    // Results come in task order, and a task's results in its uses' order.
    for (t, r) in tasks.iter().zip(results) {
        for (u, res) in t.uses.iter().zip(&r.uses) {
            uses.push((u.grid, u.step.t, r.ln_abar, res, u.step));
        }
    }
    uses.sort_by_key(|&(g, i, ..)| (g, i));
    // The S_full part of each step (the same for every family): its slots, its estimate and
    // the size of its parts for the round-off floor.
    let fulls: Vec<(Vec<f64>, Estimate, f64)> = uses
        .iter()
        .map(|&(_, _, ln_t, u, step)| {
            let half_ln = 0.5 * dim as f64 * (step.ln_abar_s - ln_t);
            let (slots_full, telescoped) = if route_a {
                let (h_s, h_t) = (entropy_at(step.ln_abar_s), entropy_at(ln_t));
                (
                    (0..slots)
                        .map(|k| u.full[k] + half_ln + h_t[k] - h_s[k])
                        .collect(),
                    half_ln.abs() + h_t[slots - 1].abs() + h_s[slots - 1].abs(),
                )
            } else {
                (u.full.clone(), 0.0)
            };
            let mut full = model.combine(&slots_full);
            full.err += ROUNDOFF_FLOOR * (u.full_abs + telescoped) + u.inner_err;
            (slots_full, full, u.full_abs + telescoped)
        })
        .collect();
    let mut rows = Vec::with_capacity(params.families.len() * uses.len());
    for (f, fam) in params.families.iter().enumerate() {
        for (&(g, i, ln_t, u, step), (full_slots, full, full_floor)) in uses.iter().zip(&fulls) {
            let offset_slots = &u.offsets[f];
            let term_slots: Vec<f64> = full_slots
                .iter()
                .zip(offset_slots)
                .map(|(a, b)| a + b)
                .collect();
            let mut offset = model.combine(offset_slots);
            // A sum of non-negative node values (plus the isotropic families' cancelled parts).
            offset.err += ROUNDOFF_FLOOR * (offset.value.abs() + u.offsets_abs[f]);
            let mut term = model.combine(&term_slots);
            term.err += ROUNDOFF_FLOOR * (full_floor + u.offsets_abs[f]) + u.inner_err;
            rows.push(StepRow {
                family: *fam,
                steps: grids[g].steps(),
                index: i,
                time_s: grids[g].times[step.s],
                time_t: grids[g].times[i],
                ln_abar_s: step.ln_abar_s,
                ln_abar_t: ln_t,
                term,
                full: *full,
                offset,
            });
        }
    }
    rows
}
