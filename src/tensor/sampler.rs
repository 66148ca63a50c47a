//! Reverse samplers on tensors, batched over samples: the f64 samplers of [`crate::sampler`]
//! (DDPM and OCM-DDIM; `beta`, `beta-tilde`, `analytic`, `diag`, `full`, `hutchinson-<M>`,
//! `lgs-<k>` with LGS-batched, LGSb and the Hutchinson guard) written over a
//! [`TensorScoreModel`], on any candle device, in f32.
//!
//! Step `i` (from `t = t_i` to `s = t_{i-1}`) uses the same [`SamplerConfig`] and the same
//! per-step geometry as the f64 sampler: Tweedie's mean `m = a x + (b/a)(x + score)` (the
//! cancellation-free form of `(x + b score)/a`), and a noise from the family:
//!
//! ```text
//! beta: sqrt(b) z          beta-tilde: sqrt(lower) z       analytic: clip(var(E tr H / D))^1/2 z
//! diag: sqrt(max(var(diag H), 0)) .* z                   full: Lanczos_D(C, z) (D <= 256)
//! hutchinson-M: sqrt(clip(var(h))) .* z, h = (1/M) sum_m v_m .* (H v_m)
//! lgs-k: ||z|| Q_k S sqrt(clip(theta)) S^T e_1 (batched Lanczos, one tridiagonal per sample)
//! var(h) = (b^2 h + b) / a^2,   clip = [lower, upper] of sampler::clip_bounds
//! ```
//!
//! The last step follows [`SamplerConfig::last_step`] as the f64 sampler does: with
//! [`LastStep::Mean`] (the default) step 1 returns the kernel's mean (OCM-DDIM: `x_0 = m_0`
//! in the DDIM map) and evaluates no covariance.
//!
//! Noise: with [`NoiseSource::Host`] every sample `j` draws from the ChaCha8 stream `j` of the
//! seed in the f64 sampler's order (`x_T`, then per step `z`, then probes or block vectors),
//! so the tensor chain and [`crate::sampler::sample`] see the same noise draw for draw, and
//! their samples differ only by f32 rounding (shared-noise validation). With
//! [`NoiseSource::Device`] a CUDA device draws with its own seeded generator (fast; not
//! comparable draw by draw); candle's CPU generator cannot be seeded, so on the CPU device
//! `Device` falls back to `Host`.

use candle_core::{DType, Device, Tensor};
use nalgebra::DVector;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::lanczos::{lanczos_batched, BatchedKrylov};
use super::score::{TensorLocal, TensorScoreModel};

use super::TensorError;
use crate::process::schedule::Schedule;
use crate::sampler::{
    normals, plan, rademacher, KernelGeom, KernelKind, LastStep, Plan, SamplerConfig, SamplerError,
    SamplerFamily,
};

/// The largest D for which `full` runs on tensors (a Lanczos run with `k = D`: `D` products
/// and a `D x D` tridiagonal per sample). Beyond it, use `lgs-<k>`.
pub const FULL_MAX_DIM: usize = 256;

/// Where a tensor sampler's random numbers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseSource {
    /// Per-sample ChaCha8 streams on the host, in the f64 sampler's order (shared noise).
    Host,
    /// The device's seeded generator (CUDA); on the CPU device, the same as `Host`.
    Device,
}

/// How a batched run is carried out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorSampleOptions {
    /// Samples per device batch (memory: a few `(K, chunk, D)` tensors per step).
    pub chunk: usize,
    /// Where the random numbers come from.
    pub source: NoiseSource,
    /// Scale of every step's noise (1 = the family's covariance; `s` gives `s^2 Sigma`): a
    /// deliberately wrong covariance for checking the validation itself.
    pub noise_scale: f64,
}

impl Default for TensorSampleOptions {
    fn default() -> Self {
        Self {
            chunk: 1024,
            source: NoiseSource::Host,
            noise_scale: 1.0,
        }
    }
}

/// The random numbers of a batched run.
enum Draws {
    /// One generator per sample.
    Host(Vec<ChaCha8Rng>, Device),
    /// The device generator.
    Device(Device),
}

impl Draws {
    /// The draws of samples `range` of a run seeded by `seed` (a device generator is seeded
    /// with `seed` mixed with the range's start, so chunks differ).
    fn new(
        source: NoiseSource,
        seed: u64,
        range: std::ops::Range<usize>,
        device: &Device,
    ) -> Result<Self, TensorError> {
        if source == NoiseSource::Device && !device.is_cpu() {
            device.set_seed(seed ^ (range.start as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))?;
            return Ok(Self::Device(device.clone()));
        }
        let rngs = range
            .map(|j| {
                let r = crate::numeric::stream(seed, j as u64);
                r
            })
            .collect();
        Ok(Self::Host(rngs, device.clone()))
    }

    /// Generators for one step only, all seeded with `seed` (the f64 `step_with_noise`).
    fn for_step(seed: u64, n: usize, device: &Device) -> Self {
        Self::Host(
            (0..n).map(|_| ChaCha8Rng::seed_from_u64(seed)).collect(),
            device.clone(),
        )
    }

    fn host(
        rngs: &mut [ChaCha8Rng],
        device: &Device,
        d: usize,
        f: fn(&mut ChaCha8Rng, usize) -> Vec<f64>,
    ) -> Result<Tensor, TensorError> {
        let n = rngs.len();
        let rows: Vec<Vec<f32>> = rngs
            .par_iter_mut()
            .map(|r| f(r, d).into_iter().map(|v| v as f32).collect())
            .collect();
        Ok(Tensor::from_vec(rows.concat(), (n, d), device)?)
    }

    /// `(N, D)` standard normals.
    fn normals(&mut self, n: usize, d: usize) -> Result<Tensor, TensorError> {
        match self {
            Self::Host(rngs, dev) => Self::host(rngs, dev, d, normals),
            Self::Device(dev) => Ok(Tensor::randn(0f32, 1f32, (n, d), dev)?),
        }
    }

    /// `(N, D)` Rademacher signs.
    fn rademacher(&mut self, n: usize, d: usize) -> Result<Tensor, TensorError> {
        match self {
            Self::Host(rngs, dev) => Self::host(rngs, dev, d, rademacher),
            Self::Device(dev) => {
                let u = Tensor::rand(0f32, 1f32, (n, d), dev)?;
                Ok(u.ge(0.5)?.to_dtype(DType::F32)?.affine(2.0, -1.0)?)
            }
        }
    }
}

/// The Lanczos runs of an LGS-batched block, kept for the steps it serves.
struct TensorBlock {
    krylovs: Vec<BatchedKrylov>,
    g0: KernelGeom,
}

/// A variance `(N, D)` clipped to `[lower, upper]`.
fn clipped(v: &Tensor, g: &KernelGeom) -> Result<Tensor, TensorError> {
    Ok(v.clamp(g.lower as f32, g.upper.min(f64::from(f32::MAX)) as f32)?)
}

/// Hutchinson's estimate of `diag C`, `(1/M) sum_m v_m .* (C v_m)` on a batch: the same as
/// `var(h)` with `h = (1/M) sum_m v_m .* (H v_m)` (`v_m .* v_m = 1`), written through the
/// model's covariance operator to avoid the cancellation of `b^2 h` against `b`.
fn hutchinson(
    op: &dyn Fn(&Tensor) -> Result<Tensor, TensorError>,
    (n, d): (usize, usize),
    m: usize,
    draws: &mut Draws,
) -> Result<Tensor, TensorError> {
    let mut h: Option<Tensor> = None;
    for _ in 0..m {
        let v = draws.rademacher(n, d)?;
        let t = (&v * op(&v)?)?;
        h = Some(match h {
            None => t,
            Some(h) => (h + t)?,
        });
    }
    let h = h.ok_or_else(|| TensorError::Layout("hutchinson needs M >= 1".into()))?;
    Ok(h.affine(1.0 / m as f64, 0.0)?)
}

/// The OCM-DDIM map of step `i`: `x_s = sqrt(abar_s) x0 + c (x_t - sqrt(abar_t) x0)`,
/// `c = sqrt((1 - abar_s) / (1 - abar_t))`.
fn ddim_map(pl: &Plan, i: usize, x: &Tensor, x0: &Tensor) -> Result<Tensor, TensorError> {
    let (abar_s, abar_t) = (pl.grid.abar(i - 1), pl.grid.abar(i));
    let c = (pl.grid.one_minus_abar(i - 1) / pl.grid.one_minus_abar(i)).sqrt();
    Ok((x0.affine(abar_s.sqrt() - c * abar_t.sqrt(), 0.0)? + x.affine(c, 0.0)?)?)
}

/// One reverse step of the batch `x` with noise `z` (both `(N, D)`); at the last step with
/// [`LastStep::Mean`], the kernel's mean (`z` unused, nothing drawn).
#[allow(clippy::too_many_arguments)]
fn step<M: TensorScoreModel>(
    model: &M,
    cfg: &SamplerConfig,
    pl: &Plan,
    i: usize,
    x: &Tensor,
    z: &Tensor,
    draws: &mut Draws,
    block: &mut Option<TensorBlock>,
    noise_scale: f64,
) -> Result<Tensor, TensorError> {
    let (n, d) = x.dims2()?;
    let local = model.at(x, pl.grid.ln_abar[i])?;
    let ddim = cfg.kernel == KernelKind::Ddim;
    let g = pl.geom(cfg.kernel, i);
    let a = g.a2.sqrt();
    let mean = (x.affine(a, 0.0)? + local.x_plus_score()?.affine(g.b / a, 0.0)?)?;
    if i == 1 && cfg.last_step == LastStep::Mean {
        return if ddim {
            ddim_map(pl, i, x, &mean)
        } else {
            Ok(mean)
        };
    }
    let op = local.cov_operator(g.a2, g.b)?;
    let lanczos = |k: usize, zz: &Tensor| lanczos_batched(&op, zz, k);
    let noise = match cfg.family {
        SamplerFamily::Beta | SamplerFamily::BetaTilde if ddim => z.zeros_like()?,
        SamplerFamily::Beta => z.affine(g.b.sqrt(), 0.0)?,
        SamplerFamily::BetaTilde => z.affine(g.lower.max(0.0).sqrt(), 0.0)?,
        SamplerFamily::Analytic => {
            let tr = cfg
                .analytic_trace
                .as_ref()
                .ok_or_else(|| TensorError::Sampler(SamplerError::MissingAnalyticTable))?[i - 1];
            z.affine(g.clip(g.var(tr / d as f64)).sqrt(), 0.0)?
        }
        SamplerFamily::Diag => (local.cov_diag(g.a2, g.b)?.relu()?.sqrt()? * z)?,
        SamplerFamily::Full => {
            if d > FULL_MAX_DIM {
                return Err(TensorError::Unsupported(format!(
                    "`full` on tensors needs D <= {FULL_MAX_DIM} (a Lanczos run with k = D); D = {d}: use lgs-<k>"
                )));
            }
            lanczos(d, z)?.apply_fn(|th| th.max(0.0).sqrt())?
        }
        SamplerFamily::Hutchinson(m) => {
            (clipped(&hutchinson(&op, (n, d), m, draws)?, &g)?.sqrt()? * z)?
        }
        SamplerFamily::Lgs(o) => {
            let lgs_steps = pl.lgs_steps(&o);
            if i == 1 && o.guard.is_some() {
                let v = hutchinson(&op, (n, d), o.guard.unwrap_or(1), draws)?;
                (clipped(&v, &g)?.sqrt()? * z)?
            } else if i > lgs_steps {
                z.affine(g.lower.max(0.0).sqrt(), 0.0)?
            } else if o.batch == 1 {
                lanczos(o.k, z)?.apply_fn(|th| g.clip(th).sqrt())?
            } else {
                let pos = (lgs_steps - i) % o.batch;
                if pos == 0 || block.is_none() {
                    let mut krylovs = Vec::with_capacity(o.batch);
                    krylovs.push(lanczos(o.k, z)?);
                    for _ in 1..o.batch {
                        let zl = draws.normals(n, d)?;
                        krylovs.push(lanczos(o.k, &zl)?);
                    }
                    *block = Some(TensorBlock { krylovs, g0: g });
                }
                let bl = block
                    .as_ref()
                    .ok_or_else(|| TensorError::Layout("LGS block missing".into()))?;
                let kr = &bl.krylovs[pos.min(bl.krylovs.len() - 1)];
                let g0 = bl.g0;
                if g0 == g {
                    kr.apply_fn(|th| g.clip(th).sqrt())?
                } else {
                    kr.apply_fn(|th| {
                        let h = (g0.a2 * th - g0.b) / (g0.b * g0.b);
                        g.clip(g.var(h)).sqrt()
                    })?
                }
            }
        }
    };
    let noise = if (noise_scale - 1.0).abs() > 0.0 {
        noise.affine(noise_scale, 0.0)?
    } else {
        noise
    };
    if ddim {
        ddim_map(pl, i, x, &(mean + noise)?)
    } else {
        Ok((mean + noise)?)
    }
}

/// One step at grid step `i` from the batch `x_t` with noise `z` (`(N, D)` each); probes, if
/// the family needs them, come from generators seeded by `cfg.seed`, one per sample, as in
/// [`crate::sampler::step_with_noise`] (LGS batching does not apply to a single step); at
/// `i = 1` it follows `cfg.last_step` (by default the mean, `z` unused).
///
/// # Errors
/// Bad parameters (as the f64 sampler), `i` outside `1..=T`, shapes, candle errors,
/// [`TensorError::Unsupported`] (`diag` without a closed-form `diag H`, `full` beyond
/// [`FULL_MAX_DIM`]).
pub fn step_with_noise_tensor<M: TensorScoreModel>(
    model: &M,
    cfg: &SamplerConfig,
    i: usize,
    x_t: &Tensor,
    z: &Tensor,
) -> Result<Tensor, TensorError> {
    let pl = plan(cfg)?;
    if i == 0 || i > pl.grid.steps() {
        return Err(TensorError::Layout(format!(
            "step {i} not in 1..={}",
            pl.grid.steps()
        )));
    }
    let (n, d) = x_t.dims2()?;
    if z.dims2()? != (n, d) || d != model.dim() {
        return Err(TensorError::Layout(format!(
            "x_t {:?}, z {:?}, model dimension {}",
            x_t.dims(),
            z.dims(),
            model.dim()
        )));
    }
    let mut draws = Draws::for_step(cfg.seed, n, model.device());
    step(model, cfg, &pl, i, x_t, z, &mut draws, &mut None, 1.0)
}

/// Draws `n` samples on the model's device: `x_T ~ N(0, I)`, then `T` reverse steps, in
/// chunks of at most `opts.chunk` samples (memory); `progress` is called with the number of
/// steps done after each step of each chunk. Returns `(n, D)` f32.
///
/// With [`NoiseSource::Host`], sample `j` equals sample `j` of [`crate::sampler::sample`] with
/// the same configuration up to f32 rounding, whatever the chunking.
///
/// # Errors
/// As [`step_with_noise_tensor`]; `n = 0` or `chunk = 0`.
pub fn sample_tensor<M: TensorScoreModel>(
    model: &M,
    cfg: &SamplerConfig,
    n: usize,
    opts: &TensorSampleOptions,
    mut progress: impl FnMut(usize),
) -> Result<Tensor, TensorError> {
    if n == 0 || opts.chunk == 0 {
        return Err(TensorError::Layout("n and chunk must be >= 1".into()));
    }
    if !(opts.noise_scale.is_finite() && opts.noise_scale >= 0.0) {
        return Err(TensorError::Layout(format!(
            "noise_scale {} must be finite and >= 0",
            opts.noise_scale
        )));
    }
    let pl = plan(cfg)?;
    let d = model.dim();
    let dev = model.device();
    let t = pl.grid.steps();
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let m = opts.chunk.min(n - start);
        let mut draws = Draws::new(opts.source, cfg.seed, start..start + m, dev)?;
        let mut x = draws.normals(m, d)?;
        let mut block = None;
        for i in (1..=t).rev() {
            let z = draws.normals(m, d)?;
            x = step(
                model,
                cfg,
                &pl,
                i,
                &x,
                &z,
                &mut draws,
                &mut block,
                opts.noise_scale,
            )?;
            progress(t - i + 1);
        }
        out.push(x);
        start += m;
    }
    Ok(Tensor::cat(&out, 0)?)
}

/// Analytic-DPM's table `E_{q_t}[tr H] = -E ||score||^2` at `t_1..t_T` on tensors, by Monte
/// Carlo over `data` with the draws of [`crate::sampler::analytic_trace_table`] (stream `i`
/// of `seed` for time `t_i`), so the two tables agree to f32 rounding.
///
/// # Errors
/// Schedule or model errors; `data` empty.
pub fn analytic_trace_table_tensor<M: TensorScoreModel>(
    model: &M,
    schedule: &Schedule,
    steps: usize,
    early_stop: f64,
    data: &[DVector<f64>],
    seed: u64,
) -> Result<Vec<f64>, TensorError> {
    use rand::Rng;
    if data.is_empty() {
        return Err(TensorError::Layout(
            "the analytic table needs at least one data point".into(),
        ));
    }
    let grid = schedule
        .grid(steps, early_stop)
        .map_err(SamplerError::from)?;
    let d = model.dim();
    (1..=grid.steps())
        .map(|i| {
            let mut rng = crate::numeric::stream(seed, i as u64);
            let (sa, so) = (grid.abar(i).sqrt(), grid.one_minus_abar(i).sqrt());
            let mut flat = Vec::with_capacity(data.len() * d);
            for x0 in data {
                flat.extend(x0.iter().map(|v| {
                    (sa * v + so * rng.sample::<f64, _>(rand_distr::StandardNormal)) as f32
                }));
            }
            let xt = Tensor::from_vec(flat, (data.len(), d), model.device())?;
            let local = model.at(&xt, grid.ln_abar[i])?;
            let s2 = local
                .score()
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
            Ok(-s2 / data.len() as f64)
        })
        .collect()
}
