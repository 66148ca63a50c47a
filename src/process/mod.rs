//! The forward process: noise schedules (names, parsing, builders; [`schedule`]) and the time
//! grids of a reverse chain with their steps ([`grid`]).

pub mod grid;
pub mod schedule;

pub use grid::{Grid, Step};
