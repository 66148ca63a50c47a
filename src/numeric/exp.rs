//! Exponentials of a whole block at once, for the loops that take one `exp` per pair or per
//! component (MMD kernel tiles, mixture responsibilities).
//!
//! Four lanes at a time through `wide::f64x4::exp` (the crate is already in the tree through
//! nalgebra's simba): `x = n ln 2 + r` with `n = round(x / ln 2)` and `|r| <= ln 2 / 2`
//! (Cody-Waite, `ln 2` split in two parts), `e^r` by its Taylor polynomial to degree 13
//! (truncation `|r|^14 / 14! < 4e-18` relative), and `2^n` put into the exponent bits. The
//! values are within 1 ulp of libm's `exp` on 2 10^5 points of `[-708, 708]` (tested at 2).
//!
//! Lanes whose argument lies outside `(-708.39, 708.39)` or is not finite (where the
//! polynomial route would return 0: overflow, subnormal results, NaN) are recomputed by
//! `f64::exp`, so the block function has the scalar function's values there (`inf`,
//! subnormals, `NaN`). Every element is a function of its own argument only: the tail of a
//! block is padded and goes through the same lane-wise code, so a value never depends on the
//! block's length or its position in it.
//!
//! The lane-wise code is fixed when the crate is compiled (baseline x86-64: SSE2, no fused
//! multiply-add), so one binary gives the same bits on every x86-64 machine.

use wide::{f64x4, CmpLt};

/// Lanes of one vector.
const LANES: usize = 4;

/// `|x|` below which the polynomial route is used (wide's own range check).
const RANGE: f64 = 708.39;

/// Four exponentials, lane by lane, with the scalar function's values out of range.
#[inline(always)]
fn exp4(x: [f64; LANES]) -> [f64; LANES] {
    let v = f64x4::from(x);
    let mut e: [f64; LANES] = v.exp().into();
    // One vector test; the scalar repair runs only for a block with an out-of-range lane.
    if v.abs().cmp_lt(f64x4::splat(RANGE)).move_mask() != 0b1111 {
        for (o, &a) in e.iter_mut().zip(&x) {
            if a.abs() >= RANGE || a.is_nan() {
                *o = a.exp();
            }
        }
    }
    e
}

/// `out[i] = exp(x[i])` for every `i` (lengths must agree).
///
/// # Panics
/// If `out.len() != x.len()` (a programming error of the caller).
#[inline]
pub fn exp_into(x: &[f64], out: &mut [f64]) {
    assert_eq!(x.len(), out.len(), "exp_into: lengths differ");
    let mut xs = x.chunks_exact(LANES);
    let mut os = out.chunks_exact_mut(LANES);
    for (xc, oc) in (&mut xs).zip(&mut os) {
        let a = [xc[0], xc[1], xc[2], xc[3]];
        oc.copy_from_slice(&exp4(a));
    }
    let (xr, or) = (xs.remainder(), os.into_remainder());
    if !xr.is_empty() {
        let mut a = [0.0; LANES];
        a[..xr.len()].copy_from_slice(xr);
        let e = exp4(a);
        or.copy_from_slice(&e[..xr.len()]);
    }
}

/// In place: `x[i] <- exp(x[i])`, the values of [`exp_into`].
#[inline]
pub fn exp_in_place(x: &mut [f64]) {
    let mut xs = x.chunks_exact_mut(LANES);
    for xc in &mut xs {
        let e = exp4([xc[0], xc[1], xc[2], xc[3]]);
        xc.copy_from_slice(&e);
    }
    let xr = xs.into_remainder();
    if !xr.is_empty() {
        let mut a = [0.0; LANES];
        a[..xr.len()].copy_from_slice(xr);
        let e = exp4(a);
        let n = xr.len();
        xr.copy_from_slice(&e[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two positive finite doubles.
    fn ulps(a: f64, b: f64) -> u64 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn within_two_ulp_of_libm_over_the_whole_range() {
        // 2e5 points spread over [-708, 708] plus the small arguments where e^x ~ 1 + x.
        // glibc's exp is within 0.502 ulp of the exact value; ours rounds once per polynomial
        // step but the steps' errors are scaled down by |r|^k, so it stays within about 1 ulp
        // (Cody-Waite's reduction is exact to 2^-60 relative): the two may differ by 2, and
        // anything more is a broken reduction or polynomial. Measured: 1 ulp at most.
        let mut x: Vec<f64> = (0..200_000)
            .map(|i| -708.0 + 1416.0 * (i as f64) / 199_999.0)
            .collect();
        x.extend((0..1000).map(|i| (i as f64 - 500.0) * 1e-9));
        let mut out = vec![0.0; x.len()];
        exp_into(&x, &mut out);
        let (worst, at) = x
            .iter()
            .zip(&out)
            .map(|(&a, &e)| (ulps(e, a.exp()), a))
            .max_by_key(|p| p.0)
            .unwrap();
        assert!(worst <= 2, "{worst} ulp at x = {at}");
    }

    #[test]
    fn out_of_range_lanes_take_the_scalar_values() {
        // Bit for bit the scalar function's values where the polynomial route does not apply:
        // NaN, e^709 = 8.2e307 (past its range), a subnormal e^-720 (not flushed), an
        // underflow to 0, the infinities; and 1 at 0.
        let x = [
            f64::NAN,
            709.0,
            -720.0,
            -745.5,
            f64::NEG_INFINITY,
            f64::INFINITY,
            0.0,
        ];
        let mut out = [0.0; 7];
        exp_into(&x, &mut out);
        assert!(out[0].is_nan());
        for i in 1..7 {
            assert_eq!(out[i].to_bits(), x[i].exp().to_bits(), "x = {}", x[i]);
        }
        assert!(out[1].is_finite() && out[1] > 8e307);
        assert!(out[2] > 0.0 && out[2] < f64::MIN_POSITIVE);
        assert_eq!(out[6].to_bits(), 1.0f64.to_bits());
    }

    #[test]
    fn a_value_depends_on_its_argument_only() {
        // The same argument at every position of blocks of every length 1..=9, in place and
        // into a buffer, gives the same bits.
        let probe = -3.217_f64;
        let mut reference = [0.0];
        exp_into(&[probe], &mut reference);
        for len in 1..=9 {
            for pos in 0..len {
                let mut x: Vec<f64> = (0..len).map(|i| i as f64 * 0.37 - 1.0).collect();
                x[pos] = probe;
                let mut out = vec![0.0; len];
                exp_into(&x, &mut out);
                assert_eq!(out[pos].to_bits(), reference[0].to_bits());
                exp_in_place(&mut x);
                assert!(x.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        }
    }
}
