//! Bad input, binary by binary: each row feeds one binary a bad input and asserts exit code
//! 2 (bad input), no panic (no "panicked" in stderr, never exit 101) and the flag or field
//! it names. Runs every row and reports all failures at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A row: the binary, its arguments (`{dir}` is replaced by a temp directory holding the
/// files of [`write_files`]), and a string the error must contain.
struct Row {
    bin: &'static str,
    args: &'static [&'static str],
    names: &'static str,
}

/// No row may compute before refusing: every error comes from validation (seconds, not the
/// minutes the computation would take).
const MAX_SECONDS: f64 = 20.0;

fn bin(name: &str) -> Option<PathBuf> {
    // Binaries behind the candle feature exist only in builds with it.
    let exe = match name {
        "path-kl" => env!("CARGO_BIN_EXE_path-kl"),
        "guidance" => env!("CARGO_BIN_EXE_guidance"),
        "samplers" => env!("CARGO_BIN_EXE_samplers"),
        "lanczos" => env!("CARGO_BIN_EXE_lanczos"),
        "study" => env!("CARGO_BIN_EXE_study"),
        "local-error" => env!("CARGO_BIN_EXE_local-error"),
        #[cfg(feature = "candle")]
        "validate" => env!("CARGO_BIN_EXE_validate"),
        #[cfg(feature = "candle")]
        "bench-gpu" => env!("CARGO_BIN_EXE_bench-gpu"),
        #[cfg(feature = "candle")]
        "learned" => env!("CARGO_BIN_EXE_learned"),
        _ => return None,
    };
    Some(PathBuf::from(exe))
}

fn write_files(dir: &Path) {
    let files = [
        (
            "zero_dim.json",
            r#"{"weights":[1.0],"means":[[]],"covariances":[[]]}"#,
        ),
        (
            "huge_means.json",
            r#"{"weights":[0.5,0.5],"means":[[1e25,0],[-1e25,0]],"covariances":[[[0.5,0],[0,0.5]],[[0.5,0],[0,0.5]]]}"#,
        ),
        (
            "e308.json",
            r#"{"weights":[1.0],"means":[[0,0]],"covariances":[[[1e308,0],[0,1]]]}"#,
        ),
        (
            "ill.json",
            r#"{"weights":[1.0],"means":[[0,0]],"covariances":[[[1,0],[0,1e-16]]]}"#,
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write input");
    }
}

const ROWS: &[Row] = &[
    Row {
        bin: "local-error",
        args: &["--schedules", "ddpm-linear"],
        names: "schedules",
    },
    Row {
        bin: "local-error",
        args: &["--schedules", "vp-linear,vp-linear"],
        names: "schedules",
    },
    Row {
        bin: "local-error",
        args: &["--delta0", "0.7"],
        names: "delta0",
    },
    Row {
        bin: "local-error",
        args: &["--levels", "1"],
        names: "levels",
    },
    Row {
        bin: "local-error",
        args: &["--order", "7"],
        names: "order",
    },
    Row {
        bin: "local-error",
        args: &["--families", "beta,nope"],
        names: "families",
    },
    Row {
        bin: "local-error",
        args: &["--data", "{dir}/zero_dim.json"],
        names: "means[0]",
    },
    Row {
        bin: "local-error",
        args: &["--json", "/proc/nope/x.json"],
        names: "--json",
    },
    Row {
        bin: "path-kl",
        args: &["--data", "{dir}/zero_dim.json"],
        names: "means[0]",
    },
    Row {
        bin: "path-kl",
        args: &["--data", "{dir}/huge_means.json"],
        names: "means[0]",
    },
    Row {
        bin: "path-kl",
        args: &["--data", "{dir}/huge_means.json", "--rule", "qmc"],
        names: "means[0]",
    },
    Row {
        bin: "path-kl",
        args: &["--data", "{dir}/e308.json"],
        names: "covariances[0]",
    },
    Row {
        bin: "path-kl",
        args: &["--data", "{dir}/ill.json", "--rule", "qmc"],
        names: "covariances[0]",
    },
    Row {
        bin: "path-kl",
        args: &["--steps", "10000000"],
        names: "--steps",
    },
    Row {
        bin: "path-kl",
        args: &["--threads", "100000"],
        names: "--threads",
    },
    Row {
        bin: "path-kl",
        args: &["--threads", "0"],
        names: "--threads",
    },
    Row {
        bin: "guidance",
        args: &["--steps", "100000000"],
        names: "--steps",
    },
    Row {
        bin: "samplers",
        args: &["--data", "{dir}/zero_dim.json"],
        names: "means[0]",
    },
    Row {
        bin: "samplers",
        args: &["--data", "{dir}/e308.json"],
        names: "covariances[0]",
    },
    #[cfg(feature = "candle")]
    Row {
        bin: "validate",
        args: &[
            "--data",
            "digits32",
            "--families",
            "full",
            "--samples",
            "0",
            "--ce-data",
            "none",
        ],
        names: "--families",
    },
    #[cfg(feature = "candle")]
    Row {
        bin: "validate",
        args: &["--ce-samples", "0"],
        names: "--ce-samples",
    },
    #[cfg(feature = "candle")]
    Row {
        bin: "validate",
        args: &["--ce-data", "{dir}/zero_dim.json"],
        names: "means[0]",
    },
    #[cfg(feature = "candle")]
    Row {
        bin: "bench-gpu",
        args: &["--trajectory-steps", "0"],
        names: "--trajectory-steps",
    },
    Row {
        bin: "samplers",
        args: &["--data", "grid9,grid9"],
        names: "--data",
    },
    Row {
        bin: "samplers",
        args: &["--threads", "100000"],
        names: "--threads",
    },
    Row {
        bin: "samplers",
        args: &["--last-step", "maybe"],
        names: "--last-step",
    },
    Row {
        bin: "path-kl",
        args: &["--families", "full,full"],
        names: "--families",
    },
    Row {
        bin: "path-kl",
        args: &["--data", "{dir}"],
        names: "directory",
    },
    Row {
        bin: "path-kl",
        args: &["--json", "{dir}/e308.json/x.json"],
        names: "--json",
    },
    Row {
        bin: "lanczos",
        args: &["--kappas", "1e17"],
        names: "--kappas",
    },
    Row {
        bin: "lanczos",
        args: &["--data", "{dir}/e308.json"],
        names: "--data",
    },
    Row {
        bin: "lanczos",
        args: &["--threads", "100000"],
        names: "--threads",
    },
    Row {
        bin: "study",
        args: &["run", "{dir}/no_such_study.toml"],
        names: "no_such_study.toml",
    },
    Row {
        bin: "study",
        args: &["run", "{dir}"],
        names: "directory",
    },
    Row {
        bin: "study",
        args: &["--root", "{dir}/missing", "list"],
        names: "--root",
    },
    Row {
        bin: "study",
        args: &["--root", "{dir}/e308.json", "list"],
        names: "--root",
    },
    Row {
        bin: "study",
        args: &["run", "--all", "--threads", "100000"],
        names: "--threads",
    },
    #[cfg(feature = "candle")]
    Row {
        bin: "learned",
        args: &["train", "--data", "grid9", "--layers", "0"],
        names: "--layers",
    },
    #[cfg(feature = "candle")]
    Row {
        bin: "learned",
        args: &[
            "eval",
            "--data",
            "grid9",
            "--methods",
            "beta-tilde",
            "--steps",
            "1",
            "--mmd-steps",
            "none",
        ],
        names: "--steps",
    },
    #[cfg(feature = "candle")]
    Row {
        bin: "learned",
        args: &["eval", "--data", "digits32"],
        names: "--models",
    },
];

/// `--json` (and `--figure` where the binary has one) into the temp directory, so that no row
/// can write into the repository; `study` rows name their own `--root`.
fn outputs(row: &Row, dir: &Path) -> Vec<String> {
    let json = vec![
        "--json".to_string(),
        dir.join("out.json").display().to_string(),
    ];
    let figure = vec![
        "--figure".to_string(),
        dir.join("fig").display().to_string(),
    ];
    if row.args.contains(&"--json") {
        return figure;
    }
    match row.bin {
        "study" => vec![],
        "validate" => json,
        "learned" if row.args.first() == Some(&"train") => json,
        _ => [json, figure].concat(),
    }
}

#[test]
fn every_bad_input_exits_2_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("covlab-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    write_files(&dir);
    let mut failures = Vec::new();
    for row in ROWS {
        let Some(exe) = bin(row.bin) else { continue };
        let args: Vec<String> = row
            .args
            .iter()
            .map(|a| a.replace("{dir}", &dir.display().to_string()))
            .collect();
        let start = Instant::now();
        let mut child = Command::new(exe)
            .args(&args)
            // Outputs (if any were written) go to the temp directory, never into the repo.
            .args(outputs(row, &dir))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs");
        // A row that computes instead of refusing is killed at the limit (a failure, not a
        // hang: `--threads 100000` used to never finish starting).
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let reader = std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr_pipe, &mut buf);
            buf
        });
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if start.elapsed().as_secs_f64() > MAX_SECONDS {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = reader.join().unwrap_or_default();
        let what = format!("{} {}", row.bin, args.join(" "));
        let Some(status) = status else {
            failures.push(format!(
                "{what}: still running after {MAX_SECONDS} s (killed)"
            ));
            continue;
        };
        let secs = start.elapsed().as_secs_f64();
        if status.code() != Some(2) {
            failures.push(format!(
                "{what}: exit {:?}, stderr: {stderr}",
                status.code()
            ));
        } else if stderr.contains("panicked") {
            failures.push(format!("{what}: panicked: {stderr}"));
        } else if !stderr.contains(row.names) {
            failures.push(format!(
                "{what}: stderr does not name `{}`: {stderr}",
                row.names
            ));
        } else if secs > MAX_SECONDS {
            failures.push(format!("{what}: took {secs:.1} s before refusing"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
