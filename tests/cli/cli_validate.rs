//! The `validate` binary (feature `candle`): a small case passes, a deliberately wrong
//! covariance fails with exit code 1 (the check itself is checked), bad input exits 2; and the
//! `bench-gpu` binary's report.
#![cfg(feature = "candle")]

use std::process::Command;

use crate::common;

fn run(extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let d = std::env::temp_dir().join(format!(
        "covlab-cli-validate-{}-{}",
        std::process::id(),
        extra.len()
    ));
    std::fs::create_dir_all(&d).unwrap();
    let json = d.join("v.json");
    let out = Command::new(env!("CARGO_BIN_EXE_validate"))
        .args(["--data", "digits8", "--batch", "4", "--steps", "6"])
        .args(["--samples", "100", "--ce-samples", "4000"])
        .args(extra)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let v = serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_else(|_| "null".into()))
        .unwrap();
    (out.status.code(), v)
}

#[test]
fn small_case_passes_and_a_wrong_covariance_fails() {
    let (code, v) = run(&[]);
    assert_eq!(code, Some(0), "{v}");
    let checks = v["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    for c in checks {
        for key in ["name", "data", "family", "value", "tolerance", "pass"] {
            assert!(!c[key].is_null(), "missing {key}");
        }
    }
    assert_eq!(v["device"], "cpu");
    // Every part ran: per step, trajectories, sample metrics, cross-entropies.
    for part in [
        "posterior mean",
        "endpoint",
        "MMD^2(tensor, f64)",
        "|MC - exact|",
    ] {
        assert!(
            checks
                .iter()
                .any(|c| c["name"].as_str().unwrap_or("").contains(part)),
            "no `{part}` check"
        );
    }
    // Noise scaled by 1.01: covariance off by 2 %, far beyond f32 round-off.
    let (code, v) = run(&["--perturb", "1.01"]);
    assert_eq!(code, Some(1));
    assert!(v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["pass"] == false));
}

#[test]
fn bad_input_exits_2() {
    for args in [
        &["--device", "tpu"][..],
        &["--families", "lgs-0"][..],
        &["--data", "mnist"][..],
        &["--kernels", "ddpm,euler"][..],
        &["--ce-data", "mix6"][..],
        &["--device", "cuda:x"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_validate"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn bench_gpu_writes_its_rows_and_rejects_bad_input() {
    // A tiny CPU run: every row kind present with positive finite throughput, the f64-core
    // rows beside them, and the figure files.
    let d = common::tmp_dir("bench-gpu");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bench-gpu"));
    cmd.args(["--presets", "digits8", "--batches", "4,8", "--ks", "1,2"])
        .args([
            "--trajectory-presets",
            "digits8",
            "--trajectory-samples",
            "4",
        ])
        .args(["--trajectory-steps", "2", "--repeats", "1"]);
    let v = common::run_for_json(cmd, &d);
    let rows = v["rows"].as_array().unwrap();
    for (name, device) in [
        ("score", "cpu"),
        ("cv_analytic", "cpu"),
        ("cv_autograd", "cpu"),
        ("lgs1_step", "cpu"),
        ("lgs2_step", "cpu"),
        ("lgs3_step", "f64-cpu"),
        ("trajectory_beta", "cpu"),
        ("trajectory_lgs-3", "cpu"),
    ] {
        let r = rows
            .iter()
            .find(|r| r["name"] == name && r["device"] == device)
            .unwrap_or_else(|| panic!("no {name} row on {device}"));
        let ps = r["per_second"].as_f64().unwrap();
        assert!(ps.is_finite() && ps > 0.0, "{name}: {ps}");
    }
    assert!(d.join("fig.png").exists() && d.join("fig.svg").exists());
    for args in [
        &["--device", "tpu"][..],
        &["--batches", "0"][..],
        &["--presets", "mnist"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_bench-gpu"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
