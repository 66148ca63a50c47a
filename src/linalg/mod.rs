//! Linear algebra the lab needs beyond nalgebra: linear operators ([`operator`]), the
//! symmetric tridiagonal eigensolver with a residual check ([`tridiagonal`]), the Lanczos
//! approximation of `C^{1/2} z` from products `v -> C v` ([`mod@lanczos`]) and its a-priori bound
//! ([`lanczos_bounds`]); the mathematics: `docs/lanczos.md`.

pub mod lanczos;
pub mod lanczos_bounds;
pub mod operator;
pub mod tridiagonal;

pub use lanczos::{lanczos, sqrt_mul, Krylov, LanczosError, LanczosParams};
pub use lanczos_bounds::*;
pub use operator::{CountingOperator, DenseOperator, LinearOperator, SpectralOperator};
