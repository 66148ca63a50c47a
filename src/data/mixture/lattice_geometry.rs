//! The mixture geometry on a tensor lattice when every component is axis-aligned
//! (isotropic or diagonal covariance): each component's density is a product over the axes,
//! so its D-dimensional exponential at a node is a product of D one-dimensional factors
//! tabulated once per lattice axis.
//!
//! # Formula
//! With `a_ij(x_i) = -(x_i - mu_ij)^2 / (2 v_ij)`, `c_j = ln pi_j - (D/2) ln 2 pi - (1/2) ln det Sigma_j`:
//! ```text
//! ln pi_j N_j(x) = c_j + sum_i a_ij(x_i)
//! T_0j(x_0) = exp(c_j + a_0j(x_0) - alpha_0(x_0)),  alpha_0 = max_j (c_j + a_0j)
//! T_ij(x_i) = exp(a_ij(x_i) - alpha_i(x_i)),          alpha_i = max_j a_ij     (i >= 1)
//! p_j(x) = prod_i T_ij(x_i),  ln q(x) = sum_i alpha_i(x_i) + ln sum_j p_j(x),  r_j = p_j / sum p
//! score s = sum_j r_j g_j,  g_ij = (mu_ij - x_i) / v_ij
//! Hessian H = sum_j r_j (g_j - s)(g_j - s)^T - diag(sum_j r_j / v_ij)
//! ```
//! A node costs D K multiplications where [`Mixture::geometry_above_unchecked`] takes K
//! exponentials. **No underflow where it matters**: `sum_i alpha_i <= max_j c_j` (each
//! factor's maximum is at most 1), which is [`Mixture::ln_peak_lower_bound`]; a node whose
//! ln q lies above that bound less 60 therefore has a largest p_j of at least e^(-60 - ln K).
//! Nodes below it may underflow to sum p = 0 and are skipped, as they are by the threshold.
//! Components far below the largest keep their tiny r_j (the K-exponential kernel prunes
//! those under e^-60 of the largest; either way they change no double-precision sum).
//!
//! The values agree with [`Mixture::geometry_above_unchecked`] to round-off (tested), not bit
//! for bit: the path KL uses this kernel, whose results carry error estimates far above it.

use super::{CovarianceKind, Mixture};

/// The per-axis tables of one lattice for one axis-aligned mixture.
#[derive(Clone, Debug)]
pub struct SeparableLattice {
    d: usize,
    k: usize,
    /// Per axis, `n_i x K` factors T_ij(x_i) (row = lattice index).
    factors: Vec<Vec<f64>>,
    /// Per axis, alpha_i at each lattice index.
    alpha: Vec<Vec<f64>>,
    /// Per axis, the K means mu_ij (structure of arrays).
    means: Vec<Vec<f64>>,
    /// Per axis, the K precisions 1 / v_ij.
    precisions: Vec<Vec<f64>>,
}

/// Reusable per-node buffers of [`SeparableLattice::node`].
#[derive(Clone, Debug, Default)]
pub struct SeparableWorkspace {
    /// Responsibilities r_j (the K of the last node).
    pub resp: Vec<f64>,
    /// Score (D).
    pub score: Vec<f64>,
    /// Hessian of ln q, column-major D x D.
    pub hessian: Vec<f64>,
    /// g_ij - s_i, axis-major (D x K).
    centred: Vec<f64>,
}

impl SeparableLattice {
    /// Tables for the lattice with axis coordinates `axes` (one list per dimension); `None`
    /// when a component has a dense covariance or the axes do not match the dimension.
    #[must_use]
    pub fn new(q: &Mixture, axes: &[Vec<f64>]) -> Option<Self> {
        let d = q.dim();
        let k = q.len();
        if axes.len() != d {
            return None;
        }
        let mut means = vec![Vec::with_capacity(k); d];
        let mut precisions = vec![Vec::with_capacity(k); d];
        for c in q.components() {
            for i in 0..d {
                let v = match c.covariance_kind() {
                    CovarianceKind::Isotropic(v) => *v,
                    CovarianceKind::Diagonal(dg) => dg[i],
                    CovarianceKind::Dense(_) => return None,
                };
                means[i].push(c.mean()[i]);
                precisions[i].push(1.0 / v);
            }
        }
        let half_ln_2pi_d = 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();
        let c0: Vec<f64> = q
            .components()
            .iter()
            .zip(q.ln_weights())
            .map(|(c, lw)| lw - half_ln_2pi_d - 0.5 * c.ln_det())
            .collect();
        let mut factors = Vec::with_capacity(d);
        let mut alpha = Vec::with_capacity(d);
        let mut row = vec![0.0; k];
        for (i, axis) in axes.iter().enumerate() {
            let mut f = Vec::with_capacity(axis.len() * k);
            let mut al = Vec::with_capacity(axis.len());
            for &x in axis {
                for j in 0..k {
                    let dx = x - means[i][j];
                    let base = if i == 0 { c0[j] } else { 0.0 };
                    row[j] = base - 0.5 * dx * dx * precisions[i][j];
                }
                let top = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                f.extend(row.iter().map(|a| (a - top).exp()));
                al.push(top);
            }
            factors.push(f);
            alpha.push(al);
        }
        Some(Self {
            d,
            k,
            factors,
            alpha,
            means,
            precisions,
        })
    }

    /// Buffers for this lattice's dimension and component count.
    #[must_use]
    pub fn workspace(&self) -> SeparableWorkspace {
        SeparableWorkspace {
            resp: vec![0.0; self.k],
            score: vec![0.0; self.d],
            hessian: vec![0.0; self.d * self.d],
            centred: vec![0.0; self.d * self.k],
        }
    }

    /// ln q at the node with lattice indices `idx` and coordinates `x`, filling the
    /// responsibilities, the score and the Hessian (module formula); `None` where ln q is
    /// below `threshold` (or the factors underflow, which happens only below
    /// [`Mixture::ln_peak_lower_bound`] less 60 + ln K).
    pub fn node(
        &self,
        idx: &[usize],
        x: &[f64],
        ws: &mut SeparableWorkspace,
        threshold: f64,
    ) -> Option<f64> {
        let (d, k) = (self.d, self.k);
        let resp = &mut ws.resp[..k];
        resp.copy_from_slice(&self.factors[0][idx[0] * k..(idx[0] + 1) * k]);
        let mut ln_ref = self.alpha[0][idx[0]];
        for i in 1..d {
            let f = &self.factors[i][idx[i] * k..(idx[i] + 1) * k];
            for (r, t) in resp.iter_mut().zip(f) {
                *r *= t;
            }
            ln_ref += self.alpha[i][idx[i]];
        }
        let total = sum4(resp);
        if total <= 0.0 {
            return None;
        }
        let ln_q = ln_ref + total.ln();
        if ln_q < threshold {
            return None;
        }
        let inv = 1.0 / total;
        for r in resp.iter_mut() {
            *r *= inv;
        }
        let resp = &ws.resp[..k];
        for i in 0..d {
            let (mu, prec) = (&self.means[i][..k], &self.precisions[i][..k]);
            let g = &mut ws.centred[i * k..(i + 1) * k];
            let xi = x[i];
            for ((g, m), p) in g.iter_mut().zip(mu).zip(prec) {
                *g = (m - xi) * p;
            }
            let s = dot4(resp, g);
            for v in g.iter_mut() {
                *v -= s;
            }
            ws.score[i] = s;
        }
        for col in 0..d {
            let gc = &ws.centred[col * k..(col + 1) * k];
            for row in col..d {
                let gr = &ws.centred[row * k..(row + 1) * k];
                let mut h = dot3_4(resp, gr, gc);
                if row == col {
                    h -= dot4(resp, &self.precisions[col][..k]);
                }
                ws.hessian[col * d + row] = h;
                ws.hessian[row * d + col] = h;
            }
        }
        Some(ln_q)
    }
}

/// sum_j v_j in four interleaved partial sums (vectorisable).
#[inline]
fn sum4(v: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let chunks = v.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..4 {
            acc[l] += c[l];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for x in rest {
        s += x;
    }
    s
}

/// sum_j a_j b_j in four interleaved partial sums (vectorisable).
#[inline]
fn dot4(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// sum_j a_j b_j c_j in four interleaved partial sums (vectorisable).
#[inline]
fn dot3_4(a: &[f64], b: &[f64], c: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb, cc) = (a.chunks_exact(4), b.chunks_exact(4), c.chunks_exact(4));
    let (ra, rb, rc) = (ca.remainder(), cb.remainder(), cc.remainder());
    for ((x, y), z) in ca.zip(cb).zip(cc) {
        for l in 0..4 {
            acc[l] += x[l] * y[l] * z[l];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for ((x, y), z) in ra.iter().zip(rb).zip(rc) {
        s += x * y * z;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mixture::{Component, Workspace};
    use nalgebra::{DMatrix, DVector};
    use rand::Rng;

    /// A random axis-aligned mixture: isotropic, diagonal or both kinds.
    fn mixture(d: usize, k: usize, kinds: usize, seed: u64) -> Mixture {
        let mut rng = crate::numeric::rng::stream(seed, 0);
        let comps: Vec<Component> = (0..k)
            .map(|j| {
                let mean: Vec<f64> = (0..d).map(|_| rng.gen_range(-5.0..5.0)).collect();
                let kind = if (j + kinds) % 2 == 0 {
                    CovarianceKind::Isotropic(rng.gen_range(0.05..3.0))
                } else {
                    CovarianceKind::Diagonal(DVector::from_fn(d, |_, _| rng.gen_range(0.05..3.0)))
                };
                Component::new(DVector::from_vec(mean), kind, j).unwrap()
            })
            .collect();
        let raw: Vec<f64> = (0..k).map(|_| rng.gen_range(0.2..1.0)).collect();
        let total: f64 = raw.iter().sum();
        Mixture::new(raw.iter().map(|w| w / total).collect(), comps).unwrap()
    }

    #[test]
    fn separable_kernel_agrees_with_the_exponential_kernel_to_round_off() {
        // Two routes to the same geometry: K exponentials of the D-dimensional terms
        // (Mixture::geometry_above_unchecked) and products of per-axis tables. Each entry
        // carries a few ulps of the sizes it sums, so they agree to 1e-12 relative to the
        // entry or to the scale sum_j r_j (|g_j|^2 + 1/v_j) of the terms (an entry that
        // cancels to ~0 is compared at that scale). Also checked: they skip the same nodes
        // away from the threshold, and mog40's marginal (the default path-kl data).
        let cases: Vec<Mixture> = vec![
            mixture(1, 5, 0, 1),
            mixture(2, 9, 1, 2),
            mixture(2, 40, 0, 3),
            mixture(3, 7, 1, 4),
            crate::data::presets::mog40(1.0).marginal(-0.7).unwrap(),
        ];
        for q in &cases {
            let d = q.dim();
            let axes: Vec<Vec<f64>> = (0..d)
                .map(|i| {
                    (0..41)
                        .map(|n| -9.0 + 0.45 * n as f64 + 0.01 * i as f64)
                        .collect()
                })
                .collect();
            let sep = SeparableLattice::new(q, &axes).expect("axis-aligned");
            let mut sws = sep.workspace();
            let mut ews = Workspace::new(d, q.len());
            let threshold = q.ln_peak_lower_bound() - 60.0;
            let mut rng = crate::numeric::rng::stream(9, d as u64);
            let mut compared = 0;
            for _ in 0..400 {
                let idx: Vec<usize> = (0..d).map(|_| rng.gen_range(0..41)).collect();
                let x: Vec<f64> = (0..d).map(|i| axes[i][idx[i]]).collect();
                let a = sep.node(&idx, &x, &mut sws, threshold);
                let b = q.geometry_above_unchecked(&x, &mut ews, threshold);
                match (a, b) {
                    (Some(la), Some(lb)) => {
                        compared += 1;
                        assert!((la - lb).abs() <= 1e-12 * lb.abs().max(1.0), "{la} vs {lb}");
                        let scale: f64 = sws.score.iter().map(|s| s * s).sum::<f64>()
                            + sws.hessian.iter().map(|h| h.abs()).sum::<f64>();
                        for (u, v) in sws.score.iter().zip(&ews.score) {
                            assert!((u - v).abs() <= 1e-12 * scale.max(1.0), "{u} vs {v}");
                        }
                        for (u, v) in sws.hessian.iter().zip(&ews.hessian) {
                            assert!((u - v).abs() <= 1e-12 * scale.max(1.0), "{u} vs {v}");
                        }
                        for (u, v) in sws.resp.iter().zip(&ews.resp) {
                            assert!((u - v).abs() <= 1e-12, "{u} vs {v}");
                        }
                    }
                    (None, None) => {}
                    (la, lb) => {
                        // Only at the threshold itself may round-off decide differently.
                        let l = la.or(lb).unwrap();
                        assert!((l - threshold).abs() < 1e-9, "skips differ at ln q = {l}");
                    }
                }
            }
            assert!(compared > 50, "d = {d}: only {compared} nodes with mass");
        }
    }

    #[test]
    fn dense_components_are_refused() {
        let c = Component::new(
            DVector::zeros(2),
            CovarianceKind::Dense(DMatrix::from_row_slice(2, 2, &[1.0, 0.3, 0.3, 1.0])),
            0,
        )
        .unwrap();
        let q = Mixture::new(vec![1.0], vec![c]).unwrap();
        assert!(SeparableLattice::new(&q, &[vec![0.0], vec![0.0]]).is_none());
    }
}
