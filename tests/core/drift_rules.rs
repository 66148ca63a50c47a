//! The drift rules of the committed study files compare what is meaningful across CPUs: a
//! round-off size that another machine's SIMD path changes is no drift while it stays within
//! its own tolerance, and every pass flag and every f64-core number still is.

use std::path::PathBuf;

use covlab::study::{compare, StudyFile};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn committed(study: &str) -> (StudyFile, Value) {
    let file = StudyFile::load(
        &repo().join(format!("studies/{study}.toml")),
        &covlab::experiments::registry::REGISTRY,
    )
    .expect("study file");
    let text = std::fs::read_to_string(repo().join(&file.outputs.json)).expect("results");
    (file, serde_json::from_str(&text).expect("json"))
}

/// Maps every `checks.*.value` of a validate document through `f`.
fn map_check_values(doc: &mut Value, f: impl Fn(f64, f64) -> f64) {
    for c in doc["checks"].as_array_mut().expect("checks") {
        let tol = c["tolerance"].as_f64().expect("tolerance");
        let v = c["value"].as_f64().expect("value");
        c["value"] = serde_json::json!(f(v, tol));
    }
}

#[test]
fn validate_round_off_moved_within_tolerance_is_no_drift() {
    let (file, doc) = committed("validate");
    // The observation: an AVX2-only EPYC moved f32 round-off maxima by up to ~1.4x
    // (1.336e-7 -> 1.901e-7). Scale every check value by 1.5, and by 0.5: still round-off,
    // still within tolerance (every committed value is below half its tolerance).
    for factor in [1.5, 0.5] {
        let mut now = doc.clone();
        map_check_values(&mut now, |v, tol| {
            assert!(
                v * 1.5 < tol,
                "committed value {v} not below tolerance {tol} / 1.5"
            );
            v * factor
        });
        let d = compare(&doc, &now, &file.check);
        assert!(d.is_empty(), "factor {factor}: {d:?}");
    }
    // Sample metrics of the f32 chains moved by f32-level rounding (1e-6 relative): no drift.
    let mut now = doc.clone();
    for m in now["sample_metrics"]
        .as_array_mut()
        .expect("sample_metrics")
    {
        for k in ["mmd_tensor", "loglik_tensor", "frechet_sq_tensor"] {
            let v = m[k].as_f64().expect(k);
            m[k] = serde_json::json!(v * (1.0 + 1e-6));
        }
    }
    let d = compare(&doc, &now, &file.check);
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn validate_still_catches_what_matters() {
    let (file, doc) = committed("validate");
    // A value beyond its tolerance drifts.
    let mut now = doc.clone();
    map_check_values(&mut now, |v, tol| if v > 0.0 { 1.01 * tol } else { v });
    let d = compare(&doc, &now, &file.check);
    assert!(d.iter().any(|d| d.path.ends_with(".value")), "{d:?}");
    // A flipped pass flag drifts.
    let mut now = doc.clone();
    now["checks"][0]["pass"] = Value::Bool(false);
    let d = compare(&doc, &now, &file.check);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].path, "checks.0.pass");
    // An exact (f64) path-KL difference that moved by 1e-6 relative drifts (1e-9 rule).
    let mut now = doc.clone();
    let v = now["cross_entropy"][0]["diff_exact"]
        .as_f64()
        .expect("diff_exact");
    now["cross_entropy"][0]["diff_exact"] = serde_json::json!(v * (1.0 + 1e-6));
    let d = compare(&doc, &now, &file.check);
    assert_eq!(d.len(), 1, "{d:?}");
    // A tensor MMD^2 that moved by a tenth of its standard error (another draw) drifts.
    let mut now = doc.clone();
    let m = &mut now["sample_metrics"][0];
    let se = m["mmd_tensor_se"].as_f64().expect("se");
    let v = m["mmd_tensor"].as_f64().expect("mmd");
    m["mmd_tensor"] = serde_json::json!(v + 0.1 * se);
    let d = compare(&doc, &now, &file.check);
    assert_eq!(d.len(), 1, "{d:?}");
}

#[test]
fn every_committed_study_rule_matches_a_number() {
    // A misspelt [[check.keys]] pattern is reported by `compare` itself (as a drift at
    // check.keys[i].path); no committed study file may have one.
    for entry in std::fs::read_dir(repo().join("studies")).expect("studies/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let file =
            StudyFile::load(&path, &covlab::experiments::registry::REGISTRY).expect("study file");
        let Ok(text) = std::fs::read_to_string(repo().join(&file.outputs.json)) else {
            continue; // a study whose result is not committed (none today)
        };
        let doc: Value = serde_json::from_str(&text).expect("json");
        let d = compare(&doc, &doc, &file.check);
        assert!(d.is_empty(), "{}: {d:?}", path.display());
    }
}
