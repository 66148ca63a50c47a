//! `schedule`: prints or exports a schedule as covlab reads it (a preset,
//! `diffusers:<beta_schedule>` with diffusers' options, or a schedule file).
//!
//! - `schedule show --schedule S [--steps T,...]`: JSON on stdout: the schedule's name, for a
//!   discrete one `num_train_timesteps`, and the grid `{T, times, abar, timesteps}` of each T.
//! - `schedule export --schedule S [--steps T] --out FILE.json`: writes a schedule file
//!   `{"alphas_cumprod": [...], ...}` that every `--schedule` reads back. A discrete schedule is
//!   exported as its table with its timestep rule, or with `--steps T` the timesteps of that
//!   trajectory; a continuous preset needs `--steps T` and is exported as the T-step table
//!   (`alphas_cumprod[k] = abar(t_{k+1})`, timesteps `T-1, ..., 0`), whose T-step grid has
//!   the preset's abar values exactly.
//!
//! Exit code 2 on bad input.

use std::path::PathBuf;

mod common;

use clap::{Parser, Subcommand};
use common::{bad, failed, finish, Outcome};
use covlab::process::discrete::{DiscreteSchedule, ScheduleFile, Timesteps};
use covlab::process::schedule::Schedule;
use covlab::process::spec::{grid_record, parse_schedule};

/// Prints or exports a schedule (a preset, diffusers:<beta_schedule> or a schedule file).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The schedule and its options, shared by the subcommands.
#[derive(clap::Args, Debug)]
struct Spec {
    /// A preset (vp-linear, ddpm-linear(-even|-quadratic), snr-uniform, cosine),
    /// `diffusers:<linear|scaled_linear|squaredcos_cap_v2>` or a schedule file `*.json`.
    #[arg(long)]
    schedule: String,
    #[command(flatten)]
    flags: common::ScheduleFlags,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// JSON on stdout: the name and the grid of each T.
    Show {
        #[command(flatten)]
        spec: Spec,
        /// The T values (comma list).
        #[arg(long, value_delimiter = ',', default_value = "10")]
        steps: Vec<usize>,
        /// Early stop delta of continuous schedules (0: start at the data).
        #[arg(long, default_value_t = 0.0)]
        early_stop: f64,
    },
    /// Writes a schedule file.
    Export {
        #[command(flatten)]
        spec: Spec,
        /// Fix the trajectory to this T (required for a continuous preset).
        #[arg(long)]
        steps: Option<usize>,
        /// The schedule file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() {
    let args = Args::parse();
    finish(run(&args));
}

fn parse(spec: &Spec) -> Result<Schedule, Outcome> {
    parse_schedule(&spec.schedule, &spec.flags.options())
        .map_err(|e| bad(anyhow::Error::from(e).context("`--schedule`")).into())
}

fn run(args: &Args) -> Result<(), Outcome> {
    match &args.command {
        Command::Show {
            spec,
            steps,
            early_stop,
        } => {
            let schedule = parse(spec)?;
            common::unique_list("--steps", steps)?;
            let grids = steps
                .iter()
                .map(|&t| {
                    grid_record(&schedule, t, *early_stop)
                        .map_err(|e| bad(anyhow::Error::from(e).context("`--steps`")).into())
                })
                .collect::<Result<Vec<_>, Outcome>>()?;
            let n = match &schedule {
                Schedule::Discrete(d) => serde_json::json!(d.num_train_timesteps()),
                _ => serde_json::Value::Null,
            };
            let doc = serde_json::json!({
                "schedule": schedule.name(),
                "num_train_timesteps": n,
                "early_stop": early_stop,
                "grids": grids,
            });
            println!("{}", serde_json::to_string_pretty(&doc).map_err(failed)?);
            Ok(())
        }
        Command::Export { spec, steps, out } => {
            let schedule = parse(spec)?;
            common::check_output("--out", out)?;
            let file = export(&schedule, *steps)?;
            let text = serde_json::to_string_pretty(&file).map_err(failed)? + "\n";
            covlab::output::write_bytes_atomic(out, text.as_bytes()).map_err(failed)?;
            let n = file.alphas_cumprod.len();
            println!(
                "{}: {n} alphas_cumprod from {:.6e} to {:.6e}{}",
                schedule.name(),
                file.alphas_cumprod[0],
                file.alphas_cumprod[n - 1],
                file.timesteps
                    .as_ref()
                    .map(|t| format!(", {} timesteps", t.len()))
                    .unwrap_or_default()
            );
            eprintln!("wrote {}", out.display());
            Ok(())
        }
    }
}

/// The schedule file of `schedule` (see the module docs).
fn export(schedule: &Schedule, steps: Option<usize>) -> Result<ScheduleFile, Outcome> {
    let steps_err = |e: covlab::process::schedule::ScheduleError| -> Outcome {
        bad(anyhow::Error::from(e).context("`--steps`")).into()
    };
    if let Schedule::Discrete(d) = schedule {
        return d.to_file(steps).map_err(steps_err);
    }
    let t = steps.ok_or_else(|| -> Outcome {
        bad(anyhow::anyhow!(
            "`--steps`: a continuous schedule ({}) has no table of its own: give the T of the \
             trajectory to export",
            schedule.name()
        ))
        .into()
    })?;
    let g = schedule.grid(t, 0.0).map_err(steps_err)?;
    let table = DiscreteSchedule {
        alphas_cumprod: g.ln_abar[1..].iter().map(|l| l.exp()).collect(),
        timesteps: Timesteps::Explicit((0..t).rev().collect()),
        source: format!("{} at T = {t}", schedule.name()),
    };
    table.validate().map_err(steps_err)?;
    table.to_file(None).map_err(steps_err)
}
