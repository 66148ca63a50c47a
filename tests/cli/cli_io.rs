//! Output paths and bad input of the binaries: an unwritable `--json`/`--figure` is refused
//! (exit 2 naming the flag) before any computation, the JSON is written before the figures,
//! valid results with round-off `S <= 0` draw their figures, and the `study` harness names
//! the path of a missing study file, a bad `--root`, a truncated or malformed shard, stale
//! shard sets, colliding or root-escaping outputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common;

use common::study;

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh directory with a regular file `afile` in it (a path under a file cannot be
/// created, even by root, who can write read-only directories).
fn dir_with_file(tag: &str) -> (PathBuf, PathBuf) {
    let d = common::tmp_dir(tag);
    let f = d.join("afile");
    std::fs::write(&f, "x").expect("file");
    (d, f)
}

/// Runs `cmd`, returning its output and wall time.
fn timed(cmd: &mut Command) -> (Output, Duration) {
    let start = Instant::now();
    let o = cmd.output().expect("runs");
    (o, start.elapsed())
}

/// The single-Gaussian mixture file (every S is 0 up to round-off, `-8.9e-16`).
fn single_gaussian(dir: &Path) -> PathBuf {
    let p = dir.join("g1.json");
    std::fs::write(
        &p,
        r#"{"weights":[1.0],"means":[[0,0]],"covariances":[[[1,0],[0,1]]]}"#,
    )
    .expect("write");
    p
}

// Checking output paths must come before the computation: the default path-kl sweep (mog40, T
// up to 1024) takes minutes, so exiting within this bound proves nothing was computed. 3 s
// rather than 1 s: process start on a loaded 2-core machine.
const BEFORE_COMPUTING: Duration = Duration::from_secs(3);

#[test]
fn unwritable_json_is_refused_before_computing_naming_the_flag() {
    let (d, file) = dir_with_file("io-json");
    for json in [
        file.join("x.json"),
        PathBuf::from("/proc/x.json"),
        d.clone(),
    ] {
        let (o, wall) = timed(
            Command::new(env!("CARGO_BIN_EXE_path-kl"))
                .arg("--json")
                .arg(&json)
                .arg("--figure")
                .arg(d.join("fig")),
        );
        assert_eq!(o.status.code(), Some(2), "{}: {}", json.display(), text(&o));
        assert!(text(&o).contains("--json"), "{}", text(&o));
        assert!(wall < BEFORE_COMPUTING, "{} took {wall:?}", json.display());
    }
    // The other binaries.
    for bin in [
        env!("CARGO_BIN_EXE_samplers"),
        env!("CARGO_BIN_EXE_guidance"),
        env!("CARGO_BIN_EXE_lanczos"),
    ] {
        let (o, wall) = timed(Command::new(bin).arg("--json").arg(file.join("x.json")));
        assert_eq!(o.status.code(), Some(2), "{bin}: {}", text(&o));
        assert!(text(&o).contains("--json"), "{bin}: {}", text(&o));
        assert!(wall < BEFORE_COMPUTING, "{bin} took {wall:?}");
    }
}

#[test]
fn unwritable_figure_still_writes_the_json_and_exits_0_with_a_warning() {
    let (d, file) = dir_with_file("io-fig");
    let json = d.join("s.json");
    let o = Command::new(env!("CARGO_BIN_EXE_samplers"))
        .args(["--data", "aniso2", "--families", "full", "--steps", "5"])
        .args(["--samples", "100", "--threads", "1", "--json"])
        .arg(&json)
        .arg("--figure")
        .arg(file.join("fig"))
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(json.is_file(), "{}", text(&o));
    assert!(
        text(&o).contains("warning") && text(&o).contains("--figure"),
        "{}",
        text(&o)
    );
}

#[test]
fn single_gaussian_path_kl_writes_json_and_both_figures() {
    let d = common::tmp_dir("io-g1");
    let g1 = single_gaussian(&d);
    let o = Command::new(env!("CARGO_BIN_EXE_path-kl"))
        .arg("--data")
        .arg(&g1)
        .args(["--steps", "8,16,32", "--json"])
        .arg(d.join("g1_out.json"))
        .arg("--figure")
        .arg(d.join("g1_fig"))
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(d.join("g1_out.json").is_file());
    for ext in ["svg", "png"] {
        let p = d.join(format!("g1_fig.{ext}"));
        assert!(p.is_file(), "{}: {}", p.display(), text(&o));
    }
    let svg = std::fs::read_to_string(d.join("g1_fig.svg")).expect("svg");
    // The points at S <= 0 by round-off are said to be left out (or the reference slope
    // anchored there said to be moved to a drawable point).
    assert!(
        svg.contains("not drawn") || svg.contains("first drawable point"),
        "no note in the caption"
    );
}

#[test]
fn duplicate_list_entries_and_directory_data_are_refused() {
    let d = common::tmp_dir("io-dup");
    let o = Command::new(env!("CARGO_BIN_EXE_samplers"))
        .args(["--data", "grid9,grid9", "--json"])
        .arg(d.join("s.json"))
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--data") && text(&o).contains("grid9"),
        "{}",
        text(&o)
    );
    let o = Command::new(env!("CARGO_BIN_EXE_path-kl"))
        .args(["--steps", "8,8", "--json"])
        .arg(d.join("p.json"))
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--steps"), "{}", text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_path-kl"))
        .arg("--data")
        .arg(&d)
        .arg("--json")
        .arg(d.join("p.json"))
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is a directory"), "{}", text(&o));
}

/// A small path-kl study writing `json` and `figure`.
fn study_text(json: &str, figure: &str) -> String {
    format!(
        r#"kind = "path-kl"
description = "a small sweep"

[params]
data = "aniso2"
families = ["beta", "full"]
steps = [4, 8, 16]
window = [4.0, 16.0]

[outputs]
json = "{json}"
figure = "{figure}"
"#
    )
}

fn study_root(tag: &str) -> PathBuf {
    let root = common::tmp_dir(tag);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("studies")).expect("dir");
    root
}

#[test]
fn study_input_errors_exit_2_naming_the_path() {
    let root = study_root("io-study-input");
    let missing = root.join("studies/nope.toml");
    let o = study(&root, &["run", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("nope.toml"), "{}", text(&o));
    let dir = root.join("studies");
    let o = study(&root, &["run", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is a directory"), "{}", text(&o));
    for bad_root in [root.join("no-such-root"), missing.clone()] {
        let o = study(&bad_root, &["list"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("--root"), "{}", text(&o));
    }
    // An output that escapes the root: refused when the file is parsed.
    let f = root.join("studies/escape.toml");
    std::fs::write(&f, study_text("../../../x.json", "figures/x")).expect("write");
    let o = study(&root, &["run", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("outputs.json"), "{}", text(&o));
    std::fs::remove_file(&f).expect("rm");
    // An unwritable output: refused before computing, naming the key and the path.
    std::fs::write(root.join("afile"), "x").expect("write");
    let f = root.join("studies/unwritable.toml");
    std::fs::write(&f, study_text("afile/x.json", "figures/x")).expect("write");
    let o = study(&root, &["run", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("outputs.json") && text(&o).contains("afile"),
        "{}",
        text(&o)
    );
    // The I/O error names the path once and the OS error once.
    assert_eq!(text(&o).matches("os error").count(), 1, "{}", text(&o));
    std::fs::remove_file(&f).expect("rm");
    // Two study files writing the same JSON: refused by list and check.
    for n in ["a", "b"] {
        std::fs::write(
            root.join(format!("studies/{n}.toml")),
            study_text("studies/results/same.json", &format!("figures/{n}")),
        )
        .expect("write");
    }
    for cmd in ["list", "check"] {
        let o = study(&root, &[cmd]);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", text(&o));
        assert!(text(&o).contains("same.json"), "{cmd}: {}", text(&o));
    }
}

#[test]
fn merge_picks_the_complete_shard_set_and_names_bad_shards() {
    let root = study_root("io-merge");
    let f = root.join("studies/pk.toml");
    let fs = f.to_str().unwrap();
    let sd = root.join("shards");
    let sds = sd.to_str().unwrap();
    // Stale 0,1-of-2 shards of an older version of the study file, then a complete
    // 0..2-of-3 set of the current one.
    let current = study_text("studies/results/pk.json", "figures/pk");
    std::fs::write(&f, current.replace("a small sweep", "an older sweep")).expect("write");
    for s in ["0/2", "1/2"] {
        let o = study(&root, &["run", fs, "--shard", s, "--shard-dir", sds]);
        assert_eq!(o.status.code(), Some(0), "{s}: {}", text(&o));
    }
    std::fs::write(&f, &current).expect("write");
    for s in ["0/3", "1/3", "2/3"] {
        let o = study(&root, &["run", fs, "--shard", s, "--shard-dir", sds]);
        assert_eq!(o.status.code(), Some(0), "{s}: {}", text(&o));
    }
    let o = study(&root, &["merge", fs, "--shard-dir", sds]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("ignoring") && text(&o).contains("pk.shard-0-of-2.json"),
        "{}",
        text(&o)
    );
    assert!(root.join("studies/results/pk.json").is_file());
    // Two complete sets of the current study file: a clear message listing the sets.
    let o = study(&root, &["run", fs, "--shard", "0/1", "--shard-dir", sds]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = study(&root, &["merge", fs, "--shard-dir", sds]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("of 3") && text(&o).contains("of 1"),
        "{}",
        text(&o)
    );
    for n in ["0-of-1", "0-of-2", "1-of-2"] {
        std::fs::remove_file(sd.join(format!("pk.shard-{n}.json"))).expect("rm");
    }
    // A "NaN" string where a number belongs: exit 2 naming the shard.
    let p1 = sd.join("pk.shard-1-of-3.json");
    let good = std::fs::read_to_string(&p1).expect("read");
    let mut v: serde_json::Value = serde_json::from_str(&good).expect("json");
    fn poison(v: &mut serde_json::Value) -> bool {
        match v {
            serde_json::Value::Number(_) => {
                *v = serde_json::Value::from("NaN");
                true
            }
            serde_json::Value::Array(a) => a.iter_mut().any(poison),
            serde_json::Value::Object(m) => m.values_mut().any(poison),
            _ => false,
        }
    }
    assert!(poison(&mut v["cells"][0]["value"]));
    std::fs::write(&p1, v.to_string()).expect("write");
    let o = study(&root, &["merge", fs, "--shard-dir", sds]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pk.shard-1-of-3.json"), "{}", text(&o));
    // A truncated shard: exit 2 naming it.
    std::fs::write(&p1, &good[..good.len() / 2]).expect("write");
    let o = study(&root, &["merge", fs, "--shard-dir", sds]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pk.shard-1-of-3.json"), "{}", text(&o));
}

/// No two committed study files write the same output.
#[test]
fn committed_studies_do_not_collide() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files: Vec<covlab::study::StudyFile> = covlab::study::file::discover(root)
        .expect("studies/")
        .iter()
        .filter_map(|p| {
            covlab::study::StudyFile::load(p, &covlab::experiments::registry::REGISTRY).ok()
        })
        .collect();
    assert!(files.len() > 10, "{} study files", files.len());
    let clashes = covlab::study::file::collisions(&files);
    assert!(clashes.is_empty(), "{clashes:?}");
}
