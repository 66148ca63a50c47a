//! The `learned` binary end to end: a tiny `train` into a temporary directory, an `eval` from
//! those checkpoints (JSON contract and the split path_kl = S_full + mean part + cov part), and
//! bad input (exit code 2, naming the field).
#![cfg(feature = "candle")]

use std::path::Path;
use std::process::Command;

mod common;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_learned"))
}

fn train_tiny(dir: &Path) {
    common::run_ok(
        bin()
            .args(["train", "--data", "grid9", "--iterations", "30"])
            .args(["--head-iterations", "20", "--hidden", "8", "--layers", "1"])
            .args(["--batch", "32", "--out"])
            .arg(dir.join("models"))
            .arg("--json")
            .arg(dir.join("train.json")),
    );
    for f in [
        "score",
        "ocm-exact",
        "ocm-learned",
        "sn",
        "npr-exact",
        "npr-learned",
        "iddpm-exact",
        "iddpm-learned",
    ] {
        let p = dir.join("models/grid9").join(format!("{f}.safetensors"));
        assert!(p.is_file(), "{} missing", p.display());
    }
}

#[test]
fn train_then_eval_writes_the_contract_and_the_split_adds_up() {
    let dir = common::tmp_dir("learned");
    train_tiny(&dir);
    for score in ["exact", "learned"] {
        let mut cmd = bin();
        cmd.args([
            "eval", "--data", "grid9", "--score", score, "--steps", "4,8",
        ])
        .args([
            "--mmd-steps",
            "4",
            "--samples",
            "100",
            "--qmc-nodes",
            "64",
            "--models",
        ])
        .arg(dir.join("models"));
        let doc = common::run_for_json(cmd, &dir);
        assert_eq!(doc["data"], "grid9");
        assert_eq!(doc["score"], score);
        let rows = doc["rows"].as_array().expect("rows");
        let mut ddim = 0;
        for r in rows {
            for k in [
                "method",
                "T",
                "path_kl",
                "err",
                "mean_part",
                "cov_part",
                "mmd",
                "mmd_se",
            ] {
                assert!(r.get(k).is_some(), "row without `{k}`: {r}");
            }
            if r["kernel"] == "ddim" {
                ddim += 1;
                assert!(r["method"] != "iddpm", "iddpm has no DDIM kernel");
                // Plain DDIM (beta, beta-tilde: Sigma_0 = 0) is deterministic: infinite KL.
                // Every other sampled DDIM chain has a path KL (a number, or "inf" where a
                // clipped variance is 0) with the same split.
                if r["method"] == "beta" || r["method"] == "beta-tilde" {
                    assert_eq!(r["path_kl"], "inf", "{r}");
                    continue;
                }
                if let (Some(p), Some(m), Some(c), Some(s)) = (
                    r["path_kl"].as_f64(),
                    r["mean_part"].as_f64(),
                    r["cov_part"].as_f64(),
                    r["s_full"].as_f64(),
                ) {
                    assert!((p - (s + m + c)).abs() <= 1e-12 * p.abs(), "{r}");
                } else {
                    assert_eq!(r["path_kl"], "inf", "{r}");
                }
                continue;
            }
            let (p, m, c, s) = (
                r["path_kl"].as_f64(),
                r["mean_part"].as_f64(),
                r["cov_part"].as_f64(),
                r["s_full"].as_f64().expect("s_full"),
            );
            if let (Some(p), Some(m), Some(c)) = (p, m, c) {
                // The split is an identity of the reported numbers (up to f64 rounding).
                assert!((p - (s + m + c)).abs() <= 1e-12 * p.abs(), "{r}");
                assert!(m >= 0.0 && c >= -1e-15, "{r}");
                if score == "exact" {
                    assert!(m.abs() == 0.0, "exact mean with a mean part: {r}");
                }
            } else {
                assert_eq!(r["path_kl"], "inf", "{r}");
            }
            // Every sampled method has an MMD at the MMD steps (the Jacobian variants are
            // evaluated, not sampled).
            if r["T"] == 4
                && !r["method"].as_str().unwrap_or("").starts_with("full-j")
                && r["method"] != "full-sym"
            {
                assert!(r["mmd"].is_number(), "{r}");
            }
        }
        assert!(ddim > 0);
        let ce = doc["cov_error"].as_array().expect("cov_error");
        assert!(ce
            .iter()
            .any(|c| c["method"] == "ocm" && c["mse"].is_number()));
        assert_eq!(
            doc["j_asymmetry"].as_array().map(Vec::len).unwrap_or(0) > 0,
            score == "learned"
        );
        // The exact score's figures carry the contract names (`<stem>_path_kl_<data>`), the
        // learned score's a `_learned` suffix.
        let figure = if score == "exact" {
            "fig_path_kl_grid9.png".to_string()
        } else {
            format!("fig_path_kl_grid9_{score}.png")
        };
        assert!(dir.join(&figure).is_file(), "{figure}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn expect_bad(args: &[&str], needle: &str) {
    let out = bin().args(args).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: `{needle}` not in {err}");
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    let dir = common::tmp_dir("learned-bad");
    let models = dir.join("models");
    let m = models.to_str().expect("utf8 path");
    // `learned eval --data grid9 <extra> --models <dir>`.
    let eval = |extra: &[&str], needle: &str| {
        let mut args = vec!["eval", "--data", "grid9"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--models", m]);
        expect_bad(&args, needle);
    };
    expect_bad(
        &["eval", "--data", "nope", "--models", m],
        "unknown data set `nope`",
    );
    eval(&["--methods", "beta,magic"], "unknown method `magic`");
    eval(&["--methods", "hutchinson-0"], "`M`");
    eval(
        &["--score", "learned", "--methods", "beta"],
        "score.safetensors",
    );
    eval(&["--methods", "ocm"], "ocm-exact.safetensors");
    eval(&["--score", "fuzzy"], "`--score`");
    eval(&["--methods", "full-jt"], "needs a learned score");
    eval(
        &["--methods", "beta", "--steps", "5", "--mmd-steps", "7"],
        "--mmd-steps",
    );
    eval(
        &["--methods", "beta", "--kernels", "ddpm,euler"],
        "`--kernels`",
    );
    expect_bad(
        &["train", "--data", "grid9", "--probes", "0", "--out", m],
        "`M`",
    );
    expect_bad(
        &[
            "train",
            "--data",
            "grid9",
            "--models",
            "score,magic",
            "--out",
            m,
        ],
        "unknown model `magic`",
    );
    // A corrupt checkpoint.
    std::fs::create_dir_all(models.join("grid9")).expect("dir");
    std::fs::write(models.join("grid9/score.safetensors"), b"garbage").expect("write");
    eval(
        &["--score", "learned", "--methods", "beta"],
        "not a valid safetensors file",
    );
    std::fs::remove_dir_all(&dir).ok();
}
