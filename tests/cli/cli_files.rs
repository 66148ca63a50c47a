//! Files in and out: `--schedule diffusers:<beta>` / `FILE.json` with diffusers' options,
//! `path-kl --print-grid` and the `grid` key, `schedule show|export`, `samplers
//! --save-samples` and `score-samples`.

use std::path::Path;
use std::process::Command;

use nalgebra::DVector;

use crate::common;

fn path_kl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_path-kl"))
}

fn schedule() -> Command {
    Command::new(env!("CARGO_BIN_EXE_schedule"))
}

fn score() -> Command {
    Command::new(env!("CARGO_BIN_EXE_score-samples"))
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Asserts exit code 2 and a message naming `needle`.
fn refused(cmd: &mut Command, needle: &str) {
    let out = cmd.output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

/// diffusers' linear schedule in f64: `betas = linspace(1e-4, 0.02, 1000)`,
/// `alphas_cumprod = cumprod(1 - betas)` (diffusers computes it in float32: the two agree to
/// about 1e-6 relative, see the tolerance below).
fn linear_alphas_cumprod() -> Vec<f64> {
    let mut acc = 1.0;
    (0..1000)
        .map(|i| {
            acc *= 1.0 - (1e-4 + (0.02 - 1e-4) * i as f64 / 999.0);
            acc
        })
        .collect()
}

#[test]
fn print_grid_is_diffusers_trailing_and_writes_nothing() {
    let d = common::tmp_dir("print-grid");
    let out = common::run_ok(path_kl().current_dir(&d).args([
        "--schedule",
        "diffusers:linear",
        "--timestep-spacing",
        "trailing",
        "--steps",
        "10,7",
        "--print-grid",
    ]));
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "no file written");
    let v = json_of(&out);
    assert_eq!(v["schedule"], "diffusers:linear");
    let ac = linear_alphas_cumprod();
    let grids = v["grids"].as_array().unwrap();
    // T ascending.
    assert_eq!(grids[0]["T"], 7);
    for g in grids {
        let t = g["T"].as_u64().unwrap() as usize;
        // trailing: round(arange(N, 0, -N/T)) - 1, written here from diffusers' rule.
        let ratio = 1000.0 / t as f64;
        let want: Vec<u64> = (0..t)
            .map(|k| ((1000.0 - k as f64 * ratio).round_ties_even() - 1.0) as u64)
            .collect();
        let got: Vec<u64> = g["timesteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "T = {t}");
        let times = g["times"].as_array().unwrap();
        let abar = g["abar"].as_array().unwrap();
        assert_eq!(abar[0].as_f64(), Some(1.0));
        for k in 1..=t {
            let ts = want[t - k] as usize;
            assert_eq!(times[k].as_f64(), Some((ts + 1) as f64));
            let a = abar[k].as_f64().unwrap();
            // float32 arithmetic against f64: 1e-5 relative covers diffusers' float32 cumprod
            // (measured 2.8e-7 at most for linear) with room, and a one-step shift of the
            // index (a relative change >= 1e-4 at every timestep) would fail it.
            assert!(
                (a / ac[ts] - 1.0).abs() < 1e-5,
                "T = {t}, k = {k}: {a} vs {}",
                ac[ts]
            );
        }
    }
}

/// The path-kl JSON of `args` with `--schedule schedule` (written under `dir`).
fn path_kl_json(
    args: &[&str],
    schedule: impl AsRef<std::ffi::OsStr>,
    dir: &Path,
) -> serde_json::Value {
    let mut c = path_kl();
    c.args(args).arg("--schedule").arg(schedule);
    common::run_for_json(c, dir)
}

/// The `S` values of a path-kl JSON, in order.
fn s_values(v: &serde_json::Value) -> Vec<f64> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["S"].as_f64().unwrap())
        .collect()
}

#[test]
fn a_schedule_file_is_the_same_schedule_as_its_source() {
    let d = common::tmp_dir("schedule-file");
    let file = d.join("cos.json");
    // A diffusers schedule exported and read back: the same path KL bit for bit.
    common::run_ok(
        schedule()
            .args([
                "export",
                "--schedule",
                "diffusers:squaredcos_cap_v2",
                "--out",
            ])
            .arg(&file),
    );
    let args = [
        "--data",
        "grid9",
        "--steps",
        "8,16",
        "--families",
        "beta,full",
    ];
    let direct = path_kl_json(&args, "diffusers:squaredcos_cap_v2", &d);
    let via_file = path_kl_json(&args, &file, &d);
    assert_eq!(s_values(&direct), s_values(&via_file));
    assert_eq!(direct["grid"], via_file["grid"]);
    // A continuous preset exported at T = 16: its table has the preset's abar values, so the
    // 16-step path KL is the same (the grid times differ, 1..16 against tau; the chain depends
    // on abar only): to 1e-9 relative, the lattice sums' round-off.
    let table = d.join("cosine16.json");
    common::run_ok(
        schedule()
            .args(["export", "--schedule", "cosine", "--steps", "16", "--out"])
            .arg(&table),
    );
    let args16 = [
        "--data",
        "grid9",
        "--steps",
        "16",
        "--families",
        "beta,full",
    ];
    let cont = path_kl_json(&args16, "cosine", &d);
    let tab = path_kl_json(&args16, &table, &d);
    for (a, b) in s_values(&cont).iter().zip(s_values(&tab)) {
        assert!((a / b - 1.0).abs() < 1e-9, "{a} vs {b}");
    }
    // The table has 16 entries; at another T its list of 16 timesteps does not apply.
    refused(
        path_kl()
            .args([
                "--data",
                "grid9",
                "--steps",
                "8",
                "--print-grid",
                "--schedule",
            ])
            .arg(&table),
        "steps",
    );
}

#[test]
fn a_hand_written_file_gives_its_own_grid() {
    let d = common::tmp_dir("hand-file");
    let f = d.join("s.json");
    std::fs::write(
        &f,
        r#"{"alphas_cumprod": [0.9, 0.5, 0.2, 0.01], "timesteps": [3, 1]}"#,
    )
    .unwrap();
    let out = common::run_ok(
        schedule()
            .args(["show", "--steps", "2", "--schedule"])
            .arg(&f),
    );
    let v = json_of(&out);
    assert_eq!(v["num_train_timesteps"], 4);
    let g = &v["grids"][0];
    assert_eq!(g["times"], serde_json::json!([0.0, 2.0, 4.0]));
    // abar = exp(ln abar): the round trip costs a few ulps.
    let abar: Vec<f64> = g["abar"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    for (a, b) in abar.iter().zip([1.0, 0.5, 0.01]) {
        assert!((a / b - 1.0).abs() < 1e-14, "{abar:?}");
    }
    // Bad files: named by field and index, exit 2.
    let bad = |text: &str, needle: &str| {
        std::fs::write(&f, text).unwrap();
        refused(
            schedule()
                .args(["show", "--steps", "2", "--schedule"])
                .arg(&f),
            needle,
        );
    };
    bad(
        r#"{"alphas_cumprod": [0.9, 0.95, 0.2]}"#,
        "alphas_cumprod[1]",
    );
    bad(r#"{"alphas_cumprod": [0.9, "x"]}"#, "s.json");
    bad(
        r#"{"alphas_cumprod": [0.9, 0.5], "timestep": [1, 0]}"#,
        "timestep",
    );
    bad(
        r#"{"alphas_cumprod": [0.9, 0.5], "timesteps": [1, 2]}"#,
        "timesteps",
    );
    refused(
        path_kl().args(["--print-grid", "--schedule", "/nonexistent/x.json"]),
        "/nonexistent/x.json",
    );
}

#[test]
fn schedule_options_are_refused_where_they_do_not_apply() {
    refused(
        path_kl().args([
            "--schedule",
            "cosine",
            "--timestep-spacing",
            "trailing",
            "--print-grid",
        ]),
        "--timestep-spacing",
    );
    refused(
        path_kl().args([
            "--schedule",
            "diffusers:linear",
            "--timestep-spacing",
            "even",
            "--print-grid",
        ]),
        "--timestep-spacing",
    );
    refused(
        path_kl().args([
            "--schedule",
            "diffusers:linear",
            "--beta-end",
            "2",
            "--print-grid",
        ]),
        "--beta-end",
    );
    refused(
        path_kl().args(["--schedule", "diffusers:cosine", "--print-grid"]),
        "beta_schedule",
    );
    refused(
        Command::new(env!("CARGO_BIN_EXE_samplers")).args([
            "--schedule",
            "vp-linear",
            "--num-train-timesteps",
            "500",
        ]),
        "--num-train-timesteps",
    );
    refused(
        schedule().args(["export", "--schedule", "vp-linear", "--out", "/tmp/x.json"]),
        "--steps",
    );
}

fn write_npy(path: &Path, points: &[DVector<f64>]) {
    covlab::data::samples_npy::write_samples(path, points).unwrap();
}

#[test]
fn saved_samples_score_as_the_samplers_study_scored_them() {
    let d = common::tmp_dir("save-samples");
    let dir = d.join("draws");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_samplers"));
    cmd.args([
        "--data",
        "grid9",
        "--families",
        "beta,full",
        "--steps",
        "10",
        "--samples",
        "300",
        "--schedule",
        "diffusers:linear",
        "--timestep-spacing",
        "trailing",
        "--save-samples",
    ])
    .arg(&dir);
    let v = common::run_for_json(cmd, &d);
    assert_eq!(v["schedule"], "diffusers:linear");
    assert_eq!(v["grid"][0]["timesteps"][0], 999);
    for fam in ["exact", "beta", "full"] {
        let file = if fam == "exact" {
            dir.join("grid9_exact.npy")
        } else {
            dir.join(format!("grid9_{fam}_T10.npy"))
        };
        let out = common::run_ok(
            score()
                .args([
                    "--data",
                    "grid9",
                    "--reference-n",
                    "300",
                    "--json",
                    "-",
                    "--samples",
                ])
                .arg(&file),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let s: serde_json::Value =
            serde_json::from_str(&text[text.find("\n{").unwrap()..]).unwrap();
        let row = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["family"] == fam)
            .unwrap();
        // The mean log-likelihood under q_0 is a function of the samples alone: two routes
        // (in the study, and from the saved file) agree to round-off of a 300-term mean.
        let a = row["loglik"].as_f64().unwrap();
        let b = s["check"]["log_likelihood"]["value"].as_f64().unwrap();
        assert!(
            (a - b).abs() < 1e-12 * a.abs().max(1.0),
            "{fam}: {a} vs {b}"
        );
        assert_eq!(s["check"]["n"], 300);
    }
}

#[test]
fn score_samples_tests_exact_and_shifted_draws() {
    let d = common::tmp_dir("score-samples");
    let q0 = covlab::data::presets::load("grid9").unwrap();
    let exact = q0.sample(&mut covlab::numeric::rng::stream(11, 5), 800);
    let f = d.join("exact.npy");
    write_npy(&f, &exact);
    let json = d.join("s.json");
    // Exact draws pass |z| <= 4 (fails about 6e-5 of seeds; this seed is fixed).
    common::run_ok(
        score()
            .args([
                "--data",
                "grid9",
                "--reference-n",
                "800",
                "--max-z",
                "4",
                "--samples",
            ])
            .arg(&f)
            .arg("--json")
            .arg(&json),
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["pass"], true);
    // Shifted by 0.5 (about a component's standard deviation): the test fails, exit 1.
    let shifted: Vec<DVector<f64>> = exact.iter().map(|x| x.add_scalar(0.5)).collect();
    let g = d.join("shifted.npy");
    write_npy(&g, &shifted);
    let out = score()
        .args([
            "--data",
            "grid9",
            "--reference-n",
            "800",
            "--max-z",
            "4",
            "--samples",
        ])
        .arg(&g)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // Bad input: a sample of another dimension, a NaN, not a .npy file, a missing file.
    let three = d.join("three.npy");
    write_npy(&three, &vec![DVector::zeros(3); 10]);
    refused(
        score().args(["--data", "grid9", "--samples"]).arg(&three),
        "--samples",
    );
    let nan = d.join("nan.npy");
    let mut pts = exact[..10].to_vec();
    pts[4][1] = f64::NAN;
    write_npy(&nan, &pts);
    refused(
        score().args(["--data", "grid9", "--samples"]).arg(&nan),
        "[4, 1]",
    );
    refused(
        score().args(["--data", "grid9", "--samples"]).arg(&json),
        "not a .npy",
    );
    refused(
        score().args(["--data", "grid9", "--samples", "/nonexistent.npy"]),
        "--samples",
    );
    refused(
        score().args(["--data", "nope", "--samples"]).arg(&f),
        "--data",
    );
}
