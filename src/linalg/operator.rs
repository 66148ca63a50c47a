//! Linear operators `v -> C v` for Lanczos: the [`LinearOperator`] seam, a validated dense
//! matrix, a product counter, and a synthetic spectral operator `C = V diag(l) V^T` with a
//! known square root (the Lanczos study's test matrices).

use std::sync::atomic::{AtomicUsize, Ordering};

use nalgebra::{DMatrix, DVectorView, DVectorViewMut};
use rand::Rng;
use rand_distr::StandardNormal;

use super::lanczos::{LanczosError, SYMMETRY_TOL};

/// A symmetric linear operator known only through products `v -> C v`.
///
/// Implementations must be symmetric (`u . C v = v . C u`) for the Lanczos theory to apply;
/// this is not checked.
pub trait LinearOperator {
    /// The dimension `D` (the operator maps `R^D -> R^D`).
    fn dim(&self) -> usize;
    /// Writes `out = C v`; `v` and `out` have length [`dim`](LinearOperator::dim) and `out` is
    /// overwritten. A product that fails should write non-finite values (Lanczos reports them).
    fn apply(&self, v: &[f64], out: &mut [f64]);
}

/// A dense square matrix as an operator: `out = A v` (nalgebra `gemv`).
///
/// # Panics
/// `apply` panics if the matrix is not square or the slices do not have length `nrows` (use
/// [`DenseOperator::new`] for a validated matrix; [`super::lanczos()`] checks the slice lengths).
impl LinearOperator for DMatrix<f64> {
    fn dim(&self) -> usize {
        self.nrows()
    }

    fn apply(&self, v: &[f64], out: &mut [f64]) {
        let v = DVectorView::from_slice(v, self.ncols());
        let mut out = DVectorViewMut::from_slice(out, self.nrows());
        // beta = 0: `out` is never read, so stale NaNs in it cannot leak in.
        out.gemv(1.0, self, &v, 0.0);
    }
}

impl<O: LinearOperator + ?Sized> LinearOperator for &O {
    fn dim(&self) -> usize {
        (**self).dim()
    }

    fn apply(&self, v: &[f64], out: &mut [f64]) {
        (**self).apply(v, out);
    }
}

/// A validated dense symmetric matrix: square, finite, symmetric to [`SYMMETRY_TOL`], stored
/// as `(A + A^T) / 2` so that the operator is exactly symmetric.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseOperator {
    matrix: DMatrix<f64>,
}

impl DenseOperator {
    /// Validates `matrix` and stores its symmetric part `(A + A^T) / 2`.
    ///
    /// # Errors
    /// [`LanczosError::NotSquare`]; [`LanczosError::NonFinite`] (`field = "matrix"`, `index` the
    /// column-major entry); [`LanczosError::NotSymmetric`] when
    /// `|a_ij - a_ji| > SYMMETRY_TOL · max |a|`.
    pub fn new(matrix: DMatrix<f64>) -> Result<Self, LanczosError> {
        let (rows, cols) = matrix.shape();
        if rows != cols {
            return Err(LanczosError::NotSquare { rows, cols });
        }
        if let Some(index) = matrix.iter().position(|v| !v.is_finite()) {
            return Err(LanczosError::NonFinite {
                field: "matrix",
                index,
            });
        }
        let scale = matrix.amax();
        for j in 0..cols {
            for i in 0..j {
                let asymmetry = (matrix[(i, j)] - matrix[(j, i)]).abs();
                if asymmetry > SYMMETRY_TOL * scale {
                    return Err(LanczosError::NotSymmetric {
                        row: i,
                        col: j,
                        asymmetry,
                    });
                }
            }
        }
        let matrix = (&matrix + matrix.transpose()) * 0.5;
        Ok(Self { matrix })
    }

    /// The stored symmetric matrix.
    #[must_use]
    pub fn matrix(&self) -> &DMatrix<f64> {
        &self.matrix
    }
}

impl LinearOperator for DenseOperator {
    fn dim(&self) -> usize {
        self.matrix.nrows()
    }

    fn apply(&self, v: &[f64], out: &mut [f64]) {
        self.matrix.apply(v, out);
    }
}

/// Wraps an operator and counts its products (`apply` calls), e.g. to report the cost of a
/// sampler in network passes. The counter is atomic, so the wrapper is `Sync` when `O` is.
#[derive(Debug)]
pub struct CountingOperator<'a, O: ?Sized> {
    inner: &'a O,
    count: AtomicUsize,
}

impl<'a, O: LinearOperator + ?Sized> CountingOperator<'a, O> {
    /// Wraps `inner` with a zero count.
    pub fn new(inner: &'a O) -> Self {
        Self {
            inner,
            count: AtomicUsize::new(0),
        }
    }

    /// The number of `apply` calls so far.
    #[must_use]
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl<O: LinearOperator + ?Sized> LinearOperator for CountingOperator<'_, O> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn apply(&self, v: &[f64], out: &mut [f64]) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inner.apply(v, out);
    }
}

/// `C = V diag(l) V^T` with `V = H_1 H_2 ... H_r`, `H_i = I - 2 u_i u_i^T`, applied in `O(D r)`.
pub struct SpectralOperator {
    /// Unit reflector directions `u_i`.
    reflectors: Vec<Vec<f64>>,
    /// The eigenvalues `l`.
    l: Vec<f64>,
}

impl SpectralOperator {
    /// `r` reflectors with Gaussian directions drawn from `rng`, eigenvalues `l`.
    pub fn new<R: Rng + ?Sized>(l: Vec<f64>, r: usize, rng: &mut R) -> Self {
        let d = l.len();
        let reflectors = (0..r)
            .map(|_| {
                let u: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
                let n = u.iter().map(|x| x * x).sum::<f64>().sqrt();
                u.into_iter().map(|x| x / n).collect()
            })
            .collect();
        Self { reflectors, l }
    }

    fn reflect(u: &[f64], x: &mut [f64]) {
        let s = 2.0 * u.iter().zip(x.iter()).map(|(a, b)| a * b).sum::<f64>();
        for (xi, ui) in x.iter_mut().zip(u) {
            *xi -= s * ui;
        }
    }

    /// `x <- V^T x = H_r ... H_1 x`.
    fn vt(&self, x: &mut [f64]) {
        for u in &self.reflectors {
            Self::reflect(u, x);
        }
    }

    /// `x <- V x = H_1 ... H_r x`.
    fn v(&self, x: &mut [f64]) {
        for u in self.reflectors.iter().rev() {
            Self::reflect(u, x);
        }
    }

    /// `V diag(f(l)) V^T z`.
    pub fn apply_fn(&self, z: &[f64], f: impl Fn(f64) -> f64) -> Vec<f64> {
        let mut w = z.to_vec();
        self.vt(&mut w);
        for (wi, li) in w.iter_mut().zip(&self.l) {
            *wi *= f(*li);
        }
        self.v(&mut w);
        w
    }
}

impl LinearOperator for SpectralOperator {
    fn dim(&self) -> usize {
        self.l.len()
    }

    fn apply(&self, v: &[f64], out: &mut [f64]) {
        out.copy_from_slice(v);
        self.vt(out);
        for (oi, li) in out.iter_mut().zip(&self.l) {
            *oi *= li;
        }
        self.v(out);
    }
}
