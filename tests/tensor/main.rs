//! The candle tensor path and the learned models against the f64 core (feature `candle`;
//! one test binary).
#![cfg(feature = "candle")]

#[path = "../common/mod.rs"]
mod common;
#[macro_use]
#[path = "../device/mod.rs"]
mod device;

mod candle_mixture;
mod candle_samplers;
mod learned_eval;
mod learned_models;
mod learned_unet;
