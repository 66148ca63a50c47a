//! The Lanczos error stays under its rigorous a-priori bound at large `k` (the issue's
//! D = 200, kappa = 100 case failed at k = 73 with nalgebra's `SymmetricEigen` on `T_k`), and a
//! bound that is exceeded makes the study fail, naming the case: through `assemble`
//! (`failed_checks`) and through `study merge` (exit code 1).

use std::path::Path;
use std::process::Command;

use covlab::experiments::lanczos::LanczosStudy;
use covlab::study::{run_all, Observer, RunInfo, StudyKind};
use serde_json::Value;

struct Quiet;
impl Observer for Quiet {}

/// The rounding allowance of the study's bound check: `FLOOR · max(1, sqrt(lmax))` with
/// `FLOOR = 1e-13` and `lmax = 1` for the synthetic spectra (the bound holds in exact
/// arithmetic; the f64 error cannot go below ~1e-15 · D here).
const SLACK: f64 = 1e-13;

/// The synthetic part of the `lanczos` binary's study: `--dims`, `--kappas`, `--kmax 80`,
/// `--data ""`, `--timing-dim 0`, `--seed seed`.
fn study(seed: u64, dims: Vec<usize>, kappas: Vec<f64>) -> LanczosStudy {
    LanczosStudy {
        seed,
        dims,
        kappas,
        kmax: 80,
        data: vec![],
        timing_dim: 0,
        timing_k: 20,
    }
}

/// Every `(case, k, error, bound)` with `error > bound + SLACK`, `k` in `ks`.
fn violations(doc: &Value, ks: std::ops::RangeInclusive<usize>) -> Vec<(String, usize, f64, f64)> {
    let mut out = Vec::new();
    for c in doc["cases"].as_array().expect("cases") {
        let name = c["name"].as_str().expect("name").to_string();
        let k = c["k"].as_array().expect("k");
        let e = c["error"].as_array().expect("error");
        let b = c["bound"].as_array().expect("bound");
        for i in 0..k.len() {
            let kk = k[i].as_u64().expect("k") as usize;
            let (ei, bi) = (e[i].as_f64().expect("error"), b[i].as_f64().expect("bound"));
            if ks.contains(&kk) && (ei.is_nan() || ei > bi + SLACK) {
                out.push((name.clone(), kk, ei, bi));
            }
        }
    }
    out
}

#[test]
fn issue_case_d200_kappa100_k61_to_80_under_the_bound() {
    // `lanczos --dims 200 --kappas 100 --kmax 80 --data "" --timing-dim 0` (seed 0): on 385ada0
    // the geometric case had error 5.7e-4 > bound 9.6e-6 at k = 73.
    let (a, _) = run_all(&study(0, vec![200], vec![100.0]), &Quiet).expect("runs");
    let cases = a.doc["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 2, "geometric and uniform");
    for c in cases {
        assert_eq!(c["k"].as_array().expect("k").len(), 80);
    }
    let v = violations(&a.doc, 61..=80);
    assert!(v.is_empty(), "error above the bound: {v:?}");
    let v = violations(&a.doc, 1..=80);
    assert!(v.is_empty(), "error above the bound: {v:?}");
    assert!(a.failed_checks().is_empty(), "{:?}", a.failed_checks());
}

#[test]
fn seed_sweep_under_the_bound() {
    // The issue's sweep (D = 100/200, kappa = 10/100/1000, kmax 80) hit 17 of 150 cases over 25
    // seeds; a few seeds here.
    for seed in 1..=4 {
        let (a, _) = run_all(
            &study(seed, vec![100, 200], vec![10.0, 100.0, 1000.0]),
            &Quiet,
        )
        .expect("runs");
        let v = violations(&a.doc, 1..=80);
        assert!(v.is_empty(), "seed {seed}: error above the bound: {v:?}");
        assert!(a.failed_checks().is_empty());
    }
}

/// Multiplies the `error` array of the first cell that has one by `factor`.
fn inflate_first_error(cells: &mut [Value], factor: f64) -> String {
    for c in cells.iter_mut() {
        if let Some(case) = c.get_mut("case") {
            let name = case["name"].as_str().expect("name").to_string();
            for e in case["error"].as_array_mut().expect("error") {
                *e = Value::from(e.as_f64().expect("f64") * factor);
            }
            return name;
        }
    }
    panic!("no case cell");
}

#[test]
fn exceeded_bound_is_a_failed_check_naming_the_case() {
    let s = study(0, vec![30], vec![10.0]);
    let n = s.cells().expect("cells").len();
    let all: Vec<usize> = (0..n).collect();
    let mut cells = s.run_cells(&all, &Quiet).expect("runs");
    let info = RunInfo {
        threads: 1,
        wall_time_s: 0.0,
    };
    assert!(s
        .assemble(&cells, &info)
        .expect("assembles")
        .failed_checks()
        .is_empty());
    // An error 1e3 times the measured one exceeds the bound at k = 1: there the error is
    // O(0.1 ||z||) (one step cannot resolve a spectrum on [0.1, 1]) and the bound 2 E_0 =
    // sqrt(1) - sqrt(0.1) = 0.68.
    let name = inflate_first_error(&mut cells, 1e3);
    let a = s.assemble(&cells, &info).expect("assembles");
    let failed = a.failed_checks();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains(&name) && failed[0].contains("k = "),
        "{failed:?}"
    );
    assert!(a.table.contains("BOUND CHECK FAILED"), "{}", a.table);
}

#[test]
fn study_merge_exits_1_on_an_exceeded_bound() {
    let root = std::env::temp_dir().join(format!("covlab-lanczos-bound-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("studies")).expect("dir");
    let file = root.join("studies").join("lz.toml");
    std::fs::write(
        &file,
        r#"kind = "lanczos"
description = "small"

[params]
dims = [30]
kappas = [10.0]
kmax = 12
data = []
timing-dim = 0

[outputs]
json = "studies/results/lz.json"
figure = "figures/lz"
"#,
    )
    .expect("write");
    let study = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_study"))
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .expect("runs")
    };
    let f = file.to_str().expect("utf8");
    let shards = root.join("shards");
    let sd = shards.to_str().expect("utf8");
    let o = study(&["run", f, "--shard", "0/1", "--shard-dir", sd]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = study(&["merge", f, "--shard-dir", sd]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Inflate one case's errors in the shard: the merge must fail, naming the case.
    let shard = find_shard(&shards);
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&shard).expect("read")).expect("json");
    let mut values: Vec<Value> = doc["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| c["value"].clone())
        .collect();
    let name = inflate_first_error(&mut values, 1e3);
    for (c, v) in doc["cells"]
        .as_array_mut()
        .expect("cells")
        .iter_mut()
        .zip(values)
    {
        c["value"] = v;
    }
    std::fs::write(&shard, doc.to_string()).expect("write");
    let o = study(&["merge", f, "--shard-dir", sd]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("FAILED CHECK") && err.contains(&name), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}

fn find_shard(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .expect("shard dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("a shard file")
}
