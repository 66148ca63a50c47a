//! A discrete schedule given by its table `abar_k` for timesteps `k = 0..N-1` (diffusers'
//! `alphas_cumprod`), and the rule that picks a trajectory's timesteps ([`Timesteps`]).
//!
//! Conventions (diffusers' `DDPMScheduler`): the data are `x_0` with `abar = 1`; timestep `k` is
//! the noise level `abar = alphas_cumprod[k]`; a `T`-step chain visits the timesteps
//! `t_{T-1} > ... > t_0` and then the data (diffusers' `prev_t = -1`, `alpha_prod_t_prev = 1`).
//! The covlab grid of that chain, in increasing time, is
//! ```text
//! times  = [0, t_0 + 1, t_1 + 1, ..., t_{T-1} + 1]
//! ln_abar = [0, ln ac[t_0], ln ac[t_1], ..., ln ac[t_{T-1}]]
//! ```
//! (time `k + 1` for timestep `k`, as covlab's `ddpm-linear` counts its base steps from 1).
//! Each step of the chain goes from one timestep of the list to the next, as in
//! `DDPMScheduler.previous_timestep`. diffusers' `DDIMScheduler` instead steps from `t` to
//! `t - N // T`, which is the next timestep of the list only when the list is evenly spaced by
//! `N // T` (`leading` spacing; `trailing` and `linspace` when `T` divides `N`).

use serde::{Deserialize, Serialize};

use super::diffusers::TimestepSpacing;
use super::grid::Grid;
use super::schedule::{ScheduleError, MAX_STEPS};

/// How a `T`-step trajectory of a [`DiscreteSchedule`] picks its timesteps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Timesteps {
    /// diffusers' `timestep_spacing` rule with `steps_offset` (added by `leading` only).
    Spacing {
        /// The rule.
        spacing: TimestepSpacing,
        /// `steps_offset`.
        steps_offset: usize,
    },
    /// One fixed list, descending (diffusers' order): only `T = len` is possible.
    Explicit(Vec<usize>),
}

/// A discrete schedule: the table `abar_k = alphas_cumprod[k]`, `k = 0..N-1`, and its timesteps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscreteSchedule {
    /// `alphas_cumprod`: strictly decreasing, in `(0, 1)`.
    pub alphas_cumprod: Vec<f64>,
    /// The timestep rule.
    pub timesteps: Timesteps,
    /// Where the table came from (`"diffusers:squaredcos_cap_v2"`, `"alphas_cumprod"`, a file).
    pub source: String,
}

impl DiscreteSchedule {
    /// Checks the table and the timestep rule.
    ///
    /// # Errors
    /// `InvalidEntry` naming `alphas_cumprod` (empty, more than [`MAX_STEPS`] entries, an entry
    /// not finite or outside `(0, 1)`, or not strictly below the one before) or `timesteps`
    /// (empty, an entry `>= N`, or not strictly descending).
    pub fn validate(&self) -> Result<(), ScheduleError> {
        let ac = &self.alphas_cumprod;
        let bad = |name, index, value, reason| ScheduleError::InvalidEntry {
            name,
            index,
            value,
            reason,
        };
        if ac.is_empty() || ac.len() > MAX_STEPS {
            return Err(bad(
                "alphas_cumprod",
                0,
                ac.len() as f64,
                "must have 1..=2^24 entries",
            ));
        }
        for (i, &a) in ac.iter().enumerate() {
            if !(a.is_finite() && a > 0.0 && a < 1.0) {
                return Err(bad("alphas_cumprod", i, a, "must be finite and in (0, 1)"));
            }
            if i > 0 && a >= ac[i - 1] {
                return Err(bad(
                    "alphas_cumprod",
                    i,
                    a,
                    "must be strictly decreasing (abar falls as the noise grows)",
                ));
            }
        }
        if let Timesteps::Explicit(list) = &self.timesteps {
            if list.is_empty() {
                return Err(bad("timesteps", 0, 0.0, "must not be empty"));
            }
            for (i, &t) in list.iter().enumerate() {
                if t >= ac.len() {
                    return Err(bad(
                        "timesteps",
                        i,
                        t as f64,
                        "must be < len(alphas_cumprod)",
                    ));
                }
                if i > 0 && t >= list[i - 1] {
                    return Err(bad(
                        "timesteps",
                        i,
                        t as f64,
                        "must be strictly descending (diffusers' order)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The number of train timesteps `N`.
    #[must_use]
    pub fn num_train_timesteps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// The timesteps (descending) of a `T`-step trajectory, as diffusers' `set_timesteps(T)`
    /// gives them (or the explicit list).
    ///
    /// # Errors
    /// Those of [`super::diffusers::timesteps`]; for an explicit list, `InvalidParameter` named
    /// `steps` unless `T` is its length.
    pub fn timesteps(&self, steps: usize) -> Result<Vec<usize>, ScheduleError> {
        self.validate()?;
        match &self.timesteps {
            Timesteps::Spacing {
                spacing,
                steps_offset,
            } => super::diffusers::timesteps(
                self.num_train_timesteps(),
                steps,
                *spacing,
                *steps_offset,
            ),
            Timesteps::Explicit(list) => {
                if steps == list.len() {
                    Ok(list.clone())
                } else {
                    Err(ScheduleError::InvalidParameter {
                        name: "steps",
                        value: steps as f64,
                        reason: "must equal the number of explicit timesteps of the schedule",
                    })
                }
            }
        }
    }

    /// The grid of a `T`-step trajectory (see the module docs).
    ///
    /// # Errors
    /// Those of [`DiscreteSchedule::timesteps`]; `InvalidParameter` named `steps` when the rule
    /// gives another number of timesteps than `T` (diffusers' `trailing` at some `T`).
    pub fn grid(&self, steps: usize) -> Result<Grid, ScheduleError> {
        let list = self.timesteps(steps)?;
        if list.len() != steps {
            return Err(ScheduleError::InvalidParameter {
                name: "steps",
                value: steps as f64,
                reason: "diffusers' timestep rule gives another number of timesteps for this T \
                         (numpy arange round-off in 'trailing'): pick another T or spacing",
            });
        }
        let mut times = Vec::with_capacity(steps + 1);
        let mut ln_abar = Vec::with_capacity(steps + 1);
        times.push(0.0);
        ln_abar.push(0.0);
        for &t in list.iter().rev() {
            times.push((t + 1) as f64);
            ln_abar.push(self.alphas_cumprod[t].ln());
        }
        Ok(Grid { times, ln_abar })
    }
}

/// The schedule file: `{"alphas_cumprod": [...], "timesteps": [...]}`; `timesteps` optional
/// (then `timestep_spacing`, default `"leading"`, and `steps_offset`, default 0, pick them).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    /// `abar` at timesteps `0..N-1`.
    pub alphas_cumprod: Vec<f64>,
    /// A fixed trajectory (descending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timesteps: Option<Vec<usize>>,
    /// The rule without `timesteps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestep_spacing: Option<String>,
    /// `steps_offset` of the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_offset: Option<usize>,
    /// Free text: where the table came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl ScheduleFile {
    /// The schedule of the file (`source` defaults to `default_source`).
    ///
    /// # Errors
    /// An unknown `timestep_spacing`, `timesteps` together with a spacing rule, and the checks
    /// of [`DiscreteSchedule::validate`].
    pub fn schedule(self, default_source: &str) -> Result<DiscreteSchedule, ScheduleError> {
        let timesteps = match (self.timesteps, self.timestep_spacing, self.steps_offset) {
            (Some(list), None, None) => Timesteps::Explicit(list),
            (Some(_), _, _) => {
                return Err(ScheduleError::InvalidEntry {
                    name: "timesteps",
                    index: 0,
                    value: 0.0,
                    reason: "an explicit list takes no timestep_spacing or steps_offset",
                })
            }
            (None, spacing, offset) => Timesteps::Spacing {
                spacing: TimestepSpacing::from_name(spacing.as_deref().unwrap_or("leading"))?,
                steps_offset: offset.unwrap_or(0),
            },
        };
        let d = DiscreteSchedule {
            alphas_cumprod: self.alphas_cumprod,
            timesteps,
            source: self.source.unwrap_or_else(|| default_source.to_string()),
        };
        d.validate()?;
        Ok(d)
    }

    /// Reads a schedule file.
    ///
    /// # Errors
    /// [`ScheduleError::File`] naming the path (unreadable, not JSON of this shape), then
    /// [`ScheduleFile::schedule`]'s.
    pub fn read(path: &std::path::Path) -> Result<DiscreteSchedule, ScheduleError> {
        let file_err = |reason: String| ScheduleError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let file: ScheduleFile =
            serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))?;
        file.schedule(&format!("file:{}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::diffusers::{alphas_cumprod, BetaSchedule};
    use crate::process::schedule::{Schedule, Spacing};

    fn ddpm_table() -> DiscreteSchedule {
        // The f64 linear-beta table of covlab's ddpm-linear, as alphas_cumprod.
        let g = Schedule::ddpm_linear(Spacing::Even)
            .grid(1000, 0.0)
            .unwrap();
        DiscreteSchedule {
            alphas_cumprod: (1..=1000).map(|k| g.abar(k)).collect(),
            timesteps: Timesteps::Spacing {
                spacing: TimestepSpacing::Trailing,
                steps_offset: 0,
            },
            source: "test".into(),
        }
    }

    #[test]
    fn trailing_table_grid_is_ddpm_linear_where_the_roundings_agree() {
        // ddpm-linear-even rounds i N / T half up, trailing half to even: they agree unless
        // i N / T has a fractional part of exactly 1/2 (never for T = 10, 50, 1000).
        let d = ddpm_table();
        for t in [1usize, 10, 50, 1000] {
            let a = d.grid(t).unwrap();
            let b = Schedule::ddpm_linear(Spacing::Even).grid(t, 0.0).unwrap();
            assert_eq!(a.times, b.times, "T={t}");
            for (x, y) in a.ln_abar.iter().zip(&b.ln_abar) {
                // ln of exp of the table: one rounding each way.
                assert!(
                    (x - y).abs() <= 1e-15 * y.abs().max(1.0),
                    "T={t}: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn grid_starts_at_the_data_and_follows_the_list() {
        let ac = alphas_cumprod(BetaSchedule::SquaredcosCapV2, 1000, 0.0, 0.0).unwrap();
        let d = DiscreteSchedule {
            alphas_cumprod: ac.clone(),
            timesteps: Timesteps::Explicit(vec![999, 500, 3]),
            source: "test".into(),
        };
        let g = d.grid(3).unwrap();
        assert_eq!(g.times, vec![0.0, 4.0, 501.0, 1000.0]);
        assert_eq!(g.ln_abar[0], 0.0);
        // The grid stores ln abar: exp(ln a) carries the rounding of ln a amplified by
        // |ln a| (~20 here), so a relative |ln a| * 4 eps.
        let tol = 4.0 * ac[999].ln().abs() * f64::EPSILON;
        assert!((g.abar(3) / ac[999] - 1.0).abs() < tol);
        assert!(d.grid(4).is_err());
        // diffusers' trailing rule at T = 998 gives 999 timesteps: refused, not truncated.
        let d = DiscreteSchedule {
            timesteps: Timesteps::Spacing {
                spacing: TimestepSpacing::Trailing,
                steps_offset: 0,
            },
            ..d
        };
        assert_eq!(d.timesteps(998).unwrap().len(), 999);
        let e = d.grid(998).unwrap_err().to_string();
        assert!(e.contains("steps") && e.contains("trailing"), "{e}");
    }

    #[test]
    fn bad_tables_and_files_name_the_field() {
        let cases: Vec<(&str, &str)> = vec![
            (r#"{"alphas_cumprod": []}"#, "alphas_cumprod"),
            (r#"{"alphas_cumprod": [0.9, 0.95]}"#, "alphas_cumprod"),
            (r#"{"alphas_cumprod": [0.9, 0.0]}"#, "alphas_cumprod"),
            (r#"{"alphas_cumprod": [1.0, 0.5]}"#, "alphas_cumprod"),
            (
                r#"{"alphas_cumprod": [0.9, 0.5], "timesteps": [2]}"#,
                "timesteps",
            ),
            (
                r#"{"alphas_cumprod": [0.9, 0.5], "timesteps": [0, 1]}"#,
                "timesteps",
            ),
            (
                r#"{"alphas_cumprod": [0.9, 0.5], "timestep_spacing": "even"}"#,
                "timestep_spacing",
            ),
            (
                r#"{"alphas_cumprod": [0.9, 0.5], "timesteps": [1], "steps_offset": 1}"#,
                "timesteps",
            ),
        ];
        for (text, field) in cases {
            let f: ScheduleFile = serde_json::from_str(text).unwrap();
            let e = f.schedule("t").unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        assert!(
            serde_json::from_str::<ScheduleFile>(r#"{"alphas_cumprod": [0.5], "x": 1}"#).is_err()
        );
        let e = ScheduleFile::read(std::path::Path::new("/nonexistent/s.json")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/s.json"), "{e}");
    }
}
