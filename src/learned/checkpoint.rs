//! Checkpoints: safetensors files holding a network's parameters (`w{l}`, `b{l}`) and its
//! configuration as JSON bytes (`meta_json`, u8), so a file is self-describing: what model it
//! is, for which data, its shape, its Gaussian prior and how it was trained.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::backbone::Backbone;
use super::conditioning::GaussianPrior;
use super::heads::{Head, HeadKind};
use super::mlp::{MlpShape, TimeMlp};
use super::score_net::ScoreNet;
use super::train::{TrainInfo, TrainParams};
use super::unet::{TimeUnet, UnetShape};
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
    /// The MLP shape; for a U-Net, `input` = `output` = `D` (what [`check_meta`] reads),
    /// `hidden` its base channels, `layers` its resolutions.
    pub shape: MlpShape,
    /// The U-Net shape, for a U-Net checkpoint (absent for an MLP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unet: Option<UnetShape>,
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

fn save(path: &Path, net: &Backbone, meta: &CheckpointMeta) -> Result<(), LearnedError> {
    let mut map: HashMap<String, Tensor> = HashMap::new();
    for (name, p) in net.named_params() {
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

fn read_map(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>, LearnedError> {
    let bytes = std::fs::read(path).map_err(|e| ck_err(path, format!("cannot read ({e})")))?;
    candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| ck_err(path, format!("not a valid safetensors file ({e})")))
}

fn meta_of(path: &Path, map: &HashMap<String, Tensor>) -> Result<CheckpointMeta, LearnedError> {
    let meta_t = map
        .get("meta_json")
        .ok_or_else(|| ck_err(path, "no `meta_json` entry (not a covlab checkpoint)"))?;
    let json: Vec<u8> = meta_t
        .to_dtype(DType::U8)?
        .to_vec1::<u8>()
        .map_err(|e| ck_err(path, e.to_string()))?;
    serde_json::from_slice(&json)
        .map_err(|e| ck_err(path, format!("unreadable configuration ({e})")))
}

/// The configuration a checkpoint records (its kind, data set, score, shape ...), without
/// building the network.
///
/// # Errors
/// [`LearnedError::Checkpoint`] for a missing or corrupt file.
pub fn read_meta(path: &Path) -> Result<CheckpointMeta, LearnedError> {
    meta_of(path, &read_map(path, &Device::Cpu)?)
}

fn load(path: &Path, device: &Device) -> Result<(Backbone, CheckpointMeta), LearnedError> {
    let mut map = read_map(path, device)?;
    let meta = meta_of(path, &map)?;
    if let Some(shape) = &meta.unet {
        let mut params = BTreeMap::new();
        for spec in shape.param_specs(1.0) {
            let t = map
                .remove(&spec.name)
                .ok_or_else(|| ck_err(path, format!("missing tensor `{}`", spec.name)))?;
            params.insert(spec.name, t.to_dtype(DType::F32)?);
        }
        check_finite(path, params.iter().map(|(k, v)| (k.clone(), v)))?;
        let net = TimeUnet::from_params(shape.clone(), params, device)
            .map_err(|e| ck_err(path, e.to_string()))?;
        return Ok((Backbone::Unet(net), meta));
    }
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
    check_finite(
        path,
        params.iter().enumerate().map(|(i, p)| {
            let name = if i % 2 == 0 {
                format!("w{}", i / 2)
            } else {
                format!("b{}", i / 2)
            };
            (name, p)
        }),
    )?;
    let mlp = TimeMlp::from_params(meta.shape, params, device)
        .map_err(|e| ck_err(path, e.to_string()))?;
    Ok((Backbone::Mlp(mlp), meta))
}

/// Every weight and bias must be finite: a NaN or infinite parameter would make every output
/// NaN (a silent `inf` path KL), so such a file is refused on load.
fn check_finite<'a>(
    path: &Path,
    params: impl Iterator<Item = (String, &'a Tensor)>,
) -> Result<(), LearnedError> {
    for (name, p) in params {
        let v: Vec<f32> = p.flatten_all()?.to_vec1::<f32>()?;
        if let Some((j, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(ck_err(
                path,
                format!("tensor `{name}` holds a non-finite value ({x} at flat index {j}): corrupt or diverged training"),
            ));
        }
    }
    Ok(())
}

/// What a caller needs a checkpoint to be, checked against the configuration it records.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The data set (preset name) the model must have been trained on.
    pub data: &'a str,
    /// The data dimension `D` (the network must map `D -> D`).
    pub dim: usize,
    /// The score the evaluation serves (`exact` or `learned`): a head trained with a score
    /// must have been trained against it (`sn`'s objective has no score and records none).
    pub score: &'a str,
}

/// `the ocm head trained on grid9 against the exact score`, `a score network trained on mog40`.
fn describe(meta: &CheckpointMeta) -> String {
    let what = match meta.kind {
        ModelKind::Score => "a score network".to_string(),
        ModelKind::Head(k) => format!("the {} head", k.name()),
    };
    match &meta.score {
        Some(s) => format!("{what} trained on {} against the {s} score", meta.data),
        None => format!("{what} trained on {}", meta.data),
    }
}

/// Checks a checkpoint's recorded configuration against what the caller needs: its kind
/// (`kind`), data set and dimension and, for a head trained with a score, that score.
///
/// # Errors
/// [`LearnedError::Checkpoint`] saying what the file holds and what was expected.
pub fn check_meta(
    path: &Path,
    meta: &CheckpointMeta,
    kind: ModelKind,
    expected: &Expected<'_>,
) -> Result<(), LearnedError> {
    let want_score = match kind {
        ModelKind::Score => None,
        ModelKind::Head(k) => k.trained_with_score().then_some(expected.score),
    };
    let wanted = describe(&CheckpointMeta {
        kind,
        data: expected.data.to_string(),
        score: want_score.map(String::from),
        ..meta.clone()
    });
    let score_ok = match kind {
        ModelKind::Score => true,
        ModelKind::Head(_) => meta.score.as_deref() == want_score,
    };
    if meta.kind != kind || meta.data != expected.data || !score_ok {
        return Err(ck_err(
            path,
            format!("holds {}, expected {wanted}", describe(meta)),
        ));
    }
    if meta.shape.input != expected.dim || meta.shape.output != expected.dim {
        return Err(ck_err(
            path,
            format!(
                "network maps {} -> {}, the data have D = {}",
                meta.shape.input, meta.shape.output, expected.dim
            ),
        ));
    }
    Ok(())
}

/// Loads a score network and checks it was trained on `expected.data` (as [`load_score`]
/// and [`check_meta`]).
///
/// # Errors
/// As [`load_score`] and [`check_meta`].
pub fn load_score_for(
    path: &Path,
    device: &Device,
    expected: &Expected<'_>,
) -> Result<(ScoreNet, CheckpointMeta), LearnedError> {
    let meta = read_meta(path)?;
    check_meta(path, &meta, ModelKind::Score, expected)?;
    load_score(path, device)
}

/// Loads the `kind` head and checks it was trained on `expected.data` against
/// `expected.score` (as [`load_head`] and [`check_meta`]).
///
/// # Errors
/// As [`load_head`] and [`check_meta`].
pub fn load_head_for(
    path: &Path,
    kind: HeadKind,
    device: &Device,
    expected: &Expected<'_>,
) -> Result<(Head, CheckpointMeta), LearnedError> {
    let meta = read_meta(path)?;
    check_meta(path, &meta, ModelKind::Head(kind), expected)?;
    load_head(path, device)
}

/// Saves a score network.
///
/// # Errors
/// [`LearnedError::Checkpoint`] on I/O; candle errors.
pub fn save_score(path: &Path, net: &ScoreNet, meta: &CheckpointMeta) -> Result<(), LearnedError> {
    save(path, net.backbone(), meta)
}

/// Saves a covariance head.
///
/// # Errors
/// [`LearnedError::Checkpoint`] on I/O; candle errors.
pub fn save_head(path: &Path, head: &Head, meta: &CheckpointMeta) -> Result<(), LearnedError> {
    save(path, head.backbone(), meta)
}

/// Loads a score network (frozen: plain-tensor parameters).
///
/// # Errors
/// [`LearnedError::Checkpoint`] for a missing, corrupt (non-finite parameters included) or
/// wrong-kind file.
pub fn load_score(
    path: &Path,
    device: &Device,
) -> Result<(ScoreNet, CheckpointMeta), LearnedError> {
    let (net, meta) = load(path, device)?;
    if meta.kind != ModelKind::Score {
        return Err(ck_err(
            path,
            format!("holds {:?}, not a score network", meta.kind),
        ));
    }
    check_prior(path, &meta)?;
    Ok((
        ScoreNet::from_backbone(net, meta.prior.clone(), device),
        meta,
    ))
}

/// Loads a covariance head (frozen).
///
/// # Errors
/// [`LearnedError::Checkpoint`] for a missing, corrupt (non-finite parameters included) or
/// wrong-kind file.
pub fn load_head(path: &Path, device: &Device) -> Result<(Head, CheckpointMeta), LearnedError> {
    let (net, meta) = load(path, device)?;
    let ModelKind::Head(kind) = meta.kind else {
        return Err(ck_err(path, "holds a score network, not a covariance head"));
    };
    check_prior(path, &meta)?;
    Ok((
        Head::from_backbone(kind, net, meta.prior.clone(), device),
        meta,
    ))
}

fn check_prior(path: &Path, meta: &CheckpointMeta) -> Result<(), LearnedError> {
    if let Some(u) = &meta.unet {
        if u.dim() != meta.shape.input || meta.shape.output != meta.shape.input {
            return Err(ck_err(
                path,
                format!(
                    "a U-Net on {}x{}x{} images (D = {}) recorded as mapping {} -> {}",
                    u.channels,
                    u.height,
                    u.width,
                    u.dim(),
                    meta.shape.input,
                    meta.shape.output
                ),
            ));
        }
    }
    if meta.prior.mean.len() != meta.shape.input
        || !meta.prior.mean.iter().all(|m| m.is_finite())
        || !(meta.prior.var.is_finite() && meta.prior.var > 0.0)
    {
        return Err(ck_err(path, "inconsistent prior (dimension or variance)"));
    }
    Ok(())
}
