//! Study files: every committed output owned by exactly one study, errors that name the key,
//! sharded-then-merged = unsharded bit for bit, and the drift check checked.

use std::path::Path;
#[cfg(feature = "candle")]
use std::path::PathBuf;

use covlab::study::runner::{compute, compute_shard, merge};
use covlab::study::{compare, Quiet, Shard, ShardFile, StudyError, StudyFile};
use serde_json::Value;

use crate::common;

#[cfg(feature = "candle")]
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes `text` as `<root>/studies/<name>.toml` and parses it.
fn study(root: &Path, name: &str, text: &str) -> Result<StudyFile, StudyError> {
    let dir = root.join("studies");
    std::fs::create_dir_all(&dir).expect("studies dir");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write study file");
    StudyFile::load(&path, &covlab::experiments::registry::REGISTRY)
}

#[cfg(feature = "candle")]
#[test]
fn every_committed_output_is_owned_by_exactly_one_study() {
    let root = repo();
    let files = covlab::study::file::discover(&root).expect("studies/");
    assert!(files.len() >= 10, "{} study files", files.len());
    let mut owners: std::collections::BTreeMap<PathBuf, Vec<String>> = Default::default();
    for f in &files {
        let s = StudyFile::load(f, &covlab::experiments::registry::REGISTRY)
            .unwrap_or_else(|e| panic!("{e}"));
        // A study file's name matches its results JSON.
        assert_eq!(
            s.outputs.json,
            PathBuf::from(format!("studies/results/{}.json", s.name)),
            "{}",
            f.display()
        );
        for p in s.output_paths() {
            owners.entry(p).or_default().push(s.name.clone());
        }
    }
    let mut committed = Vec::new();
    for dir in ["figures", "studies/results"] {
        for e in std::fs::read_dir(root.join(dir)).expect(dir) {
            let p = e.expect("entry").path();
            if p.extension()
                .is_some_and(|x| x == "png" || x == "json" || x == "svg")
            {
                committed.push(p);
            }
        }
    }
    assert!(
        committed.len() >= 30,
        "{} committed outputs",
        committed.len()
    );
    for p in &committed {
        let who = owners.get(p).cloned().unwrap_or_default();
        assert_eq!(who.len(), 1, "{} is the output of {who:?}", p.display());
    }
    // No two studies declare the same output.
    for (p, who) in &owners {
        assert_eq!(who.len(), 1, "{} declared by {who:?}", p.display());
    }
}

/// A valid small path-kl study file with `params` in its `[params]` table.
fn path_kl_file(params: &str) -> String {
    format!(
        "kind = \"path-kl\"\ndescription = \"test\"\n\n[params]\n{params}\n\n[outputs]\njson = \"studies/results/x.json\"\nfigure = \"figures/x\"\n"
    )
}

#[test]
fn study_file_errors_name_the_file_and_key() {
    let root = common::tmp_dir("study-errors");
    let cases: [(&str, String, &[&str]); 8] = [
        ("typo", path_kl_file("stepz = [8, 16]"), &["stepz", "steps"]),
        (
            "type",
            path_kl_file("steps = \"8,16\""),
            &["params.steps", "sequence"],
        ),
        (
            "preset",
            path_kl_file("data = \"mog41\""),
            &["params.data", "mog41"],
        ),
        (
            "zero",
            path_kl_file("steps = [0, 8]"),
            &["params.steps", ">= 1"],
        ),
        (
            "kind",
            "kind = \"path_kl\"\ndescription = \"x\"\n[outputs]\njson = \"a.json\"\n".into(),
            &["kind", "path_kl", "path-kl"],
        ),
        (
            "top",
            path_kl_file("data = \"mog40\"").replace("description", "descripton"),
            &["descripton"],
        ),
        (
            "check",
            path_kl_file("data = \"mog40\"") + "\n[check]\nrel = -1.0\n",
            &["check.rel"],
        ),
        (
            "checkkey",
            path_kl_file("data = \"mog40\"") + "\n[check]\nquik = true\n",
            &["quik", "quick"],
        ),
    ];
    for (name, text, needles) in cases {
        let e = study(&root, name, &text).expect_err(name);
        let msg = e.to_string();
        assert!(e.is_bad_input(), "{name}: {msg}");
        assert!(
            msg.contains(&format!("{name}.toml")),
            "{name}: no file in `{msg}`"
        );
        for n in needles {
            assert!(msg.contains(n), "{name}: `{n}` not in `{msg}`");
        }
    }
    // The same file without the mistake parses.
    study(&root, "good", &path_kl_file("steps = [8, 16]")).expect("valid file");
    // Errors are Send + Sync (they cross threads in the runner).
    fn send_sync<T: Send + Sync>() {}
    send_sync::<StudyError>();
}

/// Removes the keys that are timings or thread counts (and the provenance) at any depth.
fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in [
                "wall_time_s",
                "wall_s",
                "sampling_wall_s",
                "path_kl_wall_s",
                "mmd_wall_s",
                "wall_s_per_sample",
                "its_per_s",
                "threads",
                "provenance",
            ] {
                m.remove(k);
            }
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

/// Unsharded vs `n` shards (run with alternating 1 and 2 threads, written to JSON text and
/// read back as a merge does): the results JSON and the SVG figures must be identical.
fn assert_shards_merge_exactly(root: &Path, file: &StudyFile, n: usize) {
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    let whole = one
        .install(|| compute(file, &Quiet))
        .expect("unsharded run");
    let shards: Vec<ShardFile> = (0..n)
        .map(|i| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1 + i % 2)
                .build()
                .expect("pool");
            let s = pool
                .install(|| compute_shard(file, Shard { index: i, count: n }, &Quiet))
                .expect("shard");
            let text = serde_json::to_string_pretty(&s).expect("shard JSON");
            serde_json::from_str(&text).expect("shard read back")
        })
        .collect();
    assert!(shards.iter().all(|s| !s.cells.is_empty()));
    let merged = merge(file, &shards).expect("merge");
    let (mut a, mut b) = (whole.doc(), merged.doc());
    strip(&mut a);
    strip(&mut b);
    assert!(a == b, "merged differs from unsharded:\n{a}\n{b}");
    // Bit for bit, not only within a tolerance: a zero-tolerance drift check finds nothing.
    let exact = covlab::study::CheckSpec {
        rel: 0.0,
        ..Default::default()
    };
    assert!(compare(&a, &b, &exact).is_empty());
    // The figures drawn from the merged cells are the same files.
    for (tag, out) in [("whole", &whole), ("merged", &merged)] {
        covlab::study::figure::save_all(&root.join(tag).join("fig"), &out.assembled.figures)
            .expect("figures");
    }
    for (suffix, _) in &whole.assembled.figures {
        let svg = |tag: &str| {
            std::fs::read(root.join(tag).join(format!("fig{suffix}.svg"))).expect("svg written")
        };
        assert!(svg("whole") == svg("merged"), "figure{suffix} differs");
    }
    // A shard from another version of the study file is refused.
    let mut other = shards.clone();
    other[0].study_file_sha256 = "0".repeat(64);
    assert!(matches!(merge(file, &other), Err(StudyError::Merge(_))));
    // A missing shard is refused.
    assert!(matches!(
        merge(file, &shards[1..]),
        Err(StudyError::Merge(_))
    ));
}

#[test]
fn sharded_then_merged_equals_unsharded_path_kl() {
    let root = common::tmp_dir("shard-path-kl");
    // Sharding by T: each T's sums come from the same per-time values whatever other T run.
    let file = study(
        &root,
        "pk",
        &path_kl_file(
            "data = \"aniso2\"\nfamilies = [\"beta\", \"beta-tilde\", \"diag\", \"full\", \"hutchinson-2\"]\nsteps = [4, 8, 16, 32, 64]\nwindow = [8.0, 64.0]\nhutchinson-points = 200",
        ),
    )
    .expect("study");
    assert_eq!(file.study.cells().expect("cells").len(), 5);
    assert_shards_merge_exactly(&root, &file, 3);
}

#[test]
fn sharded_then_merged_equals_unsharded_samplers() {
    let root = common::tmp_dir("shard-samplers");
    let text = "kind = \"samplers\"\ndescription = \"test\"\n\n[params]\ndata = [\"aniso2\", \"grid9\"]\nfamilies = [\"beta\", \"analytic\", \"lgs-2\", \"hutchinson-2\"]\nsteps = [5, 10]\nsamples = 200\nanalytic-samples = 200\n\n[outputs]\njson = \"studies/results/s.json\"\nfigure = \"figures/s\"\n";
    let file = study(&root, "s", text).expect("study");
    // Two data sets x (floor + 2 T x 4 families).
    assert_eq!(file.study.cells().expect("cells").len(), 18);
    assert_shards_merge_exactly(&root, &file, 4);
}

/// A small `learned-eval` study on the committed grid9 checkpoints (absolute path: the study
/// root is a temporary directory).
#[cfg(feature = "candle")]
fn learned_eval_file(params: &str) -> String {
    let models = repo().join("studies/models");
    format!(
        "kind = \"learned-eval\"\ndescription = \"test\"\n\n[params]\ndata = \"grid9\"\nmodels = {:?}\n{params}\n\n[outputs]\njson = \"studies/results/le.json\"\nfigure = \"figures/le\"\n",
        models.display().to_string()
    )
}

#[cfg(feature = "candle")]
#[test]
fn sharded_then_merged_equals_unsharded_learned_eval() {
    let root = common::tmp_dir("shard-learned");
    // The learned score with a fixed family, a head and a Jacobian chain; MMD at T = 4 with
    // both kernels: the path-KL cell, the DDIM path-KL cell (ocm has a DDIM covariance), the
    // floor and 2 x 2 chains.
    let file = study(
        &root,
        "le",
        &learned_eval_file(
            "score = \"learned\"\nmethods = [\"beta\", \"ocm\", \"full-jt\"]\nsteps = [4, 8]\nmmd-steps = [4]\nsamples = 100\nqmc-nodes = 64",
        ),
    )
    .expect("study");
    assert_eq!(file.study.cells().expect("cells").len(), 7);
    // The figures it declares are the ones it draws (cov error: beta and ocm are diagonal).
    let names: Vec<String> = file.figure_names().into_iter().map(|f| f.suffix).collect();
    assert_eq!(
        names,
        [
            "_cov_error_grid9_learned",
            "_path_kl_grid9_learned",
            "_mmd_grid9_learned"
        ]
    );
    assert_shards_merge_exactly(&root, &file, 3);
    // Without MMD rows: one cell and no MMD figure.
    let file = study(
        &root,
        "le2",
        &learned_eval_file("methods = [\"full\"]\nsteps = [4]\nmmd-steps = []\nqmc-nodes = 64"),
    )
    .expect("study");
    assert_eq!(file.study.cells().expect("cells").len(), 1);
    let names: Vec<String> = file.figure_names().into_iter().map(|f| f.suffix).collect();
    assert_eq!(names, ["_path_kl_grid9"]);
}

#[cfg(feature = "candle")]
#[test]
fn learned_study_files_name_the_key() {
    let root = common::tmp_dir("learned-errors");
    let train = |params: &str| {
        format!(
            "kind = \"learned-train\"\ndescription = \"x\"\n\n[params]\n{params}\n\n[outputs]\njson = \"studies/results/lt.json\"\n"
        )
    };
    let cases: [(&str, String, &[&str]); 7] = [
        (
            "method",
            learned_eval_file("methods = [\"beta\", \"magic\"]"),
            &["params.methods", "unknown method `magic`"],
        ),
        (
            "jacobian",
            learned_eval_file("methods = [\"full-jt\"]"),
            &["params.methods", "needs a learned score"],
        ),
        (
            "mmdsteps",
            learned_eval_file("steps = [5]\nmmd-steps = [7]"),
            &["params.mmd-steps", "T = 7"],
        ),
        (
            "nodata",
            learned_eval_file("").replace("data = \"grid9\"\n", ""),
            &["params.data", "unknown data set ``"],
        ),
        (
            "typo",
            learned_eval_file("mmd_steps = [5]"),
            &["mmd_steps", "mmd-steps"],
        ),
        (
            "model",
            train("data = \"grid9\"\nmodels = [\"score\", \"magic\"]"),
            &["params.models", "unknown model `magic`"],
        ),
        (
            "probes",
            train("data = \"grid9\"\nprobes = 0"),
            &["params.probes", "`M`"],
        ),
    ];
    for (name, text, needles) in cases {
        let e = study(&root, name, &text).expect_err(name);
        let msg = e.to_string();
        assert!(e.is_bad_input(), "{name}: {msg}");
        assert!(msg.contains(&format!("{name}.toml")), "{name}: {msg}");
        for n in needles {
            assert!(msg.contains(n), "{name}: `{n}` not in `{msg}`");
        }
    }
}

#[cfg(feature = "candle")]
#[test]
fn learned_train_writes_checkpoints_under_the_root_reproducibly() {
    let root = common::tmp_dir("learned-train");
    let text = "kind = \"learned-train\"\ndescription = \"tiny\"\n\n[params]\ndata = \"grid9\"\nmodels = [\"score\", \"ocm\", \"sn\"]\niterations = 30\nhead-iterations = 20\nbatch = 32\nhidden = 8\nlayers = 1\nout = \"studies/models\"\n\n[outputs]\njson = \"studies/results/lt.json\"\n";
    let file = study(&root, "lt", text).expect("study");
    assert_eq!(file.study.cells().expect("cells").len(), 1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    let first = pool.install(|| compute(&file, &Quiet)).expect("train");
    covlab::study::write_outputs(&file, &first).expect("outputs");
    // The checkpoints are side outputs under the study root; the log names them relative to it.
    let dir = root.join("studies/models/grid9");
    for f in ["score", "ocm-exact", "ocm-learned", "sn"] {
        assert!(dir.join(format!("{f}.safetensors")).is_file(), "{f}");
    }
    let doc = first.doc();
    let runs = doc["runs"].as_array().expect("runs");
    let paths: Vec<&str> = runs.iter().filter_map(|r| r["path"].as_str()).collect();
    assert_eq!(
        paths,
        [
            "studies/models/grid9/score.safetensors",
            "studies/models/grid9/ocm-exact.safetensors",
            "studies/models/grid9/ocm-learned.safetensors",
            "studies/models/grid9/sn.safetensors"
        ]
    );
    assert!(runs.iter().all(|r| r["final_loss"].is_number()));
    assert!(root.join("studies/results/lt.json").is_file());
    // Seeded: a second run on the same thread count repeats every loss bit for bit.
    let second = pool
        .install(|| compute(&file, &Quiet))
        .expect("train again");
    let (mut a, mut b) = (doc, second.doc());
    strip(&mut a);
    strip(&mut b);
    assert!(a == b, "training is not reproducible:\n{a}\n{b}");
}
