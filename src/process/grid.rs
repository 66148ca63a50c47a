//! The time grid of a reverse chain ([`Grid`]: the times `t_0 < ... < t_T` with `ln(abar)` at
//! each) and its steps ([`Step`]: from `s` to `t`, `x_t = a x_s + sqrt(b) eps` with
//! `a^2 = exp(ln_abar_t - ln_abar_s)` and `b = -expm1(ln_abar_t - ln_abar_s)`, never
//! `1 - a^2`). Grids are built by [`Schedule::grid`].
//!
//! [`Schedule::grid`]: crate::process::schedule::Schedule::grid

use serde::{Deserialize, Serialize};

/// A time grid `t_0 < t_1 < ... < t_T` with `ln(abar)` at each time.
///
/// Invariants of grids built by [`Schedule::grid`]: `times.len() == ln_abar.len() == T + 1`,
/// `times` strictly increasing, `ln_abar` strictly decreasing and `<= 0`.
///
/// [`Schedule::grid`]: crate::process::schedule::Schedule::grid
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// The times `t_0, ..., t_T` (continuous `tau`, or base indices `n` for `ddpm-linear`).
    pub times: Vec<f64>,
    /// `ln(abar_{t_i})` for `i = 0..=T`.
    pub ln_abar: Vec<f64>,
}

/// One reverse/forward step from `s = t_{i-1}` to `t = t_i`:
/// `x_t = a x_s + sqrt(b) eps` with `a^2 = abar_t / abar_s` and `b = 1 - a^2`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// Grid index of the earlier time `s` (0 when built by [`Step::from_ln_abar`]).
    pub s: usize,
    /// Grid index of the later time `t` (0 when built by [`Step::from_ln_abar`]).
    pub t: usize,
    /// `ln(abar_s)`.
    pub ln_abar_s: f64,
    /// `ln(abar_t)`.
    pub ln_abar_t: f64,
    /// `a^2 = abar_t / abar_s = exp(ln_abar_t - ln_abar_s)`.
    pub a2: f64,
    /// `b = 1 - a^2 = -expm1(ln_abar_t - ln_abar_s)`.
    pub b: f64,
}

impl Step {
    /// Builds the step from `ln(abar_s)` and `ln(abar_t)` (`s < t` in time, so
    /// `ln_abar_t < ln_abar_s`): `a2 = exp(ln_abar_t - ln_abar_s)`,
    /// `b = -expm1(ln_abar_t - ln_abar_s)`. With `ln_abar_s = 0` this is the step from the
    /// clean data to `t` (`a2 = abar_t`, `b = 1 - abar_t`), as used by the clean-data
    /// posterior. The indices `s` and `t` are set to 0. No check is made: if the order is
    /// reversed, `b` comes out negative.
    pub fn from_ln_abar(ln_abar_s: f64, ln_abar_t: f64) -> Step {
        let d = ln_abar_t - ln_abar_s;
        Step {
            s: 0,
            t: 0,
            ln_abar_s,
            ln_abar_t,
            a2: d.exp(),
            b: one_minus_exp(d),
        }
    }

    /// `a = sqrt(a2) = sqrt(abar_t / abar_s)`.
    pub fn a(&self) -> f64 {
        self.a2.sqrt()
    }

    /// `abar_s = exp(ln_abar_s)`.
    pub fn abar_s(&self) -> f64 {
        self.ln_abar_s.exp()
    }

    /// `abar_t = exp(ln_abar_t)`.
    pub fn abar_t(&self) -> f64 {
        self.ln_abar_t.exp()
    }

    /// `1 - abar_s = -expm1(ln_abar_s)`.
    pub fn one_minus_abar_s(&self) -> f64 {
        one_minus_exp(self.ln_abar_s)
    }

    /// `1 - abar_t = -expm1(ln_abar_t)`.
    pub fn one_minus_abar_t(&self) -> f64 {
        one_minus_exp(self.ln_abar_t)
    }
}

impl Grid {
    /// The number of steps `T = times.len() - 1` (0 for an empty grid).
    pub fn steps(&self) -> usize {
        self.times.len().saturating_sub(1)
    }

    /// `abar_{t_i} = exp(ln_abar[i])`.
    ///
    /// # Panics
    /// If `i > T`.
    pub fn abar(&self, i: usize) -> f64 {
        self.ln_abar[i].exp()
    }

    /// `1 - abar_{t_i} = -expm1(ln_abar[i])`.
    ///
    /// # Panics
    /// If `i > T`.
    pub fn one_minus_abar(&self, i: usize) -> f64 {
        one_minus_exp(self.ln_abar[i])
    }

    /// The SNR `lambda_i = abar_i / (1 - abar_i) = 1 / expm1(-ln_abar[i])`
    /// (`+inf` at clean data, `ln_abar = 0`).
    ///
    /// # Panics
    /// If `i > T`.
    pub fn snr(&self, i: usize) -> f64 {
        1.0 / (0.0 - self.ln_abar[i]).exp_m1()
    }

    /// Step `i` in `1..=T`, from `s = t_{i-1}` to `t = t_i`:
    /// `a2 = exp(ln_abar[i] - ln_abar[i-1])`, `b = -expm1(ln_abar[i] - ln_abar[i-1])`.
    ///
    /// # Panics
    /// If `i == 0` or `i > T` (a caller bug, not user input).
    pub fn step(&self, i: usize) -> Step {
        assert!(
            (1..=self.steps()).contains(&i),
            "Grid::step: index {i} outside 1..={}",
            self.steps()
        );
        Step {
            s: i - 1,
            t: i,
            ..Step::from_ln_abar(self.ln_abar[i - 1], self.ln_abar[i])
        }
    }

    /// The one jump `(t_0, t_i)` from the grid's start to its time `i` (an OCM-DDIM step's
    /// geometry: its x_0 posterior is that of this jump).
    ///
    /// # Panics
    /// If `i` is outside `1..=T` (a programming error, as for [`Grid::step`]).
    #[must_use]
    pub fn jump(&self, i: usize) -> Step {
        assert!(
            (1..=self.steps()).contains(&i),
            "Grid::jump: index {i} outside 1..={}",
            self.steps()
        );
        Step {
            s: 0,
            t: i,
            ..Step::from_ln_abar(self.ln_abar[0], self.ln_abar[i])
        }
    }
}

/// `1 - exp(x) = -expm1(x)`, written `0.0 - expm1(x)` so that `x = 0` gives `+0.0`
/// (not `-0.0`, whose reciprocal would be `-inf`).
fn one_minus_exp(x: f64) -> f64 {
    0.0 - x.exp_m1()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::schedule::tests::all_schedules;
    use crate::process::schedule::Schedule;
    use approx::assert_relative_eq;

    #[test]
    fn step_identities() {
        for sched in all_schedules() {
            for &t in &[1usize, 7, 64, 1000] {
                let g = sched.grid(t, 0.0).expect("grid");
                for i in 1..=t {
                    let st = g.step(i);
                    assert_eq!((st.s, st.t), (i - 1, i));
                    assert_eq!(st.ln_abar_s.to_bits(), g.ln_abar[i - 1].to_bits());
                    assert_eq!(st.ln_abar_t.to_bits(), g.ln_abar[i].to_bits());
                    // exp and expm1 are each within ~1 ulp of 1: their sum within 1e-15.
                    assert!(
                        (st.a2 + st.b - 1.0).abs() <= 1e-15,
                        "a2 + b = {}",
                        st.a2 + st.b
                    );
                    // The reference (abar_s - abar_t)/abar_s cancels: b can be ~1e-5 for
                    // fine grids, so the reference carries ~eps/b ~ 1e-11 relative error.
                    let reference = (st.abar_s() - st.abar_t()) / st.abar_s();
                    assert_relative_eq!(st.b, reference, max_relative = 1e-9);
                    assert_relative_eq!(st.a() * st.a(), st.a2, max_relative = 4.0 * f64::EPSILON);
                    assert_relative_eq!(st.abar_s(), g.abar(i - 1));
                    assert_relative_eq!(st.one_minus_abar_t(), g.one_minus_abar(i));
                }
            }
        }
    }

    #[test]
    fn clean_data_posterior_step() {
        for x in [-1e-8, -1e-3, -0.5, -3.0, -20.0] {
            let st = Step::from_ln_abar(0.0, x);
            assert_eq!((st.s, st.t), (0, 0));
            // With ln_abar_s = 0 the difference is exactly x, so these are bitwise.
            assert_eq!(st.a2.to_bits(), x.exp().to_bits());
            assert_eq!(st.b.to_bits(), (-x.exp_m1()).to_bits()); // x != 0, so no -0 issue
            assert_relative_eq!(st.abar_s(), 1.0);
            assert_eq!(st.one_minus_abar_s().to_bits(), 0.0_f64.to_bits());
            assert_relative_eq!(st.a2, st.abar_t());
            assert_relative_eq!(st.b, st.one_minus_abar_t());
        }
        // b keeps full relative precision for a tiny step. h = 2^-40 and -0.5 - h are
        // exact in f64, so the difference is exactly -h and b = 1 - exp(-h) = h - h^2/2
        // (+ O(h^3) ~ 1e-37, far below an ulp). expm1 is accurate to ~1 ulp, so 1e-14;
        // computing 1 - a2 instead would be off by ~1e-4 relative and fail.
        let h = (2.0_f64).powi(-40);
        let st = Step::from_ln_abar(-0.5, -0.5 - h);
        assert_relative_eq!(st.b, h - h * h / 2.0, max_relative = 1e-14);
        assert_relative_eq!(st.a2 + st.b, 1.0, max_relative = 1e-15);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn step_zero_panics() {
        let g = Schedule::vp_linear().grid(4, 0.0).expect("grid");
        let _ = g.step(0);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn step_past_end_panics() {
        let g = Schedule::vp_linear().grid(4, 0.0).expect("grid");
        let _ = g.step(5);
    }
}
