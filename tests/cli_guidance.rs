//! The `guidance` binary: its JSON contract and bad input -> exit code 2 naming the field.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_guidance"))
}

#[test]
fn json_contract() {
    let d = std::env::temp_dir().join(format!("covlab-cli-guidance-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let json = d.join("g.json");
    let out = bin()
        .args(["--steps", "4,8,16", "--window", "4,16"])
        .arg("--json")
        .arg(&json)
        .arg("--figure")
        .arg(d.join("g"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
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
        assert!(d.join(format!("g_{s}.png")).exists());
        assert!(d.join(format!("g_{s}.svg")).exists());
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
