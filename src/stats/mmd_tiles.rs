//! The kernel sums behind [`mmd2_unbiased`](super::mmd2_unbiased), evaluated in tiles: the
//! points of a sample in one coordinate-major buffer, the Gaussian kernels of one tile of
//! squared distances (the default bandwidths by one `exp` per pair, four lanes at a time
//! ([`crate::numeric::exp`]), and repeated squaring,
//! `k_{h/2} = (k_h)⁴`; any bandwidths by one `exp` each; values below `2^-500` flushed to
//! zero), and the two passes over the pairs, one sample against itself (`i < j`) and one
//! sample against the other, giving row sums, column sums and `Σ k²` per kernel. Rows go in
//! fixed chunks, in parallel, and the partial sums are added in chunk order, so the sums are
//! bit-identical for any number of threads (cost and flushing: the [`mmd`](super::mmd)
//! module docs).

use nalgebra::DVector;
use rayon::prelude::*;

use crate::numeric::exp::exp_in_place;

/// Kernel values `k = exp(-a)` with `a > FLUSH_ARG` (`k < 2^-500`) are set to zero.
const FLUSH_ARG: f64 = 500.0 * std::f64::consts::LN_2;
/// `2^-125`: below it, `e⁴ < 2^-500` is flushed (the fast path's squaring chain).
const FLUSH_ROOT4: f64 = f64::from_bits((1023 - 125) << 52);

/// The points of a sample in one contiguous coordinate-major buffer:
/// `out[c * n + i]` is coordinate `c` of point `i` (so distance loops run over contiguous memory).
pub(super) fn flatten(x: &[DVector<f64>], d: usize) -> Vec<f64> {
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
pub(super) const TILE: usize = 256;

/// A family of kernels of the squared distance, evaluated together: `width()` values per
/// pair, the last being the sum of the others.
pub(super) trait PairKernel: Sync {
    /// Number of values per pair (bandwidths + 1).
    fn width(&self) -> usize;
    /// For each `j < d2.len()`, writes kernel `k` at squared distance `d2[j]` into
    /// `out[k * TILE + j]`.
    fn eval_tile(&self, d2: &[f64], out: &mut [f64]);
}

/// [`MMD_BANDWIDTHS`]: one `exp` at `h = 4`, then `k_{h/2} = k_h⁴` by two squarings.
///
/// [`MMD_BANDWIDTHS`]: super::MMD_BANDWIDTHS
pub(super) struct DefaultKernels;

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
        // h = 4: 1/(2h²) = 1/32 exactly; the only exp of the pair, four lanes at a time.
        for (o, &s) in k4[..len].iter_mut().zip(d2) {
            *o = -(s * (1.0 / 32.0));
        }
        exp_in_place(&mut k4[..len]);
        for (o, &s) in k4[..len].iter_mut().zip(d2) {
            if s * (1.0 / 32.0) > FLUSH_ARG {
                *o = 0.0;
            }
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
pub(super) struct GenericKernels {
    /// `1 / (2 h²)` per bandwidth.
    pub(super) inv_two_h2: Vec<f64>,
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
            for (o, &r) in kb[..len].iter_mut().zip(d2) {
                *o = -(r * c);
            }
            exp_in_place(&mut kb[..len]);
            for ((o, s), &r) in kb[..len].iter_mut().zip(ksum.iter_mut()).zip(d2) {
                if r * c > FLUSH_ARG {
                    *o = 0.0;
                }
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
pub(super) struct PassSums {
    /// Row sums `Σ_j k(p_i, q_j)` (`j ≠ i` within a sample), `w × n`.
    pub(super) rows: Vec<f64>,
    /// Column sums `Σ_i k(p_i, q_j)`, `w × m` (cross pass only; empty within).
    pub(super) cols: Vec<f64>,
    /// `Σ k²` over the pairs visited (within: `i < j` only), per kernel.
    pub(super) sq: Vec<f64>,
}

/// One sample against itself, pairs `i < j` visited once: row sums `s_i = Σ_{j≠i} k(p_i,p_j)`
/// (row `i` gets the pair from both ends) and `Σ_{i<j} k²`.
pub(super) fn within_pass<K: PairKernel>(pts: &[f64], n: usize, d: usize, kern: &K) -> PassSums {
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
pub(super) fn cross_pass<K: PairKernel>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::mmd::tests::{k_direct, points};
    use crate::stats::MMD_BANDWIDTHS;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

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
}
