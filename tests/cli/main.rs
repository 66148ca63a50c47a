//! The binaries end to end: flags, exit codes, outputs and bad input (one test binary).

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod cli_files;
mod cli_guidance;
mod cli_image_presets;
mod cli_io;
mod cli_lanczos;
mod cli_learned;
mod cli_samplers;
mod cli_study;
mod cli_validate;
mod misc;
