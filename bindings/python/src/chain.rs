//! `path_kl` (the `path-kl --json` document) and `path_kl_model` (the exact path KL of a
//! Python kernel) from Python.

use numpy::PyReadonlyArrayDyn;
use pyo3::prelude::*;
use pyo3::types::PyAnyMethods;

use covlab::experiments::path_kl::PathKlStudy;
use covlab::kl::model_chain::{
    model_path_kl, KernelModel, KernelOutput, ModelChainParams, Variance,
};
use covlab::quadrature::QmcParams;
use covlab::study::{run_all, Quiet};

use crate::{value_err, PyMixture, PySchedule};

/// A JSON value as a Python object (through the `json` module: exact for f64).
pub(crate) fn to_py(py: Python<'_>, v: &serde_json::Value) -> PyResult<PyObject> {
    let json = py.import("json")?;
    Ok(json.call_method1("loads", (v.to_string(),))?.unbind())
}

/// The `path-kl --json` document for the same arguments (see `path-kl --help`); `per_step`
/// adds the `steps` key (every step's term, `path-kl --per-step`).
#[pyfunction]
#[pyo3(signature = (data = "mog40", schedule = None, steps = vec![8, 16, 32, 64, 128, 256, 512, 1024], families = None, kernel = "ddpm", early_stop = 0.0, route = "a", rule = "auto", seed = None, per_step = false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn path_kl(
    py: Python<'_>,
    data: &str,
    schedule: Option<&Bound<'_, PyAny>>,
    steps: Vec<usize>,
    families: Option<Vec<String>>,
    kernel: &str,
    early_stop: f64,
    route: &str,
    rule: &str,
    seed: Option<u64>,
    per_step: bool,
) -> PyResult<PyObject> {
    let default = PathKlStudy::default();
    let spec = match schedule {
        Some(s) => ScheduleSpec::of(s)?,
        None => ScheduleSpec {
            text: default.schedule.clone(),
            temp: None,
        },
    };
    let study = PathKlStudy {
        data: data.into(),
        schedule: spec.text.clone(),
        families: families.unwrap_or_else(|| {
            if kernel == "ddim" {
                ["analytic", "diag", "full"].map(String::from).to_vec()
            } else {
                default.families.clone()
            }
        }),
        steps,
        kernel: kernel.into(),
        early_stop,
        route: route.into(),
        rule: rule.into(),
        seed: seed.unwrap_or(default.seed),
        per_step,
        ..default
    };
    let out = py.allow_threads(|| run_all(&study, &Quiet)).map_err(|e| {
        let s = e.to_string();
        let arg = [
            "data",
            "schedule",
            "steps",
            "families",
            "kernel",
            "early-stop",
            "route",
            "rule",
        ]
        .into_iter()
        .find(|a| s.contains(a))
        .unwrap_or("arguments");
        value_err(&arg.replace('-', "_"), s)
    })?;
    to_py(py, &out.0.doc)
}

/// The `schedule` argument as the study's text: a string as given, a preset `Schedule` by its
/// name, a discrete `Schedule` through a temporary schedule file (its table and timestep rule,
/// exactly: f64 JSON round-trips), removed when this is dropped.
struct ScheduleSpec {
    text: String,
    temp: Option<std::path::PathBuf>,
}

impl ScheduleSpec {
    fn of(schedule: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(s) = schedule.extract::<String>() {
            return Ok(Self {
                text: s,
                temp: None,
            });
        }
        let Ok(sch) = schedule.downcast::<PySchedule>() else {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "schedule: expected a name, diffusers:<beta_schedule>, a *.json path or a covlab.Schedule",
            ));
        };
        let inner = sch.borrow().inner.clone();
        let covlab::process::schedule::Schedule::Discrete(d) = inner else {
            return Ok(Self {
                text: inner.name(),
                temp: None,
            });
        };
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "covlab-py-schedule-{}-{n}.json",
            std::process::id()
        ));
        let file = d.to_file(None).map_err(|e| value_err("schedule", e))?;
        let text = serde_json::to_string(&file).map_err(|e| value_err("schedule", e))?;
        std::fs::write(&path, text).map_err(|e| value_err("schedule", e))?;
        Ok(Self {
            text: path.display().to_string(),
            temp: Some(path),
        })
    }
}

impl Drop for ScheduleSpec {
    fn drop(&mut self) {
        if let Some(p) = &self.temp {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A Python callable `kernel(x_t, abar_s, abar_t) -> (mean, variance)` as a [`KernelModel`].
struct PyKernel {
    f: PyObject,
}

impl KernelModel for PyKernel {
    fn evaluate(
        &mut self,
        x: &[f64],
        d: usize,
        abar_s: f64,
        abar_t: f64,
    ) -> Result<KernelOutput, String> {
        Python::with_gil(|py| {
            let n = x.len() / d;
            let arr = numpy::ndarray::Array2::from_shape_vec((n, d), x.to_vec())
                .map_err(|e| e.to_string())?;
            let xs = numpy::IntoPyArray::into_pyarray(arr, py);
            let out = self
                .f
                .bind(py)
                .call1((xs, abar_s, abar_t))
                .map_err(|e| format!("the kernel raised {e}"))?;
            let (mean, var): (Bound<'_, PyAny>, Bound<'_, PyAny>) = out
                .extract()
                .map_err(|_| "must return a tuple (mean, variance)".to_string())?;
            let mean: PyReadonlyArrayDyn<'_, f64> = mean
                .extract()
                .map_err(|_| "mean must be a float64 array of shape (n, D)".to_string())?;
            let m = mean.as_array();
            if m.shape() != [n, d] {
                return Err(format!(
                    "mean has shape {:?}, expected ({n}, {d})",
                    m.shape()
                ));
            }
            let mean: Vec<f64> = m.iter().copied().collect();
            let variance = if let Ok(v) = var.extract::<f64>() {
                Variance::Scalar(v)
            } else {
                let v: PyReadonlyArrayDyn<'_, f64> = var.extract().map_err(|_| {
                    "variance must be a float or a float64 array (n,), (n, D) or (n, D, D)"
                        .to_string()
                })?;
                let a = v.as_array();
                let flat: Vec<f64> = a.iter().copied().collect();
                match a.shape() {
                    [] => Variance::Scalar(flat[0]),
                    [k] if *k == n => Variance::PerPoint(flat),
                    [k, j] if *k == n && *j == d => Variance::Diag(flat),
                    [k, i, j] if *k == n && *i == d && *j == d => Variance::Full(flat),
                    s => {
                        return Err(format!(
                            "variance has shape {s:?}, expected (), ({n},), ({n}, {d}) or ({n}, {d}, {d})"
                        ))
                    }
                }
            };
            Ok(KernelOutput { mean, variance })
        })
    }
}

/// The exact path KL of the chain whose step `(s, t)` is `N(mean, variance)` with
/// `(mean, variance) = kernel(x_t, abar_s, abar_t)`, called once per step at covlab's nodes.
#[pyfunction]
#[pyo3(signature = (mix, schedule, steps, kernel, early_stop = 0.0, qmc_points = 256, qmc_shifts = 8, seed = 20261123, force_qmc = false, progress = false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn path_kl_model(
    py: Python<'_>,
    mix: &PyMixture,
    schedule: &PySchedule,
    steps: usize,
    kernel: PyObject,
    early_stop: f64,
    qmc_points: usize,
    qmc_shifts: usize,
    seed: u64,
    force_qmc: bool,
    progress: bool,
) -> PyResult<PyObject> {
    if !kernel.bind(py).is_callable() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "kernel: must be callable as kernel(x_t, abar_s, abar_t)",
        ));
    }
    if qmc_shifts < 2 || qmc_points == 0 {
        return Err(value_err(
            "qmc_shifts",
            "needs qmc_points >= 1 and qmc_shifts >= 2",
        ));
    }
    let params = ModelChainParams {
        early_stop,
        qmc: QmcParams {
            points: qmc_points,
            shifts: qmc_shifts,
            seed,
        },
        force_qmc,
        ..ModelChainParams::default()
    };
    let mut k = PyKernel { f: kernel };
    let (q0, sch) = (mix.inner.clone(), schedule.inner.clone());
    let report = py
        .allow_threads(|| {
            let bar = progress.then(|| indicatif::ProgressBar::new(steps as u64));
            let r = model_path_kl(&q0, &sch, steps, &mut k, &params, &mut |i, _| {
                if let Some(b) = &bar {
                    b.set_position(i as u64);
                }
            });
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            r
        })
        .map_err(|e| {
            let s = e.to_string();
            let arg = if s.starts_with("kernel") {
                "kernel"
            } else if s.contains("early_stop") {
                "early_stop"
            } else if s.contains("steps") {
                "steps"
            } else {
                "schedule"
            };
            value_err(arg, s)
        })?;
    let v = serde_json::to_value(&report).map_err(|e| value_err("kernel", e))?;
    to_py(py, &v)
}

/// `path_kl_model` with covlab's own exact kernel (mean `m(x_t)`, covariance `diag C` or
/// `beta`) evaluated in Rust: the internal twin of a Python kernel, for checks and timings.
#[pyfunction]
#[pyo3(signature = (mix, schedule, steps, covariance = "diag", early_stop = 0.0))]
pub(crate) fn path_kl_model_internal(
    py: Python<'_>,
    mix: &PyMixture,
    schedule: &PySchedule,
    steps: usize,
    covariance: &str,
    early_stop: f64,
) -> PyResult<PyObject> {
    let diagonal = match covariance {
        "diag" => true,
        "beta" => false,
        other => {
            return Err(value_err(
                "covariance",
                format!("{other:?} is not diag or beta"),
            ))
        }
    };
    let (q0, sch) = (mix.inner.clone(), schedule.inner.clone());
    let params = ModelChainParams {
        early_stop,
        ..ModelChainParams::default()
    };
    let report = py
        .allow_threads(|| {
            let mut k = covlab::kl::model_chain::ExactKernel {
                q0: &q0,
                bias: vec![0.0; q0.dim()],
                diagonal,
            };
            model_path_kl(&q0, &sch, steps, &mut k, &params, &mut |_, _| {})
        })
        .map_err(|e| value_err("steps", e))?;
    to_py(
        py,
        &serde_json::to_value(&report).map_err(|e| value_err("steps", e))?,
    )
}
