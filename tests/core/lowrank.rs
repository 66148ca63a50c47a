//! Low-rank-plus-diagonal mixtures against the dense mixture code at small D.

use std::sync::Arc;

use covlab::data::lowrank::{LowRankComponent, LowRankMixture};
use covlab::data::mixture::Mixture;
use covlab::process::schedule::Schedule;
use covlab::sampler::{step_with_noise, LgsOptions, SamplerConfig, SamplerFamily};
use covlab::score::LowRankScore;
use covlab::score::{LocalScore, ScoreModel};
use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn pair(d: usize, r: usize, k: usize) -> (LowRankMixture, Mixture) {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let mut comps = Vec::new();
    let (mut means, mut covs) = (Vec::new(), Vec::new());
    for i in 0..k {
        let mean = DVector::from_fn(d, |_, _| rng.gen_range(-2.0..2.0));
        let u = DMatrix::from_fn(d, r, |_, _| rng.gen_range(-1.0..1.0));
        let dg = DVector::from_fn(d, |_, _| rng.gen_range(0.05..0.5));
        let c = LowRankComponent::new(i, mean.clone(), u, dg).unwrap();
        covs.push(c.covariance());
        means.push(mean);
        comps.push(c);
    }
    let w = vec![1.0 / k as f64; k];
    (
        LowRankMixture::new(w.clone(), comps).unwrap(),
        Mixture::from_dense(w, means, covs).unwrap(),
    )
}

#[test]
fn density_score_and_hvp_match_the_dense_code() {
    // Same quantities by Woodbury / determinant lemma vs dense Cholesky / eigen code:
    // agreement to 1e-10 relative (O(1) values, a few hundred flops either way).
    let (lr, dense) = pair(5, 2, 3);
    for ln_abar in [0.0, -0.4, -3.0] {
        let lr_t = Arc::new(lr.marginal(ln_abar).unwrap());
        let de_t = dense.marginal(ln_abar).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..5 {
            let x: Vec<f64> = (0..5).map(|_| rng.gen_range(-2.5..2.5)).collect();
            let v: Vec<f64> = (0..5).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let a = lr_t.ln_pdf(&x).unwrap();
            let b = de_t.ln_pdf(&x).unwrap();
            assert!((a - b).abs() < 1e-10 * (1.0 + b.abs()), "ln q {a} vs {b}");
            let loc = lr_t.local(&x).unwrap();
            let g = de_t.score(&x).unwrap();
            let hv = de_t.hvp(&x, &v).unwrap();
            let mut out = vec![0.0; 5];
            loc.hvp(&v, &mut out);
            for i in 0..5 {
                assert!((loc.score()[i] - g[i]).abs() < 1e-10 * (1.0 + g[i].abs()));
                assert!((out[i] - hv[i]).abs() < 1e-10 * (1.0 + hv[i].abs()));
            }
        }
    }
}

#[test]
fn lgs_with_k_equal_d_matches_full_on_the_low_rank_model() {
    // The seam's default dense Hessian (D products) feeds `full`; Lanczos with k = D spans
    // R^D: the steps agree to the Lanczos round-off, 1e-8.
    let (lr, _) = pair(5, 2, 3);
    let model = LowRankScore::new(lr);
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let x: Vec<f64> = (0..5).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let z: Vec<f64> = (0..5).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let full = SamplerConfig::new(SamplerFamily::Full, Schedule::vp_linear(), 10);
    let lgs = SamplerConfig::new(
        SamplerFamily::Lgs(LgsOptions::new(5)),
        Schedule::vp_linear(),
        10,
    );
    let a = step_with_noise(&model, &full, 3, &x, &z).unwrap();
    let b = step_with_noise(&model, &lgs, 3, &x, &z).unwrap();
    for i in 0..5 {
        assert!((a[i] - b[i]).abs() < 1e-8, "{a:?} vs {b:?}");
    }
    assert_eq!(model.dim(), 5);
}

#[test]
fn exact_draws_have_the_component_covariance() {
    // One component, n = 40,000: sample covariance within 4 standard errors
    // sqrt((S_ii S_jj + S_ij^2)/n) of U U^T + diag(d).
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let u = DMatrix::from_fn(4, 2, |_, _| rng.gen_range(-1.0..1.0));
    let c = LowRankComponent::new(0, DVector::zeros(4), u, DVector::from_element(4, 0.2)).unwrap();
    let s = c.covariance();
    let q = LowRankMixture::new(vec![1.0], vec![c]).unwrap();
    let n = 40_000;
    let xs = q.sample(&mut rng, n);
    let (_, cov) = covlab::stats::sample_moments(&xs).unwrap();
    for i in 0..4 {
        for j in 0..4 {
            let se = ((s[(i, i)] * s[(j, j)] + s[(i, j)].powi(2)) / n as f64).sqrt();
            assert!((cov[(i, j)] - s[(i, j)]).abs() < 4.0 * se);
        }
    }
}

#[test]
fn bad_components_are_named_errors() {
    let e = LowRankComponent::new(
        3,
        DVector::zeros(3),
        DMatrix::zeros(3, 1),
        DVector::from_vec(vec![1.0, 0.0, 1.0]),
    );
    assert!(e.unwrap_err().to_string().contains("diagonals[3]"));
    let e = LowRankComponent::new(
        1,
        DVector::zeros(3),
        DMatrix::zeros(2, 1),
        DVector::from_element(3, 1.0),
    );
    assert!(e.unwrap_err().to_string().contains("factors[1]"));
    let c = LowRankComponent::new(
        0,
        DVector::zeros(3),
        DMatrix::zeros(3, 1),
        DVector::from_element(3, 1.0),
    )
    .unwrap();
    assert!(LowRankMixture::new(vec![0.5], vec![c]).is_err());
}

#[test]
fn closed_form_hessian_diagonal_matches_the_dense_hessian() {
    // diag H from the cached diag Sigma_k^{-1} (Woodbury) against the diagonal of the dense
    // code's Hessian, D = 8, rank 3: 1e-10 relative (O(1) values).
    let (lr, dense) = pair(8, 3, 4);
    for ln_abar in [0.0, -0.5, -2.5] {
        let lr_t = Arc::new(lr.marginal(ln_abar).unwrap());
        let de_t = dense.marginal(ln_abar).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..4 {
            let x: Vec<f64> = (0..8).map(|_| rng.gen_range(-2.5..2.5)).collect();
            let h = de_t.hessian(&x).unwrap();
            let got = lr_t.local(&x).unwrap().hessian_diag();
            for i in 0..8 {
                assert!(
                    (got[i] - h[(i, i)]).abs() < 1e-10 * (1.0 + h[(i, i)].abs()),
                    "ln abar {ln_abar}, i {i}: {} vs {}",
                    got[i],
                    h[(i, i)]
                );
            }
        }
    }
}
