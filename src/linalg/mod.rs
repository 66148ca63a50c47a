//! Linear algebra the lab needs beyond nalgebra: the symmetric tridiagonal eigensolver with a
//! residual check ([`tridiagonal`]) and the Lanczos approximation of `C^{1/2} z` from
//! products `v -> C v` with its a-priori bound ([`lanczos`]; `docs/lanczos.md`).

pub mod lanczos;
pub mod tridiagonal;
