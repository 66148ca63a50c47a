//! The guided and unguided model chains: the model covariance `Sigma` per [`crate::kl::guidance::Choice`],
//! the exact propagation of the guided chain's law `N(alpha_t y, P_t)`
//! (`alpha_s = M alpha_t + c`, `P_s = M P_t M^T + Sigma`), the endpoint and path KLs it gives
//! ([`evaluate`]), and ancestral sampling of the guided chain ([`sample_guided`]).

use nalgebra::{Matrix2, Vector2};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::numeric::{u_minus_ln1p, NeumaierSum};
use crate::process::schedule::{Grid, Schedule};

use super::{
    kl_cov_part, kl_mean_part, Choice, GaussianExample, GuidanceError, Init, LinearKernel,
};

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
