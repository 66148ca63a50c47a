//! The score seam for low-rank mixtures: score and `H v` in `O(K D r)` per point.

use std::sync::Arc;

use nalgebra::DVector;

use super::{LocalScore, MarginalCache, ScoreModel};
use crate::data::lowrank::LowRankMixture;
use crate::data::mixture::MixtureError;

/// Score information of a [`LowRankMixture`] at one point.
#[derive(Clone, Debug)]
pub struct LowRankLocal {
    mixture: Arc<LowRankMixture>,
    resp: Vec<f64>,
    gk: Vec<DVector<f64>>,
    score: Vec<f64>,
}

impl LocalScore for LowRankLocal {
    fn score(&self) -> &[f64] {
        &self.score
    }

    fn hvp(&self, v: &[f64], out: &mut [f64]) {
        let vv = DVector::from_column_slice(v);
        let g = DVector::from_column_slice(&self.score);
        let mut h = -&g * g.dot(&vv);
        for (k, c) in self.mixture.components.iter().enumerate() {
            let r = self.resp[k];
            // Components below e^-60 relative contribute below 1e-26: skipped.
            if r < 1e-26 {
                continue;
            }
            let pv = c.precision_mul(&vv);
            h.axpy(-r, &pv, 1.0);
            h.axpy(r * self.gk[k].dot(&vv), &self.gk[k], 1.0);
        }
        out.copy_from_slice(h.as_slice());
    }

    /// `diag H = sum_k r_k ((g_k - g)^2 - diag Sigma_k^{-1})` in closed form (`O(K D)` with the
    /// mixture's cached `diag Sigma_k^{-1}`), instead of `D` products.
    fn hessian_diag(&self) -> Vec<f64> {
        let d = self.score.len();
        let mut out = vec![0.0; d];
        for (k, pd) in self.mixture.precision_diags().iter().enumerate() {
            let r = self.resp[k];
            if r < 1e-26 {
                continue;
            }
            for i in 0..d {
                let dk = self.gk[k][i] - self.score[i];
                out[i] += r * (dk * dk - pd[i]);
            }
        }
        out
    }
}

/// The exact score model of a [`LowRankMixture`] (marginals cached per time).
#[derive(Debug)]
pub struct LowRankScore {
    q0: LowRankMixture,
    cache: MarginalCache<LowRankMixture>,
}

impl LowRankScore {
    /// Wraps `q0`.
    #[must_use]
    pub fn new(q0: LowRankMixture) -> Self {
        Self {
            q0,
            cache: MarginalCache::default(),
        }
    }
}

impl ScoreModel for LowRankScore {
    type Local<'a> = LowRankLocal;

    fn dim(&self) -> usize {
        self.q0.dim()
    }

    fn at(&self, x: &[f64], ln_abar: f64) -> Result<LowRankLocal, MixtureError> {
        let q = self.cache.get_or_build(ln_abar, || {
            self.q0
                .marginal(ln_abar)
                .map_err(|_| MixtureError::BadAbar(ln_abar.exp()))
        })?;
        q.local(x)
    }
}

impl LowRankMixture {
    /// Local score information at `x` (responsibilities, `g_k`, `g`).
    ///
    /// # Errors
    /// Dimension mismatch or non-finite `x`.
    pub fn local(self: &Arc<Self>, x: &[f64]) -> Result<LowRankLocal, MixtureError> {
        let xv = self.check(x)?;
        let (t, gk) = self.terms(&xv);
        let m = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut resp: Vec<f64> = t.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = resp.iter().sum();
        resp.iter_mut().for_each(|r| *r /= s);
        let mut g = DVector::zeros(self.dim());
        for (r, gk) in resp.iter().zip(&gk) {
            g.axpy(*r, gk, 1.0);
        }
        Ok(LowRankLocal {
            mixture: Arc::clone(self),
            resp,
            gk,
            score: g.as_slice().to_vec(),
        })
    }
}
