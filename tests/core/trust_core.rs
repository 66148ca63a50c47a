//! Inputs that used to give silent garbage or a panic in the f64 core: a 0-dimensional
//! mixture, coordinates f64 cannot resolve, a lattice count that saturated, and error bars
//! that did not cover the round-off of ill-conditioned covariances.

use covlab::data::mixture::{Mixture, MixtureError};
use covlab::data::presets::{from_json_str, PresetError};
use covlab::kernel::family::Family;
use covlab::kl::path_kl::{path_kl_sweep, PathKlError, PathKlParams, RuleChoice, MAX_CONDITION};
use covlab::process::schedule::Schedule;
use covlab::quadrature::{gauss_hermite_tensor, lattice, LatticeParams};
use nalgebra::{DMatrix, DVector};

fn mixture_error(text: &str) -> MixtureError {
    match from_json_str(text, "test") {
        Err(PresetError::Mixture(e)) => e,
        other => panic!("expected a mixture error, got {other:?}"),
    }
}

#[test]
fn zero_dimensional_mixture_is_an_error_not_a_panic() {
    let e = mixture_error(r#"{"weights":[1.0],"means":[[]],"covariances":[[]]}"#);
    assert_eq!(e, MixtureError::ZeroDimension);
    assert!(e.to_string().contains("means[0]"), "{e}");
}

#[test]
fn coordinates_beyond_f64_resolution_are_refused() {
    // The issue's file: means at +-1e25 with variances 0.5 (path-kl printed S = 10.05).
    let e = mixture_error(
        r#"{"weights":[0.5,0.5],"means":[[1e25,0],[-1e25,0]],"covariances":[[[0.5,0],[0,0.5]],[[0.5,0],[0,0.5]]]}"#,
    );
    assert!(
        matches!(e, MixtureError::Unresolved { index: 0, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("means[0]"), "{e}");
    // 1e308 entries (finite) overflow their squares: refused by magnitude.
    let e = mixture_error(r#"{"weights":[1.0],"means":[[0,0]],"covariances":[[[1e308,0],[0,1]]]}"#);
    assert!(matches!(e, MixtureError::TooLarge { .. }), "{e:?}");
    let e = mixture_error(r#"{"weights":[1.0],"means":[[1e308,0]],"covariances":[[[1,0],[0,1]]]}"#);
    assert!(
        matches!(e, MixtureError::TooLarge { field: "means", .. }),
        "{e:?}"
    );
    // Far but resolvable (1e6 sd away) is valid data.
    assert!(from_json_str(
        r#"{"weights":[1.0],"means":[[1e6,0]],"covariances":[[[1,0],[0,1]]]}"#,
        "test"
    )
    .is_ok());
}

#[test]
fn lattice_count_never_saturates_or_wraps() {
    let q = Mixture::from_dense(
        vec![1.0],
        vec![DVector::from_vec(vec![0.0, 0.0])],
        vec![DMatrix::identity(2, 2)],
    )
    .expect("mixture");
    // h = 1e-300 sd: the half-count 1e301 saturated `as usize` and `div_ceil(4) * 4` wrapped
    // to 0, a one-node "lattice". It must be refused as too large.
    let tiny = LatticeParams {
        h_frac: 1e-300,
        ..LatticeParams::default()
    };
    assert!(lattice(&q, &tiny).is_none());
    // A count whose product overflows usize even with an unlimited node budget.
    let unlimited = LatticeParams {
        h_frac: 1e-7,
        max_nodes: usize::MAX,
        extent: 10.0,
    };
    let q3 = Mixture::from_dense(
        vec![1.0],
        vec![DVector::zeros(3)],
        vec![DMatrix::identity(3, 3)],
    )
    .expect("mixture");
    assert!(lattice(&q3, &unlimited).is_none());
}

#[test]
fn tensor_gauss_hermite_never_wraps() {
    // 8^64 = 2^192: `n.pow(d)` wrapped to 0 in release builds (an empty rule) and panicked
    // in checked ones (the digits8 path KL in the test profile).
    assert!(gauss_hermite_tensor(8, 64).is_none());
    let (nodes, weights) = gauss_hermite_tensor(3, 2).expect("9 nodes");
    assert_eq!((nodes.len(), weights.len()), (18, 9));
    // A normalised rule: the weights of N(0, I) sum to 1 (to round-off).
    assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-14);
}

fn diag_gaussian(scale: f64, small: f64) -> Mixture {
    Mixture::from_dense(
        vec![1.0],
        vec![DVector::from_vec(vec![0.0, 0.0])],
        vec![DMatrix::from_diagonal(&DVector::from_vec(vec![
            scale,
            scale * small,
        ]))],
    )
    .expect("mixture")
}

/// (S_full, err) at T = 8 and 64, or `None` when the lattice is refused as too large.
fn s_full(q: &Mixture, schedule: &Schedule, rule: RuleChoice) -> Option<Vec<(f64, f64)>> {
    let params = PathKlParams {
        families: vec![Family::Full],
        rule,
        ..PathKlParams::default()
    };
    match path_kl_sweep(q, schedule, &[8, 64], &params, &|_, _| {}) {
        Ok(r) => Some(r.rows.iter().map(|row| (row.s.value, row.s.err)).collect()),
        Err(PathKlError::LatticeTooLarge { .. }) => None,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn error_bars_cover_round_off_of_ill_conditioned_covariances() {
    // S_full = 0 exactly for Gaussian data. Before the floor counted the cancellation in
    // 1 + b mu, diag(1, 1e-8) gave |S_full| = 3e-11 +- 1.4e-13, diag(1, 1e-10)
    // 4.5e-8 +- 1.5e-13, and snr-uniform on 0.01 I (any condition) 3.5e-11 +- 1e-13.
    for k in [0, 2, 4, 6, 8, 10] {
        for scale in [1.0, 0.01, 100.0] {
            let q = diag_gaussian(scale, 10f64.powi(-k));
            for schedule in [
                Schedule::vp_linear(),
                Schedule::cosine(),
                Schedule::snr_uniform(),
            ] {
                for rule in [RuleChoice::Qmc, RuleChoice::Lattice] {
                    let Some(rows) = s_full(&q, &schedule, rule) else {
                        continue; // lattice too large for this condition: refused, fine
                    };
                    for (v, err) in rows {
                        assert!(
                            v.abs() <= err,
                            "k = {k}, scale {scale}, {schedule:?} {rule:?}: S_full = {v:e} +- {err:e}"
                        );
                        // The bar stays meaningful: the true round-off measured here is
                        // ~20 eps 10^k (k >= 6); the floor may overstate it, but by at most
                        // ~50x (1000 eps 10^k), plus 1e-8 for snr-uniform's last step
                        // (1 + b mu = 1.8e-6: true round-off 3.5e-11, bar 3.9e-9).
                        let cap = 1000.0 * f64::EPSILON * 10f64.powi(k) + 1e-8;
                        assert!(err < cap, "k = {k}: err {err:e} > {cap:e}");
                    }
                }
            }
        }
    }
}

#[test]
fn beyond_f64_condition_is_refused() {
    // The issue's diag(1, 1e-16): S_full(8) = -0.104 +- 2e-13 where 0 is exact.
    let q = diag_gaussian(1.0, 1e-16);
    let params = PathKlParams {
        families: vec![Family::Full],
        rule: RuleChoice::Qmc,
        ..PathKlParams::default()
    };
    let e = path_kl_sweep(&q, &Schedule::vp_linear(), &[8], &params, &|_, _| {}).unwrap_err();
    match e {
        PathKlError::IllConditioned {
            index: 0,
            condition,
        } => {
            assert!(condition > MAX_CONDITION, "{condition}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e_text(&q).contains("covariances[0]"));
}

fn e_text(q: &Mixture) -> String {
    let params = PathKlParams::default();
    path_kl_sweep(q, &Schedule::vp_linear(), &[8], &params, &|_, _| {})
        .unwrap_err()
        .to_string()
}
