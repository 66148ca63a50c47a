//! Checkpoints: safetensors files holding a network's parameters (`w{l}`, `b{l}`) and its
//! configuration as JSON bytes (`meta_json`, u8), so a file is self-describing: what model it
//! is, for which data, its shape, its Gaussian prior and how it was trained.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::conditioning::GaussianPrior;
use super::heads::{Head, HeadKind};
use super::mlp::{MlpShape, TimeMlp};
use super::score_net::ScoreNet;
use super::train::{TrainInfo, TrainParams};
use super::LearnedError;

/// What a checkpoint holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelKind {
    /// A score network.
    Score,
    /// A covariance head.
    Head(HeadKind),
}

/// The configuration stored in a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The model kind.
    pub kind: ModelKind,
    /// The data set it was trained on (preset name).
    pub data: String,
    /// For heads: the score it was trained against (`exact` or `learned`).
    pub score: Option<String>,
    /// The MLP shape.
    pub shape: MlpShape,
    /// The Gaussian prior.
    pub prior: GaussianPrior,
    /// The training settings.
    pub train: TrainParams,
    /// What training measured.
    pub info: TrainInfo,
    /// The covlab version that wrote it.
    pub covlab_version: String,
}

fn ck_err(path: &Path, reason: impl Into<String>) -> LearnedError {
    LearnedError::Checkpoint {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn save(path: &Path, mlp: &TimeMlp, meta: &CheckpointMeta) -> Result<(), LearnedError> {
    let mut map: HashMap<String, Tensor> = HashMap::new();
    for (i, p) in mlp.params().iter().enumerate() {
        let name = if i % 2 == 0 {
            format!("w{}", i / 2)
        } else {
            format!("b{}", i / 2)
        };
        map.insert(name, p.to_dtype(DType::F32)?.to_device(&Device::Cpu)?);
    }
    let json = serde_json::to_vec(meta).map_err(|e| ck_err(path, e.to_string()))?;
    let n = json.len();
    map.insert("meta_json".into(), Tensor::from_vec(json, n, &Device::Cpu)?);
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| ck_err(path, e.to_string()))?;
        }
    }
    candle_core::safetensors::save(&map, path).map_err(|e| ck_err(path, e.to_string()))
}

fn load(path: &Path, device: &Device) -> Result<(TimeMlp, CheckpointMeta), LearnedError> {
    let bytes = std::fs::read(path).map_err(|e| ck_err(path, format!("cannot read ({e})")))?;
    let map = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| ck_err(path, format!("not a valid safetensors file ({e})")))?;
    let meta_t = map
        .get("meta_json")
        .ok_or_else(|| ck_err(path, "no `meta_json` entry (not a covlab checkpoint)"))?;
    let json: Vec<u8> = meta_t
        .to_dtype(DType::U8)?
        .to_vec1::<u8>()
        .map_err(|e| ck_err(path, e.to_string()))?;
    let meta: CheckpointMeta = serde_json::from_slice(&json)
        .map_err(|e| ck_err(path, format!("unreadable configuration ({e})")))?;
    let layers = meta.shape.layer_dims().len();
    let mut params = Vec::with_capacity(2 * layers);
    for l in 0..layers {
        for p in ["w", "b"] {
            let t = map
                .get(&format!("{p}{l}"))
                .ok_or_else(|| ck_err(path, format!("missing tensor `{p}{l}`")))?;
            params.push(t.to_dtype(DType::F32)?);
        }
    }
    let mlp = TimeMlp::from_params(meta.shape, params, device)
        .map_err(|e| ck_err(path, e.to_string()))?;
    Ok((mlp, meta))
}

/// Saves a score network.
///
/// # Errors
/// [`LearnedError::Checkpoint`] on I/O; candle errors.
pub fn save_score(path: &Path, net: &ScoreNet, meta: &CheckpointMeta) -> Result<(), LearnedError> {
    save(path, net.mlp(), meta)
}

/// Saves a covariance head.
///
/// # Errors
/// [`LearnedError::Checkpoint`] on I/O; candle errors.
pub fn save_head(path: &Path, head: &Head, meta: &CheckpointMeta) -> Result<(), LearnedError> {
    save(path, head.mlp(), meta)
}

/// Loads a score network (frozen: plain-tensor parameters).
///
/// # Errors
/// [`LearnedError::Checkpoint`] for a missing, corrupt or wrong-kind file.
pub fn load_score(
    path: &Path,
    device: &Device,
) -> Result<(ScoreNet, CheckpointMeta), LearnedError> {
    let (mlp, meta) = load(path, device)?;
    if meta.kind != ModelKind::Score {
        return Err(ck_err(
            path,
            format!("holds {:?}, not a score network", meta.kind),
        ));
    }
    check_prior(path, &meta)?;
    Ok((ScoreNet::from_parts(mlp, meta.prior.clone(), device), meta))
}

/// Loads a covariance head (frozen).
///
/// # Errors
/// [`LearnedError::Checkpoint`] for a missing, corrupt or wrong-kind file.
pub fn load_head(path: &Path, device: &Device) -> Result<(Head, CheckpointMeta), LearnedError> {
    let (mlp, meta) = load(path, device)?;
    let ModelKind::Head(kind) = meta.kind else {
        return Err(ck_err(path, "holds a score network, not a covariance head"));
    };
    check_prior(path, &meta)?;
    Ok((
        Head::from_parts(kind, mlp, meta.prior.clone(), device),
        meta,
    ))
}

fn check_prior(path: &Path, meta: &CheckpointMeta) -> Result<(), LearnedError> {
    if meta.prior.mean.len() != meta.shape.input
        || !(meta.prior.var.is_finite() && meta.prior.var > 0.0)
    {
        return Err(ck_err(path, "inconsistent prior (dimension or variance)"));
    }
    Ok(())
}
