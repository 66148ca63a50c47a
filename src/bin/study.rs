//! `study`: runs the study files `studies/*.toml`, checks committed results for drift,
//! shards and merges sweeps, lists the studies and whether their outputs are current.
//!
//! ```text
//! study run FILE... | --all  [--shard i/n] [--shard-dir DIR] [--threads N]
//! study merge FILE...        [--shard-dir DIR]
//! study check [FILE...] [--quick] [--threads N]
//! study list
//! ```
//! Exit codes: 0 success; 1 drift, a stale result or a failed computation; 2 bad input
//! (a study file with an unknown key, kind or bad value, named with its file and key).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};
use covlab::study::check::drift_table;
use covlab::study::file::discover;
use covlab::study::runner::{
    check, check_outputs, compute, compute_shard, currency, merge, write_outputs,
};
use covlab::study::shard::select_set;
use covlab::study::{Currency, Observer, Shard, ShardFile, StudyError, StudyFile};
use indicatif::{ProgressBar, ProgressStyle};

mod common;

use common::{BadInput, Outcome};

/// Studies as files: regenerate every committed result, check it for drift, shard sweeps.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The repository root (study files are ROOT/studies/*.toml).
    #[arg(long, default_value = ".", global = true)]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs study files and writes their outputs (or one shard's cells with --shard).
    Run {
        /// Study files.
        files: Vec<PathBuf>,
        /// Every study file under ROOT/studies.
        #[arg(long)]
        all: bool,
        /// Compute only shard i of n (0-based), written to the shard directory.
        #[arg(long)]
        shard: Option<String>,
        /// Where shard outputs go (default ROOT/studies/shards).
        #[arg(long)]
        shard_dir: Option<PathBuf>,
        /// Worker threads (default: all cores). Results are identical for any value.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Joins the shard outputs of study files and writes their outputs.
    Merge {
        /// Study files.
        files: Vec<PathBuf>,
        /// Where the shard outputs are (default ROOT/studies/shards).
        #[arg(long)]
        shard_dir: Option<PathBuf>,
    },
    /// Re-runs studies and compares every number with the committed JSON (exit 1 on drift).
    Check {
        /// Study files (default: every study file with check enabled).
        files: Vec<PathBuf>,
        /// Only the studies marked `quick = true`.
        #[arg(long)]
        quick: bool,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Lists every study, its outputs and whether they are current.
    List,
}

fn main() {
    // The validate and bench-gpu kinds run candle on the CPU: the binaries' thread settings.
    common::init_candle_threads();
    common::finish_check(run(&Args::parse()));
}

/// Prints each failed bound or tolerance check of a computed study on stderr; `false` when
/// there was one (the run then exits 1 after writing its outputs).
fn report_failed_checks(name: &str, assembled: &covlab::study::Assembled) -> bool {
    let failed = assembled.failed_checks();
    for f in &failed {
        eprintln!("  {name}: FAILED CHECK: {f}");
    }
    failed.is_empty()
}

/// A study error: bad input (exit 2) or failure (exit 1).
fn outcome(e: StudyError) -> Outcome {
    if e.is_bad_input() {
        Outcome::Bad(BadInput(e.into()))
    } else {
        Outcome::Failed(e.into())
    }
}

/// Loads the named study files (or every one under the root). With `lenient`, a discovered
/// study whose kind needs a feature this build lacks (`validate` without `candle`) is skipped
/// with a line on stderr instead of failing the whole command: `study list` and
/// `study check` without `--features candle` still cover every other study.
fn load_all(
    args: &Args,
    files: &[PathBuf],
    all: bool,
    lenient: bool,
) -> Result<Vec<StudyFile>, Outcome> {
    let paths = if all || files.is_empty() {
        if all && !files.is_empty() {
            return Err(common::bad(anyhow::anyhow!("give study files or --all, not both")).into());
        }
        discover(&args.root).map_err(outcome)?
    } else {
        files.to_vec()
    };
    let lenient = lenient && files.is_empty();
    let mut studies: Vec<StudyFile> = Vec::with_capacity(paths.len());
    for p in &paths {
        match StudyFile::load(p, &covlab::experiments::registry::REGISTRY) {
            Ok(f) => studies.push(f),
            Err(StudyError::FeatureMissing { kind, feature, .. }) if lenient => eprintln!(
                "skipped {}: kind `{kind}` needs --features {feature} (this build lacks it)",
                p.display()
            ),
            Err(e) => return Err(outcome(e)),
        }
    }
    // Two study files writing the same output would silently overwrite each other.
    let clashes = covlab::study::file::collisions(&studies);
    if !clashes.is_empty() {
        let list: Vec<String> = clashes
            .iter()
            .map(|(p, a, b)| format!("{} is written by both `{a}` and `{b}`", p.display()))
            .collect();
        return Err(common::bad(anyhow::anyhow!(
            "study outputs collide: {}",
            list.join("; ")
        ))
        .into());
    }
    Ok(studies)
}

/// Prints the files written and, as warnings, the figures that could not be written (they
/// never fail the run: the JSON is the result).
fn report(written: &covlab::study::Written) {
    for w in &written.files {
        eprintln!("  wrote {}", w.display());
    }
    for (stem, e) in &written.figure_errors {
        eprintln!("warning: figure {stem} not written: {e}");
    }
}

fn pool(threads: Option<usize>) -> Result<rayon::ThreadPool, Outcome> {
    common::thread_pool(threads)
}

/// Progress of one study's cells on stderr.
struct Cells(ProgressBar);

impl Cells {
    fn new(name: &str, total: usize) -> Self {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {name}: cell {{pos}}/{{len}} [{{elapsed_precise}}] {{prefix}} {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self(bar)
    }
}

impl Observer for Cells {
    fn cell_started(&self, _index: usize, label: &str) {
        self.0.set_prefix("");
        self.0.set_message(label.to_string());
    }
    fn cell_done(&self, _index: usize, _label: &str) {
        self.0.inc(1);
    }
    fn inner(&self, done: usize, total: usize) {
        self.0.set_message(format!("{done}/{total}"));
    }
    fn phase(&self, label: &str) {
        self.0.set_prefix(label.to_string());
    }
}

fn shard_dir(args: &Args, dir: &Option<PathBuf>) -> PathBuf {
    dir.clone()
        .unwrap_or_else(|| args.root.join("studies").join("shards"))
}

fn run(args: &Args) -> Result<bool, Outcome> {
    if !args.root.is_dir() {
        let what = if args.root.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(
            common::bad(anyhow::anyhow!("`--root`: {} {what}", args.root.display())).into(),
        );
    }
    match &args.command {
        Command::Run {
            files,
            all,
            shard,
            shard_dir: dir,
            threads,
        } => {
            if files.is_empty() && !all {
                return Err(common::bad(anyhow::anyhow!("give study files or --all")).into());
            }
            let shard = shard
                .as_deref()
                .map(Shard::parse)
                .transpose()
                .map_err(common::param)?;
            let studies = load_all(args, files, *all, false)?;
            // Every output path is proved writable before any study computes (exit 2).
            for file in &studies {
                match shard {
                    None => {
                        for w in check_outputs(file).map_err(outcome)? {
                            eprintln!("warning: {w}");
                        }
                    }
                    Some(s) => {
                        let p = shard_dir(args, dir).join(s.file_name(&file.name));
                        common::check_output("--shard-dir", &p)?;
                    }
                }
            }
            let pool = pool(*threads)?;
            let n = studies.len();
            let mut checks_ok = true;
            for (i, file) in studies.iter().enumerate() {
                let cells = file.study.cells().map_err(outcome)?.len();
                eprintln!(
                    "[{}/{n}] {} ({}, {cells} cells)",
                    i + 1,
                    file.name,
                    file.study.kind()
                );
                let start = Instant::now();
                match shard {
                    None => {
                        let bar = Cells::new(&file.name, cells);
                        let computed = pool.install(|| compute(file, &bar)).map_err(outcome)?;
                        bar.0.finish_and_clear();
                        print!("{}", computed.assembled.table);
                        report(&write_outputs(file, &computed).map_err(outcome)?);
                        checks_ok &= report_failed_checks(&file.name, &computed.assembled);
                    }
                    Some(s) => {
                        let bar = Cells::new(&file.name, s.cells(cells).len());
                        let out = pool
                            .install(|| compute_shard(file, s, &bar))
                            .map_err(outcome)?;
                        bar.0.finish_and_clear();
                        let path = shard_dir(args, dir).join(s.file_name(&file.name));
                        let doc = serde_json::to_value(&out).map_err(common::failed)?;
                        covlab::study::write_json(&path, &doc).map_err(outcome)?;
                        eprintln!("  wrote {} ({} cells)", path.display(), out.cells.len());
                    }
                }
                eprintln!(
                    "  {} done in {:.1} s",
                    file.name,
                    start.elapsed().as_secs_f64()
                );
            }
            Ok(checks_ok)
        }
        Command::Merge {
            files,
            shard_dir: dir,
        } => {
            if files.is_empty() {
                return Err(common::bad(anyhow::anyhow!("give the study files to merge")).into());
            }
            let studies = load_all(args, files, false, false)?;
            let dir = shard_dir(args, dir);
            let mut checks_ok = true;
            for file in &studies {
                for w in check_outputs(file).map_err(outcome)? {
                    eprintln!("warning: {w}");
                }
            }
            for file in &studies {
                let (paths, shards) = read_shards(&dir, file)?;
                // A shard whose cells do not have the kind's shape (a `"NaN"` string where a
                // number belongs) is the input's fault: exit 2 naming the shard files.
                let computed = merge(file, &shards).map_err(|e| match e {
                    e @ StudyError::Json { .. } => {
                        common::bad(anyhow::Error::from(e).context(format!(
                            "merge: the cells of {} do not have the shape `{}` writes",
                            paths
                                .iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", "),
                            file.study.kind()
                        )))
                        .into()
                    }
                    e => outcome(e),
                })?;
                print!("{}", computed.assembled.table);
                report(&write_outputs(file, &computed).map_err(outcome)?);
                eprintln!("{}: merged {} shards", file.name, shards.len());
                checks_ok &= report_failed_checks(&file.name, &computed.assembled);
            }
            Ok(checks_ok)
        }
        Command::Check {
            files,
            quick,
            threads,
        } => {
            let studies = load_all(args, files, false, true)?;
            let explicit = !files.is_empty();
            let pool = pool(*threads)?;
            let start = Instant::now();
            let mut ok = true;
            let mut moved = String::new();
            let mut summary = Vec::new();
            for file in &studies {
                if !file.check.enabled {
                    summary.push(format!(
                        "{:<28} skipped (check disabled in the study file)",
                        file.name
                    ));
                    continue;
                }
                if *quick && !file.check.quick && !explicit {
                    continue;
                }
                let bar = Cells::new(&file.name, file.study.cells().map_err(outcome)?.len());
                let out = pool.install(|| check(file, &bar)).map_err(outcome)?;
                bar.0.finish_and_clear();
                let status = if out.passed() {
                    "ok".to_string()
                } else {
                    ok = false;
                    let mut s = Vec::new();
                    if !out.failed_checks.is_empty() {
                        s.push(format!("FAILED CHECKS: {}", out.failed_checks.join("; ")));
                    }
                    if !out.drifts.is_empty() {
                        s.push(format!("DRIFT: {} values moved", out.drifts.len()));
                    }
                    match &out.currency {
                        Currency::Current => {}
                        Currency::Missing(p) => s.push(format!("MISSING outputs: {p:?}")),
                        Currency::Stale { recorded } => s.push(format!(
                            "STALE: committed JSON is from study file sha256 {recorded}, the file is now {}",
                            file.sha256
                        )),
                    }
                    s.join("; ")
                };
                moved += &drift_table(&file.name, &out.drifts);
                summary.push(format!(
                    "{:<28} {status} ({:.1} s)",
                    file.name, out.wall_time_s
                ));
            }
            if !moved.is_empty() {
                println!(
                    "{:<28} {:<40} {:>24} {:>24} {:>10} {:>10}",
                    "study", "key", "committed", "now", "|diff|", "allowed"
                );
                print!("{moved}");
            }
            for s in &summary {
                println!("{s}");
            }
            println!(
                "checked {} studies in {:.1} s: {}",
                summary.len(),
                start.elapsed().as_secs_f64(),
                if ok {
                    "no drift"
                } else {
                    "FAILED (drift, a failed check or a stale result: see above)"
                }
            );
            Ok(ok)
        }
        Command::List => {
            let studies = load_all(args, &[], true, true)?;
            for file in &studies {
                let state = match currency(file) {
                    Currency::Current => "current".to_string(),
                    Currency::Missing(p) => format!("missing {}", p.len()),
                    Currency::Stale { .. } => "stale (study file changed)".to_string(),
                };
                let flags = match (file.check.enabled, file.check.quick) {
                    (false, _) => "no-check",
                    (true, true) => "quick",
                    (true, false) => "",
                };
                println!(
                    "{:<28} {:<14} {:<9} {:<26} {}",
                    file.name,
                    file.study.kind(),
                    flags,
                    state,
                    file.description
                );
                for p in file.output_paths() {
                    println!("    {}", rel(&p, &args.root).display());
                }
            }
            Ok(true)
        }
    }
}

fn rel<'a>(p: &'a Path, root: &Path) -> &'a Path {
    p.strip_prefix(root).unwrap_or(p)
}

/// The shard outputs of study `file` in `dir` to merge (one set; [`select_set`]) and their
/// paths; says on stderr which stale files it ignored.
fn read_shards(dir: &Path, file: &StudyFile) -> Result<(Vec<PathBuf>, Vec<ShardFile>), Outcome> {
    let prefix = format!("{}.shard-", file.name);
    let entries = std::fs::read_dir(dir)
        .map_err(|e| common::bad(anyhow::anyhow!("{}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".json"))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(common::bad(anyhow::anyhow!(
            "no shard outputs {prefix}*.json in {}",
            dir.display()
        ))
        .into());
    }
    let files = paths
        .iter()
        .map(|p| {
            // A truncated or malformed shard is the input's fault: exit 2 naming its path.
            let v = covlab::study::read_json(p)
                .map_err(|e| common::bad(anyhow::Error::from(e).context("shard file")))?;
            let s: ShardFile = serde_json::from_value(v).map_err(|e| {
                common::bad(anyhow::Error::from(e).context(format!("shard file {}", p.display())))
            })?;
            Ok((p.clone(), s))
        })
        .collect::<Result<Vec<_>, Outcome>>()?;
    let (chosen, ignored) = select_set(&file.sha256, files).map_err(outcome)?;
    for p in &ignored {
        eprintln!(
            "{}: ignoring {} (not in the complete set of shards)",
            file.name,
            p.display()
        );
    }
    let ignored: std::collections::HashSet<&PathBuf> = ignored.iter().collect();
    let kept = paths
        .iter()
        .filter(|p| !ignored.contains(p))
        .cloned()
        .collect();
    Ok((kept, chosen))
}
