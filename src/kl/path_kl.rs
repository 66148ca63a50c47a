//! The exact path KL between the true reverse chain of a Gaussian-mixture forward
//! process and Gaussian model chains N(m(x_t), Sigma_fam(x_t)) (DESIGN section 4).
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
//! **DDIM chains** ([`KernelKind::Ddim`], OCM-DDIM of DESIGN section 3). The model kernel
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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::data::mixture::{Mixture, MixtureError};
use crate::kernel::family::{
    diag_offset, half_ln_det_i_plus_bh, iso_offset, sym_eigenvalues, BetaTildeRemedy, Family,
    IsoScale,
};
use crate::kernel::model::KernelKind;
use crate::kernel::posterior::ReverseKernel;
use crate::numeric::NeumaierSum;
use crate::process::schedule::{Grid, Schedule, ScheduleError, Step};
use crate::quadrature::{
    for_each_node_with_mass, gauss_hermite_tensor, lattice, qmc, Cubature, ErrorModel, Estimate,
    LatticeParams, QmcParams,
};

/// Relative round-off floor added to every error estimate: 16 eps times the sum of the
/// absolute values of the terms that were added, where each route-A step term
/// `(1/2) sum_i ln(1 + b mu_i)` also counts with the error of its argument,
/// `sum_i |b mu_i| / |1 + b mu_i|`.
///
/// # Formula
/// ```text
/// err += 16 eps (sum_terms |term| + sum_nodes w sum_i |b mu_i| / |1 + b mu_i|)
/// ```
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

/// Errors of the path-KL computation.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum PathKlError {
    /// No T values were given.
    #[error("`steps`: give at least one T value")]
    NoSteps,
    /// A schedule error.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A mixture error.
    #[error(transparent)]
    Mixture(#[from] MixtureError),
    /// The lattice would be too large.
    #[error("quadrature: the lattice at ln abar = {time} would exceed {max_nodes} nodes (or the data span more than f64 resolves at that spacing); use the QMC rule (`--rule qmc`)")]
    LatticeTooLarge {
        /// The time (ln abar) where it happened.
        time: f64,
        /// The node limit.
        max_nodes: usize,
    },
    /// Route B is only offered in low dimension.
    #[error("route b needs D <= 3 (tensor Gauss-Hermite inner rule); the data have D = {dim}")]
    RouteBDimension {
        /// The data dimension.
        dim: usize,
    },
    /// The clip remedy needs a second step.
    #[error("beta-tilde with the `clip` remedy needs T >= 2 (the last step borrows the next step's variance)")]
    ClipNeedsTwoSteps,
    /// The beta-tilde last step is degenerate and no remedy applies.
    #[error("beta-tilde's last step is degenerate (abar_{{t_0}} = 1): choose the `clip` remedy or `early_stop` > 0")]
    DegenerateLastStep,
    /// A family without a DDIM covariance.
    #[error("family `{family}` under the DDIM kernel: Sigma_0 = 0 (plain DDIM is deterministic, its path KL infinite); use analytic, diag or full")]
    DdimFamily {
        /// The family.
        family: &'static str,
    },
    /// DDIM path KL with an early stop.
    #[error("`early_stop` must be 0 with the DDIM kernel (its x_0 is the data at t = 0), got {0}")]
    DdimEarlyStop(f64),
    /// Route B's tensor Gauss-Hermite rule has more than `usize::MAX` nodes.
    #[error("route b: an inner Gauss-Hermite rule of order {order} in D = {dim} has more nodes than fit in memory (`gh_orders`)")]
    InnerRuleTooLarge {
        /// The order per dimension.
        order: usize,
        /// The dimension.
        dim: usize,
    },
    /// A data component's covariance is too ill-conditioned for f64 (see [`MAX_CONDITION`]).
    #[error("`covariances[{index}]` has condition number {condition:.3e} > {MAX_CONDITION:e}: f64 cannot resolve the path KL's covariance formulas (their round-off grows like eps x condition); rescale or regularise that component")]
    IllConditioned {
        /// The component index.
        index: usize,
        /// Its condition number lambda_max / lambda_min.
        condition: f64,
    },
    /// A model covariance was not positive (should not happen for valid data).
    #[error("family `{family}`: covariance not positive at a quadrature node (t = {time})")]
    NonPositiveCovariance {
        /// The family.
        family: &'static str,
        /// The time.
        time: f64,
    },
}

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

/// One step (s, t) of one grid, attached to the time t it ends at.
#[derive(Clone, Debug)]
struct Use {
    grid: usize,
    step: Step,
    /// beta-tilde's isotropic scale (clipped if degenerate); None if not requested.
    beta_tilde: Option<IsoScale>,
}

#[derive(Clone, Debug)]
struct Task {
    ln_abar: f64,
    uses: Vec<Use>,
    entropy: bool,
    /// The grids' end time t_T: compute KL(q_t || N(0, I)) here.
    terminal: bool,
}

#[derive(Clone, Debug)]
struct UseResult {
    grid: usize,
    /// Route A: E[(1/2) sum ln(1 + b mu)]; route B: E[inner KL]; per slot.
    full: Vec<f64>,
    /// Sum of |terms| for the round-off floor.
    full_abs: f64,
    /// Route B inner-rule error estimate (|order 2 - order 1|, fine slot).
    inner_err: f64,
    /// Per requested family (in params order), per slot.
    offsets: Vec<Vec<f64>>,
}

#[derive(Clone, Debug)]
struct TaskResult {
    ln_abar: f64,
    entropy: Option<Vec<f64>>,
    /// Per slot E[ln q_t(x) - ln N(x; 0, I)] = KL(q_t || N(0, I)), with the sum of |terms|
    /// (at the terminal time only).
    kl_std: Option<(Vec<f64>, f64)>,
    uses: Vec<UseResult>,
}

/// Per-node values at one time.
struct Nodes {
    slots: usize,
    w: Vec<f64>,
    x: Vec<f64>,
    lnq: Vec<f64>,
    mu: Vec<f64>,
    h: Vec<f64>,
    resp: Vec<f64>,
}

/// Whether the lattice (else QMC) is used in dimension `d`.
fn uses_lattice(params: &PathKlParams, d: usize) -> bool {
    match params.rule {
        RuleChoice::Auto => d <= 2,
        RuleChoice::Lattice => true,
        RuleChoice::Qmc => false,
    }
}

fn build_rule(q: &Mixture, params: &PathKlParams, ln_abar: f64) -> Result<Cubature, PathKlError> {
    if uses_lattice(params, q.dim()) {
        lattice(q, &params.lattice).ok_or(PathKlError::LatticeTooLarge {
            time: ln_abar,
            max_nodes: params.lattice.max_nodes,
        })
    } else {
        Ok(qmc(q, &params.qmc))
    }
}

/// Evaluates ln q, the Hessian eigenvalues and entries at the nodes that carry mass.
fn eval_nodes(q: &Mixture, rule: &Cubature, keep_resp: bool) -> Nodes {
    let d = q.dim();
    let mut out = Nodes {
        slots: rule.slots,
        w: Vec::new(),
        x: Vec::new(),
        lnq: Vec::new(),
        mu: Vec::new(),
        h: Vec::new(),
        resp: Vec::new(),
    };
    for_each_node_with_mass(q, rule, |x, w, lnq, ws| {
        out.w.extend_from_slice(w);
        out.x.extend_from_slice(x);
        out.lnq.push(lnq);
        out.mu.extend(sym_eigenvalues(&ws.hessian, d));
        out.h.extend_from_slice(&ws.hessian);
        if keep_resp {
            out.resp.extend_from_slice(&ws.resp);
        }
    });
    out
}

impl Nodes {
    fn len(&self) -> usize {
        self.lnq.len()
    }

    /// Per-slot sums of w_i f(i), compensated.
    fn expect(&self, mut f: impl FnMut(usize) -> f64) -> (Vec<f64>, f64) {
        let mut sums = vec![NeumaierSum::new(); self.slots];
        let mut abs = 0.0;
        for i in 0..self.len() {
            let v = f(i);
            for (r, s) in sums.iter_mut().enumerate() {
                let w = self.w[i * self.slots + r];
                if w != 0.0 {
                    s.add(w * v);
                }
            }
            abs += self.w[i * self.slots + self.slots - 1].abs() * v.abs();
        }
        (sums.iter().map(NeumaierSum::value).collect(), abs)
    }
}

/// Small dense Cholesky of a column-major D x D SPD matrix; returns (L, ln det) or None.
fn cholesky_flat(a: &[f64], d: usize) -> Option<(Vec<f64>, f64)> {
    let mut l = vec![0.0; d * d];
    let mut ln_det = 0.0;
    for j in 0..d {
        let mut s = a[j * d + j];
        for p in 0..j {
            s -= l[p * d + j] * l[p * d + j];
        }
        if s <= 0.0 {
            return None;
        }
        let ljj = s.sqrt();
        l[j * d + j] = ljj;
        ln_det += 2.0 * ljj.ln();
        for i in j + 1..d {
            let mut s = a[j * d + i];
            for p in 0..j {
                s -= l[p * d + i] * l[p * d + j];
            }
            l[j * d + i] = s / ljj;
        }
    }
    Some((l, ln_det))
}

/// Precomputed pieces of route B for one step.
struct InnerRule<'a> {
    kernel: ReverseKernel,
    /// S_k^{-1}, flat per component.
    s_inv: Vec<Vec<f64>>,
    /// Cholesky factors of S_k, flat column-major per component.
    s_chol: Vec<Vec<f64>>,
    s_ln_det: Vec<f64>,
    rules: [&'a (Vec<f64>, Vec<f64>); 2],
}

/// (y - m)^T S^{-1} (y - m) with S^{-1} given flat column-major.
fn quad_form(s_inv: &[f64], y: &[f64], m: &[f64], r: &mut [f64]) -> f64 {
    let d = y.len();
    for i in 0..d {
        r[i] = y[i] - m[i];
    }
    let mut quad = 0.0;
    for a in 0..d {
        let mut s = 0.0;
        for b in 0..d {
            s += s_inv[b * d + a] * r[b];
        }
        quad += r[a] * s;
    }
    quad
}

impl InnerRule<'_> {
    /// Inner KL(q(.|x) || N(m, C)) at one node for both inner orders, by a tensor
    /// Gauss-Hermite rule under each posterior component:
    /// sum_k w_k E_{N(m_k, S_k)}[ln q(y | x) - ln N(y; m, C)] (components with
    /// w_k < 1e-16 max w are left out of the outer sum; all enter q(y | x)).
    fn kl(&self, x: &[f64], resp: &[f64], d: usize) -> Option<[f64; 2]> {
        let post = self.kernel.at_with_weights(x, resp.to_vec());
        let mom = post.moments();
        let c_inv: Vec<f64> = mom.cov.clone().try_inverse()?.iter().copied().collect();
        let c: Vec<f64> = mom.cov.iter().copied().collect();
        let (_, ln_det_c) = cholesky_flat(&c, d)?;
        let wmax = resp.iter().copied().fold(0.0, f64::max);
        let inner: Vec<usize> = (0..resp.len()).filter(|&k| resp[k] > 1e-300).collect();
        let outer: Vec<usize> = inner
            .iter()
            .copied()
            .filter(|&k| resp[k] > 1e-16 * wmax)
            .collect();
        let mean: Vec<f64> = mom.mean.iter().copied().collect();
        let means: Vec<Vec<f64>> = post
            .means
            .iter()
            .map(|m| m.iter().copied().collect())
            .collect();
        let mut out = [0.0; 2];
        let mut y = vec![0.0; d];
        let mut r = vec![0.0; d];
        let mut terms = vec![0.0; inner.len()];
        for (o, rule) in out.iter_mut().zip(self.rules) {
            let (nodes, weights) = rule;
            let mut acc = NeumaierSum::new();
            for &k in &outer {
                let l = &self.s_chol[k];
                for (j, w) in weights.iter().enumerate() {
                    let z = &nodes[j * d..(j + 1) * d];
                    for i in 0..d {
                        let mut s = means[k][i];
                        for p in 0..=i {
                            s += l[p * d + i] * z[p];
                        }
                        y[i] = s;
                    }
                    for (t, &j2) in terms.iter_mut().zip(&inner) {
                        let quad = quad_form(&self.s_inv[j2], &y, &means[j2], &mut r);
                        *t = resp[j2].ln() - 0.5 * (self.s_ln_det[j2] + quad);
                    }
                    let ln_q = crate::numeric::log_sum_exp(&terms);
                    let ln_n = -0.5 * (ln_det_c + quad_form(&c_inv, &y, &mean, &mut r));
                    acc.add(resp[k] * w * (ln_q - ln_n));
                }
            }
            *o = acc.value();
        }
        Some(out)
    }
}

/// Route B inner KL at every node, for both inner Gauss-Hermite orders.
fn route_b_values(
    q0: &Mixture,
    q: &Mixture,
    nodes: &Nodes,
    step: Step,
    gh: &[(Vec<f64>, Vec<f64>); 2],
    time: f64,
) -> Result<Vec<[f64; 2]>, PathKlError> {
    let d = q.dim();
    let k = q.len();
    let bad = PathKlError::NonPositiveCovariance {
        family: "full",
        time,
    };
    let kernel = ReverseKernel::new(q0, step)?;
    let mut s_inv = Vec::new();
    let mut s_ln_det = Vec::new();
    let mut s_chol = Vec::new();
    let post0 = kernel.at_with_weights(&nodes.x[0..d], vec![1.0 / k as f64; k]);
    for s in &post0.covs {
        let flat: Vec<f64> = s.iter().copied().collect();
        let (l, ld) = cholesky_flat(&flat, d).ok_or(bad.clone())?;
        s_chol.push(l);
        let inv = s.clone().try_inverse().ok_or(bad.clone())?;
        s_inv.push(inv.iter().copied().collect());
        s_ln_det.push(ld);
    }
    let inner = InnerRule {
        kernel,
        s_inv,
        s_chol,
        s_ln_det,
        rules: [&gh[0], &gh[1]],
    };
    let vals: Vec<[f64; 2]> = (0..nodes.len())
        .map(|i| {
            inner
                .kl(
                    &nodes.x[i * d..(i + 1) * d],
                    &nodes.resp[i * k..(i + 1) * k],
                    d,
                )
                .unwrap_or([f64::NAN; 2])
        })
        .collect();
    if vals.iter().any(|v| !v[1].is_finite()) {
        return Err(bad);
    }
    Ok(vals)
}

fn run_task(
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
    let grids: Vec<Grid> = steps
        .iter()
        .map(|&t| schedule.grid(t, params.early_stop))
        .collect::<Result<_, _>>()?;
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
            task.entropy |= ddim;
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
        .map(|t| {
            let r = run_task(q0, t, params, &gh);
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
    let entropy_at = |ln: f64| -> Vec<f64> {
        results
            .iter()
            .find(|r| key(r.ln_abar) == key(ln))
            .and_then(|r| r.entropy.clone())
            .unwrap_or_else(|| vec![f64::NAN; slots])
    };
    let nf = params.families.len();
    let mut full: Vec<Vec<NeumaierSum>> = vec![vec![NeumaierSum::new(); slots]; grids.len()];
    let mut abs = vec![0.0; grids.len()];
    let mut inner = vec![0.0; grids.len()];
    let mut off: Vec<Vec<Vec<NeumaierSum>>> =
        vec![vec![vec![NeumaierSum::new(); slots]; nf]; grids.len()];
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
            if let Some(h) = jump {
                abs[u.grid] += half_ln.abs() + h[slots - 1].abs() + h_zero[slots - 1].abs();
            }
            inner[u.grid] += u.inner_err;
        }
    }
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
            est.err += ROUNDOFF_FLOOR * floor_terms + inner[g];
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
    })
}
