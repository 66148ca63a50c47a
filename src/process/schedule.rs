//! Noise schedules and time grids of the forward (noising) process.
//!
//! The forward process is `x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps` with
//! `eps ~ N(0, I)`; its signal-to-noise ratio is `lambda_t = abar_t / (1 - abar_t)`.
//! Every grid stores `ln(abar_t)` rather than `abar_t`, so that
//! `abar = exp(ln_abar)` and `1 - abar = -expm1(ln_abar)` keep full relative precision
//! at both ends of the process. For a step from `s` to `t > s`,
//! `a^2 = abar_t / abar_s = exp(ln_abar_t - ln_abar_s)` and
//! `b = 1 - a^2 = -expm1(ln_abar_t - ln_abar_s)` (never computed as `1 - a^2`).
//!
//! Four schedules are provided (see [`Schedule`]): `vp-linear` (continuous VP SDE),
//! `ddpm-linear` (the discrete linear-beta schedule of Ho et al., with even or
//! quadratic sub-sampling), `snr-uniform` (equally spaced SNR) and `cosine`
//! (Nichol & Dhariwal).
//!
//! The time grid of a chain ([`Grid`], [`Step`]) is in [`grid`](super::grid), re-exported here.

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use super::discrete::{DiscreteSchedule, ScheduleFile, Timesteps};
pub use super::grid::{Grid, Step};

/// The largest number of steps `T` (and of `ddpm-linear` base steps `N`) a grid may
/// have: `2^24`. This keeps every index product exact and every allocation bounded.
pub const MAX_STEPS: usize = 1 << 24;

/// The valid schedule names accepted by [`Schedule::from_name`]:
/// `vp-linear`, `ddpm-linear` (= `ddpm-linear-even`), `ddpm-linear-even`,
/// `ddpm-linear-quadratic`, `snr-uniform`, `cosine`.
pub const SCHEDULE_NAMES: [&str; 6] = [
    "vp-linear",
    "ddpm-linear",
    "ddpm-linear-even",
    "ddpm-linear-quadratic",
    "snr-uniform",
    "cosine",
];

/// Errors raised while validating a schedule or building a grid.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The number of steps `T` was zero; a grid needs `T >= 1`.
    #[error("steps (T) must be >= 1")]
    ZeroSteps,
    /// The number of steps `T` exceeds what the schedule can provide
    /// (`N - n_0` for `ddpm-linear`, [`MAX_STEPS`] otherwise).
    #[error("steps (T) = {steps} exceeds the maximum {max} for this schedule")]
    TooManySteps {
        /// The requested number of steps `T`.
        steps: usize,
        /// The largest admissible number of steps.
        max: usize,
    },
    /// A parameter was NaN, infinite, out of range or inconsistent with another one.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// The name of the offending parameter (e.g. `"early_stop"`, `"beta_max"`).
        name: &'static str,
        /// The offending value.
        value: f64,
        /// Why the value was rejected.
        reason: &'static str,
    },
    /// The schedule name is not one of [`SCHEDULE_NAMES`].
    #[error(
        "unknown schedule {0:?}; valid names are: vp-linear, ddpm-linear, ddpm-linear-even, \
         ddpm-linear-quadratic, snr-uniform, cosine"
    )]
    UnknownSchedule(String),
    /// A name field (a diffusers `beta_schedule` or `timestep_spacing`) has an unknown value.
    #[error("unknown {field} {value:?}; valid values are: {valid}")]
    UnknownName {
        /// The field (`"beta_schedule"`, `"timestep_spacing"`).
        field: &'static str,
        /// The value given.
        value: String,
        /// The valid values, comma-separated.
        valid: String,
    },
    /// An entry of an array parameter (`alphas_cumprod`, `timesteps`) is invalid.
    #[error("invalid {name}[{index}] = {value}: {reason}")]
    InvalidEntry {
        /// The array.
        name: &'static str,
        /// The index of the offending entry.
        index: usize,
        /// Its value.
        value: f64,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A schedule option given where the schedule does not take it.
    #[error("--{option} (`{option}`): {reason}")]
    Option {
        /// The option, flag-style (`"timestep-spacing"`).
        option: &'static str,
        /// Why it does not apply.
        reason: &'static str,
    },
    /// A schedule file could not be read or parsed.
    #[error("schedule file {path}: {reason}")]
    File {
        /// The path.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// How a `ddpm-linear` trajectory of `T` steps sub-samples the `N` base steps.
///
/// With `n_0` the first (data-end) index and `M = N - n_0`:
/// `Even`: `n_i = n_0 + round(i M / T)`; `Quadratic`: `n_i = n_0 + round(M (i/T)^2)`,
/// both followed by `n_i = clamp(n_i, n_{i-1} + 1, N - (T - i))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Spacing {
    /// `n_i = n_0 + round(i (N - n_0) / T)`.
    Even,
    /// `n_i = n_0 + round((N - n_0) (i / T)^2)` (denser near the data).
    Quadratic,
}

/// A noise schedule: a decreasing map from time to `ln(abar)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// Continuous VP SDE with linear `beta(tau)` on `tau in [0, 1]`:
    /// `ln abar(tau) = -(beta_min tau + (beta_max - beta_min) tau^2 / 2)`.
    VpLinear {
        /// `beta(0)`, `>= 0` (default 0.1).
        beta_min: f64,
        /// `beta(1)`, `> beta_min` (default 20).
        beta_max: f64,
    },
    /// Discrete DDPM (Ho et al.) with `N` base steps,
    /// `beta_n = beta_start + (beta_end - beta_start) (n - 1) / (N - 1)` for `n = 1..=N`
    /// (`beta_1 = beta_start` when `N = 1`) and `ln abar_n = sum_{i <= n} ln(1 - beta_i)`,
    /// `ln abar_0 = 0`. Times are the base indices `n` as `f64`.
    DdpmLinear {
        /// Number of base steps `N`, `1 <= N <= MAX_STEPS` (default 1000).
        n: usize,
        /// `beta_1`, in `(0, 1)` (default `1e-4`).
        beta_start: f64,
        /// `beta_N`, in `(beta_start, 1)` (default `0.02`).
        beta_end: f64,
        /// How a `T`-step trajectory sub-samples the `N` base steps.
        spacing: Spacing,
    },
    /// SNR equally spaced from `lambda_max` (data end, `i = 0`) to `lambda_min`
    /// (noise end, `i = T`): `lambda_i = lambda_max + (lambda_min - lambda_max) (i / T)`,
    /// `ln abar_i = ln(lambda_i / (1 + lambda_i)) = -ln_1p(1 / lambda_i)`, times `tau_i = i / T`.
    /// The finite `lambda_max` is itself the early stop, so `early_stop` must be 0.
    SnrUniform {
        /// SNR at the noise end, `> 0` (default `1e-4`).
        lambda_min: f64,
        /// SNR at the data end, `> lambda_min` (default `1e3`).
        lambda_max: f64,
    },
    /// Cosine schedule (Nichol & Dhariwal): `f(tau) = cos^2(((tau + s)/(1 + s)) pi/2)`,
    /// `abar(tau) = f(tau) / f(0)`, `s = offset`, on `tau in [early_stop, tau_max]`.
    ///
    /// `tau_max < 1` because `abar(1) = 0` would make the terminal KL infinite; the
    /// default `tau_max = 0.995` plays the role of Nichol & Dhariwal's clipping of beta.
    /// Computed stably as `ln abar = 2 ln sin(((1 - tau)/(1 + s)) pi/2) - 2 ln sin((1/(1 + s)) pi/2)`
    /// (the same function, since `cos(((tau + s)/(1 + s)) pi/2) = sin(((1 - tau)/(1 + s)) pi/2)`).
    Cosine {
        /// The offset `s`, finite and `>= 0` (default 0.008).
        offset: f64,
        /// The last time `tau_T`, in `(0, 1)` (default 0.995).
        tau_max: f64,
    },
    /// A discrete table `alphas_cumprod[k]`, `k = 0..N-1`, with diffusers' timestep rules
    /// (from diffusers' formulas, a file or an array; see [`super::discrete`]). Times are
    /// `k + 1`; the data end is time 0 with `abar = 1`; `early_stop` must be 0 (the first
    /// timestep is already the early stop).
    Discrete(DiscreteSchedule),
}

/// Rejects a non-finite value.
fn finite(name: &'static str, value: f64) -> Result<(), ScheduleError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(ScheduleError::InvalidParameter {
            name,
            value,
            reason: "must be finite",
        })
    }
}

/// Shorthand for an [`ScheduleError::InvalidParameter`].
fn invalid(name: &'static str, value: f64, reason: &'static str) -> ScheduleError {
    ScheduleError::InvalidParameter {
        name,
        value,
        reason,
    }
}

/// The fraction `i / T`, computed exactly as `(i as f64) / (T as f64)` so that the grid
/// for `T` is bit-identical to every second point of the grid for `2T`.
fn frac(i: usize, steps: usize) -> f64 {
    (i as f64) / (steps as f64)
}

/// `round(num / den)` for non-negative integers, halves rounded up (exact).
fn round_div(num: u128, den: u128) -> u128 {
    (2 * num + den) / (2 * den)
}

impl Schedule {
    /// `vp-linear` with `beta_min = 0.1`, `beta_max = 20`.
    pub fn vp_linear() -> Self {
        Schedule::VpLinear {
            beta_min: 0.1,
            beta_max: 20.0,
        }
    }

    /// `ddpm-linear` with `N = 1000`, `beta_start = 1e-4`, `beta_end = 0.02` and the given spacing.
    pub fn ddpm_linear(spacing: Spacing) -> Self {
        Schedule::DdpmLinear {
            n: 1000,
            beta_start: 1e-4,
            beta_end: 0.02,
            spacing,
        }
    }

    /// `snr-uniform` with `lambda_min = 1e-4`, `lambda_max = 1e3`.
    pub fn snr_uniform() -> Self {
        Schedule::SnrUniform {
            lambda_min: 1e-4,
            lambda_max: 1e3,
        }
    }

    /// `cosine` with `s = 0.008`, `tau_max = 0.995`.
    pub fn cosine() -> Self {
        Schedule::Cosine {
            offset: 0.008,
            tau_max: 0.995,
        }
    }

    /// The default schedule of a name: `"vp-linear"`, `"ddpm-linear"` (= even),
    /// `"ddpm-linear-even"`, `"ddpm-linear-quadratic"`, `"snr-uniform"`, `"cosine"`.
    ///
    /// # Errors
    /// [`ScheduleError::UnknownSchedule`] for any other name (matching is exact).
    pub fn from_name(name: &str) -> Result<Self, ScheduleError> {
        match name {
            "vp-linear" => Ok(Self::vp_linear()),
            "ddpm-linear" | "ddpm-linear-even" => Ok(Self::ddpm_linear(Spacing::Even)),
            "ddpm-linear-quadratic" => Ok(Self::ddpm_linear(Spacing::Quadratic)),
            "snr-uniform" => Ok(Self::snr_uniform()),
            "cosine" => Ok(Self::cosine()),
            other => Err(ScheduleError::UnknownSchedule(other.to_string())),
        }
    }

    /// The canonical name (inverse of [`Schedule::from_name`] on the defaults; parameters
    /// are not encoded): `"vp-linear"`, `"ddpm-linear-even"`, `"ddpm-linear-quadratic"`,
    /// `"snr-uniform"` or `"cosine"`.
    pub fn name(&self) -> String {
        match self {
            Schedule::VpLinear { .. } => "vp-linear",
            Schedule::DdpmLinear {
                spacing: Spacing::Even,
                ..
            } => "ddpm-linear-even",
            Schedule::DdpmLinear {
                spacing: Spacing::Quadratic,
                ..
            } => "ddpm-linear-quadratic",
            Schedule::SnrUniform { .. } => "snr-uniform",
            Schedule::Cosine { .. } => "cosine",
            Schedule::Discrete(d) => return d.source.clone(),
        }
        .to_string()
    }

    /// Validates the parameters: all finite, and
    /// `vp-linear`: `0 <= beta_min < beta_max`;
    /// `ddpm-linear`: `1 <= n <= MAX_STEPS`, `0 < beta_start < beta_end < 1`;
    /// `snr-uniform`: `0 < lambda_min < lambda_max`;
    /// `cosine`: `offset >= 0`, `0 < tau_max < 1`.
    ///
    /// # Errors
    /// [`ScheduleError::InvalidParameter`] naming the first offending field.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        match *self {
            Schedule::VpLinear { beta_min, beta_max } => {
                finite("beta_min", beta_min)?;
                finite("beta_max", beta_max)?;
                if beta_min < 0.0 {
                    return Err(invalid("beta_min", beta_min, "must be >= 0"));
                }
                if beta_max <= beta_min {
                    return Err(invalid("beta_max", beta_max, "must be > beta_min"));
                }
            }
            Schedule::DdpmLinear {
                n,
                beta_start,
                beta_end,
                ..
            } => {
                if n == 0 || n > MAX_STEPS {
                    return Err(invalid("n", n as f64, "must be in 1..=2^24"));
                }
                finite("beta_start", beta_start)?;
                finite("beta_end", beta_end)?;
                if beta_start <= 0.0 || beta_start >= 1.0 {
                    return Err(invalid("beta_start", beta_start, "must be in (0, 1)"));
                }
                if beta_end <= beta_start || beta_end >= 1.0 {
                    return Err(invalid("beta_end", beta_end, "must be in (beta_start, 1)"));
                }
            }
            Schedule::SnrUniform {
                lambda_min,
                lambda_max,
            } => {
                finite("lambda_min", lambda_min)?;
                finite("lambda_max", lambda_max)?;
                if lambda_min <= 0.0 {
                    return Err(invalid("lambda_min", lambda_min, "must be > 0"));
                }
                if lambda_max <= lambda_min {
                    return Err(invalid("lambda_max", lambda_max, "must be > lambda_min"));
                }
            }
            Schedule::Cosine { offset, tau_max } => {
                finite("offset", offset)?;
                finite("tau_max", tau_max)?;
                if offset < 0.0 {
                    return Err(invalid("offset", offset, "must be >= 0"));
                }
                if tau_max <= 0.0 || tau_max >= 1.0 {
                    return Err(invalid(
                        "tau_max",
                        tau_max,
                        "must be in (0, 1) (abar(1) = 0 makes the terminal KL infinite)",
                    ));
                }
            }
            Schedule::Discrete(ref d) => d.validate()?,
        }
        Ok(())
    }

    /// The end of the time range that `early_stop` must stay below
    /// (1 for `vp-linear`/`ddpm-linear`/`snr-uniform`, `tau_max` for `cosine`).
    fn early_stop_end(&self) -> f64 {
        match *self {
            Schedule::Cosine { tau_max, .. } => tau_max,
            _ => 1.0,
        }
    }

    /// `ln abar` at the fraction `u in [0, 1]` of a continuous schedule's grid, the value
    /// the `T`-step grid takes at `u = i / T` (bit for bit: `grid(T, delta).ln_abar[i]`):
    /// `u` is the sampler's own clock, on which the local error densities and the
    /// asymptotic constants of `docs/schedules.md` are defined. `None` for the discrete
    /// schedules (`ddpm-linear`, tables), whose grids are rounded base indices, for `u`
    /// outside `[0, 1]` and for an invalid schedule or early stop.
    #[must_use]
    pub fn ln_abar_at(&self, u: f64, early_stop: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&u) || self.validate().is_err() {
            return None;
        }
        let delta_ok = |end: f64| (0.0..end).contains(&early_stop);
        match *self {
            Schedule::VpLinear { beta_min, beta_max } if delta_ok(1.0) => Some(vp_linear_ln_abar(
                beta_min,
                beta_max,
                continuous_time(early_stop, 1.0, u),
            )),
            Schedule::SnrUniform {
                lambda_min,
                lambda_max,
            } if early_stop == 0.0 => Some(snr_uniform_ln_abar(lambda_min, lambda_max, u)),
            Schedule::Cosine { offset, tau_max } if delta_ok(tau_max) => Some(cosine_ln_abar(
                offset,
                continuous_time(early_stop, tau_max, u),
            )),
            _ => None,
        }
    }

    /// Builds the `T`-step grid (`T = steps`) with early stop `delta = early_stop`.
    ///
    /// - `vp-linear`: `tau_i = delta + (1 - delta) (i / T)`,
    ///   `ln abar_i = -(beta_min tau_i + (beta_max - beta_min) tau_i^2 / 2)`.
    /// - `ddpm-linear`: `t_0 = n_0 = 0` if `delta = 0`, else `max(1, round(delta N))`;
    ///   `n_1 < ... < n_T = N` by the [`Spacing`] rule with clamping
    ///   `n_i = clamp(n_i, n_{i-1} + 1, N - (T - i))`; `ln abar` from the cumulative
    ///   (Neumaier-compensated) sum of `ln_1p(-beta_n)`. Requires `T <= N - n_0`.
    /// - `snr-uniform`: `lambda_i = lambda_max + (lambda_min - lambda_max) (i / T)`,
    ///   `ln abar_i = -ln_1p(1 / lambda_i)`, `tau_i = i / T`; requires `delta = 0`.
    /// - `cosine`: `tau_i = delta + (tau_max - delta) (i / T)`,
    ///   `ln abar_i = 2 ln sin(((1 - tau_i)/(1 + s)) pi/2) - 2 ln sin((1/(1 + s)) pi/2)`.
    ///
    /// The fraction `i / T` is computed as `(i as f64) / (T as f64)`, so for the continuous
    /// schedules the grid for `T` is bit-identical to the even points of the grid for `2T`;
    /// the last time is set to the exact end (`1`, or `tau_max`).
    ///
    /// # Errors
    /// Parameter errors of [`Schedule::validate`]; [`ScheduleError::ZeroSteps`] if `T = 0`;
    /// `InvalidParameter` named `"early_stop"` if `delta` is NaN, negative or `>=` the end of
    /// the time range (1, or `tau_max`), or `> 0` for `snr-uniform`, or if
    /// `round(delta N) >= N` for `ddpm-linear`; [`ScheduleError::TooManySteps`] if
    /// `T > N - n_0` (`ddpm-linear`) or `T > MAX_STEPS`; `InvalidParameter` named `"steps"`
    /// if the grid is not strictly monotone in `f64` (too many steps for the parameters).
    pub fn grid(&self, steps: usize, early_stop: f64) -> Result<Grid, ScheduleError> {
        self.validate()?;
        if steps == 0 {
            return Err(ScheduleError::ZeroSteps);
        }
        let delta = early_stop;
        if delta.is_nan() {
            return Err(invalid("early_stop", delta, "must not be NaN"));
        }
        if delta < 0.0 {
            return Err(invalid("early_stop", delta, "must be >= 0"));
        }
        if delta >= self.early_stop_end() {
            return Err(invalid(
                "early_stop",
                delta,
                "must be below the end of the time range (1, or tau_max for cosine)",
            ));
        }
        if steps > MAX_STEPS {
            return Err(ScheduleError::TooManySteps {
                steps,
                max: MAX_STEPS,
            });
        }
        let grid = match *self {
            Schedule::VpLinear { beta_min, beta_max } => {
                let times = continuous_times(delta, 1.0, steps);
                let ln_abar = times
                    .iter()
                    .map(|&tau| vp_linear_ln_abar(beta_min, beta_max, tau))
                    .collect();
                Grid { times, ln_abar }
            }
            Schedule::DdpmLinear {
                n,
                beta_start,
                beta_end,
                spacing,
            } => ddpm_grid(n, beta_start, beta_end, spacing, steps, delta)?,
            Schedule::SnrUniform {
                lambda_min,
                lambda_max,
            } => {
                if delta > 0.0 {
                    return Err(invalid(
                        "early_stop",
                        delta,
                        "must be 0 for snr-uniform (already early-stopped by lambda_max)",
                    ));
                }
                let mut times = Vec::with_capacity(steps + 1);
                let mut ln_abar = Vec::with_capacity(steps + 1);
                for i in 0..=steps {
                    let u = frac(i, steps);
                    times.push(u);
                    ln_abar.push(snr_uniform_ln_abar(lambda_min, lambda_max, u));
                }
                Grid { times, ln_abar }
            }
            Schedule::Cosine { offset, tau_max } => {
                let times = continuous_times(delta, tau_max, steps);
                let ln_abar = times
                    .iter()
                    .map(|&tau| cosine_ln_abar(offset, tau))
                    .collect();
                Grid { times, ln_abar }
            }
            Schedule::Discrete(ref d) => {
                if delta > 0.0 {
                    return Err(invalid(
                        "early_stop",
                        delta,
                        "must be 0 for a discrete schedule (its first timestep is the early stop)",
                    ));
                }
                d.grid(steps)?
            }
        };
        check_monotone(&grid, steps)?;
        Ok(grid)
    }
}

/// `tau_i = delta + (end - delta) (i / T)` for `i = 0..=T`, with `tau_T = end` exactly.
fn continuous_times(delta: f64, end: f64, steps: usize) -> Vec<f64> {
    (0..=steps)
        .map(|i| continuous_time(delta, end, frac(i, steps)))
        .collect()
}

/// The time at the fraction `u in [0, 1]` of `[delta, end]`: `delta + (end - delta) u`, and
/// `end` itself at `u = 1`.
fn continuous_time(delta: f64, end: f64, u: f64) -> f64 {
    if u >= 1.0 {
        end
    } else {
        delta + (end - delta) * u
    }
}

/// `vp-linear`: `ln abar(tau) = -(beta_min tau + (beta_max - beta_min) tau^2 / 2)`, written
/// `0.0 - (..)` so that `tau = 0` gives `+0.0`, not `-0.0`.
fn vp_linear_ln_abar(beta_min: f64, beta_max: f64, tau: f64) -> f64 {
    0.0 - (beta_min * tau + (beta_max - beta_min) * tau * tau / 2.0)
}

/// `snr-uniform` at the fraction `u`: `lambda = lambda_max + (lambda_min - lambda_max) u`
/// (`lambda_min` itself at `u = 1`), `ln abar = -ln_1p(1 / lambda)`.
fn snr_uniform_ln_abar(lambda_min: f64, lambda_max: f64, u: f64) -> f64 {
    let lambda = if u >= 1.0 {
        lambda_min
    } else {
        lambda_max + (lambda_min - lambda_max) * u
    };
    -(1.0 / lambda).ln_1p()
}

/// `cosine`: `ln abar = 2 ln sin(((1 - tau)/(1 + s)) pi/2) - 2 ln sin((1/(1 + s)) pi/2)`.
fn cosine_ln_abar(offset: f64, tau: f64) -> f64 {
    let half_pi = std::f64::consts::FRAC_PI_2;
    let ln_f0 = 2.0 * ((1.0 / (1.0 + offset)) * half_pi).sin().ln();
    2.0 * (((1.0 - tau) / (1.0 + offset)) * half_pi).sin().ln() - ln_f0
}

/// The `ddpm-linear` grid (parameters already validated, `1 <= steps`, `0 <= delta < 1`).
fn ddpm_grid(
    n: usize,
    beta_start: f64,
    beta_end: f64,
    spacing: Spacing,
    steps: usize,
    delta: f64,
) -> Result<Grid, ScheduleError> {
    let n0 = if delta > 0.0 {
        // delta in (0, 1), so the product lies in (0, n) and the cast is exact after rounding.
        ((delta * n as f64).round() as usize).max(1)
    } else {
        0
    };
    if n0 >= n {
        return Err(invalid(
            "early_stop",
            delta,
            "round(early_stop * n) must be < n for ddpm-linear",
        ));
    }
    let m = n - n0;
    if steps > m {
        return Err(ScheduleError::TooManySteps { steps, max: m });
    }

    // Base table ln abar_k, k = 0..=n, by a Neumaier-compensated cumulative sum.
    let mut table = Vec::with_capacity(n + 1);
    table.push(0.0);
    let (mut sum, mut comp) = (0.0_f64, 0.0_f64);
    for k in 1..=n {
        let beta = if n == 1 {
            beta_start
        } else {
            beta_start + (beta_end - beta_start) * ((k - 1) as f64) / ((n - 1) as f64)
        };
        let term = (-beta).ln_1p();
        let next = sum + term;
        if sum.abs() >= term.abs() {
            comp += (sum - next) + term;
        } else {
            comp += (term - next) + sum;
        }
        sum = next;
        table.push(sum + comp);
    }

    // Trajectory n_0 < n_1 < ... < n_T = n, in exact integer arithmetic.
    let (t_u, m_u) = (steps as u128, m as u128);
    let mut idx = Vec::with_capacity(steps + 1);
    idx.push(n0);
    let mut prev = n0;
    for i in 1..=steps {
        let i_u = i as u128;
        let off = match spacing {
            Spacing::Even => round_div(i_u * m_u, t_u),
            Spacing::Quadratic => round_div(m_u * i_u * i_u, t_u * t_u),
        };
        // off <= m <= MAX_STEPS, so the cast is lossless.
        let raw = n0 + off as usize;
        let lo = prev + 1;
        let hi = n - (steps - i);
        let ni = raw.max(lo).min(hi);
        idx.push(ni);
        prev = ni;
    }

    let times = idx.iter().map(|&k| k as f64).collect();
    let ln_abar = idx.iter().map(|&k| table[k]).collect();
    Ok(Grid { times, ln_abar })
}

/// Checks the grid invariants: times strictly increasing, `ln_abar` strictly decreasing,
/// all finite, `ln_abar <= 0`.
fn check_monotone(grid: &Grid, steps: usize) -> Result<(), ScheduleError> {
    let finite_ok = grid
        .times
        .iter()
        .chain(grid.ln_abar.iter())
        .all(|v| v.is_finite())
        && grid.ln_abar.iter().all(|&l| l <= 0.0);
    let times_ok = grid.times.windows(2).all(|w| w[0] < w[1]);
    let ln_ok = grid.ln_abar.windows(2).all(|w| w[1] < w[0]);
    if finite_ok && times_ok && ln_ok {
        Ok(())
    } else {
        Err(invalid(
            "steps",
            steps as f64,
            "grid is not strictly monotone in f64 (too many steps for these parameters)",
        ))
    }
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;

    /// As [`Schedule::from_name`].
    fn from_str(name: &str) -> Result<Self, ScheduleError> {
        Self::from_name(name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use approx::assert_relative_eq;

    const TS: [usize; 7] = [1, 2, 3, 7, 8, 64, 1000];

    pub(crate) fn all_schedules() -> Vec<Schedule> {
        vec![
            Schedule::vp_linear(),
            Schedule::ddpm_linear(Spacing::Even),
            Schedule::ddpm_linear(Spacing::Quadratic),
            Schedule::snr_uniform(),
            Schedule::cosine(),
        ]
    }

    #[test]
    fn ln_abar_at_is_the_grid_value_bit_for_bit() {
        // The clock u = i / T of every continuous schedule gives the grid's ln abar exactly
        // (with and without early stop); the discrete ones and u outside [0, 1] give None.
        for sched in all_schedules() {
            let continuous = !matches!(sched, Schedule::DdpmLinear { .. });
            for delta in [0.0, 1e-3] {
                if matches!(sched, Schedule::SnrUniform { .. }) && delta > 0.0 {
                    assert!(sched.ln_abar_at(0.5, delta).is_none());
                    continue;
                }
                for t in [1usize, 3, 7, 64] {
                    let g = sched.grid(t, delta).expect("grid");
                    for i in 0..=t {
                        let u = (i as f64) / (t as f64);
                        let got = sched.ln_abar_at(u, delta);
                        if continuous {
                            let v = got.expect("continuous schedule");
                            assert_eq!(
                                v.to_bits(),
                                g.ln_abar[i].to_bits(),
                                "{sched:?} T={t} i={i}"
                            );
                        } else {
                            assert!(got.is_none());
                        }
                    }
                }
            }
            assert!(sched.ln_abar_at(-0.1, 0.0).is_none());
            assert!(sched.ln_abar_at(1.5, 0.0).is_none());
            assert!(sched.ln_abar_at(f64::NAN, 0.0).is_none());
        }
    }

    fn assert_invariants(g: &Grid, steps: usize, label: &str) {
        assert_eq!(g.steps(), steps, "{label}");
        assert_eq!(g.times.len(), steps + 1, "{label}");
        assert_eq!(g.ln_abar.len(), steps + 1, "{label}");
        for w in g.times.windows(2) {
            assert!(w[0] < w[1], "{label}: times not increasing {w:?}");
        }
        for w in g.ln_abar.windows(2) {
            assert!(w[1] < w[0], "{label}: ln_abar not decreasing {w:?}");
        }
        for i in 0..=steps {
            assert!(g.ln_abar[i] <= 0.0, "{label}: ln_abar > 0 at {i}");
            if i > 0 {
                assert!(g.abar(i) < g.abar(i - 1), "{label}: abar not decreasing");
            }
        }
    }

    #[test]
    fn monotone_for_every_schedule_and_t() {
        for sched in all_schedules() {
            for &t in &TS {
                let g = sched.grid(t, 0.0).expect("valid grid");
                assert_invariants(&g, t, &format!("{} T={t}", sched.name()));
            }
        }
        // With early stops too (snr-uniform takes none).
        for (sched, delta) in [
            (Schedule::vp_linear(), 1e-3),
            (Schedule::ddpm_linear(Spacing::Even), 1e-3),
            (Schedule::ddpm_linear(Spacing::Quadratic), 0.05),
            (Schedule::cosine(), 1e-3),
        ] {
            for &t in &[1usize, 2, 3, 7, 8, 64, 900] {
                let g = sched.grid(t, delta).expect("valid grid");
                assert_invariants(&g, t, &format!("{} T={t} delta={delta}", sched.name()));
            }
        }
    }

    /// Independent reference: the running product of (1 - beta_n), beta_n from the spec.
    fn ddpm_products() -> Vec<f64> {
        let n = 1000usize;
        let mut p = vec![1.0];
        let mut acc = 1.0_f64;
        for k in 1..=n {
            let beta = 1e-4 + (0.02 - 1e-4) * (k as f64 - 1.0) / (n as f64 - 1.0);
            acc *= 1.0 - beta;
            p.push(acc);
        }
        p
    }

    #[test]
    fn ddpm_matches_running_product() {
        let p = ddpm_products();
        for spacing in [Spacing::Even, Spacing::Quadratic] {
            for &t in &TS {
                let g = Schedule::ddpm_linear(spacing).grid(t, 0.0).expect("grid");
                assert_relative_eq!(g.times[0], 0.0);
                assert_eq!(g.ln_abar[0].to_bits(), 0.0_f64.to_bits());
                assert_eq!(g.times[t].to_bits(), 1000.0_f64.to_bits());
                for (i, &time) in g.times.iter().enumerate() {
                    let k = time as usize;
                    assert_eq!((k as f64).to_bits(), time.to_bits(), "times are integers");
                    // The running product accumulates <= 1000 roundings (relative error
                    // <= 1000 * 1.1e-16 ~ 1.1e-13), so abar agrees to relative 1e-12 ...
                    assert_relative_eq!(g.abar(i), p[k], max_relative = 1e-12);
                    // ... and ln(abar) to absolute 1e-12 (a relative error r of p is an
                    // absolute error r of ln p; near n = 1, ln p ~ -1e-4 so a relative
                    // comparison of the logs would only measure the reference's rounding).
                    assert_relative_eq!(g.ln_abar[i], p[k].ln(), epsilon = 1e-12);
                    if k >= 100 {
                        // Far from the data |ln p| >= 0.1, so relative 1e-12 holds directly.
                        assert_relative_eq!(g.ln_abar[i], p[k].ln(), max_relative = 1e-12);
                    }
                }
            }
        }
    }

    #[test]
    fn ddpm_spacing_indices() {
        let even = Schedule::ddpm_linear(Spacing::Even)
            .grid(4, 0.0)
            .expect("grid");
        assert_eq!(even.times, vec![0.0, 250.0, 500.0, 750.0, 1000.0]);
        let quad = Schedule::ddpm_linear(Spacing::Quadratic)
            .grid(4, 0.0)
            .expect("grid");
        // round(1000 (i/4)^2) = 63 (62.5 rounds up), 250, 563 (562.5 up), 1000.
        assert_eq!(quad.times, vec![0.0, 63.0, 250.0, 563.0, 1000.0]);
        // T = N: every base step, for both spacings (clamping repairs the quadratic one).
        for spacing in [Spacing::Even, Spacing::Quadratic] {
            let g = Schedule::ddpm_linear(spacing)
                .grid(1000, 0.0)
                .expect("grid");
            let want: Vec<f64> = (0..=1000).map(|k| k as f64).collect();
            assert_eq!(g.times, want);
        }
        // Early stop: n_0 = round(0.05 * 1000) = 50, spread over (50, 1000].
        let es = Schedule::ddpm_linear(Spacing::Even)
            .grid(5, 0.05)
            .expect("grid");
        assert_eq!(es.times, vec![50.0, 240.0, 430.0, 620.0, 810.0, 1000.0]);
        assert!(es.ln_abar[0] < 0.0);
        // A tiny early stop still moves off the data: n_0 = max(1, round(1e-6 * 1000)) = 1.
        let tiny = Schedule::ddpm_linear(Spacing::Even)
            .grid(3, 1e-6)
            .expect("grid");
        assert_eq!(tiny.times[0].to_bits(), 1.0_f64.to_bits());
        // T = N - n_0 is the largest admissible.
        assert!(Schedule::ddpm_linear(Spacing::Even).grid(950, 0.05).is_ok());
        assert_eq!(
            Schedule::ddpm_linear(Spacing::Even).grid(951, 0.05),
            Err(ScheduleError::TooManySteps {
                steps: 951,
                max: 950
            })
        );
    }

    #[test]
    fn vp_linear_nested_and_endpoint() {
        for delta in [0.0, 1e-3, 0.3] {
            for &t in &TS {
                let g = Schedule::vp_linear().grid(t, delta).expect("grid");
                let g2 = Schedule::vp_linear().grid(2 * t, delta).expect("grid");
                for i in 0..=t {
                    assert_eq!(g.times[i].to_bits(), g2.times[2 * i].to_bits());
                    assert_eq!(g.ln_abar[i].to_bits(), g2.ln_abar[2 * i].to_bits());
                }
                assert_eq!(g.times[0].to_bits(), delta.to_bits());
                assert_eq!(g.times[t].to_bits(), 1.0_f64.to_bits());
            }
        }
        let g = Schedule::vp_linear().grid(10, 0.0).expect("grid");
        // ln abar(1) = -(0.1 + 19.9/2): both sides round a handful of times, so 4 ulps.
        assert_relative_eq!(
            g.ln_abar[10],
            -(0.1 + 19.9 / 2.0),
            max_relative = 4.0 * f64::EPSILON
        );
        assert_eq!(g.ln_abar[0].to_bits(), 0.0_f64.to_bits());
        // Clean data: 1 - abar = +0 and SNR = +inf (not -0 / -inf).
        assert_eq!(g.one_minus_abar(0).to_bits(), 0.0_f64.to_bits());
        assert!(g.snr(0).is_infinite() && g.snr(0) > 0.0);
        assert!(g.snr(10) > 0.0 && g.snr(10).is_finite());
    }

    #[test]
    fn cosine_matches_naive_formula_and_is_nested() {
        let s = 0.008_f64;
        let f = |tau: f64| {
            (((tau + s) / (1.0 + s)) * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        for &t in &TS {
            let g = Schedule::cosine().grid(t, 0.0).expect("grid");
            let g2 = Schedule::cosine().grid(2 * t, 0.0).expect("grid");
            assert_eq!(g.times[t].to_bits(), 0.995_f64.to_bits());
            for i in 0..=t {
                assert_eq!(g.times[i].to_bits(), g2.times[2 * i].to_bits());
                // The naive cos form loses relative accuracy near pi/2 (cos ~ 8e-3 at
                // tau_max: ~1e-16 / 8e-3 ~ 1e-14 relative), so compare to 1e-11.
                assert_relative_eq!(g.abar(i), f(g.times[i]) / f(0.0), max_relative = 1e-11);
            }
        }
    }

    #[test]
    fn snr_uniform_endpoints_and_early_stop() {
        for &t in &TS {
            let g = Schedule::snr_uniform().grid(t, 0.0).expect("grid");
            // ln_1p / expm1 round-trip: a few roundings each, well below 1e-12.
            assert_relative_eq!(g.snr(0), 1e3, max_relative = 1e-12);
            assert_relative_eq!(g.snr(t), 1e-4, max_relative = 1e-12);
            assert_relative_eq!(g.times[t], 1.0);
            if t >= 2 {
                // Equally spaced in lambda: the middle differences match the first one;
                // lambda ~ 1e3 carries ~1e-13 absolute rounding, so relative 1e-9.
                let d0 = g.snr(0) - g.snr(1);
                let d1 = g.snr(t - 1) - g.snr(t);
                assert_relative_eq!(d0, d1, max_relative = 1e-9);
            }
        }
        let err = Schedule::snr_uniform()
            .grid(4, 0.1)
            .expect_err("early stop");
        assert!(matches!(
            err,
            ScheduleError::InvalidParameter {
                name: "early_stop",
                ..
            }
        ));
        assert!(err.to_string().contains("early_stop"));
    }

    #[test]
    fn errors() {
        let vp = Schedule::vp_linear();
        let e = vp.grid(0, 0.0).expect_err("T = 0");
        assert_eq!(e, ScheduleError::ZeroSteps);
        assert!(e.to_string().contains("steps"));

        for (sched, bad) in [
            (Schedule::vp_linear(), f64::NAN),
            (Schedule::vp_linear(), -0.1),
            (Schedule::vp_linear(), 1.0),
            (Schedule::vp_linear(), 2.0),
            (Schedule::ddpm_linear(Spacing::Even), 1.0),
            (Schedule::ddpm_linear(Spacing::Even), f64::NAN),
            (Schedule::ddpm_linear(Spacing::Even), 0.9999),
            (Schedule::snr_uniform(), f64::NAN),
            (Schedule::snr_uniform(), -1.0),
            (Schedule::cosine(), 0.995),
            (Schedule::cosine(), f64::INFINITY),
        ] {
            let e = sched.grid(4, bad).expect_err("bad early stop");
            assert!(
                matches!(
                    e,
                    ScheduleError::InvalidParameter {
                        name: "early_stop",
                        ..
                    }
                ),
                "{} {bad}: {e:?}",
                sched.name()
            );
            assert!(e.to_string().contains("early_stop"), "{e}");
        }

        let e = Schedule::from_name("vp_linear").expect_err("unknown");
        assert_eq!(e, ScheduleError::UnknownSchedule("vp_linear".to_string()));
        let msg = e.to_string();
        for name in SCHEDULE_NAMES {
            assert!(msg.contains(name), "{msg} lacks {name}");
        }

        let e = Schedule::ddpm_linear(Spacing::Quadratic)
            .grid(1001, 0.0)
            .expect_err("T > N");
        assert_eq!(
            e,
            ScheduleError::TooManySteps {
                steps: 1001,
                max: 1000
            }
        );
        assert!(e.to_string().contains("steps (T) = 1001"), "{e}");

        let e = vp.grid(MAX_STEPS + 1, 0.0).expect_err("too many");
        assert!(matches!(e, ScheduleError::TooManySteps { .. }));

        fn assert_send_sync<T: Send + Sync + std::error::Error + 'static>() {}
        assert_send_sync::<ScheduleError>();
    }

    #[test]
    fn invalid_parameters() {
        let cases: Vec<(Schedule, &str)> = vec![
            (
                Schedule::VpLinear {
                    beta_min: f64::NAN,
                    beta_max: 20.0,
                },
                "beta_min",
            ),
            (
                Schedule::VpLinear {
                    beta_min: -0.1,
                    beta_max: 20.0,
                },
                "beta_min",
            ),
            (
                Schedule::VpLinear {
                    beta_min: 1.0,
                    beta_max: 1.0,
                },
                "beta_max",
            ),
            (
                Schedule::VpLinear {
                    beta_min: 0.1,
                    beta_max: f64::INFINITY,
                },
                "beta_max",
            ),
            (
                Schedule::DdpmLinear {
                    n: 0,
                    beta_start: 1e-4,
                    beta_end: 0.02,
                    spacing: Spacing::Even,
                },
                "n",
            ),
            (
                Schedule::DdpmLinear {
                    n: 10,
                    beta_start: 0.0,
                    beta_end: 0.02,
                    spacing: Spacing::Even,
                },
                "beta_start",
            ),
            (
                Schedule::DdpmLinear {
                    n: 10,
                    beta_start: 0.1,
                    beta_end: 0.05,
                    spacing: Spacing::Even,
                },
                "beta_end",
            ),
            (
                Schedule::DdpmLinear {
                    n: 10,
                    beta_start: 0.1,
                    beta_end: 1.0,
                    spacing: Spacing::Even,
                },
                "beta_end",
            ),
            (
                Schedule::SnrUniform {
                    lambda_min: 0.0,
                    lambda_max: 1.0,
                },
                "lambda_min",
            ),
            (
                Schedule::SnrUniform {
                    lambda_min: 2.0,
                    lambda_max: 1.0,
                },
                "lambda_max",
            ),
            (
                Schedule::SnrUniform {
                    lambda_min: 1e-4,
                    lambda_max: f64::NAN,
                },
                "lambda_max",
            ),
            (
                Schedule::Cosine {
                    offset: -0.1,
                    tau_max: 0.9,
                },
                "offset",
            ),
            (
                Schedule::Cosine {
                    offset: 0.008,
                    tau_max: 1.0,
                },
                "tau_max",
            ),
            (
                Schedule::Cosine {
                    offset: 0.008,
                    tau_max: 0.0,
                },
                "tau_max",
            ),
        ];
        for (sched, field) in cases {
            let e = sched.validate().expect_err("invalid");
            assert!(
                matches!(e, ScheduleError::InvalidParameter { name, .. } if name == field),
                "{sched:?}: {e:?}"
            );
            assert!(e.to_string().contains(field), "{e}");
            // Compare messages: the value may be NaN, which is never == itself.
            assert_eq!(
                sched.grid(3, 0.0).expect_err("invalid").to_string(),
                e.to_string()
            );
        }
        for sched in all_schedules() {
            assert!(sched.validate().is_ok());
        }
        // N = 1 is allowed: a single base step with beta_1 = beta_start.
        let one = Schedule::DdpmLinear {
            n: 1,
            beta_start: 0.5,
            beta_end: 0.6,
            spacing: Spacing::Even,
        };
        let g = one.grid(1, 0.0).expect("grid");
        assert_relative_eq!(g.abar(1), 0.5, max_relative = 2.0 * f64::EPSILON);
        // A grid too fine for f64 is an error, not a silent tie.
        // beta_max = smallest subnormal: every ln abar underflows to -0.0 (ties).
        let flat = Schedule::VpLinear {
            beta_min: 0.0,
            beta_max: f64::from_bits(1),
        };
        let e = flat.grid(8, 0.0).expect_err("flat");
        assert!(
            matches!(e, ScheduleError::InvalidParameter { name: "steps", .. }),
            "{e:?}"
        );
    }

    #[test]
    fn name_round_trip() {
        for sched in all_schedules() {
            let back = Schedule::from_name(&sched.name()).expect("round trip");
            assert_eq!(back, sched);
        }
        for name in SCHEDULE_NAMES {
            let sched = Schedule::from_name(name).expect("valid name");
            let canon = sched.name();
            assert_eq!(Schedule::from_name(&canon).expect("canonical"), sched);
            if name != "ddpm-linear" {
                assert_eq!(canon, name);
            }
        }
        assert_eq!(
            Schedule::from_name("ddpm-linear").expect("alias"),
            Schedule::ddpm_linear(Spacing::Even)
        );
    }

    #[test]
    fn serde_round_trip() {
        for sched in all_schedules() {
            let json = serde_json::to_string(&sched).expect("serialize");
            let back: Schedule = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, sched);
            let g = sched.grid(7, 0.0).expect("grid");
            let gj = serde_json::to_string(&g).expect("serialize");
            let gb: Grid = serde_json::from_str(&gj).expect("deserialize");
            assert_eq!(gb.times.len(), g.times.len());
            // serde_json's default float parser may be off by one ulp: allow 2 ulps.
            for (x, y) in gb
                .times
                .iter()
                .chain(&gb.ln_abar)
                .zip(g.times.iter().chain(&g.ln_abar))
            {
                assert_relative_eq!(*x, *y, max_relative = 2.0 * f64::EPSILON);
            }
        }
    }
}
