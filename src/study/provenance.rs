//! Provenance of a results JSON: what produced it.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The `provenance` object of every results JSON a study writes (never compared by
/// `study check`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The covlab version (Cargo package version).
    pub covlab_version: String,
    /// `git rev-parse HEAD` at the root, or `"unknown"`.
    pub git_commit: String,
    /// Whether the sources differed from that commit (`git status --porcelain` non-empty for
    /// `src`, `Cargo.toml`, `Cargo.lock` or `studies/*.toml`); `None` when unknown.
    pub git_dirty: Option<bool>,
    /// The study file, relative to the root.
    pub study_file: String,
    /// SHA-256 of the study file's bytes.
    pub study_file_sha256: String,
    /// The seeds the parameters use.
    pub seeds: Vec<u64>,
    /// Worker threads (one entry per shard after a merge).
    pub threads: Vec<usize>,
    /// The device.
    pub device: String,
    /// Wall seconds of the cells (summed over shards).
    pub wall_time_s: f64,
    /// Number of shards the result was computed in (1: unsharded).
    pub shards: usize,
}

/// `git rev-parse HEAD` in `root`, or `"unknown"` (no git, not a repository).
#[must_use]
pub fn git_commit(root: &Path) -> String {
    Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Whether the sources in `root` differ from HEAD (`None` when git cannot tell).
#[must_use]
pub fn git_dirty(root: &Path) -> Option<bool> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "status",
            "--porcelain",
            "--",
            "src",
            "Cargo.toml",
            "Cargo.lock",
            "studies/*.toml",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(!out.stdout.is_empty())
}
