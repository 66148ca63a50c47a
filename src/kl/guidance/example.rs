//! The linear-Gaussian example's exact objects: the data `x_0 = R z`, the marginals
//! `q_t = N(0, S_t)`, `S_t = abar_t S_0 + (1 - abar_t) I`, the noisy classifier
//! `q(y | x_t) = N(y; g_t^T x_t, v_t)` and the reverse kernel `q(x_s | x_t) = N(A x_t, C)`,
//! `A = a S_s S_t^{-1}`, `C = S_s - a^2 S_s S_t^{-1} S_s`.

use nalgebra::{Matrix2, Vector2};

use crate::process::schedule::Step;

use super::kl::inv2;
use super::{GuidanceError, GuidanceParams};

/// The Gaussian data, label model and their exact quantities.
#[derive(Clone, Debug)]
pub struct GaussianExample {
    pub(super) params: GuidanceParams,
    /// `S_0 = R diag(s_1, s_2) R^T`.
    pub(super) s0: Matrix2<f64>,
    /// `w = R e_1`.
    pub(super) w: Vector2<f64>,
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

#[cfg(test)]
mod tests {
    use super::super::{Choice, Init};
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
}
