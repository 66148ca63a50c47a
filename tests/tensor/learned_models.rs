//! The learned models: the OCM objective's unbiasedness, a short OCM training run against a
//! closed form, autograd `J^T v` through the MLP against finite differences, the exact
//! per-row-time mixture score against the f64 core, checkpoints and reproducible training.
//! Every test is written once over a device (`device_tests!`).
#![cfg(feature = "candle")]

use anyhow::Result;
use covlab::data::mixture::Mixture;
use covlab::learned::checkpoint::CheckpointMeta;
use covlab::learned::train::DataSampler;
use covlab::learned::{
    load_head, load_score, save_head, save_score, train_head, train_score, GaussianPrior, HeadKind,
    HeadScore, LearnedError, MlpShape, ModelKind, RowTimes, ScoreNet, TimeMixture, TimeMlp,
    TrainParams,
};
use covlab::tensor::candle_core::{DType, Device, Tensor};
use covlab::tensor::host_flat;
use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Exact draws of `q0` as a training data source.
fn sampler(q0: &Mixture) -> impl Fn(&mut ChaCha8Rng, usize) -> Vec<DVector<f64>> + Sync + '_ {
    move |rng, n| q0.sample(rng, n)
}

device_tests!(
    rademacher_products_average_to_diag_h,
    time_mixture_score_and_hvp_match_the_f64_core,
    ocm_head_learns_diag_h_of_a_gaussian,
    autograd_jt_v_through_the_mlp_equals_finite_differences,
    checkpoints_round_trip_and_training_is_reproducible,
);

/// `E_v[v .* (H v)] = diag H` for Rademacher `v`: the Monte Carlo mean of N products against
/// `diag H`, coordinate by coordinate, within 5 standard deviations of the mean; the variance
/// of `v_i (H v)_i = H_ii + sum_{j != i} H_ij v_i v_j` is `sum_{j != i} H_ij^2` exactly. Through
/// the candle route: `H v` by autograd of the exact mixture score at a point of mog40-unit's
/// `q_t` whose Hessian is not diagonal (a point between components).
fn rademacher_products_average_to_diag_h(device: &Device) -> Result<()> {
    let q0 = covlab::data::presets::load("mog40-unit")?;
    let ln_abar = -0.05;
    let qt = q0.marginal(ln_abar)?;
    // The grid point with the most non-diagonal Hessian.
    let mut best = ([0.0, 0.0], 0.0);
    for i in 0..40 {
        for j in 0..40 {
            let p = [-1.0 + 0.05 * i as f64, -1.0 + 0.05 * j as f64];
            let h = qt.hessian(&p)?;
            let r = h[(0, 1)].abs() / h[(0, 0)].abs().max(h[(1, 1)].abs());
            if r > best.1 {
                best = (p, r);
            }
        }
    }
    let x = best.0;
    let h = qt.hessian(&x)?;
    let tm = TimeMixture::new(&q0, device)?;
    let n = 20_000;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let v: Vec<f32> = (0..n * 2)
        .map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 })
        .collect();
    let vt = Tensor::from_vec(v.clone(), (n, 2), device)?;
    let xs = Tensor::from_vec(
        (0..n)
            .flat_map(|_| x.map(|v| v as f32))
            .collect::<Vec<f32>>(),
        (n, 2),
        device,
    )?;
    let hv = host_flat(&tm.hvp(&xs, &RowTimes::same(ln_abar, n), &vt)?)?;
    for i in 0..2 {
        let mean: f64 = (0..n)
            .map(|r| f64::from(v[r * 2 + i]) * hv[r * 2 + i])
            .sum::<f64>()
            / n as f64;
        let sd = (h[(i, 1 - i)].powi(2) / n as f64).sqrt();
        assert!(
            h[(0, 1)].abs() > 0.3 * h[(i, i)].abs(),
            "the point must have a non-diagonal H: {h}"
        );
        // 5 standard deviations of the mean, plus the f32 rounding of H v (1e-5 relative).
        assert!(
            (mean - h[(i, i)]).abs() < 5.0 * sd + 1e-5 * h.norm(),
            "coordinate {i}: {mean} vs diag H {} (sd {sd})",
            h[(i, i)]
        );
    }
    Ok(())
}

/// The per-row-time mixture score and its autograd `H v` equal the f64 core's score and
/// Hessian at rows with different times (f32: 1e-5 relative to the row's norm).
fn time_mixture_score_and_hvp_match_the_f64_core(device: &Device) -> Result<()> {
    let q0 = covlab::data::presets::load("grid9")?;
    let tm = TimeMixture::new(&q0, device)?;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let times: Vec<f64> = (0..12).map(|i| -0.002 * 3f64.powi(i / 2)).collect();
    let xs: Vec<[f64; 2]> = times
        .iter()
        .map(|_| [rng.gen_range(-4.0..4.0), rng.gen_range(-4.0..4.0)])
        .collect();
    let n = xs.len();
    let xt = Tensor::from_vec(
        xs.iter()
            .flat_map(|x| x.map(|v| v as f32))
            .collect::<Vec<f32>>(),
        (n, 2),
        device,
    )?;
    let rt = RowTimes {
        ln_abar: times.clone(),
    };
    let v = Tensor::from_vec([1f32, -0.5].repeat(n), (n, 2), device)?;
    let s = host_flat(&tm.score(&xt, &rt)?)?;
    let hv = host_flat(&tm.hvp(&xt, &rt, &v)?)?;
    for (r, x) in xs.iter().enumerate() {
        // The f32 input point, so that only the arithmetic differs.
        let xr = [f64::from(x[0] as f32), f64::from(x[1] as f32)];
        let q = q0.marginal(times[r])?;
        let se = q.score(&xr)?;
        let he = q.hessian(&xr)? * DVector::from_vec(vec![1.0, -0.5]);
        let es = ((s[2 * r] - se[0]).powi(2) + (s[2 * r + 1] - se[1]).powi(2)).sqrt();
        let eh = ((hv[2 * r] - he[0]).powi(2) + (hv[2 * r + 1] - he[1]).powi(2)).sqrt();
        // f32 score of grid9 (sd 0.1): relative rounding 1e-6 times the condition of the
        // softmax; 1e-4 relative (plus 1e-3 absolute for near-zero rows) is far below any bug.
        assert!(es < 1e-4 * se.norm() + 1e-3, "row {r}: score {es}");
        assert!(
            eh < 1e-4 * he.norm() + 1e-2,
            "row {r}: H v {eh} of {}",
            he.norm()
        );
    }
    Ok(())
}

/// A single Gaussian N(0, diag(0.25, 4)) has H = -diag(1 / (abar s_i + 1 - abar)), constant in
/// x: 1500 iterations of the `ocm` objective (exact score, M = 1) bring the head's output
/// `o = 1 + (1 - abar) h` within 0.03 of `abar s_i / (abar s_i + 1 - abar)` at every tested
/// time (o lies in [0, 1]; an untrained head starts at the isotropic prior, off by up to 0.55).
fn ocm_head_learns_diag_h_of_a_gaussian(device: &Device) -> Result<()> {
    let vars = [0.25, 4.0];
    let q0 = Mixture::from_dense(
        vec![1.0],
        vec![DVector::zeros(2)],
        vec![DMatrix::from_diagonal(&DVector::from_vec(vars.to_vec()))],
    )?;
    let tm = TimeMixture::new(&q0, device)?;
    let prior = GaussianPrior::from_moments(vec![0.0, 0.0], vars.iter().sum());
    let draws = sampler(&q0);
    let data: DataSampler<'_> = &draws;
    let params = TrainParams {
        iterations: 1500,
        batch: 128,
        lr: 3e-3,
        hidden: 32,
        layers: 2,
        lambda_range: (-6.0, 6.0),
        ..TrainParams::default()
    };
    let (head, info) = train_head(
        HeadKind::Ocm,
        data,
        prior,
        HeadScore::Exact(&tm),
        &params,
        device,
        |_, _| {},
    )?;
    println!(
        "[time] ocm head on a Gaussian: {:.2} s ({:.0} it/s)",
        info.wall_s, info.its_per_s
    );
    let mut worst: f64 = 0.0;
    for lambda in [-4.0, -2.0, 0.0, 2.0, 4.0] {
        let ln_abar = covlab::learned::conditioning::ln_abar_of_lambda(lambda);
        let xs = Tensor::from_vec(vec![0.3f32, -1.0, -0.5, 2.0], (2, 2), device)?;
        let o = host_flat(&head.output(&xs, &RowTimes::same(ln_abar, 2))?)?;
        let abar = ln_abar.exp();
        for r in 0..2 {
            for i in 0..2 {
                let truth = abar * vars[i] / (abar * vars[i] + 1.0 - abar);
                worst = worst.max((o[r * 2 + i] - truth).abs());
            }
        }
    }
    assert!(
        worst < 0.03,
        "largest |o - (1 + (1 - abar) H_ii)| = {worst}"
    );
    Ok(())
}

/// `J^T v` by reverse mode through the MLP (f64 copy of a random network with O(1) residual
/// weights) against the Jacobian by central differences of the network's own score, step 1e-5
/// (truncation ~1e-10, rounding ~1e-11): 1e-7 relative. A dropped gradient anywhere in the
/// network (time features, a layer, the prior) would miss by O(1). The forward-mode Jacobian
/// (tangent propagation, no autograd) must match the same differences.
fn autograd_jt_v_through_the_mlp_equals_finite_differences(device: &Device) -> Result<()> {
    let d = 3;
    let shape = MlpShape {
        input: d,
        output: d,
        hidden: 16,
        layers: 2,
        fourier: 4,
    };
    let (mlp, _) = TimeMlp::init(shape, 11, 1.0, device)?;
    let prior = GaussianPrior::from_moments(vec![0.2, -0.1, 0.4], 3.0);
    let net = ScoreNet::from_parts(mlp.frozen(), prior, device).to_dtype(DType::F64)?;
    let ln_abar = -0.7;
    let x0 = [0.3, -0.8, 1.1];
    let v = [0.5, -1.0, 2.0];
    let times = RowTimes::same(ln_abar, 1);
    let score_at = |x: &[f64]| -> Result<Vec<f64>> {
        let t = Tensor::from_vec(x.to_vec(), (1, d), device)?;
        Ok(host_flat(&net.score(&t, &times)?)?)
    };
    let jtv = host_flat(&net.jt_v(
        &Tensor::from_vec(x0.to_vec(), (1, d), device)?,
        &times,
        &Tensor::from_vec(v.to_vec(), (1, d), device)?,
    )?)?;
    let eps = 1e-5;
    let mut jac = DMatrix::zeros(d, d);
    for j in 0..d {
        let (mut xp, mut xm) = (x0, x0);
        xp[j] += eps;
        xm[j] -= eps;
        let (sp, sm) = (score_at(&xp)?, score_at(&xm)?);
        for i in 0..d {
            jac[(i, j)] = (sp[i] - sm[i]) / (2.0 * eps);
        }
    }
    let fd = jac.transpose() * DVector::from_vec(v.to_vec());
    let err = (DVector::from_vec(jtv.clone()) - &fd).norm();
    assert!(
        err < 1e-7 * fd.norm(),
        "J^T v {jtv:?} vs finite differences {fd:?}"
    );
    // The forward-mode Jacobian (what the evaluator uses) against the same differences.
    let (_, jf) =
        net.score_and_jacobian(&Tensor::from_vec(x0.to_vec(), (1, d), device)?, &times)?;
    let jf = DMatrix::from_column_slice(d, d, &jf);
    assert!(
        (&jf - &jac).norm() < 1e-7 * jac.norm(),
        "forward-mode J {jf} vs finite differences {jac}"
    );
    // The residual network matters: its Jacobian is not the prior's (-I / (abar v_d + 1 - abar)),
    // and it is not symmetric.
    assert!(
        (&jac - jac.transpose()).norm() > 1e-3 * jac.norm(),
        "J {jac}"
    );
    Ok(())
}

/// Two trainings from the same seed on the same thread count give bit-identical weights; a
/// saved and reloaded network gives bit-identical outputs; missing and corrupt files and a
/// file of the wrong kind are `Checkpoint` errors.
fn checkpoints_round_trip_and_training_is_reproducible(device: &Device) -> Result<()> {
    let q0 = covlab::data::presets::load("grid9")?;
    let prior = GaussianPrior::from_moments(vec![0.0, 0.0], 12.02);
    let draws = sampler(&q0);
    let data: DataSampler<'_> = &draws;
    let params = TrainParams {
        iterations: 40,
        batch: 64,
        hidden: 16,
        layers: 2,
        ..TrainParams::default()
    };
    let (a, info) = train_score(data, prior.clone(), &params, device, |_, _| {})?;
    let (b, _) = train_score(data, prior.clone(), &params, device, |_, _| {})?;
    let mlp = |n: &ScoreNet| n.mlp().expect("an MLP").clone();
    for (pa, pb) in mlp(&a).params().iter().zip(mlp(&b).params()) {
        let (va, vb) = (host_flat(pa)?, host_flat(pb)?);
        assert!(
            va.iter().zip(&vb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "weights differ"
        );
    }
    let (c, _) = train_score(
        data,
        prior.clone(),
        &TrainParams {
            seed: 1,
            ..params.clone()
        },
        device,
        |_, _| {},
    )?;
    assert!(host_flat(&mlp(&c).params()[0])? != host_flat(&mlp(&a).params()[0])?);

    let dir = std::env::temp_dir().join(format!("covlab-learned-ck-{}", std::process::id()));
    let meta = CheckpointMeta {
        kind: ModelKind::Score,
        data: "grid9".into(),
        score: None,
        shape: mlp(&a).shape(),
        unet: None,
        prior: prior.clone(),
        train: params.clone(),
        info,
        covlab_version: "test".into(),
    };
    let path = dir.join("score.safetensors");
    save_score(&path, &a, &meta)?;
    let (back, meta_back) = load_score(&path, device)?;
    // serde_json's float parsing may move the last digit of the timing fields.
    assert_eq!(
        (
            &meta_back.kind,
            &meta_back.shape,
            &meta_back.prior,
            &meta_back.train
        ),
        (&meta.kind, &meta.shape, &meta.prior, &meta.train)
    );
    let xs = Tensor::from_vec(vec![0.1f32, 2.9, -3.0, 0.05], (2, 2), device)?;
    let times = RowTimes {
        ln_abar: vec![-0.01, -3.0],
    };
    let (s1, s2) = (
        host_flat(&a.score(&xs, &times)?)?,
        host_flat(&back.score(&xs, &times)?)?,
    );
    assert!(s1.iter().zip(&s2).all(|(x, y)| x.to_bits() == y.to_bits()));
    // Heads round-trip too, and a score file is not a head.
    let tm = TimeMixture::new(&q0, device)?;
    let (head, hinfo) = train_head(
        HeadKind::Npr,
        data,
        prior.clone(),
        HeadScore::Exact(&tm),
        &params,
        device,
        |_, _| {},
    )?;
    let hpath = dir.join("npr-exact.safetensors");
    save_head(
        &hpath,
        &head,
        &CheckpointMeta {
            kind: ModelKind::Head(HeadKind::Npr),
            score: Some("exact".into()),
            info: hinfo,
            ..meta.clone()
        },
    )?;
    let (hb, _) = load_head(&hpath, device)?;
    let (o1, o2) = (
        host_flat(&head.output(&xs, &times)?)?,
        host_flat(&hb.output(&xs, &times)?)?,
    );
    assert!(o1.iter().zip(&o2).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert!(matches!(
        load_head(&path, device),
        Err(LearnedError::Checkpoint { .. })
    ));
    assert!(matches!(
        load_score(&hpath, device),
        Err(LearnedError::Checkpoint { .. })
    ));
    // Missing and corrupt files.
    assert!(matches!(
        load_score(&dir.join("none.safetensors"), device),
        Err(LearnedError::Checkpoint { .. })
    ));
    let bytes = std::fs::read(&path)?;
    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2])?;
    assert!(matches!(
        load_score(&corrupt, device),
        Err(LearnedError::Checkpoint { .. })
    ));
    std::fs::write(&corrupt, b"not a checkpoint")?;
    let e = load_score(&corrupt, device).unwrap_err();
    assert!(e.to_string().contains("corrupt.safetensors"), "{e}");
    // Bad training input: M = 0.
    let e = train_head(
        HeadKind::Ocm,
        data,
        prior,
        HeadScore::Exact(&tm),
        &TrainParams {
            probes: 0,
            ..params
        },
        device,
        |_, _| {},
    )
    .unwrap_err();
    assert!(
        matches!(e, LearnedError::InvalidParameter { field: "M", .. }),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
    fn send_sync<T: Send + Sync>() {}
    send_sync::<LearnedError>();
    Ok(())
}
