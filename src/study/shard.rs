//! Sharding: `i/n` computes the cells whose index is `i` modulo `n` (round robin, so cheap
//! and expensive cells spread over the shards); a merge puts every cell back at its index and
//! assembles them as one run would.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ParamError, StudyError};

/// Shard `index` of `count` (0-based: `0/4` .. `3/4`, as a Slurm array `--array=0-3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, `0 <= index < count`.
    pub index: usize,
    /// Number of shards, `>= 1`.
    pub count: usize,
}

impl Shard {
    /// Parses `i/n`.
    ///
    /// # Errors
    /// A [`ParamError`] naming `shard` unless `0 <= i < n`.
    pub fn parse(s: &str) -> Result<Self, ParamError> {
        let bad = || ParamError::new("shard", "i/n with 0 <= i < n (0-based)", s);
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// The cells of `total` that belong to this shard, ascending.
    #[must_use]
    pub fn cells(&self, total: usize) -> Vec<usize> {
        (self.index..total).step_by(self.count).collect()
    }

    /// The shard file name for study `name`.
    #[must_use]
    pub fn file_name(&self, name: &str) -> String {
        format!("{name}.shard-{}-of-{}.json", self.index, self.count)
    }
}

/// One computed cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellOutput {
    /// Its index in the kind's cell list.
    pub index: usize,
    /// Its label.
    pub label: String,
    /// Its value.
    pub value: Value,
}

/// What one shard writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardFile {
    /// The study's name (file stem).
    pub study: String,
    /// SHA-256 of the study file the shard ran.
    pub study_file_sha256: String,
    /// The shard.
    pub shard: Shard,
    /// Cells in the study (all shards).
    pub total_cells: usize,
    /// Worker threads of this shard.
    pub threads: usize,
    /// Wall seconds of this shard's cells.
    pub wall_time_s: f64,
    /// The git commit of the shard's run.
    pub git_commit: String,
    /// The cells computed.
    pub cells: Vec<CellOutput>,
}

/// The cell values of all shards in index order, after checking that the shards belong to
/// the same study file (`sha256`), agree on the count and cover every cell exactly once.
///
/// # Errors
/// [`StudyError::Merge`] saying what does not fit.
pub fn merge_cells(sha256: &str, shards: &[ShardFile]) -> Result<Vec<Value>, StudyError> {
    let first = shards
        .first()
        .ok_or_else(|| StudyError::Merge("no shard files".into()))?;
    let (count, total) = (first.shard.count, first.total_cells);
    let mut seen = vec![false; count];
    let mut cells: Vec<Option<Value>> = vec![None; total];
    for s in shards {
        if s.study_file_sha256 != sha256 {
            return Err(StudyError::Merge(format!(
                "shard {}/{} of `{}` ran a different study file (sha256 {} != {sha256}); rerun it",
                s.shard.index, s.shard.count, s.study, s.study_file_sha256
            )));
        }
        if s.shard.count != count || s.total_cells != total {
            return Err(StudyError::Merge(format!(
                "shard {}/{} does not match shard {}/{} ({} vs {} cells)",
                s.shard.index, s.shard.count, first.shard.index, count, s.total_cells, total
            )));
        }
        if std::mem::replace(&mut seen[s.shard.index], true) {
            return Err(StudyError::Merge(format!(
                "shard {}/{count} given twice",
                s.shard.index
            )));
        }
        let want = s.shard.cells(total);
        let got: Vec<usize> = s.cells.iter().map(|c| c.index).collect();
        if want != got {
            return Err(StudyError::Merge(format!(
                "shard {}/{count} holds cells {got:?}, expected {want:?}",
                s.shard.index
            )));
        }
        for c in &s.cells {
            cells[c.index] = Some(c.value.clone());
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(StudyError::Merge(format!(
            "shard {missing}/{count} is missing"
        )));
    }
    cells
        .into_iter()
        .enumerate()
        .map(|(i, c)| c.ok_or_else(|| StudyError::Merge(format!("cell {i} missing"))))
        .collect()
}

/// Which shard files of a directory to merge: all of them when they form one set (one count,
/// one cell total, one study-file hash; [`merge_cells`] then says what does not fit), else
/// the one complete set of this study file (`sha256`), every index `0..count` present
/// exactly once; returns the chosen shards and the paths of the files ignored.
///
/// # Errors
/// [`StudyError::Merge`] listing the sets found when there is no complete set of this study
/// file, or more than one.
pub fn select_set(
    sha256: &str,
    files: Vec<(std::path::PathBuf, ShardFile)>,
) -> Result<(Vec<ShardFile>, Vec<std::path::PathBuf>), StudyError> {
    type Key = (usize, usize, String);
    let key =
        |s: &ShardFile| -> Key { (s.shard.count, s.total_cells, s.study_file_sha256.clone()) };
    let mut keys: Vec<Key> = files.iter().map(|(_, s)| key(s)).collect();
    keys.sort();
    keys.dedup();
    if keys.len() <= 1 {
        return Ok((files.into_iter().map(|(_, s)| s).collect(), Vec::new()));
    }
    // The shard indices present for one set, ascending.
    let indices = |k: &Key| {
        let mut idx: Vec<usize> = files
            .iter()
            .filter(|(_, s)| &key(s) == k)
            .map(|(_, s)| s.shard.index)
            .collect();
        idx.sort_unstable();
        idx
    };
    let complete = |k: &Key| indices(k) == (0..k.0).collect::<Vec<_>>();
    let chosen: Vec<&Key> = keys
        .iter()
        .filter(|k| k.2 == sha256 && complete(k))
        .collect();
    if let [k] = chosen[..] {
        let k = k.clone();
        let (mine, others): (Vec<_>, Vec<_>) = files.into_iter().partition(|(_, s)| key(s) == k);
        return Ok((
            mine.into_iter().map(|(_, s)| s).collect(),
            others.into_iter().map(|(p, _)| p).collect(),
        ));
    }
    let sets: Vec<String> = keys
        .iter()
        .map(|k| {
            let idx = indices(k);
            format!(
                "shards {idx:?} of {} ({} cells, study file sha256 {}{}{})",
                k.0,
                k.1,
                &k.2[..k.2.len().min(12)],
                if k.2 == sha256 {
                    ", this study file"
                } else {
                    ", another study file"
                },
                if complete(k) {
                    ", complete"
                } else {
                    ", incomplete"
                }
            )
        })
        .collect();
    Err(StudyError::Merge(format!(
        "{} complete set(s) of shards of this study file, expected exactly one; found: {}",
        chosen.len(),
        sets.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_cells() {
        for n in 1..=5 {
            let mut all: Vec<usize> = (0..n)
                .flat_map(|i| Shard { index: i, count: n }.cells(13))
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..13).collect::<Vec<_>>());
        }
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 1, count: 3 });
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            let e = Shard::parse(bad).unwrap_err();
            assert_eq!(e.key, "shard", "{bad}");
        }
    }
}
