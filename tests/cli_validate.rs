//! The `validate` binary (feature `candle`): a small case passes, a deliberately wrong
//! covariance fails with exit code 1 (the check itself is checked), bad input exits 2.
#![cfg(feature = "candle")]

use std::process::Command;

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
