//! Path-KL differences between covariance families as differences of cross-entropies,
//! estimated by Monte Carlo in any dimension (`docs/tensor-path.md#cross-entropy-path-kl-differences`).
//!
//! For Gaussian model kernels `p(x_s | x_t) = N(mu(x_t), Sigma(x_t))`,
//!
//! ```text
//! KL(q(x_{0:T}) || p(x_{0:T})) = terminal + sum_steps ( E_q[-ln p(x_s | x_t)] - E_q[H(q(x_s | x_t))] ),
//! CE_step = E_q[-ln p(x_s | x_t)] = E_q[ D/2 ln 2 pi + 1/2 ln det Sigma + 1/2 r^T Sigma^{-1} r ],  r = x_s - mu(x_t),
//! ```
//!
//! and the entropy term is the true chain's, common to every family; so for two families
//! `S_f(T) - S_g(T) = sum_steps E_q[CE_f - CE_g]`, a plain expectation over pairs
//! `(x_s, x_t) ~ q` (`x_0 ~ q_0`, `x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s) e_1`,
//! `x_t = a x_s + sqrt(b) e_2`). The differences are estimated from the same pairs (paired),
//! with standard errors from the per-pair spread; steps are independent, so variances add.
//!
//! Families (those with a density): `beta`, `beta-tilde` (at a degenerate last step,
//! `abar_{t_0} = 1`, the next step's variance: path-kl's `clip` remedy), `analytic` (the
//! sampler's table), `diag` (exact, where the model has it), `hutchinson-<M>` (one probe set
//! per pair: the expectation over probes too), `full` (C from `D` products, `D <= 64`, host
//! Cholesky in f64). `lgs-<k>` is not a Gaussian kernel in `x_s` and is rejected.

use candle_core::{DType, Tensor};
use nalgebra::{DMatrix, DVector};
use rand::Rng;
use rand_distr::StandardNormal;

use super::score::{TensorLocal, TensorScoreModel};
use super::TensorError;
use crate::data::lowrank::LowRankMixture;
use crate::sampler::{clip_bounds, plan, rademacher, KernelKind, SamplerConfig, SamplerFamily};

/// The largest D for which `full` cross-entropies are computed (dense `C` per pair on the
/// host).
pub const CE_FULL_MAX_DIM: usize = 64;

/// Monte Carlo settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropyParams {
    /// Pairs `(x_s, x_t)` per step.
    pub samples_per_step: usize,
    /// Pairs per device batch.
    pub chunk: usize,
    /// Seed (step `i` uses stream `i`).
    pub seed: u64,
    /// Scale `s` of every family's covariance (`s^2 Sigma`; 1 = the family itself): a
    /// deliberately wrong covariance for checking the validation itself.
    pub covariance_scale: f64,
}

impl Default for CrossEntropyParams {
    fn default() -> Self {
        Self {
            samples_per_step: 10_000,
            chunk: 4096,
            seed: 0,
            covariance_scale: 1.0,
        }
    }
}

/// One family's summed cross-entropy and its difference from the reference family.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyRow {
    /// The family name.
    pub family: String,
    /// `sum_steps E_q[-ln p(x_s | x_t)]`.
    pub cross_entropy: f64,
    /// Its Monte Carlo standard error.
    pub se: f64,
    /// `S_family(T) - S_reference(T)` (paired estimate).
    pub diff: f64,
    /// Its Monte Carlo standard error.
    pub diff_se: f64,
}

/// Per-pair cross-entropies of a diagonal Gaussian `N(mu, s2 diag(var))` at residuals `r`
/// (`(N, D)` each, on the host in f64): `1/2 sum_j (ln 2 pi s2 var_j + r_j^2 / (s2 var_j))`.
fn ce_diag(r: &[Vec<f64>], var: &[Vec<f64>], s2: f64) -> Vec<f64> {
    r.iter()
        .zip(var)
        .map(|(ri, vi)| {
            0.5 * ri
                .iter()
                .zip(vi)
                .map(|(x, v)| {
                    let v = s2 * v;
                    (2.0 * std::f64::consts::PI * v).ln() + x * x / v
                })
                .sum::<f64>()
        })
        .collect()
}

fn host(t: &Tensor) -> Result<Vec<Vec<f64>>, TensorError> {
    Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}

/// Per-pair cross-entropies of `N(mu, s2 C)` with the dense `C = (b^2 H + b I)/a^2` built
/// from `D` products with the unit vectors (the model's covariance operator, symmetrised), by
/// an f64 Cholesky per pair.
fn ce_full<L: TensorLocal>(
    local: &L,
    r: &[Vec<f64>],
    (a2, b): (f64, f64),
    s2: f64,
) -> Result<Vec<f64>, TensorError> {
    let (n, d) = local.x().dims2()?;
    let op = local.cov_operator(a2, b)?;
    let mut cols = Vec::with_capacity(d);
    for j in 0..d {
        let mut e = vec![0f32; n * d];
        for s in 0..n {
            e[s * d + j] = 1.0;
        }
        let et = Tensor::from_vec(e, (n, d), local.x().device())?;
        cols.push(host(&op(&et)?)?);
    }
    (0..n)
        .map(|s| {
            let c = DMatrix::from_fn(d, d, |i, j| 0.5 * s2 * (cols[j][s][i] + cols[i][s][j]));
            let ch = c.cholesky().ok_or_else(|| {
                TensorError::Layout(format!("full: C(x_t) not positive definite at pair {s}"))
            })?;
            let ln_det: f64 = 2.0 * ch.l().diagonal().iter().map(|v| v.ln()).sum::<f64>();
            let rv = DVector::from_column_slice(&r[s]);
            let quad = rv.dot(&ch.solve(&rv));
            Ok(0.5 * (d as f64 * (2.0 * std::f64::consts::PI).ln() + ln_det + quad))
        })
        .collect()
}

/// Mean and variance of the mean.
fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var / n)
}

/// `sum_steps E_q[-ln p(x_s | x_t)]` for each family in `families` over the DDPM chain of
/// `cfg` (its schedule, steps, early stop, clip range and analytic table; its family is
/// ignored), with the model's mean and each family's covariance, and the paired differences
/// from `families[reference]`. Pairs are drawn from the truth `q0`.
///
/// # Errors
/// An `lgs-<k>` family, `full` beyond [`CE_FULL_MAX_DIM`], `reference` out of range,
/// fewer than 2 pairs per step, a DDIM kernel, dimension mismatch; sampler parameter errors;
/// model and candle errors.
pub fn cross_entropy_path_kl<M: TensorScoreModel>(
    model: &M,
    q0: &LowRankMixture,
    cfg: &SamplerConfig,
    families: &[SamplerFamily],
    reference: usize,
    params: &CrossEntropyParams,
) -> Result<Vec<CrossEntropyRow>, TensorError> {
    let d = model.dim();
    if q0.dim() != d {
        return Err(TensorError::Layout(format!(
            "q0 has D = {}, the model {d}",
            q0.dim()
        )));
    }
    let s2 = params.covariance_scale * params.covariance_scale;
    if reference >= families.len()
        || params.samples_per_step < 2
        || params.chunk == 0
        || !(s2.is_finite() && s2 > 0.0)
    {
        return Err(TensorError::Layout(
            "cross-entropy: need reference < #families, >= 2 pairs per step, chunk >= 1, covariance_scale > 0".into(),
        ));
    }
    if cfg.kernel != KernelKind::Ddpm {
        return Err(TensorError::Unsupported(
            "cross-entropy path KL: DDPM kernels only".into(),
        ));
    }
    for f in families {
        match f {
            SamplerFamily::Lgs(_) => {
                return Err(TensorError::Unsupported(format!(
                    "`{}` has no Gaussian density in x_s: cross-entropies need beta, beta-tilde, analytic, diag, full or hutchinson-<M>",
                    f.name()
                )))
            }
            SamplerFamily::Full if d > CE_FULL_MAX_DIM => {
                return Err(TensorError::Unsupported(format!(
                    "`full` cross-entropies need D <= {CE_FULL_MAX_DIM}; D = {d}"
                )))
            }
            _ => {}
        }
        let mut c = cfg.clone();
        c.family = *f;
        plan(&c)?;
    }
    let pl = plan(cfg)?;
    let grid = &pl.grid;
    let t = grid.steps();
    let nf = families.len();
    // Per family: (sum of means, sum of variances of means) of CE and of CE - CE_ref.
    let mut ce = vec![(0.0, 0.0); nf];
    let mut diff = vec![(0.0, 0.0); nf];
    let dev = model.device();
    for i in 1..=t {
        let g = pl.geom(KernelKind::Ddpm, i);
        let (a, b) = (g.a2.sqrt(), g.b);
        let lower = if g.lower > 0.0 || t < 2 {
            g.lower
        } else {
            clip_bounds(grid, 2, None).0
        };
        let mut rng = crate::numeric::stream(params.seed, i as u64);
        let (sa_s, so_s) = (grid.abar(i - 1).sqrt(), grid.one_minus_abar(i - 1).sqrt());
        let mut per_family: Vec<Vec<f64>> = vec![Vec::with_capacity(params.samples_per_step); nf];
        let mut done = 0;
        while done < params.samples_per_step {
            let m = params.chunk.min(params.samples_per_step - done);
            let x0 = q0.sample(&mut rng, m);
            let mut xs = Vec::with_capacity(m * d);
            let mut xt = Vec::with_capacity(m * d);
            for x in &x0 {
                for v in x.iter() {
                    let s = sa_s * v + so_s * rng.sample::<f64, _>(StandardNormal);
                    xs.push(s);
                    xt.push((a * s + b.sqrt() * rng.sample::<f64, _>(StandardNormal)) as f32);
                }
            }
            let xt_t = Tensor::from_vec(xt, (m, d), dev)?;
            let local = model.at(&xt_t, grid.ln_abar[i])?;
            let mean = host(&(xt_t.affine(a, 0.0)? + local.x_plus_score()?.affine(b / a, 0.0)?)?)?;
            let r: Vec<Vec<f64>> = (0..m)
                .map(|s| (0..d).map(|j| xs[s * d + j] - mean[s][j]).collect())
                .collect();
            let iso = |v: f64| vec![vec![v; d]; m];
            for (fi, f) in families.iter().enumerate() {
                let vals = match f {
                    SamplerFamily::Beta => ce_diag(&r, &iso(b), s2),
                    SamplerFamily::BetaTilde => ce_diag(&r, &iso(lower), s2),
                    SamplerFamily::Analytic => {
                        let tr = cfg
                            .analytic_trace
                            .as_ref()
                            .ok_or(crate::sampler::SamplerError::MissingAnalyticTable)?[i - 1];
                        ce_diag(&r, &iso(g.clip(g.var(tr / d as f64))), s2)
                    }
                    SamplerFamily::Diag => {
                        let var: Vec<Vec<f64>> = host(&local.cov_diag(g.a2, b)?)?
                            .into_iter()
                            .map(|row| row.into_iter().map(|v| v.max(0.0)).collect())
                            .collect();
                        ce_diag(&r, &var, s2)
                    }
                    SamplerFamily::Hutchinson(mm) => {
                        // (1/M) sum_m v_m .* (C v_m) = var(h) (v_m .* v_m = 1), clipped.
                        let op = local.cov_operator(g.a2, b)?;
                        let mut var = vec![vec![0.0; d]; m];
                        for _ in 0..*mm {
                            let v: Vec<Vec<f64>> =
                                (0..m).map(|_| rademacher(&mut rng, d)).collect();
                            let cv = host(&op(&super::batch(&v, dev)?)?)?;
                            for s in 0..m {
                                for j in 0..d {
                                    var[s][j] += v[s][j] * cv[s][j] / *mm as f64;
                                }
                            }
                        }
                        var.iter_mut()
                            .for_each(|row| row.iter_mut().for_each(|v| *v = g.clip(*v)));
                        ce_diag(&r, &var, s2)
                    }
                    SamplerFamily::Full => ce_full(&local, &r, (g.a2, b), s2)?,
                    SamplerFamily::Lgs(_) => {
                        return Err(TensorError::Unsupported("lgs-<k> has no density".into()))
                    }
                };
                per_family[fi].extend(vals);
            }
            done += m;
        }
        for fi in 0..nf {
            let (mc, vc) = mean_var(&per_family[fi]);
            ce[fi].0 += mc;
            ce[fi].1 += vc;
            let dv: Vec<f64> = per_family[fi]
                .iter()
                .zip(&per_family[reference])
                .map(|(x, y)| x - y)
                .collect();
            let (md, vd) = mean_var(&dv);
            diff[fi].0 += md;
            diff[fi].1 += vd;
        }
    }
    Ok(families
        .iter()
        .enumerate()
        .map(|(fi, f)| CrossEntropyRow {
            family: f.name(),
            cross_entropy: ce[fi].0,
            se: ce[fi].1.sqrt(),
            diff: diff[fi].0,
            diff_se: diff[fi].1.sqrt(),
        })
        .collect())
}
