//! KL-optimal T-step grids per covariance family: the grid `t_0 < ... < t_T` with the ends of
//! a reference schedule that minimises the exact step sum `S_f` (`docs/schedules.md`).
//!
//! # Formula
//! The grid's interior points are coordinates `u_1 < ... < u_{T-1}` on the reference
//! schedule's clock (`ln abar_i = ln abar(u_i)`, [`Schedule::ln_abar_at`]; any increasing
//! grid of `abar` values between the same ends is such a grid), and
//! ```text
//! S_f(u) = sum_i E_{q_{t_i}}[KL(q(x_{t_{i-1}} | x_{t_i}) || N(m, Sigma_f))].
//! ```
//! - **Start**: the asymptotically optimal grid of [`crate::kl::local_error`]: the density
//!   `du/dv ∝ g_f(u)^(-1/p)`, i.e. `V(u_i) = i / T` with
//!   `V(u) = int_0^u g_f^(1/p) / int_0^1 g_f^(1/p)` (piecewise linear in `g^(1/p)` between the
//!   densities' nodes).
//! - **Newton**: up to `newton` coupled steps on all points at once (the Hessian of a sum of
//!   adjacent-pair terms is tridiagonal, by differences), while they lower `S_f`.
//! - **Descent**: each point enters two step terms, so with its neighbours fixed
//!   `S_f = const + term(u_{i-1}, u_i) + term(u_i, u_{i+1})`. The odd points are moved
//!   together, then the even ones (each move independent of the others of its parity), by a
//!   golden-section search of `term(u_{i-1}, x) + term(x, u_{i+1})` over
//!   `x` in `[u_i - w (u_i - u_{i-1}), u_i + w (u_{i+1} - u_i)]`, `w = max(0.5 0.7^sweep, 0.02)`
//!   then the over-relaxed `u_i + 1.7 (x* - u_i)`; a point moves to whichever of the three
//!   lowers its two terms most. Sweeps repeat until `S_f` falls by less than `tol` relative. The two-step grids `(u_{i-1}, x, u_{i+1})` of one
//!   iteration are one [`path_kl_grids`] call: the end times' expectations are shared, so a
//!   candidate costs one new cubature.

use serde::{Deserialize, Serialize};

use crate::data::mixture::Mixture;
use crate::kernel::family::Family;
use crate::process::discrete::{DiscreteSchedule, ScheduleFile, Timesteps};
use crate::process::schedule::{Grid, Schedule, ScheduleError};
use crate::quadrature::Estimate;

use super::local_error::{clock_grid, term_order, DensityPoint};
use super::path_kl::{path_kl_grids, PathKlError, PathKlParams};

/// Parameters of the descent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridOptParams {
    /// Coupled Newton steps first (tridiagonal Hessian by differences; 0: none).
    pub newton: usize,
    /// Golden-section iterations per move (the bracket shrinks by 0.618 each).
    pub golden: usize,
    /// The most sweeps (odd, then even points).
    pub sweeps: usize,
    /// Stop when a sweep lowers `S_f` by less than this relative amount.
    pub tol: f64,
}

impl Default for GridOptParams {
    fn default() -> Self {
        Self {
            newton: 8,
            golden: 8,
            sweeps: 40,
            tol: 1e-7,
        }
    }
}

/// An optimised grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimalGrid {
    /// The family it minimises.
    pub family: Family,
    /// T.
    pub steps: usize,
    /// The points on the reference clock, `u_0 = 0 < ... < u_T = 1`.
    pub u: Vec<f64>,
    /// `ln abar` at each point.
    pub ln_abar: Vec<f64>,
    /// `S_f` of the optimised grid.
    pub s: Estimate,
    /// `S_f` of the starting (asymptotically optimal) grid.
    pub s_start: Estimate,
    /// `S_f` of the reference schedule's own T-step grid.
    pub s_reference: Estimate,
    /// Sweeps done.
    pub sweeps: usize,
}

impl OptimalGrid {
    /// The grid (times = the points `u`).
    #[must_use]
    pub fn grid(&self) -> Grid {
        Grid {
            times: self.u.clone(),
            ln_abar: self.ln_abar.clone(),
        }
    }

    /// The grid as a schedule file (`--schedule FILE`, `covlab.Schedule(FILE)`):
    /// `alphas_cumprod[k] = abar(t_{k+1})` with the timesteps `T-1, ..., 0`, whose T-step grid
    /// is this grid (a discrete schedule's data end, time 0, has `abar = 1`).
    ///
    /// # Errors
    /// A grid that does not start at the data (`ln abar_0 < 0`: an early stop, which a
    /// schedule file cannot express), and the checks of [`DiscreteSchedule::validate`].
    pub fn schedule_file(&self) -> Result<ScheduleFile, ScheduleError> {
        if self.ln_abar[0] < 0.0 {
            return Err(ScheduleError::InvalidParameter {
                name: "early_stop",
                value: self.ln_abar[0],
                reason:
                    "a schedule file starts at the data (abar = 1): optimise without early stop",
            });
        }
        let t = self.steps;
        let table = DiscreteSchedule {
            alphas_cumprod: self.ln_abar[1..].iter().map(|l| l.exp()).collect(),
            timesteps: Timesteps::Explicit((0..t).rev().collect()),
            source: format!(
                "covlab KL-optimal grid for {} at T = {t} (S = {:.6e})",
                self.family.name(),
                self.s.value
            ),
        };
        table.validate()?;
        table.to_file(None)
    }
}

/// Over-relaxation factor of a move (module docs).
const OMEGA: f64 = 1.7;

/// The golden ratio's conjugate `(sqrt 5 - 1) / 2`.
const PHI: f64 = 0.618_033_988_749_894_8;

/// `S_f` of one grid.
fn step_sum(q0: &Mixture, grid: Grid, params: &PathKlParams) -> Result<Estimate, PathKlError> {
    let r = path_kl_grids(q0, &[grid], params, &|_, _| {})?;
    Ok(r.rows[0].s)
}

/// The starting grid `V(u_i) = i / T` from the densities of `family` (module docs).
#[must_use]
pub fn asymptotic_grid(densities: &[DensityPoint], family: Family, steps: usize) -> Vec<f64> {
    let e = 1.0 / f64::from(term_order(family));
    let mut pts: Vec<(f64, f64)> = densities
        .iter()
        .filter(|d| d.family == family)
        .map(|d| (d.u, d.g.value.max(0.0).powf(e)))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Piecewise linear in g^(1/p), constant beyond the first and last nodes.
    let first = pts.first().map_or(1.0, |p| p.1);
    let last = pts.last().map_or(1.0, |p| p.1);
    let mut knots = vec![(0.0, first)];
    knots.extend(pts);
    knots.push((1.0, last));
    let mut cum = vec![0.0];
    for w in knots.windows(2) {
        let c = cum[cum.len() - 1] + 0.5 * (w[0].1 + w[1].1) * (w[1].0 - w[0].0);
        cum.push(c);
    }
    let total = cum[cum.len() - 1];
    let mut u = vec![0.0];
    for i in 1..steps {
        let target = total * (i as f64) / (steps as f64);
        let k = cum
            .partition_point(|&c| c < target)
            .clamp(1, knots.len() - 1);
        // Invert the trapezoid's integral on [knots[k-1], knots[k]] (quadratic in the offset).
        let (a, b) = (knots[k - 1], knots[k]);
        let h = b.0 - a.0;
        let rest = target - cum[k - 1];
        let slope = if h > 0.0 { (b.1 - a.1) / h } else { 0.0 };
        let x = if slope.abs() * h < 1e-12 * a.1.max(1e-300) || a.1 + b.1 == 0.0 {
            if a.1 > 0.0 {
                rest / a.1
            } else {
                h * rest / (cum[k] - cum[k - 1]).max(1e-300)
            }
        } else {
            // a.1 x + slope x^2 / 2 = rest.
            let disc = (a.1 * a.1 + 2.0 * slope * rest).max(0.0);
            (disc.sqrt() - a.1) / slope
        };
        u.push((a.0 + x.clamp(0.0, h)).clamp(0.0, 1.0));
    }
    u.push(1.0);
    // Strictly increasing (a vanishing density stretch can give equal points).
    for i in 1..u.len() {
        if u[i] <= u[i - 1] {
            u[i] = u[i - 1] + 1e-9;
        }
    }
    let n = u.len();
    u[n - 1] = 1.0;
    u
}

/// One coupled Newton step on all interior points: `S` is a sum of terms of adjacent pairs,
/// so its Hessian in `u` is tridiagonal. The gradient and the diagonal come from central
/// differences of each point's two terms (`h_i = 1e-2` of its smaller gap: truncation 1e-4
/// relative, where smaller steps met the terms' round-off), the off-diagonal
/// from the mixed difference of the one term two neighbours share; all candidates are one
/// [`path_kl_grids`] call. The step `-H^-1 g` (Thomas' algorithm) is clamped to a quarter of
/// the gaps and halved until `S` falls (at most 6 times); `None` when it does not or the
/// reduced Hessian is not positive definite. Points with a non-positive curvature estimate
/// are held fixed.
fn newton_step(
    q0: &Mixture,
    schedule: &Schedule,
    early_stop: f64,
    u: &[f64],
    s_now: f64,
    one: &PathKlParams,
) -> Result<Option<(Vec<f64>, Estimate)>, PathKlError> {
    let n = u.len() - 1; // T
    let m = n - 1; // interior points 1..=m
    let h: Vec<f64> = (1..n)
        .map(|i| 1e-2 * (u[i] - u[i - 1]).min(u[i + 1] - u[i]))
        .collect();
    let mut grids = Vec::new();
    // Per interior point: its two terms at u_i - h, u_i, u_i + h (two-step grids).
    for i in 1..n {
        for x in [u[i] - h[i - 1], u[i], u[i] + h[i - 1]] {
            grids.push(clock_grid(schedule, early_stop, &[u[i - 1], x, u[i + 1]])?);
        }
    }
    // Per neighbouring pair (i, i + 1): their shared term at (u_i +- h_i, u_{i+1} +- h_{i+1}).
    for i in 1..m {
        for (a, b) in [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] {
            let x = u[i] + a * h[i - 1];
            let y = u[i + 1] + b * h[i];
            grids.push(clock_grid(schedule, early_stop, &[x, y])?);
        }
    }
    let r = path_kl_grids(q0, &grids, one, &|_, _| {})?;
    let v: Vec<f64> = r.rows.iter().map(|row| row.s.value).collect();
    let mut g = vec![0.0; m];
    let mut diag = vec![0.0; m];
    // A point whose curvature is not resolved (not positive: its terms are at their
    // round-off floor, e.g. full's steps at the data end) is held fixed this step.
    let mut frozen = vec![false; m];
    for k in 0..m {
        let (lo, mid, hi) = (v[3 * k], v[3 * k + 1], v[3 * k + 2]);
        g[k] = (hi - lo) / (2.0 * h[k]);
        diag[k] = (hi - 2.0 * mid + lo) / (h[k] * h[k]);
        if diag[k] <= 0.0 || diag[k].is_nan() {
            frozen[k] = true;
            diag[k] = 1.0;
            g[k] = 0.0;
        }
    }
    let base = 3 * m;
    let off: Vec<f64> = (0..m.saturating_sub(1))
        .map(|k| {
            if frozen[k] || frozen[k + 1] {
                return 0.0;
            }
            let w = &v[base + 4 * k..base + 4 * k + 4];
            (w[0] - w[1] - w[2] + w[3]) / (4.0 * h[k] * h[k + 1])
        })
        .collect();
    // Thomas' algorithm for H d = -g (H symmetric tridiagonal).
    let mut c = vec![0.0; m];
    let mut d = vec![0.0; m];
    for k in 0..m {
        let sub = if k > 0 { off[k - 1] } else { 0.0 };
        let denom = diag[k] - sub * if k > 0 { c[k - 1] } else { 0.0 };
        if denom <= 0.0 || denom.is_nan() {
            return Ok(None);
        }
        c[k] = if k + 1 < m { off[k] / denom } else { 0.0 };
        d[k] = (-g[k] - sub * if k > 0 { d[k - 1] } else { 0.0 }) / denom;
    }
    for k in (0..m.saturating_sub(1)).rev() {
        d[k] -= c[k] * d[k + 1];
    }
    // Clamp to a quarter of the gaps, then halve until S falls.
    for (k, dk) in d.iter_mut().enumerate() {
        let i = k + 1;
        *dk = dk.clamp(-0.25 * (u[i] - u[i - 1]), 0.25 * (u[i + 1] - u[i]));
    }
    let mut scale = 1.0;
    for _ in 0..6 {
        let mut next = u.to_vec();
        for k in 0..m {
            next[k + 1] += scale * d[k];
        }
        let now = step_sum(q0, clock_grid(schedule, early_stop, &next)?, one)?;
        if now.value < s_now {
            return Ok(Some((next, now)));
        }
        scale *= 0.5;
    }
    Ok(None)
}

/// The KL-optimal T-step grid of `params.families[0]` between the ends of `schedule`
/// (module docs), started from [`asymptotic_grid`] of `densities`.
///
/// # Errors
/// `T < 2`, a discrete schedule, or an error of the path-KL cubature.
#[allow(clippy::too_many_arguments)]
pub fn optimal_grid(
    q0: &Mixture,
    schedule: &Schedule,
    early_stop: f64,
    family: Family,
    steps: usize,
    densities: &[DensityPoint],
    params: &PathKlParams,
    opt: &GridOptParams,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<OptimalGrid, PathKlError> {
    if steps < 2 {
        return Err(PathKlError::Schedule(ScheduleError::InvalidParameter {
            name: "steps",
            value: steps as f64,
            reason: "an optimal grid needs T >= 2 (one interior point)",
        }));
    }
    let one = PathKlParams {
        families: vec![family],
        early_stop: 0.0,
        per_step: false,
        ..params.clone()
    };
    let reference = step_sum(q0, schedule.grid(steps, early_stop)?, &one)?;
    let mut u = asymptotic_grid(densities, family, steps);
    let s_start = step_sum(q0, clock_grid(schedule, early_stop, &u)?, &one)?;
    let mut s = s_start;
    for _ in 0..opt.newton {
        match newton_step(q0, schedule, early_stop, &u, s.value, &one)? {
            Some((next, now)) => {
                let gain = (s.value - now.value) / s.value;
                u = next;
                s = now;
                if gain < opt.tol {
                    break;
                }
            }
            None => break,
        }
    }
    let mut sweeps = 0;
    let total = opt.sweeps * 2 * opt.golden;
    let mut done = 0;
    while sweeps < opt.sweeps {
        for parity in [1usize, 2] {
            let idx: Vec<usize> = (parity..steps).step_by(2).collect();
            // Brackets [lo, hi] per point and the golden-section interior points.
            // The bracket narrows with the sweeps (the points settle): half the gaps at first,
            // never below 2 % of them.
            let w = (0.5 * 0.7f64.powi(sweeps as i32)).max(0.02);
            let mut lo: Vec<f64> = idx.iter().map(|&i| u[i] - w * (u[i] - u[i - 1])).collect();
            let mut hi: Vec<f64> = idx.iter().map(|&i| u[i] + w * (u[i + 1] - u[i])).collect();
            let pair = |x: &[f64]| -> Result<Vec<f64>, PathKlError> {
                let grids: Vec<Grid> = idx
                    .iter()
                    .zip(x)
                    .map(|(&i, &xi)| clock_grid(schedule, early_stop, &[u[i - 1], xi, u[i + 1]]))
                    .collect::<Result<_, _>>()?;
                let r = path_kl_grids(q0, &grids, &one, &|_, _| {})?;
                Ok(r.rows.iter().map(|row| row.s.value).collect())
            };
            let mut a: Vec<f64> = lo.iter().zip(&hi).map(|(l, h)| h - PHI * (h - l)).collect();
            let mut b: Vec<f64> = lo.iter().zip(&hi).map(|(l, h)| l + PHI * (h - l)).collect();
            let mut fa = pair(&a)?;
            let mut fb = pair(&b)?;
            for _ in 0..opt.golden {
                let mut next = Vec::with_capacity(idx.len());
                let mut new_is_a = vec![false; idx.len()];
                for k in 0..idx.len() {
                    if fa[k] <= fb[k] {
                        hi[k] = b[k];
                        b[k] = a[k];
                        fb[k] = fa[k];
                        a[k] = hi[k] - PHI * (hi[k] - lo[k]);
                        next.push(a[k]);
                        new_is_a[k] = true;
                    } else {
                        lo[k] = a[k];
                        a[k] = b[k];
                        fa[k] = fb[k];
                        b[k] = lo[k] + PHI * (hi[k] - lo[k]);
                        next.push(b[k]);
                    }
                }
                let f = pair(&next)?;
                for k in 0..idx.len() {
                    if new_is_a[k] {
                        fa[k] = f[k];
                    } else {
                        fb[k] = f[k];
                    }
                }
                done += 1;
                progress(done, total);
            }
            // The best of: the current position, the golden-section minimum x*, and the
            // over-relaxed u + OMEGA (x* - u) (coordinate descent on a chain of coupled points
            // converges linearly; over-relaxation shortens it, and is kept only where it helps).
            let current = pair(&idx.iter().map(|&i| u[i]).collect::<Vec<_>>())?;
            let best: Vec<(f64, f64)> = (0..idx.len())
                .map(|k| {
                    if fa[k] <= fb[k] {
                        (a[k], fa[k])
                    } else {
                        (b[k], fb[k])
                    }
                })
                .collect();
            let over: Vec<f64> = idx
                .iter()
                .zip(&best)
                .map(|(&i, &(x, _))| {
                    let y = u[i] + OMEGA * (x - u[i]);
                    y.clamp(0.5 * (u[i - 1] + u[i]), 0.5 * (u[i] + u[i + 1]))
                })
                .collect();
            let f_over = pair(&over)?;
            for (k, &i) in idx.iter().enumerate() {
                let mut pick = (u[i], current[k]);
                if best[k].1 < pick.1 {
                    pick = best[k];
                }
                if f_over[k] < pick.1 {
                    pick = (over[k], f_over[k]);
                }
                u[i] = pick.0;
            }
        }
        sweeps += 1;
        let now = step_sum(q0, clock_grid(schedule, early_stop, &u)?, &one)?;
        let gain = (s.value - now.value) / s.value;
        s = now;
        if gain < opt.tol {
            break;
        }
    }
    let ln_abar = clock_grid(schedule, early_stop, &u)?.ln_abar;
    Ok(OptimalGrid {
        family,
        steps,
        u,
        ln_abar,
        s,
        s_start,
        s_reference: reference,
        sweeps,
    })
}
