//! The cubature over q_t: the rule (lattice or QMC) and the per-node values it needs
//! (weights per slot, ln q_t, the Hessian of ln q_t and its eigenvalues mu_i), with
//! per-slot compensated expectations sum_i w_i f(x_i).

use crate::data::mixture::Mixture;
use crate::kernel::family::sym_eigenvalues;
use crate::numeric::NeumaierSum;
use crate::quadrature::{for_each_node_with_mass, lattice, qmc, Cubature};

use super::{PathKlError, PathKlParams, RuleChoice};

/// Per-node values at one time.
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

pub(super) fn build_rule(
    q: &Mixture,
    params: &PathKlParams,
    ln_abar: f64,
) -> Result<Cubature, PathKlError> {
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
pub(super) fn eval_nodes(q: &Mixture, rule: &Cubature, keep_resp: bool) -> Nodes {
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
