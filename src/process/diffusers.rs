//! diffusers' discrete schedules, reproduced in its own arithmetic: the `alphas_cumprod` of
//! `DDPMScheduler`/`DDIMScheduler` for `beta_schedule` = `"linear"`, `"scaled_linear"` and
//! `"squaredcos_cap_v2"`, and the `timesteps` of `set_timesteps` for `timestep_spacing` =
//! `"leading"`, `"linspace"` and `"trailing"`.
//!
//! diffusers computes in float32, so the values here are float32 numbers (read as `f64`),
//! computed the way torch does on the CPU:
//! - `linear`: `betas = torch.linspace(beta_start, beta_end, N, dtype=float32)`, torch's
//!   linspace being, in float32, `step = (end - start) / (N - 1)` and
//!   `beta_i = start + step i` for `i < N / 2`, `end - step (N - 1 - i)` above;
//! - `scaled_linear`: the same linspace between `sqrt(beta_start)` and `sqrt(beta_end)`
//!   (square roots in f64, then float32), squared in float32;
//! - `squaredcos_cap_v2`: in f64, `f(t) = cos(((t + 0.008) / 1.008) pi / 2)^2` and
//!   `beta_i = min(1 - f((i + 1) / N) / f(i / N), 0.999)`, then float32;
//! - `alphas = 1 - betas` in float32, and `alphas_cumprod = cumprod(alphas)` accumulated in
//!   f64 and rounded to float32 at each entry (torch's CPU `cumprod` accumulates in `double`).
//!
//! The float32 rounding is not negligible against the f64 formulas: it moves `alphas_cumprod`
//! of `squaredcos_cap_v2` by up to 1.3e-5 relative at `N = 1000` (the clipped betas near 0.999
//! lose their last digits in float32, and `1 - beta` with them), of `scaled_linear` by up to
//! 9.5e-7 and of `linear` by up to 2.8e-7.
//! A model trained with diffusers was trained on the float32 numbers, so they are the truth
//! here.
//!
//! Timesteps (numpy, in diffusers' order: descending), with `N` train timesteps and `T`
//! inference steps:
//! - `leading`: `arange(0, T) * (N // T) + steps_offset`;
//! - `linspace`: `round(linspace(0, N - 1, T))` (numpy rounds half to even);
//! - `trailing`: `round(arange(N, 0, -N / T)) - 1`, with numpy's float `arange` (length
//!   `ceil(N / (N / T))`, entries `N + i delta` with `delta = (N - N / T) - N`): for some `T`
//!   (e.g. 998 at `N = 1000`) round-off makes that length `T + 1`, and diffusers then runs
//!   `T + 1` steps. [`timesteps`] returns that list as diffusers does; a grid of `T` steps
//!   refuses it (see [`super::discrete`]).

use serde::{Deserialize, Serialize};

use super::schedule::ScheduleError;

/// diffusers' `beta_schedule` values reproduced here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BetaSchedule {
    /// `"linear"`: betas linear from `beta_start` to `beta_end`.
    Linear,
    /// `"scaled_linear"`: square roots of the betas linear (latent diffusion).
    ScaledLinear,
    /// `"squaredcos_cap_v2"`: Nichol & Dhariwal's cosine `abar`, betas clipped at 0.999.
    SquaredcosCapV2,
}

/// The names accepted by [`BetaSchedule::from_name`].
pub const BETA_SCHEDULE_NAMES: [&str; 3] = ["linear", "scaled_linear", "squaredcos_cap_v2"];

impl BetaSchedule {
    /// The schedule of a diffusers name.
    ///
    /// # Errors
    /// [`ScheduleError::UnknownName`] naming `beta_schedule` and the valid names.
    pub fn from_name(name: &str) -> Result<Self, ScheduleError> {
        match name {
            "linear" => Ok(Self::Linear),
            "scaled_linear" => Ok(Self::ScaledLinear),
            "squaredcos_cap_v2" => Ok(Self::SquaredcosCapV2),
            other => Err(ScheduleError::UnknownName {
                field: "beta_schedule",
                value: other.to_string(),
                valid: BETA_SCHEDULE_NAMES.join(", "),
            }),
        }
    }

    /// The diffusers name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::ScaledLinear => "scaled_linear",
            Self::SquaredcosCapV2 => "squaredcos_cap_v2",
        }
    }
}

/// diffusers' `timestep_spacing` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimestepSpacing {
    /// `"leading"` (diffusers' default): `arange(0, T) * (N // T) + steps_offset`.
    Leading,
    /// `"linspace"`: `round(linspace(0, N - 1, T))`.
    Linspace,
    /// `"trailing"`: `round(arange(N, 0, -N / T)) - 1`.
    Trailing,
}

/// The names accepted by [`TimestepSpacing::from_name`].
pub const SPACING_NAMES: [&str; 3] = ["leading", "linspace", "trailing"];

impl TimestepSpacing {
    /// The spacing of a diffusers name.
    ///
    /// # Errors
    /// [`ScheduleError::UnknownName`] naming `timestep_spacing` and the valid names.
    pub fn from_name(name: &str) -> Result<Self, ScheduleError> {
        match name {
            "leading" => Ok(Self::Leading),
            "linspace" => Ok(Self::Linspace),
            "trailing" => Ok(Self::Trailing),
            other => Err(ScheduleError::UnknownName {
                field: "timestep_spacing",
                value: other.to_string(),
                valid: SPACING_NAMES.join(", "),
            }),
        }
    }

    /// The diffusers name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Leading => "leading",
            Self::Linspace => "linspace",
            Self::Trailing => "trailing",
        }
    }
}

/// torch's float32 `linspace(start, end, n)` on the CPU (`start`, `end` rounded to float32).
fn torch_linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (start, end) = (start as f32, end as f32);
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / ((n - 1) as f32);
    let halfway = n / 2;
    (0..n)
        .map(|i| {
            if i < halfway {
                start + step * (i as f32)
            } else {
                end - step * ((n - 1 - i) as f32)
            }
        })
        .collect()
}

/// diffusers' float32 betas.
fn betas_f32(schedule: BetaSchedule, n: usize, beta_start: f64, beta_end: f64) -> Vec<f32> {
    match schedule {
        BetaSchedule::Linear => torch_linspace_f32(beta_start, beta_end, n),
        BetaSchedule::ScaledLinear => torch_linspace_f32(beta_start.sqrt(), beta_end.sqrt(), n)
            .into_iter()
            .map(|r| r * r)
            .collect(),
        BetaSchedule::SquaredcosCapV2 => {
            let f = |t: f64| {
                let c = ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos();
                c * c
            };
            (0..n)
                .map(|i| {
                    let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                    (1.0 - f(t2) / f(t1)).min(0.999) as f32
                })
                .collect()
        }
    }
}

/// diffusers' `alphas_cumprod` (float32 values as `f64`) for `n` train timesteps.
///
/// # Errors
/// `InvalidParameter` named `num_train_timesteps` (0 or above [`super::schedule::MAX_STEPS`]),
/// `beta_start` / `beta_end` (not finite, `<= 0` or `>= 1`, or `beta_end < beta_start`; unused
/// by `squaredcos_cap_v2`), and `alphas_cumprod` if the float32 values underflow to 0.
pub fn alphas_cumprod(
    schedule: BetaSchedule,
    n: usize,
    beta_start: f64,
    beta_end: f64,
) -> Result<Vec<f64>, ScheduleError> {
    let invalid = |name, value, reason| ScheduleError::InvalidParameter {
        name,
        value,
        reason,
    };
    if n == 0 || n > super::schedule::MAX_STEPS {
        return Err(invalid(
            "num_train_timesteps",
            n as f64,
            "must be in 1..=2^24",
        ));
    }
    if schedule != BetaSchedule::SquaredcosCapV2 {
        for (name, v) in [("beta_start", beta_start), ("beta_end", beta_end)] {
            if !(v.is_finite() && v > 0.0 && v < 1.0) {
                return Err(invalid(name, v, "must be in (0, 1)"));
            }
        }
        if beta_end < beta_start {
            return Err(invalid("beta_end", beta_end, "must be >= beta_start"));
        }
    }
    let mut acc = 1.0f64;
    let out: Vec<f64> = betas_f32(schedule, n, beta_start, beta_end)
        .into_iter()
        .map(|b| {
            acc *= f64::from(1.0f32 - b);
            f64::from(acc as f32)
        })
        .collect();
    if out.iter().any(|&a| !(a > 0.0)) {
        return Err(invalid(
            "alphas_cumprod",
            0.0,
            "underflows to 0 in float32 (too many steps or too large betas)",
        ));
    }
    Ok(out)
}

/// numpy's `round` (half to even) of a finite non-negative `f64`, as an index.
fn round_half_even(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// diffusers' `set_timesteps(T)` list (descending) for `n` train timesteps.
///
/// # Errors
/// `InvalidParameter` named `steps` if `T = 0` or `T > n` (diffusers' own check), and named
/// `steps_offset` if `leading`'s largest timestep `(T - 1)(n // T) + steps_offset` is `>= n`.
pub fn timesteps(
    n: usize,
    steps: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
) -> Result<Vec<usize>, ScheduleError> {
    if steps == 0 {
        return Err(ScheduleError::ZeroSteps);
    }
    if steps > n {
        return Err(ScheduleError::TooManySteps { steps, max: n });
    }
    let list: Vec<i64> = match spacing {
        TimestepSpacing::Leading => {
            let ratio = n / steps;
            let last = (steps - 1) * ratio + steps_offset;
            if last >= n {
                return Err(ScheduleError::InvalidParameter {
                    name: "steps_offset",
                    value: steps_offset as f64,
                    reason: "puts the largest leading timestep at or above num_train_timesteps",
                });
            }
            (0..steps)
                .rev()
                .map(|i| (i * ratio + steps_offset) as i64)
                .collect()
        }
        TimestepSpacing::Linspace => {
            if steps == 1 {
                vec![0]
            } else {
                let stop = (n - 1) as f64;
                let step = stop / (steps - 1) as f64;
                (0..steps)
                    .rev()
                    .map(|i| {
                        if i == steps - 1 {
                            round_half_even(stop)
                        } else {
                            round_half_even(i as f64 * step)
                        }
                    })
                    .collect()
            }
        }
        TimestepSpacing::Trailing => {
            // numpy's float arange(start, 0, -ratio): length ceil((0 - start) / -ratio),
            // buffer[1] = start + step, delta = buffer[1] - start, buffer[i] = start + i delta.
            let start = n as f64;
            let step = -(n as f64 / steps as f64);
            let len = ((0.0 - start) / step).ceil() as usize;
            let delta = (start + step) - start;
            (0..len)
                .map(|i| {
                    let v = match i {
                        0 => start,
                        1 => start + step,
                        _ => start + i as f64 * delta,
                    };
                    round_half_even(v) - 1
                })
                .collect()
        }
    };
    Ok(list.into_iter().map(|t| t.max(0) as usize).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_betas_are_float32_linspace() {
        let b = betas_f32(BetaSchedule::Linear, 1000, 1e-4, 0.02);
        assert_eq!(b[0], 1e-4f32);
        assert_eq!(b[999], 0.02f32);
        // Equal steps to float32 round-off (the step is (0.02 - 1e-4) / 999 = 1.992e-5).
        for w in b.windows(2) {
            let d = f64::from(w[1] - w[0]);
            assert!((d - 1.99199e-5).abs() < 1e-8, "{d}");
        }
    }

    #[test]
    fn alphas_cumprod_agree_with_the_f64_formulas_to_float32_round_off() {
        // f64 references from the formulas; the float32 values differ by float32 rounding only
        // (measured with a numpy model of torch's arithmetic: 2.8e-7 linear, 9.5e-7
        // scaled_linear, 1.3e-5 squaredcos_cap_v2 at most); the bounds leave a factor ~2.
        let n = 1000;
        let f = |t: f64| {
            ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        for (sch, tol, beta) in [
            (
                BetaSchedule::Linear,
                6e-7,
                Box::new(|i: usize| 1e-4 + (0.02 - 1e-4) * i as f64 / 999.0)
                    as Box<dyn Fn(usize) -> f64>,
            ),
            (
                BetaSchedule::ScaledLinear,
                2e-6,
                Box::new(|i: usize| {
                    let (a, b) = (0.00085f64.sqrt(), 0.012f64.sqrt());
                    (a + (b - a) * i as f64 / 999.0).powi(2)
                }),
            ),
            (
                BetaSchedule::SquaredcosCapV2,
                3e-5,
                Box::new(move |i: usize| {
                    (1.0 - f((i + 1) as f64 / 1000.0) / f(i as f64 / 1000.0)).min(0.999)
                }),
            ),
        ] {
            let (bs, be) = if sch == BetaSchedule::ScaledLinear {
                (0.00085, 0.012)
            } else {
                (1e-4, 0.02)
            };
            let ac = alphas_cumprod(sch, n, bs, be).unwrap();
            let mut p = 1.0;
            for (i, &a) in ac.iter().enumerate() {
                p *= 1.0 - beta(i);
                assert!((a / p - 1.0).abs() < tol, "{sch:?} i={i}: {a} vs {p}");
            }
        }
        // squaredcos_cap_v2's last entry (betas clipped at 0.999).
        let ac = alphas_cumprod(BetaSchedule::SquaredcosCapV2, 1000, 0.0, 0.0).unwrap();
        assert!((ac[999] / 2.4287e-9 - 1.0).abs() < 1e-3, "{}", ac[999]);
    }

    #[test]
    fn timesteps_follow_the_three_rules() {
        assert_eq!(
            timesteps(1000, 10, TimestepSpacing::Leading, 0).unwrap(),
            (0..10).rev().map(|i| i * 100).collect::<Vec<_>>()
        );
        assert_eq!(
            timesteps(1000, 10, TimestepSpacing::Leading, 1).unwrap()[0],
            901
        );
        assert_eq!(
            timesteps(1000, 10, TimestepSpacing::Trailing, 0).unwrap(),
            (1..=10).rev().map(|i| i * 100 - 1).collect::<Vec<_>>()
        );
        // linspace(0, 999, 4) = 0, 333, 666, 999.
        assert_eq!(
            timesteps(1000, 4, TimestepSpacing::Linspace, 0).unwrap(),
            vec![999, 666, 333, 0]
        );
        // Trailing with a half: 1000 - 62.5 i rounds half to even (937.5 -> 938, 812.5 -> 812).
        let t = timesteps(1000, 16, TimestepSpacing::Trailing, 0).unwrap();
        assert_eq!(&t[..4], &[999, 937, 874, 811]);
        for spacing in [
            TimestepSpacing::Leading,
            TimestepSpacing::Linspace,
            TimestepSpacing::Trailing,
        ] {
            assert_eq!(
                timesteps(1000, 1000, spacing, 0).unwrap(),
                (0..1000).rev().collect::<Vec<_>>()
            );
            assert!(timesteps(1000, 1001, spacing, 0).is_err());
            assert!(timesteps(1000, 0, spacing, 0).is_err());
        }
        assert!(timesteps(1000, 10, TimestepSpacing::Leading, 100).is_err());
        // numpy's arange length round-off: 998 trailing steps give 999 timesteps.
        assert_eq!(
            timesteps(1000, 998, TimestepSpacing::Trailing, 0)
                .unwrap()
                .len(),
            999
        );
    }

    #[test]
    fn names_round_trip_and_unknown_names_say_the_field() {
        for n in BETA_SCHEDULE_NAMES {
            assert_eq!(BetaSchedule::from_name(n).unwrap().name(), n);
        }
        for n in SPACING_NAMES {
            assert_eq!(TimestepSpacing::from_name(n).unwrap().name(), n);
        }
        let e = BetaSchedule::from_name("cosine").unwrap_err().to_string();
        assert!(
            e.contains("beta_schedule") && e.contains("squaredcos_cap_v2"),
            "{e}"
        );
        let e = TimestepSpacing::from_name("even").unwrap_err().to_string();
        assert!(
            e.contains("timestep_spacing") && e.contains("trailing"),
            "{e}"
        );
    }
}
