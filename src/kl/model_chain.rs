//! The exact path KL of any Gaussian reverse chain given as a kernel: at a batch of points
//! `x_t` and a step `(s, t)`, a [`KernelModel`] returns its mean `mu(x_t)` and covariance
//! `Sigma(x_t)` (a scalar, a per-point scalar, a diagonal or a full matrix). The chain is
//! scored against the exact reverse chain of the data mixture `q_0`:
//! ```text
//! path_kl(T) = S_full(T) + sum_steps E_{q_t}[mean part] + sum_steps E_{q_t}[cov part],
//! mean part  = (1/2) (m - mu)^T Sigma^-1 (m - mu),
//! cov part   = KL(N(m, C) || N(m, Sigma)) = (1/2)[tr(Sigma^-1 C) - D - ln det(Sigma^-1 C)],
//! ```
//! with `m`, `C` the exact moments of `q(x_s | x_t)` (Tweedie, from the exact score and Hessian
//! of `q_t` at each node), `S_full(T)` from [`crate::kl::path_kl::path_kl_sweep`] (family
//! `full`), and the parts computed in Hessian coordinates by [`crate::kernel::model::kl_parts`]
//! (no cancellation when `Sigma` is close to `C`). The expectations over `q_t` use the nested
//! trapezoid lattice in `D <= 3` (when it fits) and randomised QMC beyond, each with its error
//! estimate; the reported `err` of a sum adds the errors of its terms. The kernel is called
//! once per step, with every node of that step's rule.
//!
//! The terminal term `KL(q_{t_T} || p_T)` is excluded, as in `path-kl`.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::data::mixture::Mixture;
use crate::kernel::family::{Family, IsoScale};
use crate::kernel::model::{kl_parts, ModelCov};
use crate::kl::path_kl::{path_kl_sweep, PathKlError, PathKlParams};
use crate::process::schedule::{Schedule, ScheduleError, Step};
use crate::quadrature::{for_each_node_with_mass, lattice, qmc, Cubature, Estimate};
use crate::quadrature::{LatticeParams, QmcParams};

/// A model's covariance at a batch of `n` points.
#[derive(Clone, Debug, PartialEq)]
pub enum Variance {
    /// `sigma^2 I` at every point.
    Scalar(f64),
    /// `sigma_i^2 I` at point `i` (`n` values).
    PerPoint(Vec<f64>),
    /// `diag(sigma_i^2)` per point (`n x D`, row-major).
    Diag(Vec<f64>),
    /// A full covariance per point (`n x D x D`, row-major; symmetric).
    Full(Vec<f64>),
}

/// A model's output at a batch of points: the means (`n x D`, row-major) and covariances.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelOutput {
    /// `mu(x_i)`, row `i`.
    pub mean: Vec<f64>,
    /// `Sigma(x_i)`.
    pub variance: Variance,
}

/// A Gaussian reverse kernel `N(mu(x_t), Sigma(x_t))` for the step `(s, t)`.
pub trait KernelModel {
    /// The kernel at the rows of `x` (`n x D`, row-major) for the step from `abar_s` to
    /// `abar_t` (`abar_s > abar_t`; `abar_s = 1` is the last step, to the data).
    ///
    /// # Errors
    /// The model's own, as a message.
    fn evaluate(
        &mut self,
        x: &[f64],
        d: usize,
        abar_s: f64,
        abar_t: f64,
    ) -> Result<KernelOutput, String>;
}

/// Errors of [`model_path_kl`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ModelChainError {
    /// The kernel failed.
    #[error("kernel: {0}")]
    Kernel(String),
    /// The kernel's output has the wrong shape.
    #[error("kernel returned {field} of length {found} at step {step}, expected {expected}")]
    Shape {
        /// `mean` or `variance`.
        field: &'static str,
        /// The step index (1-based, from the data).
        step: usize,
        /// The length found.
        found: usize,
        /// The length expected.
        expected: usize,
    },
    /// The kernel's output has a non-finite or non-positive value.
    #[error("kernel returned {field} = {value} at step {step}, point {point}: {reason}")]
    Value {
        /// `mean` or `variance`.
        field: &'static str,
        /// The step index.
        step: usize,
        /// The point index.
        point: usize,
        /// The value.
        value: f64,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A parameter is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The parameter.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The schedule's grid.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The `S_full` sweep.
    #[error(transparent)]
    PathKl(#[from] PathKlError),
}

/// Settings of [`model_path_kl`].
#[derive(Clone, Debug, PartialEq)]
pub struct ModelChainParams {
    /// Early stop `delta` of the grid (0: to the data).
    pub early_stop: f64,
    /// The lattice (D <= 3).
    pub lattice: LatticeParams,
    /// QMC beyond (or when the lattice does not fit); each step gets the seed `seed + i`.
    pub qmc: QmcParams,
    /// Use QMC even where the lattice fits.
    pub force_qmc: bool,
}

impl Default for ModelChainParams {
    fn default() -> Self {
        Self {
            early_stop: 0.0,
            lattice: LatticeParams::default(),
            qmc: QmcParams {
                points: 256,
                shifts: 8,
                ..QmcParams::default()
            },
            force_qmc: false,
        }
    }
}

/// One step's expected parts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepParts {
    /// The step index `i` (from `t_{i-1}` to `t_i`; 1 ends at the data end).
    pub step: usize,
    /// `abar_{t_{i-1}}`.
    pub abar_s: f64,
    /// `abar_{t_i}`.
    pub abar_t: f64,
    /// `E_{q_t}[mean part]`.
    pub mean_part: Estimate,
    /// `E_{q_t}[cov part]`.
    pub cov_part: Estimate,
    /// Nodes the kernel was called at.
    pub nodes: usize,
}

/// The result of [`model_path_kl`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelChainReport {
    /// `T`.
    pub steps: usize,
    /// `S_full(T) + mean part + cov part` (`+inf` if some covariance is not positive definite).
    pub path_kl: Estimate,
    /// `S_full(T)`.
    pub s_full: Estimate,
    /// `sum_steps E[mean part]`.
    pub mean_part: Estimate,
    /// `sum_steps E[cov part]`.
    pub cov_part: Estimate,
    /// Per step, from the data end.
    pub per_step: Vec<StepParts>,
    /// `KL(q_{t_T} || N(0, I))` (not included).
    pub terminal_kl: Estimate,
    /// The rule of the expectations (`lattice`, `qmc` or `mixed`).
    pub rule: String,
    /// The grid: times and `abar`.
    pub times: Vec<f64>,
    /// `abar` at the grid times.
    pub abar: Vec<f64>,
}

/// Sums of estimates (errors add).
fn add(a: Estimate, b: Estimate) -> Estimate {
    Estimate {
        value: a.value + b.value,
        err: a.err + b.err,
    }
}

/// The exact nodes of one step: points, slot weights, exact score and Hessian.
struct Nodes {
    x: Vec<f64>,
    w: Vec<f64>,
    score: Vec<f64>,
    hess: Vec<f64>,
    n: usize,
}

fn nodes_of(q_t: &Mixture, rule: &Cubature) -> Nodes {
    let d = q_t.dim();
    let mut out = Nodes {
        x: Vec::new(),
        w: Vec::new(),
        score: Vec::new(),
        hess: Vec::new(),
        n: 0,
    };
    for_each_node_with_mass(q_t, rule, |x, w, _lnq, ws| {
        out.x.extend_from_slice(x);
        out.w.extend_from_slice(w);
        out.score.extend_from_slice(&ws.score[..d]);
        out.hess.extend_from_slice(&ws.hessian[..d * d]);
        out.n += 1;
    });
    out
}

/// Checks the kernel's output and returns each node's [`ModelCov`] data (Hessian coordinates).
fn model_x(
    out: &KernelOutput,
    step: &Step,
    i: usize,
    n: usize,
    d: usize,
) -> Result<Vec<f64>, ModelChainError> {
    let shape = |field, found, expected| ModelChainError::Shape {
        field,
        step: i,
        found,
        expected,
    };
    if out.mean.len() != n * d {
        return Err(shape("mean", out.mean.len(), n * d));
    }
    if let Some((p, &v)) = out.mean.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(ModelChainError::Value {
            field: "mean",
            step: i,
            point: p / d,
            value: v,
            reason: "must be finite",
        });
    }
    let (a2, b) = (step.a2, step.b);
    let positive = |p: usize, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(ModelChainError::Value {
                field: "variance",
                step: i,
                point: p,
                value: v,
                reason: "must be finite and > 0",
            })
        }
    };
    // X = (a^2 Sigma / b - I) / b per node: Sigma = (b / a^2)(I + b X).
    let to_x = |v: f64| (a2 * v - b) / (b * b);
    Ok(match &out.variance {
        Variance::Scalar(v) => {
            positive(0, *v)?;
            vec![*v]
        }
        Variance::PerPoint(v) => {
            if v.len() != n {
                return Err(shape("variance", v.len(), n));
            }
            for (p, &s) in v.iter().enumerate() {
                positive(p, s)?;
            }
            v.clone()
        }
        Variance::Diag(v) => {
            if v.len() != n * d {
                return Err(shape("variance", v.len(), n * d));
            }
            for (p, &s) in v.iter().enumerate() {
                positive(p / d, s)?;
            }
            v.iter().map(|&s| to_x(s)).collect()
        }
        Variance::Full(v) => {
            if v.len() != n * d * d {
                return Err(shape("variance", v.len(), n * d * d));
            }
            let mut xs = Vec::with_capacity(n * d * d);
            for p in 0..n {
                let m = DMatrix::from_row_slice(d, d, &v[p * d * d..(p + 1) * d * d]);
                let asym = (&m - m.transpose()).amax();
                if !(m.iter().all(|e| e.is_finite())
                    && asym <= 1e-12 * m.amax().max(f64::MIN_POSITIVE))
                {
                    return Err(ModelChainError::Value {
                        field: "variance",
                        step: i,
                        point: p,
                        value: asym,
                        reason: "must be a finite symmetric matrix",
                    });
                }
                if m.clone().cholesky().is_none() {
                    return Err(ModelChainError::Value {
                        field: "variance",
                        step: i,
                        point: p,
                        value: m.symmetric_eigenvalues().min(),
                        reason: "must be positive definite (smallest eigenvalue shown)",
                    });
                }
                for c in 0..d {
                    for r in 0..d {
                        let id = if r == c { b } else { 0.0 };
                        xs.push((a2 * m[(r, c)] - id) / (b * b));
                    }
                }
            }
            xs
        }
    })
}

/// The exact path KL of the chain of `kernel` on `schedule` with `T = steps` (see the module
/// docs), against the data `q0`.
///
/// # Errors
/// [`ModelChainError`]: the schedule's, the sweep's, and the kernel's (its own failure, a wrong
/// shape, a non-finite mean or a non-positive variance, naming the step and point).
pub fn model_path_kl(
    q0: &Mixture,
    schedule: &Schedule,
    steps: usize,
    kernel: &mut dyn KernelModel,
    params: &ModelChainParams,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ModelChainReport, ModelChainError> {
    let grid = schedule.grid(steps, params.early_stop)?;
    let d = q0.dim();
    let sweep = path_kl_sweep(
        q0,
        schedule,
        &[steps],
        &PathKlParams {
            families: vec![Family::Full],
            early_stop: params.early_stop,
            lattice: params.lattice,
            ..PathKlParams::default()
        },
        &|_, _| {},
    )?;
    let s_full =
        sweep
            .get(Family::Full, steps)
            .map(|r| r.s)
            .ok_or_else(|| ModelChainError::Invalid {
                field: "steps",
                reason: "no S_full row".into(),
            })?;
    let mut per_step = Vec::with_capacity(steps);
    let (mut rules_lattice, mut rules_qmc) = (0usize, 0usize);
    let zero = Estimate {
        value: 0.0,
        err: 0.0,
    };
    let (mut mean_sum, mut cov_sum) = (zero, zero);
    for i in 1..=steps {
        let step = grid.step(i);
        let q_t = q0
            .marginal(step.ln_abar_t)
            .map_err(|e| ModelChainError::Invalid {
                field: "data",
                reason: e.to_string(),
            })?;
        let rule = match (d <= 3 && !params.force_qmc)
            .then(|| lattice(&q_t, &params.lattice))
            .flatten()
        {
            Some(r) => {
                rules_lattice += 1;
                r
            }
            None => {
                rules_qmc += 1;
                qmc(
                    &q_t,
                    &QmcParams {
                        seed: params.qmc.seed.wrapping_add(i as u64),
                        ..params.qmc
                    },
                )
            }
        };
        let nodes = nodes_of(&q_t, &rule);
        let out = kernel
            .evaluate(&nodes.x, d, step.abar_s(), step.abar_t())
            .map_err(ModelChainError::Kernel)?;
        let xs = model_x(&out, &step, i, nodes.n, d)?;
        let slots = rule.slots;
        let (mut ms, mut cs) = (vec![0.0; slots], vec![0.0; slots]);
        let (a, b) = (step.a2.sqrt(), step.b);
        let mut delta = vec![0.0; d];
        let mut infinite = false;
        for p in 0..nodes.n {
            let x = &nodes.x[p * d..(p + 1) * d];
            let s = &nodes.score[p * d..(p + 1) * d];
            let mu = &out.mean[p * d..(p + 1) * d];
            // delta = s - s_theta with mu = (x + b s_theta) / a: delta = (x + b s - a mu) / b.
            for j in 0..d {
                delta[j] = (x[j] + b * s[j] - a * mu[j]) / b;
            }
            let iso = |v: f64| {
                ModelCov::Iso(IsoScale {
                    rho: step.a2 * v / b,
                    one_minus_rho: (b - step.a2 * v) / b,
                })
            };
            let cov = match &out.variance {
                Variance::Scalar(_) => iso(xs[0]),
                Variance::PerPoint(_) => iso(xs[p]),
                Variance::Diag(_) => ModelCov::Diag(&xs[p * d..(p + 1) * d]),
                Variance::Full(_) => ModelCov::Full(&xs[p * d * d..(p + 1) * d * d]),
            };
            let h = &nodes.hess[p * d * d..(p + 1) * d * d];
            let Some(parts) = kl_parts(b, h, &cov, &delta) else {
                infinite = true;
                continue;
            };
            for r in 0..slots {
                let w = nodes.w[p * slots + r];
                ms[r] += w * parts.mean;
                cs[r] += w * parts.cov;
            }
        }
        let (mean_part, cov_part) = if infinite {
            let inf = Estimate {
                value: f64::INFINITY,
                err: 0.0,
            };
            (rule.model.combine(&ms), inf)
        } else {
            (rule.model.combine(&ms), rule.model.combine(&cs))
        };
        mean_sum = add(mean_sum, mean_part);
        cov_sum = add(cov_sum, cov_part);
        per_step.push(StepParts {
            step: i,
            abar_s: step.abar_s(),
            abar_t: step.abar_t(),
            mean_part,
            cov_part,
            nodes: nodes.n,
        });
        progress(i, steps);
    }
    let rule = match (rules_lattice, rules_qmc) {
        (_, 0) => "lattice",
        (0, _) => "qmc",
        _ => "mixed",
    };
    Ok(ModelChainReport {
        steps,
        path_kl: add(add(s_full, mean_sum), cov_sum),
        s_full,
        mean_part: mean_sum,
        cov_part: cov_sum,
        per_step,
        terminal_kl: sweep.terminal_kl,
        rule: rule.into(),
        times: grid.times.clone(),
        abar: (0..=steps).map(|i| grid.abar(i)).collect(),
    })
}

/// The exact kernel with a chosen covariance: mean `m(x_t)` plus a constant `bias`, covariance
/// `diag C(x_t)` (`diagonal`) or the scalar `sigma^2 = b` (`beta`, otherwise) — the internal
/// twin of a user kernel, for tests and timings.
pub struct ExactKernel<'a> {
    /// The data.
    pub q0: &'a Mixture,
    /// Added to every mean.
    pub bias: Vec<f64>,
    /// `diag C` (true) or `beta` (false).
    pub diagonal: bool,
}

impl KernelModel for ExactKernel<'_> {
    fn evaluate(
        &mut self,
        x: &[f64],
        d: usize,
        abar_s: f64,
        abar_t: f64,
    ) -> Result<KernelOutput, String> {
        let step = Step::from_ln_abar(abar_s.ln(), abar_t.ln());
        let q_t = self.q0.marginal(abar_t.ln()).map_err(|e| e.to_string())?;
        let n = x.len() / d;
        let (a, b) = (step.a2.sqrt(), step.b);
        let mut mean = Vec::with_capacity(n * d);
        let mut var = Vec::with_capacity(n * d);
        for p in 0..n {
            let g = q_t
                .geometry(&x[p * d..(p + 1) * d])
                .map_err(|e| e.to_string())?;
            for j in 0..d {
                mean.push((x[p * d + j] + b * g.score[j]) / a + self.bias[j]);
                var.push((b * b * g.hessian[(j, j)] + b) / step.a2);
            }
        }
        Ok(KernelOutput {
            mean,
            variance: if self.diagonal {
                Variance::Diag(var)
            } else {
                Variance::Scalar(b)
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kl::path_kl::PathKlParams;

    #[test]
    fn exact_mean_and_diag_give_s_diag_and_a_bias_adds_its_closed_form() {
        let q0 = crate::data::presets::load("aniso2").unwrap();
        let sch = Schedule::vp_linear();
        let t = 8;
        let params = ModelChainParams::default();
        let mut k = ExactKernel {
            q0: &q0,
            bias: vec![0.0; 2],
            diagonal: true,
        };
        let r = model_path_kl(&q0, &sch, t, &mut k, &params, &mut |_, _| {}).unwrap();
        let sweep = path_kl_sweep(
            &q0,
            &sch,
            &[t],
            &PathKlParams {
                families: vec![Family::Diag],
                ..PathKlParams::default()
            },
            &|_, _| {},
        )
        .unwrap();
        let s_diag = sweep.get(Family::Diag, t).unwrap().s;
        // Two quadratures of the same integral: equal within their error estimates.
        assert!(
            (r.path_kl.value - s_diag.value).abs() <= r.path_kl.err + s_diag.err + 1e-12,
            "{:?} vs {s_diag:?}",
            r.path_kl
        );
        assert!(r.mean_part.value.abs() < 1e-12, "{:?}", r.mean_part);
        // beta variance (sigma^2 = b, constant) and a bias e: the mean part is exactly
        // sum_steps |e|^2 / (2 b_i), whatever the nodes.
        let e = [0.01, -0.02];
        let mut k = ExactKernel {
            q0: &q0,
            bias: e.to_vec(),
            diagonal: false,
        };
        let r = model_path_kl(&q0, &sch, t, &mut k, &params, &mut |_, _| {}).unwrap();
        let grid = sch.grid(t, 0.0).unwrap();
        let closed: f64 = (1..=t)
            .map(|i| 0.5 * (e[0] * e[0] + e[1] * e[1]) / grid.step(i).b)
            .sum();
        assert!(
            (r.mean_part.value - closed).abs() < 1e-9 * closed,
            "{} vs {closed}",
            r.mean_part.value
        );
    }

    #[test]
    fn bad_kernel_output_names_the_field() {
        struct Bad(Variance);
        impl KernelModel for Bad {
            fn evaluate(
                &mut self,
                x: &[f64],
                _d: usize,
                _s: f64,
                _t: f64,
            ) -> Result<KernelOutput, String> {
                Ok(KernelOutput {
                    mean: x.to_vec(),
                    variance: self.0.clone(),
                })
            }
        }
        let q0 = crate::data::presets::load("aniso2").unwrap();
        let sch = Schedule::vp_linear();
        for (v, want) in [
            (Variance::Scalar(-1.0), "variance"),
            (Variance::Scalar(f64::NAN), "variance"),
            (Variance::Diag(vec![1.0; 3]), "variance"),
        ] {
            let e = model_path_kl(
                &q0,
                &sch,
                4,
                &mut Bad(v),
                &ModelChainParams::default(),
                &mut |_, _| {},
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
