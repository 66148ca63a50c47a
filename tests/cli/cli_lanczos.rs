//! The `lanczos` binary: JSON contract (`cases[].{name, D, kappa, k, error, bound}`), error
//! within the bound, identical results for any thread count, figures, and bad input -> exit
//! code 2 with the offending flag named.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lanczos"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("covlab-cli-lanczos-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A small study (D = 50, kappa = 10, k <= 10, the mog40 and mix6 presets and the image
/// preset digits8, timing at D = 64) into `dir`.
fn small_run(dir: &Path, threads: &str) -> (Output, serde_json::Value) {
    let json = dir.join("out.json");
    let out = bin()
        .args([
            "--dims",
            "50",
            "--kappas",
            "10",
            "--kmax",
            "10",
            "--timing-dim",
            "64",
            "--timing-k",
            "5",
            "--data",
            "mog40,mix6,digits8",
            "--threads",
            threads,
        ])
        .arg("--json")
        .arg(&json)
        .arg("--figure")
        .arg(dir.join("fig"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
        .expect("valid json");
    (out, v)
}

#[test]
fn json_contract_bound_and_thread_independence() {
    let d = tmp("ok");
    let (out, v) = small_run(&d, "1");
    assert_eq!(v["error_normalisation"], "||z||");
    let cases = v["cases"].as_array().expect("cases");
    // 2 spectra x 1 D x 1 kappa + 2 presets x 3 times.
    assert_eq!(cases.len(), 11);
    for c in cases {
        let name = c["name"].as_str().expect("name");
        let dim = c["D"].as_u64().expect("D") as usize;
        assert!(c["kappa"].as_f64().expect("kappa") >= 1.0, "{name}");
        let k: Vec<u64> = c["k"]
            .as_array()
            .expect("k")
            .iter()
            .map(|x| x.as_u64().expect("k integer"))
            .collect();
        let num = |key: &str| -> Vec<f64> {
            c[key]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: {key}"))
                .iter()
                .map(|x| x.as_f64().expect("number"))
                .collect()
        };
        let (error, bound) = (num("error"), num("bound"));
        assert_eq!(k, (1..=dim.min(10) as u64).collect::<Vec<_>>(), "{name}");
        assert_eq!(error.len(), k.len());
        assert_eq!(bound.len(), k.len());
        assert_eq!(num("bound_interp").len(), k.len());
        for i in 0..k.len() {
            // The a-priori bound holds in exact arithmetic; here it is >= 1e-9 while rounding is
            // ~1e-15, so no slack.
            assert!(
                error[i] <= bound[i],
                "{name}, k = {}: error {} > bound {}",
                k[i],
                error[i],
                bound[i]
            );
        }
    }
    let t = &v["timing"];
    assert_eq!(t["D"], 64);
    assert!(t["lanczos_s"].is_f64() && t["dense_eig_s"].is_f64() && t["ratio"].is_f64());
    for stem in [
        "fig_geometric",
        "fig_uniform",
        "fig_mixture_mog40",
        "fig_mixture_mix6",
    ] {
        for ext in ["svg", "png"] {
            assert!(d.join(format!("{stem}.{ext}")).is_file(), "{stem}.{ext}");
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1/rho") && stdout.contains("error / bound"),
        "{stdout}"
    );

    // Same seed, two threads: identical cases.
    let d2 = tmp("ok2");
    let (_, v2) = small_run(&d2, "2");
    assert_eq!(v["cases"], v2["cases"]);
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&d2);
}

#[test]
fn bad_input_exits_2_naming_the_flag() {
    let d = tmp("bad");
    for (args, needle) in [
        (vec!["--kmax", "0"], "--kmax"),
        (vec!["--kappas", "10,0.5"], "--kappas"),
        (vec!["--dims", "0"], "--dims"),
        (vec!["--threads", "0"], "--threads"),
        (vec!["--data", "no-such-preset"], "data"),
    ] {
        // Every bad input is rejected before any case runs, so the default sizes cost nothing.
        let out = bin()
            .args(&args)
            .args(["--timing-dim", "0"])
            .arg("--json")
            .arg(d.join("x.json"))
            .arg("--figure")
            .arg(d.join("x"))
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!d.join("x.json").exists(), "nothing written on bad input");
    let _ = std::fs::remove_dir_all(&d);
}

/// `lanczos` with `args` (small and quick), outputs into a temporary directory.
fn run_small(name: &str, args: &[&str]) -> (Output, PathBuf) {
    let d = tmp(name);
    let out = bin()
        .args(["--timing-dim", "0", "--threads", "1"])
        .args(args)
        .arg("--json")
        .arg(d.join("out.json"))
        .arg("--figure")
        .arg(d.join("fig"))
        .output()
        .expect("runs");
    (out, d)
}

#[test]
fn kappa_beyond_f64_resolution_is_bad_input() {
    // 1/kappa = 1e-17 is below the rounding of the Ritz values of an operator with lmax = 1.
    let (out, _) = run_small(
        "kappa1e17",
        &["--dims", "20", "--kappas", "1e17", "--data", ""],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--kappas"), "{err}");
}

#[test]
fn mixture_with_huge_entry_is_bad_input() {
    // A mean of 1e308: the posterior covariance overflows f64.
    let d = tmp("huge");
    let file = d.join("huge.json");
    std::fs::write(
        &file,
        r#"{"weights": [0.5, 0.5], "means": [[1e308, 0.0], [0.0, 1.0]], "covariances": [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]}"#,
    )
    .expect("write");
    let (out, _) = run_small(
        "huge-run",
        &[
            "--dims",
            "10",
            "--kappas",
            "10",
            "--kmax",
            "2",
            "--data",
            file.to_str().expect("utf8"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--data"), "{err}");
}

#[test]
fn one_dimensional_operator_runs_and_draws() {
    let (out, d) = run_small("dims1", &["--dims", "1", "--kappas", "100", "--data", ""]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(d.join("fig_geometric.png").exists() && d.join("fig_uniform.png").exists());
}
