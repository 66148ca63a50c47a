//! The `study` binary end to end on a small study in a temporary root: run, list, check (which
//! must fail when a committed number is perturbed beyond its tolerance and when the study file
//! changed), shards merged through files, bad study files -> exit code 2 naming the key.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::common;

use common::study;

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const STUDY: &str = r#"kind = "path-kl"
description = "a small sweep"

[params]
data = "aniso2"
families = ["beta", "full"]
steps = [4, 8, 16, 32]
window = [4.0, 32.0]

[outputs]
json = "studies/results/pk.json"
figure = "figures/pk"

[check]
quick = true
rel = 1e-9
ignore = ["wall_time_s", "threads"]
"#;

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("JSON")
}

fn strip(v: &mut Value) {
    if let Value::Object(m) = v {
        for k in ["wall_time_s", "threads", "provenance"] {
            m.remove(k);
        }
    }
}

#[test]
fn run_list_check_drift_shards() {
    let root = common::tmp_dir("study-cli");
    std::fs::create_dir_all(root.join("studies")).expect("dir");
    let file = root.join("studies/pk.toml");
    std::fs::write(&file, STUDY).expect("write");
    let f = file.to_str().expect("utf8");

    let o = study(&root, &["run", f, "--threads", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let json = root.join("studies/results/pk.json");
    let committed = read(&json);
    assert!(root.join("figures/pk.png").exists() && root.join("figures/pk.svg").exists());
    // Provenance: version, commit (or "unknown" outside git), the file's hash, seeds, threads,
    // device, wall time.
    let p = &committed["provenance"];
    for key in [
        "covlab_version",
        "git_commit",
        "study_file_sha256",
        "seeds",
        "threads",
        "device",
        "wall_time_s",
    ] {
        assert!(!p[key].is_null(), "provenance lacks {key}: {p}");
    }
    assert_eq!(p["threads"], serde_json::json!([1]));
    assert_eq!(p["study_file_sha256"].as_str().map(str::len), Some(64));

    let o = study(&root, &["list"]);
    assert!(
        o.status.success() && text(&o).contains("current"),
        "{}",
        text(&o)
    );

    // A fresh run (2 threads) agrees with the committed numbers.
    let o = study(&root, &["check", "--quick", "--threads", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no drift"), "{}", text(&o));

    // Perturb one committed number beyond its tolerance: check must fail and name the key.
    let mut moved = committed.clone();
    let s = moved["results"][1]["S"].as_f64().expect("S");
    moved["results"][1]["S"] = serde_json::json!(s * (1.0 + 1e-6));
    std::fs::write(&json, serde_json::to_string_pretty(&moved).expect("text")).expect("write");
    let o = study(&root, &["check", "--quick"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("results.1.S") && text(&o).contains("DRIFT"),
        "{}",
        text(&o)
    );
    // Within the tolerance (1e-12 relative < 1e-9): no drift.
    moved["results"][1]["S"] = serde_json::json!(s * (1.0 + 1e-12));
    std::fs::write(&json, serde_json::to_string_pretty(&moved).expect("text")).expect("write");
    let o = study(&root, &["check", "--quick"]);
    assert!(o.status.success(), "{}", text(&o));
    // A changed study file makes the committed result stale: check fails.
    std::fs::write(&file, format!("{STUDY}# edited\n")).expect("write");
    let o = study(&root, &["check", f]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("STALE"), "{}", text(&o));
    std::fs::write(&file, STUDY).expect("write");

    // Shards through files, one per thread count, then a merge: the same results as the
    // unsharded run, bit for bit.
    let shards = root.join("shards");
    let sd = shards.to_str().expect("utf8");
    for (i, threads) in [("0/2", "1"), ("1/2", "2")] {
        let o = study(
            &root,
            &[
                "run",
                f,
                "--shard",
                i,
                "--shard-dir",
                sd,
                "--threads",
                threads,
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    assert!(shards.join("pk.shard-0-of-2.json").exists());
    let o = study(&root, &["merge", f, "--shard-dir", sd]);
    assert!(o.status.success(), "{}", text(&o));
    let mut merged = read(&json);
    assert_eq!(merged["provenance"]["shards"], 2);
    let mut want = committed;
    strip(&mut merged);
    strip(&mut want);
    assert!(merged == want, "merged:\n{merged}\nunsharded:\n{want}");

    // Bad input: exit 2, naming the file and the key.
    std::fs::write(&file, STUDY.replace("steps", "stepz")).expect("write");
    let o = study(&root, &["run", f]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("stepz") && text(&o).contains("pk.toml"),
        "{}",
        text(&o)
    );
    let o = study(&root, &["run", f, "--shard", "2/2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--shard"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&root);
}
