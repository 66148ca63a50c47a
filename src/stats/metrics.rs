//! Sample-quality metrics: unbiased MMD² with Gaussian kernels and its standard errors,
//! the Fréchet distance of sample moments, the exact mean log-likelihood under q_0, and
//! unbiased sample moments.
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
//!
//! # Fréchet distance (Dowson and Landau 1982)
//! `d² = |μ₁ - μ₂|² + tr(S₁ + S₂ - 2 (S₁^{1/2} S₂ S₁^{1/2})^{1/2})` with symmetric
//! eigendecompositions; see [`frechet_gaussian_sq`].

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::data::mixture::{Mixture, SYMMETRY_TOL};
use crate::numeric::{log_sum_exp, NeumaierSum};

/// The default MMD bandwidths `h ∈ {2⁻², 2⁻¹, 1, 2, 4}` (OCM paper, section 5.1).
///
/// With exactly this set (same order) [`mmd2_unbiased`] takes the fast path: one `exp` per
/// pair at `h = 4`, the others by repeated squaring.
pub const MMD_BANDWIDTHS: [f64; 5] = [0.25, 0.5, 1.0, 2.0, 4.0];

/// Relative tolerance below which a negative eigenvalue of an input covariance is taken as
/// round-off and clamped to zero: `λ >= -PSD_TOL · max |λ|`.
pub const PSD_TOL: f64 = 1e-10;

/// Kernel values `k = exp(-a)` with `a > FLUSH_ARG` (`k < 2^-500`) are set to zero.
const FLUSH_ARG: f64 = 500.0 * std::f64::consts::LN_2;
/// `2^-125`: below it, `e⁴ < 2^-500` is flushed (the fast path's squaring chain).
const FLUSH_ROOT4: f64 = f64::from_bits((1023 - 125) << 52);

/// Errors of the metrics.
#[derive(Clone, Debug, PartialEq, Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A sample has no points.
    #[error("metrics: sample `{sample}` is empty")]
    EmptySample {
        /// Which sample (`x`, `y`).
        sample: &'static str,
    },
    /// A sample has fewer points than the statistic needs.
    #[error("metrics: sample `{sample}` has {n} point(s), need at least {need}")]
    TooFewPoints {
        /// Which sample.
        sample: &'static str,
        /// Its number of points.
        n: usize,
        /// The number needed.
        need: usize,
    },
    /// The points of a sample have dimension zero.
    #[error("metrics: `{sample}[0]` has dimension 0, need >= 1")]
    ZeroDimension {
        /// Which sample.
        sample: &'static str,
    },
    /// A point has a different dimension from the first point of `x` (or from the model).
    #[error("metrics: `{sample}[{index}]` has dimension {found}, expected {expected}")]
    DimensionMismatch {
        /// Which sample.
        sample: &'static str,
        /// Index of the point.
        index: usize,
        /// Its dimension.
        found: usize,
        /// The expected dimension.
        expected: usize,
    },
    /// A point has a NaN or infinite coordinate.
    #[error("metrics: `{sample}[{index}]` has a non-finite entry")]
    NonFinite {
        /// Which sample.
        sample: &'static str,
        /// Index of the point.
        index: usize,
    },
    /// The bandwidth list is empty.
    #[error("metrics: `bandwidths` is empty (need at least one)")]
    NoBandwidths,
    /// A bandwidth is not finite and positive.
    #[error("metrics: `bandwidths[{index}]` = {value} must be finite and > 0")]
    BadBandwidth {
        /// Its index in the list.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A mean or covariance argument has the wrong shape.
    #[error("metrics: `{field}` is {rows}x{cols}, expected {expected_rows}x{expected_cols}")]
    ShapeMismatch {
        /// Which argument (`mu1`, `cov1`, `mu2`, `cov2`).
        field: &'static str,
        /// Rows found.
        rows: usize,
        /// Columns found.
        cols: usize,
        /// Rows expected.
        expected_rows: usize,
        /// Columns expected.
        expected_cols: usize,
    },
    /// A mean or covariance argument has a NaN or infinite entry.
    #[error("metrics: `{field}` has a non-finite entry")]
    NonFiniteArgument {
        /// Which argument.
        field: &'static str,
    },
    /// A covariance is not symmetric.
    #[error("metrics: `{field}` is not symmetric (entry ({row}, {col}) differs from its transpose by {diff:e})")]
    NotSymmetric {
        /// Which argument.
        field: &'static str,
        /// Row of the worst entry.
        row: usize,
        /// Column of the worst entry.
        col: usize,
        /// The asymmetry.
        diff: f64,
    },
    /// A covariance has an eigenvalue below `-PSD_TOL · max |λ|`.
    #[error(
        "metrics: `{field}` is not positive semidefinite (smallest eigenvalue {min_eigenvalue:e})"
    )]
    NotPositiveSemidefinite {
        /// Which argument.
        field: &'static str,
        /// Its smallest eigenvalue.
        min_eigenvalue: f64,
    },
    /// The symmetric eigensolver did not converge.
    #[error("metrics: the symmetric eigendecomposition of `{field}` did not converge")]
    EigenNoConvergence {
        /// Which matrix (`cov1`, `cov2`, or `cov1^1/2 cov2 cov1^1/2`).
        field: &'static str,
    },
}

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

/// A sample mean with its standard error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanEstimate {
    /// The mean `v̄ = (1/n) Σ v_i`.
    pub value: f64,
    /// Its standard error `sqrt(Σ (v_i - v̄)² / (n - 1)) / sqrt(n)`.
    pub se: f64,
}

/// Checks a sample and returns its dimension: non-empty, at least `need` points, every point
/// of dimension `expected` (or that of the first point) >= 1, all entries finite.
fn validate(
    sample: &'static str,
    x: &[DVector<f64>],
    expected: Option<usize>,
    need: usize,
) -> Result<usize, MetricsError> {
    let first = x.first().ok_or(MetricsError::EmptySample { sample })?;
    if x.len() < need {
        return Err(MetricsError::TooFewPoints {
            sample,
            n: x.len(),
            need,
        });
    }
    let d = match expected {
        Some(d) => d,
        None if first.is_empty() => return Err(MetricsError::ZeroDimension { sample }),
        None => first.len(),
    };
    for (index, p) in x.iter().enumerate() {
        if p.len() != d {
            return Err(MetricsError::DimensionMismatch {
                sample,
                index,
                found: p.len(),
                expected: d,
            });
        }
        if p.iter().any(|v| !v.is_finite()) {
            return Err(MetricsError::NonFinite { sample, index });
        }
    }
    Ok(d)
}

/// The points of a sample in one contiguous coordinate-major buffer:
/// `out[c * n + i]` is coordinate `c` of point `i` (so distance loops run over contiguous memory).
fn flatten(x: &[DVector<f64>], d: usize) -> Vec<f64> {
    let n = x.len();
    let mut out = vec![0.0; n * d];
    for (i, p) in x.iter().enumerate() {
        for (c, &v) in p.iter().enumerate() {
            out[c * n + i] = v;
        }
    }
    out
}

/// Columns per tile: the kernel values of one row against `TILE` columns are evaluated into
/// buffers before being accumulated, so the accumulation loops vectorise.
const TILE: usize = 256;

/// A family of kernels of the squared distance, evaluated together: `width()` values per
/// pair, the last being the sum of the others.
trait PairKernel: Sync {
    /// Number of values per pair (bandwidths + 1).
    fn width(&self) -> usize;
    /// For each `j < d2.len()`, writes kernel `k` at squared distance `d2[j]` into
    /// `out[k * TILE + j]`.
    fn eval_tile(&self, d2: &[f64], out: &mut [f64]);
}

/// [`MMD_BANDWIDTHS`]: one `exp` at `h = 4`, then `k_{h/2} = k_h⁴` by two squarings.
struct DefaultKernels;

/// `e⁴`, flushed to zero below `2^-500`.
#[inline(always)]
fn quartic_flushed(e: f64) -> f64 {
    let s = e * e;
    if e < FLUSH_ROOT4 {
        0.0
    } else {
        s * s
    }
}

impl PairKernel for DefaultKernels {
    fn width(&self) -> usize {
        6
    }

    fn eval_tile(&self, d2: &[f64], out: &mut [f64]) {
        let len = d2.len();
        let (k025, rest) = out.split_at_mut(TILE);
        let (k05, rest) = rest.split_at_mut(TILE);
        let (k1, rest) = rest.split_at_mut(TILE);
        let (k2, rest) = rest.split_at_mut(TILE);
        let (k4, ksum) = rest.split_at_mut(TILE);
        // h = 4: 1/(2h²) = 1/32 exactly; the only exp of the pair.
        for (o, &s) in k4[..len].iter_mut().zip(d2) {
            let a = s * (1.0 / 32.0);
            *o = if a > FLUSH_ARG { 0.0 } else { (-a).exp() };
        }
        for j in 0..len {
            let e4 = k4[j];
            let e2 = quartic_flushed(e4);
            let e1 = quartic_flushed(e2);
            let e05 = quartic_flushed(e1);
            let e025 = quartic_flushed(e05);
            k2[j] = e2;
            k1[j] = e1;
            k05[j] = e05;
            k025[j] = e025;
            ksum[j] = e025 + e05 + e1 + e2 + e4;
        }
    }
}

/// Any bandwidths: one `exp` per bandwidth and pair.
struct GenericKernels {
    /// `1 / (2 h²)` per bandwidth.
    inv_two_h2: Vec<f64>,
}

impl PairKernel for GenericKernels {
    fn width(&self) -> usize {
        self.inv_two_h2.len() + 1
    }

    fn eval_tile(&self, d2: &[f64], out: &mut [f64]) {
        let len = d2.len();
        let nb = self.inv_two_h2.len();
        let (kernels, ksum) = out.split_at_mut(nb * TILE);
        ksum[..len].iter_mut().for_each(|s| *s = 0.0);
        for (kb, &c) in kernels.chunks_exact_mut(TILE).zip(&self.inv_two_h2) {
            for ((o, s), &r) in kb[..len].iter_mut().zip(ksum.iter_mut()).zip(d2) {
                let a = r * c;
                *o = if a > FLUSH_ARG { 0.0 } else { (-a).exp() };
                *s += *o;
            }
        }
    }
}

/// Squared distances from point `pi` (its coordinates) to points `j0..j0 + out.len()` of a
/// coordinate-major buffer of `n` points.
#[inline(always)]
fn sq_dists(pi: &[f64], pts: &[f64], n: usize, j0: usize, out: &mut [f64]) {
    let len = out.len();
    for (c, &pc) in pi.iter().enumerate() {
        let col = &pts[c * n + j0..c * n + j0 + len];
        if c == 0 {
            for (o, &q) in out.iter_mut().zip(col) {
                let t = pc - q;
                *o = t * t;
            }
        } else {
            for (o, &q) in out.iter_mut().zip(col) {
                let t = pc - q;
                *o += t * t;
            }
        }
    }
}

/// Adds `v` into `col` and returns `(Σ v, Σ v²)`, summed in a fixed order (four interleaved
/// lanes, then pairwise): one pass over `v`, vectorised, the same on every call.
#[inline(always)]
fn accumulate(v: &[f64], col: &mut [f64]) -> (f64, f64) {
    let mut s = [0.0f64; 4];
    let mut q = [0.0f64; 4];
    let mut vc = v.chunks_exact(4);
    let mut cc = col.chunks_exact_mut(4);
    for (a, c) in (&mut vc).zip(&mut cc) {
        for l in 0..4 {
            s[l] += a[l];
            q[l] += a[l] * a[l];
            c[l] += a[l];
        }
    }
    let (mut ts, mut tq) = (0.0, 0.0);
    for (&x, c) in vc.remainder().iter().zip(cc.into_remainder()) {
        ts += x;
        tq += x * x;
        *c += x;
    }
    (
        ((s[0] + s[1]) + (s[2] + s[3])) + ts,
        ((q[0] + q[1]) + (q[2] + q[3])) + tq,
    )
}

/// Workspace of one chunk: squared distances and kernel values of one tile.
struct TileBuf {
    d2: Vec<f64>,
    vals: Vec<f64>,
}

impl TileBuf {
    fn new(w: usize) -> Self {
        Self {
            d2: vec![0.0; TILE],
            vals: vec![0.0; w * TILE],
        }
    }
}

/// Row `i` (coordinates `pi`) against columns `j0..j1` of `pts` (`n` points): adds the
/// kernel values to `row[k]`, to `cols[k * stride + (j - off)]` and their squares to `sq[k]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row_against<K: PairKernel>(
    kern: &K,
    pi: &[f64],
    pts: &[f64],
    n: usize,
    (j0, j1): (usize, usize),
    row: &mut [f64],
    (cols, stride, off): (&mut [f64], usize, usize),
    sq: &mut [f64],
    buf: &mut TileBuf,
) {
    let w = kern.width();
    let mut t0 = j0;
    while t0 < j1 {
        let len = (j1 - t0).min(TILE);
        let d2 = &mut buf.d2[..len];
        sq_dists(pi, pts, n, t0, d2);
        kern.eval_tile(d2, &mut buf.vals);
        for k in 0..w {
            let v = &buf.vals[k * TILE..k * TILE + len];
            let c = &mut cols[k * stride + (t0 - off)..k * stride + (t0 - off) + len];
            let (s, q) = accumulate(v, c);
            row[k] += s;
            sq[k] += q;
        }
        t0 += len;
    }
}

/// Rows per parallel chunk: about 32 chunks, at least 64 rows. Depends on `n` only, never on
/// the thread count, so the reduction order is fixed.
fn rows_per_chunk(n: usize) -> usize {
    n.div_ceil(32).max(64)
}

/// The sums one pass over a block of pairs produces, for every kernel of the family
/// (kernel-major: entry `k * len + i`).
struct PassSums {
    /// Row sums `Σ_j k(p_i, q_j)` (`j ≠ i` within a sample), `w × n`.
    rows: Vec<f64>,
    /// Column sums `Σ_i k(p_i, q_j)`, `w × m` (cross pass only; empty within).
    cols: Vec<f64>,
    /// `Σ k²` over the pairs visited (within: `i < j` only), per kernel.
    sq: Vec<f64>,
}

/// One sample against itself, pairs `i < j` visited once: row sums `s_i = Σ_{j≠i} k(p_i,p_j)`
/// (row `i` gets the pair from both ends) and `Σ_{i<j} k²`.
fn within_pass<K: PairKernel>(pts: &[f64], n: usize, d: usize, kern: &K) -> PassSums {
    let w = kern.width();
    let rpc = rows_per_chunk(n);
    let starts: Vec<usize> = (0..n).step_by(rpc).collect();
    // Per chunk [start, end): the sums of rows start..n it touches (kernel-major, stride
    // n - start) and Σ k² over its pairs.
    let parts: Vec<(Vec<f64>, Vec<f64>)> = starts
        .par_iter()
        .map(|&start| {
            let end = (start + rpc).min(n);
            let stride = n - start;
            let mut part = vec![0.0; w * stride];
            let mut sq = vec![0.0; w];
            let mut acc = vec![0.0; w];
            let mut buf = TileBuf::new(w);
            let mut pi = vec![0.0; d];
            for i in start..end {
                for (c, v) in pi.iter_mut().enumerate() {
                    *v = pts[c * n + i];
                }
                acc.iter_mut().for_each(|a| *a = 0.0);
                row_against(
                    kern,
                    &pi,
                    pts,
                    n,
                    (i + 1, n),
                    &mut acc,
                    (&mut part, stride, start),
                    &mut sq,
                    &mut buf,
                );
                for k in 0..w {
                    part[k * stride + (i - start)] += acc[k];
                }
            }
            (part, sq)
        })
        .collect();
    // Fixed-order reduction: chunk 0, 1, 2, ...
    let mut rows = vec![0.0; n * w];
    let mut sq = vec![0.0; w];
    for (&start, (part, part_sq)) in starts.iter().zip(&parts) {
        let stride = n - start;
        for k in 0..w {
            for (r, p) in rows[k * n + start..(k + 1) * n]
                .iter_mut()
                .zip(&part[k * stride..(k + 1) * stride])
            {
                *r += p;
            }
        }
        for (s, p) in sq.iter_mut().zip(part_sq) {
            *s += p;
        }
    }
    PassSums {
        rows,
        cols: Vec::new(),
        sq,
    }
}

/// Sample `p` (n points) against sample `q` (m points), all `nm` pairs: row sums over `q`,
/// column sums over `p`, and `Σ k²`.
fn cross_pass<K: PairKernel>(
    p: &[f64],
    n: usize,
    q: &[f64],
    m: usize,
    d: usize,
    kern: &K,
) -> PassSums {
    let w = kern.width();
    let rpc = rows_per_chunk(n);
    let starts: Vec<usize> = (0..n).step_by(rpc).collect();
    // Per chunk: its rows' sums (kernel-major, stride end - start), the column sums over its
    // rows (stride m) and Σ k².
    let parts: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = starts
        .par_iter()
        .map(|&start| {
            let end = (start + rpc).min(n);
            let len = end - start;
            let mut own = vec![0.0; w * len];
            let mut cols = vec![0.0; w * m];
            let mut sq = vec![0.0; w];
            let mut acc = vec![0.0; w];
            let mut buf = TileBuf::new(w);
            let mut pi = vec![0.0; d];
            for i in start..end {
                for (c, v) in pi.iter_mut().enumerate() {
                    *v = p[c * n + i];
                }
                acc.iter_mut().for_each(|a| *a = 0.0);
                row_against(
                    kern,
                    &pi,
                    q,
                    m,
                    (0, m),
                    &mut acc,
                    (&mut cols, m, 0),
                    &mut sq,
                    &mut buf,
                );
                for k in 0..w {
                    own[k * len + (i - start)] = acc[k];
                }
            }
            (own, cols, sq)
        })
        .collect();
    let mut rows = vec![0.0; n * w];
    let mut cols = vec![0.0; m * w];
    let mut sq = vec![0.0; w];
    for (&start, (own, part_cols, part_sq)) in starts.iter().zip(&parts) {
        let len = own.len() / w;
        for k in 0..w {
            rows[k * n + start..k * n + start + len].copy_from_slice(&own[k * len..(k + 1) * len]);
        }
        for (c, o) in cols.iter_mut().zip(part_cols) {
            *c += o;
        }
        for (s, p) in sq.iter_mut().zip(part_sq) {
            *s += p;
        }
    }
    PassSums { rows, cols, sq }
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

/// The three passes and the per-kernel combination, on validated, flattened inputs.
fn mmd_with<K: PairKernel>(
    x: &[f64],
    n: usize,
    y: &[f64],
    m: usize,
    d: usize,
    kern: &K,
) -> Vec<RawMmd> {
    let xx = within_pass(x, n, d, kern);
    let yy = within_pass(y, m, d, kern);
    let xy = cross_pass(x, n, y, m, d, kern);
    (0..kern.width())
        .map(|k| combine(&xx, &yy, &xy, n, m, k))
        .collect()
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
    if bandwidths.is_empty() {
        return Err(MetricsError::NoBandwidths);
    }
    for (index, &value) in bandwidths.iter().enumerate() {
        if !(value.is_finite() && value > 0.0) {
            return Err(MetricsError::BadBandwidth { index, value });
        }
    }
    let (n, m) = (x.len(), y.len());
    let (fx, fy) = (flatten(x, d), flatten(y, d));
    let is_default = bandwidths.len() == MMD_BANDWIDTHS.len()
        && bandwidths
            .iter()
            .zip(&MMD_BANDWIDTHS)
            .all(|(a, b)| a.to_bits() == b.to_bits());
    Ok(if is_default && !force_generic {
        mmd_with(&fx, n, &fy, m, d, &DefaultKernels)
    } else {
        let kern = GenericKernels {
            inv_two_h2: bandwidths.iter().map(|h| 1.0 / (2.0 * h * h)).collect(),
        };
        mmd_with(&fx, n, &fy, m, d, &kern)
    })
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
/// use covlab::stats::metrics::mmd2_unbiased;
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
    let mut values: Vec<MmdValue> = mmd2_raw(x, y, bandwidths, false)?
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

/// Unbiased sample mean and covariance.
///
/// # Formula
/// ```text
/// x̄ = (1/n) Σ x_i,   S = 1/(n-1) Σ (x_i - x̄)(x_i - x̄)ᵀ      (two passes, centred)
/// ```
///
/// # Errors
/// [`MetricsError::EmptySample`], [`MetricsError::TooFewPoints`] (`n < 2`),
/// [`MetricsError::ZeroDimension`], [`MetricsError::DimensionMismatch`],
/// [`MetricsError::NonFinite`] (sample name `x`).
///
/// # Examples
/// ```
/// use covlab::stats::metrics::sample_moments;
/// use nalgebra::DVector;
///
/// let x: Vec<_> = [1.0, 2.0, 6.0].iter().map(|&v| DVector::from_vec(vec![v])).collect();
/// let (mean, cov) = sample_moments(&x).unwrap();
/// assert!((mean[0] - 3.0).abs() < 1e-15);
/// assert!((cov[(0, 0)] - 7.0).abs() < 1e-14); // (4 + 1 + 9) / 2
/// ```
pub fn sample_moments(x: &[DVector<f64>]) -> Result<(DVector<f64>, DMatrix<f64>), MetricsError> {
    moments_named("x", x)
}

fn moments_named(
    sample: &'static str,
    x: &[DVector<f64>],
) -> Result<(DVector<f64>, DMatrix<f64>), MetricsError> {
    let d = validate(sample, x, None, 2)?;
    let n = x.len() as f64;
    let mut mean = DVector::zeros(d);
    for p in x {
        mean += p;
    }
    mean /= n;
    let mut cov = DMatrix::zeros(d, d);
    let mut r = DVector::zeros(d);
    for p in x {
        r.copy_from(p);
        r -= &mean;
        cov.syger(1.0, &r, &r, 1.0);
    }
    cov.fill_upper_triangle_with_lower_triangle();
    cov /= n - 1.0;
    Ok((mean, cov))
}

/// Checks a mean and covariance argument of dimension `d`.
fn check_gaussian(
    mu: &DVector<f64>,
    mu_name: &'static str,
    cov: &DMatrix<f64>,
    cov_name: &'static str,
    d: usize,
) -> Result<(), MetricsError> {
    if mu.len() != d {
        return Err(MetricsError::ShapeMismatch {
            field: mu_name,
            rows: mu.len(),
            cols: 1,
            expected_rows: d,
            expected_cols: 1,
        });
    }
    if cov.nrows() != d || cov.ncols() != d {
        return Err(MetricsError::ShapeMismatch {
            field: cov_name,
            rows: cov.nrows(),
            cols: cov.ncols(),
            expected_rows: d,
            expected_cols: d,
        });
    }
    if mu.iter().any(|v| !v.is_finite()) {
        return Err(MetricsError::NonFiniteArgument { field: mu_name });
    }
    if cov.iter().any(|v| !v.is_finite()) {
        return Err(MetricsError::NonFiniteArgument { field: cov_name });
    }
    let scale = cov.amax().max(f64::MIN_POSITIVE);
    let mut worst = (0, 0, 0.0f64);
    for i in 0..d {
        for j in 0..i {
            let diff = (cov[(i, j)] - cov[(j, i)]).abs();
            if diff > worst.2 {
                worst = (i, j, diff);
            }
        }
    }
    if worst.2 > SYMMETRY_TOL * scale {
        return Err(MetricsError::NotSymmetric {
            field: cov_name,
            row: worst.0,
            col: worst.1,
            diff: worst.2,
        });
    }
    Ok(())
}

/// Eigenvalues and eigenvectors of the symmetric part of `m`.
fn sym_eigen(
    m: &DMatrix<f64>,
    field: &'static str,
) -> Result<SymmetricEigen<f64, nalgebra::Dyn>, MetricsError> {
    let sym = (m + m.transpose()) * 0.5;
    SymmetricEigen::try_new(sym, f64::EPSILON, 0).ok_or(MetricsError::EigenNoConvergence { field })
}

/// Eigenvalues with round-off negatives (`>= -PSD_TOL · max |λ|`) clamped to 0.
fn clamp_psd(vals: &DVector<f64>, field: &'static str) -> Result<DVector<f64>, MetricsError> {
    let max_abs = vals.amax();
    let min = vals.min();
    if min < -PSD_TOL * max_abs {
        return Err(MetricsError::NotPositiveSemidefinite {
            field,
            min_eigenvalue: min,
        });
    }
    Ok(vals.map(|v| v.max(0.0)))
}

/// Squared Fréchet (2-Wasserstein) distance between `N(mu1, cov1)` and `N(mu2, cov2)`.
///
/// # Formula
/// ```text
/// d² = |μ₁ - μ₂|² + tr S₁ + tr S₂ - 2 tr (S₁^{1/2} S₂ S₁^{1/2})^{1/2}
/// S₁^{1/2} = U diag(sqrt λ) Uᵀ   from S₁ = U diag(λ) Uᵀ
/// tr (M)^{1/2} = Σ sqrt(λ_i(M)),  M = S₁^{1/2} S₂ S₁^{1/2} (symmetrised)
/// ```
/// Eigenvalues of `S₁`, `S₂` in `[-PSD_TOL · max|λ|, 0)` are round-off and clamped to 0;
/// those of `M` (PSD by construction) are clamped to 0 whatever their size. The result is
/// clamped to `>= 0` (for `S₁ = S₂`, `μ₁ = μ₂` it is a round-off-sized number otherwise).
///
/// # Errors
/// [`MetricsError::ShapeMismatch`] (dimension taken from `mu1`, which must be >= 1),
/// [`MetricsError::NonFiniteArgument`], [`MetricsError::NotSymmetric`] (relative tolerance
/// [`SYMMETRY_TOL`]), [`MetricsError::NotPositiveSemidefinite`],
/// [`MetricsError::EigenNoConvergence`].
///
/// # Examples
/// ```
/// use covlab::stats::metrics::frechet_gaussian_sq;
/// use nalgebra::{DMatrix, DVector};
///
/// // 1-D: (μ₁ - μ₂)² + (σ₁ - σ₂)² = 1 + (2 - 3)² = 2.
/// let d2 = frechet_gaussian_sq(
///     &DVector::from_vec(vec![0.0]), &DMatrix::from_element(1, 1, 4.0),
///     &DVector::from_vec(vec![1.0]), &DMatrix::from_element(1, 1, 9.0),
/// ).unwrap();
/// assert!((d2 - 2.0).abs() < 1e-13);
/// ```
pub fn frechet_gaussian_sq(
    mu1: &DVector<f64>,
    cov1: &DMatrix<f64>,
    mu2: &DVector<f64>,
    cov2: &DMatrix<f64>,
) -> Result<f64, MetricsError> {
    let d = mu1.len();
    if d == 0 {
        return Err(MetricsError::ShapeMismatch {
            field: "mu1",
            rows: 0,
            cols: 1,
            expected_rows: 1,
            expected_cols: 1,
        });
    }
    check_gaussian(mu1, "mu1", cov1, "cov1", d)?;
    check_gaussian(mu2, "mu2", cov2, "cov2", d)?;
    let e1 = sym_eigen(cov1, "cov1")?;
    let l1 = clamp_psd(&e1.eigenvalues, "cov1")?;
    let e2 = sym_eigen(cov2, "cov2")?;
    let l2 = clamp_psd(&e2.eigenvalues, "cov2")?;
    let root1 =
        &e1.eigenvectors * DMatrix::from_diagonal(&l1.map(f64::sqrt)) * e1.eigenvectors.transpose();
    let mid = &root1 * cov2 * &root1;
    let em = sym_eigen(&mid, "cov1^1/2 cov2 cov1^1/2")?;
    let cross: f64 = em.eigenvalues.iter().map(|v| v.max(0.0).sqrt()).sum();
    let mean_term = (mu1 - mu2).norm_squared();
    Ok((mean_term + l1.sum() + l2.sum() - 2.0 * cross).max(0.0))
}

/// Squared Fréchet distance between the sample moments of `x` and `y`: the closed form
/// [`frechet_gaussian_sq`] at the unbiased sample means and covariances ([`sample_moments`]).
///
/// # Formula
/// ```text
/// d² = |x̄ - ȳ|² + tr(S_x + S_y - 2 (S_x^{1/2} S_y S_x^{1/2})^{1/2}),   S = 1/(n-1) Σ (x_i - x̄)(x_i - x̄)ᵀ
/// ```
/// A plug-in estimate: biased upwards by `O(1/n)` at equal distributions.
///
/// When a sample has fewer points than dimensions (image data), the same number is computed
/// from Gram matrices instead of `D x D` eigendecompositions: with the centred, scaled rows
/// `X = (x_i - x̄)ᵀ / sqrt(n-1)` (`n x D`) and `Y` likewise, `S_x = XᵀX`, `S_y = YᵀY`, the
/// eigenvalues of `S_x^{1/2} S_y S_x^{1/2}` are the squared singular values of `G = X Yᵀ`
/// (`n x m`), so
/// ```text
/// d² = |x̄ - ȳ|² + ||X||_F² + ||Y||_F² - 2 Σ σ_i(G)      (singular values of G)
/// ```
/// at `O(n m D + n m min(n, m))` instead of `O(D³)`, and more accurately: the `D x D` route
/// takes square roots of the (round-off) zero eigenvalues of a rank-deficient
/// `S_x^{1/2} S_y S_x^{1/2}`, an `O(sqrt(eps))` error each.
///
/// # Errors
/// As [`sample_moments`] for each sample (`x`, `y`, at least 2 points each),
/// [`MetricsError::DimensionMismatch`] if the dimensions differ, and as
/// [`frechet_gaussian_sq`].
pub fn frechet_distance_sq(x: &[DVector<f64>], y: &[DVector<f64>]) -> Result<f64, MetricsError> {
    let d = validate("x", x, None, 2)?;
    validate("y", y, Some(d), 2)?;
    if x.len().min(y.len()) < d {
        return frechet_gram_sq(x, y);
    }
    let (mx, sx) = moments_named("x", x)?;
    let (my, sy) = moments_named("y", y)?;
    frechet_gaussian_sq(&mx, &sx, &my, &sy)
}

/// Centred rows scaled by `1/sqrt(n-1)` (`n x D`) and the mean.
fn centred_rows(x: &[DVector<f64>]) -> (DMatrix<f64>, DVector<f64>) {
    let n = x.len();
    let d = x[0].len();
    let mut mean = DVector::zeros(d);
    for p in x {
        mean += p;
    }
    mean /= n as f64;
    let s = 1.0 / ((n - 1) as f64).sqrt();
    let m = DMatrix::from_fn(n, d, |i, j| (x[i][j] - mean[j]) * s);
    (m, mean)
}

/// [`frechet_distance_sq`] by Gram matrices (validated samples).
fn frechet_gram_sq(x: &[DVector<f64>], y: &[DVector<f64>]) -> Result<f64, MetricsError> {
    let (xm, mx) = centred_rows(x);
    let (ym, my) = centred_rows(y);
    let g = &xm * ym.transpose(); // n x m
                                  // The nuclear norm from the singular values of G directly: its zero singular values come
                                  // out as O(eps ||G||), where square roots of the eigenvalues of G Gᵀ would give O(sqrt(eps)).
    let sv = g
        .try_svd(false, false, f64::EPSILON, 0)
        .ok_or(MetricsError::EigenNoConvergence {
            field: "G = X Yᵀ"
        })?;
    let cross: f64 = sv.singular_values.iter().sum();
    let mean_term = (&mx - &my).norm_squared();
    Ok((mean_term + xm.norm_squared() + ym.norm_squared() - 2.0 * cross).max(0.0))
}

/// Exact mean log-likelihood of a sample under the mixture `q0`, with its standard error.
///
/// # Formula
/// ```text
/// v_i = ln q0(x_i) = ln Σ_k π_k N(x_i; μ_k, Σ_k)   (log-sum-exp)
/// value = (1/n) Σ v_i,   se = sqrt(Σ (v_i - value)² / (n - 1)) / sqrt(n)
/// ```
/// For exact samples of `q0` the value estimates `-H(q0)` (the negative entropy).
///
/// # Errors
/// [`MetricsError::EmptySample`], [`MetricsError::TooFewPoints`] (`n < 2`),
/// [`MetricsError::DimensionMismatch`] (against `q0.dim()`), [`MetricsError::NonFinite`],
/// all naming sample `x`.
pub fn mean_log_likelihood(q0: &Mixture, x: &[DVector<f64>]) -> Result<MeanEstimate, MetricsError> {
    validate("x", x, Some(q0.dim()), 2)?;
    let mut terms = vec![0.0; q0.len()];
    let mut scratch = vec![0.0; 2 * q0.dim()];
    let values: Vec<f64> = x
        .iter()
        .map(|p| {
            q0.component_ln_terms_unchecked(p.as_slice(), &mut terms, &mut scratch);
            log_sum_exp(&terms)
        })
        .collect();
    let n = values.len() as f64;
    let mut s = NeumaierSum::new();
    values.iter().for_each(|&v| s.add(v));
    let mean = s.value() / n;
    let mut ss = NeumaierSum::new();
    values.iter().for_each(|&v| ss.add((v - mean) * (v - mean)));
    Ok(MeanEstimate {
        value: mean,
        se: (ss.value() / (n - 1.0) / n).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frechet_by_gram_matrices_equals_the_dense_closed_form() {
        // The Gram route and the D x D route compute the same number. Full-rank covariances
        // (n, m > D): both are accurate, 1e-10 relative. Rank-deficient (n or m <= D, where
        // frechet_distance_sq takes the Gram route): the dense route takes square roots of
        // the zero eigenvalues of S1^1/2 S2 S1^1/2, which come out as +-eps |M|, and so errs by
        // ~(D - n) sqrt(eps |M|) ~ 1e-7 relative here (measured 3.3e-9): 1e-6.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for (n, m, d, tol) in [
            (40usize, 50usize, 6usize, 1e-10),
            (12, 20, 30, 1e-6),
            (25, 9, 40, 1e-6),
            (5, 5, 6, 1e-6),
        ] {
            let x: Vec<DVector<f64>> = (0..n)
                .map(|_| DVector::from_fn(d, |j, _| rng.gen::<f64>() * (1.0 + j as f64 / 10.0)))
                .collect();
            let y: Vec<DVector<f64>> = (0..m)
                .map(|_| DVector::from_fn(d, |_, _| rng.gen::<f64>() + 0.3))
                .collect();
            let (mx, sx) = sample_moments(&x).unwrap();
            let (my, sy) = sample_moments(&y).unwrap();
            let dense = frechet_gaussian_sq(&mx, &sx, &my, &sy).unwrap();
            let gram = frechet_gram_sq(&x, &y).unwrap();
            assert!(
                (dense - gram).abs() <= tol * dense.abs().max(1.0),
                "n {n} m {m} d {d}: {dense} vs {gram}"
            );
            let public = frechet_distance_sq(&x, &y).unwrap();
            assert!(
                (public - if n.min(m) < d { gram } else { dense }).abs() < 1e-15 * public.max(1.0)
            );
        }
    }
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn k_direct(a: &DVector<f64>, b: &DVector<f64>, h: f64) -> f64 {
        (-(a - b).norm_squared() / (2.0 * h * h)).exp()
    }

    fn points(rng: &mut ChaCha8Rng, n: usize, d: usize, scale: f64) -> Vec<DVector<f64>> {
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
    fn fast_kernels_match_generic_elementwise() {
        let generic = GenericKernels {
            inv_two_h2: MMD_BANDWIDTHS.iter().map(|h| 1.0 / (2.0 * h * h)).collect(),
        };
        // Squared distances from 0 to past every flush threshold (h = 4 flushes at d2 ≈ 11090).
        let mut d2: Vec<f64> = vec![0.0];
        let mut v = 1e-8;
        while v < 2e4 {
            d2.push(v);
            v *= 1.07;
        }
        let mut fast_out = vec![0.0; 6 * TILE];
        let mut gen_out = vec![0.0; 6 * TILE];
        let tiny = f64::from_bits((1023 - 499) << 52);
        for tile in d2.chunks(TILE) {
            DefaultKernels.eval_tile(tile, &mut fast_out);
            generic.eval_tile(tile, &mut gen_out);
            for k in 0..6 {
                for j in 0..tile.len() {
                    let (f, g) = (fast_out[k * TILE + j], gen_out[k * TILE + j]);
                    assert!(f == 0.0 || f >= tiny / 2.0, "subnormal {f}");
                    if f > 0.0 && g > 0.0 {
                        // e^256 from one exp: 256 · (1 ulp of exp + 8 squarings) ≈ 1e-13 relative.
                        assert!(
                            (f - g).abs() <= 1e-12 * g,
                            "k={k} d2={}: {f} vs {g}",
                            tile[j]
                        );
                    } else {
                        // Flushed on one side only at the 2^-500 boundary.
                        assert!(f.max(g) < tiny, "k={k} d2={}: {f} vs {g}", tile[j]);
                    }
                }
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
    fn row_sums_are_symmetric_and_complete() {
        // Within pass visits i < j once: row i must still get every j ≠ i (checked directly),
        // across chunk boundaries (n = 150 > 64 rows per chunk: 3 chunks).
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let x = points(&mut rng, 150, 3, 2.0);
        let fx = flatten(&x, 3);
        let kern = GenericKernels {
            inv_two_h2: vec![0.5],
        };
        let p = within_pass(&fx, 150, 3, &kern);
        for i in [0, 63, 64, 100, 149] {
            let direct: f64 = (0..150)
                .filter(|&j| j != i)
                .map(|j| k_direct(&x[i], &x[j], 1.0))
                .sum();
            // 149 terms in [0, 1], summed in different orders: 1e-13 relative.
            assert!((p.rows[i] - direct).abs() < 1e-13 * direct, "row {i}");
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

    #[test]
    fn error_cases() {
        fn send_sync<T: Send + Sync + std::error::Error + 'static>(_: &T) {}
        let p = |v: &[f64]| DVector::from_vec(v.to_vec());
        let ok = vec![p(&[0.0, 0.0]), p(&[1.0, 0.0]), p(&[0.0, 1.0])];
        let e = mmd2_unbiased(&[], &ok, &MMD_BANDWIDTHS).unwrap_err();
        send_sync(&e);
        assert_eq!(e, MetricsError::EmptySample { sample: "x" });
        assert_eq!(
            mmd2_unbiased(&ok, &ok[..1], &MMD_BANDWIDTHS).unwrap_err(),
            MetricsError::TooFewPoints {
                sample: "y",
                n: 1,
                need: 2
            }
        );
        let mut bad = ok.clone();
        bad[2] = p(&[0.0, 1.0, 2.0]);
        let e = mmd2_unbiased(&ok, &bad, &MMD_BANDWIDTHS).unwrap_err();
        assert_eq!(
            e,
            MetricsError::DimensionMismatch {
                sample: "y",
                index: 2,
                found: 3,
                expected: 2
            }
        );
        assert!(e.to_string().contains("y[2]"), "{e}");
        bad[2] = p(&[0.0, f64::NAN]);
        assert_eq!(
            mmd2_unbiased(&bad, &ok, &MMD_BANDWIDTHS).unwrap_err(),
            MetricsError::NonFinite {
                sample: "x",
                index: 2
            }
        );
        bad[2] = p(&[f64::INFINITY, 0.0]);
        assert_eq!(
            mmd2_unbiased(&ok, &bad, &MMD_BANDWIDTHS).unwrap_err(),
            MetricsError::NonFinite {
                sample: "y",
                index: 2
            }
        );
        let empty_dim = vec![DVector::<f64>::zeros(0); 3];
        assert_eq!(
            mmd2_unbiased(&empty_dim, &ok, &MMD_BANDWIDTHS).unwrap_err(),
            MetricsError::ZeroDimension { sample: "x" }
        );
        assert_eq!(
            mmd2_unbiased(&ok, &ok, &[]).unwrap_err(),
            MetricsError::NoBandwidths
        );
        for bad_h in [0.0, -1.0, f64::INFINITY] {
            assert_eq!(
                mmd2_unbiased(&ok, &ok, &[1.0, bad_h]).unwrap_err(),
                MetricsError::BadBandwidth {
                    index: 1,
                    value: bad_h
                }
            );
        }
        assert!(matches!(
            mmd2_unbiased(&ok, &ok, &[f64::NAN]).unwrap_err(),
            MetricsError::BadBandwidth { index: 0, .. }
        ));
        assert_eq!(
            sample_moments(&ok[..1]).unwrap_err(),
            MetricsError::TooFewPoints {
                sample: "x",
                n: 1,
                need: 2
            }
        );
        assert_eq!(
            frechet_distance_sq(&ok, &[]).unwrap_err(),
            MetricsError::EmptySample { sample: "y" }
        );
        assert_eq!(
            frechet_distance_sq(&ok, &bad).unwrap_err(),
            MetricsError::NonFinite {
                sample: "y",
                index: 2
            }
        );
        let crate_err: crate::Error = e.into();
        assert!(crate_err.to_string().contains("y[2]"));
    }

    fn dv(v: &[f64]) -> DVector<f64> {
        DVector::from_vec(v.to_vec())
    }

    #[test]
    fn frechet_closed_form_by_hand() {
        // 1-D: (μ₁ - μ₂)² + (σ₁ - σ₂)²; the eigen route rounds at ~1e-15 relative.
        let d2 = frechet_gaussian_sq(
            &dv(&[0.3]),
            &DMatrix::from_element(1, 1, 2.0),
            &dv(&[-1.2]),
            &DMatrix::from_element(1, 1, 0.5),
        )
        .unwrap();
        let want = 1.5f64.powi(2) + (2f64.sqrt() - 0.5f64.sqrt()).powi(2);
        assert!((d2 - want).abs() < 1e-13 * want, "{d2} vs {want}");
        // Commuting (diagonal) covariances: Σ (sqrt a_i - sqrt b_i)², plus |Δμ|².
        let a = [1.0, 4.0, 0.25];
        let b = [9.0, 1.0, 0.25];
        let d2 = frechet_gaussian_sq(
            &dv(&[0.0, 0.0, 0.0]),
            &DMatrix::from_diagonal(&dv(&a)),
            &dv(&[1.0, 0.0, -2.0]),
            &DMatrix::from_diagonal(&dv(&b)),
        )
        .unwrap();
        let want = 5.0
            + a.iter()
                .zip(&b)
                .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
                .sum::<f64>();
        assert!((d2 - want).abs() < 1e-13 * want, "{d2} vs {want}");
        // Rotating both covariances by one orthogonal Q leaves d² unchanged (non-diagonal path).
        let (c, s) = (0.6f64, 0.8f64);
        let q = DMatrix::from_row_slice(2, 2, &[c, -s, s, c]);
        let s1 = &q * DMatrix::from_diagonal(&dv(&[1.0, 4.0])) * q.transpose();
        let s2 = &q * DMatrix::from_diagonal(&dv(&[9.0, 1.0])) * q.transpose();
        let d2 = frechet_gaussian_sq(&dv(&[0.0, 0.0]), &s1, &dv(&[0.0, 0.0]), &s2).unwrap();
        // (1 - 3)² + (2 - 1)² = 5, to rounding of the 2x2 eigensolves.
        assert!((d2 - 5.0).abs() < 1e-12, "{d2}");
        // Identical Gaussians: 0 (clamped from a round-off-sized value), symmetric in its arguments.
        assert!(frechet_gaussian_sq(&dv(&[1.0, 2.0]), &s1, &dv(&[1.0, 2.0]), &s1).unwrap() < 1e-12);
        let d12 = frechet_gaussian_sq(&dv(&[0.0, 1.0]), &s1, &dv(&[0.5, 0.0]), &s2).unwrap();
        let d21 = frechet_gaussian_sq(&dv(&[0.5, 0.0]), &s2, &dv(&[0.0, 1.0]), &s1).unwrap();
        assert!((d12 - d21).abs() < 1e-12 * d12);
        // A singular (PSD) covariance is accepted: N(0, diag(1, 0)) vs N(0, I): (1 - 0)² = 1.
        let sing = DMatrix::from_diagonal(&dv(&[1.0, 0.0]));
        let d2 = frechet_gaussian_sq(
            &dv(&[0.0, 0.0]),
            &sing,
            &dv(&[0.0, 0.0]),
            &DMatrix::identity(2, 2),
        )
        .unwrap();
        assert!((d2 - 1.0).abs() < 1e-12, "{d2}");
    }

    #[test]
    fn frechet_argument_errors() {
        let i2 = DMatrix::<f64>::identity(2, 2);
        let z = dv(&[0.0, 0.0]);
        let asym = DMatrix::from_row_slice(2, 2, &[1.0, 0.5, 0.0, 1.0]);
        assert!(matches!(
            frechet_gaussian_sq(&z, &i2, &z, &asym),
            Err(MetricsError::NotSymmetric { field: "cov2", .. })
        ));
        let indef = DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 2.0, 1.0]);
        let e = frechet_gaussian_sq(&z, &indef, &z, &i2).unwrap_err();
        assert!(
            matches!(
                e,
                MetricsError::NotPositiveSemidefinite { field: "cov1", .. }
            ),
            "{e:?}"
        );
        assert_eq!(
            frechet_gaussian_sq(&z, &i2, &dv(&[0.0]), &i2),
            Err(MetricsError::ShapeMismatch {
                field: "mu2",
                rows: 1,
                cols: 1,
                expected_rows: 2,
                expected_cols: 1
            })
        );
        assert!(matches!(
            frechet_gaussian_sq(&z, &DMatrix::identity(3, 3), &z, &i2),
            Err(MetricsError::ShapeMismatch { field: "cov1", .. })
        ));
        assert_eq!(
            frechet_gaussian_sq(&dv(&[f64::NAN, 0.0]), &i2, &z, &i2),
            Err(MetricsError::NonFiniteArgument { field: "mu1" })
        );
        assert!(matches!(
            frechet_gaussian_sq(
                &dv(&[]),
                &DMatrix::zeros(0, 0),
                &dv(&[]),
                &DMatrix::zeros(0, 0)
            ),
            Err(MetricsError::ShapeMismatch { field: "mu1", .. })
        ));
    }

    #[test]
    fn sample_moments_by_hand() {
        let x = vec![dv(&[1.0, 2.0]), dv(&[3.0, 0.0]), dv(&[2.0, 4.0])];
        let (mean, cov) = sample_moments(&x).unwrap();
        // mean (2, 2); deviations (-1, 0), (1, -2), (0, 2): S = [[2, -2], [-2, 8]] / 2.
        let want = DMatrix::from_row_slice(2, 2, &[1.0, -1.0, -1.0, 4.0]);
        assert!((mean - dv(&[2.0, 2.0])).amax() < 1e-15);
        assert!((cov - want).amax() < 1e-14);
    }
}
