//! Cubature rules for expectations `E_{q_t}[f]` over a Gaussian mixture, each with a
//! built-in error estimate:
//!
//! - **Lattice (trapezoid) rule**, D <= 3: a tensor grid of spacing h covering the mass of
//!   every component; `E[f]` ~ h^D sum_i q(x_i) f(x_i). For integrands analytic in a strip
//!   it converges spectrally (error ~ exp(-2 pi a / h)); the estimate compares the grid of
//!   spacing h with the nested grids of spacing 2h and 4h (every other / every fourth node),
//!   so the refinement costs nothing extra (see [`ErrorModel::Refinement`]). Nodes where q is below e^-60 of its maximum are skipped by the caller.
//! - **Randomised quasi-Monte Carlo**, any D: per component k, n points of the
//!   Kronecker (R_D, Roberts 2018) sequence shifted by a seeded uniform vector
//!   (Cranley-Patterson), mapped by the inverse normal CDF and x = mu_k + B_k^{1/2} z;
//!   R independent shifts give R unbiased replicates and a standard error.
//! - **Gauss-Hermite** nodes and weights for N(0, 1) by Golub-Welsch.

use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::data::mixture::Mixture;

/// An estimate with its absolute error estimate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The value.
    pub value: f64,
    /// Estimated absolute error.
    pub err: f64,
}

/// How the slots of a cubature combine into an estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorModel {
    /// Three nested slots with spacings 4h (0), 2h (1) and h (2): value = the h result.
    /// With e2 = |I_2h - I_h| ~ e(2h) and e4 = |I_4h - I_h| ~ e(4h), the error of the h
    /// result is extrapolated geometrically, e(h) ~ e2 (e2 / e4): exact for algebraic
    /// convergence e ~ h^p (constant ratio), an overestimate for any faster (spectral)
    /// convergence, whose ratios grow as h shrinks. Used when the levels do converge
    /// (e4 > 2 e2); otherwise the plain e2. (Measured on mog40: e(1.4 s), e(0.7 s),
    /// e(0.35 s) of H(q_0) fall by ~760 and ~790: close to algebraic, so the
    /// extrapolation is tight; Aitken's e2^3/e4^2, exact for e ~ exp(-a/h), underestimated
    /// the true error 800-fold there.)
    Refinement,
    /// R replicate slots: value = mean, err = 2 standard errors (about a 95 % interval).
    Replicates,
}

impl ErrorModel {
    /// Combines per-slot estimates of one quantity.
    #[must_use]
    pub fn combine(self, slots: &[f64]) -> Estimate {
        match self {
            ErrorModel::Refinement => {
                let e2 = (slots[1] - slots[2]).abs();
                let e4 = (slots[0] - slots[2]).abs();
                let err = if e4 > 2.0 * e2 { e2 * (e2 / e4) } else { e2 };
                Estimate {
                    value: slots[2],
                    err,
                }
            }
            ErrorModel::Replicates => {
                let r = slots.len() as f64;
                let mean = slots.iter().sum::<f64>() / r;
                let var =
                    slots.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (r - 1.0).max(1.0);
                Estimate {
                    value: mean,
                    err: 2.0 * (var / r).sqrt(),
                }
            }
        }
    }
}

/// Lattice parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatticeParams {
    /// Fine spacing as a fraction of the smallest component standard deviation of q_t.
    pub h_frac: f64,
    /// Half-width of the box beyond the extreme means, in largest standard deviations.
    pub extent: f64,
    /// Largest number of fine nodes allowed.
    pub max_nodes: usize,
}

impl Default for LatticeParams {
    fn default() -> Self {
        Self {
            h_frac: 0.175,
            extent: 10.0,
            max_nodes: 4_000_000,
        }
    }
}

/// QMC parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QmcParams {
    /// Points per component per replicate.
    pub points: usize,
    /// Number of random shifts (replicates), >= 2.
    pub shifts: usize,
    /// Seed of the shifts.
    pub seed: u64,
}

impl Default for QmcParams {
    fn default() -> Self {
        Self {
            points: 2048,
            shifts: 8,
            seed: 20261123,
        }
    }
}

/// A set of nodes with per-slot weights.
#[derive(Clone, Debug)]
pub struct Cubature {
    /// Dimension.
    pub dim: usize,
    /// Nodes, flat (n x dim).
    pub points: Vec<f64>,
    /// Weights, flat (n x slots): weight of node i in slot r at i * slots + r.
    pub weights: Vec<f64>,
    /// Number of slots.
    pub slots: usize,
    /// If true, `E_slot[f]` = sum_i w_i q(x_i) f(x_i); else sum_i w_i f(x_i).
    pub density_weighted: bool,
    /// How slots combine.
    pub model: ErrorModel,
    /// A tensor lattice's coordinates per axis (node `i_0 + n_0 (i_1 + n_1 i_2)`, axis 0
    /// fastest); empty for a rule without that structure (QMC).
    pub axes: Vec<Vec<f64>>,
}

impl Cubature {
    /// A rule with no nodes, of the lattice's shape (3 nested slots, density weighted): the
    /// buffers [`lattice_into`] fills.
    #[must_use]
    pub fn empty_lattice(dim: usize) -> Self {
        Self {
            dim,
            points: Vec::new(),
            weights: Vec::new(),
            slots: 3,
            density_weighted: true,
            model: ErrorModel::Refinement,
            axes: Vec::new(),
        }
    }

    /// Number of nodes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.points.len() / self.dim
    }

    /// True if there are no nodes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Node i.
    #[must_use]
    pub fn point(&self, i: usize) -> &[f64] {
        &self.points[i * self.dim..(i + 1) * self.dim]
    }
}

/// The nested trapezoid lattice for the mixture `q` (D <= 3).
///
/// Returns `None` if the grid would exceed `params.max_nodes` or D > 3.
#[must_use]
pub fn lattice(q: &Mixture, params: &LatticeParams) -> Option<Cubature> {
    let mut rule = Cubature::empty_lattice(q.dim());
    lattice_into(q, params, &mut rule).then_some(rule)
}

/// [`lattice`] into the buffers of `rule` (whose previous nodes are dropped, its capacity
/// kept: a sweep of a thousand times then allocates once per thread, not twice per time).
/// Returns false, leaving `rule` empty, where [`lattice`] returns `None`.
pub fn lattice_into(q: &Mixture, params: &LatticeParams, rule: &mut Cubature) -> bool {
    let d = q.dim();
    rule.points.clear();
    rule.weights.clear();
    rule.dim = d;
    rule.slots = 3;
    rule.density_weighted = true;
    rule.model = ErrorModel::Refinement;
    rule.axes.clear();
    if d > 3 {
        return false;
    }
    let (lo_eig, hi_eig) = q.eigenvalue_range();
    let h = params.h_frac * lo_eig.sqrt();
    let reach = params.extent * hi_eig.sqrt();
    let mut center = vec![0.0; d];
    let mut half = vec![0usize; d];
    for i in 0..d {
        let lo = q
            .components()
            .iter()
            .map(|c| c.mean()[i])
            .fold(f64::INFINITY, f64::min)
            - reach;
        let hi = q
            .components()
            .iter()
            .map(|c| c.mean()[i])
            .fold(f64::NEG_INFINITY, f64::max)
            + reach;
        center[i] = 0.5 * (lo + hi);
        // a half-count divisible by 4 keeps the 2h and 4h grids symmetric about the centre;
        // counted in f64 first: a float-to-int `as` saturates (means at 1e25 gave
        // usize::MAX, whose round-up to a multiple of 4 then wrapped to 0: one node)
        let j = (0.5 * (hi - lo) / h).ceil().max(2.0);
        if !matches!(
            j.partial_cmp(&(params.max_nodes as f64)),
            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
        ) {
            return false;
        }
        half[i] = (j as usize).div_ceil(4) * 4;
    }
    let per: Vec<usize> = half.iter().map(|j| 2 * j + 1).collect();
    let Some(n) = per
        .iter()
        .try_fold(1usize, |acc, &p| acc.checked_mul(p))
        .filter(|&n| n <= params.max_nodes)
    else {
        return false;
    };
    let wf = h.powi(d as i32);
    let w2 = (2.0 * h).powi(d as i32);
    let w4 = (4.0 * h).powi(d as i32);
    rule.axes = (0..d)
        .map(|i| {
            (0..per[i])
                .map(|n| center[i] + h * (n as i64 - half[i] as i64) as f64)
                .collect()
        })
        .collect();
    let (points, weights) = (&mut rule.points, &mut rule.weights);
    points.reserve(n * d);
    weights.reserve(n * 3);
    let mut idx = vec![0usize; d];
    for _ in 0..n {
        let mut on2 = true;
        let mut on4 = true;
        for i in 0..d {
            let off = idx[i] as i64 - half[i] as i64;
            points.push(center[i] + h * off as f64);
            on2 &= off % 2 == 0;
            on4 &= off % 4 == 0;
        }
        weights.push(if on4 { w4 } else { 0.0 });
        weights.push(if on2 { w2 } else { 0.0 });
        weights.push(wf);
        for i in 0..d {
            idx[i] += 1;
            if idx[i] < per[i] {
                break;
            }
            idx[i] = 0;
        }
    }
    true
}

/// The generator of the R_D Kronecker sequence: alpha_j = phi_D^{-j}, phi_D the positive
/// root of x^{D+1} = x + 1.
#[must_use]
pub fn kronecker_alpha(d: usize) -> Vec<f64> {
    let mut phi = 2.0f64;
    for _ in 0..100 {
        phi = (1.0 + phi).powf(1.0 / (d as f64 + 1.0));
    }
    (1..=d).map(|j| phi.powi(-(j as i32)).fract()).collect()
}

/// Randomised QMC points for the mixture `q`: `shifts` replicates of `points` per
/// component, weights pi_k / points in the replicate's slot.
#[must_use]
pub fn qmc(q: &Mixture, params: &QmcParams) -> Cubature {
    let d = q.dim();
    let alpha = kronecker_alpha(d);
    let normal = Normal::standard();
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let r = params.shifts.max(2);
    let n = params.points.max(1);
    let k = q.len();
    let mut points = Vec::with_capacity(r * k * n * d);
    let mut weights = vec![0.0; r * k * n * r];
    let mut z = vec![0.0; d];
    let mut y = vec![0.0; d];
    let mut node = 0;
    for slot in 0..r {
        let shift: Vec<f64> = (0..d).map(|_| rng.gen::<f64>()).collect();
        for (c, w) in q.components().iter().zip(q.weights()) {
            for j in 0..n {
                for i in 0..d {
                    let u = (shift[i] + (j as f64 + 1.0) * alpha[i])
                        .fract()
                        .clamp(1e-16, 1.0 - 1e-16);
                    z[i] = normal.inverse_cdf(u);
                }
                c.sqrt_cov_mul(&z, &mut y);
                for i in 0..d {
                    points.push(c.mean()[i] + y[i]);
                }
                weights[node * r + slot] = w / n as f64;
                node += 1;
            }
        }
    }
    Cubature {
        dim: d,
        points,
        weights,
        slots: r,
        density_weighted: false,
        model: ErrorModel::Replicates,
        axes: Vec::new(),
    }
}

/// Gauss-Hermite rule for N(0, 1) with n nodes (Golub-Welsch): sum_i w_i f(z_i) ~ E[f(Z)],
/// exact for polynomials of degree < 2n.
#[must_use]
pub fn gauss_hermite(n: usize) -> (Vec<f64>, Vec<f64>) {
    let j = DMatrix::from_fn(n, n, |r, c| {
        if r + 1 == c || c + 1 == r {
            (r.max(c) as f64).sqrt()
        } else {
            0.0
        }
    });
    let mut nodes: Vec<f64> = j.symmetric_eigenvalues().iter().copied().collect();
    nodes.sort_by(f64::total_cmp);
    // Weights from the Christoffel function w_i = 1 / sum_{k<n} h_k(x_i)^2 with the
    // orthonormal Hermite polynomials h_{k+1} = (x h_k - sqrt(k) h_{k-1}) / sqrt(k + 1):
    // accurate to round-off for every n, unlike squared eigenvector components, which
    // lose the tiny outer weights (relative error 7e-5 at n = 32, worse beyond).
    let weights: Vec<f64> = nodes
        .iter()
        .map(|&x| {
            let (mut prev, mut cur) = (0.0f64, 1.0f64);
            let mut sum = 1.0;
            for k in 0..n.saturating_sub(1) {
                let next = (x * cur - (k as f64).sqrt() * prev) / ((k + 1) as f64).sqrt();
                prev = cur;
                cur = next;
                sum += cur * cur;
            }
            1.0 / sum
        })
        .collect();
    let total: f64 = weights.iter().sum();
    (nodes, weights.iter().map(|w| w / total).collect())
}

/// Gauss-Legendre rule on `[0, 1]` with `n >= 1` nodes (ascending): `sum_i w_i f(x_i) ~
/// int_0^1 f`, exact for polynomials of degree < 2n. Nodes by Newton's method on the
/// Legendre polynomial P_n (three-term recurrence) from Tricomi's initial guesses
/// `cos(pi (i - 1/4) / (n + 1/2))`, weights `1 / ((1 - z^2) P_n'(z)^2)` mapped from `[-1, 1]`.
#[must_use]
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let nf = n as f64;
    // P_n(z) and P_n'(z) by the recurrence (k + 1) P_{k+1} = (2k + 1) z P_k - k P_{k-1}.
    let legendre = |z: f64| {
        let (mut p0, mut p1) = (1.0f64, z);
        for k in 1..n {
            let kf = k as f64;
            let p2 = ((2.0 * kf + 1.0) * z * p1 - kf * p0) / (kf + 1.0);
            p0 = p1;
            p1 = p2;
        }
        let (pn, pm) = if n == 0 { (1.0, 0.0) } else { (p1, p0) };
        (pn, nf * (z * pn - pm) / (z * z - 1.0))
    };
    let mut nodes = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(n);
    for i in 1..=n {
        let mut z = (std::f64::consts::PI * (i as f64 - 0.25) / (nf + 0.5)).cos();
        // Newton converges quadratically from this guess; 100 is a safety cap.
        for _ in 0..100 {
            let (pn, dp) = legendre(z);
            let dz = pn / dp;
            z -= dz;
            if dz.abs() <= 4.0 * f64::EPSILON * z.abs().max(1.0) {
                break;
            }
        }
        let (_, dp) = legendre(z);
        // Mapped to [0, 1]: x = (1 - z) / 2 (ascending in i), weight halved.
        nodes.push(0.5 * (1.0 - z));
        weights.push(1.0 / ((1.0 - z * z) * dp * dp));
    }
    (nodes, weights)
}

/// Tensor Gauss-Hermite rule for N(0, I_D): nodes (flat, n^D x D) and weights; `None` when
/// n^D overflows `usize` (a 64-dimensional tensor rule: `n.pow(d)` used to wrap to 0 in
/// release builds and panic in checked ones).
#[must_use]
pub fn gauss_hermite_tensor(n: usize, d: usize) -> Option<(Vec<f64>, Vec<f64>)> {
    let (z, w) = gauss_hermite(n);
    let total = u32::try_from(d).ok().and_then(|e| n.checked_pow(e))?;
    let mut nodes = Vec::with_capacity(total * d);
    let mut weights = Vec::with_capacity(total);
    let mut idx = vec![0usize; d];
    for _ in 0..total {
        let mut wt = 1.0;
        for &i in &idx {
            nodes.push(z[i]);
            wt *= w[i];
        }
        weights.push(wt);
        for i in idx.iter_mut() {
            *i += 1;
            if *i < n {
                break;
            }
            *i = 0;
        }
    }
    Some((nodes, weights))
}

/// Visits the nodes of `rule` where `q` carries mass, with the exact geometry there: density
/// weighted rules skip nodes with `ln q < ln peak - 60` (below e^-60 of a lower bound of the
/// peak) and scale the node's weights by `q`. `f` gets the node, its per-slot weights, `ln q` and
/// the workspace filled by [`Mixture::geometry_above_unchecked`] (responsibilities, score,
/// Hessian).
pub fn for_each_node_with_mass(
    q: &Mixture,
    rule: &Cubature,
    mut f: impl FnMut(&[f64], &[f64], f64, &crate::data::mixture::Workspace),
) {
    let mut ws = crate::data::mixture::Workspace::new(q.dim(), q.len());
    let threshold = if rule.density_weighted {
        q.ln_peak_lower_bound() - 60.0
    } else {
        f64::NEG_INFINITY
    };
    let slots = rule.slots;
    let mut w = vec![0.0; slots];
    for i in 0..rule.len() {
        let x = rule.point(i);
        let Some(lnq) = q.geometry_above_unchecked(x, &mut ws, threshold) else {
            continue;
        };
        let scale = if rule.density_weighted {
            lnq.exp()
        } else {
            1.0
        };
        for (o, r) in w.iter_mut().zip(&rule.weights[i * slots..(i + 1) * slots]) {
            *o = r * scale;
        }
        f(x, &w, lnq, &ws);
    }
}

/// Convenience: `E_q[f]` by a cubature, evaluating q where the rule is density weighted.
/// Returns the combined estimate.
pub fn expect(q: &Mixture, rule: &Cubature, f: impl Fn(&[f64]) -> f64) -> Estimate {
    let mut sums = vec![crate::numeric::NeumaierSum::new(); rule.slots];
    for i in 0..rule.len() {
        let x = rule.point(i);
        let mut fx = f(x);
        if rule.density_weighted {
            let lq = q.ln_pdf(x).unwrap_or(f64::NEG_INFINITY);
            fx *= lq.exp();
        }
        if fx == 0.0 {
            continue;
        }
        for (r, s) in sums.iter_mut().enumerate() {
            let w = rule.weights[i * rule.slots + r];
            if w != 0.0 {
                s.add(w * fx);
            }
        }
    }
    let v: Vec<f64> = sums.iter().map(|s| s.value()).collect();
    rule.model.combine(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn gauss_legendre_is_exact_below_degree_2n() {
        // int_0^1 x^k = 1 / (k + 1) for every k < 2n; the rule's sum of n terms in [0, 1]
        // carries a few ulps (n <= 24: 1e-14 is a wide margin that any wrong node or
        // weight, an O(1) error, exceeds).
        for n in 1..=24 {
            let (x, w) = gauss_legendre(n);
            assert_eq!(x.len(), n);
            assert!(x.windows(2).all(|p| p[0] < p[1]), "n = {n}: ascending");
            assert!(x.iter().all(|&v| v > 0.0 && v < 1.0));
            for k in 0..2 * n {
                let q: f64 = x
                    .iter()
                    .zip(&w)
                    .map(|(&xi, &wi)| wi * xi.powi(k as i32))
                    .sum();
                let want = 1.0 / (k as f64 + 1.0);
                assert!((q - want).abs() < 1e-14, "n = {n}, k = {k}: {q} vs {want}");
            }
            // And not beyond: x^(2n) is not integrated exactly (the rule has degree 2n - 1; its
            // error (n!)^4 / ((2n + 1) ((2n)!)^2) is 1.4e-6 at n = 5 and below round-off from
            // n ~ 12, so checked for n <= 8).
            if n <= 8 {
                let k = 2 * n;
                let q: f64 = x
                    .iter()
                    .zip(&w)
                    .map(|(&xi, &wi)| wi * xi.powi(k as i32))
                    .sum();
                assert!(
                    (q - 1.0 / (k as f64 + 1.0)).abs() > 1e-13,
                    "n = {n}: degree 2n exact?"
                );
            }
        }
    }

    #[test]
    fn gauss_hermite_integrates_moments() {
        let (z, w) = gauss_hermite(10);
        // E[Z^4] = 3, E[Z^6] = 15, E[Z^18] = 17!! = 34459425; exact for degree < 20 (round-off 1e-13).
        let m = |p: i32| z.iter().zip(&w).map(|(a, b)| b * a.powi(p)).sum::<f64>();
        assert_relative_eq!(m(0), 1.0, max_relative = 1e-14);
        assert_relative_eq!(m(4), 3.0, max_relative = 1e-13);
        assert_relative_eq!(m(6), 15.0, max_relative = 1e-13);
        assert_relative_eq!(m(18), 34_459_425.0, max_relative = 1e-11);
        // n = 48: E[Z^94] = 93!! is integrated exactly; the outer weights (~1e-40) must be
        // right to relative round-off for this (eigenvector weights were off by 46 %).
        let (z, w) = gauss_hermite(48);
        let exact: f64 = (1..94).step_by(2).map(|j| j as f64).product();
        let m94: f64 = z.iter().zip(&w).map(|(a, b)| b * a.powi(94)).sum();
        assert_relative_eq!(m94, exact, max_relative = 1e-8);
    }

    #[test]
    fn lattice_and_qmc_integrate_second_moment() {
        use nalgebra::DVector;
        let q = Mixture::from_dense(
            vec![0.3, 0.7],
            vec![
                DVector::from_vec(vec![-1.0, 0.5]),
                DVector::from_vec(vec![2.0, 0.0]),
            ],
            vec![
                DMatrix::from_row_slice(2, 2, &[1.0, 0.3, 0.3, 0.5]),
                DMatrix::identity(2, 2) * 0.2,
            ],
        )
        .unwrap();
        let exact = q.second_moment_trace();
        let rule = lattice(&q, &LatticeParams::default()).unwrap();
        let e = expect(&q, &rule, |x| x[0] * x[0] + x[1] * x[1]);
        // Trapezoid on a Gaussian with h = 0.35 sigma: error ~ exp(-2 pi^2/0.35^2) ~ 1e-70; round-off 1e-13.
        assert_relative_eq!(e.value, exact, max_relative = 1e-12);
        assert!(e.err < 1e-10, "refinement estimate {}", e.err);
        let rule = qmc(&q, &QmcParams::default());
        let e = expect(&q, &rule, |x| x[0] * x[0] + x[1] * x[1]);
        // Randomised QMC: the truth lies within 3 estimated (2-sigma) error bars.
        assert!(
            (e.value - exact).abs() < 1.5 * e.err + 1e-12,
            "{} vs {} +- {}",
            e.value,
            exact,
            e.err
        );
        assert!(e.err < 1e-2 * exact);
    }
}
