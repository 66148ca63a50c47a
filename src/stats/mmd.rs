//! Unbiased MMD² between two samples with Gaussian kernels, and its two standard errors.
//!
//! # MMD² (Gretton et al. 2012, JMLR 13, eq. 3)
//! For samples `x_1..x_n`, `y_1..y_m` and a kernel `k`,
//! ```text
//! MMD²_u = 1/(n(n-1)) Σ_{i≠j} k(x_i,x_j) + 1/(m(m-1)) Σ_{l≠l'} k(y_l,y_l') - 2/(nm) Σ_{i,l} k(x_i,y_l)
//! ```
//! with the Gaussian kernels `k_h(x,y) = exp(-|x-y|² / (2h²))` for each bandwidth and for
//! their sum. The default bandwidths [`MMD_BANDWIDTHS`] are those of the OCM paper, section 5.1.
//!
//! **Standard errors.** `MMD²_u` is a two-sample U-statistic; Hoeffding's decomposition gives,
//! exactly for every `n, m`,
//! ```text
//! Var(MMD²_u) = (4/n) Var g_x(x) + (4/m) Var g_y(y) + R₂
//! g_x(u) = E k(u, x') - E k(u, y),   g_y(v) = E k(v, y') - E k(x, v)
//! R₂ = 2 E k̃_xx² / (n(n-1)) + 2 E k̃_yy² / (m(m-1)) + 4 E k̃_xy² / (nm)
//! ```
//! with `k̃(u, v) = k(u, v) - E k(u, ·) - E k(·, v) + E k` the doubly centred kernel of each
//! pair of laws. When the two laws are equal, `g_x = g_y = 0` (the statistic is degenerate)
//! and the variance is the second-order `R₂ = O(1/n²)`; otherwise the first-order part
//! `V₁ = O(1/n)` dominates. Both parts have unbiased estimators built from averages over
//! disjoint index tuples (exact for all `n, m >= 4`; see [`mmd2_unbiased`]). `R̂₂` is stable
//! (the sample row effects cancel in it). `V̂₁` is not, near equality: a chance difference of
//! the two samples looks exactly like a small real one, so its noise there is of the size of
//! `R₂` itself, and the plain unbiased `V̂₁ + R̂₂` came out negative in up to half of the
//! replicates (wide kernels, `n = 300`). Hence two standard errors per kernel:
//! - `se_null = sqrt(R̂₂)`, the standard error when the laws are equal: `MMD²_u / se_null` is
//!   a calibrated z-score for testing equality (measured on a two-component mixture in
//!   D = 2, six sets of 200 replicates at `n = 300`, `m = 300` or `120`, all six kernels:
//!   means -0.17..0.12, sd 0.74..1.14);
//! - `se = sqrt(R̂₂ + max(0, V̂₁))`, the error bar of `MMD²_u` for any pair of laws
//!   (measured, `N(0, I)` vs `N(0.5 e₁, I)`: rms `se` / replicate sd = 0.94..1.05); conservative
//!   near equality (there `MMD²_u / se` has sd 0.47..0.87).
//!
//! Rejected alternatives: the leading-order plug-in `(4/n) Var̂(ĝ)` ignores `R₂` and is
//! biased up by the noise of `ĝ` (its null z-scores had sd 0.65..1.95 and means down to
//! -0.98); a split into `B` blocks is right to first order but overstates the degenerate
//! variance `B`-fold (null z-score sd ≈ `1/sqrt(B)`).
//!
//! **Cost.** Symmetry halves the within-sample pairs: `n(n-1)/2 + m(m-1)/2 + nm` kernel
//! evaluations. For the default bandwidths one `exp` per pair is taken at the widest
//! bandwidth `h = 4`; since `h` halves, `k_{h/2} = (k_h)⁴`, so the others follow by squaring
//! twice per level. Kernel values below `2^-500 ≈ 3e-151` are flushed to zero, which keeps
//! every product out of the subnormal range (up to 100× slower on x86); the change is below
//! the rounding of any sum. Points are stored coordinate-major in one buffer, and each row is
//! evaluated against tiles of 256 columns so the accumulation vectorises. Rows are split into
//! fixed chunks (their size depends on `n` only), evaluated in parallel with rayon, and the
//! per-chunk partial sums are added in chunk order: the result is bit-identical for any
//! number of threads.

use nalgebra::DVector;
use serde::{Deserialize, Serialize};

use super::error::MetricsError;
use super::mmd_tiles::{
    cross_pass, flatten, within_pass, DefaultKernels, GenericKernels, PairKernel, PassSums,
};
use super::sample::validate;
use crate::numeric::NeumaierSum;

/// The default MMD bandwidths `h ∈ {2⁻², 2⁻¹, 1, 2, 4}` (OCM paper, section 5.1).
///
/// With exactly this set (same order) [`mmd2_unbiased`] takes the fast path: one `exp` per
/// pair at `h = 4`, the others by repeated squaring.
pub const MMD_BANDWIDTHS: [f64; 5] = [0.25, 0.5, 1.0, 2.0, 4.0];

/// One MMD² estimate with its two standard errors (see [`mmd2_unbiased`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MmdValue {
    /// The unbiased estimate `MMD²_u` (can be negative when the distributions agree).
    pub mmd2: f64,
    /// Its standard error for any pair of laws, `sqrt(R̂₂ + max(0, V̂₁))` (see
    /// [`mmd2_unbiased`]): use it as the error bar of `mmd2`. Conservative when the laws are
    /// (nearly) equal. `NaN` when `n < 4` or `m < 4`.
    pub se: f64,
    /// Its standard error when the two laws are equal, `sqrt(max(0, R̂₂))`: use
    /// `mmd2 / se_null` as the z-score of a test of equality. Too small when the laws differ.
    /// `NaN` when `n < 4` or `m < 4`.
    pub se_null: f64,
}

/// `MMD²_u` for each bandwidth and for the sum of their kernels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MmdEstimate {
    /// The bandwidths `h`, in the order given.
    pub bandwidths: Vec<f64>,
    /// `MMD²_u` with `k_h` for each `h` of [`MmdEstimate::bandwidths`], in the same order.
    pub per_bandwidth: Vec<MmdValue>,
    /// `MMD²_u` with the sum kernel `Σ_h k_h`; its value is the sum of
    /// [`MmdEstimate::per_bandwidth`] (up to rounding), its standard error is not.
    pub sum: MmdValue,
}

/// Compensated sum.
fn sum(a: &[f64]) -> f64 {
    crate::numeric::neumaier_sum(a)
}

/// `Σ_i (a_i - ā)(b_i - b̄)` given the sums of `a` and `b`.
fn centred_cross(a: &[f64], sum_a: f64, b: &[f64], sum_b: f64) -> f64 {
    let len = a.len() as f64;
    let (ma, mb) = (sum_a / len, sum_b / len);
    let mut s = NeumaierSum::new();
    for (&x, &y) in a.iter().zip(b) {
        s.add((x - ma) * (y - mb));
    }
    s.value()
}

/// One kernel's estimate and its two (unclamped) variance estimates.
#[derive(Clone, Copy, Debug)]
struct RawMmd {
    /// `MMD²_u`.
    mmd2: f64,
    /// Unbiased estimate of `Var(MMD²_u)` (first + second order); `NaN` if `n` or `m` < 4.
    var: f64,
    /// Unbiased estimate of the second-order part `R₂` alone, which is all of the variance
    /// when the two laws are equal; `NaN` if `n` or `m` < 4.
    var_null: f64,
}

/// The estimate and its variance estimates for kernel `k` from the pass sums.
fn combine(xx: &PassSums, yy: &PassSums, xy: &PassSums, n: usize, m: usize, k: usize) -> RawMmd {
    let (nf, mf) = (n as f64, m as f64);
    let s = &xx.rows[k * n..(k + 1) * n];
    let t = &yy.rows[k * m..(k + 1) * m];
    let r = &xy.rows[k * n..(k + 1) * n];
    let c = &xy.cols[k * m..(k + 1) * m];
    let (s_x, s_y, s_xy) = (sum(s), sum(t), sum(r));
    let a = s_x / (nf * (nf - 1.0));
    let b = s_y / (mf * (mf - 1.0));
    let cc = s_xy / (nf * mf);
    let mmd2 = a + b - 2.0 * cc;
    if n < 4 || m < 4 {
        return RawMmd {
            mmd2,
            var: f64::NAN,
            var_null: f64::NAN,
        };
    }
    // The column sums c_l add up to S_xy as well (up to rounding).
    let s_c = sum(c);
    let v_s = centred_cross(s, s_x, s, s_x);
    let v_t = centred_cross(t, s_y, t, s_y);
    let v_r = centred_cross(r, s_xy, r, s_xy);
    let v_c = centred_cross(c, s_c, c, s_c);
    let cov_rs = centred_cross(r, s_xy, s, s_x);
    let cov_ct = centred_cross(c, s_c, t, s_y);
    // W = Σ (k - mean)² over the ordered pairs, from Σ_{i≠j} k² = 2 Σ_{i<j} k².
    let w_x = 2.0 * xx.sq[k] - nf * (nf - 1.0) * a * a;
    let w_y = 2.0 * yy.sq[k] - mf * (mf - 1.0) * b * b;
    let w_xy = xy.sq[k] - nf * mf * cc * cc;
    let n3 = nf * (nf - 1.0) * (nf - 2.0);
    let m3 = mf * (mf - 1.0) * (mf - 2.0);
    let n4 = n3 * (nf - 3.0);
    let m4 = m3 * (mf - 3.0);
    let var = (4.0 * v_s - 2.0 * w_x) / n4
        + (4.0 * v_t - 2.0 * w_y) / m4
        + 4.0 * (v_r + v_c - w_xy) / (nf * (nf - 1.0) * mf * (mf - 1.0))
        - 8.0 * cov_rs / (n3 * mf)
        - 8.0 * cov_ct / (m3 * nf);
    // Unbiased estimates of the doubly-centred second moments E k̃², k̃(u,v) = k(u,v) - E k(u,·)
    // - E k(·,v) + E k: the sample row effects cancel between W and V, so they are stable.
    let kt_xx = w_x / (nf * (nf - 3.0)) - 2.0 * v_s / (nf * (nf - 2.0) * (nf - 3.0));
    let kt_yy = w_y / (mf * (mf - 3.0)) - 2.0 * v_t / (mf * (mf - 2.0) * (mf - 3.0));
    let kt_xy = w_xy / ((nf - 1.0) * (mf - 1.0))
        - v_r / ((nf - 1.0) * mf * (mf - 1.0))
        - v_c / (nf * (nf - 1.0) * (mf - 1.0));
    let var_null =
        2.0 * kt_xx / (nf * (nf - 1.0)) + 2.0 * kt_yy / (mf * (mf - 1.0)) + 4.0 * kt_xy / (nf * mf);
    RawMmd {
        mmd2,
        var,
        var_null,
    }
}

/// The x-x and x-y passes and the per-kernel combination with the reference's own pass `yy`,
/// on validated, flattened inputs.
fn mmd_with_yy<K: PairKernel>(
    x: &[f64],
    n: usize,
    y: &[f64],
    m: usize,
    d: usize,
    kern: &K,
    yy: &PassSums,
) -> Vec<RawMmd> {
    let xx = within_pass(x, n, d, kern);
    let xy = cross_pass(x, n, y, m, d, kern);
    (0..kern.width())
        .map(|k| combine(&xx, yy, &xy, n, m, k))
        .collect()
}

/// Checks the bandwidths; true when they are exactly [`MMD_BANDWIDTHS`] (the fast path).
fn check_bandwidths(bandwidths: &[f64]) -> Result<bool, MetricsError> {
    if bandwidths.is_empty() {
        return Err(MetricsError::NoBandwidths);
    }
    for (index, &value) in bandwidths.iter().enumerate() {
        if !(value.is_finite() && value > 0.0) {
            return Err(MetricsError::BadBandwidth { index, value });
        }
    }
    Ok(bandwidths.len() == MMD_BANDWIDTHS.len()
        && bandwidths
            .iter()
            .zip(&MMD_BANDWIDTHS)
            .all(|(a, b)| a.to_bits() == b.to_bits()))
}

fn generic_kernels(bandwidths: &[f64]) -> GenericKernels {
    GenericKernels {
        inv_two_h2: bandwidths.iter().map(|h| 1.0 / (2.0 * h * h)).collect(),
    }
}

/// Validates the inputs and returns the raw estimates per kernel (bandwidths, then the sum).
/// `force_generic` skips the fast path (tests compare the two).
fn mmd2_raw(
    x: &[DVector<f64>],
    y: &[DVector<f64>],
    bandwidths: &[f64],
    force_generic: bool,
) -> Result<Vec<RawMmd>, MetricsError> {
    let d = validate("x", x, None, 2)?;
    validate("y", y, Some(d), 2)?;
    let fast = check_bandwidths(bandwidths)? && !force_generic;
    let reference = MmdReference::prepare(flatten(y, d), y.len(), d, bandwidths, fast);
    Ok(reference.raw_against(&flatten(x, d), x.len()))
}

/// A reference sample prepared once for many [`mmd2_unbiased_with`] calls: its points and
/// its own pass over the pairs `y_l, y_l'` (a third of the pairs of each call, when the
/// samples are of one size). The results are those of [`mmd2_unbiased`] bit for bit (tested).
pub struct MmdReference {
    points: Vec<f64>,
    m: usize,
    d: usize,
    bandwidths: Vec<f64>,
    /// The bandwidths are [`MMD_BANDWIDTHS`]: one `exp` per pair ([`DefaultKernels`]).
    fast: bool,
    yy: PassSums,
}

impl MmdReference {
    /// Prepares `y` (at least 2 points of one dimension) for the `bandwidths`.
    ///
    /// # Errors
    /// As [`mmd2_unbiased`] for its `y` and `bandwidths`.
    pub fn new(y: &[DVector<f64>], bandwidths: &[f64]) -> Result<Self, MetricsError> {
        let d = validate("y", y, None, 2)?;
        let fast = check_bandwidths(bandwidths)?;
        Ok(Self::prepare(flatten(y, d), y.len(), d, bandwidths, fast))
    }

    /// From validated, flattened points: the reference's own pass with the kernel family.
    fn prepare(points: Vec<f64>, m: usize, d: usize, bandwidths: &[f64], fast: bool) -> Self {
        let yy = if fast {
            within_pass(&points, m, d, &DefaultKernels)
        } else {
            within_pass(&points, m, d, &generic_kernels(bandwidths))
        };
        Self {
            points,
            m,
            d,
            bandwidths: bandwidths.to_vec(),
            fast,
            yy,
        }
    }

    /// The raw estimates of the validated, flattened sample `x` (`n` points) against this
    /// reference, per kernel (bandwidths, then the sum).
    fn raw_against(&self, x: &[f64], n: usize) -> Vec<RawMmd> {
        let (y, m, d) = (&self.points[..], self.m, self.d);
        if self.fast {
            mmd_with_yy(x, n, y, m, d, &DefaultKernels, &self.yy)
        } else {
            mmd_with_yy(x, n, y, m, d, &generic_kernels(&self.bandwidths), &self.yy)
        }
    }
}

/// Packs raw per-kernel estimates (bandwidths, then the sum) into an [`MmdEstimate`].
fn estimate(raw: Vec<RawMmd>, bandwidths: &[f64]) -> Result<MmdEstimate, MetricsError> {
    let mut values: Vec<MmdValue> = raw
        .into_iter()
        .map(|r| {
            // NaN (n or m < 4) stays NaN: f64::max would turn it into 0.
            let root = |v: f64| if v.is_nan() { v } else { v.max(0.0).sqrt() };
            MmdValue {
                mmd2: r.mmd2,
                se: root(r.var.max(r.var_null)),
                se_null: root(r.var_null),
            }
        })
        .collect();
    let sum = values.pop().ok_or(MetricsError::NoBandwidths)?;
    Ok(MmdEstimate {
        bandwidths: bandwidths.to_vec(),
        per_bandwidth: values,
        sum,
    })
}

/// [`mmd2_unbiased`] of `x` against a prepared reference: the same numbers, without
/// repeating the reference's own pass.
///
/// # Errors
/// As [`mmd2_unbiased`] for `x` (its dimension must be the reference's).
pub fn mmd2_unbiased_with(
    x: &[DVector<f64>],
    reference: &MmdReference,
) -> Result<MmdEstimate, MetricsError> {
    let d = validate("x", x, Some(reference.d), 2)?;
    let raw = reference.raw_against(&flatten(x, d), x.len());
    estimate(raw, &reference.bandwidths)
}

/// Unbiased MMD² between two samples with Gaussian kernels, per bandwidth and for the sum
/// kernel, each with its two standard errors (see the [module docs](self)).
///
/// # Formula
/// ```text
/// k_h(x, y) = exp(-|x - y|² / (2 h²)),   k_sum = Σ_h k_h
/// A = 1/(n(n-1)) Σ_{i≠j} k(x_i,x_j),  B = 1/(m(m-1)) Σ_{l≠l'} k(y_l,y_l'),  C = 1/(nm) Σ_{i,l} k(x_i,y_l)
/// MMD²_u = A + B - 2C
///
/// From the row sums and centred second moments
///   s_i = Σ_{j≠i} k(x_i,x_j),  r_i = Σ_l k(x_i,y_l),  t_l = Σ_{l'≠l} k(y_l,y_l'),  c_l = Σ_i k(x_i,y_l),
///   V_s = Σ_i (s_i - s̄)²  (likewise V_r, V_t, V_c),  Cov_rs = Σ_i (r_i - r̄)(s_i - s̄),  Cov_ct likewise,
///   W_x = Σ_{i≠j} (k(x_i,x_j) - A)²,  W_y likewise,  W_xy = Σ_{i,l} (k(x_i,y_l) - C)²,
///   (n)_3 = n(n-1)(n-2),  (n)_4 = (n)_3 (n-3):
/// Var̂ = MMD²_u² - θ̂²   (θ̂² the disjoint-index unbiased estimator of (E MMD²_u)²)
///      = (4 V_s - 2 W_x)/(n)_4 + (4 V_t - 2 W_y)/(m)_4 + 4 (V_r + V_c - W_xy)/(n(n-1)m(m-1))
///        - 8 Cov_rs/((n)_3 m) - 8 Cov_ct/((m)_3 n)
/// Ê k̃_xx² = W_x/(n(n-3)) - 2 V_s/(n(n-2)(n-3))          (Ê k̃_yy² likewise)
/// Ê k̃_xy² = W_xy/((n-1)(m-1)) - V_r/((n-1)m(m-1)) - V_c/(n(n-1)(m-1))
/// R̂₂ = 2 Ê k̃_xx²/(n(n-1)) + 2 Ê k̃_yy²/(m(m-1)) + 4 Ê k̃_xy²/(nm),   V̂₁ = Var̂ - R̂₂
/// se_null = sqrt(max(0, R̂₂)),   se = sqrt(R̂₂ + max(0, V̂₁)) = sqrt(max(0, Var̂, R̂₂))
/// ```
/// `Var̂` and `R̂₂` are exactly unbiased for `Var(MMD²_u)` and `R₂` (checked by enumerating
/// every sample of small discrete laws in the unit tests).
///
/// # Arguments
/// - `x`, `y`: the samples, `n >= 2` and `m >= 2` points of one dimension `D >= 1`
///   (`n, m >= 4` for the standard errors, else they are `NaN`).
/// - `bandwidths`: the `h` values, finite and positive; exactly [`MMD_BANDWIDTHS`] takes the
///   fast path (one `exp` per pair; agrees with the generic path to ~1e-13 relative).
///
/// Runs on the current rayon pool; the result is bit-identical for any number of threads.
/// Cost `O((n²/2 + m²/2 + nm) D)` time, `O((n + m) · 32 · (#bandwidths + 1))` extra memory.
///
/// # Errors
/// [`MetricsError::EmptySample`], [`MetricsError::TooFewPoints`] (fewer than 2 points),
/// [`MetricsError::ZeroDimension`], [`MetricsError::DimensionMismatch`] and
/// [`MetricsError::NonFinite`] naming the sample (`x` or `y`) and the point;
/// [`MetricsError::NoBandwidths`] and [`MetricsError::BadBandwidth`].
///
/// # Examples
/// ```
/// use covlab::stats::mmd2_unbiased;
/// use nalgebra::DVector;
///
/// // x = y = {0, 1} in 1-D, h = 1: A = B = e^{-1/2}, C = (1 + e^{-1/2})/2, MMD²_u = e^{-1/2} - 1.
/// let x = vec![DVector::from_vec(vec![0.0]), DVector::from_vec(vec![1.0])];
/// let est = mmd2_unbiased(&x, &x, &[1.0]).unwrap();
/// assert!((est.per_bandwidth[0].mmd2 - ((-0.5f64).exp() - 1.0)).abs() < 1e-15);
/// assert!(est.sum.se.is_nan()); // n < 4: no variance estimate
/// ```
pub fn mmd2_unbiased(
    x: &[DVector<f64>],
    y: &[DVector<f64>],
    bandwidths: &[f64],
) -> Result<MmdEstimate, MetricsError> {
    estimate(mmd2_raw(x, y, bandwidths, false)?, bandwidths)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn a_prepared_reference_gives_the_same_bits() {
        // mmd2_unbiased_with re-uses the reference's own pass: every number must be
        // mmd2_unbiased's, bit for bit, on the fast path and the generic one, and a sample
        // of the wrong dimension is refused naming `x`.
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let y = points(&mut rng, 300, 2, 3.0);
        for bw in [MMD_BANDWIDTHS.to_vec(), vec![0.7, 1.9]] {
            let prepared = MmdReference::new(&y, &bw).unwrap();
            for n in [5, 150, 301] {
                let x = points(&mut rng, n, 2, 3.5);
                let a = mmd2_unbiased(&x, &y, &bw).unwrap();
                let b = mmd2_unbiased_with(&x, &prepared).unwrap();
                let bits = |e: &MmdEstimate| {
                    let mut v = vec![
                        e.sum.mmd2.to_bits(),
                        e.sum.se.to_bits(),
                        e.sum.se_null.to_bits(),
                    ];
                    for p in &e.per_bandwidth {
                        v.extend([p.mmd2.to_bits(), p.se.to_bits(), p.se_null.to_bits()]);
                    }
                    v
                };
                assert_eq!(bits(&a), bits(&b), "n = {n}, bandwidths {bw:?}");
            }
        }
        let prepared = MmdReference::new(&y, &MMD_BANDWIDTHS).unwrap();
        let wrong = points(&mut rng, 10, 3, 1.0);
        let err = mmd2_unbiased_with(&wrong, &prepared)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains('x'), "{err}");
    }

    pub(crate) fn k_direct(a: &DVector<f64>, b: &DVector<f64>, h: f64) -> f64 {
        (-(a - b).norm_squared() / (2.0 * h * h)).exp()
    }

    pub(crate) fn points(
        rng: &mut ChaCha8Rng,
        n: usize,
        d: usize,
        scale: f64,
    ) -> Vec<DVector<f64>> {
        (0..n)
            .map(|_| DVector::from_fn(d, |_, _| scale * (rng.gen::<f64>() - 0.5)))
            .collect()
    }

    /// `(U, U² - θ̂², R̂₂)` from the definitions: θ̂² and the doubly-centred moments from
    /// averages over disjoint index tuples, O(n⁴ + m⁴) loops sharing no algebra with
    /// [`combine`].
    fn brute_force(x: &[DVector<f64>], y: &[DVector<f64>], h: f64) -> (f64, f64, f64) {
        let (n, m) = (x.len(), y.len());
        let (nf, mf) = (n as f64, m as f64);
        let kx = |i: usize, j: usize| k_direct(&x[i], &x[j], h);
        let ky = |i: usize, j: usize| k_direct(&y[i], &y[j], h);
        let kxy = |i: usize, l: usize| k_direct(&x[i], &y[l], h);
        let mut a = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    a += kx(i, j);
                }
            }
        }
        a /= nf * (nf - 1.0);
        let mut b = 0.0;
        for i in 0..m {
            for j in 0..m {
                if i != j {
                    b += ky(i, j);
                }
            }
        }
        b /= mf * (mf - 1.0);
        let mut c = 0.0;
        for i in 0..n {
            for l in 0..m {
                c += kxy(i, l);
            }
        }
        c /= nf * mf;
        let u = a + b - 2.0 * c;
        let distinct4 = |len: usize, k: &dyn Fn(usize, usize) -> f64| {
            let mut s = 0.0;
            for i in 0..len {
                for j in 0..len {
                    for p in 0..len {
                        for q in 0..len {
                            let idx = [i, j, p, q];
                            let all_distinct = (0..4).all(|u| (u + 1..4).all(|v| idx[u] != idx[v]));
                            if all_distinct {
                                s += k(i, j) * k(p, q);
                            }
                        }
                    }
                }
            }
            let l = len as f64;
            s / (l * (l - 1.0) * (l - 2.0) * (l - 3.0))
        };
        let a2 = distinct4(n, &kx);
        let b2 = distinct4(m, &ky);
        let mut c2 = 0.0;
        for i in 0..n {
            for l in 0..m {
                for p in 0..n {
                    for q in 0..m {
                        if i != p && l != q {
                            c2 += kxy(i, l) * kxy(p, q);
                        }
                    }
                }
            }
        }
        c2 /= nf * (nf - 1.0) * mf * (mf - 1.0);
        let mut ac = 0.0;
        for i in 0..n {
            for j in 0..n {
                for p in 0..n {
                    if i != j && p != i && p != j {
                        for l in 0..m {
                            ac += kx(i, j) * kxy(p, l);
                        }
                    }
                }
            }
        }
        ac /= nf * (nf - 1.0) * (nf - 2.0) * mf;
        let mut bc = 0.0;
        for l in 0..m {
            for q in 0..m {
                for r in 0..m {
                    if l != q && r != l && r != q {
                        for i in 0..n {
                            bc += ky(l, q) * kxy(i, r);
                        }
                    }
                }
            }
        }
        bc /= mf * (mf - 1.0) * (mf - 2.0) * nf;
        let theta2 = a2 + b2 + 4.0 * c2 + 2.0 * a * b - 4.0 * ac - 4.0 * bc;
        // E k̃² = E k(1,2)² - 2 E k(1,2) k(1,3) + E k(1,2) k(3,4) within a sample.
        let within_kt = |len: usize, k: &dyn Fn(usize, usize) -> f64| {
            let l = len as f64;
            let (mut sq, mut tri) = (0.0, 0.0);
            for i in 0..len {
                for j in 0..len {
                    if i == j {
                        continue;
                    }
                    sq += k(i, j) * k(i, j);
                    for p in 0..len {
                        if p != i && p != j {
                            tri += k(i, j) * k(i, p);
                        }
                    }
                }
            }
            sq / (l * (l - 1.0)) - 2.0 * tri / (l * (l - 1.0) * (l - 2.0)) + distinct4(len, k)
        };
        // E k̃_xy² = E K(1,1)² - E K(1,1) K(1,2) - E K(1,1) K(2,1) + E K(1,1) K(2,2).
        let (mut sq, mut same_x, mut same_y) = (0.0, 0.0, 0.0);
        for i in 0..n {
            for l in 0..m {
                sq += kxy(i, l) * kxy(i, l);
                for q in 0..m {
                    if q != l {
                        same_x += kxy(i, l) * kxy(i, q);
                    }
                }
                for p in 0..n {
                    if p != i {
                        same_y += kxy(i, l) * kxy(p, l);
                    }
                }
            }
        }
        let kt_xy =
            sq / (nf * mf) - same_x / (nf * mf * (mf - 1.0)) - same_y / (nf * (nf - 1.0) * mf) + c2;
        let r2 = 2.0 * within_kt(n, &kx) / (nf * (nf - 1.0))
            + 2.0 * within_kt(m, &ky) / (mf * (mf - 1.0))
            + 4.0 * kt_xy / (nf * mf);
        (u, u * u - theta2, r2)
    }

    #[test]
    fn variance_formula_matches_brute_force_definition() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (n, m) in [(4, 4), (6, 5), (5, 8)] {
            let x = points(&mut rng, n, 2, 3.0);
            let y: Vec<_> = points(&mut rng, m, 2, 3.0)
                .into_iter()
                .map(|p| p.add_scalar(0.4))
                .collect();
            let fast = mmd2_raw(&x, &y, &MMD_BANDWIDTHS, false).unwrap();
            for (b, &h) in MMD_BANDWIDTHS.iter().enumerate() {
                let (u, var, r2) = brute_force(&x, &y, h);
                let got = fast[b];
                // U, θ̂² and the E k̃² are O(1) averages of products in [0, 1]: both routes
                // round at ~1e-16 relative per term, so 1e-12 absolute is ample; the variances
                // are differences of such O(1) numbers, hence absolute too.
                assert!(
                    (got.mmd2 - u).abs() < 1e-12,
                    "n={n} m={m} h={h}: {} vs {u}",
                    got.mmd2
                );
                assert!(
                    (got.var - var).abs() < 1e-12,
                    "n={n} m={m} h={h}: var {} vs {var}",
                    got.var
                );
                assert!(
                    (got.var_null - r2).abs() < 1e-12,
                    "n={n} m={m} h={h}: var_null {} vs {r2}",
                    got.var_null
                );
            }
        }
    }

    /// Weighted enumeration of every sample of size 4 + 4 from small discrete laws: the exact
    /// expectations of U, U² and Var̂ (and so the unbiasedness claims) up to rounding.
    #[test]
    fn estimator_and_variance_are_exactly_unbiased() {
        let support_p = [(0.0, 0.5), (1.0, 0.3), (2.5, 0.2)];
        let support_q = [(0.0, 0.6), (1.5, 0.4)];
        for (label, q) in [
            ("same law", &support_p[..]),
            ("different laws", &support_q[..]),
        ] {
            let p = &support_p[..];
            let (n, m) = (4usize, 4usize);
            let total = p.len().pow(n as u32) * q.len().pow(m as u32);
            let (mut eu, mut eu2, mut ev, mut ev_null) = (0.0, 0.0, 0.0, 0.0);
            let mut mass = 0.0;
            for code in 0..total {
                let mut c = code;
                let mut w = 1.0;
                let mut draw = |sup: &[(f64, f64)]| {
                    let (v, pr) = sup[c % sup.len()];
                    c /= sup.len();
                    w *= pr;
                    DVector::from_vec(vec![v])
                };
                let x: Vec<_> = (0..n).map(|_| draw(p)).collect();
                let y: Vec<_> = (0..m).map(|_| draw(q)).collect();
                let r = mmd2_raw(&x, &y, &[1.0], true).unwrap()[0];
                eu += w * r.mmd2;
                eu2 += w * r.mmd2 * r.mmd2;
                ev += w * r.var;
                ev_null += w * r.var_null;
                mass += w;
            }
            // Population θ = E k(x,x') + E k(y,y') - 2 E k(x,y) over independent draws.
            let pair = |s: &[(f64, f64)], t: &[(f64, f64)]| {
                let mut e = 0.0;
                for &(a, pa) in s {
                    for &(b, pb) in t {
                        e += pa * pb * (-(a - b) * (a - b) / 2.0).exp();
                    }
                }
                e
            };
            let theta = pair(p, p) + pair(q, q) - 2.0 * pair(p, q);
            // Sums of ~6561 weighted O(1) terms: rounding ~1e-16 · 6561 < 1e-12.
            assert!((mass - 1.0).abs() < 1e-12);
            assert!(
                (eu - theta).abs() < 1e-12,
                "{label}: E U = {eu} vs θ = {theta}"
            );
            let true_var = eu2 - eu * eu;
            assert!(
                true_var > 1e-3,
                "{label}: the check needs a non-trivial variance"
            );
            assert!(
                (ev - true_var).abs() < 1e-12,
                "{label}: E Var̂ = {ev} vs Var U = {true_var}"
            );
            // R₂ = 2 E k̃_pp²/(n(n-1)) + 2 E k̃_qq²/(m(m-1)) + 4 E k̃_pq²/(nm), k̃ doubly centred.
            let kern = |a: f64, b: f64| (-(a - b) * (a - b) / 2.0).exp();
            let mean_k =
                |u: f64, t: &[(f64, f64)]| t.iter().map(|&(b, pb)| pb * kern(u, b)).sum::<f64>();
            let kt2 = |s: &[(f64, f64)], t: &[(f64, f64)]| {
                let c = pair(s, t);
                let mut e = 0.0;
                for &(a, pa) in s {
                    for &(b, pb) in t {
                        let kt = kern(a, b) - mean_k(a, t) - mean_k(b, s) + c;
                        e += pa * pb * kt * kt;
                    }
                }
                e
            };
            let (nf, mf) = (n as f64, m as f64);
            let r2 = 2.0 * kt2(p, p) / (nf * (nf - 1.0))
                + 2.0 * kt2(q, q) / (mf * (mf - 1.0))
                + 4.0 * kt2(p, q) / (nf * mf);
            assert!(
                (ev_null - r2).abs() < 1e-12,
                "{label}: E R̂₂ = {ev_null} vs R₂ = {r2}"
            );
            if label == "same law" {
                // Equal laws: the first-order part vanishes and R₂ is the whole variance.
                assert!((r2 - true_var).abs() < 1e-12, "{r2} vs {true_var}");
            } else {
                assert!(true_var - r2 > 1e-3, "the first-order part must be visible");
            }
        }
    }

    #[test]
    fn fast_path_sums_match_generic_path() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        // Spread 40 in D = 2: distances cover every flush threshold.
        let x = points(&mut rng, 300, 2, 40.0);
        let y = points(&mut rng, 257, 2, 40.0);
        let (fx, fy) = (flatten(&x, 2), flatten(&y, 2));
        let generic = GenericKernels {
            inv_two_h2: MMD_BANDWIDTHS.iter().map(|h| 1.0 / (2.0 * h * h)).collect(),
        };
        let rel = |a: &[f64], b: &[f64], what: &str| {
            for (i, (&u, &v)) in a.iter().zip(b).enumerate() {
                // Sums of positive terms keep the per-term 1e-13 relative error.
                assert!((u - v).abs() <= 1e-12 * v.abs(), "{what}[{i}]: {u} vs {v}");
            }
        };
        let (f, g) = (
            within_pass(&fx, 300, 2, &DefaultKernels),
            within_pass(&fx, 300, 2, &generic),
        );
        rel(&f.rows, &g.rows, "within rows");
        rel(&f.sq, &g.sq, "within sq");
        let (f, g) = (
            cross_pass(&fx, 300, &fy, 257, 2, &DefaultKernels),
            cross_pass(&fx, 300, &fy, 257, 2, &generic),
        );
        rel(&f.rows, &g.rows, "cross rows");
        rel(&f.cols, &g.cols, "cross cols");
        rel(&f.sq, &g.sq, "cross sq");
        // And the public results: MMD² and Var̂ are differences of O(1) sums, so absolute.
        let a = mmd2_raw(&x, &y, &MMD_BANDWIDTHS, false).unwrap();
        let b = mmd2_raw(&x, &y, &MMD_BANDWIDTHS, true).unwrap();
        for (f, g) in a.iter().zip(&b) {
            // MMD² ≤ 4 per kernel (sum: 20) from sums with 1e-13 relative error; the
            // variances are ~1e-5 here, so 1e-15 absolute is ~1e-10 relative.
            assert!(
                (f.mmd2 - g.mmd2).abs() < 1e-12
                    && (f.var - g.var).abs() < 1e-15
                    && (f.var_null - g.var_null).abs() < 1e-15,
                "{f:?} vs {g:?}"
            );
        }
    }

    #[test]
    fn small_samples_have_nan_se_and_doc_value() {
        let x = vec![DVector::from_vec(vec![0.0]), DVector::from_vec(vec![1.0])];
        let e = mmd2_unbiased(&x, &x, &[1.0]).unwrap();
        // A = B = e^{-1/2}, C = (1 + e^{-1/2})/2: exact up to one rounding of exp.
        assert!((e.per_bandwidth[0].mmd2 - ((-0.5f64).exp() - 1.0)).abs() < 1e-15);
        assert!(e.per_bandwidth[0].se.is_nan() && e.sum.se.is_nan() && e.sum.se_null.is_nan());
        assert_eq!(e.bandwidths, vec![1.0]);
    }
}
