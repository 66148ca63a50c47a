//! Model chains for the samplers: a mean source (the exact mixture score or a learned score)
//! combined with a covariance source (the mean model's own local information, the exact
//! mixture as an oracle, or a covariance head), as one [`TensorScoreModel`].
//!
//! The tensor samplers take the `diag` family's variance from [`TensorLocal::cov_diag`]`(a^2, b)`;
//! a chain whose covariance source is a head answers it with the head's covariance for that
//! step, so `SamplerFamily::Diag` over a [`Chain`] samples the learned chain, for DDPM steps
//! and for DDIM's clean-data posterior (`a^2 = abar_t`) alike. The step `(s, t)` is recovered
//! from `ln abar_t` (given to [`TensorScoreModel::at`]) and `a^2` (`ln abar_s = ln abar_t - ln a^2`).

use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{Device, Tensor};

use super::conditioning::RowTimes;
use super::heads::{Head, HeadKind};
use super::score_net::{to_tensor_error, ScoreNet};
use super::LearnedError;
use crate::kernel::model::{h_bounds, iddpm_h};
use crate::process::schedule::{Grid, Step};
use crate::tensor::host_flat;
use crate::tensor::{CovOperator, TensorError, TensorLocal, TensorMixtureScore, TensorScoreModel};

/// Where a chain's mean comes from.
#[derive(Clone, Copy, Debug)]
pub enum MeanSource<'a> {
    /// The exact mixture score.
    Exact(&'a TensorMixtureScore),
    /// A learned score.
    Learned(&'a ScoreNet),
}

/// Where a chain's covariance comes from.
#[derive(Clone, Copy, Debug)]
pub enum CovSource<'a> {
    /// The mean model's own local information (`H v`, `diag H` where it has one): the fixed
    /// families, `hutchinson-<M>`, and the exact `diag` / `full` when the mean is exact.
    Mean,
    /// The exact mixture as an oracle (`diag` and `full` with a learned mean).
    Exact(&'a TensorMixtureScore),
    /// A covariance head, its `h` clipped to [`h_bounds`] for the data range `range`; `grid` is
    /// the DDPM run's grid (for `iddpm`'s clipped last step; `None` for DDIM, where `iddpm` is
    /// undefined).
    Head {
        /// The head.
        head: &'a Head,
        /// The data range of the clip.
        range: Option<(f64, f64)>,
        /// The DDPM grid (see above).
        grid: Option<&'a Grid>,
    },
}

/// A model chain (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Chain<'a> {
    /// The mean source.
    pub mean: MeanSource<'a>,
    /// The covariance source.
    pub cov: CovSource<'a>,
    /// Where the chain counts its network passes (`None`: not counted).
    pub passes: Option<&'a PassCount>,
}

/// The network passes of a chain, counted as they run. Each count is of calls on the whole
/// batch, so with all samples in one batch it is the number of passes *per sample*.
#[derive(Debug, Default)]
pub struct PassCount {
    /// Forward passes of the learned score (one per step; none with the exact score).
    pub score: AtomicUsize,
    /// Products with the covariance of the learned score, `C v = (b^2 H v + b v) / a^2`: one
    /// reverse pass (`J^T v`) through the score's graph each (Lanczos: one per iteration;
    /// Hutchinson: one per probe).
    pub products: AtomicUsize,
    /// Forward passes of a covariance head.
    pub head: AtomicUsize,
}

/// A snapshot of [`PassCount`]: `(score, products, head)`.
pub type Passes = (usize, usize, usize);

impl PassCount {
    /// The counts now.
    #[must_use]
    pub fn snapshot(&self) -> Passes {
        (
            self.score.load(Ordering::Relaxed),
            self.products.load(Ordering::Relaxed),
            self.head.load(Ordering::Relaxed),
        )
    }

    fn add(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The head's values at one batch.
struct HeadAt<'a> {
    head: &'a Head,
    out: Vec<f64>,
    score: Vec<f64>,
    ln_abar: f64,
    range: Option<(f64, f64)>,
    grid: Option<&'a Grid>,
    shape: (usize, usize),
    device: Device,
}

impl HeadAt<'_> {
    fn to_tensor(&self, v: Vec<f64>) -> Result<Tensor, TensorError> {
        let f: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
        Ok(Tensor::from_vec(f, self.shape, &self.device)?)
    }

    fn clip(&self, h: f64) -> f64 {
        let (lo, hi) = h_bounds(self.ln_abar, self.range);
        h.max(lo).min(hi)
    }

    /// The clipped `h` of the step with geometry `(a^2, b)`.
    fn h(&self, a2: f64, b: f64) -> Result<Vec<f64>, TensorError> {
        if self.head.kind() != HeadKind::Iddpm {
            let h = self
                .head
                .h_values(&self.out, self.ln_abar, Some(&self.score))
                .map_err(to_tensor_error)?;
            return Ok(h.into_iter().map(|v| self.clip(v)).collect());
        }
        let ln_s = self.ln_abar - a2.ln();
        let ln_s = if ln_s.abs() < 1e-12 { 0.0 } else { ln_s };
        let step = Step {
            b,
            a2,
            ..Step::from_ln_abar(ln_s, self.ln_abar)
        };
        let clip = if ln_s == 0.0 {
            let grid = self.grid.ok_or_else(|| {
                TensorError::Unsupported(
                    "iddpm has no DDIM kernel (its beta~ is 0 for a step to the data)".into(),
                )
            })?;
            // The DDPM step to the data: improved DDPM's clip, the next step's beta~.
            let i = grid
                .ln_abar
                .iter()
                .position(|l| l.to_bits() == self.ln_abar.to_bits())
                .filter(|&i| i + 1 < grid.ln_abar.len())
                .ok_or_else(|| {
                    TensorError::Unsupported(
                        "iddpm's last step needs T >= 2 (clipped beta~)".into(),
                    )
                })?;
            let next = grid.step(i + 1);
            Some(next.b * grid.one_minus_abar(i) / grid.one_minus_abar(i + 1))
        } else {
            None
        };
        self.out
            .iter()
            .map(|&v| {
                iddpm_h(v, &step, clip)
                    .map(|h| self.clip(h))
                    .ok_or_else(|| TensorError::Unsupported("iddpm: undefined step".into()))
            })
            .collect()
    }
}

/// [`TensorLocal`] of a [`Chain`].
pub struct ChainLocal<'a> {
    mean: Box<dyn TensorLocal + 'a>,
    cov: Option<Box<dyn TensorLocal + 'a>>,
    head: Option<HeadAt<'a>>,
    /// The counter of the learned score's products (`None`: not counted, or the covariance
    /// is not the learned score's).
    products: Option<&'a PassCount>,
}

impl TensorLocal for ChainLocal<'_> {
    fn x(&self) -> &Tensor {
        self.mean.x()
    }
    fn score(&self) -> &Tensor {
        self.mean.score()
    }
    fn x_plus_score(&self) -> Result<Tensor, TensorError> {
        self.mean.x_plus_score()
    }
    fn hvp(&self, v: &Tensor) -> Result<Tensor, TensorError> {
        if let Some(c) = self.products {
            PassCount::add(&c.products);
        }
        self.cov.as_deref().unwrap_or(self.mean.as_ref()).hvp(v)
    }
    fn hessian_diag(&self) -> Result<Tensor, TensorError> {
        match &self.head {
            Some(h) if h.head.kind() != HeadKind::Iddpm => {
                let v = h
                    .head
                    .h_values(&h.out, h.ln_abar, Some(&h.score))
                    .map_err(to_tensor_error)?;
                h.to_tensor(v.into_iter().map(|x| h.clip(x)).collect())
            }
            Some(_) => Err(TensorError::Unsupported(
                "iddpm's covariance depends on the step (use cov_diag)".into(),
            )),
            None => self
                .cov
                .as_deref()
                .unwrap_or(self.mean.as_ref())
                .hessian_diag(),
        }
    }
    fn cov_operator(&self, a2: f64, b: f64) -> Result<CovOperator<'_>, TensorError> {
        let op = self
            .cov
            .as_deref()
            .unwrap_or(self.mean.as_ref())
            .cov_operator(a2, b)?;
        Ok(match self.products {
            Some(c) => Box::new(move |v: &Tensor| {
                PassCount::add(&c.products);
                op(v)
            }),
            None => op,
        })
    }
    fn cov_diag(&self, a2: f64, b: f64) -> Result<Tensor, TensorError> {
        match &self.head {
            Some(h) => {
                let v = h.h(a2, b)?;
                h.to_tensor(v.into_iter().map(|x| (b * b * x + b) / a2).collect())
            }
            None => self
                .cov
                .as_deref()
                .unwrap_or(self.mean.as_ref())
                .cov_diag(a2, b),
        }
    }
}

impl MeanSource<'_> {
    fn dim(&self) -> usize {
        match self {
            Self::Exact(m) => m.dim(),
            Self::Learned(n) => n.dim(),
        }
    }
    fn device(&self) -> &Device {
        match self {
            Self::Exact(m) => m.device(),
            Self::Learned(n) => n.device(),
        }
    }
}

impl TensorScoreModel for Chain<'_> {
    type Local<'b>
        = ChainLocal<'b>
    where
        Self: 'b;

    fn dim(&self) -> usize {
        self.mean.dim()
    }

    fn device(&self) -> &Device {
        self.mean.device()
    }

    /// `x` is detached first: a sampler's state carries the op graph of the step that made it
    /// (the learned score is evaluated on a variable), and without the cut every step's graph
    /// would hang on the next (a chain of `T` graphs, whose recursive drop overflowed the stack
    /// at D = 64 with `full`'s Lanczos).
    fn at(&self, x: &Tensor, ln_abar: f64) -> Result<ChainLocal<'_>, TensorError> {
        let x = &x.detach();
        let mean: Box<dyn TensorLocal + '_> = match self.mean {
            MeanSource::Exact(m) => Box::new(m.at(x, ln_abar)?),
            MeanSource::Learned(n) => Box::new(n.at(x, ln_abar)?),
        };
        let learned = matches!(self.mean, MeanSource::Learned(_));
        if let (Some(c), true) = (self.passes, learned) {
            PassCount::add(&c.score);
        }
        let mut local = ChainLocal {
            mean,
            cov: None,
            head: None,
            products: self
                .passes
                .filter(|_| learned && matches!(self.cov, CovSource::Mean)),
        };
        match self.cov {
            CovSource::Mean => {}
            CovSource::Exact(m) => local.cov = Some(Box::new(m.at(x, ln_abar)?)),
            CovSource::Head { head, range, grid } => {
                if let Some(c) = self.passes {
                    PassCount::add(&c.head);
                }
                let (n, d) = x.dims2()?;
                let run = || -> Result<(Vec<f64>, Vec<f64>), LearnedError> {
                    let out = host_flat(&head.output(x, &RowTimes::same(ln_abar, n))?)?;
                    let score = host_flat(local.mean.score())?;
                    Ok((out, score))
                };
                let (out, score) = run().map_err(to_tensor_error)?;
                local.head = Some(HeadAt {
                    head,
                    out,
                    score,
                    ln_abar,
                    range,
                    grid,
                    shape: (n, d),
                    device: x.device().clone(),
                });
            }
        }
        Ok(local)
    }
}
