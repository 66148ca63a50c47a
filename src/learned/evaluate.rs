//! The exact path KL of model chains built from learned networks: the candle side of
//! [`crate::kl::chain`], which holds the `f64` evaluator, the methods and the report rows
//! (re-exported here). Here the networks run at the quadrature nodes:
//! ```text
//! s_theta(x_i, t), J_theta(x_i, t) (forward mode, D tangents per row), o_head(x_i, t)
//! ```
//! in batches of [`EvalParams::batch`] rows spanning several times (one time per row, `f32`
//! inputs), copied to host `f64` buffers for [`crate::kl::chain::Networks`].

use candle_core::{Device, Tensor};

use super::conditioning::RowTimes;
use super::heads::{Head, HeadKind};
use super::score_net::ScoreNet;
use super::LearnedError;
use crate::data::mixture::Mixture;
use crate::kl::chain::{ChainError, NetOutputs, Networks};
use crate::tensor::host_flat;

pub use crate::kl::chain::{
    CovErrorRow, EvalParams, EvalReport, EvalRow, EvalRule, JAsymmetryRow, Method,
};

/// The learned models of an evaluation.
#[derive(Clone, Debug, Default)]
pub struct EvalModels<'a> {
    /// The learned score (`None`: the exact score is the mean).
    pub score: Option<&'a ScoreNet>,
    /// The covariance heads (one per kind at most).
    pub heads: Vec<&'a Head>,
}

/// The networks of [`EvalModels`] on a device, batched by rows.
struct CandleNetworks<'m, 'a> {
    models: &'m EvalModels<'a>,
    batch: usize,
    device: &'m Device,
}

impl CandleNetworks<'_, '_> {
    fn run(
        &self,
        xs: &[f64],
        d: usize,
        times: &[f64],
        jacobian: bool,
    ) -> Result<NetOutputs, LearnedError> {
        let models = self.models;
        let n = times.len();
        let mut st = Vec::new();
        let mut jac = Vec::new();
        let mut heads: Vec<Vec<f64>> = vec![Vec::new(); models.heads.len()];
        // The forward-mode Jacobian carries D tangents per row: keep D x rows bounded.
        let batch = if jacobian && models.score.is_some() {
            (self.batch / d.max(1)).max(1)
        } else {
            self.batch.max(1)
        };
        for start in (0..n).step_by(batch) {
            let m = batch.min(n - start);
            let xt = Tensor::from_vec(
                xs[start * d..(start + m) * d]
                    .iter()
                    .map(|&v| v as f32)
                    .collect::<Vec<f32>>(),
                (m, d),
                self.device,
            )?;
            let rt = RowTimes {
                ln_abar: times[start..start + m].to_vec(),
            };
            if let Some(net) = models.score {
                if jacobian {
                    let (sc, j) = net.score_and_jacobian(&xt, &rt)?;
                    st.extend(host_flat(&sc)?);
                    jac.extend(j);
                } else {
                    st.extend(host_flat(&net.score(&xt, &rt)?)?);
                }
            }
            for (out, head) in heads.iter_mut().zip(&models.heads) {
                out.extend(host_flat(&head.output(&xt, &rt)?)?);
            }
        }
        Ok(NetOutputs {
            score: st,
            jacobian: jac,
            heads,
        })
    }
}

impl Networks for CandleNetworks<'_, '_> {
    fn learned(&self) -> bool {
        self.models.score.is_some()
    }

    fn head_kinds(&self) -> Vec<HeadKind> {
        self.models.heads.iter().map(|h| h.kind()).collect()
    }

    fn evaluate(
        &self,
        x: &[f64],
        d: usize,
        ln_abar: &[f64],
        jacobian: bool,
    ) -> Result<NetOutputs, ChainError> {
        self.run(x, d, ln_abar, jacobian)
            .map_err(|e| ChainError::Network(Box::new(e)))
    }
}

impl From<ChainError> for LearnedError {
    fn from(e: ChainError) -> Self {
        match e {
            ChainError::InvalidParameter { field, reason } => {
                LearnedError::InvalidParameter { field, reason }
            }
            ChainError::UnknownMethod(m) => LearnedError::UnknownMethod(m),
            ChainError::Mixture(e) => LearnedError::Mixture(e),
            ChainError::PathKl(e) => LearnedError::PathKl(e),
            ChainError::Schedule(e) => LearnedError::Schedule(e),
            ChainError::Network(e) => match e.downcast::<LearnedError>() {
                Ok(e) => *e,
                Err(e) => LearnedError::Shape(e.to_string()),
            },
        }
    }
}

/// Computes the path-KL rows, the covariance errors and (for a learned score) the Jacobian
/// asymmetry of the model chains `params.methods` with the mean of `models.score` (exact if
/// `None`), on the data `q0`.
///
/// Two passes over the grid times: the *reference* pass computes, without any network, the
/// covariance part of each method's network-free reference (the method itself for the fixed
/// and exact families, `diag` for the diagonal network methods, `full` for the Jacobian ones)
/// on the lattice (D <= 2; QMC beyond); the *network* pass computes, for the methods with a
/// network, the mean part and the difference of covariance parts to the reference on
/// [`EvalParams::rule`] (randomised QMC by default: a control variate, so the QMC error is that
/// of a small difference). Methods without a network are exact to the lattice's accuracy.
///
/// # Arguments
/// * `q0` - the data mixture.
/// * `models` - the learned score and heads the methods need.
/// * `params` - schedule, T values, methods, rules.
/// * `device` - where the networks run.
/// * `progress` - called with (done, total) over the grid times of both passes.
///
/// # Errors
pub fn evaluate_chains(
    q0: &Mixture,
    models: &EvalModels<'_>,
    params: &EvalParams,
    device: &Device,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<EvalReport, LearnedError> {
    let nets = CandleNetworks {
        models,
        batch: params.batch,
        device,
    };
    Ok(crate::kl::chain::evaluate_chains(
        q0, &nets, params, progress,
    )?)
}
