//! Running study files: whole, as shards, merged; writing outputs; checking drift and
//! currency.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;

use super::check::compare;
use super::figure::save_each;
use super::provenance::{git_commit, git_dirty, Provenance};
use super::shard::{merge_cells, CellOutput, Shard, ShardFile};
use super::{read_json, write_json, Assembled, Drift, Observer, RunInfo, StudyError, StudyFile};

/// A computed study: the assembled result and its provenance.
#[derive(Clone, Debug)]
pub struct Computed {
    /// JSON, figures, table.
    pub assembled: Assembled,
    /// What produced it.
    pub provenance: Provenance,
}

impl Computed {
    /// The results JSON with its `provenance` object.
    #[must_use]
    pub fn doc(&self) -> Value {
        let mut doc = self.assembled.doc.clone();
        if let Value::Object(m) = &mut doc {
            m.insert(
                "provenance".into(),
                serde_json::to_value(&self.provenance).unwrap_or(Value::Null),
            );
        }
        doc
    }
}

fn provenance(file: &StudyFile, threads: Vec<usize>, wall: f64, shards: usize) -> Provenance {
    Provenance {
        covlab_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: git_commit(&file.root),
        git_dirty: git_dirty(&file.root),
        study_file: file
            .path
            .strip_prefix(&file.root)
            .unwrap_or(&file.path)
            .display()
            .to_string(),
        study_file_sha256: file.sha256.clone(),
        seeds: file.study.seeds(),
        threads,
        device: file.study.device(),
        wall_time_s: wall,
        shards,
    }
}

fn run_cells(
    file: &StudyFile,
    indices: &[usize],
    obs: &dyn Observer,
) -> Result<(Vec<Value>, f64), StudyError> {
    let start = Instant::now();
    let cells = file.study.run_cells(indices, obs)?;
    Ok((cells, start.elapsed().as_secs_f64()))
}

/// Computes every cell of the study in the current rayon pool and assembles them.
///
/// # Errors
/// A failed computation.
pub fn compute(file: &StudyFile, obs: &dyn Observer) -> Result<Computed, StudyError> {
    let n = file.study.cells()?.len();
    let all: Vec<usize> = (0..n).collect();
    let (cells, wall) = run_cells(file, &all, obs)?;
    let threads = rayon::current_num_threads();
    let assembled = file.study.assemble(
        &cells,
        &RunInfo {
            threads,
            wall_time_s: wall,
        },
    )?;
    Ok(Computed {
        assembled,
        provenance: provenance(file, vec![threads], wall, 1),
    })
}

/// Computes the cells of one shard.
///
/// # Errors
/// A failed computation.
pub fn compute_shard(
    file: &StudyFile,
    shard: Shard,
    obs: &dyn Observer,
) -> Result<ShardFile, StudyError> {
    let labels = file.study.cells()?;
    let mine = shard.cells(labels.len());
    let (values, wall) = run_cells(file, &mine, obs)?;
    Ok(ShardFile {
        study: file.name.clone(),
        study_file_sha256: file.sha256.clone(),
        shard,
        total_cells: labels.len(),
        threads: rayon::current_num_threads(),
        wall_time_s: wall,
        git_commit: git_commit(&file.root),
        cells: mine
            .iter()
            .zip(values)
            .map(|(&index, value)| CellOutput {
                index,
                label: labels[index].clone(),
                value,
            })
            .collect(),
    })
}

/// Merges shard outputs into the study's result (the same, bit for bit, as [`compute`]'s
/// apart from timings and provenance).
///
/// # Errors
/// [`StudyError::Merge`] when the shards do not fit together; assembly errors.
pub fn merge(file: &StudyFile, shards: &[ShardFile]) -> Result<Computed, StudyError> {
    let cells = merge_cells(&file.sha256, shards)?;
    let labels = file.study.cells()?;
    if labels.len() != cells.len() {
        return Err(StudyError::Merge(format!(
            "the shards hold {} cells, the study file now defines {}",
            cells.len(),
            labels.len()
        )));
    }
    let wall: f64 = shards.iter().map(|s| s.wall_time_s).sum();
    let mut threads: Vec<(usize, usize)> =
        shards.iter().map(|s| (s.shard.index, s.threads)).collect();
    threads.sort_unstable();
    let threads: Vec<usize> = threads.into_iter().map(|t| t.1).collect();
    let assembled = file.study.assemble(
        &cells,
        &RunInfo {
            threads: threads.iter().copied().max().unwrap_or(1),
            wall_time_s: wall,
        },
    )?;
    Ok(Computed {
        assembled,
        provenance: provenance(file, threads, wall, shards.len()),
    })
}

/// Checks, before any computation, that every output of `file` can be written (directories
/// created, a temporary file created and removed beside each, none a directory). A figure
/// never fails a run (the JSON is the result): the figure problems are returned as
/// warnings (`outputs.figure: ...`).
///
/// # Errors
/// [`StudyError::Invalid`] naming the study file, the key `outputs.json` and the path with
/// the OS error.
pub fn check_outputs(file: &StudyFile) -> Result<Vec<String>, StudyError> {
    let check = |key: &str, p: &std::path::Path| {
        crate::output::check_writable(p).map_err(|e| StudyError::Invalid {
            path: file.path.clone(),
            key: key.to_string(),
            message: anyhow_chain(&e),
        })
    };
    check("outputs.json", &file.json_path())?;
    let mut warnings = Vec::new();
    if let Some(stem) = file.figure_stem() {
        for f in file.study.figures() {
            for p in f.paths(&stem) {
                if let Err(e) = check("outputs.figure", &p) {
                    warnings.push(e.to_string());
                }
            }
        }
    }
    Ok(warnings)
}

/// An error and its sources joined by `: ` (each once).
fn anyhow_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// What [`write_outputs`] wrote, and the figures it could not write (which do not fail the
/// run: the JSON is the result).
#[derive(Debug, Default)]
pub struct Written {
    /// The files written (the JSON first).
    pub files: Vec<PathBuf>,
    /// Per figure not written: its suffix and the error, with its sources.
    pub figure_errors: Vec<(String, String)>,
}

/// Writes the results JSON, then the figures (atomically); returns the files written and
/// the figures that could not be drawn or written.
///
/// # Errors
/// I/O errors of the JSON; [`StudyError::Outputs`] when the kind produced other figures than
/// it declares.
pub fn write_outputs(file: &StudyFile, computed: &Computed) -> Result<Written, StudyError> {
    let mut produced: Vec<String> = computed
        .assembled
        .figures
        .iter()
        .map(|(s, _)| s.clone())
        .collect();
    let mut declared: Vec<String> = file.study.figures().into_iter().map(|f| f.suffix).collect();
    produced.sort();
    declared.sort();
    if produced != declared {
        return Err(StudyError::Outputs {
            kind: file.study.kind(),
            produced,
            declared,
        });
    }
    let json = file.json_path();
    write_json(&json, &computed.doc())?;
    let mut written = Written {
        files: vec![json],
        figure_errors: Vec::new(),
    };
    if let Some(stem) = file.figure_stem() {
        let (files, errors) = save_each(&stem, &computed.assembled.figures);
        written.files.extend(files);
        written.figure_errors = errors
            .iter()
            .map(|(suffix, e)| (format!("{}{suffix}", stem.display()), anyhow_chain(e)))
            .collect();
    }
    Ok(written)
}

/// Whether a study's committed outputs are current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Currency {
    /// Every output exists and the JSON was produced from this study file.
    Current,
    /// Some outputs are missing.
    Missing(Vec<PathBuf>),
    /// The JSON was produced from another version of the study file (or has no provenance).
    Stale {
        /// The hash recorded in the JSON.
        recorded: String,
    },
}

/// Whether the outputs of `file` exist and were produced from it.
#[must_use]
pub fn currency(file: &StudyFile) -> Currency {
    let missing: Vec<PathBuf> = file
        .output_paths()
        .into_iter()
        .filter(|p| !p.exists())
        .collect();
    if !missing.is_empty() {
        return Currency::Missing(missing);
    }
    let recorded = read_json(&file.json_path())
        .ok()
        .and_then(|v| {
            v["provenance"]["study_file_sha256"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "(none)".to_string());
    if recorded == file.sha256 {
        Currency::Current
    } else {
        Currency::Stale { recorded }
    }
}

/// The outcome of checking one study.
#[derive(Clone, Debug)]
pub struct CheckOutcome {
    /// Values that moved beyond their tolerance.
    pub drifts: Vec<Drift>,
    /// Whether the committed JSON was produced from this study file.
    pub currency: Currency,
    /// Wall seconds of the re-run.
    pub wall_time_s: f64,
    /// The re-run's failed bound or tolerance checks ([`Assembled::failed_checks`]).
    pub failed_checks: Vec<String>,
}

impl CheckOutcome {
    /// Whether the study passes: current, no drift and no failed check.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.drifts.is_empty()
            && self.currency == Currency::Current
            && self.failed_checks.is_empty()
    }
}

/// Re-runs the study (without writing anything) and compares its JSON with the committed one.
///
/// # Errors
/// A missing or unreadable committed JSON; a failed computation.
pub fn check(file: &StudyFile, obs: &dyn Observer) -> Result<CheckOutcome, StudyError> {
    let committed = read_json(&file.json_path())?;
    let currency = currency(file);
    let start = Instant::now();
    let now = compute(file, obs)?;
    let wall = start.elapsed().as_secs_f64();
    Ok(CheckOutcome {
        drifts: compare(&committed, &now.doc(), &file.check),
        currency,
        wall_time_s: wall,
        failed_checks: now.assembled.failed_checks(),
    })
}
