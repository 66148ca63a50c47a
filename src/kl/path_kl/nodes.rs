//! The cubature over q_t: the rule (lattice or QMC) and the per-node values it needs
//! (weights per slot, ln q_t, the Hessian of ln q_t and its eigenvalues mu_i), with
//! per-slot compensated expectations sum_i w_i f(x_i).

use crate::data::mixture::{Mixture, SeparableLattice};
use crate::kernel::family::extend_sym_eigenvalues;
use crate::numeric::NeumaierSum;
use crate::quadrature::{for_each_node_with_mass, lattice_into, qmc, Cubature};

use super::{PathKlError, PathKlParams, RuleChoice};

/// Per-node values at one time.
#[derive(Default)]
pub(super) struct Nodes {
    pub(super) slots: usize,
    pub(super) w: Vec<f64>,
    pub(super) x: Vec<f64>,
    pub(super) lnq: Vec<f64>,
    pub(super) mu: Vec<f64>,
    pub(super) h: Vec<f64>,
    pub(super) resp: Vec<f64>,
}

/// Whether the lattice (else QMC) is used in dimension `d`.
pub(super) fn uses_lattice(params: &PathKlParams, d: usize) -> bool {
    match params.rule {
        RuleChoice::Auto => d <= 2,
        RuleChoice::Lattice => true,
        RuleChoice::Qmc => false,
    }
}

/// The buffers one worker reuses from time to time: the rule and the per-node values (a
/// default sweep has a thousand times of ~10^4 nodes each; fresh buffers per time cost a
/// sixth of its run time in page faults).
pub(super) struct Scratch {
    pub(super) rule: Cubature,
    pub(super) nodes: Nodes,
}

impl Scratch {
    pub(super) fn new() -> Self {
        Self {
            rule: Cubature::empty_lattice(0),
            nodes: Nodes::default(),
        }
    }
}

/// Builds the rule over `q` into `rule` (the lattice in its buffers, or QMC).
pub(super) fn build_rule(
    q: &Mixture,
    params: &PathKlParams,
    ln_abar: f64,
    rule: &mut Cubature,
) -> Result<(), PathKlError> {
    if uses_lattice(params, q.dim()) {
        if lattice_into(q, &params.lattice, rule) {
            Ok(())
        } else {
            Err(PathKlError::LatticeTooLarge {
                time: ln_abar,
                max_nodes: params.lattice.max_nodes,
            })
        }
    } else {
        *rule = qmc(q, &params.qmc);
        Ok(())
    }
}

/// Evaluates ln q, the Hessian eigenvalues and entries at the nodes that carry mass, into
/// `out` (its previous contents dropped, its capacity kept).
pub(super) fn eval_nodes(q: &Mixture, rule: &Cubature, keep_resp: bool, out: &mut Nodes) {
    let d = q.dim();
    let n = rule.len();
    out.slots = rule.slots;
    for v in [
        &mut out.w,
        &mut out.x,
        &mut out.lnq,
        &mut out.mu,
        &mut out.h,
        &mut out.resp,
    ] {
        v.clear();
    }
    out.w.reserve(n * rule.slots);
    out.x.reserve(n * d);
    out.lnq.reserve(n);
    out.mu.reserve(n * d);
    out.h.reserve(n * d * d);
    if keep_resp {
        out.resp.reserve(n * q.len());
    }
    if let Some(sep) = SeparableLattice::new(q, &rule.axes) {
        // Axis-aligned components on a tensor lattice: per-axis tables instead of K
        // exponentials per node (`data::mixture::SeparableLattice`), same nodes in the same order.
        let mut ws = sep.workspace();
        let threshold = q.ln_peak_lower_bound() - 60.0;
        let slots = rule.slots;
        let mut idx = vec![0usize; d];
        let mut wbuf = vec![0.0; slots];
        for i in 0..n {
            let x = rule.point(i);
            if let Some(lnq) = sep.node(&idx, x, &mut ws, threshold) {
                let scale = lnq.exp();
                for (o, r) in wbuf
                    .iter_mut()
                    .zip(&rule.weights[i * slots..(i + 1) * slots])
                {
                    *o = r * scale;
                }
                let resp = keep_resp.then_some(&ws.resp[..]);
                out.push(x, &wbuf, lnq, &ws.hessian, resp);
            }
            for (a, axis) in idx.iter_mut().zip(&rule.axes) {
                *a += 1;
                if *a < axis.len() {
                    break;
                }
                *a = 0;
            }
        }
        return;
    }
    for_each_node_with_mass(q, rule, |x, w, lnq, ws| {
        out.push(x, w, lnq, &ws.hessian, keep_resp.then_some(&ws.resp[..]));
    });
}

impl Nodes {
    /// Appends one node: its point, per-slot weights (density included), ln q, the Hessian
    /// (column-major) with its eigenvalues, and the responsibilities if kept.
    fn push(&mut self, x: &[f64], w: &[f64], lnq: f64, hessian: &[f64], resp: Option<&[f64]>) {
        let d = x.len();
        self.w.extend_from_slice(w);
        self.x.extend_from_slice(x);
        self.lnq.push(lnq);
        extend_sym_eigenvalues(hessian, d, &mut self.mu);
        self.h.extend_from_slice(hessian);
        if let Some(r) = resp {
            self.resp.extend_from_slice(r);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.lnq.len()
    }

    /// Per-slot sums of w_i f(i), compensated.
    pub(super) fn expect(&self, mut f: impl FnMut(usize) -> f64) -> (Vec<f64>, f64) {
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
