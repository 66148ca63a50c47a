//! The candle tensor path (feature `candle`, CPU device) against the f64 core: ln q, score,
//! posterior mean and H v (analytic and by autograd) on the digits8 image mixture.
//! Every test is written once over a device (`device_tests!`): CPU in CI, CUDA with `--features cuda`.
#![cfg(feature = "candle")]

use std::sync::Arc;

use anyhow::Result;
use covlab::data::images;
use covlab::score::LocalScore;
use covlab::tensor::candle_core::{Device, Tensor, Var};
use covlab::tensor::{
    batch, lanczos_batched, log_sum_exp0, relative_error as rel, TensorError, TensorMixture,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

device_tests!(
    tensor_mixture_matches_the_f64_core_on_digits8,
    log_sum_exp_gradient_is_the_softmax,
    batched_tensor_lanczos_matches_the_f64_lanczos_per_sample,
);

fn tensor_mixture_matches_the_f64_core_on_digits8(dev: &Device) -> Result<()> {
    // f32 arithmetic over D = 64, K = 10, r = 8: relative errors ~1e-6 per op, ~1e-5 after
    // the Woodbury solves and the responsibilities; 1e-4 leaves a margin of 10 (the issue's
    // GPU target for sqrt(C) z is 1e-4, for the mean 1e-5: the mean is checked at 1e-5).
    let ln_abar = -0.7;
    let q0 = images::load("digits8")?;
    let qt = Arc::new(q0.marginal(ln_abar)?);
    let tm = TensorMixture::new(&qt, dev)?;
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let xs: Vec<Vec<f64>> = qt
        .sample(&mut rng, 16)
        .iter()
        .map(|x| x.as_slice().to_vec())
        .collect();
    let vs: Vec<Vec<f64>> = (0..16)
        .map(|_| (0..64).map(|_| rng.gen_range(-1.0..1.0)).collect())
        .collect();
    let x = batch(&xs, dev)?;
    let v = batch(&vs, dev)?;

    let lnq = tm.ln_pdf(&x)?.to_vec1::<f32>()?;
    let score = tm.score(&x)?.to_vec2::<f32>()?;
    let hv = tm.hvp(&x, &v)?.to_vec2::<f32>()?;
    let hv_ad = tm.hvp_autograd(&x, &v)?.to_vec2::<f32>()?;
    let (a, b) = (0.8f64, 0.36f64);
    let mean = tm.posterior_mean(&x, a, b)?.to_vec2::<f32>()?;

    let mut want_s = Vec::new();
    let mut want_hv = Vec::new();
    let mut want_m = Vec::new();
    for (i, xi) in xs.iter().enumerate() {
        let l = qt.ln_pdf(xi)?;
        // ln q ~ 30 here: f32 keeps it to ~1e-5 relative.
        assert!(
            (f64::from(lnq[i]) - l).abs() < 1e-4 * l.abs().max(1.0),
            "ln q {} vs {l}",
            lnq[i]
        );
        let loc = qt.local(xi)?;
        let mut out = vec![0.0; 64];
        loc.hvp(&vs[i], &mut out);
        want_s.push(loc.score().to_vec());
        want_m.push(
            (0..64)
                .map(|j| (xi[j] + b * loc.score()[j]) / a)
                .collect::<Vec<_>>(),
        );
        want_hv.push(out);
    }
    eprintln!(
        "relative errors: score {:.2e}, mean {:.2e}, hvp {:.2e}, hvp autograd {:.2e}",
        rel(&score, &want_s),
        rel(&mean, &want_m),
        rel(&hv, &want_hv),
        rel(&hv_ad, &want_hv)
    );
    assert!(
        rel(&score, &want_s) < 1e-4,
        "score {}",
        rel(&score, &want_s)
    );
    assert!(rel(&mean, &want_m) < 1e-5, "mean {}", rel(&mean, &want_m));
    assert!(
        rel(&hv, &want_hv) < 1e-4,
        "analytic hvp {}",
        rel(&hv, &want_hv)
    );
    assert!(
        rel(&hv_ad, &want_hv) < 1e-4,
        "autograd hvp {}",
        rel(&hv_ad, &want_hv)
    );
    Ok(())
}

fn log_sum_exp_gradient_is_the_softmax(dev: &Device) -> Result<()> {
    // d/dt_k LSE_k(t) = softmax_k(t): the detached max must not drop or bias the gradient.
    let t = Tensor::from_vec(vec![1.0f32, -2.0, 0.5, 3.0, 3.0, -1.0], (3, 2), dev)?;
    let tv = Var::from_tensor(&t)?;
    let l = log_sum_exp0(tv.as_tensor())?.sum_all()?;
    let g = l.backward()?;
    let grad = g
        .get(tv.as_tensor())
        .ok_or_else(|| anyhow::anyhow!("the log-sum-exp dropped the gradient"))?
        .to_vec2::<f32>()?;
    let cols = [[1.0f64, 0.5, 3.0], [-2.0, 3.0, -1.0]];
    for (c, col) in cols.iter().enumerate() {
        let m = col.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = col.iter().map(|v| (v - m).exp()).sum();
        for k in 0..3 {
            let want = (col[k] - m).exp() / z;
            // f32 softmax: 1e-6 absolute.
            assert!((f64::from(grad[k][c]) - want).abs() < 1e-6, "k {k} c {c}");
        }
    }
    Ok(())
}

/// `v -> (b^2 H v + b v) / a^2` from the f64 core, for the reference Lanczos.
struct CoreOp<'a> {
    local: &'a covlab::score::LowRankLocal,
    a2: f64,
    b: f64,
}

impl covlab::linalg::lanczos::LinearOperator for CoreOp<'_> {
    fn dim(&self) -> usize {
        self.local.score().len()
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        self.local.hvp(v, out);
        for (o, vi) in out.iter_mut().zip(v) {
            *o = (self.b * self.b * *o + self.b * vi) / self.a2;
        }
    }
}

fn batched_tensor_lanczos_matches_the_f64_lanczos_per_sample(dev: &Device) -> Result<()> {
    // Clean-data posterior of digits8 at abar = e^-0.7: C = (b^2 H + b I)/a^2, kappa ~ 1e2-1e3.
    // The batched f32 Lanczos and the f64 Lanczos on the same z give the same y_k up to f32
    // rounding: 1e-4 relative (the target for sqrt(C) z) for the k a sampler uses
    // (3, 10; measured 1.7e-5, 4.0e-5). At k = 40 the Krylov space resolves C's smallest
    // eigenvalues, where the f32 operator's relative error (1.8e-6 of ||C||, measured above)
    // is amplified by kappa / 2 ~ 5e2 in sqrt: measured 3.3e-4, asserted below 1e-3.
    let ln_abar: f64 = -0.7;
    let (a2, b) = (ln_abar.exp(), -ln_abar.exp_m1());
    let q0 = images::load("digits8")?;
    let qt = Arc::new(q0.marginal(ln_abar)?);
    let tm = TensorMixture::new(&qt, dev)?;
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let xs: Vec<Vec<f64>> = qt
        .sample(&mut rng, 8)
        .iter()
        .map(|x| x.as_slice().to_vec())
        .collect();
    let zs: Vec<Vec<f64>> = (0..8)
        .map(|_| {
            (0..64)
                .map(|_| rng.sample(rand_distr::StandardNormal))
                .collect()
        })
        .collect();
    let x = batch(&xs, dev)?;
    let z = batch(&zs, dev)?;
    let parts = tm.parts(&x)?;
    let op = |v: &Tensor| -> Result<Tensor, TensorError> {
        Ok((tm.hvp_at(&parts, v)?.affine(b * b / a2, 0.0)? + v.affine(b / a2, 0.0)?)?)
    };
    for k in [3usize, 10, 40] {
        let y = lanczos_batched(&op, &z, k)?
            .apply_fn(|th| th.max(0.0).sqrt())?
            .to_vec2::<f32>()?;
        let mut want = Vec::new();
        for (xi, zi) in xs.iter().zip(&zs) {
            let loc = qt.local(xi)?;
            let op = CoreOp { local: &loc, a2, b };
            let kr = covlab::linalg::lanczos::lanczos(
                &op,
                zi,
                &covlab::linalg::lanczos::LanczosParams::new(k),
            )?;
            want.push(kr.sqrt()?);
        }
        let e = rel(&y, &want);
        eprintln!("k = {k}: batched f32 vs f64 Lanczos, relative {e:.2e}");
        let tol = if k <= 10 { 1e-4 } else { 1e-3 };
        assert!(e < tol, "k = {k}: {e}");
    }
    Ok(())
}
