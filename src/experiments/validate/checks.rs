//! The checks of the tensor path against the f64 core for one data set: posterior mean,
//! `sqrt(C) z` and one step per family, analytic against autograd `H v`, whole trajectories
//! under shared noise, and the cross-entropy path-KL differences against the exact ones.

use super::*;

/// The checks of one cell and the table lines.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Report {
    pub(super) checks: Vec<Value>,
    pub(super) metrics: Vec<Value>,
    pub(super) cross_entropy: Vec<Value>,
    pub(super) lines: Vec<String>,
}

impl Report {
    fn push(&mut self, name: String, data: &str, family: &str, value: f64, tol: f64) {
        let pass = value.is_finite() && value <= tol;
        self.lines.push(format!(
            "{:<46} {:<10} {:<16} {:>10.3e} {:>8.0e} {}",
            name,
            data,
            family,
            value,
            tol,
            if pass { "pass" } else { "FAIL" }
        ));
        self.checks.push(json!({"name": name, "data": data, "family": family, "value": value, "tolerance": tol, "pass": pass}));
    }
}

/// The per-coordinate data range for the clip of mixture data (image presets: [-1, 1]).
pub(super) fn clip_range(name: &str, q: &LowRankMixture) -> (f64, f64) {
    if crate::data::dataset::is_image(name) {
        crate::data::dataset::IMAGE_RANGE
    } else {
        crate::data::dataset::lowrank_range(q)
    }
}

pub(super) fn to_rows(v: &[DVector<f64>]) -> Vec<Vec<f64>> {
    v.iter().map(|x| x.as_slice().to_vec()).collect()
}

pub(super) fn f32_rows(
    t: &crate::tensor::candle_core::Tensor,
) -> Result<Vec<Vec<f32>>, StudyError> {
    Ok(t.to_vec2::<f32>()
        .map_err(crate::tensor::TensorError::from)?)
}

impl ValidateStudy {
    /// Parts 1-3 for one data set.
    #[allow(clippy::too_many_lines)]
    pub(super) fn run_data(&self, name: &str, q0: &LowRankMixture) -> Result<Report, StudyError> {
        let dev = device_from_name(&self.device)?;
        let fams = self.families()?;
        let kernels = self.kernels()?;
        let sched = Schedule::from_name("ddpm-linear")?;
        let grid = sched.grid(self.steps, 0.0)?;
        let t = self.steps;
        let mut rep = Report::default();
        let d = q0.dim();
        let cpu = LowRankScore::new(q0.clone());
        let gpu = TensorMixtureScore::new(q0.clone(), &dev)?;
        let range = clip_range(name, q0);
        let mut drng = ChaCha8Rng::seed_from_u64(self.seed ^ 0xda7a);
        let draws = q0.sample(&mut drng, self.analytic_samples.max(2));
        let table = crate::sampler::analytic_trace_table(&cpu, &sched, t, 0.0, &draws, self.seed)?;
        let table_t = analytic_trace_table_tensor(&gpu, &sched, t, 0.0, &draws, self.seed)?;
        let table_err = table
            .iter()
            .zip(&table_t)
            .map(|(a, b)| (a - b).abs() / a.abs())
            .fold(0.0, f64::max);
        rep.push(
            "analytic E||score||^2 table".into(),
            name,
            "analytic",
            table_err,
            TOL_STEP,
        );
        let config = |fam: SamplerFamily, kernel: KernelKind, seed: u64| {
            let mut c = SamplerConfig::new(fam, sched.clone(), t);
            c.kernel = kernel;
            c.seed = seed;
            c.clip_range = Some(range);
            c.analytic_trace = Some(table.clone());
            c
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut normal = |n: usize| -> Vec<Vec<f64>> {
            (0..n)
                .map(|_| {
                    (0..d)
                        .map(|_| rng.sample(rand_distr::StandardNormal))
                        .collect()
                })
                .collect()
        };
        // 1. Per step.
        for i in [t, t / 2, 1] {
            let qt = std::sync::Arc::new(q0.marginal(grid.ln_abar[i])?);
            let mut srng = ChaCha8Rng::seed_from_u64(self.seed ^ ((i as u64) << 8));
            let xs = to_rows(&qt.sample(&mut srng, self.batch));
            let zs = normal(self.batch);
            let vs = normal(self.batch);
            let x = batch(&xs, &dev)?;
            let z = batch(&zs, &dev).and_then(|z| Ok(z.affine(self.perturb, 0.0)?))?;
            let v = batch(&vs, &dev)?;
            let st = grid.step(i);
            let (a, b) = (st.a2.sqrt(), st.b);
            let local = gpu.at(&x, grid.ln_abar[i])?;
            let mean = local
                .x_plus_score()
                .and_then(|xs| Ok((x.affine(a, 0.0)? + xs.affine(b / a, 0.0)?)?))?;
            let want: Vec<Vec<f64>> = xs
                .iter()
                .map(|xi| {
                    let s = qt
                        .local(xi)
                        .map(|l| crate::score::LocalScore::score(&l).to_vec())
                        .unwrap_or_default();
                    xi.iter().zip(&s).map(|(x, g)| (x + b * g) / a).collect()
                })
                .collect();
            rep.push(
                format!("step {i}: posterior mean"),
                name,
                "-",
                rel(&f32_rows(&mean)?, &want),
                TOL_MEAN,
            );
            let h1 = local.hvp(&v)?;
            let h2 = local.mixture().hvp_autograd(&x, &v)?;
            let h2f: Vec<Vec<f64>> = f32_rows(&h2)?
                .iter()
                .map(|r| r.iter().map(|&v| f64::from(v)).collect())
                .collect();
            rep.push(
                format!("step {i}: analytic vs autograd H v"),
                name,
                "-",
                rel(&f32_rows(&h1)?, &h2f),
                TOL_HVP,
            );
            let mut cases: Vec<(SamplerFamily, KernelKind, String)> = Vec::new();
            for k in &kernels {
                for f in &fams {
                    if matches!(f, SamplerFamily::Full) && d > crate::tensor::FULL_MAX_DIM {
                        continue;
                    }
                    let label = match k {
                        KernelKind::Ddpm => f.name(),
                        KernelKind::Ddim => format!("{} ddim", f.name()),
                    };
                    cases.push((*f, *k, label));
                }
            }
            if d <= 64 {
                cases.push((
                    SamplerFamily::Lgs(LgsOptions::new(d)),
                    KernelKind::Ddpm,
                    format!("lgs-{d} vs full"),
                ));
            }
            for (fam, k, label) in &cases {
                let mut c = config(*fam, *k, self.seed);
                let mut want_cfg = c.clone();
                if label.ends_with("vs full") {
                    // lgs-D is the exact C^{1/2} z only without the Ritz clamp (the f64 `full`
                    // step does not clip).
                    c.clip_range = None;
                    want_cfg = config(SamplerFamily::Full, *k, self.seed);
                    want_cfg.clip_range = None;
                }
                // Each kernel's draw, the last one's noise included (the mean-only last step
                // is the posterior-mean row above).
                (c.last_step, want_cfg.last_step) = (LastStep::Noisy, LastStep::Noisy);
                let y = step_with_noise_tensor(&gpu, &c, i, &x, &z)?;
                let want = xs
                    .iter()
                    .zip(&zs)
                    .map(|(xi, zi)| step_with_noise(&cpu, &want_cfg, i, xi, zi))
                    .collect::<Result<Vec<_>, _>>()?;
                rep.push(
                    format!("step {i}: step vs f64 sampler"),
                    name,
                    label,
                    rel(&f32_rows(&y)?, &want),
                    TOL_STEP,
                );
            }
        }
        // 2. Trajectories with shared noise.
        let opts = TensorSampleOptions {
            chunk: self.batch,
            source: NoiseSource::Host,
            noise_scale: self.perturb,
        };
        for k in &kernels {
            for f in &fams {
                if matches!(f, SamplerFamily::Full) && d > crate::tensor::FULL_MAX_DIM {
                    continue;
                }
                let c = config(*f, *k, self.seed);
                let y = sample_tensor(&gpu, &c, self.batch, &opts, |_| {})?;
                let want = to_rows(&sample(&cpu, &c, self.batch)?);
                let label = match k {
                    KernelKind::Ddpm => f.name(),
                    KernelKind::Ddim => format!("{} ddim", f.name()),
                };
                rep.push(
                    format!("trajectory T = {t}: endpoint"),
                    name,
                    &label,
                    rel(&f32_rows(&y)?, &want),
                    TOL_TRAJ,
                );
            }
        }
        // 3. Samples against exact draws.
        if self.samples >= 4 {
            let exact = q0.sample(
                &mut ChaCha8Rng::seed_from_u64(self.seed ^ 0xe8ac),
                self.samples,
            );
            let loglik = |x: &[DVector<f64>]| -> Result<(f64, f64), StudyError> {
                let v = x
                    .iter()
                    .map(|p| q0.ln_pdf(p.as_slice()))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(crate::study::mean_se(&v))
            };
            let opts3 = TensorSampleOptions {
                chunk: 1024,
                source: NoiseSource::Device,
                noise_scale: self.perturb,
            };
            for f in &fams {
                if matches!(f, SamplerFamily::Full) && d > crate::tensor::FULL_MAX_DIM {
                    continue;
                }
                let fname = f.name();
                let tensor = rows(&sample_tensor(
                    &gpu,
                    &config(*f, KernelKind::Ddpm, self.seed),
                    self.samples,
                    &opts3,
                    |_| {},
                )?)?;
                // An independent f64 chain (another seed): the two must agree in law.
                let reference = sample(
                    &cpu,
                    &config(*f, KernelKind::Ddpm, self.seed ^ 0x5eed),
                    self.samples,
                )?;
                let between = mmd2_unbiased(&tensor, &reference, &MMD_BANDWIDTHS)?;
                let to_exact_t = mmd2_unbiased(&tensor, &exact, &MMD_BANDWIDTHS)?;
                let to_exact_f = mmd2_unbiased(&reference, &exact, &MMD_BANDWIDTHS)?;
                let (ll_t, ll_t_se) = loglik(&tensor)?;
                let (ll_f, ll_f_se) = loglik(&reference)?;
                let fr_t = frechet_distance_sq(&tensor, &exact)?;
                let fr_f = frechet_distance_sq(&reference, &exact)?;
                rep.push(
                    format!("samples n = {}: MMD^2(tensor, f64) / se_null", self.samples),
                    name,
                    &fname,
                    (between.sum.mmd2 / between.sum.se_null).abs(),
                    TOL_Z,
                );
                rep.push(
                    format!(
                        "samples n = {}: mean ln q0, |z| tensor vs f64",
                        self.samples
                    ),
                    name,
                    &fname,
                    (ll_t - ll_f).abs() / (ll_t_se.powi(2) + ll_f_se.powi(2)).sqrt(),
                    TOL_Z,
                );
                rep.metrics.push(json!({
                    "data": name, "family": fname, "T": t, "samples": self.samples,
                    "mmd_tensor": to_exact_t.sum.mmd2, "mmd_tensor_se": to_exact_t.sum.se,
                    "mmd_f64": to_exact_f.sum.mmd2, "mmd_f64_se": to_exact_f.sum.se,
                    "frechet_sq_tensor": fr_t, "frechet_sq_f64": fr_f,
                    "loglik_tensor": ll_t, "loglik_tensor_se": ll_t_se,
                    "loglik_f64": ll_f, "loglik_f64_se": ll_f_se,
                }));
            }
        }
        Ok(rep)
    }

    /// Part 4: cross-entropy path-KL differences against the exact core.
    pub(super) fn run_ce(&self, q: &crate::data::mixture::Mixture) -> Result<Report, StudyError> {
        let dev = device_from_name(&self.device)?;
        let fams = self.families()?;
        let mut rep = Report::default();
        let mut ce_rows = Vec::new();
        let ce_fams: Vec<(SamplerFamily, Family)> =
            std::iter::once((SamplerFamily::Full, Family::Full))
                .chain(fams.iter().filter_map(|f| match f {
                    SamplerFamily::Beta => Some((*f, Family::Beta)),
                    SamplerFamily::BetaTilde => Some((*f, Family::BetaTilde)),
                    SamplerFamily::Analytic => Some((*f, Family::Analytic)),
                    SamplerFamily::Diag => Some((*f, Family::Diag)),
                    _ => None,
                }))
                .collect();
        let q0 = LowRankMixture::from_mixture(q)?;
        let gpu = TensorMixtureScore::new(q0.clone(), &dev)?;
        let vp = Schedule::vp_linear();
        let report = path_kl_sweep(
            q,
            &vp,
            &[self.ce_steps],
            &PathKlParams::default(),
            &|_, _| {},
        )?;
        let draws = q.sample(&mut ChaCha8Rng::seed_from_u64(self.seed ^ 0xa7), 20_000);
        let mut c = SamplerConfig::new(SamplerFamily::Full, vp.clone(), self.ce_steps);
        c.analytic_trace = Some(crate::sampler::analytic_trace_table(
            &crate::score::MixtureScore::new(q.clone()),
            &vp,
            self.ce_steps,
            0.0,
            &draws,
            self.seed,
        )?);
        let fam_list: Vec<SamplerFamily> = ce_fams.iter().map(|p| p.0).collect();
        let params = CrossEntropyParams {
            samples_per_step: self.ce_samples,
            chunk: 8192,
            seed: self.seed,
            covariance_scale: self.perturb,
        };
        let res = cross_entropy_path_kl(&gpu, &q0, &c, &fam_list, 0, &params)?;
        let full = report
            .get(Family::Full, self.ce_steps)
            .map_or(f64::NAN, |r| r.s.value);
        for (row, (_, fam)) in res.iter().zip(&ce_fams).skip(1) {
            let exact = report
                .get(*fam, self.ce_steps)
                .map_or(f64::NAN, |r| r.s.value)
                - full;
            rep.push(
                format!("path KL - full, T = {}: |MC - exact| / se", self.ce_steps),
                &self.ce_data,
                &row.family,
                (row.diff - exact).abs() / row.diff_se,
                TOL_Z,
            );
            ce_rows.push(json!({
                "family": row.family, "T": self.ce_steps, "diff_mc": row.diff, "diff_se": row.diff_se,
                "diff_exact": exact, "cross_entropy": row.cross_entropy, "cross_entropy_se": row.se,
            }));
        }
        rep.cross_entropy = ce_rows;
        Ok(rep)
    }
}
