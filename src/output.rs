//! Output files: atomic writes and up-front checks of output paths.
//!
//! Every file covlab writes (results JSON, shards, SVG/PNG figures, image grids) goes through
//! [`write_atomic`] or [`replace_via_temp`]: the content is written to a temporary file in the
//! target's own directory (so the rename never crosses a file system), fsynced, and renamed
//! over the target. A run killed mid-write leaves the previous file intact (plus at worst a
//! stray `.<name>.tmp-*` file), never a truncated one.
//!
//! [`check_writable`] proves, before any computation, that a path can be written: its
//! directory is created, a temporary file is created and removed there, and a path that is a
//! directory is refused.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

/// Why an output file could not be checked or written. Each message names the path once; the
/// OS error is the [`std::error::Error::source`] (printed once by `{:#}` chains).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The output's directory could not be created.
    #[error("cannot create the directory {}", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The output path is an existing directory.
    #[error("{} is a directory, expected a file path", .path.display())]
    IsDirectory {
        /// The path.
        path: PathBuf,
    },
    /// The output path has no file name (`..`, `/`, empty).
    #[error("`{}` has no file name", .path.display())]
    NoFileName {
        /// The path.
        path: PathBuf,
    },
    /// A file could not be created in the output's directory.
    #[error("cannot write in the directory of {}", .path.display())]
    NotWritable {
        /// The output path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing, syncing or renaming the file failed.
    #[error("cannot write {}", .path.display())]
    Write {
        /// The output path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A process-wide counter making temporary names unique between threads.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temporary path beside `path`: `<dir>/.<name>.tmp-<pid>-<n>[.<ext>]`, in the same
/// directory (so the rename is atomic) and, when `keep_ext`, ending in the target's extension
/// (plotters chooses the image format from it).
///
/// # Errors
/// [`OutputError::NoFileName`] when `path` has no file name.
pub fn temp_path(path: &Path, keep_ext: bool) -> Result<PathBuf, OutputError> {
    let name = path.file_name().ok_or_else(|| OutputError::NoFileName {
        path: path.to_path_buf(),
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}-{n}", std::process::id()));
    if keep_ext {
        if let Some(ext) = path.extension() {
            tmp.push(".");
            tmp.push(ext);
        }
    }
    Ok(path.with_file_name(tmp))
}

/// Creates the directory of `path` (if it has one).
fn create_parent(path: &Path) -> Result<(), OutputError> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|source| OutputError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Checks that `path` can be written, without touching it: creates its directory, refuses a
/// directory, and creates and removes a temporary file beside it.
///
/// # Errors
/// [`OutputError::CreateDir`], [`OutputError::IsDirectory`], [`OutputError::NoFileName`] or
/// [`OutputError::NotWritable`].
pub fn check_writable(path: &Path) -> Result<(), OutputError> {
    if path.is_dir() {
        return Err(OutputError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    let tmp = temp_path(path, false)?;
    create_parent(path)?;
    std::fs::File::create(&tmp).map_err(|source| OutputError::NotWritable {
        path: path.to_path_buf(),
        source,
    })?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

/// Fsyncs the file at `tmp` and renames it over `path`; removes `tmp` on failure.
fn commit(tmp: &Path, path: &Path) -> Result<(), OutputError> {
    let result = std::fs::OpenOptions::new()
        .read(true)
        .open(tmp)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(tmp, path));
    result.map_err(|source| {
        let _ = std::fs::remove_file(tmp);
        OutputError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Writes `path` atomically: `write` fills a temporary file in the same directory (created
/// with its parents), which is fsynced and renamed over `path`. When `write` fails the
/// temporary file is removed and `path` keeps its previous content.
///
/// # Errors
/// The I/O errors of creating, writing, syncing or renaming, naming `path`.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), OutputError> {
    if path.is_dir() {
        return Err(OutputError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    create_parent(path)?;
    let tmp = temp_path(path, false)?;
    let err = |source| OutputError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(&tmp).map_err(err)?;
    let mut w = std::io::BufWriter::new(file);
    let written = write(&mut w).and_then(|()| w.flush());
    drop(w);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    commit(&tmp, path)
}

/// Writes `bytes` to `path` atomically ([`write_atomic`]).
///
/// # Errors
/// As [`write_atomic`].
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Replaces `path` through a writer that only takes a path (plotters' backends): `draw` is
/// given a temporary path in the same directory with the same extension; when it succeeds the
/// file is fsynced and renamed over `path`, when it fails the temporary file is removed and
/// `path` keeps its previous content.
///
/// # Errors
/// `draw`'s error, or the [`OutputError`] of creating the directory, syncing or renaming,
/// converted into `E`.
pub fn replace_via_temp<E: From<OutputError>>(
    path: &Path,
    draw: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    if path.is_dir() {
        return Err(OutputError::IsDirectory {
            path: path.to_path_buf(),
        }
        .into());
    }
    create_parent(path)?;
    let tmp = temp_path(path, true)?;
    if let Err(e) = draw(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(commit(&tmp, path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "covlab-output-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The files in `dir` (names).
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_target_is_replaced_by_a_rename_from_the_same_directory() {
        let dir = temp_dir("rename");
        let path = dir.join("r.json");
        std::fs::write(&path, "old\n").unwrap();
        let old_inode = std::fs::metadata(&path).unwrap().ino();
        let mut tmp_seen = None;
        write_atomic(&path, |w| {
            // Mid-write: the target still holds the old content, and the temporary file lies
            // beside it in the same directory.
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
            let others: Vec<String> = names(&dir).into_iter().filter(|n| n != "r.json").collect();
            assert_eq!(others.len(), 1, "{others:?}");
            assert!(others[0].starts_with(".r.json.tmp-"), "{others:?}");
            tmp_seen = Some(others[0].clone());
            w.write_all(b"new\n")
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        // A new inode: the old file was not truncated in place but replaced by the rename.
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), old_inode);
        assert!(tmp_seen.is_some());
        assert_eq!(names(&dir), vec!["r.json".to_string()]);
    }

    #[test]
    fn a_failing_write_leaves_the_old_file_and_no_temporary() {
        let dir = temp_dir("fail");
        let path = dir.join("r.json");
        std::fs::write(&path, "old\n").unwrap();
        // A serialisation that fails midway: half the document, then an error.
        let e = write_atomic(&path, |w| {
            w.write_all(b"{\"half\": ")?;
            Err(std::io::Error::other("serialiser failed"))
        })
        .unwrap_err();
        assert!(matches!(e, OutputError::Write { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        assert_eq!(names(&dir), vec!["r.json".to_string()]);
        // Same through the path-taking route (a figure whose drawing fails).
        let png = dir.join("f.png");
        std::fs::write(&png, "old png").unwrap();
        let r: Result<(), OutputError> = replace_via_temp(&png, |tmp| {
            assert_eq!(tmp.parent(), png.parent());
            assert_eq!(tmp.extension().unwrap(), "png");
            std::fs::write(tmp, "half").unwrap();
            Err(OutputError::NoFileName { path: tmp.into() })
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_to_string(&png).unwrap(), "old png");
        assert_eq!(names(&dir), vec!["f.png".to_string(), "r.json".to_string()]);
    }

    #[test]
    fn unwritable_paths_are_refused_before_anything_is_written() {
        let dir = temp_dir("check");
        let file = dir.join("afile");
        std::fs::write(&file, "x").unwrap();
        // A parent that is a file (root can write read-only directories, not under a file).
        let e = check_writable(&file.join("x.json")).unwrap_err();
        assert!(matches!(e, OutputError::CreateDir { .. }), "{e}");
        let e = check_writable(&dir).unwrap_err();
        assert!(matches!(e, OutputError::IsDirectory { .. }), "{e}");
        // A fresh nested path is fine, and the check leaves nothing behind but the directory.
        let ok = dir.join("a").join("b").join("r.json");
        check_writable(&ok).unwrap();
        assert!(!ok.exists());
        assert!(names(&dir.join("a").join("b")).is_empty());
        // The path is named once and the OS error is the source, not repeated in the message.
        let e = check_writable(&file.join("x.json")).unwrap_err();
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches("afile").count(), 1, "{chain}");
        assert_eq!(chain.matches("os error").count(), 1, "{chain}");
    }
}
