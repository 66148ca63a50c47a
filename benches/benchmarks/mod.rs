pub mod metrics;
pub mod path_kl;
