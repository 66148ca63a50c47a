//! The cases of the Lanczos study: synthetic spectra `C = V diag(l) V^T` (geometric or uniform
//! on `[1/kappa, 1]`) and exact posterior covariances `C = (b^2 H + b I) / a^2` of mixture data
//! along a reverse trajectory, each swept over `k` against the exact `C^{1/2} z`.

use super::*;

/// A prescribed spectrum on `[1/kappa, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Spectrum {
    /// `l_i = kappa^{i/(D-1) - 1}`.
    Geometric,
    /// `l_i = 1/kappa + (1 - 1/kappa) i/(D-1)`.
    Uniform,
}

impl Spectrum {
    pub(super) fn name(self) -> &'static str {
        match self {
            Spectrum::Geometric => "geometric",
            Spectrum::Uniform => "uniform",
        }
    }

    /// The `D` eigenvalues, ascending, from exactly `1/kappa` to exactly `1`.
    pub(super) fn values(self, d: usize, kappa: f64) -> Vec<f64> {
        let lmin = 1.0 / kappa;
        if d == 1 {
            return vec![1.0];
        }
        (0..d)
            .map(|i| {
                if i + 1 == d {
                    return 1.0;
                }
                let t = i as f64 / (d - 1) as f64;
                match self {
                    Spectrum::Geometric => kappa.powf(t - 1.0),
                    Spectrum::Uniform => lmin + (1.0 - lmin) * t,
                }
            })
            .collect()
    }
}

/// `v -> (b^2 H(x_t) v + b v) / a^2` through the Hessian-vector product of `ln q_t`.
pub(super) struct TweedieOperator<'a> {
    pub(super) marginal: &'a Mixture,
    pub(super) x_t: &'a [f64],
    pub(super) step: Step,
}

impl LinearOperator for TweedieOperator<'_> {
    fn dim(&self) -> usize {
        self.x_t.len()
    }

    fn apply(&self, v: &[f64], out: &mut [f64]) {
        let (a2, b) = (self.step.a2, self.step.b);
        match self.marginal.hvp(self.x_t, v) {
            Ok(hv) => {
                out.copy_from_slice(hv.as_slice());
                hvp_to_cov(out, v, a2, b);
            }
            // Lanczos reports the NaN as a non-finite product.
            Err(_) => out.fill(f64::NAN),
        }
    }
}

/// The data of a mixture case: a dense-component preset or an image (low-rank) preset.
pub(super) enum CaseData {
    Dense(Mixture),
    LowRank(Arc<LowRankMixture>),
}

/// One study case, ready to run.
pub(super) enum CaseSpec {
    Synthetic {
        spectrum: Spectrum,
        d: usize,
        kappa: f64,
        kappa_index: usize,
        dim_index: usize,
    },
    Mixture {
        label: String,
        q0: Arc<CaseData>,
        x_t: Vec<f64>,
        tau: f64,
        ln_abar: f64,
    },
}

/// What a case measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct CaseResult {
    pub(super) name: String,
    pub(super) spectrum: String,
    pub(super) d: usize,
    pub(super) kappa: f64,
    pub(super) lmin: f64,
    pub(super) lmax: f64,
    pub(super) k: Vec<usize>,
    pub(super) error: Vec<f64>,
    pub(super) bound: Vec<f64>,
    pub(super) bound_interp: Vec<f64>,
    pub(super) steps_done: usize,
    pub(super) terminated_early: bool,
    pub(super) stream: u64,
    /// Extra JSON keys (mixture: data, tau, x_t).
    pub(super) extra: Value,
    /// Figure style: (figure kind, colour, marker, bound colour group).
    pub(super) style: (String, usize, usize),
}

pub(super) fn gaussian(d: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..d).map(|_| rng.sample(StandardNormal)).collect()
}

pub(super) fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

pub(super) fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// Per-k results of one case's sweep.
pub(super) struct SweepOut {
    pub(super) k: Vec<usize>,
    pub(super) error: Vec<f64>,
    pub(super) bound: Vec<f64>,
    pub(super) bound_interp: Vec<f64>,
    pub(super) steps_done: usize,
    pub(super) terminated_early: bool,
}

/// What identifies a case besides its sweep.
pub(super) struct CaseMeta {
    pub(super) name: String,
    pub(super) spectrum: String,
    pub(super) d: usize,
    pub(super) lmin: f64,
    pub(super) lmax: f64,
    pub(super) stream: u64,
    pub(super) extra: Value,
    pub(super) style: (String, usize, usize),
}

impl CaseResult {
    pub(super) fn new(meta: CaseMeta, sw: SweepOut) -> Self {
        Self {
            name: meta.name,
            spectrum: meta.spectrum,
            d: meta.d,
            kappa: meta.lmax / meta.lmin,
            lmin: meta.lmin,
            lmax: meta.lmax,
            k: sw.k,
            error: sw.error,
            bound: sw.bound,
            bound_interp: sw.bound_interp,
            steps_done: sw.steps_done,
            terminated_early: sw.terminated_early,
            stream: meta.stream,
            extra: meta.extra,
            style: meta.style,
        }
    }
}

/// Lanczos once with `kmax` steps from `z`, then `y_k` for every `k` from the prefixes.
pub(super) fn sweep<O: LinearOperator + ?Sized>(
    op: &O,
    z: &[f64],
    want: &[f64],
    kmax: usize,
    lmin: f64,
    lmax: f64,
) -> Result<SweepOut, StudyError> {
    let kry = lanczos(op, z, &LanczosParams::new(kmax))?;
    let zn = norm(z);
    let mut out = SweepOut {
        k: vec![],
        error: vec![],
        bound: vec![],
        bound_interp: vec![],
        steps_done: kry.steps(),
        terminated_early: kry.terminated_early(),
    };
    // Both the interpolation error and E_0 bound E_{k-1} from above (up to grid resolution).
    let e0 = 0.5 * (lmax.sqrt() - lmin.sqrt());
    for k in 1..=kmax {
        let y = kry.prefix(k)?.sqrt()?;
        out.k.push(k);
        out.error.push(dist(&y, want) / zn);
        out.bound.push(sqrt_error_bound(lmin, lmax, k));
        out.bound_interp
            .push(2.0 * sqrt_chebyshev_interp_error(lmin, lmax, k - 1).min(e0));
    }
    Ok(out)
}

pub(super) fn run_case(
    spec: &CaseSpec,
    seed: u64,
    stream: u64,
    kmax: usize,
) -> Result<CaseResult, StudyError> {
    let mut rng = crate::numeric::stream(seed, stream);
    match spec {
        CaseSpec::Synthetic {
            spectrum,
            d,
            kappa,
            kappa_index,
            dim_index,
        } => {
            let l = spectrum.values(*d, *kappa);
            let (lmin, lmax) = (l[0], l[l.len() - 1]);
            let op = SpectralOperator::new(l, REFLECTORS, &mut rng);
            let z = gaussian(*d, &mut rng);
            let want = op.apply_fn(&z, f64::sqrt);
            let kmax = kmax.min(*d);
            let sw = sweep(&op, &z, &want, kmax, lmin, lmax)?;
            let meta = CaseMeta {
                name: format!("{}_D{}_kappa{}", spectrum.name(), d, kappa),
                spectrum: spectrum.name().to_string(),
                d: *d,
                lmin,
                lmax,
                stream,
                extra: json!({}),
                style: (spectrum.name().to_string(), *kappa_index, *dim_index),
            };
            Ok(CaseResult::new(meta, sw))
        }
        CaseSpec::Mixture {
            label,
            q0,
            x_t,
            tau,
            ln_abar,
        } => mixture_case(label, q0, x_t, *tau, *ln_abar, &mut rng, stream, kmax)
            .map_err(|e| data_error(label, *tau, e)),
    }
}

/// A mixture case's failure caused by the user's data (a mixture, posterior or Lanczos error
/// of the model, a non-finite or non-positive posterior covariance) as bad input naming
/// `data`: e.g. a mixture file whose entries are too large for f64 arithmetic (`1e308`).
/// Other errors pass through.
pub(super) fn data_error(label: &str, tau: f64, e: StudyError) -> StudyError {
    match e {
        // The eigensolver's own failures are not the data's.
        StudyError::Covlab(crate::Error::Lanczos(
            LanczosError::EigenFailed { .. } | LanczosError::EigenInaccurate { .. },
        )) => e,
        StudyError::Covlab(_) | StudyError::Case { .. } => StudyError::BadParam(ParamError::new(
            "data",
            "mixtures whose posterior covariances are finite and positive definite in f64",
            format!("{label} at tau = {tau}: {e}"),
        )),
        e => e,
    }
}

/// The mixture part of [`run_case`].
#[allow(clippy::too_many_arguments)]
pub(super) fn mixture_case(
    label: &str,
    q0: &Arc<CaseData>,
    x_t: &[f64],
    tau: f64,
    ln_abar: f64,
    rng: &mut ChaCha8Rng,
    stream: u64,
    kmax: usize,
) -> Result<CaseResult, StudyError> {
    let (tau, ln_abar) = (&tau, &ln_abar);
    {
        {
            let step = Step::from_ln_abar(0.0, *ln_abar);
            // The operator and the dense C of the reference.
            let (d, cov, dense_marginal, lowrank_local) = match q0.as_ref() {
                CaseData::Dense(q0) => {
                    let marginal = q0.marginal(*ln_abar)?;
                    let cov = tweedie_moments(&marginal, &step, x_t)?.cov;
                    (q0.dim(), cov, Some(marginal), None)
                }
                CaseData::LowRank(q0) => {
                    let marginal = Arc::new(q0.marginal(*ln_abar)?);
                    let local = marginal.local(x_t)?;
                    let d = q0.dim();
                    let op = CovOperator {
                        local: &local,
                        a2: step.a2,
                        b: step.b,
                    };
                    let mut cov = DMatrix::zeros(d, d);
                    let mut e = vec![0.0; d];
                    let mut col = vec![0.0; d];
                    for j in 0..d {
                        e[j] = 1.0;
                        op.apply(&e, &mut col);
                        e[j] = 0.0;
                        cov.column_mut(j).copy_from_slice(&col);
                    }
                    (d, cov, None, Some(local))
                }
            };
            let cov = (&cov + cov.transpose()) * 0.5;
            if let Some(index) = cov.iter().position(|v| !v.is_finite()) {
                return Err(StudyError::Case {
                    case: format!("{label} at tau = {tau}"),
                    reason: format!(
                        "the posterior covariance has a non-finite entry (column-major index {index})"
                    ),
                });
            }
            let eig =
                SymmetricEigen::try_new(cov, f64::EPSILON, 0).ok_or_else(|| StudyError::Case {
                    case: format!("{label} at tau = {tau}"),
                    reason: "the dense eigendecomposition did not converge".into(),
                })?;
            let lmin = eig.eigenvalues.min();
            let lmax = eig.eigenvalues.max();
            if lmin.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                return Err(StudyError::Case {
                    case: format!("{label} at tau = {tau}"),
                    reason: format!("the posterior covariance has eigenvalue {lmin} <= 0"),
                });
            }
            let z = gaussian(d, rng);
            let zt = eig.eigenvectors.transpose() * DVector::from_column_slice(&z);
            let want: Vec<f64> = (&eig.eigenvectors
                * DVector::from_fn(d, |i, _| eig.eigenvalues[i].sqrt() * zt[i]))
            .iter()
            .copied()
            .collect();
            let op: Box<dyn LinearOperator + '_> = match (&dense_marginal, &lowrank_local) {
                (Some(marginal), _) => Box::new(TweedieOperator {
                    marginal,
                    x_t,
                    step,
                }),
                (None, Some(local)) => Box::new(CovOperator {
                    local,
                    a2: step.a2,
                    b: step.b,
                }),
                (None, None) => {
                    return Err(StudyError::Case {
                        case: format!("{label} at tau = {tau}"),
                        reason: "no operator".into(),
                    })
                }
            };
            let kmax = kmax.min(d);
            let sw = sweep(op.as_ref(), &z, &want, kmax, lmin, lmax)?;
            let meta = CaseMeta {
                name: format!("{label}_tau{tau:.1}"),
                spectrum: "posterior q(x_0|x_t)".to_string(),
                d,
                lmin,
                lmax,
                stream,
                extra: json!({"data": label, "tau": tau, "ln_abar_t": ln_abar, "x_t": x_t}),
                style: (format!("mixture_{label}"), 0, 0),
            };
            Ok(CaseResult::new(meta, sw))
        }
    }
}

/// Builds every case; mixture trajectories are drawn here (sequentially, from their own streams).
pub(super) fn build_cases(args: &LanczosStudy) -> Result<Vec<CaseSpec>, StudyError> {
    let mut cases = Vec::new();
    for spectrum in [Spectrum::Geometric, Spectrum::Uniform] {
        for (kappa_index, &kappa) in args.kappas.iter().enumerate() {
            for (dim_index, &d) in args.dims.iter().enumerate() {
                cases.push(CaseSpec::Synthetic {
                    spectrum,
                    d,
                    kappa,
                    kappa_index,
                    dim_index,
                });
            }
        }
    }
    let grid = Schedule::vp_linear().grid(TRAJ_STEPS, 0.0)?;
    for (data_index, data) in args.data.iter().filter(|s| !s.is_empty()).enumerate() {
        let label = crate::study::data_label(data);
        // Trajectory streams come after all case streams: 1_000_000 + data index.
        let mut rng = crate::numeric::stream(args.seed, 1_000_000 + data_index as u64);
        let (q0, first) = match DataSet::load(data) {
            Ok(DataSet::LowRank(q)) => {
                let x0 = q.sample(&mut rng, 1);
                (CaseData::LowRank(Arc::new(q)), x0)
            }
            Ok(DataSet::Dense(q)) => {
                let x0 = q.sample(&mut rng, 1);
                (CaseData::Dense(q), x0)
            }
            Err(DataSetError::Image(e)) => return Err(e.into()),
            Err(DataSetError::Preset(e)) => {
                return Err(ParamError::new("data", "presets or mixture JSON files", e).into())
            }
        };
        let q0 = Arc::new(q0);
        let mut x: Vec<f64> = first
            .first()
            .map(|v| v.iter().copied().collect())
            .ok_or_else(|| StudyError::Case {
                case: label.clone(),
                reason: "no sample drawn".into(),
            })?;
        for i in 1..=TRAJ_STEPS {
            let step = grid.step(i);
            let a = step.a();
            let sb = step.b.sqrt();
            for xi in &mut x {
                *xi = a * *xi + sb * rng.sample::<f64, _>(StandardNormal);
            }
            if TRAJ_RECORD.contains(&i) {
                cases.push(CaseSpec::Mixture {
                    label: label.clone(),
                    q0: Arc::clone(&q0),
                    x_t: x.clone(),
                    tau: grid.times[i],
                    ln_abar: grid.ln_abar[i],
                });
            }
        }
    }
    Ok(cases)
}

/// The timing comparison at `D = timing_dim`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Timing {
    pub(super) d: usize,
    pub(super) k: usize,
    pub(super) lanczos_s: f64,
    pub(super) eig_s: f64,
    pub(super) build_s: f64,
    pub(super) lanczos_error: f64,
    pub(super) eig_error: f64,
    pub(super) bound: f64,
}

pub(super) fn timing(args: &LanczosStudy) -> Result<Timing, StudyError> {
    let d = args.timing_dim;
    let k = args.timing_k.min(d);
    let mut rng = crate::numeric::stream(args.seed, 2_000_000);
    let l = Spectrum::Geometric.values(d, TIMING_KAPPA);
    let (lmin, lmax) = (l[0], l[d - 1]);
    let op = SpectralOperator::new(l, REFLECTORS, &mut rng);
    let z = gaussian(d, &mut rng);
    let want = op.apply_fn(&z, f64::sqrt);
    let zn = norm(&z);
    // Materialise C column by column (C e_j), O(D^2 r), then symmetrise.
    let start = Instant::now();
    let mut c = DMatrix::<f64>::zeros(d, d);
    let mut e = vec![0.0; d];
    for j in 0..d {
        e[j] = 1.0;
        op.apply(&e, c.column_mut(j).as_mut_slice());
        e[j] = 0.0;
    }
    let c = (&c + c.transpose()) * 0.5;
    let build_s = start.elapsed().as_secs_f64();
    // Lanczos on the dense matrix: best of 3 (each run is short and noisy).
    let mut lanczos_s = f64::INFINITY;
    let mut y = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        y = sqrt_mul(&c, &z, &LanczosParams::new(k))?;
        lanczos_s = lanczos_s.min(t.elapsed().as_secs_f64());
    }
    let lanczos_error = dist(&y, &want) / zn;
    let t = Instant::now();
    let eig = SymmetricEigen::try_new(c, f64::EPSILON, 0).ok_or_else(|| StudyError::Case {
        case: format!("timing at D = {d}"),
        reason: "the dense eigendecomposition did not converge".into(),
    })?;
    let zt = eig.eigenvectors.transpose() * DVector::from_column_slice(&z);
    let ye =
        &eig.eigenvectors * DVector::from_fn(d, |i, _| eig.eigenvalues[i].max(0.0).sqrt() * zt[i]);
    let eig_s = t.elapsed().as_secs_f64();
    let eig_error = dist(ye.as_slice(), &want) / zn;
    Ok(Timing {
        d,
        k,
        lanczos_s,
        eig_s,
        build_s,
        lanczos_error,
        eig_error,
        bound: sqrt_error_bound(lmin, lmax, k),
    })
}
