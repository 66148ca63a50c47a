//! Statistics of results: slope fits with confidence intervals ([`rates`]) and sample-quality
//! metrics ([`metrics`]: MMD² with standard errors, Fréchet distance, likelihood).

pub mod metrics;
pub mod rates;
