//! Classifier guidance in the exact linear-Gaussian example (DESIGN section 6; LGS paper,
//! appendices A and B).
//!
//! Data `x_0 = R z` in 2-D, `z_1 ~ N(0, s_1)`, `z_2 ~ N(0, s_2)` independent, `R` the
//! rotation by `angle`; a label `y = z_1 + sigma_y n`, `n ~ N(0, 1)`. With `w = R e_1`:
//!
//! - marginal `q_t = N(0, S_t)`, `S_t = abar_t S_0 + (1 - abar_t) I`, `S_0 = R diag(s_1, s_2) R^T`;
//! - the exact noisy classifier `q(y | x_t) = N(y; g_t^T x_t, v_t)` with
//!   `g_t = sqrt(abar_t) s_1 S_t^{-1} w` and `v_t = s_1 + sigma_y^2 - abar_t s_1^2 w^T S_t^{-1} w`,
//!   so `grad_x log q(y | x_t) = g_t (y - g_t^T x_t) / v_t`;
//! - the exact reverse kernel of a step `s < t` (`x_t = a x_s + sqrt(b) eps`):
//!   `q(x_s | x_t) = N(A x_t, C)`, `A = a S_s S_t^{-1}`, `C = S_s - a^2 S_s S_t^{-1} S_s`
//!   (state independent);
//! - the guided kernel of Dhariwal and Nichol:
//!   `p(x_s | x_t, y) = N(A x_t + Sigma grad log q(y | x_t), Sigma)`, i.e. `x_s = M x_t + c y + Sigma^{1/2} xi`
//!   with `M = A - Sigma g_t g_t^T / v_t` and `c = Sigma g_t / v_t`, and
//!   `Sigma` one of the [`Choice`]s.
//!
//! Everything is linear-Gaussian: given `y`, the chain's law at every step is
//! `N(alpha_t y, P_t)` with `alpha_s = M alpha_t + c`, `P_s = M P_t M^T + Sigma`, so the
//! conditional endpoint KL `KL(q(x_0 | y) || p(x_0 | y))` is exact for one `y` and in
//! expectation over `y ~ q(y)` (only `E y^2 = s_1 + sigma_y^2` enters), with no sampling.
//!
//! Besides the guided chain of the paper, [`evaluate`] reports the *exact-guidance*
//! (Bayes) conditional of the same model chain, `p(x_0 | y) ∝ p(x_0) q(y | x_0)`, for which
//! Proposition 11 holds: `E_y KL(q(x_0|y) || p(x_0|y)) = KL(q_0 || p_0) - KL(q(y) || p(y))
//! <= path KL`. The guided kernel above is *not* exact guidance (its normaliser is not
//! `q(y | x_t)`), so the proposition does not cover it; see the README for what the lab finds.

use nalgebra::{Matrix2, SymmetricEigen, Vector2};
use rand::Rng;
use rand_distr::StandardNormal;
use thiserror::Error;

use crate::numeric::{u_minus_ln1p, NeumaierSum};
use crate::process::schedule::{Grid, Schedule, ScheduleError, Step};

/// Errors of the guidance example, each naming the offending field.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum GuidanceError {
    /// A parameter is out of its domain.
    #[error("invalid guidance parameter `{field}` = {value}: {reason}")]
    InvalidParameter {
        /// The field name.
        field: &'static str,
        /// The offending value.
        value: f64,
        /// What was expected.
        reason: &'static str,
    },
    /// An unknown covariance choice.
    #[error("unknown guidance covariance choice `{0}` (expected scalar, analytic, diag or full)")]
    UnknownChoice(String),
    /// An unknown initialisation.
    #[error("unknown initialisation `{0}` (expected exact or standard-normal)")]
    UnknownInit(String),
    /// A step's model covariance is degenerate (not positive definite), so its path-KL term
    /// is infinite.
    #[error("step {step}: the `{choice}` covariance is not positive definite (its path-KL term is infinite)")]
    DegenerateCovariance {
        /// The choice.
        choice: &'static str,
        /// The step index `i` (from `t_{i-1}` to `t_i`).
        step: usize,
    },
    /// The schedule or grid failed.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// The model covariance `Sigma_t` of the guided kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Choice {
    /// The scalar DDPM choice `beta-tilde`: `Sigma = b (1 - abar_s)/(1 - abar_t) I`; at a
    /// degenerate last step (`abar_s = 1`) it borrows the next step's variance (the
    /// `clip` remedy of `path-kl`).
    Scalar,
    /// The Analytic-DPM scalar `Sigma = tr(C)/2 I` (exact for Gaussian data).
    Analytic,
    /// The diagonal of the exact covariance in x coordinates, `diag(C)`.
    Diag,
    /// The exact (unconditional) covariance `C`.
    Full,
}

impl Choice {
    /// All choices, in output order.
    pub const ALL: [Choice; 4] = [Choice::Scalar, Choice::Analytic, Choice::Diag, Choice::Full];

    /// The contract name: `scalar`, `analytic`, `diag`, `full`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Choice::Scalar => "scalar",
            Choice::Analytic => "analytic",
            Choice::Diag => "diag",
            Choice::Full => "full",
        }
    }

    /// Parses a contract name (`beta-tilde` is accepted for `scalar`).
    ///
    /// # Errors
    /// [`GuidanceError::UnknownChoice`].
    pub fn from_name(name: &str) -> Result<Self, GuidanceError> {
        match name {
            "scalar" | "beta-tilde" => Ok(Choice::Scalar),
            "analytic" => Ok(Choice::Analytic),
            "diag" => Ok(Choice::Diag),
            "full" => Ok(Choice::Full),
            other => Err(GuidanceError::UnknownChoice(other.to_string())),
        }
    }
}

/// Where both chains start at the last grid time `t_T`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// The exact marginals: `q(x_T)` unguided and `q(x_T | y)` guided (so all error is the
    /// kernels'; the terminal KL is 0).
    Exact,
    /// `N(0, I)` for both (the sampler's practice; adds the terminal KL
    /// `KL(q_T || N(0, I))` to the path KL).
    StandardNormal,
}

impl Init {
    /// `exact` or `standard-normal`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Init::Exact => "exact",
            Init::StandardNormal => "standard-normal",
        }
    }

    /// Parses `exact` or `standard-normal`.
    ///
    /// # Errors
    /// [`GuidanceError::UnknownInit`].
    pub fn from_name(name: &str) -> Result<Self, GuidanceError> {
        match name {
            "exact" => Ok(Init::Exact),
            "standard-normal" => Ok(Init::StandardNormal),
            other => Err(GuidanceError::UnknownInit(other.to_string())),
        }
    }
}

/// Parameters of the example.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuidanceParams {
    /// Rotation angle of `R` in degrees (not a multiple of 90 for the counterexample).
    pub angle_deg: f64,
    /// `s_1 = Var z_1` (the labelled direction).
    pub var1: f64,
    /// `s_2 = Var z_2`.
    pub var2: f64,
    /// The label noise standard deviation `sigma_y`.
    pub label_noise: f64,
    /// The fixed label `y` of the conditional endpoint KL.
    pub y: f64,
    /// The start of both chains.
    pub init: Init,
}

impl Default for GuidanceParams {
    /// `angle = 30 deg`, `s_1 = 4`, `s_2 = 0.25`, `sigma_y = 0.5`, `y = 2`, exact start:
    /// a strongly anisotropic, rotated data covariance and an informative label, so the
    /// scalar, diagonal and full choices separate clearly.
    fn default() -> Self {
        Self {
            angle_deg: 30.0,
            var1: 4.0,
            var2: 0.25,
            label_noise: 0.5,
            y: 2.0,
            init: Init::Exact,
        }
    }
}

/// The Gaussian data, label model and their exact quantities.
#[derive(Clone, Debug)]
pub struct GaussianExample {
    params: GuidanceParams,
    /// `S_0 = R diag(s_1, s_2) R^T`.
    s0: Matrix2<f64>,
    /// `w = R e_1`.
    w: Vector2<f64>,
}

/// A Gaussian `N(mean, cov)` in 2-D.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gauss2 {
    /// Mean.
    pub mean: Vector2<f64>,
    /// Covariance.
    pub cov: Matrix2<f64>,
}

/// The exact reverse kernel `q(x_s | x_t) = N(A x_t, C)` of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearKernel {
    /// `A = a S_s S_t^{-1}`.
    pub a: Matrix2<f64>,
    /// `C = S_s - a^2 S_s S_t^{-1} S_s`.
    pub c: Matrix2<f64>,
}

/// The exact noisy classifier `q(y | x_t) = N(y; g^T x_t, v)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Classifier {
    /// `g_t = sqrt(abar_t) s_1 S_t^{-1} w`.
    pub g: Vector2<f64>,
    /// `v_t = s_1 + sigma_y^2 - abar_t s_1^2 w^T S_t^{-1} w`.
    pub v: f64,
}

impl Classifier {
    /// `grad_x log q(y | x) = g (y - g^T x) / v`.
    #[must_use]
    pub fn score(&self, x: &Vector2<f64>, y: f64) -> Vector2<f64> {
        self.g * ((y - self.g.dot(x)) / self.v)
    }
}

fn check(
    field: &'static str,
    value: f64,
    ok: bool,
    reason: &'static str,
) -> Result<(), GuidanceError> {
    if ok {
        Ok(())
    } else {
        Err(GuidanceError::InvalidParameter {
            field,
            value,
            reason,
        })
    }
}

impl GaussianExample {
    /// Builds the example.
    ///
    /// # Errors
    /// `InvalidParameter` naming `angle_deg`, `var1`, `var2`, `label_noise` or `y` if it is
    /// not finite, or a variance or the label noise is not positive.
    pub fn new(params: GuidanceParams) -> Result<Self, GuidanceError> {
        let p = params;
        check(
            "angle_deg",
            p.angle_deg,
            p.angle_deg.is_finite(),
            "must be finite",
        )?;
        check(
            "var1",
            p.var1,
            p.var1.is_finite() && p.var1 > 0.0,
            "must be finite and > 0",
        )?;
        check(
            "var2",
            p.var2,
            p.var2.is_finite() && p.var2 > 0.0,
            "must be finite and > 0",
        )?;
        check(
            "label_noise",
            p.label_noise,
            p.label_noise.is_finite() && p.label_noise > 0.0,
            "must be finite and > 0",
        )?;
        check("y", p.y, p.y.is_finite(), "must be finite")?;
        let th = p.angle_deg.to_radians();
        let (sn, cs) = th.sin_cos();
        let r = Matrix2::new(cs, -sn, sn, cs);
        let s0 = r * Matrix2::new(p.var1, 0.0, 0.0, p.var2) * r.transpose();
        let s0 = (s0 + s0.transpose()) * 0.5;
        Ok(Self {
            params: p,
            s0,
            w: Vector2::new(cs, sn),
        })
    }

    /// The parameters.
    #[must_use]
    pub fn params(&self) -> &GuidanceParams {
        &self.params
    }

    /// `S_t = abar_t S_0 + (1 - abar_t) I` from `ln abar_t` (`1 - abar_t` by `expm1`).
    #[must_use]
    pub fn marginal_cov(&self, ln_abar: f64) -> Matrix2<f64> {
        let abar = ln_abar.exp();
        let oma = -ln_abar.exp_m1();
        self.s0 * abar + Matrix2::identity() * oma
    }

    /// The label variance `Var y = s_1 + sigma_y^2`.
    #[must_use]
    pub fn label_variance(&self) -> f64 {
        self.params.var1 + self.params.label_noise * self.params.label_noise
    }

    /// The exact classifier `q(y | x_t)` at `ln abar_t`.
    #[must_use]
    pub fn classifier(&self, ln_abar: f64) -> Classifier {
        let st_inv = inv2(&self.marginal_cov(ln_abar));
        let abar = ln_abar.exp();
        let s1 = self.params.var1;
        let siw = st_inv * self.w;
        Classifier {
            g: siw * (abar.sqrt() * s1),
            v: self.label_variance() - abar * s1 * s1 * self.w.dot(&siw),
        }
    }

    /// The exact conditional `q(x_t | y) = N(alpha y, P)` at `ln abar_t`, returned as
    /// `(alpha, P)`: `alpha = sqrt(abar_t) s_1 w / Var y`,
    /// `P = S_t - abar_t s_1^2 w w^T / Var y`.
    #[must_use]
    pub fn conditional(&self, ln_abar: f64) -> (Vector2<f64>, Matrix2<f64>) {
        let abar = ln_abar.exp();
        let s1 = self.params.var1;
        let vy = self.label_variance();
        let alpha = self.w * (abar.sqrt() * s1 / vy);
        let p = self.marginal_cov(ln_abar) - self.w * self.w.transpose() * (abar * s1 * s1 / vy);
        (alpha, p)
    }

    /// The exact reverse kernel of `step`: `A = a S_s S_t^{-1}`,
    /// `C = S_s - a^2 S_s S_t^{-1} S_s`, computed as `C = (b^2 H + b I)/a^2` with
    /// `H = -S_t^{-1}` (Tweedie), which has no cancellation for small `b`.
    #[must_use]
    pub fn kernel(&self, step: &Step) -> LinearKernel {
        let st_inv = inv2(&self.marginal_cov(step.ln_abar_t));
        let a = step.a2.sqrt();
        // A = a S_s S_t^{-1} = (I - b S_t^{-1}) / a, since S_t = a^2 S_s + b I.
        let amat = (Matrix2::identity() - st_inv * step.b) / a;
        let c = (Matrix2::identity() * step.b - st_inv * (step.b * step.b)) / step.a2;
        LinearKernel {
            a: amat,
            c: (c + c.transpose()) * 0.5,
        }
    }
}

/// `M^{-1}` of a 2x2 matrix by the adjugate.
fn inv2(m: &Matrix2<f64>) -> Matrix2<f64> {
    let det = m[(0, 0)] * m[(1, 1)] - m[(0, 1)] * m[(1, 0)];
    Matrix2::new(m[(1, 1)], -m[(0, 1)], -m[(1, 0)], m[(0, 0)]) / det
}

/// The covariance part of `KL(N(., P) || N(., Q))`:
/// `0.5 sum_i (delta_i - ln(1 + delta_i))` with `delta_i` the eigenvalues of
/// `L^{-1} (P - Q) L^{-T}`, `Q = L L^T`, which is free of cancellation when `P ~ Q`.
/// Returns `+inf` if `Q` is not positive definite.
#[must_use]
pub fn kl_cov_part(p: &Matrix2<f64>, q: &Matrix2<f64>) -> f64 {
    let Some(ch) = q.cholesky() else {
        return f64::INFINITY;
    };
    let l_inv = ch.l().try_inverse().unwrap_or_else(Matrix2::zeros);
    let d = l_inv * (p - q) * l_inv.transpose();
    let d = (d + d.transpose()) * 0.5;
    let e = SymmetricEigen::new(d).eigenvalues;
    0.5 * (u_minus_ln1p(e[0]) + u_minus_ln1p(e[1]))
}

/// The mean part `0.5 dm^T Q^{-1} dm` of a Gaussian KL with model covariance `Q`.
#[must_use]
pub fn kl_mean_part(dm: &Vector2<f64>, q: &Matrix2<f64>) -> f64 {
    0.5 * dm.dot(&(inv2(q) * dm))
}

/// `KL(N(m_p, P) || N(m_q, Q))`.
#[must_use]
pub fn gaussian_kl(p: &Gauss2, q: &Gauss2) -> f64 {
    kl_cov_part(&p.cov, &q.cov) + kl_mean_part(&(p.mean - q.mean), &q.cov)
}

/// Everything [`evaluate`] computes for one (choice, schedule, T).
#[derive(Clone, Debug, PartialEq)]
pub struct GuidanceRow {
    /// The covariance choice.
    pub choice: Choice,
    /// The schedule name.
    pub schedule: String,
    /// The number of steps T.
    pub steps: usize,
    /// `KL(q(x_0 | y) || p(x_0 | y))` at the fixed `y` (guided kernel of the paper).
    pub endpoint_kl: f64,
    /// `E_{y ~ q(y)} KL(q(x_0 | y) || p(x_0 | y))` (guided kernel of the paper).
    pub endpoint_kl_avg: f64,
    /// The covariance part of both endpoint KLs (it does not depend on `y`).
    pub endpoint_kl_cov: f64,
    /// The unconditional path KL of the unguided chain with the same covariances,
    /// including the terminal KL.
    pub path_kl: f64,
    /// The terminal KL `KL(q_T || p_T)` (0 with the exact start).
    pub terminal_kl: f64,
    /// The unguided endpoint KL `KL(q_0 || p_0)`.
    pub unguided_endpoint_kl: f64,
    /// `E_y KL(q(x_0|y) || p(x_0|y))` under *exact* (Bayes) guidance of the model chain,
    /// `p(x_0|y) ∝ p(x_0) q(y|x_0)` (Proposition 11's setting), by averaging the closed-form
    /// conditional KL over `y`.
    pub bayes_endpoint_kl_avg: f64,
    /// The same by the identity `KL(q_0 || p_0) - KL(q(y) || p(y))` (a second route).
    pub bayes_endpoint_kl_identity: f64,
}

/// The model covariance `Sigma` of `choice` at step `i` of `grid` (from `t_{i-1}` to `t_i`).
///
/// # Errors
/// `DegenerateCovariance` for `scalar` at a degenerate last step when `T = 1`.
pub fn model_covariance(
    choice: Choice,
    kernel: &LinearKernel,
    grid: &Grid,
    i: usize,
) -> Result<Matrix2<f64>, GuidanceError> {
    let c = kernel.c;
    Ok(match choice {
        Choice::Full => c,
        Choice::Diag => Matrix2::new(c[(0, 0)], 0.0, 0.0, c[(1, 1)]),
        Choice::Analytic => Matrix2::identity() * (0.5 * c.trace()),
        Choice::Scalar => {
            let step = grid.step(i);
            let oma_s = grid.one_minus_abar(i - 1);
            let sigma2 = if oma_s > 0.0 {
                step.b * oma_s / grid.one_minus_abar(i)
            } else {
                // The `clip` remedy of path-kl: the next step's beta-tilde variance.
                if grid.steps() < 2 {
                    return Err(GuidanceError::DegenerateCovariance {
                        choice: choice.name(),
                        step: i,
                    });
                }
                let next = grid.step(i + 1);
                next.b * grid.one_minus_abar(i) / grid.one_minus_abar(i + 1)
            };
            Matrix2::identity() * sigma2
        }
    })
}

/// Exact law of the guided chain given `y`: at each step `N(alpha y, P)`.
/// Returns `(alpha_0, P_0)` at `t_0` and, unguided, the endpoint covariance and path KL.
struct Propagated {
    alpha: Vector2<f64>,
    p: Matrix2<f64>,
    p_unguided: Matrix2<f64>,
    path_kl: f64,
    terminal_kl: f64,
}

fn propagate(
    ex: &GaussianExample,
    choice: Choice,
    grid: &Grid,
) -> Result<Propagated, GuidanceError> {
    let t = grid.steps();
    let ln_t = grid.ln_abar[t];
    let (mut alpha, mut p, mut pu, terminal_kl) = match ex.params.init {
        Init::Exact => {
            let (alpha, p) = ex.conditional(ln_t);
            (alpha, p, ex.marginal_cov(ln_t), 0.0)
        }
        Init::StandardNormal => {
            let st = ex.marginal_cov(ln_t);
            let kl = kl_cov_part(&st, &Matrix2::identity());
            (
                Vector2::zeros(),
                Matrix2::identity(),
                Matrix2::identity(),
                kl,
            )
        }
    };
    let mut path = NeumaierSum::new();
    path.add(terminal_kl);
    for i in (1..=t).rev() {
        let step = grid.step(i);
        let k = ex.kernel(&step);
        let sigma = model_covariance(choice, &k, grid, i)?;
        let term = kl_cov_part(&k.c, &sigma);
        if !term.is_finite() {
            return Err(GuidanceError::DegenerateCovariance {
                choice: choice.name(),
                step: i,
            });
        }
        path.add(term);
        let cl = ex.classifier(step.ln_abar_t);
        let sg = sigma * cl.g;
        let m = k.a - sg * cl.g.transpose() / cl.v;
        let c = sg / cl.v;
        alpha = m * alpha + c;
        let pn = m * p * m.transpose() + sigma;
        p = (pn + pn.transpose()) * 0.5;
        let pun = k.a * pu * k.a.transpose() + sigma;
        pu = (pun + pun.transpose()) * 0.5;
    }
    Ok(Propagated {
        alpha,
        p,
        p_unguided: pu,
        path_kl: path.value(),
        terminal_kl,
    })
}

/// The exact law of the guided chain's endpoint given `y`: `N(alpha y, P)`, returned as
/// `(alpha, P)` (the recursion `alpha_s = M alpha_t + c`, `P_s = M P_t M^T + Sigma`).
///
/// # Errors
/// As [`evaluate`].
pub fn guided_endpoint(
    ex: &GaussianExample,
    choice: Choice,
    schedule: &Schedule,
    steps: usize,
) -> Result<(Vector2<f64>, Matrix2<f64>), GuidanceError> {
    let grid = schedule.grid(steps, 0.0)?;
    let pr = propagate(ex, choice, &grid)?;
    Ok((pr.alpha, pr.p))
}

/// Exact guidance results for one choice on one grid.
///
/// # Errors
/// `DegenerateCovariance` if a model covariance is singular.
pub fn evaluate(
    ex: &GaussianExample,
    choice: Choice,
    schedule: &Schedule,
    steps: usize,
) -> Result<GuidanceRow, GuidanceError> {
    let grid = schedule.grid(steps, 0.0)?;
    let pr = propagate(ex, choice, &grid)?;
    let ln0 = grid.ln_abar[0];
    let (alpha_q, p_q) = ex.conditional(ln0);
    let vy = ex.label_variance();
    let y = ex.params.y;
    let cov = kl_cov_part(&p_q, &pr.p);
    let dalpha = alpha_q - pr.alpha;
    let mean_unit = kl_mean_part(&dalpha, &pr.p);
    // Exact (Bayes) guidance of the model chain: p(x_0) = N(0, Pu), q(y | x_0) = N(g^T x, v).
    let s0 = ex.marginal_cov(ln0);
    let cl0 = ex.classifier(ln0);
    let pu = pr.p_unguided;
    let pug = pu * cl0.g;
    let py_var = cl0.g.dot(&pug) + cl0.v;
    let alpha_b = pug / py_var;
    let p_b = pu - pug * pug.transpose() / py_var;
    let bayes_avg = kl_cov_part(&p_q, &p_b) + vy * kl_mean_part(&(alpha_q - alpha_b), &p_b);
    let unguided = kl_cov_part(&s0, &pu);
    let label_kl = 0.5 * u_minus_ln1p(vy / py_var - 1.0);
    Ok(GuidanceRow {
        choice,
        schedule: schedule.name(),
        steps,
        endpoint_kl: cov + y * y * mean_unit,
        endpoint_kl_avg: cov + vy * mean_unit,
        endpoint_kl_cov: cov,
        path_kl: pr.path_kl,
        terminal_kl: pr.terminal_kl,
        unguided_endpoint_kl: unguided,
        bayes_endpoint_kl_avg: bayes_avg,
        bayes_endpoint_kl_identity: unguided - label_kl,
    })
}

/// Draws `n` endpoints of the guided chain given `y` by ancestral sampling (the Monte Carlo
/// cross-check of [`evaluate`]'s exact propagation): `x_T` from the start law, then
/// `x_s = A x_t + Sigma grad log q(y | x_t) + Sigma^{1/2} xi` with `xi ~ N(0, I)`.
///
/// # Errors
/// As [`evaluate`].
pub fn sample_guided<R: Rng + ?Sized>(
    ex: &GaussianExample,
    choice: Choice,
    schedule: &Schedule,
    steps: usize,
    y: f64,
    n: usize,
    rng: &mut R,
) -> Result<Vec<Vector2<f64>>, GuidanceError> {
    let grid = schedule.grid(steps, 0.0)?;
    let t = grid.steps();
    let ln_t = grid.ln_abar[t];
    let (m0, p0) = match ex.params.init {
        Init::Exact => {
            let (alpha, p) = ex.conditional(ln_t);
            (alpha * y, p)
        }
        Init::StandardNormal => (Vector2::zeros(), Matrix2::identity()),
    };
    let mut kernels = Vec::with_capacity(t);
    for i in (1..=t).rev() {
        let step = grid.step(i);
        let k = ex.kernel(&step);
        let sigma = model_covariance(choice, &k, &grid, i)?;
        let l = sigma
            .cholesky()
            .ok_or(GuidanceError::DegenerateCovariance {
                choice: choice.name(),
                step: i,
            })?;
        kernels.push((k.a, sigma, l.l(), ex.classifier(step.ln_abar_t)));
    }
    let l0 = p0.cholesky().map(|c| c.l()).unwrap_or_else(Matrix2::zeros);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let xi = Vector2::new(rng.sample(StandardNormal), rng.sample(StandardNormal));
        let mut x = m0 + l0 * xi;
        for (a, sigma, l, cl) in &kernels {
            let xi = Vector2::new(rng.sample(StandardNormal), rng.sample(StandardNormal));
            x = a * x + sigma * cl.score(&x, y) + l * xi;
        }
        out.push(x);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_matches_conditioning_formula() {
        // Independent route: C = S_s - a^2 S_s S_t^{-1} S_s and A = a S_s S_t^{-1} directly.
        let ex = GaussianExample::new(GuidanceParams::default()).unwrap();
        let step = Step::from_ln_abar(-0.3, -0.5);
        let k = ex.kernel(&step);
        let ss = ex.marginal_cov(-0.3);
        let sti = inv2(&ex.marginal_cov(-0.5));
        let a = step.a2.sqrt();
        let c = ss - ss * sti * ss * step.a2;
        // 1e-12: O(1) entries, a handful of flops of round-off.
        assert!((k.c - c).abs().max() < 1e-12);
        assert!((k.a - ss * sti * a).abs().max() < 1e-12);
    }

    #[test]
    fn classifier_matches_joint_gaussian_conditioning() {
        // q(y | x_t) from the 3x3 joint covariance of (x_t, y), conditioned by Schur complement.
        let ex = GaussianExample::new(GuidanceParams::default()).unwrap();
        let ln: f64 = -0.7;
        let abar: f64 = ln.exp();
        let st = ex.marginal_cov(ln);
        let cxy = ex.w * (abar.sqrt() * ex.params.var1);
        let g = inv2(&st) * cxy;
        let v = ex.label_variance() - cxy.dot(&g);
        let cl = ex.classifier(ln);
        assert!((cl.g - g).abs().max() < 1e-13);
        assert!((cl.v - v).abs() < 1e-13);
    }

    #[test]
    fn bad_parameters_name_the_field() {
        let p = GuidanceParams {
            var2: -1.0,
            ..GuidanceParams::default()
        };
        match GaussianExample::new(p) {
            Err(GuidanceError::InvalidParameter { field, .. }) => assert_eq!(field, "var2"),
            other => panic!("expected an error naming var2, got {other:?}"),
        }
        let p = GuidanceParams {
            label_noise: f64::NAN,
            ..GuidanceParams::default()
        };
        assert!(matches!(
            GaussianExample::new(p),
            Err(GuidanceError::InvalidParameter {
                field: "label_noise",
                ..
            })
        ));
        assert!(Choice::from_name("isotropic").is_err());
        assert!(Init::from_name("zero").is_err());
    }

    #[test]
    fn kl_parts_match_the_textbook_formula() {
        let p = Gauss2 {
            mean: Vector2::new(0.3, -0.2),
            cov: Matrix2::new(2.0, 0.3, 0.3, 1.0),
        };
        let q = Gauss2 {
            mean: Vector2::new(-0.1, 0.4),
            cov: Matrix2::new(1.5, -0.2, -0.2, 0.7),
        };
        let qi = inv2(&q.cov);
        let dm = p.mean - q.mean;
        let text = 0.5
            * ((qi * p.cov).trace() - 2.0
                + (q.cov.determinant() / p.cov.determinant()).ln()
                + dm.dot(&(qi * dm)));
        // 1e-14: O(1) KL, both routes a few dozen flops.
        assert!((gaussian_kl(&p, &q) - text).abs() < 1e-14);
    }
}
