//! The `samplers` binary: its JSON contract, the cost counts it reports, and bad input ->
//! exit code 2 naming the flag or family.

use std::process::Command;

use crate::common;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_samplers"))
}

#[test]
fn json_contract_and_costs() {
    let d = common::tmp_dir("samplers");
    let mut cmd = bin();
    cmd.args([
        "--data",
        "aniso2",
        "--families",
        "beta,full,lgs-1,hutchinson-3",
        "--steps",
        "5,10",
        "--samples",
        "200",
        "--threads",
        "1",
        "--last-step",
        "noisy",
    ]);
    let v = common::run_for_json(cmd, &d);
    assert_eq!(v["last_step"], "noisy");
    let rows = v["rows"].as_array().unwrap();
    // 1 exact floor row + 4 families x 2 T.
    assert_eq!(rows.len(), 9);
    for r in rows {
        for key in ["data", "family", "T", "samples", "mmd", "mmd_se"] {
            assert!(!r[key].is_null(), "missing {key} in {r}");
        }
    }
    let per = |fam: &str, key: &str| {
        rows.iter().find(|r| r["family"] == fam).unwrap()[key]
            .as_f64()
            .unwrap()
    };
    // The cost model with a noisy last step: every step one score evaluation; lgs-1 one
    // product; hutchinson-3 three.
    assert_eq!(per("beta", "score_evals_per_step"), 1.0);
    assert_eq!(per("lgs-1", "hvp_per_step"), 1.0);
    assert_eq!(per("hutchinson-3", "hvp_per_step"), 3.0);
    assert!(d.join("fig_aniso2.png").exists());
}

#[test]
fn the_last_step_is_the_mean_by_default_and_recorded() {
    // The default last step returns the kernel's mean: the score only, so lgs-1 spends its one
    // product on T - 1 of the T steps (4/5 at T = 5) and hutchinson-3 its three.
    let d = common::tmp_dir("samplers-last");
    let mut cmd = bin();
    cmd.args([
        "--data",
        "aniso2",
        "--families",
        "beta,full,lgs-1,hutchinson-3",
        "--steps",
        "5,10",
        "--samples",
        "200",
    ]);
    let v = common::run_for_json(cmd, &d);
    assert_eq!(v["last_step"], "mean");
    let rows = v["rows"].as_array().unwrap();
    let per = |fam: &str, key: &str| {
        rows.iter().find(|r| r["family"] == fam).unwrap()[key]
            .as_f64()
            .unwrap()
    };
    assert_eq!(per("beta", "score_evals_per_step"), 1.0);
    assert_eq!(per("lgs-1", "hvp_per_step"), 4.0 / 5.0);
    assert_eq!(per("hutchinson-3", "hvp_per_step"), 3.0 * 4.0 / 5.0);
}

#[test]
fn bad_input_exits_2() {
    for (args, needle) in [
        (vec!["--families", "lgs-0"], "lgs-0"),
        (vec!["--families", "hutchinson-0"], "hutchinson-0"),
        (vec!["--families", "gauss"], "gauss"),
        (vec!["--data", "nope"], "nope"),
        (vec!["--kernel", "euler"], "euler"),
        (vec!["--samples", "2"], "--samples"),
        (vec!["--lgs-batch", "0"], "--lgs-batch"),
        (vec!["--last-step", "maybe"], "--last-step"),
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
