//! The covariance-error curves and the learned Jacobian's asymmetry at log-spaced times `t`
//! of the `curve_grid`-step grid:
//! ```text
//! mse(t) = E_{q_t}[(1/D) ||diag Sigma(x_t) - diag C(x_t)||^2],   rel_mse = mse / E[(1/D) ||diag C||^2],
//! mean_ratio = E[||J - J^T||_F / ||J||_F],   rms_ratio = sqrt(E ||J - J^T||_F^2 / E ||J||_F^2),
//! rel_err_vs_h = sqrt(E ||J - H||_F^2 / E ||H||_F^2).
//! ```

use rayon::prelude::*;

use super::nodes::{fill_networks, geometry, Needs, Networks, NodeSet};
use super::parts::{diag_sq_error, StepCtx};
use super::{ChainError, CovErrorRow, EvalParams, JAsymmetryRow, Method};
use crate::data::mixture::Mixture;
use crate::kernel::model::h_bounds;
use crate::quadrature::ErrorModel;

/// The covariance-error curves and the Jacobian asymmetry at `curve_times` times of the
/// `curve_grid`-step grid (log-spaced indices), for the one-step kernels ending there.
pub(super) fn curves(
    q0: &Mixture,
    nets: &dyn Networks,
    params: &EvalParams,
    needs: Needs,
) -> Result<(Vec<CovErrorRow>, Vec<JAsymmetryRow>), ChainError> {
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
    let learned = nets.learned();
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
    fill_networks(&mut sets, &ls, nets, nd)?;
    let per_time: Vec<(Vec<CovErrorRow>, Option<JAsymmetryRow>)> = idx
        .par_iter()
        .zip(sets.par_iter())
        .map(|(&i, nodes)| -> Result<_, ChainError> {
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
