//! A schedule as a user names it: a preset name (`vp-linear`, `cosine`, ...), `diffusers:<beta_schedule>`
//! with diffusers' options, or a schedule file (`*.json`, see [`ScheduleFile`]).

use serde::{Deserialize, Serialize};

use super::diffusers::{alphas_cumprod, BetaSchedule, TimestepSpacing};
use super::discrete::{DiscreteSchedule, ScheduleFile, Timesteps};
use super::schedule::{Schedule, ScheduleError};

/// diffusers' scheduler options (`None`: diffusers' default: 1000 train timesteps,
/// `beta_start = 1e-4`, `beta_end = 0.02`, `timestep_spacing = "leading"`, `steps_offset = 0`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiffusersOptions {
    /// `num_train_timesteps`.
    pub num_train_timesteps: Option<usize>,
    /// `beta_start`.
    pub beta_start: Option<f64>,
    /// `beta_end`.
    pub beta_end: Option<f64>,
    /// `timestep_spacing`.
    pub timestep_spacing: Option<String>,
    /// `steps_offset`.
    pub steps_offset: Option<usize>,
}

impl DiffusersOptions {
    /// The first option that is set, as its flag-style name.
    fn first_set(&self) -> Option<&'static str> {
        [
            (self.num_train_timesteps.is_some(), "num-train-timesteps"),
            (self.beta_start.is_some(), "beta-start"),
            (self.beta_end.is_some(), "beta-end"),
            (self.timestep_spacing.is_some(), "timestep-spacing"),
            (self.steps_offset.is_some(), "steps-offset"),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name))
    }
}

/// diffusers' schedule `beta_schedule` with `opts` (see [`super::diffusers`]).
///
/// # Errors
/// An unknown `beta_schedule` or `timestep_spacing`, and the parameter checks of
/// [`alphas_cumprod`].
pub fn diffusers_schedule(
    beta_schedule: &str,
    opts: &DiffusersOptions,
) -> Result<DiscreteSchedule, ScheduleError> {
    let beta = BetaSchedule::from_name(beta_schedule)?;
    let spacing =
        TimestepSpacing::from_name(opts.timestep_spacing.as_deref().unwrap_or("leading"))?;
    let ac = alphas_cumprod(
        beta,
        opts.num_train_timesteps.unwrap_or(1000),
        opts.beta_start.unwrap_or(1e-4),
        opts.beta_end.unwrap_or(0.02),
    )?;
    Ok(DiscreteSchedule {
        alphas_cumprod: ac,
        timesteps: Timesteps::Spacing {
            spacing,
            steps_offset: opts.steps_offset.unwrap_or(0),
        },
        source: format!("diffusers:{}", beta.name()),
    })
}

/// The schedule of `spec`: `diffusers:<beta_schedule>` (with `opts`), a path ending in `.json`
/// (a schedule file; `opts.timestep_spacing` and `opts.steps_offset` apply when it has no
/// `timesteps`), or a preset name.
///
/// # Errors
/// The errors of each form; `InvalidParameter`-style [`ScheduleError::Option`] naming an option
/// that the form does not take (any diffusers option with a preset; the beta options or
/// `num-train-timesteps` with a file, whose table fixes them).
pub fn parse_schedule(spec: &str, opts: &DiffusersOptions) -> Result<Schedule, ScheduleError> {
    if let Some(beta) = spec.strip_prefix("diffusers:") {
        return Ok(Schedule::Discrete(diffusers_schedule(beta, opts)?));
    }
    if spec.ends_with(".json") {
        let fixed = DiffusersOptions {
            timestep_spacing: None,
            steps_offset: None,
            ..opts.clone()
        };
        if let Some(name) = fixed.first_set() {
            return Err(ScheduleError::Option {
                option: name,
                reason: "is fixed by the table of a schedule file",
            });
        }
        let mut d = ScheduleFile::read(std::path::Path::new(spec))?;
        if opts.timestep_spacing.is_some() || opts.steps_offset.is_some() {
            match &mut d.timesteps {
                Timesteps::Explicit(_) => {
                    return Err(ScheduleError::Option {
                        option: if opts.timestep_spacing.is_some() {
                            "timestep-spacing"
                        } else {
                            "steps-offset"
                        },
                        reason: "is fixed by the timesteps the schedule file lists",
                    })
                }
                Timesteps::Spacing {
                    spacing,
                    steps_offset,
                } => {
                    if let Some(s) = &opts.timestep_spacing {
                        *spacing = TimestepSpacing::from_name(s)?;
                    }
                    if let Some(o) = opts.steps_offset {
                        *steps_offset = o;
                    }
                }
            }
        }
        return Ok(Schedule::Discrete(d));
    }
    if let Some(name) = opts.first_set() {
        return Err(ScheduleError::Option {
            option: name,
            reason: "applies only to diffusers:<beta_schedule> or a schedule file",
        });
    }
    Schedule::from_name(spec)
}

/// The grid of one `T`-step trajectory as the JSON outputs write it (`grid` key, `path-kl
/// --print-grid`): `times` and `abar` at `t_0, ..., t_T` (`abar = exp(ln_abar)`; `abar_0 = 1`
/// when the grid starts at the data) and, for a discrete schedule, diffusers' `timesteps` of
/// that trajectory (descending, as `scheduler.timesteps`; `times[k] = timesteps[T - k] + 1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridRecord {
    /// `T`.
    #[serde(rename = "T")]
    pub steps: usize,
    /// `t_0, ..., t_T`.
    pub times: Vec<f64>,
    /// `abar(t_0), ..., abar(t_T)`.
    pub abar: Vec<f64>,
    /// diffusers' timesteps (discrete schedules only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timesteps: Option<Vec<usize>>,
}

/// The [`GridRecord`] of `schedule` at `steps` steps from `early_stop`.
///
/// # Errors
/// Those of [`Schedule::grid`].
pub fn grid_record(
    schedule: &Schedule,
    steps: usize,
    early_stop: f64,
) -> Result<GridRecord, ScheduleError> {
    let g = schedule.grid(steps, early_stop)?;
    let timesteps = match schedule {
        Schedule::Discrete(d) => Some(d.timesteps(steps)?),
        _ => None,
    };
    Ok(GridRecord {
        steps,
        abar: g.ln_abar.iter().map(|l| l.exp()).collect(),
        times: g.times,
        timesteps,
    })
}

/// The [`GridRecord`]s of `schedule` at each of `steps` (ascending, without repeats).
///
/// # Errors
/// Those of [`Schedule::grid`], for the first T that fails.
pub fn grid_records(
    schedule: &Schedule,
    steps: &[usize],
    early_stop: f64,
) -> Result<Vec<GridRecord>, ScheduleError> {
    let mut s = steps.to_vec();
    s.sort_unstable();
    s.dedup();
    s.into_iter()
        .map(|t| grid_record(schedule, t, early_stop))
        .collect()
}

impl DiscreteSchedule {
    /// The schedule file of this table: `alphas_cumprod` and, when `steps` is given, the
    /// timesteps of that trajectory (else the spacing rule).
    ///
    /// # Errors
    /// Those of [`DiscreteSchedule::timesteps`].
    pub fn to_file(&self, steps: Option<usize>) -> Result<ScheduleFile, ScheduleError> {
        let (timesteps, spacing, offset) = match (steps, &self.timesteps) {
            (Some(t), _) => (Some(self.timesteps(t)?), None, None),
            (None, Timesteps::Explicit(l)) => (Some(l.clone()), None, None),
            (
                None,
                Timesteps::Spacing {
                    spacing,
                    steps_offset,
                },
            ) => (None, Some(spacing.name().to_string()), Some(*steps_offset)),
        };
        Ok(ScheduleFile {
            alphas_cumprod: self.alphas_cumprod.clone(),
            timesteps,
            timestep_spacing: spacing,
            steps_offset: offset,
            source: Some(self.source.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_and_their_option_errors() {
        let opts = DiffusersOptions::default();
        assert_eq!(parse_schedule("cosine", &opts).unwrap(), Schedule::cosine());
        let s = parse_schedule("diffusers:squaredcos_cap_v2", &opts).unwrap();
        assert_eq!(s.name(), "diffusers:squaredcos_cap_v2");
        assert_eq!(s.grid(10, 0.0).unwrap().steps(), 10);
        let spaced = DiffusersOptions {
            timestep_spacing: Some("trailing".into()),
            ..opts.clone()
        };
        let e = parse_schedule("cosine", &spaced).unwrap_err().to_string();
        assert!(e.contains("timestep-spacing"), "{e}");
        let e = parse_schedule("diffusers:cosine", &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("beta_schedule"), "{e}");
        // A file written from a diffusers schedule reads back as the same table.
        let Schedule::Discrete(d) = s else {
            panic!("discrete")
        };
        let dir = std::env::temp_dir().join(format!("covlab-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.json");
        std::fs::write(
            &path,
            serde_json::to_string(&d.to_file(None).unwrap()).unwrap(),
        )
        .unwrap();
        let back = parse_schedule(path.to_str().unwrap(), &opts).unwrap();
        assert_eq!(back, Schedule::Discrete(d.clone()));
        let back = parse_schedule(path.to_str().unwrap(), &spaced).unwrap();
        assert_ne!(back, Schedule::Discrete(d));
        let e = parse_schedule(
            path.to_str().unwrap(),
            &DiffusersOptions {
                beta_end: Some(0.01),
                ..opts
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("beta-end"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
