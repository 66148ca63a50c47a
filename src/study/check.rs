//! Drift checks: a fresh run's results JSON against the committed one, to the tolerances the
//! study file states.
//!
//! # Formula
//! ```text
//! numbers a (committed), b (now) at a key path p, with the first [[check.keys]] rule whose
//! pattern matches p (else the file-wide rel/abs):
//!   allowed = abs + rel * max(|a|, |b|) + err_factor * max(err_a, err_b)
//!   drift   <=> |a - b| > allowed        (equal non-finite values never drift)
//! err_a, err_b: the sibling key `err` of the rule (e.g. a reported error estimate), 0 if none.
//! a rule with `bound = KEY` instead compares b with its own tolerance, not with a:
//!   drift   <=> not (|b| <= b's sibling KEY)   (round-off sizes: see below)
//! strings, booleans, null: equal or drift; arrays: equal length, element-wise; objects: the
//! same keys, key-wise.
//! ```
//! Key paths are dotted (`results.3.S`); patterns use `*` for any one segment and match a
//! path's prefix, so `ignore = ["timing"]` skips a whole subtree. `provenance` is never
//! compared. A rule whose pattern matches no number of the committed JSON is itself reported
//! (as a drift at `check.keys[i]`): a misspelt pattern would otherwise silently fall back to
//! the file-wide tolerance.
//!
//! # Round-off is not a result
//! Some values are round-off sizes: the f32-vs-f64 error of a tensor step, a z-score of two
//! chains that differ by rounding. Their size depends on the SIMD path the CPU kernels pick
//! at run time (AVX-512 against AVX2 changes the order of f32 sums), so no relative
//! tolerance between two machines can hold; what is meaningful is that each still lies
//! within the tolerance the study checks it against. `bound` says exactly that.

use serde::Deserialize;
use serde_json::Value;

/// The `[check]` section of a study file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckSpec {
    /// Whether `study check` re-runs the study (false for machine-dependent benches; say why
    /// in a comment).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Whether the study is in the `--quick` subset.
    #[serde(default)]
    pub quick: bool,
    /// Relative tolerance of numbers.
    #[serde(default = "default_rel")]
    pub rel: f64,
    /// Absolute tolerance of numbers.
    #[serde(default)]
    pub abs: f64,
    /// Key patterns never compared (timings, thread counts).
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Per-key tolerances; the first matching rule applies.
    #[serde(default)]
    pub keys: Vec<KeyTolerance>,
}

fn yes() -> bool {
    true
}

fn default_rel() -> f64 {
    1e-9
}

impl Default for CheckSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            quick: false,
            rel: default_rel(),
            abs: 0.0,
            ignore: Vec::new(),
            keys: Vec::new(),
        }
    }
}

/// A tolerance for the keys matching `path`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeyTolerance {
    /// The key pattern (`results.*.S`).
    pub path: String,
    /// Relative tolerance (default: the file-wide one).
    #[serde(default)]
    pub rel: Option<f64>,
    /// Absolute tolerance (default: the file-wide one).
    #[serde(default)]
    pub abs: Option<f64>,
    /// A sibling key holding an error estimate added to the allowance (`err`).
    #[serde(default)]
    pub err: Option<String>,
    /// The multiple of the error estimate allowed (default 1).
    #[serde(default = "one")]
    pub err_factor: f64,
    /// A sibling key holding the value's own tolerance (`tolerance`): the value is not
    /// compared with the committed one; it drifts when it is not finite or exceeds that
    /// tolerance now. For round-off sizes, whose value is machine-dependent.
    #[serde(default)]
    pub bound: Option<String>,
}

fn one() -> f64 {
    1.0
}

impl CheckSpec {
    /// Checks the tolerances: finite and non-negative.
    ///
    /// # Errors
    /// `(key, message)` of the first bad value.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        if !ok(self.rel) {
            return Err((
                "check.rel".into(),
                format!("a finite number >= 0, got {}", self.rel),
            ));
        }
        if !ok(self.abs) {
            return Err((
                "check.abs".into(),
                format!("a finite number >= 0, got {}", self.abs),
            ));
        }
        for (i, k) in self.keys.iter().enumerate() {
            for (name, v) in [
                ("rel", k.rel),
                ("abs", k.abs),
                ("err-factor", Some(k.err_factor)),
            ] {
                if let Some(v) = v {
                    if !ok(v) {
                        return Err((
                            format!("check.keys[{i}].{name}"),
                            format!("a finite number >= 0, got {v}"),
                        ));
                    }
                }
            }
            if k.bound.is_some() && (k.err.is_some() || k.rel.is_some() || k.abs.is_some()) {
                return Err((
                    format!("check.keys[{i}].bound"),
                    "alone: a bound replaces rel, abs and err (the value is compared with its \
                     own tolerance, not with the committed value)"
                        .into(),
                ));
            }
            if k.path.is_empty() {
                return Err((
                    format!("check.keys[{i}].path"),
                    "a key pattern, got \"\"".into(),
                ));
            }
        }
        Ok(())
    }
}

/// One value that moved.
#[derive(Clone, Debug, PartialEq)]
pub struct Drift {
    /// The key path.
    pub path: String,
    /// The committed value (JSON text).
    pub committed: String,
    /// The value now (JSON text).
    pub now: String,
    /// |a - b| for numbers (NaN otherwise).
    pub diff: f64,
    /// The allowance for numbers (NaN otherwise).
    pub allowed: f64,
}

/// Whether the pattern matches the path or a prefix of it.
fn matches(pattern: &str, path: &[String]) -> bool {
    let pat: Vec<&str> = pattern.split('.').collect();
    pat.len() <= path.len() && pat.iter().zip(path).all(|(p, s)| *p == "*" || p == s)
}

/// Every value of `now` that moved from `committed` beyond the spec's tolerances (the
/// top-level `provenance` and the ignored keys skipped), in document order.
#[must_use]
pub fn compare(committed: &Value, now: &Value, spec: &CheckSpec) -> Vec<Drift> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk(committed, now, None, spec, &mut path, &mut out);
    for (i, rule) in spec.keys.iter().enumerate() {
        if !matches_some_number(committed, &rule.path, &mut Vec::new()) {
            out.push(Drift {
                path: format!("check.keys[{i}].path"),
                committed: format!("{:?} matches no number", rule.path),
                now: "(study file)".to_string(),
                diff: f64::NAN,
                allowed: f64::NAN,
            });
        }
    }
    out
}

/// Whether `pattern` matches the path of some number in `v` (`path` is `v`'s own path).
fn matches_some_number(v: &Value, pattern: &str, path: &mut Vec<String>) -> bool {
    match v {
        Value::Number(_) => matches(pattern, path),
        Value::Object(m) => m.iter().any(|(k, x)| {
            path.push(k.clone());
            let hit = matches_some_number(x, pattern, path);
            path.pop();
            hit
        }),
        Value::Array(a) => a.iter().enumerate().any(|(i, x)| {
            path.push(i.to_string());
            let hit = matches_some_number(x, pattern, path);
            path.pop();
            hit
        }),
        _ => false,
    }
}

fn text(v: Option<&Value>) -> String {
    v.map_or_else(
        || "(missing)".to_string(),
        |v| {
            let s = v.to_string();
            if s.len() > 60 {
                format!("{}...", &s[..57])
            } else {
                s
            }
        },
    )
}

fn walk(
    a: &Value,
    b: &Value,
    parents: Option<(&Value, &Value)>,
    spec: &CheckSpec,
    path: &mut Vec<String>,
    out: &mut Vec<Drift>,
) {
    if path.len() == 1 && path[0] == "provenance" {
        return;
    }
    if spec.ignore.iter().any(|p| matches(p, path)) {
        return;
    }
    let drift = |out: &mut Vec<Drift>, path: &[String], diff: f64, allowed: f64| {
        out.push(Drift {
            path: path.join("."),
            committed: text(Some(a)),
            now: text(Some(b)),
            diff,
            allowed,
        });
    };
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            for (k, va) in ma {
                path.push(k.clone());
                match mb.get(k) {
                    Some(vb) => walk(va, vb, Some((a, b)), spec, path, out),
                    None => {
                        let skip = (path.len() == 1 && k == "provenance")
                            || spec.ignore.iter().any(|p| matches(p, path));
                        if !skip {
                            out.push(Drift {
                                path: path.join("."),
                                committed: text(Some(va)),
                                now: text(None),
                                diff: f64::NAN,
                                allowed: f64::NAN,
                            });
                        }
                    }
                }
                path.pop();
            }
            for (k, vb) in mb {
                if !ma.contains_key(k) {
                    path.push(k.clone());
                    let skip = (path.len() == 1 && k == "provenance")
                        || spec.ignore.iter().any(|p| matches(p, path));
                    if !skip {
                        out.push(Drift {
                            path: path.join("."),
                            committed: text(None),
                            now: text(Some(vb)),
                            diff: f64::NAN,
                            allowed: f64::NAN,
                        });
                    }
                    path.pop();
                }
            }
        }
        (Value::Array(va), Value::Array(vb)) => {
            if va.len() != vb.len() {
                drift(out, path, f64::NAN, f64::NAN);
            }
            for (i, (x, y)) in va.iter().zip(vb).enumerate() {
                path.push(i.to_string());
                walk(x, y, Some((a, b)), spec, path, out);
                path.pop();
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            let rule = spec.keys.iter().find(|k| matches(&k.path, path));
            if let Some(key) = rule.and_then(|r| r.bound.as_ref()) {
                let bound = parents
                    .and_then(|(_, pb)| pb.get(key))
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::NAN);
                // NaN (a missing bound, a non-finite value) drifts too.
                if !matches!(
                    y.abs().partial_cmp(&bound),
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                ) {
                    drift(out, path, y.abs(), bound);
                }
                return;
            }
            let rel = rule.and_then(|r| r.rel).unwrap_or(spec.rel);
            let abs = rule.and_then(|r| r.abs).unwrap_or(spec.abs);
            let err = rule
                .and_then(|r| r.err.as_ref().map(|e| (e, r.err_factor)))
                .and_then(|(key, factor)| {
                    let (pa, pb) = parents?;
                    let ea = pa.get(key).and_then(Value::as_f64).unwrap_or(0.0);
                    let eb = pb.get(key).and_then(Value::as_f64).unwrap_or(0.0);
                    Some(factor * ea.abs().max(eb.abs()))
                })
                .unwrap_or(0.0);
            let allowed = abs + rel * x.abs().max(y.abs()) + err;
            let diff = (x - y).abs();
            // NaN (a non-number) drifts too.
            if !matches!(
                diff.partial_cmp(&allowed),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            ) {
                drift(out, path, diff, allowed);
            }
        }
        _ => {
            if a != b {
                drift(out, path, f64::NAN, f64::NAN);
            }
        }
    }
}

/// The drift table: one line per moved value.
#[must_use]
pub fn drift_table(study: &str, drifts: &[Drift]) -> String {
    let mut s = String::new();
    for d in drifts {
        let num = |x: f64| {
            if x.is_nan() {
                "-".to_string()
            } else {
                format!("{x:.3e}")
            }
        };
        s.push_str(&format!(
            "{study:<28} {:<40} {:>24} {:>24} {:>10} {:>10}\n",
            d.path,
            d.committed,
            d.now,
            num(d.diff),
            num(d.allowed)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_within_and_beyond_tolerance() {
        let spec = CheckSpec {
            rel: 1e-6,
            ignore: vec!["wall_time_s".into(), "rows.*.t".into()],
            keys: vec![KeyTolerance {
                path: "rows.*.S".into(),
                rel: Some(0.0),
                abs: Some(0.0),
                err: Some("err".into()),
                err_factor: 2.0,
                bound: None,
            }],
            ..CheckSpec::default()
        };
        let a = json!({"x": 1.0, "wall_time_s": 3.0, "rows": [{"S": 1.0, "err": 0.1, "t": 1}], "provenance": {"git_commit": "a"}});
        // x within 1e-6 relative, S within 2 err, ignored keys and provenance free to move.
        let b = json!({"x": 1.0 + 5e-7, "wall_time_s": 9.0, "rows": [{"S": 1.19, "err": 0.1, "t": 7}], "provenance": {"git_commit": "b"}});
        assert!(compare(&a, &b, &spec).is_empty());
        let c =
            json!({"x": 1.0 + 2e-6, "wall_time_s": 9.0, "rows": [{"S": 1.21, "err": 0.1, "t": 7}]});
        let d = compare(&a, &c, &spec);
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        // Document order (keys sorted); the provenance missing from `c` is not a drift.
        assert_eq!(paths, ["rows.0.S", "x"]);
    }

    #[test]
    fn bound_compares_with_the_value_own_tolerance() {
        let spec = CheckSpec {
            rel: 1e-2,
            keys: vec![KeyTolerance {
                path: "checks.*.value".into(),
                rel: None,
                abs: None,
                err: None,
                err_factor: 1.0,
                bound: Some("tolerance".into()),
            }],
            ..CheckSpec::default()
        };
        let a = json!({"checks": [{"value": 1.3e-7, "tolerance": 1e-5, "pass": true}]});
        // A round-off size that moved 50x on another CPU is no drift while within tolerance
        // (the file-wide 1e-2 relative would call it one).
        let b = json!({"checks": [{"value": 6.5e-6, "tolerance": 1e-5, "pass": true}]});
        assert!(compare(&a, &b, &spec).is_empty());
        // Beyond its tolerance it drifts (and so does the pass flag), and so does a NaN.
        let c = json!({"checks": [{"value": 2e-5, "tolerance": 1e-5, "pass": false}]});
        let paths: Vec<String> = compare(&a, &c, &spec).into_iter().map(|d| d.path).collect();
        assert_eq!(paths, ["checks.0.pass", "checks.0.value"]);
        let n = json!({"checks": [{"value": null, "tolerance": 1e-5, "pass": true}]});
        assert_eq!(compare(&a, &n, &spec).len(), 1);
        // The tolerance itself is an ordinary number (file-wide 1e-2 relative).
        let t = json!({"checks": [{"value": 1e-7, "tolerance": 2e-5, "pass": true}]});
        let paths: Vec<String> = compare(&a, &t, &spec).into_iter().map(|d| d.path).collect();
        assert_eq!(paths, ["checks.0.tolerance"]);
    }

    #[test]
    fn a_rule_matching_nothing_is_reported() {
        let spec = CheckSpec {
            keys: vec![KeyTolerance {
                path: "rows.*.s_ful".into(),
                rel: Some(1e-3),
                abs: None,
                err: None,
                err_factor: 1.0,
                bound: None,
            }],
            ..CheckSpec::default()
        };
        let a = json!({"rows": [{"s_full": 1.0}]});
        let d = compare(&a, &a, &spec);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "check.keys[0].path");
        assert!(d[0].committed.contains("s_ful"));
    }

    #[test]
    fn bound_goes_alone() {
        let mut spec = CheckSpec::default();
        spec.keys.push(KeyTolerance {
            path: "x".into(),
            rel: Some(1e-3),
            abs: None,
            err: None,
            err_factor: 1.0,
            bound: Some("tolerance".into()),
        });
        assert_eq!(spec.validate().unwrap_err().0, "check.keys[0].bound");
    }

    #[test]
    fn structure_changes_drift() {
        let spec = CheckSpec::default();
        let a = json!({"a": [1, 2], "s": "x", "gone": true});
        let b = json!({"a": [1, 2, 3], "s": "y", "new": null});
        let d = compare(&a, &b, &spec);
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["a", "gone", "s", "new"]);
    }
}
