//! One pass over the grid times: per grid, method and slot `r`, the sums
//! ```text
//! sum_i w_{i,r} mean_part(x_i),   sum_i w_{i,r} (cov_part(x_i) - cov_part_ref(x_i))
//! ```
//! (the reference pass: `sum_i w_{i,r} cov_part_ref(x_i)`, no network), the control variate of
//! [`super::evaluate_chains`].

use rayon::prelude::*;

use super::nodes::{fill_networks, geometry, Needs, Networks, NodeSet};
use super::parts::{node_parts, StepCtx};
use super::{ChainError, EvalParams, Method};
use crate::data::mixture::Mixture;
use crate::kernel::family::Family;
use crate::kernel::model::h_bounds;
use crate::numeric::NeumaierSum;
use crate::process::schedule::Step;
use crate::quadrature::ErrorModel;

/// Per-slot accumulators of one (grid, method).
#[derive(Clone)]
pub(super) struct Acc {
    pub(super) mean: Vec<NeumaierSum>,
    pub(super) cov: Vec<NeumaierSum>,
    pub(super) infinite: bool,
}

impl Acc {
    pub(super) fn new(slots: usize) -> Self {
        Self {
            mean: vec![NeumaierSum::new(); slots],
            cov: vec![NeumaierSum::new(); slots],
            infinite: false,
        }
    }
    pub(super) fn values(v: &[NeumaierSum]) -> Vec<f64> {
        v.iter().map(NeumaierSum::value).collect()
    }
}

pub(super) struct UseSpec {
    pub(super) grid: usize,
    pub(super) step: Step,
    pub(super) bt_clip: Option<f64>,
}

/// One time's accumulators: per use (its grid), per method; the rule's error model and slots.
type TaskOut = (Vec<(usize, Vec<Acc>)>, ErrorModel, usize);

/// The two passes of [`super::evaluate_chains`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    /// No network: the covariance part of each method's network-free reference, on the
    /// accurate rule (the lattice in D <= 2).
    Reference,
    /// With the networks: the mean part and the covariance part minus the reference's, on
    /// the network rule (a control variate: the difference is small when the model is good).
    Network,
}

/// One pass over the grid times: per grid, per method, per slot sums of the mean and
/// covariance terms of the pass.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_pass(
    q0: &Mixture,
    tasks: &[(f64, Vec<UseSpec>)],
    n_grids: usize,
    params: &EvalParams,
    pass_params: &EvalParams,
    nets: &dyn Networks,
    pass: Pass,
    nodes_for: &(dyn Fn(&[UseSpec]) -> usize + Sync),
    needs: Needs,
    progress: &(dyn Fn() + Sync),
) -> Result<(Vec<Vec<Acc>>, ErrorModel, usize), ChainError> {
    let learned = nets.learned();
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
            fill_networks(&mut sets, &ls, nets, needs)?;
            sets.into_iter().zip(models_of).map(Some).collect()
        }
        Pass::Reference => tasks.iter().map(|_| None).collect(),
    };
    let held_ref: Vec<std::sync::Mutex<Option<(NodeSet, ErrorModel)>>> =
        held.drain(..).map(std::sync::Mutex::new).collect();
    let results: Vec<TaskOut> = tasks
        .par_iter()
        .enumerate()
        .map(|(ti, (ln_abar, uses))| -> Result<_, ChainError> {
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
                    let eval = |i: usize, r: usize| -> Result<Option<(f64, f64)>, ChainError> {
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
