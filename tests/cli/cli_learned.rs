//! The `learned` binary end to end: a tiny `train` into a temporary directory, an `eval` from
//! those checkpoints (JSON contract and the split path_kl = S_full + mean part + cov part), and
//! bad input (exit code 2, naming the field).
#![cfg(feature = "candle")]

use std::path::Path;
use std::process::Command;

use crate::common;

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
    // The U-Net: image data sets only, a valid shape, a known network name.
    expect_bad(
        &["train", "--data", "grid9", "--net", "unet", "--out", m],
        "not an image data set",
    );
    for (flag, v) in [("--levels", "5"), ("--groups", "3"), ("--channels", "0")] {
        expect_bad(
            &[
                "train", "--data", "digits8", "--net", "unet", flag, v, "--out", m,
            ],
            &format!("`{flag}`"),
        );
    }
    eval(&["--net", "cnn"], "unknown network `cnn`");
    eval(&["--head-net", "cnn"], "`--head-net`");
    expect_bad(
        &["train", "--data", "grid9", "--head-net", "unet", "--out", m],
        "`--head-net`",
    );
    // LGS variants: k, L >= 1; DDPM MMD rows; at least one evaluated method; the LGSb fraction
    // in (0, 1]; a known last step.
    for bad in ["full,lgs-0", "full,lgs-2-b0", "full,lgsb-x"] {
        eval(&["--methods", bad], "`--methods`");
    }
    eval(
        &["--methods", "lgs-2"],
        "at least one method with an exact path KL",
    );
    eval(
        &["--methods", "full,lgs-2", "--mmd-steps", "none"],
        "LGS variants with DDPM MMD rows",
    );
    eval(
        &["--methods", "full,lgs-2", "--kernels", "ddim"],
        "LGS variants with DDPM MMD rows",
    );
    eval(&["--lgsb-fraction", "0"], "`--lgsb-fraction`");
    eval(&["--last-step", "sideways"], "`--last-step`");
    // A corrupt checkpoint.
    std::fs::create_dir_all(models.join("grid9")).expect("dir");
    std::fs::write(models.join("grid9/score.safetensors"), b"garbage").expect("write");
    eval(
        &["--score", "learned", "--methods", "beta"],
        "not a valid safetensors file",
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The committed checkpoints (`studies/models`).
fn committed_models() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("studies/models")
}

/// Copies the committed checkpoint `from` (`<data>/<file>`) to `<models>/<to>`.
fn copy_committed(models: &Path, from: &str, to: &str) {
    let dst = models.join(to);
    std::fs::create_dir_all(dst.parent().expect("parent")).expect("dir");
    std::fs::copy(committed_models().join(from), &dst).expect("copy checkpoint");
}

/// `learned eval --data grid9 --steps 5 --mmd-steps none --models <models> <extra>` must exit
/// 2 naming `--models`, the file `file` and every one of `needles`.
fn expect_bad_checkpoint(models: &Path, extra: &[&str], file: &str, needles: &[&str]) {
    let out = bin()
        .args([
            "eval",
            "--data",
            "grid9",
            "--steps",
            "5",
            "--mmd-steps",
            "none",
        ])
        .args(extra)
        .arg("--models")
        .arg(models)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
    for n in ["`--models`", file].iter().chain(needles) {
        assert!(err.contains(n), "{extra:?}: `{n}` not in {err}");
    }
}

#[test]
fn checkpoints_are_checked_against_the_run() {
    let dir = common::tmp_dir("learned-ckpt");
    // mog40's score network in grid9's slot: both D = 2, so only the recorded data set tells.
    let m1 = dir.join("wrong-data");
    copy_committed(&m1, "mog40/score.safetensors", "grid9/score.safetensors");
    expect_bad_checkpoint(
        &m1,
        &["--score", "learned", "--methods", "beta"],
        "score.safetensors",
        &[
            "trained on mog40",
            "expected a score network trained on grid9",
        ],
    );
    // The ocm head trained against the exact score in the learned slot.
    let m2 = dir.join("wrong-score");
    copy_committed(&m2, "grid9/score.safetensors", "grid9/score.safetensors");
    copy_committed(
        &m2,
        "grid9/ocm-exact.safetensors",
        "grid9/ocm-learned.safetensors",
    );
    expect_bad_checkpoint(
        &m2,
        &["--score", "learned", "--methods", "ocm"],
        "ocm-learned.safetensors",
        &["against the exact score", "expected the ocm head"],
    );
    // A head of another kind in the ocm slot: say what was found.
    let m3 = dir.join("wrong-kind");
    copy_committed(
        &m3,
        "grid9/npr-exact.safetensors",
        "grid9/ocm-exact.safetensors",
    );
    expect_bad_checkpoint(
        &m3,
        &["--methods", "ocm"],
        "ocm-exact.safetensors",
        &["holds the npr head", "expected the ocm head"],
    );
    // digits8's MLP score in its U-Net slot: the recorded architecture tells.
    let m4 = dir.join("wrong-net");
    copy_committed(
        &m4,
        "digits8/score.safetensors",
        "digits8/unet/score.safetensors",
    );
    let out = bin()
        .args([
            "eval",
            "--data",
            "digits8",
            "--score",
            "learned",
            "--methods",
            "beta",
        ])
        .args([
            "--steps",
            "5",
            "--mmd-steps",
            "none",
            "--net",
            "unet",
            "--models",
        ])
        .arg(&m4)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for n in [
        "`--models`",
        "unet/score.safetensors",
        "holds a mlp network",
        "`net = unet`",
    ] {
        assert!(err.contains(n), "`{n}` not in {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_checkpoint_with_a_nan_weight_is_refused() {
    use covlab::learned::{load_head, save_head, Head, TimeMlp};
    let dir = common::tmp_dir("learned-nan");
    let device = covlab::tensor::candle_core::Device::Cpu;
    let (head, meta) = load_head(
        &committed_models().join("grid9/ocm-exact.safetensors"),
        &device,
    )
    .expect("committed head");
    let mut params: Vec<covlab::tensor::candle_core::Tensor> =
        head.mlp().expect("an MLP head").params().to_vec();
    let b = &params[1];
    let mut v: Vec<f32> = b.flatten_all().and_then(|t| t.to_vec1()).expect("bias");
    v[0] = f32::NAN;
    params[1] =
        covlab::tensor::candle_core::Tensor::from_vec(v, b.dims(), &device).expect("tensor");
    let mlp = TimeMlp::from_params(meta.shape, params, &device).expect("same shape");
    let bad = Head::from_parts(head.kind(), mlp, meta.prior.clone(), &device);
    let path = dir.join("models/grid9/ocm-exact.safetensors");
    save_head(&path, &bad, &meta).expect("save");
    // The library refuses it ...
    let e = load_head(&path, &device).expect_err("NaN weight");
    assert!(e.to_string().contains("`b0`"), "{e}");
    // ... and so does the binary, before any computation.
    expect_bad_checkpoint(
        &dir.join("models"),
        &["--methods", "ocm"],
        "ocm-exact.safetensors",
        &["non-finite", "`b0`"],
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn single_steps_layers_and_missing_image_checkpoints_are_bad_input() {
    let dir = common::tmp_dir("learned-bad2");
    let m = dir.join("models");
    let m = m.to_str().expect("utf8 path");
    // beta-tilde's (and iddpm's) last step to the data borrows the next step's variance.
    for method in ["beta-tilde", "iddpm"] {
        expect_bad(
            &[
                "eval",
                "--data",
                "grid9",
                "--methods",
                method,
                "--steps",
                "1",
                "--mmd-steps",
                "none",
                "--models",
                m,
            ],
            "`--steps`",
        );
    }
    // `--layers 0` names `--layers`, not `--hidden`.
    let out = bin()
        .args(["train", "--data", "grid9", "--layers", "0", "--out", m])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`--layers`") && !err.contains("--hidden"),
        "{err}"
    );
    expect_bad(
        &["train", "--data", "grid9", "--hidden", "0", "--out", m],
        "`--hidden`",
    );
    // digits32 has no checkpoints: refused at once, before its dense mixture (D = 1024) is
    // built (which alone took over 60 s before the checkpoints were checked first).
    let committed = committed_models();
    let start = std::time::Instant::now();
    let out = bin()
        .args(["eval", "--data", "digits32", "--models"])
        .arg(&committed)
        .output()
        .expect("runs");
    let secs = start.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`--models`") && err.contains("digits32"),
        "{err}"
    );
    // Reading a few checkpoint headers takes milliseconds; 10 s leaves room for a loaded
    // machine while still far below the 60 s the data build takes.
    assert!(secs < 10.0, "digits32 refused after {secs:.1} s");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_default_mmd_steps_follow_steps() {
    let dir = common::tmp_dir("learned-mmd-default");
    let mut cmd = bin();
    cmd.args([
        "eval",
        "--data",
        "grid9",
        "--score",
        "exact",
        "--methods",
        "diag,ocm",
    ])
    .args(["--steps", "10,100", "--samples", "100", "--qmc-nodes", "64"])
    .args(["--kernels", "ddpm", "--models"])
    .arg(committed_models());
    let doc = common::run_for_json(cmd, &dir);
    // The documented default: the T values of --steps among 5, 10, 25, here {10}.
    let rows = doc["rows"].as_array().expect("rows");
    for r in rows {
        let t = r["T"].as_u64().expect("T");
        assert_eq!(r["mmd"].is_number(), t == 10, "row {r}");
    }
    assert_eq!(rows.len(), 4, "diag and ocm at T = 10, 100: {rows:?}");
    // No 10 or smaller among --steps: the smallest T.
    let mut cmd = bin();
    cmd.args([
        "eval",
        "--data",
        "grid9",
        "--score",
        "exact",
        "--methods",
        "diag",
    ])
    .args(["--steps", "100,50", "--samples", "100", "--qmc-nodes", "64"])
    .args(["--kernels", "ddpm", "--models"])
    .arg(committed_models());
    let doc = common::run_for_json(cmd, &dir);
    for r in doc["rows"].as_array().expect("rows") {
        let t = r["T"].as_u64().expect("T");
        assert_eq!(r["mmd"].is_number(), t == 50, "row {r}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The sampled-only LGS variants. With the exact score in `D = 2`, `lgs-2` is a Lanczos run
/// with `k = D` from the same noise as `full`'s, so its samples, MMD and Frechet distance equal
/// `full`'s to f32 round-off. With the committed learned score, the network passes per sample
/// are the algorithms' own counts at `T = 5` with a noisy last step (every step draws):
/// one score forward a step; `lgs-k`: `k` products a step; LGS-batched `b2`: `2 k` at each
/// block's first step (steps 5, 3, 1); LGSb with fraction 0.5: LGS on the last
/// `ceil(2.5) = 3` steps; hutchinson-1 one product a step; a head one forward a step; the
/// oracles none.
#[test]
fn lgs_variants_are_sampled_with_their_network_passes() {
    let dir = common::tmp_dir("learned-lgs");
    let run = |score: &str, methods: &str| {
        let mut cmd = bin();
        cmd.args(["eval", "--data", "grid9", "--score", score, "--steps", "5"])
            .args(["--mmd-steps", "5", "--samples", "200", "--qmc-nodes", "64"])
            .args([
                "--kernels",
                "ddpm",
                "--last-step",
                "noisy",
                "--methods",
                methods,
            ])
            .arg("--models")
            .arg(committed_models());
        common::run_for_json(cmd, &dir)
    };
    let row = |doc: &serde_json::Value, m: &str| -> serde_json::Value {
        doc["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["method"] == m && r["T"] == 5)
            .unwrap_or_else(|| panic!("no row {m}"))
            .clone()
    };
    let exact = run("exact", "full,lgs-2");
    assert_eq!(exact["last_step"], "noisy");
    let (full, lgs) = (row(&exact, "full"), row(&exact, "lgs-2"));
    assert!(lgs["path_kl"].is_null(), "LGS has no exact path KL: {lgs}");
    for k in ["mmd", "frechet_sq"] {
        let (a, b) = (full[k].as_f64().expect(k), lgs[k].as_f64().expect(k));
        // f32 chains of 5 steps in D = 2: round-off ~1e-6 of the sample scale (~1); MMD^2 and
        // the Frechet distance move by about that times their gradients, far below 1e-4.
        assert!((a - b).abs() <= 1e-4, "{k}: full {a} vs lgs-2 {b}");
    }
    let learned = run(
        "learned",
        "beta,full,hutchinson-1,ocm,lgs-1,lgs-2,lgs-1-b2,lgsb-1,lgsb-1-b2",
    );
    for (m, products, head) in [
        ("beta", 0, 0),
        ("full", 0, 0),
        ("hutchinson-1", 5, 0),
        ("ocm", 0, 5),
        ("lgs-1", 5, 0),
        ("lgs-2", 10, 0),
        ("lgs-1-b2", 6, 0),
        ("lgsb-1", 3, 0),
        ("lgsb-1-b2", 4, 0),
    ] {
        let r = row(&learned, m);
        let p = &r["passes"];
        assert_eq!(p["score"], 5, "{m}: {r}");
        assert_eq!(p["products"], products, "{m}: {r}");
        assert_eq!(p["head"], head, "{m}: {r}");
        assert!(r["wall_s_per_sample"].as_f64().expect("wall") > 0.0, "{r}");
        assert!(r["mmd"].is_number() && r["frechet_sq"].is_number(), "{r}");
    }
    assert_eq!(row(&learned, "lgsb-1")["lgsb_fraction"], 0.5);
    std::fs::remove_dir_all(&dir).ok();
}

/// `learned curve` trains each budget's head in memory; `learned train` with the same settings,
/// `--head-iterations` and `--seed` saves it, and `learned eval` reads it back. The two routes
/// (weights kept in memory, weights through safetensors) with one evaluator must give the same
/// rows bit for bit, and the same training log, for each training seed; the oracles' rows
/// equal `eval`'s for the same methods, the exact diagonal's covariance part is 0 (it is the
/// exact diag C), and the seed spread is the mean and sample sd of the seeds' rows.
#[test]
fn the_curve_equals_train_then_eval_at_each_budget() {
    let dir = common::tmp_dir("learned-curve");
    let net = [
        "--hidden",
        "8",
        "--layers",
        "1",
        "--batch",
        "32",
        "--threads",
        "2",
    ];
    let eval_flags = [
        "--steps",
        "4,8",
        "--early-stop",
        "1e-3",
        "--qmc-nodes",
        "64",
    ];
    let mut cmd = bin();
    cmd.args(["curve", "--data", "grid9", "--heads", "ocm,npr"])
        .args(["--iterations", "20,40", "--oracles", "analytic,diag"])
        .args(["--train-seeds", "0,1"])
        .args(eval_flags)
        .args(net);
    let curve = common::run_for_json(cmd, &dir);
    assert_eq!(curve["curve"].as_array().map(Vec::len), Some(8));
    for name in ["cov_part", "diag_mse"] {
        assert!(
            dir.join(format!("fig_{name}_grid9.png")).is_file(),
            "{name}"
        );
    }
    let row = |rows: &serde_json::Value, method: &str, t: u64| -> serde_json::Value {
        rows.as_array()
            .expect("rows")
            .iter()
            .find(|r| r["method"] == method && r["T"] == t)
            .unwrap_or_else(|| panic!("no {method} T = {t} row"))
            .clone()
    };
    for t in [4, 8] {
        let d = row(&curve["oracles"], "diag", t);
        // The exact diagonal against itself: KL(N(m, C) || N(m, diag C)) with C diagonal on
        // grid9 (isotropic components) is 0 up to the round-off of equal variances.
        assert!(d["cov_part"].as_f64().expect("f64").abs() < 1e-20, "{d}");
        assert!(row(&curve["oracles"], "analytic", t)["cov_part"].as_f64() > Some(1e-3));
    }
    for (budget, seed) in [(20_u64, 0_u64), (20, 1), (40, 0), (40, 1)] {
        let models = dir.join(format!("m{budget}-{seed}"));
        let log_path = dir.join(format!("train{budget}-{seed}.json"));
        common::run_ok(
            bin()
                .args(["train", "--data", "grid9", "--models", "ocm,npr"])
                .args([
                    "--scores",
                    "exact",
                    "--head-iterations",
                    &budget.to_string(),
                ])
                .args(["--seed", &seed.to_string()])
                .args(net)
                .arg("--out")
                .arg(&models)
                .arg("--json")
                .arg(&log_path),
        );
        let log: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&log_path).expect("log"))
                .expect("log JSON");
        let mut cmd = bin();
        cmd.args([
            "eval",
            "--data",
            "grid9",
            "--methods",
            "analytic,diag,ocm,npr",
        ])
        .args(eval_flags)
        .args(["--mmd-steps", "none", "--threads", "2", "--models"])
        .arg(&models);
        let eval_dir = dir.join(format!("eval{budget}-{seed}"));
        std::fs::create_dir_all(&eval_dir).expect("dir");
        let eval = common::run_for_json(cmd, &eval_dir);
        for head in ["ocm", "npr"] {
            let c = curve["curve"]
                .as_array()
                .expect("curve")
                .iter()
                .find(|c| c["head"] == head && c["iterations"] == budget && c["train_seed"] == seed)
                .expect("curve point");
            let run = log["runs"]
                .as_array()
                .expect("runs")
                .iter()
                .find(|r| r["model"] == head)
                .expect("run");
            assert_eq!(
                c["train"]["final_loss"], run["final_loss"],
                "{head} {budget} {seed}"
            );
            for t in [4, 8] {
                let (a, b) = (row(&c["rows"], head, t), row(&eval["rows"], head, t));
                // A trained head is not the exact diagonal: a positive, finite number.
                assert!(a["cov_part"].as_f64().is_some_and(|v| v > 0.0), "{a}");
                for key in ["path_kl", "err", "cov_part", "cov_part_err", "s_full"] {
                    assert_eq!(a[key], b[key], "{head} {budget} s{seed} T = {t} {key}");
                }
            }
        }
        for t in [4, 8] {
            for m in ["analytic", "diag"] {
                let (a, b) = (row(&curve["oracles"], m, t), row(&eval["rows"], m, t));
                assert_eq!(a["cov_part"], b["cov_part"], "{m} T = {t}");
                assert_eq!(a["path_kl"], b["path_kl"], "{m} T = {t}");
            }
        }
    }
    // The spread over the two seeds: mean and sample sd of their covariance parts.
    for p in curve["seed_spread"].as_array().expect("seed_spread") {
        let v: Vec<f64> = curve["curve"]
            .as_array()
            .expect("curve")
            .iter()
            .filter(|c| c["head"] == p["head"] && c["iterations"] == p["iterations"])
            .map(|c| {
                row(
                    &c["rows"],
                    p["head"].as_str().expect("head"),
                    p["T"].as_u64().expect("T"),
                )["cov_part"]
                    .as_f64()
                    .expect("f64")
            })
            .collect();
        assert_eq!(v.len(), 2, "{p}");
        let mean = (v[0] + v[1]) / 2.0;
        let sd = (v[0] - v[1]).abs() / 2.0_f64.sqrt();
        // Two ways of summing two numbers: equal to f64 round-off (1e-12 relative).
        assert!(
            (p["cov_part_mean"].as_f64().expect("mean") - mean).abs() <= 1e-12 * mean,
            "{p}"
        );
        assert!(
            (p["cov_part_sd"].as_f64().expect("sd") - sd).abs() <= 1e-12 * mean,
            "{p}"
        );
    }
    assert_eq!(curve["seed_spread"].as_array().map(Vec::len), Some(8));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn curve_bad_input_exits_2_naming_the_key() {
    let curve = |extra: &[&str], needle: &str| {
        let mut args = vec!["curve", "--data", "grid9"];
        args.extend_from_slice(extra);
        expect_bad(&args, needle);
    };
    curve(&["--heads", "ocm,magic"], "unknown head `magic`");
    curve(&["--heads", "ocm,ocm"], "--heads");
    curve(&["--iterations", "0"], "iterations");
    curve(&["--iterations", "100,100"], "--iterations");
    curve(&["--oracles", "ocm"], "oracles");
    curve(&["--oracles", "diag,magic"], "oracles");
    curve(&["--steps", "0"], "steps");
    curve(&["--rule", "simpson"], "rule");
    curve(&["--early-stop=-1"], "early-stop");
    curve(&["--ocm-weight", "heavy"], "ocm-weight");
    curve(&["--hidden", "0"], "hidden");
    curve(&["--train-seeds", "1,1"], "--train-seeds");
    expect_bad(&["curve", "--data", "nope"], "unknown data set `nope`");
}
