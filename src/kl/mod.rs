//! Exact KL divergences: the path KL between the true reverse chain and Gaussian model chains
//! ([`path_kl`], `docs/path-kl.md`), its expectation over Hutchinson probes ([`hutchinson`]),
//! and classifier guidance in the exact linear-Gaussian example ([`guidance`]).

pub mod guidance;
pub mod hutchinson;
pub mod path_kl;
