//! Study kind `image-presets`: the image-sized low-rank mixtures (`digits8`, `digits32`,
//! `synth3x32`), their structure and grids of exact draws (the `image-presets` binary is a
//! CLI over this).
//!
//! Cells: one per preset; each draws from `seed` alone.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::data::images::{self, IMAGE_PRESETS};
use crate::study::{
    ensure, from_cell, to_cell, Assembled, Figure, FigureName, Observer, ParamError, RunInfo,
    StudyError, StudyKind,
};

/// Parameters of an `image-presets` study (keys as the binary's flags).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ImagePresetsStudy {
    /// Presets: digits8, digits32, synth3x32.
    pub presets: Vec<String>,
    /// Draws per grid (8 per row).
    pub samples: usize,
    /// Seed of the draws.
    pub seed: u64,
}

impl Default for ImagePresetsStudy {
    fn default() -> Self {
        Self {
            presets: IMAGE_PRESETS.map(String::from).to_vec(),
            samples: 64,
            seed: 0,
        }
    }
}

/// One preset's structure and draws.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cell {
    name: String,
    dim: usize,
    components: usize,
    ranks: Vec<usize>,
    #[serde(with = "crate::numeric::nonfinite")]
    mean_ln_q0: f64,
    shape: (usize, usize, usize),
    #[serde(with = "crate::numeric::nonfinite::vec")]
    images: Vec<f64>,
}

impl StudyKind for ImagePresetsStudy {
    fn kind(&self) -> &'static str {
        "image-presets"
    }

    fn validate(&self) -> Result<(), ParamError> {
        ensure(self.samples >= 1, "samples", ">= 1", self.samples)?;
        for p in &self.presets {
            if images::shape(p).is_none() {
                return Err(ParamError::new(
                    "presets",
                    format!("image presets (one of {IMAGE_PRESETS:?})"),
                    p,
                ));
            }
        }
        Ok(())
    }

    fn cells(&self) -> Result<Vec<String>, StudyError> {
        Ok(self.presets.clone())
    }

    fn run_cells(&self, indices: &[usize], obs: &dyn Observer) -> Result<Vec<Value>, StudyError> {
        let mut out = Vec::with_capacity(indices.len());
        for &i in indices {
            let name = &self.presets[i];
            obs.cell_started(i, name);
            let q = images::load(name)?;
            let shape = images::shape(name).ok_or_else(|| {
                ParamError::new("presets", format!("one of {IMAGE_PRESETS:?}"), name)
            })?;
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            let xs = q.sample(&mut rng, self.samples);
            let ll = xs
                .iter()
                .map(|x| q.ln_pdf(x.as_slice()))
                .collect::<Result<Vec<_>, _>>()?
                .iter()
                .sum::<f64>()
                / xs.len() as f64;
            out.push(to_cell(
                "image-presets",
                &Cell {
                    name: name.clone(),
                    dim: q.dim(),
                    components: q.components().len(),
                    ranks: q.components().iter().map(|c| c.factor().ncols()).collect(),
                    mean_ln_q0: ll,
                    shape,
                    images: xs.iter().flat_map(|x| x.iter().copied()).collect(),
                },
            )?);
            obs.cell_done(i, name);
        }
        Ok(out)
    }

    fn assemble(&self, cells: &[Value], _info: &RunInfo) -> Result<Assembled, StudyError> {
        let cells: Vec<Cell> = cells
            .iter()
            .map(|c| from_cell("image-presets", c))
            .collect::<Result<_, _>>()?;
        let mut table = String::new();
        let mut figures = Vec::new();
        let mut presets = Vec::new();
        for c in &cells {
            let n = c.images.len() / c.dim.max(1);
            table += &format!(
                "{}: D = {}, K = {}, ranks {:?}, mean ln q0 of {} exact draws = {:.3}\n",
                c.name, c.dim, c.components, c.ranks, n, c.mean_ln_q0
            );
            presets.push(json!({
                "name": c.name, "D": c.dim, "K": c.components, "ranks": c.ranks,
                "shape": [c.shape.0, c.shape.1, c.shape.2],
                "draws": n, "mean_ln_q0": c.mean_ln_q0,
            }));
            let images: Vec<Vec<f64>> =
                c.images.chunks(c.dim.max(1)).map(<[f64]>::to_vec).collect();
            figures.push((
                format!("_{}", c.name),
                Figure::ImageGrid {
                    images,
                    shape: c.shape,
                    cols: 8,
                    range: (-1.0, 1.0),
                    scale: if c.shape.1 <= 8 { 8 } else { 3 },
                },
            ));
        }
        let doc = json!({
            "study": "image-presets",
            "covlab_version": env!("CARGO_PKG_VERSION"),
            "seed": self.seed,
            "samples": self.samples,
            "presets": presets,
        });
        Ok(Assembled {
            doc,
            figures,
            table,
        })
    }

    fn figures(&self) -> Vec<FigureName> {
        self.presets
            .iter()
            .map(|p| FigureName::grid(format!("_{p}")))
            .collect()
    }

    fn seeds(&self) -> Vec<u64> {
        vec![self.seed]
    }
}
