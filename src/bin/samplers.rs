//! `samplers`: MMD of CPU reverse samplers against exact draws of q_0, vs T, per family
//! (the OCM paper's toy table), with cost counts through the score seam.
//! Exit code 2 on bad input.

use std::path::PathBuf;

mod common;

use clap::Parser;
use common::{failed, finish, Outcome};
use covlab::experiments::samplers::SamplersStudy;
use covlab::study::{run_all, StudyKind};

/// MMD of reverse samplers against exact samples of q_0, per family and T.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Comma list of presets or mixture JSON files.
    #[arg(long, value_delimiter = ',', default_value = "mog40,grid9")]
    data: Vec<String>,
    /// Schedule (ddpm-linear = the OCM toy setting: N = 1000, T evenly spaced steps), a preset,
    /// `diffusers:<linear|scaled_linear|squaredcos_cap_v2>` with the options below, or a
    /// schedule file `*.json` (see docs/schedules.md).
    #[arg(long, default_value = "ddpm-linear")]
    schedule: String,
    #[command(flatten)]
    schedule_flags: common::ScheduleFlags,
    /// Write every cell's draws as `.npy` into DIR: `<data>_<family>_T<T>.npy` (n, D) float64,
    /// and the exact draws as `<data>_exact.npy`.
    #[arg(long, value_name = "DIR")]
    save_samples: Option<PathBuf>,
    /// Comma list of families: beta, beta-tilde, analytic, diag, full, `hutchinson-<M>`, `lgs-<k>`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "beta,beta-tilde,analytic,diag,full,lgs-1,lgs-2,lgs-4,lgs-8,hutchinson-1,hutchinson-4,hutchinson-16"
    )]
    families: Vec<String>,
    /// The T values.
    #[arg(long, value_delimiter = ',', default_value = "5,10,25,50,100,200,1000")]
    steps: Vec<usize>,
    /// Samples per cell (and exact reference samples per data set).
    #[arg(long, default_value_t = 10_000)]
    samples: usize,
    /// Kernel: ddpm or ddim (OCM-DDIM).
    #[arg(long, default_value = "ddpm")]
    kernel: String,
    /// LGS batch L (1 = a Lanczos run per step).
    #[arg(long, default_value_t = 1)]
    lgs_batch: usize,
    /// LGSb: LGS on the last fraction of the steps (1 = all).
    #[arg(long, default_value_t = 1.0)]
    lgsb_fraction: f64,
    /// Hutchinson guard probes at the last LGS step (0 = none).
    #[arg(long, default_value_t = 0)]
    guard: usize,
    /// Data points for Analytic-DPM's E||score||^2 table.
    #[arg(long, default_value_t = 2000)]
    analytic_samples: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The last step: mean (the last kernel's mean, no noise, as Ho et al., Analytic-DPM and
    /// diffusers) or noisy (a draw from the last kernel). Recorded as `last_step` in the JSON.
    #[arg(long, default_value = "mean")]
    last_step: String,
    /// Worker threads (default: all cores). Results are identical for any value.
    #[arg(long)]
    threads: Option<usize>,
    /// JSON output.
    #[arg(long, default_value = "studies/results/samplers.json")]
    json: PathBuf,
    /// Figure stem: writes `<stem>_<data>.svg/.png`.
    #[arg(long, default_value = "figures/samplers")]
    figure: PathBuf,
}

fn main() {
    let args = Args::parse();
    finish(run(&args));
}

fn run(args: &Args) -> Result<(), Outcome> {
    let study = SamplersStudy {
        data: args.data.clone(),
        schedule: args.schedule.clone(),
        num_train_timesteps: args.schedule_flags.num_train_timesteps,
        beta_start: args.schedule_flags.beta_start,
        beta_end: args.schedule_flags.beta_end,
        timestep_spacing: args.schedule_flags.timestep_spacing.clone(),
        steps_offset: args.schedule_flags.steps_offset,
        families: args.families.clone(),
        steps: args.steps.clone(),
        samples: args.samples,
        kernel: args.kernel.clone(),
        lgs_batch: args.lgs_batch,
        lgsb_fraction: args.lgsb_fraction,
        guard: args.guard,
        analytic_samples: args.analytic_samples,
        seed: args.seed,
        last_step: args.last_step.clone(),
        save_samples: args.save_samples.clone(),
    };
    common::unique_list("--data", &study.data)?;
    common::unique_list("--families", &study.families)?;
    common::unique_list("--steps", &study.steps)?;
    study.validate().map_err(common::param)?;
    common::check_output("--json", &args.json)?;
    if let Some(dir) = &args.save_samples {
        common::check_output("--save-samples", &dir.join("covlab-check.npy"))?;
    }
    common::check_figures("--figure", &args.figure, &study.figures())?;
    // The global pool (the samplers study runs in it); the same 1..=1024 check as elsewhere.
    if args.threads.is_some() {
        let n = common::thread_pool(args.threads)?.current_num_threads();
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(failed)?;
    }
    let bar = common::Bar::new("samplers: cells", study.cells().map_err(failed)?.len());
    let (out, _) = run_all(&study, &bar).map_err(|e| common::study_error(e, false))?;
    bar.0.finish_and_clear();
    print!("{}", out.table);
    // The JSON first (it is the result), then the figures, which never fail the run.
    common::write_json(&args.json, &out.doc).map_err(failed)?;
    for w in common::save_figures(&args.figure, &out.figures) {
        eprintln!("wrote {}", w.display());
    }
    Ok(())
}
