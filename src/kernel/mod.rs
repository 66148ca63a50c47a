//! Reverse kernels: the exact kernels `q(x_s | x_t)` and their moments ([`posterior`], with
//! the covariance operator `v -> (b^2 H v + b v) / a^2`), the covariance families of the
//! Gaussian model kernels and their closed-form KL offsets ([`family`]), and model kernels in
//! Hessian coordinates with the KL split into mean and covariance parts, the kernel kinds and
//! the clip bounds ([`model`]). The mathematics: `docs/path-kl.md`.

pub mod family;
pub mod model;
pub mod posterior;
