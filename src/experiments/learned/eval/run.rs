//! Computing the cells: models loaded once, the exact path KL of each chain by
//! `crate::kl::chain`, and MMD of sampled chains against exact draws.

use super::*;

impl LearnedEvalStudy {
    /// `<data>_<score>`: the name of the default JSON and of the figures.
    #[must_use]
    pub fn label(&self) -> String {
        format!("{}{}_{}", self.data, self.net_suffix(), self.score)
    }

    /// `_unet` for the U-Net checkpoints, empty for the MLPs (whose names are unchanged).
    fn net_suffix(&self) -> &'static str {
        if self.net == "unet" {
            "_unet"
        } else {
            ""
        }
    }

    /// The figures' label: `<data>` with the exact score (the names issue 9 fixed as an
    /// interface, `figures/learned_cov_error_<data>.png` ...), `<data>_learned` with the
    /// learned one.
    #[must_use]
    pub fn figure_label(&self) -> String {
        if self.score == "exact" {
            format!("{}{}", self.data, self.net_suffix())
        } else {
            format!("{}{}_{}", self.data, self.net_suffix(), self.score)
        }
    }

    pub(super) fn models_dir(&self) -> PathBuf {
        self.root.join(&self.models)
    }

    /// The parameters checked and resolved without building the data's mixture (cheap: the
    /// dimension of an image preset comes from its shape).
    pub(super) fn plan(&self) -> Result<Plan, ParamError> {
        let dim = data_dim(&self.data)?;
        parse_net(&self.net, &self.data)?;
        if let Some(h) = &self.head_net {
            parse_net(h, &self.data).map_err(|mut e| {
                e.key = "head-net";
                e
            })?;
        }
        let learned = match self.score.as_str() {
            "exact" => false,
            "learned" => true,
            other => return Err(ParamError::new("score", "exact or learned", other)),
        };
        let methods_text = self
            .methods
            .as_ref()
            .map_or_else(|| default_methods(&self.score, dim), |m| m.join(","));
        // The LGS variants are sampled only; the rest go to the path-KL evaluator.
        let mut lgs = Vec::new();
        let mut exact_names = Vec::new();
        for name in methods_text.split(',').map(str::trim) {
            match LgsVariant::parse(name) {
                Some(v) => {
                    lgs.push(v.map_err(|e| ParamError::new("methods", "covariance methods", e))?)
                }
                None => exact_names.push(name),
            }
        }
        if exact_names.is_empty() {
            return Err(ParamError::new(
                "methods",
                "at least one method with an exact path KL besides the LGS variants (e.g. full, the ceiling)",
                methods_text,
            ));
        }
        let methods = Method::parse_list(&exact_names.join(","))
            .map_err(|e| ParamError::new("methods", "covariance methods", e))?;
        let last_step = LastStep::from_name(&self.last_step)
            .map_err(|e| ParamError::new("last-step", "mean or noisy", e))?;
        ensure(
            self.lgsb_fraction > 0.0 && self.lgsb_fraction <= 1.0,
            "lgsb-fraction",
            "in (0, 1]",
            self.lgsb_fraction,
        )?;
        if !learned {
            if let Some(m) = methods
                .iter()
                .find(|m| matches!(m, Method::FullJt | Method::FullJ | Method::FullSym))
            {
                return Err(ParamError::new(
                    "methods",
                    "methods of the exact score",
                    format!(
                        "{} (it needs a learned score: the exact Hessian is symmetric, use full)",
                        m.name()
                    ),
                ));
            }
        }
        let schedule = Schedule::from_name(&self.schedule)
            .map_err(|e| ParamError::new("schedule", "a schedule name", e))?;
        ensure_steps(&self.steps)?;
        let mut steps = self.steps.clone();
        steps.sort_unstable();
        steps.dedup();
        let mmd_steps = match &self.mmd_steps {
            Some(m) => m.clone(),
            None => default_mmd_steps(&steps),
        };
        if let Some(t) = mmd_steps.iter().find(|t| !steps.contains(t)) {
            return Err(ParamError::new(
                "mmd-steps",
                "T values among `steps`",
                format!("T = {t}"),
            ));
        }
        let kernels = self
            .kernels
            .iter()
            .map(|k| {
                KernelKind::from_name(k.trim())
                    .map_err(|e| ParamError::new("kernels", "ddpm or ddim", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        crate::study::ensure_h_frac(self.h_frac)?;
        let rule = match self.rule.as_str() {
            "qmc" => EvalRule::Qmc,
            "lattice" if dim <= 2 => EvalRule::Lattice,
            "lattice" => {
                return Err(ParamError::new(
                    "rule",
                    "qmc (lattice needs D <= 2)",
                    format!("lattice with D = {dim}"),
                ))
            }
            other => return Err(ParamError::new("rule", "qmc or lattice", other)),
        };
        ensure(self.qmc_nodes >= 16, "qmc-nodes", ">= 16", self.qmc_nodes)?;
        ensure(self.qmc_points >= 1, "qmc-points", ">= 1", self.qmc_points)?;
        crate::study::ensure_early_stop(self.early_stop)?;
        ensure(
            self.samples >= 4 || mmd_steps.is_empty(),
            "samples",
            ">= 4 (MMD standard error)",
            self.samples,
        )?;
        for &t in &steps {
            schedule.grid(t, self.early_stop).map_err(|e| {
                ParamError::new("steps", "T values the schedule allows with early-stop", e)
            })?;
        }
        // A single step to the data (T = 1, no early stop): beta-tilde's variance there is
        // 0 and the clip remedy (and iddpm's clipped beta~) borrows the next step's, which
        // does not exist.
        if self.early_stop == 0.0 && steps.contains(&1) {
            if let Some(m) = methods.iter().find(|m| {
                matches!(
                    m,
                    Method::Family(Family::BetaTilde) | Method::Head(HeadKind::Iddpm)
                )
            }) {
                return Err(ParamError::new(
                    "steps",
                    format!(
                        "T >= 2 for {} with early-stop 0 (its last step to the data borrows the next step's variance)",
                        m.name()
                    ),
                    "T = 1",
                ));
            }
        }
        if !lgs.is_empty()
            && (mmd_steps.is_empty() || !self.kernels.iter().any(|k| k.trim() == "ddpm"))
        {
            return Err(ParamError::new(
                "methods",
                "LGS variants with DDPM MMD rows (they have no exact path KL)",
                format!("{} without mmd-steps or the ddpm kernel", lgs[0].name()),
            ));
        }
        Ok(Plan {
            dim,
            learned,
            methods,
            lgs,
            last_step,
            schedule,
            steps,
            mmd_steps,
            kernels,
            rule,
        })
    }

    /// The parameters checked without reading checkpoints or building the data.
    pub(crate) fn plan_only(&self) -> Result<(), ParamError> {
        self.plan().map(|_| ())
    }

    /// [`Self::plan`], the checkpoints checked, then the data.
    pub(super) fn setup(&self) -> Result<Setup, ParamError> {
        let plan = self.plan()?;
        let data = load_data(&self.data)?;
        if data.q0.dim() != plan.dim {
            return Err(ParamError::new(
                "data",
                format!("data of dimension {}", plan.dim),
                format!("D = {}", data.q0.dim()),
            ));
        }
        Ok(Setup { plan, data })
    }

    /// The methods with an OCM-DDIM covariance whose DDIM chains are sampled: not `beta`,
    /// `beta-tilde` (Sigma_0 = 0: plain DDIM, infinite KL), `iddpm` (no DDIM kernel) or the
    /// Jacobian chains (not sampled).
    pub(super) fn ddim_methods(s: &Setup) -> Vec<Method> {
        s.methods
            .iter()
            .copied()
            .filter(|m| {
                !matches!(
                    m,
                    Method::Family(Family::Beta | Family::BetaTilde)
                        | Method::Head(HeadKind::Iddpm)
                        | Method::FullJt
                        | Method::FullJ
                        | Method::FullSym
                )
            })
            .collect()
    }

    /// Whether the DDIM path KL is computed: DDIM chains are sampled, with an early stop of 0
    /// (the DDIM kernel's x_0 is the data at t = 0) and some method with a DDIM covariance.
    pub(super) fn ddim_path_kl(&self, s: &Setup) -> bool {
        !s.mmd_steps.is_empty()
            && s.kernels.contains(&KernelKind::Ddim)
            && self.early_stop == 0.0
            && !Self::ddim_methods(s).is_empty()
    }

    pub(super) fn specs(&self, s: &Setup) -> Vec<CellSpec> {
        let mut out = vec![CellSpec::PathKl];
        if s.mmd_steps.is_empty() {
            return out;
        }
        if self.ddim_path_kl(s) {
            out.push(CellSpec::PathKlDdim);
        }
        out.push(CellSpec::Floor);
        for &kernel in &s.kernels {
            // The Jacobian chains are evaluated, not sampled; I-DDPM has no DDIM kernel
            // (beta~ = 0 for every step to the data).
            let skip = |m: Method| {
                matches!(m, Method::FullJt | Method::FullJ | Method::FullSym)
                    || (kernel == KernelKind::Ddim && m == Method::Head(HeadKind::Iddpm))
            };
            for &method in s.methods.iter().filter(|m| !skip(**m)) {
                for &t in &s.mmd_steps {
                    let method = ChainMethod::Eval(method);
                    out.push(CellSpec::Chain { kernel, method, t });
                }
            }
            // The LGS paper's samplers are DDPM ones.
            if kernel == KernelKind::Ddpm {
                for &v in &s.lgs {
                    for &t in &s.mmd_steps {
                        let method = ChainMethod::Lgs(v);
                        out.push(CellSpec::Chain { kernel, method, t });
                    }
                }
            }
        }
        out
    }

    pub(super) fn label_of(spec: CellSpec) -> String {
        match spec {
            CellSpec::PathKl => "exact path KL".into(),
            CellSpec::PathKlDdim => "exact path KL, DDIM".into(),
            CellSpec::Floor => "MMD floor".into(),
            CellSpec::Chain { kernel, method, t } => {
                format!("MMD {} {} T = {t}", kernel.name(), method.name())
            }
        }
    }

    /// Loads every checkpoint the run needs (the score network for the learned score, a
    /// head per head method) and checks each against the run: kind, data set, dimension,
    /// the score a head was trained against, finite weights. A missing, corrupt or
    /// mismatched file is a bad `models` directory, named with the file.
    pub(super) fn load_models(&self, p: &Plan, device: &Device) -> Result<Models, ParamError> {
        let dir = self.models_dir();
        let bad = |e| ParamError::new("models", "a directory holding the checkpoints", e);
        let expected = Expected {
            data: &self.data,
            dim: p.dim,
            score: &self.score,
        };
        let arch_ok = |path: &std::path::Path, arch: Arch, want: &str, key: &str| {
            if arch.name() == want {
                Ok(())
            } else {
                Err(ParamError::new(
                    "models",
                    "a directory holding the checkpoints",
                    format!(
                        "{} holds a {} network, the run asks for `{key} = {want}`",
                        path.display(),
                        arch.name(),
                    ),
                ))
            }
        };
        let net = if p.learned {
            let path = score_path_net(&dir, &self.data, &self.net);
            let net = load_score_for(&path, device, &expected).map_err(bad)?.0;
            arch_ok(&path, net.backbone().arch(), &self.net, "net")?;
            Some(net)
        } else {
            None
        };
        let mut heads = Vec::new();
        for m in &p.methods {
            if let Method::Head(k) = m {
                let path = head_path_net(&dir, &self.data, *k, &self.score, &self.net);
                let head = load_head_for(&path, *k, device, &expected).map_err(bad)?.0;
                let want = self.head_net.as_deref().unwrap_or(&self.net);
                arch_ok(&path, head.backbone().arch(), want, "head-net")?;
                heads.push(head);
            }
        }
        Ok(Models { net, heads })
    }

    pub(super) fn mmd_inputs(&self, s: &Setup, device: &Device) -> Result<MmdInputs, StudyError> {
        let n = self.samples;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x5EED);
        let reference = s.data.q0.sample(&mut rng, n);
        let floor_draws = s.data.q0.sample(&mut rng, n);
        let analytic_data = s.data.q0.sample(&mut rng, ANALYTIC_DRAWS);
        let exact = TensorMixtureScore::new(LowRankMixture::from_mixture(&s.data.q0)?, device)?;
        Ok(MmdInputs {
            reference,
            floor_draws,
            analytic_data,
            exact,
        })
    }

    /// The evaluator's parameters for `kernel`'s chains: every method and T (DDPM), or the
    /// DDIM methods at the MMD T values (DDIM).
    fn eval_params(&self, s: &Setup, kernel: KernelKind) -> EvalParams {
        let (steps, methods) = match kernel {
            KernelKind::Ddpm => (s.steps.clone(), s.methods.clone()),
            KernelKind::Ddim => {
                let mut t = s.mmd_steps.clone();
                t.sort_unstable();
                t.dedup();
                (t, Self::ddim_methods(s))
            }
        };
        EvalParams {
            schedule: s.schedule.clone(),
            steps,
            methods,
            kernel,
            lattice: LatticeParams {
                h_frac: self.h_frac,
                ..LatticeParams::default()
            },
            rule: s.rule,
            qmc_nodes: self.qmc_nodes,
            qmc: QmcParams {
                points: self.qmc_points,
                ..EvalParams::default().qmc
            },
            seed: self.seed,
            early_stop: self.early_stop,
            clip_range: Some(s.data.range),
            ..EvalParams::default()
        }
    }

    /// The path-KL rows of `kernel`'s chains ([`Self::eval_params`]).
    pub(super) fn path_kl_cell(
        &self,
        s: &Setup,
        models: &Models,
        kernel: KernelKind,
        device: &Device,
        obs: &dyn Observer,
    ) -> Result<Value, StudyError> {
        let start = Instant::now();
        let params = self.eval_params(s, kernel);
        let eval_models = EvalModels {
            score: models.net.as_ref(),
            heads: models.heads.iter().collect(),
        };
        let report = evaluate_chains(&s.data.q0, &eval_models, &params, device, &|done, total| {
            obs.inner(done, total);
        })?;
        to_cell(
            KIND,
            &PathKlCell::new(report, start.elapsed().as_secs_f64()),
        )
    }

    /// The DDPM path-KL report of this study's methods with the exact score and the heads
    /// `heads` held in memory instead of read from checkpoints (the `learned-curve` study's
    /// evaluation of a head it has just trained), with the covariance-error curve on the
    /// one-step kernels of the `curve_grid`-step grid. Checkpoints are not read: `models` is
    /// unused.
    ///
    /// # Errors
    /// The study's parameter errors (`score = "learned"` is refused: there is no network to
    /// take the mean from); the evaluator's errors, e.g. a head method without its head.
    pub(crate) fn evaluate_in_memory(
        &self,
        heads: &[&Head],
        curve_grid: usize,
        obs: &dyn Observer,
    ) -> Result<EvalReport, StudyError> {
        let s = self.setup()?;
        if s.learned {
            return Err(ParamError::new("score", "exact (in-memory heads)", "learned").into());
        }
        let params = EvalParams {
            curve_grid,
            ..self.eval_params(&s, KernelKind::Ddpm)
        };
        let models = EvalModels {
            score: None,
            heads: heads.to_vec(),
        };
        Ok(evaluate_chains(
            &s.data.q0,
            &models,
            &params,
            &Device::Cpu,
            &|done, total| obs.inner(done, total),
        )?)
    }

    pub(super) fn chain_cell(
        &self,
        s: &Setup,
        models: &Models,
        inputs: &MmdInputs,
        (kernel, cm, t): (KernelKind, ChainMethod, usize),
        obs: &dyn Observer,
    ) -> Result<MmdCell, StudyError> {
        let start = Instant::now();
        let grid = s.schedule.grid(t, self.early_stop)?;
        let mean = match &models.net {
            Some(nn) => MeanSource::Learned(nn),
            None => MeanSource::Exact(&inputs.exact),
        };
        let m = match cm {
            ChainMethod::Eval(m) => m,
            ChainMethod::Lgs(v) => {
                // On the mean's own covariance: its H v by reverse mode (J^T v).
                return self.sample_cell(
                    s,
                    inputs,
                    (kernel, cm, t),
                    (mean, CovSource::Mean),
                    v.family(self.lgsb_fraction),
                    start,
                    obs,
                );
            }
        };
        let (cov, family) = match m {
            Method::Family(f @ (Family::Diag | Family::Full)) if models.net.is_some() => {
                (CovSource::Exact(&inputs.exact), sampler_family(f))
            }
            Method::Family(f) => (CovSource::Mean, sampler_family(f)),
            Method::Hutchinson(k) => (CovSource::Mean, SamplerFamily::Hutchinson(k)),
            Method::Head(kind) => {
                let head = models
                    .heads
                    .iter()
                    .find(|h| h.kind() == kind)
                    .ok_or_else(|| StudyError::Case {
                        case: format!("MMD {}", m.name()),
                        reason: "head not loaded".into(),
                    })?;
                (
                    CovSource::Head {
                        head,
                        range: Some(s.data.range),
                        grid: (kernel == KernelKind::Ddpm).then_some(&grid),
                    },
                    SamplerFamily::Diag,
                )
            }
            Method::FullJt | Method::FullJ | Method::FullSym => {
                return Err(StudyError::Case {
                    case: format!("MMD {}", m.name()),
                    reason: "the Jacobian chains are not sampled".into(),
                })
            }
        };
        self.sample_cell(s, inputs, (kernel, cm, t), (mean, cov), family, start, obs)
    }

    /// Samples the chain `(mean, cov)` with `family` and compares it with the reference draws;
    /// counts its network passes (excluding Analytic-DPM's table, computed once per run of a
    /// sampler and not per sample).
    #[allow(clippy::too_many_arguments)]
    fn sample_cell(
        &self,
        s: &Setup,
        inputs: &MmdInputs,
        (kernel, cm, t): (KernelKind, ChainMethod, usize),
        (mean, cov): (MeanSource<'_>, CovSource<'_>),
        family: SamplerFamily,
        start: Instant,
        obs: &dyn Observer,
    ) -> Result<MmdCell, StudyError> {
        let count = PassCount::default();
        let chain = Chain {
            mean,
            cov,
            passes: Some(&count),
        };
        let mut cfg = SamplerConfig::new(family, s.schedule.clone(), t);
        cfg.last_step = s.last_step;
        cfg.kernel = kernel;
        cfg.seed = self.seed;
        cfg.early_stop = self.early_stop;
        cfg.clip_range = Some(s.data.range);
        if family == SamplerFamily::Analytic {
            cfg.analytic_trace = Some(analytic_trace_table_tensor(
                &chain,
                &s.schedule,
                t,
                self.early_stop,
                &inputs.analytic_data,
                self.seed,
            )?);
        }
        let n = self.samples;
        let opts = TensorSampleOptions {
            chunk: n,
            source: NoiseSource::Host,
            noise_scale: 1.0,
        };
        let before = count.snapshot();
        let x = sample_tensor(&chain, &cfg, n, &opts, |k| obs.inner(k, t))?;
        let after = count.snapshot();
        let xs: Vec<DVector<f64>> = tensor_rows(&x.to_dtype(DType::F64)?)?;
        let e = mmd2_unbiased(&xs, &inputs.reference, &MMD_BANDWIDTHS)?;
        Ok(MmdCell {
            method: cm.name(),
            steps: t,
            kernel: kernel.name().into(),
            mmd: e.sum.mmd2,
            se: e.sum.se,
            wall_s: start.elapsed().as_secs_f64(),
            frechet_sq: frechet_distance_sq(&xs, &inputs.reference)?,
            passes: (after.0 - before.0, after.1 - before.1, after.2 - before.2),
        })
    }

    /// The results JSON (the binary's keys).
    pub(super) fn doc(
        &self,
        s: &Setup,
        report: &EvalReport,
        ddim: Option<&EvalReport>,
        mmd: &[MmdCell],
        walls: (f64, f64, &RunInfo),
    ) -> Value {
        let (kl_wall, mmd_wall, info) = walls;
        let find_mmd = |m: &str, t: usize, k: &str| {
            mmd.iter()
                .find(|r| r.method == m && r.steps == t && r.kernel == k)
        };
        let mut rows: Vec<Value> = Vec::new();
        for r in &report.rows {
            let mm = find_mmd(&r.method, r.steps, "ddpm");
            rows.push(with_sample_fields(
                json!({
                    "method": r.method, "T": r.steps, "kernel": "ddpm",
                    "path_kl": inf_str(r.path_kl.value), "err": r.path_kl.err,
                    "mean_part": inf_str(r.mean_part.value), "mean_part_err": r.mean_part.err,
                    "cov_part": inf_str(r.cov_part.value), "cov_part_err": r.cov_part.err,
                    "s_full": r.s_full.value, "s_full_err": r.s_full.err,
                    "mmd": mm.map(|m| m.mmd), "mmd_se": mm.map(|m| m.se),
                }),
                mm,
                self.samples,
            ));
        }
        // The LGS variants: sampled only (no exact path KL: their kernel is not Gaussian).
        for v in &s.lgs {
            for &t in &s.mmd_steps {
                let Some(m) = find_mmd(&v.name(), t, "ddpm") else {
                    continue;
                };
                let mut row = json!({"method": m.method, "T": t, "kernel": "ddpm",
                    "path_kl": Value::Null, "err": Value::Null, "mean_part": Value::Null,
                    "cov_part": Value::Null, "mmd": m.mmd, "mmd_se": m.se});
                if v.lgsb {
                    row["lgsb_fraction"] = json!(self.lgsb_fraction);
                }
                rows.push(with_sample_fields(row, Some(m), self.samples));
            }
        }
        for m in mmd.iter().filter(|m| m.kernel == "ddim") {
            let kl = ddim.and_then(|d| {
                d.rows
                    .iter()
                    .find(|r| r.method == m.method && r.steps == m.steps)
            });
            let deterministic = m.method == "beta" || m.method == "beta-tilde";
            rows.push(with_sample_fields(match kl {
                Some(r) => json!({"method": m.method, "T": m.steps, "kernel": "ddim",
                    "path_kl": inf_str(r.path_kl.value), "err": r.path_kl.err,
                    "mean_part": inf_str(r.mean_part.value), "mean_part_err": r.mean_part.err,
                    "cov_part": inf_str(r.cov_part.value), "cov_part_err": r.cov_part.err,
                    "s_full": r.s_full.value, "s_full_err": r.s_full.err,
                    "mmd": m.mmd, "mmd_se": m.se}),
                // Plain DDIM (Sigma_0 = 0): a deterministic kernel, infinite KL.
                None if deterministic && self.early_stop == 0.0 => json!({"method": m.method, "T": m.steps, "kernel": "ddim",
                    "path_kl": "inf", "err": Value::Null, "mean_part": Value::Null, "cov_part": "inf",
                    "mmd": m.mmd, "mmd_se": m.se}),
                None => json!({"method": m.method, "T": m.steps, "kernel": "ddim", "path_kl": Value::Null, "err": Value::Null,
                    "mean_part": Value::Null, "cov_part": Value::Null, "mmd": m.mmd, "mmd_se": m.se}),
            }, Some(m), self.samples));
        }
        json!({
            "data": s.data.name,
            "score": self.score,
            "schedule": s.schedule.name(),
            "dim": s.data.q0.dim(),
            "rule": report.rule,
            "early_stop": self.early_stop,
            "terminal_kl": report.terminal_kl.value,
            "terminal_kl_err": report.terminal_kl.err,
            "clip_range": [s.data.range.0, s.data.range.1],
            "mmd_samples": self.samples,
            "last_step": s.last_step.name(),
            "mmd_floor": mmd.iter().find(|m| m.method == "exact").map(|m| json!({"mmd": m.mmd, "mmd_se": m.se, "frechet_sq": inf_str(m.frechet_sq)})),
            "rows": rows,
            "cov_error": report.cov_error.iter().map(|c| json!({"method": c.method, "t": c.t, "ln_abar": c.ln_abar, "mse": inf_str(c.mse), "rel_mse": inf_str(c.rel_mse)})).collect::<Vec<_>>(),
            "j_asymmetry": report.j_asymmetry,
            "wall_time_s": info.wall_time_s,
            "path_kl_wall_s": kl_wall,
            "mmd_wall_s": mmd_wall,
            "threads": info.threads,
            "covlab_version": env!("CARGO_PKG_VERSION"),
        })
    }
}

/// `row` with the sample metrics of its chain `m` beyond MMD (none without one): the squared
/// Frechet distance of the sample moments, the network passes per sample (`score` forwards,
/// `products` of the learned score's covariance, one reverse pass each, `head` forwards) and
/// the wall time per sample of the sampling cell.
fn with_sample_fields(mut row: Value, m: Option<&MmdCell>, samples: usize) -> Value {
    if let Some(m) = m {
        row["frechet_sq"] = inf_str(m.frechet_sq);
        let (score, products, head) = m.passes;
        row["passes"] = json!({"score": score, "products": products, "head": head});
        row["wall_s_per_sample"] = json!(m.wall_s / samples.max(1) as f64);
    }
    row
}

/// A JSON number, or the string "inf" for an infinite value (null for NaN): the binary's
/// contract.
pub(super) fn inf_str(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else if v.is_nan() {
        Value::Null
    } else {
        json!("inf")
    }
}

pub(super) fn sampler_family(f: Family) -> SamplerFamily {
    match f {
        Family::Beta => SamplerFamily::Beta,
        Family::BetaTilde => SamplerFamily::BetaTilde,
        Family::Analytic => SamplerFamily::Analytic,
        Family::Diag => SamplerFamily::Diag,
        Family::Full => SamplerFamily::Full,
    }
}
