//! The exact path KL of model chains (a mean from the exact or a learned score, a covariance
//! from a method), split into the Gaussian part, a mean part and a covariance part, and the
//! error of each method's diagonal covariance against the optimal `diag C`.
//!
//! # Formula
//! For a Gaussian model kernel `N(mu, Sigma)` the cross-entropy of `q(. | x_t)` depends on it only
//! through its mean `m` and covariance `C`, so
//! ```text
//! KL(q(. | x_t) || N(mu, Sigma)) = KL(q(. | x_t) || N(m, C)) + KL(N(m, C) || N(mu, Sigma)),
//! path_kl(T) = S_full(T) + sum_steps E_{q_t}[mean part] + sum_steps E_{q_t}[cov part]
//! ```
//! (terminal term excluded), with `S_full` from [`crate::kl::path_kl::path_kl_sweep`] and the parts
//! from [`crate::kernel::model::kl_parts`] at each node of a rule over `q_t` ([`EvalRule`]: the
//! nested lattice in `D <= 2`, or randomised QMC with its own shifts at every time; the
//! networks are evaluated in batches at all nodes of a time first). Every expectation carries
//! the rule's error estimate; the reported `err` adds those of `S_full` and of the parts.
//!
//! Methods (`X` is the model's Hessian coordinate, [`crate::kernel::model`]; every learned or
//! estimated `X` is clipped to [`h_bounds`], the samplers' Analytic-DPM range):
//!
//! | method | `X` |
//! |---|---|
//! | `beta`, `beta-tilde`, `analytic`, `diag`, `full` | as `path-kl` (`beta-tilde` with the `clip` remedy at a last step to the data); `analytic` uses `E tr H` for the exact score, `-E ||s_theta||^2` for a learned one (Analytic-DPM) |
//! | `hutchinson-M` | `(1/M) sum_m v_m .* (H v_m)` (`J^T v_m` for a learned score), expected over the probes exactly in `D = 2` (`v_1 v_2` is the only random quantity), by one probe set per node beyond |
//! | `ocm`, `sn`, `npr`, `iddpm` | the head's `h` ([`super::heads`]) |
//! | `full-jt`, `full-j`, `full-sym` | the learned score's Jacobian made symmetric from the upper triangle of `J` (what reverse-mode products `J^T v` see: the lower triangle of `J^T`), from its lower triangle (`J v`, forward mode), or `(J + J^T)/2`; eigenvalues clamped to the clip range (the samplers' Ritz clamp) |
//!
//! `diag` and `full` are the exact `diag C` and `C` (oracles) whatever the mean.

use candle_core::{Device, Tensor};
use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::conditioning::RowTimes;
use super::heads::{head_h, Head, HeadKind};
use super::score_net::ScoreNet;
use super::LearnedError;
use crate::data::mixture::Mixture;
use crate::kernel::family::{Family, IsoScale};
use crate::kernel::model::{clamp_eigenvalues, h_bounds, iddpm_h, kl_parts, KlParts, ModelCov};
use crate::kl::path_kl::{path_kl_sweep, PathKlParams, RuleChoice};
use crate::numeric::NeumaierSum;
use crate::process::schedule::{Grid, Schedule, Step};
use crate::quadrature::{
    for_each_node_with_mass, lattice, qmc, ErrorModel, Estimate, LatticeParams, QmcParams,
};
use crate::sampler::KernelKind;
use crate::tensor::host_flat;

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
    /// [`LearnedError::UnknownMethod`]; [`LearnedError::InvalidParameter`] (`M`) for `M = 0`.
    pub fn from_name(name: &str) -> Result<Self, LearnedError> {
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
        if let Some(rest) = name.strip_prefix("hutchinson-") {
            let m: usize = rest
                .parse()
                .map_err(|_| LearnedError::UnknownMethod(name.to_string()))?;
            if m == 0 {
                return Err(LearnedError::InvalidParameter {
                    field: "M",
                    reason: format!("`{name}`: the number of probes must be >= 1"),
                });
            }
            return Ok(Self::Hutchinson(m));
        }
        Err(LearnedError::UnknownMethod(name.to_string()))
    }

    /// Parses a comma list (duplicates removed, order kept).
    ///
    /// # Errors
    /// As [`Self::from_name`]; an empty list.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, LearnedError> {
        let mut out = Vec::new();
        for n in list.split(',').filter(|s| !s.trim().is_empty()) {
            let m = Self::from_name(n)?;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if out.is_empty() {
            return Err(LearnedError::UnknownMethod(list.to_string()));
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

    fn is_jacobian_full(&self) -> bool {
        matches!(self, Self::FullJt | Self::FullJ | Self::FullSym)
    }
}

/// Settings of [`evaluate_chains`].
#[derive(Clone, Debug, PartialEq)]
pub struct EvalParams {
    /// The schedule.
    pub schedule: Schedule,
    /// The T values.
    pub steps: Vec<usize>,
    /// Early stop: every grid starts at `t_0 = delta` (0: at the data), as in `path-kl`.
    pub early_stop: f64,
    /// The methods.
    pub methods: Vec<Method>,
    /// The rule of the expectations of the mean and covariance parts.
    pub rule: EvalRule,
    /// The lattice of `S_full` (D <= 2) and of [`EvalRule::Lattice`].
    pub lattice: LatticeParams,
    /// Randomised-QMC nodes per time of [`EvalRule::Qmc`] (split over the components and
    /// `qmc.shifts` replicates; each time gets its own shifts), for the times of the finest
    /// grid; a time whose coarsest grid has `T_min` steps gets `min(32, T_max / T_min)` times
    /// more, so that every T's sum rests on a comparable number of node-steps. The curves use
    /// 32 times as many.
    pub qmc_nodes: usize,
    /// QMC parameters (`S_full` in D > 2; the shifts and seed of [`EvalRule::Qmc`]).
    pub qmc: QmcParams,
    /// Seed (probes and draws in D > 2).
    pub seed: u64,
    /// The data range of the clip.
    pub clip_range: Option<(f64, f64)>,
    /// Number of times of the covariance-error and asymmetry curves.
    pub curve_times: usize,
    /// The grid whose one-step kernels the covariance error is measured on.
    pub curve_grid: usize,
    /// Rows per network batch.
    pub batch: usize,
    /// The chains' kernel: DDPM ancestral, or OCM-DDIM, whose step (s, t) is the one jump
    /// (0, t) seen through an affine map (see [`crate::kl::path_kl`]): the rows are then
    /// `S^DDIM_full(T)` plus the one-jump mean and covariance parts summed over the steps, and
    /// the curves are not computed.
    pub kernel: KernelKind,
}

impl Default for EvalParams {
    fn default() -> Self {
        Self {
            schedule: Schedule::vp_linear(),
            steps: vec![5, 10, 25, 50, 100, 200, 1000],
            early_stop: 0.0,
            methods: Vec::new(),
            // h = 0.25 sd: coarser lattices gave refinement error estimates that missed the
            // true error against path-kl's h = 0.175 (by 20x on mog40 at h = 0.35).
            lattice: LatticeParams {
                h_frac: 0.25,
                ..LatticeParams::default()
            },
            rule: EvalRule::Qmc,
            qmc_nodes: 256,
            qmc: QmcParams {
                points: 256,
                shifts: 4,
                ..QmcParams::default()
            },
            seed: 0,
            clip_range: None,
            curve_times: 24,
            curve_grid: 1000,
            batch: 16_384,
            kernel: KernelKind::Ddpm,
        }
    }
}

/// The rule of the expectations over `q_t` of the mean and covariance parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalRule {
    /// The nested trapezoid lattice (D <= 2; spectrally accurate, a network evaluation at
    /// every node that carries mass: tens of thousands per time).
    Lattice,
    /// Randomised QMC (R_D Kronecker points per component, random shifts as replicates,
    /// err = 2 s.e.): about a thousand nodes per time, any D.
    Qmc,
}

/// The learned models of an evaluation.
#[derive(Clone, Debug, Default)]
pub struct EvalModels<'a> {
    /// The learned score (`None`: the exact score is the mean).
    pub score: Option<&'a ScoreNet>,
    /// The covariance heads (one per kind at most).
    pub heads: Vec<&'a Head>,
}

/// One path-KL result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// The method.
    pub method: String,
    /// T.
    pub steps: usize,
    /// `S_full(T) + mean part + cov part` (`+inf` if some kernel is degenerate).
    pub path_kl: Estimate,
    /// `sum_steps E[(1/2)(m - mu)^T Sigma^-1 (m - mu)]`.
    pub mean_part: Estimate,
    /// `sum_steps E[KL(N(m, C) || N(m, Sigma))]`.
    pub cov_part: Estimate,
    /// `S_full(T)`.
    pub s_full: Estimate,
}

/// One covariance-error point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CovErrorRow {
    /// The method.
    pub method: String,
    /// The schedule time `t` (a node of the `curve_grid`-step grid).
    pub t: f64,
    /// `ln abar_t`.
    pub ln_abar: f64,
    /// `E_{q_t}[(1/D) ||diag Sigma(x_t) - diag C(x_t)||^2]` of the one-step kernel ending at `t`.
    pub mse: f64,
    /// The same relative to `E_{q_t}[(1/D) ||diag C||^2]`.
    pub rel_mse: f64,
}

/// The asymmetry of the learned score's Jacobian at one time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JAsymmetryRow {
    /// The schedule time.
    pub t: f64,
    /// `ln abar_t`.
    pub ln_abar: f64,
    /// `E_{q_t}[||J - J^T||_F / ||J||_F]`.
    pub mean_ratio: f64,
    /// `sqrt(E ||J - J^T||_F^2 / E ||J||_F^2)`.
    pub rms_ratio: f64,
    /// `sqrt(E ||J - H||_F^2 / E ||H||_F^2)`: the Jacobian's error against the exact Hessian.
    pub rel_err_vs_h: f64,
}

/// What [`evaluate_chains`] computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// One row per method and T (methods in the requested order).
    pub rows: Vec<EvalRow>,
    /// Covariance errors per diagonal method and time.
    pub cov_error: Vec<CovErrorRow>,
    /// The learned Jacobian's asymmetry per time (empty for the exact score).
    pub j_asymmetry: Vec<JAsymmetryRow>,
    /// `KL(q_{t_T} || N(0, I))` (not included in `path_kl`).
    pub terminal_kl: Estimate,
    /// The rule over `q_t`.
    pub rule: String,
}

/// A small `f64` buffer on the stack for `D <= 8` (the per-node loops run millions of times).
enum Buf {
    Small([f64; 8], usize),
    Big(Vec<f64>),
}

impl Buf {
    fn from_fn(d: usize, f: impl Fn(usize) -> f64) -> Self {
        if d <= 8 {
            let mut a = [0.0; 8];
            for (i, v) in a.iter_mut().take(d).enumerate() {
                *v = f(i);
            }
            Buf::Small(a, d)
        } else {
            Buf::Big((0..d).map(f).collect())
        }
    }
}

impl std::ops::Deref for Buf {
    type Target = [f64];
    fn deref(&self) -> &[f64] {
        match self {
            Buf::Small(a, d) => &a[..*d],
            Buf::Big(v) => v,
        }
    }
}

/// Node values at one time.
struct NodeSet {
    slots: usize,
    d: usize,
    w: Vec<f64>,
    x: Vec<f64>,
    s: Vec<f64>,
    h: Vec<f64>,
    st: Option<Vec<f64>>,
    /// Learned Jacobian, column-major per node: `J_ij` at `n d^2 + j d + i`.
    jac: Option<Vec<f64>>,
    heads: Vec<(HeadKind, Vec<f64>)>,
}

impl NodeSet {
    fn len(&self) -> usize {
        self.x.len() / self.d.max(1)
    }
    fn node_h(&self, i: usize) -> &[f64] {
        &self.h[i * self.d * self.d..(i + 1) * self.d * self.d]
    }
    fn score(&self, i: usize) -> &[f64] {
        let d = self.d;
        match &self.st {
            Some(st) => &st[i * d..(i + 1) * d],
            None => &self.s[i * d..(i + 1) * d],
        }
    }
    fn delta(&self, i: usize) -> Buf {
        let d = self.d;
        match &self.st {
            Some(st) => Buf::from_fn(d, |j| self.s[i * d + j] - st[i * d + j]),
            None => Buf::from_fn(d, |_| 0.0),
        }
    }
    /// The model's "Hessian" the probes and Jacobian methods see: `J` (learned) or `H`.
    fn model_jac(&self, i: usize) -> &[f64] {
        match &self.jac {
            Some(j) => &j[i * self.d * self.d..(i + 1) * self.d * self.d],
            None => self.node_h(i),
        }
    }
    fn head(&self, k: HeadKind) -> Option<&[f64]> {
        self.heads
            .iter()
            .find(|(kk, _)| *kk == k)
            .map(|(_, v)| v.as_slice())
    }
    /// Per-slot expectations `sum_i w_i f(i)`.
    fn expect(&self, f: impl Fn(usize) -> f64) -> Vec<f64> {
        let mut sums = vec![NeumaierSum::new(); self.slots];
        for i in 0..self.len() {
            let v = f(i);
            for (r, s) in sums.iter_mut().enumerate() {
                let w = self.w[i * self.slots + r];
                if w != 0.0 {
                    s.add(w * v);
                }
            }
        }
        sums.iter().map(NeumaierSum::value).collect()
    }
}

/// What the networks must provide at a time.
#[derive(Clone, Copy)]
struct Needs {
    jac: bool,
}

/// The nodes of a rule over `q_t` with the exact score and Hessian at each (no network yet).
fn geometry(
    q0: &Mixture,
    ln_abar: f64,
    params: &EvalParams,
    qmc_nodes: usize,
    task: usize,
) -> Result<(NodeSet, ErrorModel), LearnedError> {
    let q = q0.marginal(ln_abar)?;
    let d = q.dim();
    let rule = match params.rule {
        EvalRule::Lattice if d <= 2 => {
            lattice(&q, &params.lattice).ok_or_else(|| LearnedError::InvalidParameter {
                field: "h_frac",
                reason: format!(
                    "the lattice at ln abar {ln_abar} would exceed {} nodes",
                    params.lattice.max_nodes
                ),
            })?
        }
        EvalRule::Lattice => {
            return Err(LearnedError::InvalidParameter {
                field: "rule",
                reason: format!("the lattice needs D <= 2 (D = {d}); use qmc"),
            })
        }
        EvalRule::Qmc => {
            let shifts = params.qmc.shifts.max(2);
            qmc(
                &q,
                &QmcParams {
                    points: qmc_nodes.div_ceil(q.len() * shifts).max(1),
                    shifts,
                    seed: params.qmc.seed ^ (task as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                },
            )
        }
    };
    let mut set = NodeSet {
        slots: rule.slots,
        d,
        w: Vec::new(),
        x: Vec::new(),
        s: Vec::new(),
        h: Vec::new(),
        st: None,
        jac: None,
        heads: Vec::new(),
    };
    for_each_node_with_mass(&q, &rule, |x, w, _, ws| {
        set.w.extend_from_slice(w);
        set.x.extend_from_slice(x);
        set.s.extend_from_slice(&ws.score);
        set.h.extend_from_slice(&ws.hessian);
    });
    Ok((set, rule.model))
}

/// Evaluates the networks at the nodes of all `sets` (set `k` at time `ln_abars[k]`) in
/// batches of `params.batch` rows that span several times (one time per row), and stores the
/// learned score, its Jacobian (if needed) and the heads' outputs in the sets.
fn fill_networks(
    sets: &mut [NodeSet],
    ln_abars: &[f64],
    params: &EvalParams,
    models: &EvalModels<'_>,
    needs: Needs,
    device: &Device,
) -> Result<(), LearnedError> {
    if models.score.is_none() && models.heads.is_empty() {
        return Ok(());
    }
    let d = sets.first().map_or(0, |s| s.d);
    let (mut xs, mut times) = (Vec::new(), Vec::new());
    for (set, &l) in sets.iter().zip(ln_abars) {
        xs.extend(set.x.iter().map(|&v| v as f32));
        times.extend(std::iter::repeat_n(l, set.len()));
    }
    let n = times.len();
    let mut st = Vec::new();
    let mut jac = Vec::new();
    let mut heads: Vec<Vec<f64>> = vec![Vec::new(); models.heads.len()];
    // The forward-mode Jacobian carries D tangents per row: keep D x rows bounded.
    let batch = if needs.jac && models.score.is_some() {
        (params.batch / d.max(1)).max(1)
    } else {
        params.batch.max(1)
    };
    for start in (0..n).step_by(batch) {
        let m = batch.min(n - start);
        let xt = Tensor::from_vec(xs[start * d..(start + m) * d].to_vec(), (m, d), device)?;
        let rt = RowTimes {
            ln_abar: times[start..start + m].to_vec(),
        };
        if let Some(net) = models.score {
            if needs.jac {
                let (sc, j) = net.score_and_jacobian(&xt, &rt)?;
                st.extend(host_flat(&sc)?);
                jac.extend(j);
            } else {
                st.extend(host_flat(&net.score(&xt, &rt)?)?);
            }
        }
        for (out, head) in heads.iter_mut().zip(&models.heads) {
            out.extend(host_flat(&head.output(&xt, &rt)?)?);
        }
    }
    let mut at = 0;
    for set in sets.iter_mut() {
        let (lo, hi) = (at, at + set.len());
        if models.score.is_some() {
            set.st = Some(st[lo * d..hi * d].to_vec());
            if needs.jac {
                set.jac = Some(jac[lo * d * d..hi * d * d].to_vec());
            }
        }
        set.heads = models
            .heads
            .iter()
            .zip(&heads)
            .map(|(h, out)| (h.kind(), out[lo * d..hi * d].to_vec()))
            .collect();
        at = hi;
    }
    Ok(())
}

/// The symmetric matrix made from the upper (`upper = true`) or lower triangle of `j`, or the
/// symmetric part (`None`).
fn symmetrised(j: &[f64], d: usize, upper: Option<bool>) -> Vec<f64> {
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
struct StepCtx {
    step: Step,
    /// beta-tilde's variance with the clip remedy when the step goes to the data.
    bt_clip: Option<f64>,
    /// Per-slot `E tr H / D` (exact score), for `analytic`.
    exact_trace: Vec<f64>,
    /// Per-slot `-E ||s_theta||^2 / D` (learned score; the exact trace otherwise).
    model_trace: Vec<f64>,
    bounds: (f64, f64),
}

impl StepCtx {
    fn new(nodes: &NodeSet, step: Step, bt_clip: Option<f64>, bounds: (f64, f64)) -> Self {
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
fn node_parts(
    nodes: &NodeSet,
    i: usize,
    method: Method,
    ctx: &StepCtx,
    slot: usize,
    seed: u64,
    exact: bool,
) -> Result<Option<KlParts>, LearnedError> {
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
                LearnedError::UnknownMethod(format!("{} (no head loaded)", kind.name()))
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
fn binomial_half(m: usize, k: usize) -> f64 {
    let mut ln = 0.0;
    for j in 0..k {
        ln += ((m - j) as f64).ln() - ((j + 1) as f64).ln();
    }
    (ln - m as f64 * std::f64::consts::LN_2).exp()
}

/// Per-slot accumulators of one (grid, method).
#[derive(Clone)]
struct Acc {
    mean: Vec<NeumaierSum>,
    cov: Vec<NeumaierSum>,
    infinite: bool,
}

impl Acc {
    fn new(slots: usize) -> Self {
        Self {
            mean: vec![NeumaierSum::new(); slots],
            cov: vec![NeumaierSum::new(); slots],
            infinite: false,
        }
    }
    fn values(v: &[NeumaierSum]) -> Vec<f64> {
        v.iter().map(NeumaierSum::value).collect()
    }
}

struct UseSpec {
    grid: usize,
    step: Step,
    bt_clip: Option<f64>,
}

/// One time's accumulators: per use (its grid), per method; the rule's error model and slots.
type TaskOut = (Vec<(usize, Vec<Acc>)>, ErrorModel, usize);

/// The two passes of [`evaluate_chains`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// No network: the covariance part of each method's network-free reference, on the
    /// accurate rule (the lattice in D <= 2).
    Reference,
    /// With the networks: the mean part and the covariance part minus the reference's, on
    /// the network rule (a control variate: the difference is small when the model is good).
    Network,
}

impl Method {
    /// The network-free method whose covariance part is the control variate of `self`:
    /// itself for the fixed and exact families (and exact-score Hutchinson), `diag` for the
    /// diagonal network methods, `full` for the Jacobian ones.
    fn reference(self, learned: bool) -> Method {
        match self {
            Method::Head(_) => Method::Family(Family::Diag),
            Method::Hutchinson(_) if learned => Method::Family(Family::Diag),
            Method::FullJt | Method::FullJ | Method::FullSym => Method::Family(Family::Full),
            m => m,
        }
    }

    /// Whether the method's parts involve a network (learned mean, head or learned Jacobian).
    fn uses_network(self, learned: bool) -> bool {
        learned || matches!(self, Method::Head(_)) || self.is_jacobian_full()
    }
}

/// One pass over the grid times: per grid, per method, per slot sums of the mean and
/// covariance terms of the pass.
#[allow(clippy::too_many_arguments)]
fn run_pass(
    q0: &Mixture,
    tasks: &[(f64, Vec<UseSpec>)],
    n_grids: usize,
    params: &EvalParams,
    pass_params: &EvalParams,
    models: &EvalModels<'_>,
    pass: Pass,
    nodes_for: &(dyn Fn(&[UseSpec]) -> usize + Sync),
    needs: Needs,
    device: &Device,
    progress: &(dyn Fn() + Sync),
) -> Result<(Vec<Vec<Acc>>, ErrorModel, usize), LearnedError> {
    let learned = models.score.is_some();
    let nm = params.methods.len();
    // The reference pass evaluates each distinct reference once (heads share `diag`).
    let first_with_ref: Vec<usize> = params
        .methods
        .iter()
        .map(|m| {
            params
                .methods
                .iter()
                .position(|o| o.reference(learned) == m.reference(learned))
                .unwrap_or(0)
        })
        .collect();
    let active: Vec<bool> = params
        .methods
        .iter()
        .enumerate()
        .map(|(mi, m)| match pass {
            Pass::Reference => first_with_ref[mi] == mi,
            Pass::Network => m.uses_network(learned),
        })
        .collect();
    // The network pass holds every time's nodes (QMC: about a thousand each) so that the
    // networks run in large batches; the reference pass streams (its lattices are large).
    let mut held: Vec<Option<(NodeSet, ErrorModel)>> = match pass {
        Pass::Network => {
            let built: Vec<(NodeSet, ErrorModel)> = tasks
                .par_iter()
                .enumerate()
                .map(|(ti, (l, uses))| geometry(q0, *l, pass_params, nodes_for(uses), ti))
                .collect::<Result<_, _>>()?;
            let (mut sets, models_of): (Vec<NodeSet>, Vec<ErrorModel>) = built.into_iter().unzip();
            let ls: Vec<f64> = tasks.iter().map(|t| t.0).collect();
            fill_networks(&mut sets, &ls, params, models, needs, device)?;
            sets.into_iter().zip(models_of).map(Some).collect()
        }
        Pass::Reference => tasks.iter().map(|_| None).collect(),
    };
    let held_ref: Vec<std::sync::Mutex<Option<(NodeSet, ErrorModel)>>> =
        held.drain(..).map(std::sync::Mutex::new).collect();
    let results: Vec<TaskOut> = tasks
        .par_iter()
        .enumerate()
        .map(|(ti, (ln_abar, uses))| -> Result<_, LearnedError> {
            let taken = held_ref[ti].lock().map(|mut g| g.take()).unwrap_or(None);
            let (nodes, model) = match taken {
                Some(v) => v,
                None => geometry(q0, *ln_abar, pass_params, nodes_for(uses), ti)?,
            };
            let mut accs = Vec::with_capacity(uses.len());
            for u in uses {
                let ctx = StepCtx::new(
                    &nodes,
                    u.step,
                    u.bt_clip,
                    h_bounds(*ln_abar, params.clip_range),
                );
                let mut per_method = Vec::with_capacity(nm);
                for (mi, &method) in params.methods.iter().enumerate() {
                    let mut acc = Acc::new(nodes.slots);
                    if !active[mi] {
                        per_method.push(acc);
                        continue;
                    }
                    let seed =
                        params.seed ^ ((ti * nm + mi) as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
                    let reference = method.reference(learned);
                    // analytic's scale differs per slot; every other method is evaluated once.
                    let per_slot = matches!(method, Method::Family(Family::Analytic));
                    let eval = |i: usize, r: usize| -> Result<Option<(f64, f64)>, LearnedError> {
                        let rp = node_parts(&nodes, i, reference, &ctx, r, seed, true)?;
                        Ok(match pass {
                            Pass::Reference => rp.map(|p| (0.0, p.cov)),
                            Pass::Network => {
                                let mp = node_parts(&nodes, i, method, &ctx, r, seed, false)?;
                                match (mp, rp) {
                                    (Some(m), Some(rr)) => Some((m.mean, m.cov - rr.cov)),
                                    _ => None,
                                }
                            }
                        })
                    };
                    for i in 0..nodes.len() {
                        let shared = if per_slot {
                            None
                        } else {
                            Some(eval(i, nodes.slots - 1)?)
                        };
                        for r in 0..nodes.slots {
                            let w = nodes.w[i * nodes.slots + r];
                            if w == 0.0 {
                                continue;
                            }
                            let v = match shared {
                                Some(v) => v,
                                None => eval(i, r)?,
                            };
                            match v {
                                Some((mean, cov)) => {
                                    acc.mean[r].add(w * mean);
                                    acc.cov[r].add(w * cov);
                                }
                                None => acc.infinite = true,
                            }
                        }
                    }
                    per_method.push(acc);
                }
                if pass == Pass::Reference {
                    for mi in 0..nm {
                        if first_with_ref[mi] != mi {
                            per_method[mi] = per_method[first_with_ref[mi]].clone();
                        }
                    }
                }
                accs.push((u.grid, per_method));
            }
            progress();
            Ok((accs, model, nodes.slots))
        })
        .collect::<Result<_, _>>()?;
    // Fixed-order assembly (identical for any thread count).
    let (model, slots) = results
        .first()
        .map(|r| (r.1, r.2))
        .unwrap_or((ErrorModel::Refinement, 3));
    let mut sums: Vec<Vec<Acc>> = vec![vec![Acc::new(slots); nm]; n_grids];
    for (accs, _, _) in &results {
        for (g, per_method) in accs {
            for (mi, a) in per_method.iter().enumerate() {
                let dst = &mut sums[*g][mi];
                for r in 0..slots {
                    dst.mean[r].add(a.mean[r].value());
                    dst.cov[r].add(a.cov[r].value());
                }
                dst.infinite |= a.infinite;
            }
        }
    }
    Ok((sums, model, slots))
}

/// Computes the path-KL rows, the covariance errors and (for a learned score) the Jacobian
/// asymmetry of the model chains `params.methods` with the mean of `models.score` (exact if
/// `None`), on the data `q0`.
///
/// Two passes over the grid times: the *reference* pass computes, without any network, the
/// covariance part of each method's network-free reference (the method itself for the fixed
/// and exact families, `diag` for the diagonal network methods, `full` for the Jacobian ones)
/// on the lattice (D <= 2; QMC beyond); the *network* pass computes, for the methods with a
/// network, the mean part and the difference of covariance parts to the reference on
/// [`EvalParams::rule`] (randomised QMC by default: a control variate, so the QMC error is that
/// of a small difference). Methods without a network are exact to the lattice's accuracy.
///
/// # Arguments
/// * `q0` - the data mixture.
/// * `models` - the learned score and heads the methods need.
/// * `params` - schedule, T values, methods, rules.
/// * `device` - where the networks run.
/// * `progress` - called with (done, total) over the grid times of both passes.
///
/// # Errors
/// A method whose model is missing; path-KL, schedule and candle errors.
pub fn evaluate_chains(
    q0: &Mixture,
    models: &EvalModels<'_>,
    params: &EvalParams,
    device: &Device,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<EvalReport, LearnedError> {
    let d = q0.dim();
    let learned = models.score.is_some();
    for m in &params.methods {
        if let Method::Head(k) = m {
            if !models.heads.iter().any(|h| h.kind() == *k) {
                return Err(LearnedError::UnknownMethod(format!(
                    "{} (no head loaded)",
                    k.name()
                )));
            }
        }
        if m.is_jacobian_full() && !learned {
            return Err(LearnedError::InvalidParameter {
                field: "methods",
                reason: format!(
                    "{} needs a learned score (the exact Hessian is symmetric: use full)",
                    m.name()
                ),
            });
        }
    }
    let ddim = params.kernel == KernelKind::Ddim;
    if ddim {
        if let Some(m) = params.methods.iter().find(|m| {
            matches!(
                m,
                Method::Family(Family::Beta | Family::BetaTilde) | Method::Head(HeadKind::Iddpm)
            )
        }) {
            return Err(LearnedError::InvalidParameter {
                field: "methods",
                reason: format!(
                    "{} has no OCM-DDIM covariance (beta, beta-tilde: Sigma_0 = 0, plain DDIM, infinite KL; iddpm: beta~ = 0 at every step to the data)",
                    m.name()
                ),
            });
        }
        if params.early_stop != 0.0 {
            return Err(LearnedError::InvalidParameter {
                field: "early_stop",
                reason: "must be 0 with the DDIM kernel (its x_0 is the data at t = 0)".into(),
            });
        }
    }
    if params.steps.is_empty() || params.steps.contains(&0) {
        return Err(LearnedError::InvalidParameter {
            field: "steps",
            reason: "give T values >= 1".into(),
        });
    }
    let needs = Needs {
        jac: learned
            && params
                .methods
                .iter()
                .any(|m| matches!(m, Method::Hutchinson(_)) || m.is_jacobian_full()),
    };
    // S_full from the path-KL core, on the same lattice.
    let pk = path_kl_sweep(
        q0,
        &params.schedule,
        &params.steps,
        &PathKlParams {
            families: vec![Family::Full],
            rule: RuleChoice::Auto,
            lattice: params.lattice,
            qmc: params.qmc,
            early_stop: params.early_stop,
            kernel: params.kernel,
            ..PathKlParams::default()
        },
        &|_, _| {},
    )?;
    let grids: Vec<Grid> = params
        .steps
        .iter()
        .map(|&t| params.schedule.grid(t, params.early_stop))
        .collect::<Result<_, _>>()?;
    // Tasks: one per distinct grid time t > 0, with the steps ending there.
    let mut tasks: std::collections::BTreeMap<u64, (f64, Vec<UseSpec>)> = Default::default();
    for (g, grid) in grids.iter().enumerate() {
        for i in 1..=grid.steps() {
            // DDIM: the one jump (t_0, t_i) (no beta-tilde: refused above).
            let step = if ddim { grid.jump(i) } else { grid.step(i) };
            let bt_clip =
                (!ddim && grid.one_minus_abar(i - 1) <= 0.0 && grid.steps() >= 2).then(|| {
                    let next = grid.step(i + 1);
                    next.b * grid.one_minus_abar(i) / grid.one_minus_abar(i + 1)
                });
            let l = grid.ln_abar[i];
            tasks
                .entry((-l).to_bits())
                .or_insert((l, Vec::new()))
                .1
                .push(UseSpec {
                    grid: g,
                    step,
                    bt_clip,
                });
        }
    }
    let tasks: Vec<(f64, Vec<UseSpec>)> = tasks.into_values().collect();
    let t_max = params.steps.iter().copied().max().unwrap_or(1);
    let nodes_for = |uses: &[UseSpec]| {
        let t_min = uses
            .iter()
            .map(|u| grids[u.grid].steps())
            .min()
            .unwrap_or(t_max)
            .max(1);
        params.qmc_nodes * t_max.div_ceil(t_min).clamp(1, 32)
    };
    let any_network = params.methods.iter().any(|m| m.uses_network(learned));
    let total = tasks.len() * if any_network { 2 } else { 1 };
    let done = std::sync::atomic::AtomicUsize::new(0);
    let tick = || {
        progress(
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            total,
        )
    };
    // The reference pass: lattice in D <= 2, QMC (params.qmc) beyond.
    let ref_params = EvalParams {
        rule: if d <= 2 {
            EvalRule::Lattice
        } else {
            EvalRule::Qmc
        },
        qmc_nodes: params.qmc.points * q0.len() * params.qmc.shifts.max(2),
        ..params.clone()
    };
    let ref_nodes = |_: &[UseSpec]| ref_params.qmc_nodes;
    let (ref_sums, ref_model, _) = run_pass(
        q0,
        &tasks,
        grids.len(),
        params,
        &ref_params,
        models,
        Pass::Reference,
        &ref_nodes,
        needs,
        device,
        &tick,
    )?;
    let net = if any_network {
        Some(run_pass(
            q0,
            &tasks,
            grids.len(),
            params,
            params,
            models,
            Pass::Network,
            &nodes_for,
            needs,
            device,
            &tick,
        )?)
    } else {
        None
    };
    let mut rows = Vec::new();
    for (mi, method) in params.methods.iter().enumerate() {
        for (g, grid) in grids.iter().enumerate() {
            let t = grid.steps();
            let s_full = pk
                .get(Family::Full, t)
                .map(|r| r.s)
                .ok_or(crate::kl::path_kl::PathKlError::NoSteps)?;
            let ra = &ref_sums[g][mi];
            let cov_ref = ref_model.combine(&Acc::values(&ra.cov));
            let mut infinite = ra.infinite;
            let (mean_part, cov_part, extra_err) = match &net {
                Some((sums, model, _)) if method.uses_network(learned) => {
                    let a = &sums[g][mi];
                    infinite |= a.infinite;
                    let mean = Acc::values(&a.mean);
                    let covd = Acc::values(&a.cov);
                    let both: Vec<f64> = mean.iter().zip(&covd).map(|(m, c)| m + c).collect();
                    let cd = model.combine(&covd);
                    (
                        model.combine(&mean),
                        Estimate {
                            value: cov_ref.value + cd.value,
                            err: cov_ref.err + cd.err,
                        },
                        // The error of mean + covariance difference, estimated jointly.
                        cov_ref.err + model.combine(&both).err,
                    )
                }
                _ => (
                    Estimate {
                        value: 0.0,
                        err: 0.0,
                    },
                    cov_ref,
                    cov_ref.err,
                ),
            };
            let inf = Estimate {
                value: f64::INFINITY,
                err: 0.0,
            };
            rows.push(EvalRow {
                method: method.name(),
                steps: t,
                path_kl: if infinite {
                    inf
                } else {
                    Estimate {
                        value: s_full.value + mean_part.value + cov_part.value,
                        err: s_full.err + extra_err,
                    }
                },
                mean_part,
                cov_part: if infinite { inf } else { cov_part },
                s_full,
            });
        }
    }
    let (cov_error, j_asymmetry) = if ddim {
        (Vec::new(), Vec::new())
    } else {
        curves(q0, models, params, needs, device)?
    };
    let net_rule = match params.rule {
        EvalRule::Lattice => format!("lattice (h = {} x smallest sd)", params.lattice.h_frac),
        EvalRule::Qmc => format!(
            "randomised QMC ({}..{} nodes per time, {} shifts, err = 2 s.e.)",
            params.qmc_nodes,
            32 * params.qmc_nodes,
            params.qmc.shifts
        ),
    };
    let rule = format!(
        "S_full: {}; network-free covariance parts: {}; network terms (control variate against diag/full): {net_rule}",
        pk.rule,
        if d <= 2 {
            format!("lattice (h = {} x smallest sd, nested h/2h/4h)", params.lattice.h_frac)
        } else {
            "QMC".to_string()
        }
    );
    Ok(EvalReport {
        rows,
        cov_error,
        j_asymmetry,
        terminal_kl: pk.terminal_kl,
        rule,
    })
}

/// The covariance-error curves and the Jacobian asymmetry at `curve_times` times of the
/// `curve_grid`-step grid (log-spaced indices), for the one-step kernels ending there.
fn curves(
    q0: &Mixture,
    models: &EvalModels<'_>,
    params: &EvalParams,
    needs: Needs,
    device: &Device,
) -> Result<(Vec<CovErrorRow>, Vec<JAsymmetryRow>), LearnedError> {
    let grid = params
        .schedule
        .grid(params.curve_grid.max(2), params.early_stop)?;
    let n = grid.steps();
    let k = params.curve_times.max(2);
    let mut idx: Vec<usize> = (0..k)
        .map(|j| ((n as f64).powf(j as f64 / (k - 1) as f64)).round() as usize)
        .map(|i| i.clamp(1, n))
        .collect();
    idx.dedup();
    let d = q0.dim();
    let learned = models.score.is_some();
    let diag_methods: Vec<Method> = params
        .methods
        .iter()
        .copied()
        .filter(Method::is_diagonal)
        .collect();
    // The Jacobian asymmetry is reported in D <= 2 (D tangents per node beyond).
    let nd = Needs {
        jac: needs.jac || (learned && d <= 2),
    };
    let built: Vec<(NodeSet, ErrorModel)> = idx
        .par_iter()
        .map(|&i| {
            geometry(
                q0,
                grid.ln_abar[i],
                params,
                32 * params.qmc_nodes,
                usize::MAX - i,
            )
        })
        .collect::<Result<_, _>>()?;
    let mut sets: Vec<NodeSet> = built.into_iter().map(|b| b.0).collect();
    let ls: Vec<f64> = idx.iter().map(|&i| grid.ln_abar[i]).collect();
    fill_networks(&mut sets, &ls, params, models, nd, device)?;
    let per_time: Vec<(Vec<CovErrorRow>, Option<JAsymmetryRow>)> = idx
        .par_iter()
        .zip(sets.par_iter())
        .map(|(&i, nodes)| -> Result<_, LearnedError> {
            let ln_abar = grid.ln_abar[i];
            let fine = nodes.slots - 1;
            let step = grid.step(i);
            let (a2, b) = (step.a2, step.b);
            let var = |x: f64| (b * b * x + b) / a2;
            let bt_clip = (grid.one_minus_abar(i - 1) <= 0.0).then(|| {
                let next = grid.step(i + 1);
                next.b * grid.one_minus_abar(i) / grid.one_minus_abar(i + 1)
            });
            let ctx = StepCtx::new(nodes, step, bt_clip, h_bounds(ln_abar, params.clip_range));
            let c_sq = nodes.expect(|j| {
                (0..d)
                    .map(|c| var(nodes.node_h(j)[c * d + c]).powi(2))
                    .sum::<f64>()
                    / d as f64
            })[fine];
            let mut rows = Vec::new();
            for &m in &diag_methods {
                let mse =
                    nodes.expect(|j| diag_sq_error(nodes, j, m, &ctx).unwrap_or(f64::NAN))[fine];
                rows.push(CovErrorRow {
                    method: m.name(),
                    t: grid.times[i],
                    ln_abar,
                    mse,
                    rel_mse: mse / c_sq,
                });
            }
            let asym = nodes.jac.as_ref().map(|_| {
                let fro = |j: usize, f: &FroTerm<'_>| -> f64 {
                    let (jm, hm) = (nodes.model_jac(j), nodes.node_h(j));
                    let mut s = 0.0;
                    for c in 0..d {
                        for r in 0..d {
                            s += f(jm, hm, r, c).powi(2);
                        }
                    }
                    s
                };
                let anti = |j| fro(j, &|jm, _, r, c| jm[c * d + r] - jm[r * d + c]);
                let norm = |j| fro(j, &|jm, _, r, c| jm[c * d + r]);
                let err = |j| fro(j, &|jm, hm, r, c| jm[c * d + r] - hm[c * d + r]);
                let hn = |j| fro(j, &|_, hm, r, c| hm[c * d + r]);
                JAsymmetryRow {
                    t: grid.times[i],
                    ln_abar,
                    mean_ratio: nodes.expect(|j| (anti(j) / norm(j)).sqrt())[fine],
                    rms_ratio: (nodes.expect(anti)[fine] / nodes.expect(norm)[fine]).sqrt(),
                    rel_err_vs_h: (nodes.expect(err)[fine] / nodes.expect(hn)[fine]).sqrt(),
                }
            });
            Ok((rows, asym))
        })
        .collect::<Result<_, _>>()?;
    let mut cov_rows = Vec::new();
    let mut asym_rows = Vec::new();
    for (r, a) in per_time {
        cov_rows.extend(r);
        asym_rows.extend(a);
    }
    cov_rows.sort_by(|a, b| a.method.cmp(&b.method).then(a.t.total_cmp(&b.t)));
    Ok((cov_rows, asym_rows))
}

/// An entry `(r, c)` of a matrix built from the Jacobian and the Hessian at a node (both
/// column-major), squared and summed by the Frobenius norms of the asymmetry report.
type FroTerm<'a> = dyn Fn(&[f64], &[f64], usize, usize) -> f64 + 'a;

/// `(1/D) ||diag Sigma - diag C||^2` at node `j` for a diagonal method (expected over the
/// probes for Hutchinson in D = 2).
fn diag_sq_error(nodes: &NodeSet, j: usize, m: Method, ctx: &StepCtx) -> Option<f64> {
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
}
