//! `metrics.mmd`, `metrics.check_samples` and `lanczos_sqrt` from Python.

use nalgebra::{DMatrix, DVector};
use numpy::ndarray::Array1;
use numpy::{IntoPyArray, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use covlab::linalg::lanczos::{lanczos, LanczosParams, LinearOperator};
use covlab::linalg::lanczos_bounds::sqrt_error_bound;
use covlab::stats::{check_samples as check, mmd2_unbiased, MMD_BANDWIDTHS};

use crate::chain::to_py;
use crate::{rows, value_err, PyMixture};

fn points(
    arg: &str,
    x: &PyReadonlyArray2<'_, f64>,
    d: Option<usize>,
) -> PyResult<Vec<DVector<f64>>> {
    let a = x.as_array();
    let w = a.dim().1;
    let v = rows(arg, &a, d)?;
    Ok(v.chunks(w).map(DVector::from_column_slice).collect())
}

/// The lab's unbiased MMD^2 between the rows of `x` and `y`, per bandwidth and for the sum
/// kernel, each with its standard error and null standard error.
#[pyfunction]
#[pyo3(signature = (x, y, bandwidths = None))]
pub(crate) fn mmd(
    py: Python<'_>,
    x: PyReadonlyArray2<'_, f64>,
    y: PyReadonlyArray2<'_, f64>,
    bandwidths: Option<Vec<f64>>,
) -> PyResult<PyObject> {
    let xs = points("x", &x, None)?;
    let ys = points("y", &y, Some(xs[0].len()))?;
    let bw = bandwidths.unwrap_or_else(|| MMD_BANDWIDTHS.to_vec());
    let est = py
        .allow_threads(|| mmd2_unbiased(&xs, &ys, &bw))
        .map_err(|e| {
            value_err(
                if e.to_string().contains("band") {
                    "bandwidths"
                } else {
                    "x"
                },
                e,
            )
        })?;
    to_py(
        py,
        &serde_json::to_value(&est).map_err(|e| value_err("x", e))?,
    )
}

/// A user's samples against `reference_n` exact draws of the mixture (seeded): MMD^2 with its
/// z-score, mean log-likelihood beside the reference's, Frechet^2 beside its floor.
#[pyfunction]
#[pyo3(signature = (mix, samples, seed = 0, reference_n = 2000))]
pub(crate) fn check_samples(
    py: Python<'_>,
    mix: &PyMixture,
    samples: PyReadonlyArray2<'_, f64>,
    seed: u64,
    reference_n: usize,
) -> PyResult<PyObject> {
    let xs = points("samples", &samples, Some(mix.inner.dim()))?;
    let c = py
        .allow_threads(|| check(&mix.inner, &xs, reference_n, seed))
        .map_err(|e| {
            value_err(
                if e.to_string().contains('y') && reference_n < 4 {
                    "reference_n"
                } else {
                    "samples"
                },
                e,
            )
        })?;
    to_py(
        py,
        &serde_json::to_value(&c).map_err(|e| value_err("samples", e))?,
    )
}

/// A Python callable `v -> C v` as an operator.
struct PyOperator {
    f: PyObject,
    d: usize,
}

impl LinearOperator for PyOperator {
    fn dim(&self) -> usize {
        self.d
    }
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        let r: Result<Vec<f64>, ()> = Python::with_gil(|py| {
            let arr = Array1::from(v.to_vec()).into_pyarray(py);
            let res = self.f.bind(py).call1((arr,)).map_err(|_| ())?;
            let a: PyReadonlyArray1<'_, f64> = res.extract().map_err(|_| ())?;
            Ok(a.as_array().iter().copied().collect())
        });
        match r {
            Ok(w) if w.len() == out.len() => out.copy_from_slice(&w),
            // A failed product writes NaN: Lanczos reports it (see LinearOperator).
            _ => out.fill(f64::NAN),
        }
    }
}

/// `C^{1/2} z` by `k` Lanczos steps, for `C` a symmetric positive matrix or a callable
/// `v -> C v`; with the a-priori bound `2 E_{k-1} ||z||` when the spectrum bounds are known
/// (given as `lmin`, `lmax`, or computed for a matrix).
#[pyfunction]
#[pyo3(signature = (matvec, z, k, lmin = None, lmax = None))]
pub(crate) fn lanczos_sqrt(
    py: Python<'_>,
    matvec: PyObject,
    z: PyReadonlyArray1<'_, f64>,
    k: usize,
    lmin: Option<f64>,
    lmax: Option<f64>,
) -> PyResult<PyObject> {
    let zv: Vec<f64> = z.as_array().iter().copied().collect();
    if zv.is_empty() || zv.iter().any(|a| !a.is_finite()) {
        return Err(value_err("z", "must be a non-empty finite vector"));
    }
    let d = zv.len();
    let params = LanczosParams::new(k);
    let m = matvec.bind(py);
    let (res, bounds) = if let Ok(a) = m.extract::<PyReadonlyArray2<'_, f64>>() {
        let a = a.as_array();
        if a.dim() != (d, d) {
            return Err(value_err(
                "matvec",
                format!("matrix has shape {:?}, z has {d} entries", a.dim()),
            ));
        }
        let mat = DMatrix::from_fn(d, d, |i, j| a[(i, j)]);
        if mat.iter().any(|v| !v.is_finite())
            || (&mat - mat.transpose()).amax() > 1e-12 * mat.amax()
        {
            return Err(value_err("matvec", "matrix must be finite and symmetric"));
        }
        let eig = mat.clone().symmetric_eigenvalues();
        let (lo, hi) = (eig.min(), eig.max());
        if lo <= 0.0 {
            return Err(value_err(
                "matvec",
                format!("matrix is not positive definite (smallest eigenvalue {lo})"),
            ));
        }
        let r = py.allow_threads(|| lanczos(&mat, &zv, &params));
        (r, Some((lmin.unwrap_or(lo), lmax.unwrap_or(hi))))
    } else if m.is_callable() {
        let op = PyOperator {
            f: matvec.clone_ref(py),
            d,
        };
        let r = py.allow_threads(|| lanczos(&op, &zv, &params));
        (r, lmin.zip(lmax))
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "matvec: must be a (D, D) float64 array or a callable v -> C v",
        ));
    };
    let kr = res.map_err(|e| {
        value_err(
            if e.to_string().contains('k') {
                "k"
            } else {
                "matvec"
            },
            e,
        )
    })?;
    let y = kr.sqrt().map_err(|e| value_err("matvec", e))?;
    let znorm = kr.z_norm();
    let bound = bounds.map(|(lo, hi)| sqrt_error_bound(lo, hi, kr.steps()) * znorm);
    let out = serde_json::json!({
        "steps": kr.steps(),
        "terminated_early": kr.terminated_early(),
        "ritz_min": kr.ritz_values().first(),
        "ritz_max": kr.ritz_values().last(),
        "bound": bound,
    });
    let dict = to_py(py, &out)?;
    let yarr = Array1::from(y).into_pyarray(py);
    Ok((yarr, dict).into_pyobject(py)?.into_any().unbind())
}
