//! Study kind `lanczos`: the measured error of the Lanczos approximation `y_k ≈ C^{1/2} z`
//! against the a-priori bound `2 E_{k-1}` (Musco, Musco & Sidford 2018; `docs/lanczos.md#the-a-priori-bound`),
//! on synthetic spectra and on mixture posteriors along a trajectory (the `lanczos` binary
//! is a CLI over this).
//!
//! Cases:
//! - synthetic SPD operators `C = V diag(l) V^T` with a prescribed spectrum in
//!   `[1/kappa, 1]` (geometric or uniform), for each `dims` × `kappas`; `V` is a product of
//!   `REFLECTORS` Householder reflections with Gaussian directions, applied matrix-free
//!   (`O(D r)` per product), and the reference `C^{1/2} z = V (l^{1/2} .* V^T z)` is exact to
//!   rounding without any eigendecomposition. The error distribution does not depend on `V`:
//!   `V^T z ~ N(0, I)` for any orthogonal `V`.
//! - mixture posteriors: for each `data` preset, a forward trajectory `x_t` (vp-linear,
//!   20-step grid) and the covariance of the clean-data posterior `q(x_0 | x_t)`,
//!   `C = (b^2 H + b I) / a^2` with `a^2 = abar_t`, `b = 1 - abar_t`, applied matrix-free through
//!   the Hessian-vector product of `ln q_t` (what a sampler does); reference from the dense
//!   eigendecomposition of the same `C`.
//!
//! The error is normalised by `||z||`. Also times one Lanczos `C^{1/2} z` against a dense
//! symmetric eigendecomposition (the last cell; machine-dependent).
//!
//! Cells: one per case (case `i` draws from ChaCha8 stream `i` of the seed; trajectories from
//! streams `1_000_000 + data index`), then the timing: a case does not depend on which other
//! cases run.

use std::sync::Arc;
use std::time::Instant;

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::data::dataset::{DataSet, DataSetError};
use crate::data::lowrank::LowRankMixture;
use crate::data::mixture::Mixture;
use crate::kernel::posterior::CovOperator;
use crate::kernel::posterior::{hvp_to_cov, tweedie_moments};
use crate::linalg::operator::SpectralOperator;
use crate::linalg::{
    lanczos, rho, sqrt_chebyshev_interp_error, sqrt_error_bound, sqrt_mul, LanczosError,
    LanczosParams, LinearOperator,
};
use crate::plot::{LogLinFigure, Series};
use crate::process::schedule::{Schedule, Step};
use crate::stats::rates::fit_geometric_decay;
use crate::study::{
    ensure, Assembled, Figure, FigureName, Observer, ParamError, RunInfo, StudyError, StudyKind,
};

/// Parameters of a `lanczos` study (keys as the binary's flags; defaults as its defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LanczosStudy {
    /// Seed: case i draws from ChaCha8 stream i of this seed.
    pub seed: u64,
    /// Dimensions D of the synthetic cases.
    pub dims: Vec<usize>,
    /// Condition numbers kappa of the synthetic cases (each > 1).
    pub kappas: Vec<f64>,
    /// Largest number of Lanczos steps k.
    pub kmax: usize,
    /// Mixture presets or mixture JSON files for the posterior part.
    pub data: Vec<String>,
    /// D of the timing run; 0 skips it.
    pub timing_dim: usize,
    /// k of the timing run.
    pub timing_k: usize,
}

impl Default for LanczosStudy {
    fn default() -> Self {
        Self {
            seed: 0,
            dims: vec![100, 1024, 3072],
            kappas: vec![10.0, 100.0, 1000.0],
            kmax: 40,
            data: ["mog40", "mix6", "digits8", "digits32"]
                .map(String::from)
                .to_vec(),
            timing_dim: 3072,
            timing_k: 20,
        }
    }
}

/// Householder reflections whose product is the eigenvector matrix `V` of a synthetic case.
const REFLECTORS: usize = 16;
/// Errors at or below this are rounding: the decay fit stops at the first such `k`.
const FLOOR: f64 = 1e-13;
/// The bound check: a case fails when `error_k > bound_k + FLOOR · max(1, sqrt(lmax))` at some
/// `k`. The bound holds in exact arithmetic; in f64 the error cannot go below the rounding of
/// `y_k` (products with `C`, `Q_k`, the eigensolve and the reference), about
/// `D eps ||C^{1/2}|| <= 1e-15 · 3072 · sqrt(lmax)` here relative to `||z||`; `FLOOR`
/// (`1e-13`) covers it while an error of the issue's size (`5.7e-4` against `9.6e-6`) fails.
fn bound_slack(lmax: f64) -> f64 {
    FLOOR * lmax.sqrt().max(1.0)
}
/// Largest `kappa` accepted: `lmin = 1/kappa` must stay far above the absolute rounding of the
/// Ritz values (a few hundred ulps of `lmax = 1`, `~1e-13`, more for long runs), or a Ritz
/// value can come out `<= 0` and `C^{1/2}` is undefined; `1e12` keeps `lmin` 10 times above
/// that and is far beyond the `kappa` of the committed study (`1e3`).
pub const MAX_KAPPA: f64 = 1e12;
/// Steps of the vp-linear grid on which the mixture trajectories are drawn.
const TRAJ_STEPS: usize = 20;
/// Grid indices (of [`TRAJ_STEPS`]) at which the trajectory is recorded: tau = 0.1, 0.3, 0.6.
const TRAJ_RECORD: [usize; 3] = [2, 6, 12];
/// The spectrum of the timing case: geometric with this kappa.
const TIMING_KAPPA: f64 = 100.0;
/// Largest `D` accepted (memory: the basis holds `D × kmax` numbers).
const MAX_DIM: usize = 1 << 22;
/// Largest `kmax` accepted.
const MAX_KMAX: usize = 2000;
/// A prescribed spectrum on `[1/kappa, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Spectrum {
    /// `l_i = kappa^{i/(D-1) - 1}`.
    Geometric,
    /// `l_i = 1/kappa + (1 - 1/kappa) i/(D-1)`.
    Uniform,
}

impl Spectrum {
    fn name(self) -> &'static str {
        match self {
            Spectrum::Geometric => "geometric",
            Spectrum::Uniform => "uniform",
        }
    }

    /// The `D` eigenvalues, ascending, from exactly `1/kappa` to exactly `1`.
    fn values(self, d: usize, kappa: f64) -> Vec<f64> {
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
struct TweedieOperator<'a> {
    marginal: &'a Mixture,
    x_t: &'a [f64],
    step: Step,
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
enum CaseData {
    Dense(Mixture),
    LowRank(Arc<LowRankMixture>),
}

/// One study case, ready to run.
enum CaseSpec {
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
struct CaseResult {
    name: String,
    spectrum: String,
    d: usize,
    kappa: f64,
    lmin: f64,
    lmax: f64,
    k: Vec<usize>,
    error: Vec<f64>,
    bound: Vec<f64>,
    bound_interp: Vec<f64>,
    steps_done: usize,
    terminated_early: bool,
    stream: u64,
    /// Extra JSON keys (mixture: data, tau, x_t).
    extra: Value,
    /// Figure style: (figure kind, colour, marker, bound colour group).
    style: (String, usize, usize),
}

fn gaussian(d: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..d).map(|_| rng.sample(StandardNormal)).collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// Per-k results of one case's sweep.
struct SweepOut {
    k: Vec<usize>,
    error: Vec<f64>,
    bound: Vec<f64>,
    bound_interp: Vec<f64>,
    steps_done: usize,
    terminated_early: bool,
}

/// What identifies a case besides its sweep.
struct CaseMeta {
    name: String,
    spectrum: String,
    d: usize,
    lmin: f64,
    lmax: f64,
    stream: u64,
    extra: Value,
    style: (String, usize, usize),
}

impl CaseResult {
    fn new(meta: CaseMeta, sw: SweepOut) -> Self {
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
fn sweep<O: LinearOperator + ?Sized>(
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

fn run_case(
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
fn data_error(label: &str, tau: f64, e: StudyError) -> StudyError {
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
fn mixture_case(
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
fn build_cases(args: &LanczosStudy) -> Result<Vec<CaseSpec>, StudyError> {
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
struct Timing {
    d: usize,
    k: usize,
    lanczos_s: f64,
    eig_s: f64,
    build_s: f64,
    lanczos_error: f64,
    eig_error: f64,
    bound: f64,
}

fn timing(args: &LanczosStudy) -> Result<Timing, StudyError> {
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

/// Per-case fit of the geometric decay: (factor, ci95, k range) or the reason for no fit.
type Fit = Result<([f64; 2], f64, [f64; 2]), String>;

fn fit_case(r: &CaseResult) -> Fit {
    let k: Vec<f64> = r.k.iter().map(|&k| k as f64).collect();
    fit_geometric_decay(&k, &r.error, FLOOR)
        .map(|f| (f.factor_ci95, f.factor, f.fit.window))
        .map_err(|e| e.to_string())
}

/// The bound check of one case: `Some(message)` naming the case and the first `k` with
/// `error_k > bound_k + bound_slack(lmax)` (a NaN error fails too).
fn bound_failure(r: &CaseResult) -> Option<String> {
    let slack = bound_slack(r.lmax);
    r.k.iter()
        .zip(r.error.iter().zip(&r.bound))
        .find(|(_, (e, b))| e.is_nan() || **e > **b + slack)
        .map(|(k, (e, b))| {
            format!(
                "case {}: error {e:.3e} > bound {b:.3e} (+ rounding allowance {slack:.1e}) at k = {k} (error / bound = {:.3e})",
                r.name,
                e / b
            )
        })
}

fn max_ratio(r: &CaseResult) -> f64 {
    r.error
        .iter()
        .zip(&r.bound)
        .map(|(e, b)| e / b)
        .fold(0.0, f64::max)
}

fn case_json(r: &CaseResult, fit: &Fit, seed: u64) -> Value {
    let rho = rho(r.kappa);
    let mut v = json!({
        "name": r.name,
        "D": r.d,
        "kappa": r.kappa,
        "k": r.k,
        "error": r.error,
        "bound": r.bound,
        "bound_interp": r.bound_interp,
        "spectrum": r.spectrum,
        "lmin": r.lmin,
        "lmax": r.lmax,
        "rho": rho,
        "bound_rate": 1.0 / rho,
        "fitted_rate": fit.as_ref().ok().map(|f| f.1),
        "fitted_rate_ci95": fit.as_ref().ok().map(|f| f.0),
        "fit_k": fit.as_ref().ok().map(|f| f.2),
        "fit_note": fit.as_ref().err(),
        "max_error_over_bound": max_ratio(r),
        "steps_done": r.steps_done,
        "terminated_early": r.terminated_early,
        "seed": seed,
        "stream": r.stream,
    });
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), r.extra.as_object()) {
        for (key, val) in extra {
            obj.insert(key.clone(), val.clone());
        }
    }
    v
}

fn table(results: &[CaseResult], fits: &[Fit], timing: Option<&Timing>, info: &RunInfo) -> String {
    let mut s = String::new();
    s += "Lanczos C^(1/2) z: error ||C^(1/2) z - y_k|| / ||z|| vs the bound 2 E_(k-1)\n";
    s += &format!(
        "{:<28} {:>5} {:>9} {:>9} {:>24} {:>8} {:>10} {:>11}\n",
        "case", "D", "kappa", "fit k", "fitted rate [95% CI]", "1/rho", "fit*rho", "max err/bd"
    );
    for (r, f) in results.iter().zip(fits) {
        let rate = 1.0 / rho(r.kappa);
        let (range, fitted, ratio) = match f {
            Ok((ci, factor, w)) => (
                format!("{}..{}", w[0], w[1]),
                format!("{factor:.4} [{:.4}, {:.4}]", ci[0], ci[1]),
                format!("{:.3}", factor / rate),
            ),
            Err(_) => ("-".into(), "- (< 3 points)".into(), "-".into()),
        };
        s += &format!(
            "{:<28} {:>5} {:>9.4} {:>9} {:>24} {:>8.4} {:>10} {:>11.3e}\n",
            r.name,
            r.d,
            r.kappa,
            range,
            fitted,
            rate,
            ratio,
            max_ratio(r)
        );
    }
    let worst = results.iter().map(max_ratio).fold(0.0, f64::max);
    s += &format!("max over all cases and k of error / bound: {worst:.3e}\n");
    let failed: Vec<String> = results.iter().filter_map(bound_failure).collect();
    if failed.is_empty() {
        s += "bound check: every case has error <= bound (+ rounding allowance) at every k\n";
    } else {
        for f in &failed {
            s += &format!("BOUND CHECK FAILED: {f}\n");
        }
    }
    if let Some(t) = timing {
        s += &format!(
            "timing at D = {}, k = {} (geometric, kappa = {TIMING_KAPPA}): Lanczos {:.4} s (error {:.2e}, bound {:.2e}), dense eigendecomposition {:.2} s (error {:.2e}); ratio eig / Lanczos = {:.0}\n",
            t.d, t.k, t.lanczos_s, t.lanczos_error, t.bound, t.eig_s, t.eig_error, t.eig_s / t.lanczos_s
        );
    }
    s += &format!(
        "wall time {:.2} s on {} threads\n",
        info.wall_time_s, info.threads
    );
    s
}

/// Errors below this are drawn at it: an exact result (error 0, e.g. `D = 1`, where one step
/// spans the whole space) has no place on a log axis; 1e-17 is below any rounding-level error
/// of a normalised `||z||`-relative quantity (>= ~1e-17), so no measured point moves.
const DRAW_FLOOR: f64 = 1e-17;

/// One figure per spectrum kind (suffixes `_geometric`, `_uniform`) and one per mixture
/// (`_mixture_<data>`).
fn make_figures(results: &[CaseResult], kappas: &[f64], dims: &[usize]) -> Vec<(String, Figure)> {
    let mut written = Vec::new();
    let mut kinds: Vec<&str> = Vec::new();
    for r in results {
        if !kinds.contains(&r.style.0.as_str()) {
            kinds.push(&r.style.0);
        }
    }
    for kind in kinds {
        let cases: Vec<&CaseResult> = results.iter().filter(|r| r.style.0 == kind).collect();
        let mixture = kind.strip_prefix("mixture_");
        let mut series = Vec::new();
        let xs = |r: &CaseResult| r.k.iter().map(|&k| k as f64).collect::<Vec<_>>();
        let drawn = |e: &[f64]| e.iter().map(|&v| v.max(DRAW_FLOOR)).collect::<Vec<_>>();
        if mixture.is_some() {
            for (i, r) in cases.iter().enumerate() {
                series.push(
                    Series::new("", xs(r), r.bound.clone())
                        .dashed()
                        .with_color(i),
                );
            }
            for (i, r) in cases.iter().enumerate() {
                series.push(
                    Series::new(
                        format!("{} (κ={:.4})", r.name, r.kappa),
                        xs(r),
                        drawn(&r.error),
                    )
                    .with_color(i),
                );
            }
        } else {
            // One bound per kappa (it depends on kappa only), in that kappa's colour.
            for (ki, kappa) in kappas.iter().enumerate() {
                if let Some(r) = cases.iter().find(|r| r.style.1 == ki) {
                    series.push(
                        Series::new(format!("bound κ={kappa}"), xs(r), r.bound.clone())
                            .dashed()
                            .with_color(ki),
                    );
                }
            }
            for r in &cases {
                let (ki, di) = (r.style.1, r.style.2);
                series.push(
                    Series::new(
                        format!("D={}, κ={}", dims[di], kappas[ki]),
                        xs(r),
                        drawn(&r.error),
                    )
                    .with_color(ki)
                    .with_marker(di),
                );
            }
        }
        // A bound that is 0 everywhere (lmin = lmax: a constant is exact) has nothing to draw.
        series.retain(|s| s.has_drawable_point(false));
        let (title, caption) = match mixture {
            Some(label) => (
                format!(
                    "Lanczos C^1/2 z: posterior q(x_0 | x_t), {label} (D = {})",
                    cases[0].d
                ),
                "solid: error; dashed: bound 2 E_(k-1), same colour; x_t on a vp-linear trajectory, C = (b² H + b I) / a²".to_string(),
            ),
            None => (
                format!("Lanczos C^1/2 z: {kind} spectrum on [1/κ, 1]"),
                "solid: error (colour κ, marker D; below 1e-17 drawn at 1e-17); dashed: bound 2 E_(k-1) = O(ρ^-k)".to_string(),
            ),
        };
        let fig = LogLinFigure {
            title,
            x_label: "k (Lanczos steps = products with C)".into(),
            y_label: "||C^1/2 z - y_k|| / ||z||".into(),
            series,
            refs: vec![],
            caption: Some(caption),
        };
        written.push((format!("_{kind}"), Figure::LogLin(fig)));
    }
    written
}

/// One cell: a case or the timing.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Cell {
    Case(Box<CaseResult>),
    Timing(Timing),
}

impl StudyKind for LanczosStudy {
    fn kind(&self) -> &'static str {
        "lanczos"
    }

    fn validate(&self) -> Result<(), ParamError> {
        ensure(
            !self.dims.is_empty() && self.dims.iter().all(|d| (1..=MAX_DIM).contains(d)),
            "dims",
            &format!("every D in 1..={MAX_DIM}"),
            &self.dims,
        )?;
        ensure(
            !self.kappas.is_empty()
                && self
                    .kappas
                    .iter()
                    .all(|&k| k.is_finite() && k > 1.0 && k <= MAX_KAPPA),
            "kappas",
            &format!("every kappa in (1, {MAX_KAPPA:e}] (beyond that 1/kappa is below the rounding of the Ritz values in f64)"),
            &self.kappas,
        )?;
        ensure(
            (1..=MAX_KMAX).contains(&self.kmax),
            "kmax",
            &format!("a number in 1..={MAX_KMAX}"),
            self.kmax,
        )?;
        ensure(
            self.timing_dim <= MAX_DIM && (self.timing_dim == 0 || self.timing_k >= 1),
            "timing-dim",
            &format!("<= {MAX_DIM}, with timing-k >= 1"),
            (self.timing_dim, self.timing_k),
        )?;
        for d in self.data.iter().filter(|s| !s.is_empty()) {
            if crate::data::images::shape(d).is_none() {
                crate::data::presets::load(d)
                    .map_err(|e| ParamError::new("data", "presets or mixture JSON files", e))?;
            }
        }
        Ok(())
    }

    fn cells(&self) -> Result<Vec<String>, StudyError> {
        let mut labels = Vec::new();
        for spectrum in [Spectrum::Geometric, Spectrum::Uniform] {
            for kappa in &self.kappas {
                for d in &self.dims {
                    labels.push(format!("{}_D{d}_kappa{kappa}", spectrum.name()));
                }
            }
        }
        for data in self.data.iter().filter(|s| !s.is_empty()) {
            for i in TRAJ_RECORD {
                labels.push(format!("{} step {i}", crate::study::data_label(data)));
            }
        }
        if self.timing_dim > 0 {
            labels.push(format!("timing D={}", self.timing_dim));
        }
        Ok(labels)
    }

    fn run_cells(&self, indices: &[usize], obs: &dyn Observer) -> Result<Vec<Value>, StudyError> {
        let labels = self.cells()?;
        let cases = build_cases(self)?;
        let (case_idx, timing_idx): (Vec<usize>, Vec<usize>) =
            indices.iter().partition(|&&i| i < cases.len());
        let mut out: Vec<Value> = case_idx
            .par_iter()
            .map(|&i| {
                obs.cell_started(i, &labels[i]);
                let r = run_case(&cases[i], self.seed, i as u64, self.kmax);
                obs.cell_done(i, &labels[i]);
                r.and_then(|r| crate::study::to_cell("lanczos", &Cell::Case(Box::new(r))))
            })
            .collect::<Result<_, _>>()?;
        for i in timing_idx {
            obs.cell_started(i, &labels[i]);
            out.push(crate::study::to_cell(
                "lanczos",
                &Cell::Timing(timing(self)?),
            )?);
            obs.cell_done(i, &labels[i]);
        }
        Ok(out)
    }

    fn assemble(&self, cells: &[Value], info: &RunInfo) -> Result<Assembled, StudyError> {
        let mut results = Vec::new();
        let mut timing = None;
        for c in cells {
            match crate::study::from_cell::<Cell>("lanczos", c)? {
                Cell::Case(r) => results.push(*r),
                Cell::Timing(t) => timing = Some(t),
            }
        }
        let fits: Vec<Fit> = results.iter().map(fit_case).collect();
        let doc = json!({
            "cases": results.iter().zip(&fits).map(|(r, f)| case_json(r, f, self.seed)).collect::<Vec<_>>(),
            "error_normalisation": "||z||",
            "error": "||C^{1/2} z - y_k|| / ||z||, y_k = ||z|| Q_k T_k^{1/2} e_1 after k Lanczos steps (full reorthogonalisation), z ~ N(0, I)",
            "bound": "2 E_{k-1} (Musco-Musco-Sidford 2018), E_n <= min((sqrt(lmax) - sqrt(lmin))/2, 2 sqrt(lmax + lmin) rho^{-n} / (rho - 1)) (Chebyshev truncation on the Bernstein ellipse)",
            "bound_interp": "2 min((sqrt(lmax) - sqrt(lmin))/2, max over a 2000-point grid of |sqrt - p_{k-1}|), p_{k-1} the Chebyshev interpolant at k Chebyshev points: an upper estimate of 2 E_{k-1} within the Lebesgue constant (rigorous only up to grid resolution)",
            "synthetic_operator": format!("C = V diag(l) V^T, V a product of {REFLECTORS} Householder reflections with Gaussian directions; l geometric or uniform on [1/kappa, 1]; reference V (l^(1/2) .* V^T z)"),
            "mixture_operator": format!("covariance of q(x_0 | x_t), C = (b^2 H + b I) / a^2 with a^2 = abar_t, b = 1 - abar_t, applied through Hessian-vector products of ln q_t; x_t on a forward trajectory of the vp-linear {TRAJ_STEPS}-step grid"),
            "fit": format!("least squares of ln error on k over the leading k with error > {FLOOR:e}; fitted_rate = exp(slope), compare with bound_rate = 1/rho"),
            "floor": FLOOR,
            "failed_checks": results.iter().filter_map(bound_failure).collect::<Vec<_>>(),
            "bound_check": "a case fails when error_k > bound_k + floor * max(1, sqrt(lmax)) at some k (the rounding allowance); failed cases are listed in failed_checks and the run exits 1",
            "seed": self.seed,
            "kmax": self.kmax,
            "timing": timing.as_ref().map(|t| json!({
                "D": t.d, "k": t.k, "kappa": TIMING_KAPPA, "spectrum": "geometric",
                "lanczos_s": t.lanczos_s, "dense_eig_s": t.eig_s, "ratio": t.eig_s / t.lanczos_s,
                "build_dense_s": t.build_s,
                "lanczos_error": t.lanczos_error, "dense_eig_error": t.eig_error, "bound": t.bound,
            })),
            "threads": info.threads,
            "wall_time_s": info.wall_time_s,
            "covlab_version": env!("CARGO_PKG_VERSION"),
        });
        Ok(Assembled {
            table: table(&results, &fits, timing.as_ref(), info),
            figures: make_figures(&results, &self.kappas, &self.dims),
            doc,
        })
    }

    fn figures(&self) -> Vec<FigureName> {
        let mut out = vec![FigureName::plot("_geometric"), FigureName::plot("_uniform")];
        for data in self.data.iter().filter(|s| !s.is_empty()) {
            out.push(FigureName::plot(format!(
                "_mixture_{}",
                crate::study::data_label(data)
            )));
        }
        out
    }

    fn seeds(&self) -> Vec<u64> {
        vec![self.seed]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::tridiagonal::{eigh_tridiagonal, residual, residual_bound, RESIDUAL_FACTOR};

    struct Quiet;
    impl Observer for Quiet {}

    #[test]
    fn t70_of_the_issue_case_has_accurate_eigenpairs() {
        // Case 0 of `lanczos --dims 200 --kappas 100` (seed 0, stream 0): geometric spectrum.
        let (d, m) = (200, 70);
        let mut rng = crate::numeric::stream(0, 0);
        let op = SpectralOperator::new(Spectrum::Geometric.values(d, 100.0), REFLECTORS, &mut rng);
        let z = gaussian(d, &mut rng);
        let kry = lanczos(&op, &z, &LanczosParams::new(m)).unwrap();
        assert_eq!(kry.steps(), m);
        let (a, b) = (kry.alpha(), kry.beta());
        let eig = eigh_tridiagonal(a, b).unwrap();
        let bound = residual_bound(a, b);
        for i in 0..m {
            let r = residual(a, b, eig.values[i], &eig.vectors, i);
            assert!(r <= bound, "pair {i}: residual {r} > {bound}");
        }
        // Orthonormal eigenvectors to c m eps (the solver's backward error).
        let o = (eig.vectors.transpose() * &eig.vectors - DMatrix::identity(m, m)).amax();
        assert!(o <= RESIDUAL_FACTOR * m as f64 * f64::EPSILON, "{o}");
        // The Ritz values lie in the spectrum [1/100, 1] (Rayleigh quotients of C), to rounding.
        assert!(eig.values[0] >= 0.01 - 1e-14 && eig.values[m - 1] <= 1.0 + 1e-14);
    }

    #[test]
    fn kappas_beyond_f64_resolution_are_refused() {
        let mut s = LanczosStudy {
            kappas: vec![1e17],
            data: vec![],
            timing_dim: 0,
            ..LanczosStudy::default()
        };
        let e = s.validate().unwrap_err();
        assert_eq!(e.key, "kappas");
        assert!(e.as_flag().contains("--kappas"), "{}", e.as_flag());
        s.kappas = vec![MAX_KAPPA];
        s.validate().unwrap();
    }

    #[test]
    fn one_dimensional_operator_is_exact_and_draws() {
        // D = 1: C = [1], one step spans R^1, y_1 = C^{1/2} z exactly.
        let s = LanczosStudy {
            dims: vec![1],
            kappas: vec![100.0],
            kmax: 5,
            data: vec![],
            timing_dim: 0,
            ..LanczosStudy::default()
        };
        let (a, _) = crate::study::run_all(&s, &Quiet).unwrap();
        for c in a.doc["cases"].as_array().unwrap() {
            assert_eq!(c["k"].as_array().unwrap().len(), 1);
            // sqrt(1) z - ||z|| (z / ||z||): two roundings of one number, <= 2 ulps.
            assert!(c["error"][0].as_f64().unwrap() <= 4.0 * f64::EPSILON);
        }
        assert!(a.failed_checks().is_empty());
        let dir = std::env::temp_dir().join(format!("covlab-lanczos-d1-{}", std::process::id()));
        let written = crate::study::figure::save_all(&dir.join("fig"), &a.figures).unwrap();
        assert!(!written.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
