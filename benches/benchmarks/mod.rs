pub mod metrics;
pub mod path_kl;
pub mod sampler;
#[cfg(feature = "candle")]
pub mod tensor;
