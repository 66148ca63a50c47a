//! The data: Gaussian mixtures with dense components ([`mixture`]) and with
//! low-rank-plus-diagonal components for image-sized dimensions ([`lowrank`]), the shipped
//! data sets and the JSON mixture-file format ([`presets`]), samples as `.npy` files ([`samples_npy`]), the image data sets
//! ([`images`]), and the one loader of a data set by name ([`dataset`]).

pub mod dataset;
pub mod images;
pub mod lowrank;
pub mod mixture;
pub mod presets;
pub mod samples_npy;
