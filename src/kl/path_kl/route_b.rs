//! Route B: the inner KL(q(.|x_t) || N(m, C)) at each node by a tensor Gauss-Hermite rule
//! under each posterior component,
//! sum_k w_k E_{N(m_k, S_k)}[ln q(y|x_t) - ln N(y; m, C)], for both inner orders.

use crate::data::mixture::Mixture;
use crate::kernel::posterior::ReverseKernel;
use crate::numeric::NeumaierSum;
use crate::process::schedule::Step;

use super::nodes::Nodes;
use super::PathKlError;

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
        // ln r_k once per node, not once per inner node and component.
        let ln_resp: Vec<f64> = inner.iter().map(|&j2| resp[j2].ln()).collect();
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
                    for ((t, &j2), &lr) in terms.iter_mut().zip(&inner).zip(&ln_resp) {
                        let quad = quad_form(&self.s_inv[j2], &y, &means[j2], &mut r);
                        *t = lr - 0.5 * (self.s_ln_det[j2] + quad);
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
pub(super) fn route_b_values(
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
