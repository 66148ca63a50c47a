//! The experiments: one module per study kind, each a params struct (the kind's study-file
//! table and its binary's flags) implementing [`crate::study::StudyKind`]. The harness that
//! runs, shards, checks and writes them is [`crate::study`]; the kinds are registered in
//! [`registry`].

#[cfg(feature = "candle")]
pub mod bench_gpu;
pub mod guidance;
pub mod image_presets;
pub mod lanczos;
#[cfg(feature = "candle")]
pub mod learned;
pub mod local_error;
pub mod path_kl;
pub mod registry;
pub mod samplers;
#[cfg(feature = "candle")]
pub mod validate;
