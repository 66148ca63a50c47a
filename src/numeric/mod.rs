//! Small numerical kernels shared by every layer: compensated sums, stable logarithms and
//! log-sum-exp ([`sum`]), exponentials of a whole block at once ([`exp`]), the one way to seed a per-item random stream ([`rng`]), and JSON
//! for `f64` values that may be non-finite ([`nonfinite`]).

pub mod exp;
pub mod nonfinite;
pub mod rng;
pub mod sum;

pub use rng::stream;
pub use sum::*;
