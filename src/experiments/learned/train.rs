//! Study kind `learned-train`: trains the score network by denoising score matching and the
//! covariance heads (`ocm`, `sn`, `npr`, `iddpm`) against the exact and the learned score, and
//! writes their safetensors checkpoints (the `learned train` binary is a CLI over this).
//!
//! Outputs: the training log (the results JSON) and, as side outputs, the checkpoints
//! `<out>/<data>/{score,<head>-<score>,sn}.safetensors`, which every run rewrites.
//!
//! One cell: the heads trained against the learned score use the network trained in the same
//! run (or the one under `out` when `models` omits `score`), so the models are not
//! independent. Every draw comes from one seeded ChaCha8 stream per model type, so the weights
//! are reproducible on a fixed thread count ([`crate::learned::train`]).

use std::path::{Path, PathBuf};

use candle_core::Device;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{head_path_net, load_data, parse_net, prior_of, score_path_net, DataSet};
use crate::learned::checkpoint::CheckpointMeta;
use crate::learned::train::DataSampler;
use crate::learned::{
    load_score_for, save_head, save_score, train_head, train_score, Expected, Head, HeadKind,
    HeadScore, LearnedError, MlpShape, ModelKind, OcmWeight, ScoreNet, TimeMixture, TrainInfo,
    TrainParams, UnetShape,
};
use crate::study::{
    from_cell, to_cell, Assembled, FigureName, Observer, ParamError, RunInfo, StudyError, StudyKind,
};

const KIND: &str = "learned-train";

/// Parameters of a `learned-train` study (keys as the binary's `train` flags; defaults as its
/// defaults; `data` has none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LearnedTrainStudy {
    /// Data set: mog40, mog40-unit, grid9 (2-D presets) or digits8 (D = 64).
    pub data: String,
    /// Models to train: score, ocm, sn, npr, iddpm.
    pub models: Vec<String>,
    /// Scores the heads are trained against: exact, learned.
    pub scores: Vec<String>,
    /// Iterations of the score network.
    pub iterations: usize,
    /// Iterations of each head.
    pub head_iterations: usize,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate (cosine decay to 0).
    pub lr: f64,
    /// Seed (initialisation and every draw).
    pub seed: u64,
    /// Rademacher probes per row of the OCM objective (M).
    pub probes: usize,
    /// Time weight of the ocm objective: `normalized` or `paper`.
    pub ocm_weight: String,
    /// Hidden width of every network.
    pub hidden: usize,
    /// Hidden layers of every network.
    pub layers: usize,
    /// Fourier frequencies of the time input.
    pub fourier: usize,
    /// Network: `mlp`, or `unet` (image data sets; checkpoints under `<out>/<data>/unet/`).
    pub net: String,
    /// Network of the covariance heads: `mlp` or `unet` (`None`: as `net`). Their checkpoints
    /// go beside the score's, under `net`'s directory; a U-Net score with MLP heads keeps a
    /// head's training step at the cost of the score's `H v` alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_net: Option<String>,
    /// U-Net: channels of the first resolution (the others have twice as many).
    pub channels: usize,
    /// U-Net: resolutions (2 or 3 for the image presets).
    pub levels: usize,
    /// U-Net: group-norm groups (must divide `channels`).
    pub groups: usize,
    /// Checkpoint directory (files go to `<out>/<data>/`; relative: under the study root).
    pub out: PathBuf,
    /// The directory a relative `out` resolves against (the study root; empty: the working
    /// directory). Not a study-file key.
    #[serde(skip)]
    pub root: PathBuf,
}

impl Default for LearnedTrainStudy {
    fn default() -> Self {
        let t = TrainParams::default();
        Self {
            data: String::new(),
            models: "score,ocm,sn,npr,iddpm"
                .split(',')
                .map(String::from)
                .collect(),
            scores: vec!["exact".into(), "learned".into()],
            iterations: t.iterations,
            head_iterations: 8_000,
            batch: t.batch,
            lr: t.lr,
            seed: t.seed,
            probes: t.probes,
            ocm_weight: "normalized".into(),
            hidden: t.hidden,
            layers: t.layers,
            fourier: t.fourier,
            net: "mlp".into(),
            head_net: None,
            channels: 32,
            levels: 2,
            groups: 8,
            out: PathBuf::from("studies/models"),
            root: PathBuf::new(),
        }
    }
}

/// The parameters checked and resolved.
struct Plan {
    data: DataSet,
    train_score: bool,
    kinds: Vec<HeadKind>,
    scores: Vec<String>,
    base: TrainParams,
    heads: TrainParams,
}

/// One trained model, as the log records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Run {
    model: String,
    score: Option<String>,
    iterations: usize,
    wall_s: f64,
    its_per_s: f64,
    final_loss: f64,
    threads: usize,
    path: String,
}

/// The training cell: the runs in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainCell {
    runs: Vec<Run>,
}

/// A [`TrainParams`] error as a parameter error naming the study key (`iterations_key` for
/// the iteration count: the score's or the heads').
fn train_param(e: &LearnedError, iterations_key: &'static str) -> ParamError {
    let key = match e {
        LearnedError::InvalidParameter { field, .. } => match *field {
            "iterations" => iterations_key,
            "M" => "probes",
            "batch" => "batch",
            "lr" => "lr",
            "hidden" => "hidden",
            "layers" => "layers",
            "base" => "channels",
            "levels" => "levels",
            "groups" => "groups",
            _ => iterations_key,
        },
        _ => iterations_key,
    };
    ParamError::new(key, "valid training settings", e)
}

impl LearnedTrainStudy {
    fn out_dir(&self) -> PathBuf {
        self.root.join(&self.out)
    }

    /// The U-Net shape of network `net` (key `key`), `None` for an MLP.
    fn unet_shape(&self, key: &'static str, net: &str) -> Result<Option<UnetShape>, ParamError> {
        let shape = parse_net(net, &self.data).map_err(|mut e| {
            e.key = key;
            e
        })?;
        Ok(shape.map(|(c, h, w)| UnetShape {
            channels: c,
            height: h,
            width: w,
            base: self.channels,
            levels: self.levels,
            groups: self.groups,
            fourier: self.fourier,
        }))
    }

    fn plan(&self) -> Result<Plan, ParamError> {
        let data = load_data(&self.data)?;
        let mut kinds = Vec::new();
        let mut train_score = false;
        for m in &self.models {
            match m.trim() {
                "score" => train_score = true,
                other => kinds.push(HeadKind::from_name(other).ok_or_else(|| {
                    ParamError::new(
                        "models",
                        "score, ocm, sn, npr, iddpm",
                        format!("unknown model `{other}`"),
                    )
                })?),
            }
        }
        let mut scores = Vec::new();
        for s in &self.scores {
            match s.trim() {
                "exact" | "learned" => scores.push(s.trim().to_string()),
                other => {
                    return Err(ParamError::new(
                        "scores",
                        "exact, learned",
                        format!("unknown score `{other}`"),
                    ))
                }
            }
        }
        let ocm_weight = match self.ocm_weight.as_str() {
            "normalized" => OcmWeight::Normalized,
            "paper" => OcmWeight::Paper,
            other => return Err(ParamError::new("ocm-weight", "normalized or paper", other)),
        };
        let base = TrainParams {
            iterations: self.iterations,
            ocm_weight,
            batch: self.batch,
            lr: self.lr,
            seed: self.seed,
            probes: self.probes,
            hidden: self.hidden,
            layers: self.layers,
            fourier: self.fourier,
            unet: self.unet_shape("net", &self.net)?,
            ..TrainParams::default()
        };
        base.validate().map_err(|e| train_param(&e, "iterations"))?;
        let heads = TrainParams {
            iterations: self.head_iterations,
            unet: match &self.head_net {
                Some(n) => self.unet_shape("head-net", n)?,
                None => base.unet.clone(),
            },
            ..base.clone()
        };
        heads
            .validate()
            .map_err(|e| train_param(&e, "head-iterations"))?;
        Ok(Plan {
            data,
            train_score,
            kinds,
            scores,
            base,
            heads,
        })
    }

    /// The checkpoint's configuration.
    fn meta(
        p: &Plan,
        kind: ModelKind,
        score: Option<String>,
        train: &TrainParams,
        info: &TrainInfo,
    ) -> CheckpointMeta {
        let prior = prior_of(&p.data.q0);
        let (hidden, layers) = match &train.unet {
            Some(u) => (u.base, u.levels),
            None => (train.hidden, train.layers),
        };
        CheckpointMeta {
            kind,
            data: p.data.name.clone(),
            score,
            shape: MlpShape {
                input: prior.mean.len(),
                output: prior.mean.len(),
                hidden,
                layers,
                fourier: train.fourier,
            },
            unet: train.unet.clone(),
            prior,
            train: train.clone(),
            info: info.clone(),
            covlab_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Trains every model of the plan, writing each checkpoint as it is trained.
    fn train(&self, p: &Plan, obs: &dyn Observer) -> Result<TrainCell, StudyError> {
        let device = Device::Cpu;
        let prior = prior_of(&p.data.q0);
        let q0 = p.data.q0.clone();
        let sampler = move |rng: &mut ChaCha8Rng, n: usize| q0.sample(rng, n);
        let sampler: DataSampler<'_> = &sampler;
        let out = self.out_dir();
        let mut runs = Vec::new();
        // The log names each checkpoint as the parameters do (`out`, relative to the root).
        let record = |runs: &mut Vec<Run>,
                      name: &str,
                      score: Option<&str>,
                      info: &TrainInfo,
                      file: PathBuf| {
            runs.push(Run {
                model: name.into(),
                score: score.map(String::from),
                iterations: info.iterations,
                wall_s: info.wall_s,
                its_per_s: info.its_per_s,
                final_loss: info.final_loss,
                threads: info.threads,
                path: file.display().to_string(),
            });
        };
        let sp = score_path_net(&out, &p.data.name, &self.net);
        let learned: Option<ScoreNet> = if p.train_score {
            obs.phase("score DSM");
            let total = p.base.iterations;
            let (net, info) = train_score(sampler, prior.clone(), &p.base, &device, |k, _| {
                obs.inner(k, total);
            })?;
            save_score(
                &sp,
                &net,
                &Self::meta(p, ModelKind::Score, None, &p.base, &info),
            )?;
            record(
                &mut runs,
                "score",
                None,
                &info,
                score_path_net(&self.out, &p.data.name, &self.net),
            );
            Some(net)
        } else if p.scores.iter().any(|s| s == "learned")
            && p.kinds.iter().any(|k| k.trained_with_score())
        {
            Some(
                load_score_for(
                    &sp,
                    &device,
                    &Expected {
                        data: &p.data.name,
                        dim: p.data.q0.dim(),
                        score: "learned",
                    },
                )
                .map_err(|e| {
                    ParamError::new(
                        "out",
                        "a directory holding the score network (`score` is not among `models`)",
                        e,
                    )
                })?
                .0,
            )
        } else {
            None
        };
        let exact = if p.scores.iter().any(|s| s == "exact") && !p.kinds.is_empty() {
            Some(Self::exact_teacher(p, &device)?)
        } else {
            None
        };
        for &kind in &p.kinds {
            let list: Vec<&str> = if kind.trained_with_score() {
                p.scores.iter().map(String::as_str).collect()
            } else {
                vec!["exact"]
            };
            for s in list {
                let missing = |what: &str| StudyError::Case {
                    case: format!("{} ({s} score)", kind.name()),
                    reason: format!("no {what}"),
                };
                let teacher = match s {
                    "exact" => {
                        HeadScore::Exact(exact.as_ref().ok_or_else(|| missing("exact teacher"))?)
                    }
                    _ => HeadScore::Learned(
                        learned.as_ref().ok_or_else(|| missing("learned score"))?,
                    ),
                };
                obs.phase(&format!("{} ({s} score)", kind.name()));
                let total = p.heads.iterations;
                let (head, info) = train_head(
                    kind,
                    sampler,
                    prior.clone(),
                    teacher,
                    &p.heads,
                    &device,
                    |k, _| obs.inner(k, total),
                )?;
                let score_name = kind.trained_with_score().then(|| s.to_string());
                save_head(
                    &head_path_net(&out, &p.data.name, kind, s, &self.net),
                    &head,
                    &Self::meta(
                        p,
                        ModelKind::Head(kind),
                        score_name.clone(),
                        &p.heads,
                        &info,
                    ),
                )?;
                record(
                    &mut runs,
                    kind.name(),
                    score_name.as_deref(),
                    &info,
                    head_path_net(&self.out, &p.data.name, kind, s, &self.net),
                );
            }
        }
        Ok(TrainCell { runs })
    }

    /// The heads' exact-score teacher: the data's closed-form score on the device.
    fn exact_teacher(p: &Plan, device: &Device) -> Result<TimeMixture, ParamError> {
        TimeMixture::new(&p.data.q0, device).map_err(|e| {
            ParamError::new(
                "data",
                "data with diagonal components (the heads' exact-score teacher)",
                e,
            )
        })
    }

    /// Trains one head of kind `kind` against the exact score with `head-iterations`
    /// iterations and this study's settings, in memory (no checkpoint is written): the same
    /// draws, initialisation and weights as the head [`Self::train`] would save. The
    /// `learned-curve` study's step.
    ///
    /// # Errors
    /// Parameter errors of the study; training errors (a non-finite loss).
    pub(crate) fn train_exact_head(
        &self,
        kind: HeadKind,
        obs: &dyn Observer,
    ) -> Result<(Head, TrainInfo), StudyError> {
        let p = self.plan()?;
        let device = Device::Cpu;
        let q0 = p.data.q0.clone();
        let sampler = move |rng: &mut ChaCha8Rng, n: usize| q0.sample(rng, n);
        let exact = Self::exact_teacher(&p, &device)?;
        let total = p.heads.iterations;
        Ok(train_head(
            kind,
            &sampler,
            prior_of(&p.data.q0),
            HeadScore::Exact(&exact),
            &p.heads,
            &device,
            |k, _| obs.inner(k, total),
        )?)
    }
}

impl StudyKind for LearnedTrainStudy {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn validate(&self) -> Result<(), ParamError> {
        self.plan().map(|_| ())
    }

    fn cells(&self) -> Result<Vec<String>, StudyError> {
        Ok(vec![format!("train {}", self.data)])
    }

    fn run_cells(&self, indices: &[usize], obs: &dyn Observer) -> Result<Vec<Value>, StudyError> {
        let p = self.plan()?;
        let labels = self.cells()?;
        let mut out = Vec::with_capacity(indices.len());
        for &i in indices {
            obs.cell_started(i, &labels[i]);
            out.push(to_cell(KIND, &self.train(&p, obs)?)?);
            obs.cell_done(i, &labels[i]);
        }
        Ok(out)
    }

    fn assemble(&self, cells: &[Value], info: &RunInfo) -> Result<Assembled, StudyError> {
        let p = self.plan()?;
        let cell: TrainCell = match cells {
            [c] => from_cell(KIND, c)?,
            _ => {
                return Err(StudyError::Case {
                    case: KIND.into(),
                    reason: format!("one training cell expected, got {}", cells.len()),
                })
            }
        };
        let mut table = String::new();
        for r in &cell.runs {
            table += &format!(
                "{:>8} {:>8}: {} iterations in {:.1} s ({:.0} it/s), final loss {:.5} -> {}\n",
                r.model,
                r.score.as_deref().unwrap_or("-"),
                r.iterations,
                r.wall_s,
                r.its_per_s,
                r.final_loss,
                r.path
            );
        }
        let doc = json!({
            "data": p.data.name,
            "runs": cell.runs,
            "params": p.base,
            "head_iterations": self.head_iterations,
            "threads": info.threads,
            "covlab_version": env!("CARGO_PKG_VERSION"),
        });
        Ok(Assembled {
            doc,
            figures: Vec::new(),
            table,
        })
    }

    fn figures(&self) -> Vec<FigureName> {
        Vec::new()
    }

    fn seeds(&self) -> Vec<u64> {
        vec![self.seed]
    }

    fn set_root(&mut self, root: &Path) {
        self.root = root.to_path_buf();
    }
}
