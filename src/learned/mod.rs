//! Learned scores and learned reverse covariances (feature `candle`): small time-conditioned
//! MLPs trained in candle (f32, any device), judged against the exact truth of Gaussian-mixture
//! data.
//!
//! - [`mlp`]: [`TimeMlp`], the network every model here is made of (Fourier time features,
//!   SiLU, seeded host initialisation).
//! - [`conditioning`]: the schedule-free time input (the log-SNR), the per-row time
//!   quantities of a batch and the Gaussian prior every network is a residual of.
//! - [`unet`]: [`TimeUnet`], a small time-conditioned U-Net (residual blocks, group norm,
//!   two or three resolutions) for the image data sets; [`backbone`]: [`Backbone`], either
//!   network behind the same residual.
//! - [`score_net`]: [`ScoreNet`], a score `s(x, t) = -eps_hat(x, t) / sqrt(1 - abar_t)` trained
//!   by denoising score matching; a [`crate::tensor::TensorScoreModel`] whose `H v` is reverse-mode
//!   autograd (`J^T v`).
//! - [`time_mixture`]: the exact score of a mixture with diagonal components in candle ops,
//!   with one time per row (the exact-score teacher of the covariance heads).
//! - [`heads`]: the covariance heads `ocm`, `sn`, `npr`, `iddpm` and what each predicts.
//! - [`train`]: the training loops (AdamW, seeded, progress callback).
//! - [`checkpoint`]: safetensors checkpoints with their configuration embedded.
//! - [`chain`]: model chains for the samplers: a mean source with a covariance source.
//! - [`evaluate`]: the exact path KL of a model chain, split into the Gaussian part `S_full`,
//!   a mean part and a covariance part, and the covariance error against `diag C`.
//!
//! # Time conditioning
//! Networks see the log-SNR `lambda = ln abar - ln(1 - abar)` (scaled by
//! [`LAMBDA_SCALE`]), not a schedule's own time, so a model trained once serves every
//! schedule.

pub mod backbone;
pub mod chain;
pub mod checkpoint;
pub mod conditioning;
pub mod error;
pub mod evaluate;
pub mod heads;
pub mod mlp;
pub mod score_net;
pub mod time_mixture;
pub mod train;
pub mod unet;

pub use backbone::{Arch, Backbone};
pub use chain::{Chain, CovSource, MeanSource, PassCount, Passes};
pub use checkpoint::{
    check_meta, load_head, load_head_for, load_score, load_score_for, read_meta, save_head,
    save_score, Expected, ModelKind,
};
pub use conditioning::{GaussianPrior, PriorNet, RowTimes, LAMBDA_SCALE};
pub use error::LearnedError;
pub use evaluate::{
    evaluate_chains, CovErrorRow, EvalModels, EvalParams, EvalReport, EvalRow, EvalRule,
    JAsymmetryRow, Method,
};
pub use heads::{Head, HeadKind, HeadScore};
pub use mlp::{MlpShape, TimeMlp};
pub use score_net::{NetLocal, ScoreNet};
pub use time_mixture::TimeMixture;
pub use train::{train_head, train_score, OcmWeight, TrainInfo, TrainParams};
pub use unet::{TimeUnet, UnetShape};
