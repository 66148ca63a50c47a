//! `guidance`: classifier guidance in the exact linear-Gaussian example (LGS appendix B).
//!
//! For each schedule, covariance choice and T, propagates the guided chain's Gaussian law
//! exactly and prints the conditional endpoint KL at the fixed label y, its average over y,
//! the unconditional path KL and the exact-guidance (Proposition 11) endpoint KL; fits
//! slopes on a window of T; writes JSON and one log-log figure per schedule.
//! Exit code 2 on bad input.

use std::path::PathBuf;

mod common;

use anyhow::Context;
use clap::Parser;
use common::{bad, failed, finish, Outcome};
use covlab::guidance::{evaluate, Choice, GaussianExample, GuidanceParams, GuidanceRow, Init};
use covlab::plot::{LogLogFigure, RefSlope, Series};
use covlab::rates::{fit_loglog, SlopeFit};
use covlab::schedule::Schedule;
use serde_json::json;

/// Exact classifier-guidance counterexample: conditional endpoint KL vs T per covariance choice.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Comma list of schedules (snr-uniform is the paper's appendix-B schedule).
    #[arg(long, value_delimiter = ',', default_value = "snr-uniform,vp-linear")]
    schedules: Vec<String>,
    /// Comma list of covariance choices: scalar (beta-tilde), analytic, diag, full.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "scalar,analytic,diag,full"
    )]
    choices: Vec<String>,
    /// The T values.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "4,8,16,32,64,128,256,512,1024,2048,4096"
    )]
    steps: Vec<usize>,
    /// Rotation angle of R in degrees.
    #[arg(long, default_value_t = GuidanceParams::default().angle_deg)]
    angle: f64,
    /// Variance s_1 of z_1 (the labelled coordinate).
    #[arg(long, default_value_t = GuidanceParams::default().var1)]
    var1: f64,
    /// Variance s_2 of z_2.
    #[arg(long, default_value_t = GuidanceParams::default().var2)]
    var2: f64,
    /// Label noise standard deviation sigma_y (y = z_1 + sigma_y n).
    #[arg(long, default_value_t = GuidanceParams::default().label_noise)]
    label_noise: f64,
    /// The fixed label y of endpoint_kl.
    #[arg(long, default_value_t = GuidanceParams::default().y)]
    y: f64,
    /// Start of both chains: exact (q(x_T) / q(x_T | y)) or standard-normal.
    #[arg(long, default_value = "exact")]
    init: String,
    /// snr-uniform: SNR at the data end (lambda_max; the paper's schedule has SNR increments
    /// (lambda_max - lambda_min)/T).
    #[arg(long, default_value_t = 1e3)]
    lambda_max: f64,
    /// snr-uniform: SNR at the noise end (lambda_min).
    #[arg(long, default_value_t = 1e-4)]
    lambda_min: f64,
    /// vp-linear: beta_min.
    #[arg(long, default_value_t = 0.1)]
    beta_min: f64,
    /// vp-linear: beta_max.
    #[arg(long, default_value_t = 20.0)]
    beta_max: f64,
    /// Slope-fit window lo,hi on T.
    #[arg(long, value_delimiter = ',', default_value = "64,1024")]
    window: Vec<f64>,
    /// JSON output file.
    #[arg(long, default_value = "studies/results/guidance.json")]
    json: PathBuf,
    /// Figure stem: writes <stem>_<schedule>.svg/.png.
    #[arg(long, default_value = "figures/guidance")]
    figure: PathBuf,
}

fn main() {
    let args = Args::parse();
    finish(run(&args));
}

fn fit_or_none(x: &[f64], y: &[f64], window: [f64; 2]) -> Option<SlopeFit> {
    fit_loglog(x, y, window).ok()
}

fn slope_json(f: &Option<SlopeFit>) -> serde_json::Value {
    match f {
        Some(f) => json!({"slope": f.slope, "ci95": f.ci95, "n": f.n, "r_squared": f.r_squared}),
        None => serde_json::Value::Null,
    }
}

fn run(args: &Args) -> Result<(), Outcome> {
    if args.steps.is_empty() || args.steps.contains(&0) {
        return Err(Outcome::from(bad(anyhow::anyhow!(
            "--steps: every T must be >= 1"
        ))));
    }
    if args.window.len() != 2
        || args.window[0].partial_cmp(&args.window[1]) != Some(std::cmp::Ordering::Less)
    {
        return Err(Outcome::from(bad(anyhow::anyhow!(
            "--window: expected lo,hi with lo < hi"
        ))));
    }
    let window = [args.window[0], args.window[1]];
    let init = Init::from_name(&args.init).map_err(bad)?;
    let params = GuidanceParams {
        angle_deg: args.angle,
        var1: args.var1,
        var2: args.var2,
        label_noise: args.label_noise,
        y: args.y,
        init,
    };
    let ex = GaussianExample::new(params).map_err(bad)?;
    let choices = args
        .choices
        .iter()
        .map(|c| Choice::from_name(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let schedules = args
        .schedules
        .iter()
        .map(|s| {
            Schedule::from_name(s).map(|sch| match sch {
                Schedule::SnrUniform { .. } => Schedule::SnrUniform {
                    lambda_min: args.lambda_min,
                    lambda_max: args.lambda_max,
                },
                Schedule::VpLinear { .. } => Schedule::VpLinear {
                    beta_min: args.beta_min,
                    beta_max: args.beta_max,
                },
                other => other,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let mut steps = args.steps.clone();
    steps.sort_unstable();
    steps.dedup();
    for s in &schedules {
        s.grid(*steps.last().unwrap_or(&1), 0.0).map_err(bad)?;
    }

    let mut rows: Vec<GuidanceRow> = Vec::new();
    for schedule in &schedules {
        for &choice in &choices {
            for &t in &steps {
                let row = evaluate(&ex, choice, schedule, t).map_err(bad)?;
                rows.push(row);
            }
        }
    }

    // Table and slopes.
    let mut slopes = Vec::new();
    for schedule in &schedules {
        let sname = schedule.name();
        println!(
            "\nschedule {sname}: angle {} deg, s1 {}, s2 {}, sigma_y {}, y {}, init {}",
            args.angle,
            args.var1,
            args.var2,
            args.label_noise,
            args.y,
            init.name()
        );
        println!(
            "{:>9} {:>6} {:>13} {:>13} {:>13} {:>13} {:>11}",
            "choice", "T", "endpoint_kl", "endpoint_avg", "path_kl", "bayes_avg", "prop11 gap"
        );
        for &choice in &choices {
            let sel: Vec<&GuidanceRow> = rows
                .iter()
                .filter(|r| r.choice == choice && r.schedule == sname)
                .collect();
            for r in &sel {
                println!(
                    "{:>9} {:>6} {:>13.6e} {:>13.6e} {:>13.6e} {:>13.6e} {:>11.3e}",
                    choice.name(),
                    r.steps,
                    r.endpoint_kl,
                    r.endpoint_kl_avg,
                    r.path_kl,
                    r.bayes_endpoint_kl_avg,
                    r.path_kl - r.bayes_endpoint_kl_avg
                );
            }
            let x: Vec<f64> = sel.iter().map(|r| r.steps as f64).collect();
            let fits = [
                (
                    "endpoint_kl",
                    fit_or_none(
                        &x,
                        &sel.iter().map(|r| r.endpoint_kl).collect::<Vec<_>>(),
                        window,
                    ),
                ),
                (
                    "endpoint_kl_avg",
                    fit_or_none(
                        &x,
                        &sel.iter().map(|r| r.endpoint_kl_avg).collect::<Vec<_>>(),
                        window,
                    ),
                ),
                (
                    "path_kl",
                    fit_or_none(
                        &x,
                        &sel.iter().map(|r| r.path_kl).collect::<Vec<_>>(),
                        window,
                    ),
                ),
            ];
            let mut line = format!(
                "{:>9} slopes on T in [{}, {}]:",
                choice.name(),
                window[0],
                window[1]
            );
            for (name, f) in &fits {
                match f {
                    Some(f) => {
                        line += &format!(
                            " {name} {:+.4} [{:+.4}, {:+.4}];",
                            f.slope, f.ci95[0], f.ci95[1]
                        )
                    }
                    None => line += &format!(" {name} n/a;"),
                }
            }
            println!("{line}");
            slopes.push(json!({
                "schedule": sname,
                "choice": choice.name(),
                "window": window,
                "endpoint_kl": slope_json(&fits[0].1),
                "endpoint_kl_avg": slope_json(&fits[1].1),
                "path_kl": slope_json(&fits[2].1),
            }));
        }
        draw(args, &sname, &choices, &rows).map_err(failed)?;
    }

    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({
                "choice": r.choice.name(),
                "schedule": r.schedule,
                "T": r.steps,
                "endpoint_kl": r.endpoint_kl,
                "endpoint_kl_avg": r.endpoint_kl_avg,
                "path_kl": r.path_kl,
                "endpoint_kl_cov": r.endpoint_kl_cov,
                "terminal_kl": r.terminal_kl,
                "unguided_endpoint_kl": r.unguided_endpoint_kl,
                "bayes_endpoint_kl_avg": r.bayes_endpoint_kl_avg,
                "bayes_endpoint_kl_identity": r.bayes_endpoint_kl_identity,
            })
        })
        .collect();
    let doc = json!({
        "study": "guidance",
        "covlab_version": env!("CARGO_PKG_VERSION"),
        "params": {
            "angle_deg": args.angle, "var1": args.var1, "var2": args.var2,
            "label_noise": args.label_noise, "y": args.y, "init": init.name(),
        },
        "notes": "endpoint_kl(_avg): Dhariwal-Nichol guided kernel N(mu + Sigma grad log q(y|x_t), Sigma); bayes_endpoint_kl_avg: exact (Bayes) guidance of the same model chain, Proposition 11's setting; path_kl: unconditional path KL of the unguided chain incl. terminal_kl",
        "slopes": slopes,
        "results": results,
    });
    if let Some(dir) = args.json.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating {}", dir.display()))
                .map_err(failed)?;
        }
    }
    let text = serde_json::to_string_pretty(&doc).map_err(failed)?;
    std::fs::write(&args.json, text + "\n")
        .with_context(|| format!("writing {}", args.json.display()))
        .map_err(failed)?;
    eprintln!("wrote {}", args.json.display());
    Ok(())
}

fn draw(args: &Args, sname: &str, choices: &[Choice], rows: &[GuidanceRow]) -> anyhow::Result<()> {
    let mut series = Vec::new();
    let mut anchor = None;
    for (ci, &choice) in choices.iter().enumerate() {
        let sel: Vec<&GuidanceRow> = rows
            .iter()
            .filter(|r| r.choice == choice && r.schedule == sname)
            .collect();
        let x: Vec<f64> = sel.iter().map(|r| r.steps as f64).collect();
        series.push(
            Series::new(
                format!("{} endpoint KL (y = {})", choice.name(), args.y),
                x.clone(),
                sel.iter().map(|r| r.endpoint_kl).collect(),
            )
            .with_color(ci),
        );
        let path: Vec<f64> = sel.iter().map(|r| r.path_kl).collect();
        if path.iter().any(|&p| p > 0.0) {
            series.push(
                Series::new(format!("{} path KL", choice.name()), x.clone(), path)
                    .dashed()
                    .with_color(ci),
            );
        }
        if anchor.is_none() {
            if let (Some(&x0), Some(r)) = (x.first(), sel.first()) {
                anchor = Some((x0, r.endpoint_kl));
            }
        }
    }
    let (x0, y0) = anchor.unwrap_or((1.0, 1.0));
    let fig = LogLogFigure {
        title: format!("Classifier guidance, exact Gaussian example: {sname}"),
        x_label: "T (number of reverse steps)".to_string(),
        y_label: "KL".to_string(),
        series,
        refs: vec![
            RefSlope::new(-1.0, x0, y0 * 0.3, "slope -1"),
            RefSlope::new(-2.0, x0, y0 * 0.03, "slope -2"),
        ],
        caption: Some(format!(
            "solid: KL(q(x0|y)||p(x0|y)), guided kernel; dashed: path KL (full: 0); angle {}, s1 {}, s2 {}, sig_y {}",
            args.angle, args.var1, args.var2, args.label_noise
        )),
    };
    let stem = PathBuf::from(format!("{}_{sname}", args.figure.display()));
    if let Some(dir) = stem.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    fig.save(&stem)?;
    Ok(())
}
