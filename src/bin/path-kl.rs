//! `path-kl`: exact path KL of Gaussian reverse chains for Gaussian-mixture data.
//!
//! Prints a table of S_fam(T) with error estimates, the terminal KL and the fitted
//! slopes with 95 % intervals; writes JSON and a log-log figure. Exit code 2 on bad
//! input (unknown preset/family/schedule, malformed file, invalid numbers).

use std::path::{Path, PathBuf};
use std::time::Instant;

mod common;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use common::{bad, finish, BadInput, Outcome};
use covlab::covariance::{BetaTildeRemedy, Family};
use covlab::hutchinson::{hutchinson_excess, HutchinsonMc};
use covlab::path_kl::{path_kl_sweep, PathKlParams, PathKlReport, Route, RuleChoice};
use covlab::plot::{LogLogFigure, RefSlope, Series};
use covlab::quadrature::{Estimate, LatticeParams, QmcParams};
use covlab::rates::{fit_loglog, SlopeFit};
use covlab::schedule::Schedule;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RouteArg {
    A,
    B,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RuleArg {
    Auto,
    Lattice,
    Qmc,
}

/// Exact path KL between the true reverse chain and Gaussian model chains, for Gaussian-mixture data.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Preset (mog40, mog40-unit, grid9, aniso2, mix6) or a mixture JSON file.
    #[arg(long, default_value = "mog40")]
    data: String,
    /// Schedule: vp-linear, ddpm-linear(-even|-quadratic), snr-uniform, cosine.
    #[arg(long, default_value = "vp-linear")]
    schedule: String,
    /// Comma list of families: beta, beta-tilde, analytic, diag, full, hutchinson-<M>
    /// (expected over the probes, by Monte Carlo: S_diag + a Monte Carlo excess, 2 s.e. bars).
    #[arg(long, default_value = "beta,beta-tilde,analytic,diag,full")]
    families: String,
    /// The T values (comma list).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "8,16,32,64,128,256,512,1024"
    )]
    steps: Vec<usize>,
    /// Early stop: the grid starts at t_0 = delta (0 = start at the data).
    #[arg(long, default_value_t = 0.0)]
    early_stop: f64,
    /// Route for S_full: a (telescoping) or b (direct inner quadrature, slower).
    #[arg(long, value_enum, default_value = "a")]
    route: RouteArg,
    /// beta-tilde's degenerate last step: clip (borrow the next step's variance) or early-stop
    /// (start at --early-stop, 1e-3 if not given).
    #[arg(long, default_value = "clip")]
    beta_tilde_remedy: String,
    /// Slope-fit window lo,hi on T (default: 128,1024 clipped to the T values given, or the last 4 T values).
    #[arg(long, value_delimiter = ',')]
    window: Option<Vec<f64>>,
    /// JSON output file (default studies/results/path_kl_<data>[_<schedule>][_route_b].json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Figure path stem; writes <stem>.svg and <stem>.png (default figures/path_kl_<data>...).
    #[arg(long)]
    figure: Option<PathBuf>,
    /// Worker threads (default: all cores). Results are identical for any value.
    #[arg(long)]
    threads: Option<usize>,
    /// Cubature rule over q_t.
    #[arg(long, value_enum, default_value = "auto")]
    rule: RuleArg,
    /// Lattice spacing as a fraction of the smallest component standard deviation.
    #[arg(long, default_value_t = LatticeParams::default().h_frac)]
    h_frac: f64,
    /// QMC points per component per shift.
    #[arg(long, default_value_t = QmcParams::default().points)]
    qmc_points: usize,
    /// QMC random shifts (replicates, >= 2).
    #[arg(long, default_value_t = QmcParams::default().shifts)]
    qmc_shifts: usize,
    /// Monte Carlo draws of x_t per step for the hutchinson-<M> families.
    #[arg(long, default_value_t = 4000)]
    hutchinson_points: usize,
    /// Seed of the QMC shifts (and of the hutchinson-<M> Monte Carlo).
    #[arg(long, default_value_t = QmcParams::default().seed)]
    seed: u64,
}

fn main() {
    let args = Args::parse();
    finish(run(&args));
}

fn data_label(data: &str) -> String {
    let p = Path::new(data);
    if covlab::presets::PRESET_NAMES.contains(&data) {
        data.to_string()
    } else {
        p.file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "data".to_string())
    }
}

fn validate(args: &Args) -> Result<(), BadInput> {
    if args.steps.is_empty() || args.steps.contains(&0) {
        return Err(bad(anyhow::anyhow!(
            "`--steps`: every T must be >= 1 (got {:?})",
            args.steps
        )));
    }
    if !args.early_stop.is_finite() || args.early_stop < 0.0 || args.early_stop >= 1.0 {
        return Err(bad(anyhow::anyhow!(
            "`--early-stop`: must be in [0, 1), got {}",
            args.early_stop
        )));
    }
    if !(args.h_frac.is_finite() && args.h_frac > 0.0 && args.h_frac <= 1.0) {
        return Err(bad(anyhow::anyhow!(
            "`--h-frac`: must be in (0, 1], got {}",
            args.h_frac
        )));
    }
    if args.qmc_shifts < 2 || args.qmc_points == 0 {
        return Err(bad(anyhow::anyhow!(
            "`--qmc-shifts` must be >= 2 and `--qmc-points` >= 1"
        )));
    }
    if args.threads == Some(0) {
        return Err(bad(anyhow::anyhow!("`--threads`: must be >= 1")));
    }
    if let Some(w) = &args.window {
        if w.len() != 2 || !(w[0].is_finite() && w[1].is_finite() && w[0] > 0.0 && w[0] < w[1]) {
            return Err(bad(anyhow::anyhow!(
                "`--window`: give lo,hi with 0 < lo < hi, got {w:?}"
            )));
        }
    }
    Ok(())
}

fn default_window(steps: &[usize]) -> [f64; 2] {
    let mut s: Vec<usize> = steps.to_vec();
    s.sort_unstable();
    let in_default: Vec<usize> = s
        .iter()
        .copied()
        .filter(|&t| (128..=1024).contains(&t))
        .collect();
    if in_default.len() >= 3 {
        return [
            in_default[0] as f64,
            *in_default.last().unwrap_or(&1024) as f64,
        ];
    }
    let tail = &s[s.len().saturating_sub(4)..];
    [tail[0] as f64, tail[tail.len() - 1] as f64]
}

fn run(args: &Args) -> Result<(), Outcome> {
    validate(args)?;
    let q0 = covlab::presets::load(&args.data).map_err(bad)?;
    let schedule = Schedule::from_name(&args.schedule).map_err(bad)?;
    let mut core = Vec::new();
    let mut hutch_m = Vec::new();
    for name in args.families.split(',').map(str::trim) {
        if let Some(rest) = name.strip_prefix("hutchinson-") {
            match rest.parse::<usize>() {
                Ok(m) if m >= 1 => hutch_m.push(m),
                _ => {
                    return Err(bad(anyhow::anyhow!(
                        "--families: `{name}`: hutchinson-<M> needs an integer M >= 1"
                    ))
                    .into())
                }
            }
        } else {
            core.push(name);
        }
    }
    if !hutch_m.is_empty() && args.hutchinson_points < 2 {
        return Err(bad(anyhow::anyhow!("--hutchinson-points must be >= 2")).into());
    }
    if !hutch_m.is_empty() && !core.contains(&"diag") {
        core.push("diag");
    }
    let families = Family::parse_list(&core.join(",")).map_err(bad)?;
    let remedy = BetaTildeRemedy::from_name(&args.beta_tilde_remedy).map_err(bad)?;
    let mut early_stop = args.early_stop;
    if remedy == BetaTildeRemedy::EarlyStop && early_stop == 0.0 {
        early_stop = 1e-3;
    }
    let mut steps = args.steps.clone();
    steps.sort_unstable();
    steps.dedup();
    let params = PathKlParams {
        families: families.clone(),
        route: match args.route {
            RouteArg::A => Route::A,
            RouteArg::B => Route::B,
        },
        remedy,
        early_stop,
        rule: match args.rule {
            RuleArg::Auto => RuleChoice::Auto,
            RuleArg::Lattice => RuleChoice::Lattice,
            RuleArg::Qmc => RuleChoice::Qmc,
        },
        lattice: LatticeParams {
            h_frac: args.h_frac,
            ..LatticeParams::default()
        },
        qmc: QmcParams {
            points: args.qmc_points,
            shifts: args.qmc_shifts,
            seed: args.seed,
        },
        ..PathKlParams::default()
    };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Outcome::Failed(e.into()))?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} path KL: grid times {pos}/{len} [{elapsed_precise} < {eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let report = pool
        .install(|| {
            path_kl_sweep(&q0, &schedule, &steps, &params, &|done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
        })
        .map_err(bad)?;
    bar.finish_and_clear();
    // hutchinson-M: S_diag + the Monte Carlo excess (independent errors add in quadrature).
    let range = covlab::sampler::clip_range_of(&q0);
    let mut extra: Vec<(String, Vec<(usize, Estimate)>)> = Vec::new();
    for &m in &hutch_m {
        let mc = HutchinsonMc {
            probes: m,
            points: args.hutchinson_points,
            seed: args.seed,
            clip_range: Some(range),
        };
        let mut rows = Vec::new();
        for &t in &steps {
            let ex = pool
                .install(|| hutchinson_excess(&q0, &schedule, t, early_stop, &mc))
                .map_err(bad)?;
            let d = report
                .get(Family::Diag, t)
                .map(|r| r.s)
                .ok_or_else(|| Outcome::Failed(anyhow::anyhow!("S_diag missing at T = {t}")))?;
            rows.push((
                t,
                Estimate {
                    value: d.value + ex.value,
                    err: d.err.hypot(ex.err),
                },
            ));
        }
        extra.push((format!("hutchinson-{m}"), rows));
    }
    let wall = start.elapsed().as_secs_f64();

    let window = match &args.window {
        Some(w) => [w[0], w[1]],
        None => default_window(&steps),
    };
    let slopes: Vec<(Family, Result<SlopeFit, String>)> = families
        .iter()
        .map(|&f| {
            let rows: Vec<_> = report.rows.iter().filter(|r| r.family == f).collect();
            let x: Vec<f64> = rows.iter().map(|r| r.steps as f64).collect();
            let y: Vec<f64> = rows.iter().map(|r| r.s.value).collect();
            (f, fit_loglog(&x, &y, window).map_err(|e| e.to_string()))
        })
        .collect();

    print_table(args, &report, &steps, &families, &slopes, wall, threads);
    let extra_slopes: Vec<(String, Result<SlopeFit, String>)> = extra
        .iter()
        .map(|(name, rows)| {
            let x: Vec<f64> = rows.iter().map(|r| r.0 as f64).collect();
            let y: Vec<f64> = rows.iter().map(|r| r.1.value).collect();
            (
                name.clone(),
                fit_loglog(&x, &y, window).map_err(|e| e.to_string()),
            )
        })
        .collect();
    for ((name, rows), (_, fit)) in extra.iter().zip(&extra_slopes) {
        println!("{name} (expected over probes; err = Monte Carlo 2 s.e. + quadrature):");
        for (t, e) in rows {
            println!("  T = {t:>5}: S = {:.8e} +- {:.1e}", e.value, e.err);
        }
        match fit {
            Ok(f) => println!(
                "  slope {:+.4} [{:+.4}, {:+.4}]",
                f.slope, f.ci95[0], f.ci95[1]
            ),
            Err(e) => println!("  no fit ({e})"),
        }
    }

    let label = data_label(&args.data);
    let mut stem = format!("path_kl_{label}");
    if args.schedule != "vp-linear" {
        stem.push_str(&format!("_{}", schedule.name()));
    }
    if early_stop > 0.0 {
        stem.push_str(&format!("_es{early_stop}"));
    }
    if matches!(args.route, RouteArg::B) {
        stem.push_str("_route_b");
    }
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("studies/results/{stem}.json")));
    let fig_path = args
        .figure
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("figures/{stem}")));
    let doc = json!({
        "data": label,
        "schedule": schedule.name(),
        "dim": report.dim,
        "route": format!("{:?}", report.route).to_lowercase(),
        "rule": report.rule,
        "early_stop": early_stop,
        "beta_tilde_remedy": remedy.name(),
        "beta_tilde_last_step": report.beta_tilde_last_step,
        "terminal_kl": report.terminal_kl.value,
        "terminal_kl_err": report.terminal_kl.err,
        "entropy_start": report.entropy_start,
        "entropy_end": report.entropy_end,
        "results": report.rows.iter().map(|r| json!({"family": r.family.name(), "T": r.steps, "S": r.s.value, "err": r.s.err}))
            .chain(extra.iter().flat_map(|(name, rows)| rows.iter().map(move |(t, e)| json!({"family": name, "T": t, "S": if e.value.is_finite() { json!(e.value) } else { json!("inf") }, "err": e.err, "method": "S_diag + Monte Carlo excess over x_t and probes"}))))
            .collect::<Vec<_>>(),
        "slopes": slopes.iter().map(|(f, s)| (f.name().to_string(), s)).chain(extra_slopes.iter().map(|(n, s)| (n.clone(), s))).filter_map(|(f, s)| s.as_ref().ok().map(|s| json!({"family": f, "window": s.window, "slope": s.slope, "ci95": s.ci95, "stderr": s.stderr, "n": s.n}))).collect::<Vec<_>>(),
        "hutchinson_points": if hutch_m.is_empty() { serde_json::Value::Null } else { json!(args.hutchinson_points) },
        "hutchinson_clip_range": if hutch_m.is_empty() { serde_json::Value::Null } else { json!([range.0, range.1]) },
        "threads": threads,
        "wall_time_s": wall,
        "covlab_version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {}", dir.display()))
            .map_err(Outcome::Failed)?;
    }
    let text = serde_json::to_string_pretty(&doc).map_err(|e| Outcome::Failed(e.into()))?;
    std::fs::write(&json_path, text + "\n")
        .with_context(|| format!("writing {}", json_path.display()))
        .map_err(Outcome::Failed)?;
    write_figure(
        &fig_path, &label, &schedule, &report, &families, &slopes, &extra, early_stop,
    )
    .map_err(Outcome::Failed)?;
    eprintln!(
        "wrote {} and {}.svg/.png",
        json_path.display(),
        fig_path.display()
    );
    Ok(())
}

fn print_table(
    args: &Args,
    report: &PathKlReport,
    steps: &[usize],
    families: &[Family],
    slopes: &[(Family, Result<SlopeFit, String>)],
    wall: f64,
    threads: usize,
) {
    println!(
        "path KL step sums S(T) for {} (D = {}), schedule {}, route {:?}, rule: {}",
        args.data, report.dim, args.schedule, report.route, report.rule
    );
    if families.contains(&Family::BetaTilde) {
        println!("beta-tilde last step: {}", report.beta_tilde_last_step);
    }
    let mut header = format!("{:>6}", "T");
    for f in families {
        header.push_str(&format!(
            " | {:>14} {:>8}",
            format!("S_{}", f.name()),
            "err"
        ));
    }
    println!("{header}");
    for &t in steps {
        let mut line = format!("{t:>6}");
        for &f in families {
            match report.get(f, t) {
                Some(r) => line.push_str(&format!(" | {:>14.8e} {:>8.1e}", r.s.value, r.s.err)),
                None => line.push_str(&format!(" | {:>14} {:>8}", "-", "-")),
            }
        }
        println!("{line}");
    }
    println!(
        "terminal KL(q_T || N(0, I)) = {:.10e} +- {:.1e} (independent of the family and of T)",
        report.terminal_kl.value, report.terminal_kl.err
    );
    println!("slopes of ln S on ln T (least squares, 95 % interval):");
    for (f, s) in slopes {
        match s {
            Ok(s) => println!(
                "  {:>10}: {:+.4} [{:+.4}, {:+.4}] on T in [{}, {}]",
                f.name(),
                s.slope,
                s.ci95[0],
                s.ci95[1],
                s.window[0],
                s.window[1]
            ),
            Err(e) => println!("  {:>10}: no fit ({e})", f.name()),
        }
    }
    println!("wall time {wall:.2} s on {threads} threads");
}

#[allow(clippy::too_many_arguments)]
fn write_figure(
    stem: &Path,
    label: &str,
    schedule: &Schedule,
    report: &PathKlReport,
    families: &[Family],
    slopes: &[(Family, Result<SlopeFit, String>)],
    extra: &[(String, Vec<(usize, Estimate)>)],
    early_stop: f64,
) -> anyhow::Result<()> {
    let mut series = Vec::new();
    for (i, (name, rows)) in extra.iter().enumerate() {
        series.push(
            Series::new(
                name.clone(),
                rows.iter().map(|r| r.0 as f64).collect(),
                rows.iter().map(|r| r.1.value).collect(),
            )
            .with_err(rows.iter().map(|r| r.1.err).collect())
            .dashed()
            .with_color(families.len() + i),
        );
    }
    for &f in families {
        let rows: Vec<_> = report.rows.iter().filter(|r| r.family == f).collect();
        let slope = slopes
            .iter()
            .find(|(g, _)| *g == f)
            .and_then(|(_, s)| s.as_ref().ok())
            .map(|s| format!(" (slope {:+.2})", s.slope))
            .unwrap_or_default();
        series.push(
            Series::new(
                format!("{}{}", f.name(), slope),
                rows.iter().map(|r| r.steps as f64).collect(),
                rows.iter().map(|r| r.s.value).collect(),
            )
            .with_err(rows.iter().map(|r| r.s.err).collect()),
        );
    }
    let mut refs = Vec::new();
    let anchor = |f: Family| {
        report
            .rows
            .iter()
            .rfind(|r| r.family == f)
            .map(|r| (r.steps as f64, r.s.value))
    };
    if let Some((x0, y0)) = families
        .iter()
        .filter(|f| **f != Family::Full)
        .find_map(|f| anchor(*f))
    {
        refs.push(RefSlope::new(-1.0, x0, y0 * 0.5, "slope -1"));
    }
    if let Some((x0, y0)) = anchor(Family::Full) {
        refs.push(RefSlope::new(-2.0, x0, y0 * 0.5, "slope -2"));
    }
    let es = if early_stop > 0.0 {
        format!(", early stop {early_stop}")
    } else {
        String::new()
    };
    let fig = LogLogFigure {
        title: format!("Path KL step sum S(T): {label}, {}", schedule.name()),
        x_label: "T (number of reverse steps)".to_string(),
        y_label: "S(T) = sum of E KL(q(x_s|x_t) || p(x_s|x_t))".to_string(),
        series,
        refs,
        caption: Some(format!("route {:?}; bars: quadrature error estimate; terminal KL {:.3e} not included; beta-tilde last step: {}{es}", report.route, report.terminal_kl.value, report.beta_tilde_last_step)),
    };
    fig.save(stem)?;
    Ok(())
}
