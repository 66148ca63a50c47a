//! The `guidance` binary: its JSON contract and bad input -> exit code 2 naming the field.

use std::process::Command;

use crate::common;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_guidance"))
}

#[test]
fn json_contract() {
    let d = common::tmp_dir("guidance");
    let mut cmd = bin();
    cmd.args(["--steps", "4,8,16", "--window", "4,16"]);
    let v = common::run_for_json(cmd, &d);
    let rows = v["results"].as_array().unwrap();
    // 2 schedules x 4 choices x 3 T.
    assert_eq!(rows.len(), 24);
    for r in rows {
        for key in [
            "choice",
            "schedule",
            "T",
            "endpoint_kl",
            "endpoint_kl_avg",
            "path_kl",
        ] {
            assert!(!r[key].is_null(), "missing {key}");
        }
        assert!(["scalar", "analytic", "diag", "full"].contains(&r["choice"].as_str().unwrap()));
    }
    for s in ["snr-uniform", "vp-linear"] {
        assert!(d.join(format!("fig_{s}.png")).exists());
        assert!(d.join(format!("fig_{s}.svg")).exists());
    }
}

#[test]
fn bad_input_exits_2_naming_the_field() {
    for (args, needle) in [
        (vec!["--choices", "isotropic"], "isotropic"),
        (vec!["--var1=-1"], "var1"),
        (vec!["--label-noise", "0"], "label_noise"),
        (vec!["--steps", "0"], "--steps"),
        (vec!["--schedules", "linear"], "linear"),
        (vec!["--init", "zero"], "zero"),
        (vec!["--angle", "nan"], "angle_deg"),
    ] {
        let out = bin()
            .args(&args)
            .args(["--json", "/nonexistent/x.json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
