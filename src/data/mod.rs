//! The data: Gaussian mixtures with dense components ([`mixture`]) and with
//! low-rank-plus-diagonal components for image-sized dimensions ([`lowrank`]), the shipped
//! data sets and the JSON mixture-file format ([`presets`]), and the image data sets
//! ([`images`]).

pub mod images;
pub mod lowrank;
pub mod mixture;
pub mod presets;
