//! The score-model seam: what every sampler sees of the data.
//!
//! A [`ScoreModel`] gives, at a point `x` and a time (given as `ln abar_t`), a
//! [`LocalScore`]: the score `grad ln q_t(x)` and Hessian-vector products `H v` with
//! `H = grad^2 ln q_t(x)` (for a network, one forward pass and one Jacobian-vector product
//! each). [`MixtureScore`] implements it exactly for Gaussian mixtures; [`Counted`] wraps any
//! model and counts the calls, so a sampler's cost is reported in score-equivalent
//! evaluations rather than only in wall time.

pub mod lowrank;

pub use lowrank::{LowRankLocal, LowRankScore};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use nalgebra::DMatrix;

use crate::data::mixture::{Mixture, MixtureError, Workspace};

/// The score and Hessian-vector products of `ln q_t` at one point.
pub trait LocalScore {
    /// `grad ln q_t(x)`.
    fn score(&self) -> &[f64];

    /// `out = H v`, `H = grad^2 ln q_t(x)` (one Jacobian-vector product of the score).
    fn hvp(&self, v: &[f64], out: &mut [f64]);

    /// `diag H`. Default: `D` products with the unit vectors.
    fn hessian_diag(&self) -> Vec<f64> {
        let d = self.score().len();
        let mut e = vec![0.0; d];
        let mut out = vec![0.0; d];
        (0..d)
            .map(|i| {
                e[i] = 1.0;
                self.hvp(&e, &mut out);
                e[i] = 0.0;
                out[i]
            })
            .collect()
    }

    /// The dense Hessian `H`. Default: `D` products with the unit vectors, symmetrised.
    fn hessian(&self) -> DMatrix<f64> {
        let d = self.score().len();
        let mut e = vec![0.0; d];
        let mut out = vec![0.0; d];
        let mut h = DMatrix::zeros(d, d);
        for j in 0..d {
            e[j] = 1.0;
            self.hvp(&e, &mut out);
            e[j] = 0.0;
            for i in 0..d {
                h[(i, j)] = out[i];
            }
        }
        (&h + h.transpose()) * 0.5
    }
}

/// A score model: local score information at `(x, ln abar_t)`.
pub trait ScoreModel: Sync {
    /// The local information type.
    type Local<'a>: LocalScore
    where
        Self: 'a;

    /// The dimension `D`.
    fn dim(&self) -> usize;

    /// The score (and the means for Hessian-vector products) at `x`, time `ln abar_t`:
    /// one score evaluation.
    ///
    /// # Errors
    /// Model-specific (dimension mismatch, non-finite input).
    fn at(&self, x: &[f64], ln_abar: f64) -> Result<Self::Local<'_>, MixtureError>;
}

/// Forward marginals built once per time, keyed by the bits of `ln abar_t`, shared between
/// threads.
#[derive(Debug)]
pub struct MarginalCache<M> {
    map: RwLock<HashMap<u64, Arc<M>>>,
}

impl<M> Default for MarginalCache<M> {
    fn default() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<M> MarginalCache<M> {
    /// The marginal at `ln_abar`, built by `build` on first use.
    ///
    /// # Errors
    /// Whatever `build` returns.
    pub fn get_or_build<E>(
        &self,
        ln_abar: f64,
        build: impl FnOnce() -> Result<M, E>,
    ) -> Result<Arc<M>, E> {
        let key = ln_abar.to_bits();
        if let Some(m) = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Arc::clone(m));
        }
        let m = Arc::new(build()?);
        self.map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, Arc::clone(&m));
        Ok(m)
    }
}

/// The exact score model of a Gaussian mixture `q_0`: `q_t` is the forward marginal, built
/// once per time and cached (keyed by the bits of `ln abar_t`).
#[derive(Debug)]
pub struct MixtureScore {
    q0: Mixture,
    marginals: MarginalCache<Mixture>,
}

impl MixtureScore {
    /// Wraps `q0`.
    #[must_use]
    pub fn new(q0: Mixture) -> Self {
        Self {
            q0,
            marginals: MarginalCache::default(),
        }
    }

    /// The data mixture `q_0`.
    #[must_use]
    pub fn data(&self) -> &Mixture {
        &self.q0
    }

    /// The marginal `q_t` at `ln abar_t` (cached).
    ///
    /// # Errors
    /// As [`Mixture::marginal`].
    pub fn marginal(&self, ln_abar: f64) -> Result<Arc<Mixture>, MixtureError> {
        self.marginals
            .get_or_build(ln_abar, || self.q0.marginal(ln_abar))
    }
}

/// [`MixtureScore`]'s local information: the exact score and dense Hessian.
#[derive(Clone, Debug)]
pub struct MixtureLocal {
    score: Vec<f64>,
    /// Column-major `D x D` Hessian.
    hessian: Vec<f64>,
}

impl LocalScore for MixtureLocal {
    fn score(&self) -> &[f64] {
        &self.score
    }

    fn hvp(&self, v: &[f64], out: &mut [f64]) {
        let d = self.score.len();
        for i in 0..d {
            out[i] = 0.0;
        }
        for j in 0..d {
            let vj = v[j];
            let col = &self.hessian[j * d..(j + 1) * d];
            for i in 0..d {
                out[i] += col[i] * vj;
            }
        }
    }

    fn hessian_diag(&self) -> Vec<f64> {
        let d = self.score.len();
        (0..d).map(|i| self.hessian[i * d + i]).collect()
    }

    fn hessian(&self) -> DMatrix<f64> {
        let d = self.score.len();
        DMatrix::from_column_slice(d, d, &self.hessian)
    }
}

impl ScoreModel for MixtureScore {
    type Local<'a> = MixtureLocal;

    fn dim(&self) -> usize {
        self.q0.dim()
    }

    fn at(&self, x: &[f64], ln_abar: f64) -> Result<MixtureLocal, MixtureError> {
        let q = self.marginal(ln_abar)?;
        q.check_x(x)?;
        let mut ws = Workspace::new(q.dim(), q.len());
        q.geometry_unchecked(x, &mut ws);
        Ok(MixtureLocal {
            score: ws.score.clone(),
            hessian: ws.hessian.clone(),
        })
    }
}

/// Call counts through the seam.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CallCounts {
    /// Score evaluations ([`ScoreModel::at`]).
    pub score: u64,
    /// Hessian-vector products ([`LocalScore::hvp`], including those inside the default
    /// `hessian_diag` / `hessian`).
    pub hvp: u64,
    /// Exact-oracle queries (`hessian_diag` / `hessian` answered by a model's own override,
    /// as the exact `diag` and `full` families do).
    pub oracle: u64,
}

/// A model wrapper that counts the calls through the seam.
#[derive(Debug)]
pub struct Counted<M> {
    inner: M,
    score: AtomicU64,
    hvp: Arc<AtomicU64>,
    oracle: Arc<AtomicU64>,
}

impl<M> Counted<M> {
    /// Wraps `inner` with zeroed counters.
    pub fn new(inner: M) -> Self {
        Self {
            inner,
            score: AtomicU64::new(0),
            hvp: Arc::new(AtomicU64::new(0)),
            oracle: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The wrapped model.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// The counts so far.
    pub fn counts(&self) -> CallCounts {
        CallCounts {
            score: self.score.load(Ordering::Relaxed),
            hvp: self.hvp.load(Ordering::Relaxed),
            oracle: self.oracle.load(Ordering::Relaxed),
        }
    }

    /// Resets the counters to zero.
    pub fn reset(&self) {
        self.score.store(0, Ordering::Relaxed);
        self.hvp.store(0, Ordering::Relaxed);
        self.oracle.store(0, Ordering::Relaxed);
    }
}

/// [`Counted`]'s local information: counts each product.
#[derive(Debug)]
pub struct CountedLocal<L> {
    inner: L,
    hvp: Arc<AtomicU64>,
    oracle: Arc<AtomicU64>,
}

impl<L: LocalScore> LocalScore for CountedLocal<L> {
    fn score(&self) -> &[f64] {
        self.inner.score()
    }

    fn hvp(&self, v: &[f64], out: &mut [f64]) {
        self.hvp.fetch_add(1, Ordering::Relaxed);
        self.inner.hvp(v, out);
    }

    fn hessian_diag(&self) -> Vec<f64> {
        self.oracle.fetch_add(1, Ordering::Relaxed);
        self.inner.hessian_diag()
    }

    fn hessian(&self) -> DMatrix<f64> {
        self.oracle.fetch_add(1, Ordering::Relaxed);
        self.inner.hessian()
    }
}

impl<M: ScoreModel> ScoreModel for Counted<M> {
    type Local<'a>
        = CountedLocal<M::Local<'a>>
    where
        M: 'a;

    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn at(&self, x: &[f64], ln_abar: f64) -> Result<Self::Local<'_>, MixtureError> {
        self.score.fetch_add(1, Ordering::Relaxed);
        Ok(CountedLocal {
            inner: self.inner.at(x, ln_abar)?,
            hvp: Arc::clone(&self.hvp),
            oracle: Arc::clone(&self.oracle),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::presets;

    #[test]
    fn mixture_local_matches_mixture_geometry_and_default_hessian() {
        let q0 = presets::load("mix6").unwrap();
        let model = MixtureScore::new(q0.clone());
        let x = vec![0.3, -0.2, 0.5, 0.1, -0.4, 0.2];
        let loc = model.at(&x, -0.5).unwrap();
        let qt = q0.marginal(-0.5).unwrap();
        let g = qt.geometry(&x).unwrap();
        // Same code path underneath: agreement to round-off of the marginal construction.
        for i in 0..6 {
            assert!((loc.score()[i] - g.score[i]).abs() < 1e-12);
        }
        // The default (hvp-based) Hessian and diagonal equal the dense override.
        struct ViaHvp<'a>(&'a MixtureLocal);
        impl LocalScore for ViaHvp<'_> {
            fn score(&self) -> &[f64] {
                self.0.score()
            }
            fn hvp(&self, v: &[f64], out: &mut [f64]) {
                self.0.hvp(v, out)
            }
        }
        let h1 = ViaHvp(&loc).hessian();
        let h2 = loc.hessian();
        assert!((h1 - &h2).abs().max() < 1e-12);
        let d1 = ViaHvp(&loc).hessian_diag();
        for i in 0..6 {
            assert!((d1[i] - h2[(i, i)]).abs() < 1e-12);
        }
    }

    #[test]
    fn counted_counts_every_call() {
        let model = Counted::new(MixtureScore::new(presets::load("aniso2").unwrap()));
        let loc = model.at(&[0.1, 0.2], -1.0).unwrap();
        let mut out = [0.0; 2];
        for _ in 0..3 {
            loc.hvp(&[1.0, 0.0], &mut out);
        }
        let _ = loc.hessian_diag();
        assert_eq!(
            model.counts(),
            CallCounts {
                score: 1,
                hvp: 3,
                oracle: 1
            }
        );
        assert!(model.at(&[f64::NAN, 0.0], -1.0).is_err());
        assert!(model.at(&[0.0], -1.0).is_err());
    }
}
