//! covlab from Python: the native module `covlab._covlab` (PyO3 + rust-numpy). numpy arrays in
//! and out, `f64`, batch first `(n, D)`; every error is a `ValueError` naming the argument;
//! long computations release the GIL. The Python package (`python/covlab`) re-exports these
//! and adds the pure-Python helpers.

use nalgebra::{DMatrix, DVector};
use numpy::ndarray::{Array1, Array2, Array3, ArrayView2};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray3, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rayon::prelude::*;

mod chain;
mod metrics;

use covlab::data::mixture::Mixture;
use covlab::kernel::posterior::tweedie_moments;
use covlab::process::diffusers::{alphas_cumprod, BetaSchedule, TimestepSpacing};
use covlab::process::discrete::{DiscreteSchedule, Timesteps};
use covlab::process::schedule::{Schedule, Step};

/// A `ValueError` "`arg`: message".
pub(crate) fn value_err(arg: &str, e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{arg}: {e}"))
}

/// Rows of a `(n, d)` array, checked finite and of width `d` (`None`: any width >= 1).
pub(crate) fn rows(arg: &str, x: &ArrayView2<'_, f64>, d: Option<usize>) -> PyResult<Vec<f64>> {
    let (n, w) = x.dim();
    if let Some(d) = d {
        if w != d {
            return Err(value_err(arg, format!("has {w} columns, expected D = {d}")));
        }
    }
    if n == 0 || w == 0 {
        return Err(value_err(arg, "must be a non-empty (n, D) array"));
    }
    let v: Vec<f64> = x.iter().copied().collect();
    if let Some(i) = v.iter().position(|a| !a.is_finite()) {
        return Err(value_err(
            arg,
            format!("entry ({}, {}) is not finite", i / w, i % w),
        ));
    }
    Ok(v)
}

/// `abar` checked in `(0, 1]`.
fn check_abar(arg: &str, abar: f64) -> PyResult<f64> {
    if abar.is_finite() && abar > 0.0 && abar <= 1.0 {
        Ok(abar)
    } else {
        Err(value_err(arg, format!("= {abar}, must be in (0, 1]")))
    }
}

/// A Gaussian mixture `q_0 = sum_k w_k N(mu_k, Sigma_k)`; its noised marginal `q_t` at
/// `abar_t = abar` is `sum_k w_k N(sqrt(abar) mu_k, abar Sigma_k + (1 - abar) I)`.
#[pyclass(name = "Mixture", module = "covlab")]
#[derive(Clone)]
pub struct PyMixture {
    pub(crate) inner: Mixture,
}

impl PyMixture {
    fn marginal(&self, abar: f64) -> PyResult<Mixture> {
        let abar = check_abar("abar", abar)?;
        self.inner
            .marginal(abar.ln())
            .map_err(|e| value_err("abar", e))
    }

    /// Applies `f` to each row of `x` on `q_t` in parallel, GIL released.
    fn per_row<T: Send>(
        &self,
        py: Python<'_>,
        x: &ArrayView2<'_, f64>,
        abar: f64,
        f: impl Fn(&Mixture, &[f64]) -> Result<T, String> + Sync,
    ) -> PyResult<Vec<T>> {
        let d = self.inner.dim();
        let v = rows("x", x, Some(d))?;
        let q = self.marginal(abar)?;
        py.allow_threads(|| {
            v.par_chunks(d)
                .map(|r| f(&q, r))
                .collect::<Result<Vec<T>, String>>()
        })
        .map_err(|e| value_err("x", e))
    }
}

#[pymethods]
impl PyMixture {
    /// `Mixture(weights (K,), means (K, D), covariances (K, D, D))`.
    #[new]
    fn new(
        weights: PyReadonlyArray1<'_, f64>,
        means: PyReadonlyArray2<'_, f64>,
        covariances: PyReadonlyArray3<'_, f64>,
    ) -> PyResult<Self> {
        let w: Vec<f64> = weights.as_array().iter().copied().collect();
        let m = means.as_array();
        let c = covariances.as_array();
        let (k, d) = m.dim();
        if w.len() != k {
            return Err(value_err(
                "weights",
                format!("has {} entries for {k} means", w.len()),
            ));
        }
        if c.dim() != (k, d, d) {
            return Err(value_err(
                "covariances",
                format!("has shape {:?}, expected ({k}, {d}, {d})", c.dim()),
            ));
        }
        let means: Vec<DVector<f64>> = (0..k)
            .map(|i| DVector::from_iterator(d, m.row(i).iter().copied()))
            .collect();
        let covs: Vec<DMatrix<f64>> = (0..k)
            .map(|i| DMatrix::from_fn(d, d, |r, s| c[(i, r, s)]))
            .collect();
        let inner = Mixture::from_dense(w, means, covs).map_err(|e| {
            let s = e.to_string();
            let arg = ["weights", "means", "covariances"]
                .into_iter()
                .find(|a| s.contains(a))
                .unwrap_or("mixture");
            value_err(arg, s)
        })?;
        Ok(Self { inner })
    }

    /// A preset by name (mog40, mog40-unit, grid9, aniso2, mix6, ...).
    #[staticmethod]
    fn preset(name: &str) -> PyResult<Self> {
        if name.ends_with(".json") {
            return Err(value_err("name", "is a file: use Mixture.from_json"));
        }
        covlab::data::presets::load(name)
            .map(|inner| Self { inner })
            .map_err(|e| value_err("name", e))
    }

    /// A mixture JSON file (covlab's format, as `--data FILE.json`).
    #[staticmethod]
    fn from_json(path: &str) -> PyResult<Self> {
        covlab::data::presets::from_file(std::path::Path::new(path))
            .map(|inner| Self { inner })
            .map_err(|e| value_err("path", e))
    }

    /// The dimension D.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// The weights pi_k, `(K,)`.
    #[getter]
    fn weights<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        Array1::from(self.inner.weights().to_vec()).into_pyarray(py)
    }

    /// The means mu_k, `(K, D)`.
    #[getter]
    fn means<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        let (k, d) = (self.inner.len(), self.inner.dim());
        Array2::from_shape_fn((k, d), |(j, i)| self.inner.components()[j].mean()[i])
            .into_pyarray(py)
    }

    /// The covariances Sigma_k, `(K, D, D)` (the arguments of the constructor: a mixture
    /// rebuilt from `weights`, `means` and `covariances` is this one).
    #[getter]
    fn covariances<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray3<f64>> {
        let (k, d) = (self.inner.len(), self.inner.dim());
        let covs: Vec<DMatrix<f64>> = self
            .inner
            .components()
            .iter()
            .map(|c| c.covariance())
            .collect();
        Array3::from_shape_fn((k, d, d), |(j, r, s)| covs[j][(r, s)]).into_pyarray(py)
    }

    /// `n` exact draws of `q_0` (seeded), `(n, D)`.
    #[pyo3(signature = (n, seed = 0))]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        if n == 0 {
            return Err(value_err("n", "must be >= 1"));
        }
        let d = self.inner.dim();
        let draws = py.allow_threads(|| {
            self.inner
                .sample(&mut covlab::numeric::rng::stream(seed, 0), n)
        });
        let flat: Vec<f64> = draws.iter().flat_map(|v| v.iter().copied()).collect();
        Ok(Array2::from_shape_vec((n, d), flat)
            .map_err(|e| value_err("n", e))?
            .into_pyarray(py))
    }

    /// `ln q_t(x)` per row, `(n,)`, with `abar_t = abar` (1: the data).
    #[pyo3(signature = (x, abar = 1.0))]
    fn log_prob<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'_, f64>,
        abar: f64,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let v = self.per_row(py, &x.as_array(), abar, |q, r| {
            q.ln_pdf(r).map_err(|e| e.to_string())
        })?;
        Ok(Array1::from(v).into_pyarray(py))
    }

    /// The score `grad ln q_t(x)` per row, `(n, D)`.
    #[pyo3(signature = (x, abar = 1.0))]
    fn score<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'_, f64>,
        abar: f64,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let d = self.inner.dim();
        let v = self.per_row(py, &x.as_array(), abar, |q, r| {
            q.score(r).map_err(|e| e.to_string())
        })?;
        let n = v.len();
        let flat: Vec<f64> = v.iter().flat_map(|s| s.iter().copied()).collect();
        Ok(Array2::from_shape_vec((n, d), flat)
            .map_err(|e| value_err("x", e))?
            .into_pyarray(py))
    }

    /// Hessian-vector products `grad^2 ln q_t(x_i) v_i` per row, `(n, D)`.
    #[pyo3(signature = (x, abar, v))]
    fn hvp<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'_, f64>,
        abar: f64,
        v: PyReadonlyArray2<'_, f64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let d = self.inner.dim();
        let (xa, va) = (x.as_array(), v.as_array());
        if va.dim() != xa.dim() {
            return Err(value_err(
                "v",
                format!("has shape {:?}, x has {:?}", va.dim(), xa.dim()),
            ));
        }
        let vv = rows("v", &va, Some(d))?;
        let xv = rows("x", &xa, Some(d))?;
        let q = self.marginal(abar)?;
        let out = py
            .allow_threads(|| {
                xv.par_chunks(d)
                    .zip(vv.par_chunks(d))
                    .map(|(r, w)| q.hvp(r, w).map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, String>>()
            })
            .map_err(|e| value_err("x", e))?;
        let flat: Vec<f64> = out.iter().flat_map(|s| s.iter().copied()).collect();
        Ok(Array2::from_shape_vec((out.len(), d), flat)
            .map_err(|e| value_err("x", e))?
            .into_pyarray(py))
    }

    /// The Hessian `grad^2 ln q_t(x)` per row, `(n, D, D)`.
    #[pyo3(signature = (x, abar = 1.0))]
    fn hessian<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'_, f64>,
        abar: f64,
    ) -> PyResult<Bound<'py, PyArray3<f64>>> {
        let d = self.inner.dim();
        let v = self.per_row(py, &x.as_array(), abar, |q, r| {
            q.hessian(r).map_err(|e| e.to_string())
        })?;
        let n = v.len();
        let flat: Vec<f64> = v
            .iter()
            .flat_map(|h| (0..d * d).map(move |k| h[(k / d, k % d)]))
            .collect();
        Ok(Array3::from_shape_vec((n, d, d), flat)
            .map_err(|e| value_err("x", e))?
            .into_pyarray(py))
    }

    fn __repr__(&self) -> String {
        format!("Mixture(K={}, D={})", self.inner.len(), self.inner.dim())
    }
}

/// The exact mean `(n, D)` and covariance `(n, D, D)` of `q(x_s | x_t)` at the rows of `x_t`
/// (`abar_s = 1`: the clean-data posterior `q(x_0 | x_t)`).
#[pyfunction]
#[pyo3(signature = (mix, x_t, abar_s, abar_t))]
fn posterior<'py>(
    py: Python<'py>,
    mix: &PyMixture,
    x_t: PyReadonlyArray2<'_, f64>,
    abar_s: f64,
    abar_t: f64,
) -> PyResult<(Bound<'py, PyArray2<f64>>, Bound<'py, PyArray3<f64>>)> {
    let abar_s = check_abar("abar_s", abar_s)?;
    let abar_t = check_abar("abar_t", abar_t)?;
    if abar_t >= abar_s {
        return Err(value_err(
            "abar_t",
            format!("= {abar_t} must be < abar_s = {abar_s}"),
        ));
    }
    let d = mix.inner.dim();
    let v = rows("x_t", &x_t.as_array(), Some(d))?;
    let step = Step::from_ln_abar(abar_s.ln(), abar_t.ln());
    let q_t = mix.marginal(abar_t)?;
    let moments = py
        .allow_threads(|| {
            v.par_chunks(d)
                .map(|r| tweedie_moments(&q_t, &step, r).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, String>>()
        })
        .map_err(|e| value_err("x_t", e))?;
    let n = moments.len();
    let mean: Vec<f64> = moments
        .iter()
        .flat_map(|m| m.mean.iter().copied())
        .collect();
    let cov: Vec<f64> = moments
        .iter()
        .flat_map(|m| (0..d * d).map(move |k| m.cov[(k / d, k % d)]))
        .collect();
    Ok((
        Array2::from_shape_vec((n, d), mean)
            .map_err(|e| value_err("x_t", e))?
            .into_pyarray(py),
        Array3::from_shape_vec((n, d, d), cov)
            .map_err(|e| value_err("x_t", e))?
            .into_pyarray(py),
    ))
}

/// A noise schedule: a preset (vp-linear, ddpm-linear, cosine, ...), a table of
/// `alphas_cumprod`, or diffusers' DDPM/DDIM schedule.
#[pyclass(name = "Schedule", module = "covlab")]
#[derive(Clone)]
pub struct PySchedule {
    pub(crate) inner: Schedule,
}

#[pymethods]
impl PySchedule {
    /// A preset by name.
    #[new]
    fn new(name: &str) -> PyResult<Self> {
        Schedule::from_name(name)
            .map(|inner| Self { inner })
            .map_err(|e| value_err("name", e))
    }

    /// A discrete table `alphas_cumprod[k]`, `k = 0..N-1` (strictly decreasing in (0, 1)),
    /// with diffusers' `timestep_spacing` rule or an explicit descending `timesteps` list.
    #[staticmethod]
    #[pyo3(signature = (alphas_cumprod, timesteps = None, timestep_spacing = "leading", steps_offset = 0))]
    fn from_alphas_cumprod(
        alphas_cumprod: PyReadonlyArray1<'_, f64>,
        timesteps: Option<Vec<usize>>,
        timestep_spacing: &str,
        steps_offset: usize,
    ) -> PyResult<Self> {
        let rule = match timesteps {
            Some(list) => Timesteps::Explicit(list),
            None => Timesteps::Spacing {
                spacing: TimestepSpacing::from_name(timestep_spacing)
                    .map_err(|e| value_err("timestep_spacing", e))?,
                steps_offset,
            },
        };
        let d = DiscreteSchedule {
            alphas_cumprod: alphas_cumprod.as_array().iter().copied().collect(),
            timesteps: rule,
            source: "alphas_cumprod".into(),
        };
        d.validate().map_err(|e| {
            let s = e.to_string();
            value_err(
                if s.contains("timesteps") {
                    "timesteps"
                } else {
                    "alphas_cumprod"
                },
                s,
            )
        })?;
        Ok(Self {
            inner: Schedule::Discrete(d),
        })
    }

    /// diffusers' `DDPMScheduler`/`DDIMScheduler` schedule, in its float32 arithmetic.
    #[staticmethod]
    #[pyo3(signature = (beta_schedule = "linear", num_train_timesteps = 1000, beta_start = 0.0001, beta_end = 0.02, timestep_spacing = "leading", steps_offset = 0))]
    fn diffusers(
        beta_schedule: &str,
        num_train_timesteps: usize,
        beta_start: f64,
        beta_end: f64,
        timestep_spacing: &str,
        steps_offset: usize,
    ) -> PyResult<Self> {
        let beta =
            BetaSchedule::from_name(beta_schedule).map_err(|e| value_err("beta_schedule", e))?;
        let spacing = TimestepSpacing::from_name(timestep_spacing)
            .map_err(|e| value_err("timestep_spacing", e))?;
        let ac = alphas_cumprod(beta, num_train_timesteps, beta_start, beta_end).map_err(|e| {
            let s = e.to_string();
            let arg = ["num_train_timesteps", "beta_start", "beta_end"]
                .into_iter()
                .find(|a| s.contains(a))
                .unwrap_or("beta_schedule");
            value_err(arg, s)
        })?;
        Ok(Self {
            inner: Schedule::Discrete(DiscreteSchedule {
                alphas_cumprod: ac,
                timesteps: Timesteps::Spacing {
                    spacing,
                    steps_offset,
                },
                source: format!("diffusers:{}", beta.name()),
            }),
        })
    }

    /// The name (preset, `diffusers:<beta_schedule>` or `alphas_cumprod`).
    #[getter]
    fn name(&self) -> String {
        self.inner.name()
    }

    /// The table `alphas_cumprod` of a discrete schedule.
    #[getter]
    fn alphas_cumprod<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        match &self.inner {
            Schedule::Discrete(d) => Ok(Array1::from(d.alphas_cumprod.clone()).into_pyarray(py)),
            _ => Err(value_err(
                "schedule",
                "a preset has no alphas_cumprod table",
            )),
        }
    }

    /// diffusers' `timesteps` (descending) of a `steps`-step trajectory.
    fn timesteps<'py>(&self, py: Python<'py>, steps: usize) -> PyResult<Bound<'py, PyArray1<i64>>> {
        match &self.inner {
            Schedule::Discrete(d) => {
                let t = d.timesteps(steps).map_err(|e| value_err("steps", e))?;
                Ok(
                    Array1::from(t.into_iter().map(|v| v as i64).collect::<Vec<_>>())
                        .into_pyarray(py),
                )
            }
            _ => Err(value_err("schedule", "a preset has no timesteps")),
        }
    }

    /// The `abar` values `(T + 1,)` of a `steps`-step trajectory, from the data end
    /// (`abar_0 = 1` unless `early_stop > 0`).
    #[pyo3(signature = (steps, early_stop = 0.0))]
    fn grid<'py>(
        &self,
        py: Python<'py>,
        steps: usize,
        early_stop: f64,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let g = self.inner.grid(steps, early_stop).map_err(|e| {
            let s = e.to_string();
            value_err(
                if s.contains("early_stop") {
                    "early_stop"
                } else {
                    "steps"
                },
                s,
            )
        })?;
        Ok(Array1::from((0..=steps).map(|i| g.abar(i)).collect::<Vec<_>>()).into_pyarray(py))
    }

    fn __repr__(&self) -> String {
        format!("Schedule({:?})", self.inner.name())
    }
}

/// The native module.
#[pymodule]
fn _covlab(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMixture>()?;
    m.add_class::<PySchedule>()?;
    m.add_function(wrap_pyfunction!(posterior, m)?)?;
    m.add_function(wrap_pyfunction!(chain::path_kl, m)?)?;
    m.add_function(wrap_pyfunction!(chain::path_kl_model, m)?)?;
    m.add_function(wrap_pyfunction!(chain::path_kl_model_internal, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::mmd, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::check_samples, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::lanczos_sqrt, m)?)?;
    Ok(())
}
