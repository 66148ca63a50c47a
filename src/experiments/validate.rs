//! Study kind `validate` (feature `candle`): the tensor path against the f64 core (the
//! `validate` binary is a CLI over this).
//!
//! 1. Per step, for the same x_t and z at steps T, T/2 and 1: the tensor posterior mean, the
//!    analytic H v against autograd H v, each family's step (DDPM and OCM-DDIM) against the f64
//!    sampler's `step_with_noise`, and (D <= 64) the tensor `lgs-D` step against the f64
//!    `full` step.
//! 2. Whole trajectories with shared noise: endpoint distance, per family and kernel.
//! 3. Samples against exact draws of q_0: MMD^2, Frechet distance and exact mean
//!    log-likelihood of the tensor chain and of an independent f64 chain; checked: the two
//!    chains agree in law (MMD^2 z-score under equal laws, log-likelihood z-score).
//! 4. Path-KL differences between families as differences of cross-entropies by Monte Carlo
//!    (tensor model), against the exact path KL of the core on a 2-D preset.
//!
//! Cells: one per data set (parts 1-3; every seed derives from `seed` alone), then part 4.

use nalgebra::DVector;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::data::lowrank::LowRankMixture;
use crate::data::{images, presets};
use crate::kernel::family::Family;
use crate::kl::path_kl::{path_kl_sweep, PathKlParams};
use crate::process::schedule::Schedule;
use crate::sampler::{
    sample, step_with_noise, KernelKind, LastStep, LgsOptions, SamplerConfig, SamplerFamily,
};
use crate::score::LowRankScore;
use crate::stats::{frechet_distance_sq, mmd2_unbiased, MMD_BANDWIDTHS};
use crate::study::{
    ensure, from_cell, to_cell, Assembled, FigureName, Observer, ParamError, RunInfo, StudyError,
    StudyKind,
};
use crate::tensor::{
    analytic_trace_table_tensor, batch, cross_entropy_path_kl, device_from_name,
    relative_error as rel, rows, sample_tensor, step_with_noise_tensor, CrossEntropyParams,
    NoiseSource, TensorLocal, TensorMixtureScore, TensorSampleOptions, TensorScoreModel,
};

/// Documented tolerances. f32 vs f64, relative: the targets (mean 1e-5; sqrt(C) z and
/// the step 1e-4; analytic vs autograd H v 1e-4; trajectories, which the reverse chain does not
/// amplify, 1e-4). Statistical checks: |z| <= 4 (false alarm ~6e-5 per check).
pub const TOL_MEAN: f64 = 1e-5;
/// Step tolerance (relative).
pub const TOL_STEP: f64 = 1e-4;
/// Analytic vs autograd H v (relative).
pub const TOL_HVP: f64 = 1e-4;
/// Trajectory endpoints (relative).
pub const TOL_TRAJ: f64 = 1e-4;
/// z-scores of the statistical checks.
pub const TOL_Z: f64 = 4.0;

/// Parameters of a `validate` study (keys as the binary's flags; defaults as its defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ValidateStudy {
    /// Device: cpu, or cuda / cuda:N.
    pub device: String,
    /// Data: image presets or dense presets.
    pub data: Vec<String>,
    /// Samples per batch in the per-step and trajectory checks.
    pub batch: usize,
    /// Number of steps T (ddpm-linear) of parts 1-3.
    pub steps: usize,
    /// Families.
    pub families: Vec<String>,
    /// Kernels for parts 1 and 2: ddpm, ddim.
    pub kernels: Vec<String>,
    /// Samples per chain in part 3 (0 skips it).
    pub samples: usize,
    /// Dense 2-D preset of part 4 (`none` skips it).
    pub ce_data: String,
    /// T of part 4.
    pub ce_steps: usize,
    /// Pairs per step in part 4.
    pub ce_samples: usize,
    /// Data draws for the analytic family's table.
    pub analytic_samples: usize,
    /// Scale of the tensor chain's noise (1 = correct).
    pub perturb: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for ValidateStudy {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            data: vec!["digits8".into(), "digits32".into()],
            batch: 16,
            steps: 20,
            families: "beta,beta-tilde,analytic,diag,hutchinson-4,lgs-3"
                .split(',')
                .map(String::from)
                .collect(),
            kernels: vec!["ddpm".into(), "ddim".into()],
            samples: 400,
            ce_data: "mog40".into(),
            ce_steps: 8,
            ce_samples: 20_000,
            analytic_samples: 500,
            perturb: 1.0,
            seed: 0,
        }
    }
}

/// The checks of one cell and the table lines.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Report {
    checks: Vec<Value>,
    metrics: Vec<Value>,
    cross_entropy: Vec<Value>,
    lines: Vec<String>,
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

fn kernel(name: &str) -> Result<KernelKind, ParamError> {
    KernelKind::from_name(name).map_err(|e| ParamError::new("kernels", "ddpm or ddim", e))
}

/// A preset as a low-rank mixture: image presets directly, dense presets exactly converted.
fn load(name: &str) -> Result<LowRankMixture, StudyError> {
    if images::shape(name).is_some() {
        return Ok(images::load(name)?);
    }
    let q =
        presets::load(name).map_err(|e| ParamError::new("data", "image or dense presets", e))?;
    Ok(LowRankMixture::from_mixture(&q)?)
}

/// The per-coordinate data range for the clip of mixture data (image presets: [-1, 1]).
fn clip_range(name: &str, q: &LowRankMixture) -> (f64, f64) {
    if crate::data::dataset::is_image(name) {
        crate::data::dataset::IMAGE_RANGE
    } else {
        crate::data::dataset::lowrank_range(q)
    }
}

fn to_rows(v: &[DVector<f64>]) -> Vec<Vec<f64>> {
    v.iter().map(|x| x.as_slice().to_vec()).collect()
}

fn f32_rows(t: &crate::tensor::candle_core::Tensor) -> Result<Vec<Vec<f32>>, StudyError> {
    Ok(t.to_vec2::<f32>()
        .map_err(crate::tensor::TensorError::from)?)
}

impl ValidateStudy {
    fn families(&self) -> Result<Vec<SamplerFamily>, ParamError> {
        self.families
            .iter()
            .map(|f| {
                SamplerFamily::from_name(f)
                    .map_err(|e| ParamError::new("families", "sampler families", e))
            })
            .collect()
    }

    fn kernels(&self) -> Result<Vec<KernelKind>, ParamError> {
        self.kernels.iter().map(|k| kernel(k)).collect()
    }

    fn ce_mixture(&self) -> Result<Option<crate::data::mixture::Mixture>, ParamError> {
        if self.ce_data == "none" {
            return Ok(None);
        }
        let q = presets::load(&self.ce_data)
            .map_err(|e| ParamError::new("ce-data", "a dense 2-D preset or none", e))?;
        if q.dim() > 3 {
            return Err(ParamError::new(
                "ce-data",
                "a preset with D <= 3 (the exact path KL needs the lattice)",
                format!("`{}` with D = {}", self.ce_data, q.dim()),
            ));
        }
        Ok(Some(q))
    }

    /// Parts 1-3 for one data set.
    #[allow(clippy::too_many_lines)]
    fn run_data(&self, name: &str, q0: &LowRankMixture) -> Result<Report, StudyError> {
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
    fn run_ce(&self, q: &crate::data::mixture::Mixture) -> Result<Report, StudyError> {
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

impl StudyKind for ValidateStudy {
    fn kind(&self) -> &'static str {
        "validate"
    }

    fn validate(&self) -> Result<(), ParamError> {
        ensure(self.batch >= 1, "batch", ">= 1", self.batch)?;
        ensure(self.steps >= 2, "steps", ">= 2", self.steps)?;
        ensure(self.ce_steps >= 2, "ce-steps", ">= 2", self.ce_steps)?;
        ensure(
            self.perturb.is_finite() && self.perturb > 0.0,
            "perturb",
            "finite and > 0",
            self.perturb,
        )?;
        device_from_name(&self.device)
            .map_err(|e| ParamError::new("device", "cpu, cuda or cuda:N", e))?;
        ensure(
            self.ce_samples >= 2,
            "ce-samples",
            ">= 2 (a standard error needs two)",
            self.ce_samples,
        )?;
        let fams = self.families()?;
        self.kernels()?;
        for d in &self.data {
            let dim = match images::shape(d) {
                Some((c, h, w)) => c * h * w,
                None => presets::load(d)
                    .map_err(|e| ParamError::new("data", "image or dense presets", e))?
                    .dim(),
            };
            // A requested family that cannot be checked is an error, not a silent skip.
            if fams.contains(&SamplerFamily::Full) && dim > crate::tensor::FULL_MAX_DIM {
                return Err(ParamError::new(
                    "families",
                    format!(
                        "families the tensor path can check on every data set: `full` needs \
                         D <= {} (a dense D x D covariance per sample), `{d}` has D = {dim}; \
                         use lgs-<k> there or drop `{d}`",
                        crate::tensor::FULL_MAX_DIM
                    ),
                    "full",
                ));
            }
        }
        self.ce_mixture()?;
        Ok(())
    }

    fn cells(&self) -> Result<Vec<String>, StudyError> {
        let mut out = self.data.clone();
        if self.ce_data != "none" {
            out.push(format!("cross-entropies {}", self.ce_data));
        }
        Ok(out)
    }

    fn run_cells(&self, indices: &[usize], obs: &dyn Observer) -> Result<Vec<Value>, StudyError> {
        let labels = self.cells()?;
        let mut out = Vec::with_capacity(indices.len());
        for &i in indices {
            obs.cell_started(i, &labels[i]);
            let rep = if i < self.data.len() {
                let q0 = load(&self.data[i])?;
                self.run_data(&self.data[i], &q0)?
            } else {
                let q = self.ce_mixture()?.ok_or_else(|| {
                    ParamError::new("ce-data", "a dense 2-D preset", &self.ce_data)
                })?;
                self.run_ce(&q)?
            };
            out.push(to_cell("validate", &rep)?);
            obs.cell_done(i, &labels[i]);
        }
        Ok(out)
    }

    fn assemble(&self, cells: &[Value], info: &RunInfo) -> Result<Assembled, StudyError> {
        let mut all = Report::default();
        for c in cells {
            let r: Report = from_cell("validate", c)?;
            all.checks.extend(r.checks);
            all.metrics.extend(r.metrics);
            all.cross_entropy.extend(r.cross_entropy);
            all.lines.extend(r.lines);
        }
        let failed = all
            .checks
            .iter()
            .filter(|c| c["pass"] == json!(false))
            .count();
        let mut table = format!(
            "{:<46} {:<10} {:<16} {:>10} {:>8} result\n",
            "check", "data", "family", "value", "tol"
        );
        for l in &all.lines {
            table += l;
            table.push('\n');
        }
        table += &format!("{} checks, {failed} failed\n", all.checks.len());
        let doc = json!({
            "device": self.device,
            "covlab_version": env!("CARGO_PKG_VERSION"),
            "seed": self.seed,
            "batch": self.batch,
            "steps": self.steps,
            "schedule": "ddpm-linear",
            "samples": self.samples,
            "perturb": self.perturb,
            "ce_data": self.ce_data,
            "ce_steps": self.ce_steps,
            "ce_schedule": "vp-linear",
            "ce_samples_per_step": self.ce_samples,
            "tolerances": {"mean": TOL_MEAN, "step": TOL_STEP, "hvp": TOL_HVP, "trajectory": TOL_TRAJ, "z": TOL_Z},
            "wall_time_s": info.wall_time_s,
            "checks": all.checks,
            "sample_metrics": all.metrics,
            "cross_entropy": all.cross_entropy,
        });
        Ok(Assembled {
            doc,
            figures: Vec::new(),
            table,
        })
    }

    fn figures(&self) -> Vec<FigureName> {
        Vec::new()
    }

    fn seeds(&self) -> Vec<u64> {
        vec![self.seed]
    }

    fn device(&self) -> String {
        self.device.clone()
    }
}

/// Whether every check of a `validate` results JSON passed.
#[must_use]
pub fn all_passed(doc: &Value) -> bool {
    doc["checks"]
        .as_array()
        .is_some_and(|c| c.iter().all(|c| c["pass"] == json!(true)))
}
