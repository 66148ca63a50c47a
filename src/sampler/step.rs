//! One reverse step's noise per family: Rademacher and normal draws, Hutchinson's
//! `diag H` estimate `h = (1/M) sum_m v_m .* (H v_m)`, the exact `C^{1/2} z`, LGS's Lanczos
//! `Lanczos_k(C, z)` with its block reuse, and the OCM-DDIM map
//! `x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s) (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t)`.

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::kernel::model::KernelKind;
use crate::kernel::posterior::CovOperator;
use crate::linalg::{lanczos, Krylov, LanczosError, LanczosParams};
use crate::score::{LocalScore, ScoreModel};

use super::{invalid, KernelGeom, LastStep, Plan, SamplerConfig, SamplerError, SamplerFamily};

/// Rademacher probes: `v_j = +-1`.
pub(crate) fn rademacher<R: Rng>(rng: &mut R, d: usize) -> Vec<f64> {
    (0..d)
        .map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 })
        .collect()
}

pub(crate) fn normals<R: Rng>(rng: &mut R, d: usize) -> Vec<f64> {
    (0..d).map(|_| rng.sample(StandardNormal)).collect()
}

/// Hutchinson's estimate `h = (1/M) sum_m v_m .* (H v_m)` of `diag H` (unbiased for any
/// symmetric `H`: `E[v_i v_j] = delta_ij`).
pub fn hutchinson_diag<L: LocalScore, R: Rng>(local: &L, m: usize, rng: &mut R) -> Vec<f64> {
    let d = local.score().len();
    let mut h = vec![0.0; d];
    let mut hv = vec![0.0; d];
    for _ in 0..m {
        let v = rademacher(rng, d);
        local.hvp(&v, &mut hv);
        for i in 0..d {
            h[i] += v[i] * hv[i];
        }
    }
    for x in &mut h {
        *x /= m as f64;
    }
    h
}

/// `C^{1/2} z` for the exact `C = (b^2 H + b I)/a^2` by a symmetric eigendecomposition
/// (eigenvalues below 0 by round-off are set to 0).
fn full_sqrt_mul<L: LocalScore>(local: &L, g: &KernelGeom, z: &[f64]) -> Vec<f64> {
    let d = z.len();
    let h = local.hessian();
    let c = DMatrix::from_fn(d, d, |i, j| {
        (g.b * g.b * h[(i, j)] + if i == j { g.b } else { 0.0 }) / g.a2
    });
    let e = SymmetricEigen::new(c);
    let zv = DVector::from_column_slice(z);
    let coef = e.eigenvectors.transpose() * zv;
    let scaled = DVector::from_fn(d, |i, _| e.eigenvalues[i].max(0.0).sqrt() * coef[i]);
    (e.eigenvectors * scaled).as_slice().to_vec()
}

/// A Lanczos run at a block's first step, kept for the steps it serves.
pub(super) struct Block {
    krylovs: Vec<Krylov>,
    /// The geometry of the step the Lanczos ran at.
    g0: KernelGeom,
}

/// `C_l^{1/2} z_l` from a Krylov run on `C_0` at a block step: the Ritz value `theta` of
/// `C_0` maps to `h = (a_0^2 theta - b_0) / b_0^2` of `H`, then to `C_l = (b_l^2 h + b_l)/a_l^2`,
/// clamped to `[lower_l, upper_l]`.
fn block_noise(kr: &Krylov, g0: &KernelGeom, gl: &KernelGeom) -> Vec<f64> {
    if g0 == gl {
        return kr.apply_fn(|th| gl.clip(th).sqrt());
    }
    kr.apply_fn(|th| {
        let h = (g0.a2 * th - g0.b) / (g0.b * g0.b);
        gl.clip(gl.var(h)).sqrt()
    })
}

/// The OCM-DDIM map `x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s) (x_t - sqrt(abar_t) x_0) /
/// sqrt(1 - abar_t)` of step `i`.
fn ddim_map(plan: &Plan, i: usize, x: &[f64], x0: &[f64]) -> Vec<f64> {
    let abar_s = plan.grid.abar(i - 1);
    let abar_t = plan.grid.abar(i);
    let c = (plan.grid.one_minus_abar(i - 1) / plan.grid.one_minus_abar(i)).sqrt();
    (0..x.len())
        .map(|j| abar_s.sqrt() * x0[j] + c * (x[j] - abar_t.sqrt() * x0[j]))
        .collect()
}

/// One reverse step for one sample with noise `z`: returns `x_s`. Draws any Rademacher
/// probes / extra block noise vectors from `rng`, in a fixed order. At the last step (`i = 1`)
/// with [`LastStep::Mean`], returns the kernel's mean (`z` unused, nothing drawn).
#[allow(clippy::too_many_arguments)]
pub(super) fn step_one<M: ScoreModel>(
    model: &M,
    cfg: &SamplerConfig,
    plan: &Plan,
    i: usize,
    x: &[f64],
    z: &[f64],
    rng: &mut ChaCha8Rng,
    block: &mut Option<Block>,
) -> Result<Vec<f64>, SamplerError> {
    let d = x.len();
    let ln_t = plan.grid.ln_abar[i];
    let local = model.at(x, ln_t)?;
    let g = local.score();
    let ddim = cfg.kernel == KernelKind::Ddim;
    let geom = plan.geom(cfg.kernel, i);
    let a = geom.a2.sqrt();
    let mean: Vec<f64> = (0..d).map(|j| (x[j] + geom.b * g[j]) / a).collect();
    if i == 1 && cfg.last_step == LastStep::Mean {
        return Ok(if ddim {
            ddim_map(plan, i, x, &mean)
        } else {
            mean
        });
    }
    let hutch = |m: usize, rng: &mut ChaCha8Rng| -> Vec<f64> {
        let h = hutchinson_diag(&local, m, rng);
        (0..d)
            .map(|j| geom.clip(geom.var(h[j])).sqrt() * z[j])
            .collect()
    };
    let noise: Vec<f64> = match cfg.family {
        SamplerFamily::Beta | SamplerFamily::BetaTilde if ddim => vec![0.0; d],
        SamplerFamily::Beta => z.iter().map(|v| geom.b.sqrt() * v).collect(),
        SamplerFamily::BetaTilde => z.iter().map(|v| geom.lower.sqrt() * v).collect(),
        SamplerFamily::Analytic => {
            let tr = cfg
                .analytic_trace
                .as_ref()
                .ok_or(SamplerError::MissingAnalyticTable)?[i - 1];
            let s = geom.clip(geom.var(tr / d as f64)).sqrt();
            z.iter().map(|v| s * v).collect()
        }
        SamplerFamily::Diag => {
            let h = local.hessian_diag();
            (0..d)
                .map(|j| geom.var(h[j]).max(0.0).sqrt() * z[j])
                .collect()
        }
        SamplerFamily::Full => full_sqrt_mul(&local, &geom, z),
        SamplerFamily::Hutchinson(m) => hutch(m, rng),
        SamplerFamily::Lgs(o) => {
            let lgs_steps = plan.lgs_steps(&o);
            if i == 1 && o.guard.is_some() {
                hutch(o.guard.unwrap_or(1), rng)
            } else if i > lgs_steps {
                // LGSb: beta-tilde before the LGS stretch.
                z.iter().map(|v| geom.lower.sqrt() * v).collect()
            } else if o.batch == 1 {
                let op = CovOperator {
                    local: &local,
                    a2: geom.a2,
                    b: geom.b,
                };
                let kr = lanczos(&op, z, &LanczosParams::new(o.k))?;
                if let Some(bad) = kr.ritz_values().iter().find(|t| !t.is_finite()) {
                    return Err(SamplerError::Lanczos(LanczosError::NonPositive {
                        ritz_value: *bad,
                        index: 0,
                    }));
                }
                kr.apply_fn(|th| geom.clip(th).sqrt())
            } else {
                // Position of step i in its block, counted from the block's first step.
                let pos = (lgs_steps - i) % o.batch;
                if pos == 0 || block.is_none() {
                    let op = CovOperator {
                        local: &local,
                        a2: geom.a2,
                        b: geom.b,
                    };
                    // z is used at this step; the block's other vectors are drawn now.
                    let mut krylovs = Vec::with_capacity(o.batch);
                    krylovs.push(lanczos(&op, z, &LanczosParams::new(o.k))?);
                    for _ in 1..o.batch {
                        let zl = normals(rng, d);
                        krylovs.push(lanczos(&op, &zl, &LanczosParams::new(o.k))?);
                    }
                    *block = Some(Block { krylovs, g0: geom });
                }
                let bl = block.as_ref().ok_or_else(|| invalid("batch", "no block"))?;
                let kr = &bl.krylovs[pos.min(bl.krylovs.len() - 1)];
                block_noise(kr, &bl.g0, &geom)
            }
        }
    };
    if ddim {
        let x0: Vec<f64> = (0..d).map(|j| mean[j] + noise[j]).collect();
        Ok(ddim_map(plan, i, x, &x0))
    } else {
        Ok((0..d).map(|j| mean[j] + noise[j]).collect())
    }
}
