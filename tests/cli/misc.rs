//! The `path-kl` binary: JSON contract, figure output, and bad input -> exit code 2
//! with the offending field named.

use std::path::PathBuf;
use std::process::Command;

use crate::common;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_path-kl"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("covlab-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn json_contract_and_figure() {
    let d = tmp("ok");
    let json = d.join("out.json");
    let fig = d.join("fig");
    let out = bin()
        .args([
            "--data",
            "aniso2",
            "--families",
            "beta,diag,full",
            "--steps",
            "4,8,16",
            "--window",
            "4,16",
            "--threads",
            "1",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--figure")
        .arg(&fig)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("valid json");
    // The key names are an interface (issue: path-kl binary).
    assert_eq!(v["data"], "aniso2");
    assert_eq!(v["schedule"], "vp-linear");
    assert!(v["terminal_kl"].as_f64().expect("number") > 0.0);
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 9);
    for r in results {
        assert!(r["family"].is_string() && r["T"].is_u64() && r["S"].is_f64() && r["err"].is_f64());
    }
    let slopes = v["slopes"].as_array().expect("slopes");
    assert_eq!(slopes.len(), 3);
    for s in slopes {
        assert!(s["family"].is_string() && s["slope"].is_f64());
        assert_eq!(s["window"].as_array().expect("window").len(), 2);
        assert_eq!(s["ci95"].as_array().expect("ci95").len(), 2);
    }
    // Offsets are KL divergences: S_beta >= S_diag >= S_full - err at every T.
    for t in [4, 8, 16] {
        let s = |f: &str| {
            results
                .iter()
                .find(|r| r["family"] == f && r["T"] == t)
                .expect("row")["S"]
                .as_f64()
                .expect("S")
        };
        assert!(s("diag") >= s("full") && s("beta") >= s("full"), "T = {t}");
    }
    assert!(fig.with_extension("svg").exists() && fig.with_extension("png").exists());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("terminal KL") && stdout.contains("slopes"),
        "{stdout}"
    );
}

/// Runs the binary with `args` and asserts exit code 2 and that stderr mentions `needle`.
fn rejects(args: &[&str], needle: &str) {
    let d = tmp("bad");
    let out = bin()
        .args(args)
        .arg("--json")
        .arg(d.join("x.json"))
        .arg("--figure")
        .arg(d.join("x"))
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "args {args:?}: stderr {err}");
    assert!(
        err.contains(needle),
        "args {args:?}: stderr `{err}` lacks `{needle}`"
    );
    assert!(!err.contains("panicked"), "args {args:?} panicked: {err}");
}

#[test]
fn bad_input_exits_2_naming_the_field() {
    rejects(&["--data", "nosuchpreset"], "data");
    rejects(&["--families", "beta,fulll"], "fulll");
    rejects(&["--schedule", "linear"], "linear");
    rejects(&["--steps", "0,8"], "steps");
    rejects(&["--steps", "8,x"], "steps");
    rejects(&["--early-stop", "NaN"], "early-stop");
    rejects(&["--early-stop=-0.1"], "early-stop");
    rejects(&["--route", "c"], "route");
    rejects(&["--beta-tilde-remedy", "none"], "remedy");

    let d = tmp("files");
    let cases = [
        (
            "weights.json",
            r#"{"weights": [0.5, 0.6], "means": [[0,0],[1,1]], "covariances": [[[1,0],[0,1]],[[1,0],[0,1]]]}"#,
            "weights",
        ),
        (
            "nonspd.json",
            r#"{"weights": [1.0], "means": [[0,0]], "covariances": [[[1,2],[2,1]]]}"#,
            "covariances[0]",
        ),
        (
            "asym.json",
            r#"{"weights": [1.0], "means": [[0,0]], "covariances": [[[1,0.5],[0.4,1]]]}"#,
            "symmetric",
        ),
        (
            "dim.json",
            r#"{"weights": [1.0], "means": [[0,0,0]], "covariances": [[[1,0],[0,1]]]}"#,
            "covariances[0]",
        ),
        (
            "malformed.json",
            r#"{"weights": [1.0], "means": [[0,0]"#,
            "malformed.json",
        ),
        (
            "missing.json",
            r#"{"weights": [1.0], "means": [[0,0]]}"#,
            "covariances",
        ),
        (
            "nan.json",
            r#"{"weights": [1.0], "means": [[0,null]], "covariances": [[[1,0],[0,1]]]}"#,
            "nan.json",
        ),
    ];
    for (name, text, needle) in cases {
        let p = d.join(name);
        std::fs::write(&p, text).expect("write");
        rejects(
            &[
                "--data",
                p.to_str().expect("utf8"),
                "--steps",
                "2,4",
                "--families",
                "full",
            ],
            needle,
        );
    }
}

#[test]
fn hutchinson_family_rows_and_bad_m() {
    let mut cmd = bin();
    cmd.args([
        "--data",
        "aniso2",
        "--families",
        "full,hutchinson-2",
        "--steps",
        "16,32",
        "--window",
        "16,32",
        "--hutchinson-points",
        "200",
        "--threads",
        "1",
    ]);
    let v = common::run_for_json(cmd, &tmp("hutch"));
    let rows = v["results"].as_array().unwrap();
    let s = |fam: &str, t: u64| {
        rows.iter()
            .find(|r| r["family"] == fam && r["T"] == t)
            .and_then(|r| r["S"].as_f64())
            .unwrap()
    };
    // hutchinson-M = S_diag + a non-negative excess (diag is added to the sweep for it).
    for t in [16, 32] {
        assert!(s("hutchinson-2", t) >= s("diag", t));
    }
    rejects(&["--families", "hutchinson-0"], "hutchinson-0");
}

#[test]
fn per_step_json_and_figure() {
    // `--per-step`: a `steps` row per family, T and step, whose terms add up to S and whose
    // parts add up to the term; the steps figure is written beside the main one.
    let d = tmp("per-step");
    let json = d.join("out.json");
    let fig = d.join("fig");
    let out = bin()
        .args([
            "--data",
            "aniso2",
            "--families",
            "beta,full",
            "--steps",
            "4,8",
            "--per-step",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--figure")
        .arg(&fig)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("valid");
    let steps = v["steps"].as_array().expect("steps key");
    assert_eq!(steps.len(), 2 * (4 + 8));
    for fam in ["beta", "full"] {
        for t in [4u64, 8] {
            let rows: Vec<_> = steps
                .iter()
                .filter(|r| r["family"] == fam && r["T"] == t)
                .collect();
            assert_eq!(rows.len() as u64, t);
            let f = |r: &serde_json::Value, k: &str| r[k].as_f64().expect(k);
            let sum: f64 = rows.iter().map(|r| f(r, "term")).sum();
            let s = v["results"]
                .as_array()
                .expect("results")
                .iter()
                .find(|r| r["family"] == fam && r["T"] == t)
                .expect("row")["S"]
                .as_f64()
                .expect("S");
            // T + 3 O(1) parts regrouped: a few ulps of O(10).
            assert!((sum - s).abs() < 1e-12, "{fam} T = {t}: {sum} vs {s}");
            for (k, r) in rows.iter().enumerate() {
                assert_eq!(r["i"].as_u64(), Some(k as u64 + 1));
                assert!(f(r, "s") < f(r, "t") && f(r, "err") >= 0.0);
                assert!((f(r, "full") + f(r, "offset") - f(r, "term")).abs() < 1e-13);
            }
        }
    }
    let steps_fig = d.join("fig_steps");
    assert!(steps_fig.with_extension("svg").exists() && steps_fig.with_extension("png").exists());
}

#[test]
fn local_error_binary_end_to_end() {
    // A single Gaussian on a coarse lattice: the binary's table, JSON keys and figures; the
    // densities of diag and full are zero there (exact for diagonal Gaussian data) within
    // their error estimates, and the predicted K of beta agrees with the measured sums to 1 %
    // (the table's verdict).
    let d = tmp("local-error");
    let data = d.join("gauss.json");
    std::fs::write(
        &data,
        r#"{"weights":[1.0],"means":[[0.5,-1.0]],"covariances":[[[0.3,0],[0,2.0]]]}"#,
    )
    .expect("write");
    let json = d.join("le.json");
    let fig = d.join("le");
    let out = Command::new(env!("CARGO_BIN_EXE_local-error"))
        .arg("--data")
        .arg(&data)
        .args([
            "--schedules",
            "vp-linear",
            "--families",
            "beta,diag,full",
            "--h-frac",
            "0.35",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--figure")
        .arg(&fig)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("agree (1 %)"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("valid");
    let sched = &v["schedules"][0];
    assert_eq!(sched["schedule"], "vp-linear");
    for dens in sched["densities"].as_array().expect("densities") {
        if dens["family"] != "beta" {
            let g = dens["g"]["value"].as_f64().expect("g");
            let e = dens["g"]["err"].as_f64().expect("err");
            assert!(g.abs() <= e + 1e-9, "{dens}");
        }
    }
    let beta = &sched["constants"][0];
    assert_eq!(beta["family"], "beta");
    let k = beta["k"]["value"].as_f64().expect("K");
    let m = beta["extrapolated"]["value"].as_f64().expect("measured");
    assert!((k - m).abs() <= 0.01 * k, "K {k} vs measured {m}");
    for suffix in ["_vp-linear", "_log_snr"] {
        let f = d.join(format!("le{suffix}"));
        assert!(f.with_extension("png").exists(), "{suffix}");
    }
}
