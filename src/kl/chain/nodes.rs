//! The nodes of a rule over `q_t`: weights `w_{i,r}` (per slot `r`), points `x_i`, the exact
//! score `s(x_i)` and Hessian `H(x_i)`, and the networks' outputs at them, so that every
//! expectation is `E_{q_t}[f] ~ sum_i w_{i,r} f(x_i)` per slot.
//!
//! The networks are behind [`Networks`]: the f64 side gathers the nodes of several times into
//! one row set, the implementation (candle in `crate::learned`) returns host buffers.

use super::{ChainError, EvalParams, EvalRule, HeadKind};
use crate::data::mixture::Mixture;
use crate::numeric::NeumaierSum;
use crate::quadrature::{for_each_node_with_mass, lattice, qmc, ErrorModel, QmcParams};

/// A small `f64` buffer on the stack for `D <= 8` (the per-node loops run millions of times).
pub(super) enum Buf {
    Small([f64; 8], usize),
    Big(Vec<f64>),
}

impl Buf {
    pub(super) fn from_fn(d: usize, f: impl Fn(usize) -> f64) -> Self {
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
pub(super) struct NodeSet {
    pub(super) slots: usize,
    pub(super) d: usize,
    pub(super) w: Vec<f64>,
    pub(super) x: Vec<f64>,
    pub(super) s: Vec<f64>,
    pub(super) h: Vec<f64>,
    pub(super) st: Option<Vec<f64>>,
    /// Learned Jacobian, column-major per node: `J_ij` at `n d^2 + j d + i`.
    pub(super) jac: Option<Vec<f64>>,
    pub(super) heads: Vec<(HeadKind, Vec<f64>)>,
}

impl NodeSet {
    pub(super) fn len(&self) -> usize {
        self.x.len() / self.d.max(1)
    }
    pub(super) fn node_h(&self, i: usize) -> &[f64] {
        &self.h[i * self.d * self.d..(i + 1) * self.d * self.d]
    }
    pub(super) fn score(&self, i: usize) -> &[f64] {
        let d = self.d;
        match &self.st {
            Some(st) => &st[i * d..(i + 1) * d],
            None => &self.s[i * d..(i + 1) * d],
        }
    }
    pub(super) fn delta(&self, i: usize) -> Buf {
        let d = self.d;
        match &self.st {
            Some(st) => Buf::from_fn(d, |j| self.s[i * d + j] - st[i * d + j]),
            None => Buf::from_fn(d, |_| 0.0),
        }
    }
    /// The model's "Hessian" the probes and Jacobian methods see: `J` (learned) or `H`.
    pub(super) fn model_jac(&self, i: usize) -> &[f64] {
        match &self.jac {
            Some(j) => &j[i * self.d * self.d..(i + 1) * self.d * self.d],
            None => self.node_h(i),
        }
    }
    pub(super) fn head(&self, k: HeadKind) -> Option<&[f64]> {
        self.heads
            .iter()
            .find(|(kk, _)| *kk == k)
            .map(|(_, v)| v.as_slice())
    }
    /// Per-slot expectations `sum_i w_i f(i)`.
    pub(super) fn expect(&self, f: impl Fn(usize) -> f64) -> Vec<f64> {
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
pub(super) struct Needs {
    pub(super) jac: bool,
}

/// The nodes of a rule over `q_t` with the exact score and Hessian at each (no network yet).
pub(super) fn geometry(
    q0: &Mixture,
    ln_abar: f64,
    params: &EvalParams,
    qmc_nodes: usize,
    task: usize,
) -> Result<(NodeSet, ErrorModel), ChainError> {
    let q = q0.marginal(ln_abar)?;
    let d = q.dim();
    let rule = match params.rule {
        EvalRule::Lattice if d <= 2 => {
            lattice(&q, &params.lattice).ok_or_else(|| ChainError::InvalidParameter {
                field: "h_frac",
                reason: format!(
                    "the lattice at ln abar {ln_abar} would exceed {} nodes",
                    params.lattice.max_nodes
                ),
            })?
        }
        EvalRule::Lattice => {
            return Err(ChainError::InvalidParameter {
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

/// The networks' outputs at `n` rows of dimension `d`, host `f64`, row-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetOutputs {
    /// The learned score, `n x d` (empty without a learned score).
    pub score: Vec<f64>,
    /// The learned score's Jacobian, column-major per row: `J_ij` at `k d^2 + j d + i` (empty
    /// unless asked for).
    pub jacobian: Vec<f64>,
    /// Each head's output, `n x d`, in the order of [`Networks::head_kinds`].
    pub heads: Vec<Vec<f64>>,
}

/// The networks of a model chain, seen from the `f64` evaluator: a learned score (or none:
/// the exact score is the mean) and covariance heads.
pub trait Networks {
    /// Whether there is a learned score.
    fn learned(&self) -> bool;

    /// The kinds of the covariance heads (one per kind at most), in the order of
    /// [`NetOutputs::heads`].
    fn head_kinds(&self) -> Vec<HeadKind>;

    /// Evaluates the networks at the rows `x` (`n x d`, row-major), row `k` at the time
    /// `ln_abar[k]`; the Jacobian of a learned score only with `jacobian`.
    ///
    /// # Errors
    /// The networks' own ([`ChainError::Network`]).
    fn evaluate(
        &self,
        x: &[f64],
        d: usize,
        ln_abar: &[f64],
        jacobian: bool,
    ) -> Result<NetOutputs, ChainError>;
}

/// No networks: the exact chain (the exact score as the mean, no heads).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNetworks;

impl Networks for NoNetworks {
    fn learned(&self) -> bool {
        false
    }

    fn head_kinds(&self) -> Vec<HeadKind> {
        Vec::new()
    }

    fn evaluate(
        &self,
        _x: &[f64],
        _d: usize,
        _ln_abar: &[f64],
        _jacobian: bool,
    ) -> Result<NetOutputs, ChainError> {
        Ok(NetOutputs::default())
    }
}

/// Evaluates the networks at the nodes of all `sets` (set `k` at time `ln_abars[k]`; one time
/// per row) and stores the learned score, its Jacobian (if needed) and the heads' outputs in
/// the sets.
pub(super) fn fill_networks(
    sets: &mut [NodeSet],
    ln_abars: &[f64],
    nets: &dyn Networks,
    needs: Needs,
) -> Result<(), ChainError> {
    let learned = nets.learned();
    let kinds = nets.head_kinds();
    if !learned && kinds.is_empty() {
        return Ok(());
    }
    let d = sets.first().map_or(0, |s| s.d);
    let (mut xs, mut times) = (Vec::new(), Vec::new());
    for (set, &l) in sets.iter().zip(ln_abars) {
        xs.extend_from_slice(&set.x);
        times.extend(std::iter::repeat_n(l, set.len()));
    }
    let out = nets.evaluate(&xs, d, &times, needs.jac)?;
    let mut at = 0;
    for set in sets.iter_mut() {
        let (lo, hi) = (at, at + set.len());
        if learned {
            set.st = Some(out.score[lo * d..hi * d].to_vec());
            if needs.jac {
                set.jac = Some(out.jacobian[lo * d * d..hi * d * d].to_vec());
            }
        }
        set.heads = kinds
            .iter()
            .zip(&out.heads)
            .map(|(&k, o)| (k, o[lo * d..hi * d].to_vec()))
            .collect();
        at = hi;
    }
    Ok(())
}
