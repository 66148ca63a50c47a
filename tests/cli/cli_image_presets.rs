//! The `image-presets` binary: grids written, bad preset -> exit code 2.

use std::process::Command;

#[test]
fn grids_and_bad_preset() {
    let d = std::env::temp_dir().join(format!("covlab-cli-images-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_image-presets"))
        .args(["--presets", "digits8", "--samples", "16"])
        .arg("--out")
        .arg(&d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.join("samples_digits8.png").exists());
    let out = Command::new(env!("CARGO_BIN_EXE_image-presets"))
        .args(["--presets", "cifar10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cifar10"));
}
