//! Expected path KL of the `hutchinson-M` family (OCM eq. 9), over the probes.
//!
//! The model kernel at `x_t` is `N(m(x_t), Sigma_h)` with `Sigma_h = diag(s_j)`,
//! `s_j = clip((b^2 h_j + b) / a^2)`, `h = (1/M) sum_m v_m .* (H v_m)` for Rademacher probes.
//! Because `Sigma_h` is diagonal and the mean is exact,
//!
//! ```text
//! KL(q(.|x_t) || N(m, Sigma_h)) = KL(q(.|x_t) || N(m, diag C)) + 0.5 sum_j u(C_jj / s_j - 1),
//! u(r) = r - ln(1 + r) >= 0,
//! ```
//!
//! so `E_v S_hutch(T) = S_diag(T) + sum_i E_{q_{t_i}} E_v [0.5 sum_j u(C_jj / s_j - 1)]`. The
//! second term is estimated here by Monte Carlo: for each step, `n` exact draws of `x_t ~ q_t`,
//! one probe set each; the error bar is 2 standard errors of the sum over steps.
//! [`hutchinson_path_kl`] adds the excess to `S_diag(T)`.
//!
//! Clipping, as in the sampler: `lower = sigma~^2 = b (1 - abar_s) / (1 - abar_t)` (0 at a
//! degenerate last step, `abar_s = 1`; borrowing the next step's value as `path-kl`'s `clip`
//! remedy does would add a T-independent excess, measured 0.64 on grid9), `upper = lower +
//! abar_s b^2 / (1 - abar_t)^2 ((hi - lo)/2)^2` for a data range `[lo, hi]` (Analytic-DPM).

use rand::Rng;
use rayon::prelude::*;

use crate::data::mixture::{Mixture, MixtureError, Workspace};
use crate::kernel::model::clip_bounds;
use crate::numeric::u_minus_ln1p;
use crate::process::schedule::Schedule;
use crate::quadrature::Estimate;

/// Errors of [`hutchinson_excess`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HutchinsonError {
    /// A parameter out of its domain (worded as the sampler's, whose family this is).
    #[error("invalid sampler parameter `{field}`: {reason}")]
    InvalidParameter {
        /// The field.
        field: &'static str,
        /// What was expected.
        reason: String,
    },
    /// The mixture failed.
    #[error(transparent)]
    Model(#[from] MixtureError),
    /// The schedule failed.
    #[error(transparent)]
    Schedule(#[from] crate::process::schedule::ScheduleError),
}

/// Monte Carlo settings of [`hutchinson_excess`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HutchinsonMc {
    /// Probes per estimate, `M >= 1`.
    pub probes: usize,
    /// Draws of `x_t` per step, `>= 2`.
    pub points: usize,
    /// Seed (step `i` uses stream `i`).
    pub seed: u64,
    /// Data range `[lo, hi]` for the upper clip (`None`: no upper clip).
    pub clip_range: Option<(f64, f64)>,
}

/// `sum_i E_{q_{t_i}} E_v [0.5 sum_j u(C_jj / s_j - 1)]`, the excess of `hutchinson-M`'s
/// expected path KL over `diag`'s, on the `T`-step grid, with a 2-standard-error bar.
///
/// The value is `+inf` when some draw clips a variance to 0 (possible at a degenerate last
/// step, where the lower clip is 0): the expectation over the probes is then infinite.
///
/// # Errors
/// `InvalidParameter` for `probes = 0`, `points < 2` or a bad range; schedule and mixture
/// errors.
pub fn hutchinson_excess(
    q0: &Mixture,
    schedule: &Schedule,
    steps: usize,
    early_stop: f64,
    mc: &HutchinsonMc,
) -> Result<Estimate, HutchinsonError> {
    let bad = |field: &'static str, reason: &str| HutchinsonError::InvalidParameter {
        field,
        reason: reason.to_string(),
    };
    if mc.probes == 0 {
        return Err(bad("M", "must be >= 1"));
    }
    if mc.points < 2 {
        return Err(bad("points", "must be >= 2"));
    }
    if let Some((lo, hi)) = mc.clip_range {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(bad("clip_range", "must be finite with lo < hi"));
        }
    }
    let grid = schedule.grid(steps, early_stop)?;
    let t = grid.steps();
    let per_step: Vec<Result<(f64, f64), MixtureError>> = (1..=t)
        .into_par_iter()
        .map(|i| {
            let st = grid.step(i);
            let (lower, upper) = clip_bounds(&grid, i, mc.clip_range);
            let q = q0.marginal(grid.ln_abar[i])?;
            let d = q.dim();
            let mut rng = crate::numeric::stream(mc.seed, i as u64);
            let xs = q.sample(&mut rng, mc.points);
            let mut ws = Workspace::new(d, q.len());
            let (mut s1, mut s2) = (0.0, 0.0);
            let mut h = vec![0.0; d];
            let mut v = vec![0.0; d];
            for x in &xs {
                q.geometry_unchecked(x.as_slice(), &mut ws);
                let hm = &ws.hessian;
                h.iter_mut().for_each(|e| *e = 0.0);
                for _ in 0..mc.probes {
                    for e in v.iter_mut() {
                        *e = if rng.gen::<bool>() { 1.0 } else { -1.0 };
                    }
                    for r in 0..d {
                        let hv: f64 = (0..d).map(|c| hm[c * d + r] * v[c]).sum();
                        h[r] += v[r] * hv;
                    }
                }
                let mut term = 0.0;
                for j in 0..d {
                    let hj = h[j] / mc.probes as f64;
                    // A clipped variance of 0 (possible only at a degenerate last step, where
                    // lower = 0) gives an infinite term: the honest value of that chain.
                    let s = ((st.b * st.b * hj + st.b) / st.a2).max(lower).min(upper);
                    let c = (st.b * st.b * hm[j * d + j] + st.b) / st.a2;
                    term += 0.5 * u_minus_ln1p(c / s - 1.0);
                }
                s1 += term;
                s2 += term * term;
            }
            let n = mc.points as f64;
            if !s1.is_finite() {
                // Some draw clipped a variance to 0: the expected path KL is infinite.
                return Ok((f64::INFINITY, 0.0));
            }
            let mean = s1 / n;
            let var = ((s2 / n - mean * mean) * n / (n - 1.0)).max(0.0) / n;
            Ok((mean, var))
        })
        .collect();
    let (mut value, mut var) = (0.0, 0.0);
    for r in per_step {
        let (m, v) = r?;
        value += m;
        var += v;
    }
    Ok(Estimate {
        value,
        err: 2.0 * var.sqrt(),
    })
}

/// `hutchinson-M`'s expected path KL from `diag`'s and the Monte Carlo excess:
///
/// ```text
/// E_v S_hutch(T) = S_diag(T) + excess(T),   err = hypot(err_diag, err_excess),
/// ```
///
/// with `S_diag(T)` from [`crate::kl::path_kl::path_kl_sweep`] and `excess(T)` from
/// [`hutchinson_excess`] (independent errors add in quadrature).
#[must_use]
pub fn hutchinson_path_kl(s_diag: Estimate, excess: Estimate) -> Estimate {
    Estimate {
        value: s_diag.value + excess.value,
        err: s_diag.err.hypot(excess.err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::presets;

    #[test]
    fn excess_is_zero_when_h_is_diagonal_and_grows_with_fewer_probes() {
        // grid9 factorises (every Hessian is diagonal), so v .* (H v) = diag H exactly for
        // any probe: the excess is 0 up to the clip (which never binds for exact values
        // inside the bounds) -- round-off only.
        let q = presets::load("grid9").unwrap();
        let mc = HutchinsonMc {
            probes: 1,
            points: 200,
            seed: 1,
            clip_range: None,
        };
        let e = hutchinson_excess(&q, &Schedule::vp_linear(), 16, 0.0, &mc).unwrap();
        assert!(e.value.abs() < 1e-9, "{e:?}");
        // aniso2 has correlated components: the excess is positive and shrinks with M
        // (its leading term is proportional to 1/M).
        let q = presets::load("aniso2").unwrap();
        let e1 = hutchinson_excess(&q, &Schedule::vp_linear(), 16, 0.0, &mc).unwrap();
        let e16 = hutchinson_excess(
            &q,
            &Schedule::vp_linear(),
            16,
            0.0,
            &HutchinsonMc { probes: 16, ..mc },
        )
        .unwrap();
        assert!(e1.value > 0.0 && e16.value > 0.0 && e16.value + e16.err < e1.value - e1.err);
        assert!(hutchinson_excess(
            &q,
            &Schedule::vp_linear(),
            16,
            0.0,
            &HutchinsonMc { probes: 0, ..mc }
        )
        .is_err());
    }
}
