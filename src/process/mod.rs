//! The forward process: noise schedules (names, parsing, builders; [`schedule`]), discrete
//! tables with diffusers' timestep rules ([`discrete`]) and diffusers' own schedules
//! ([`diffusers`]), a schedule as a user names it ([`spec`]: a preset, `diffusers:<beta>` or a
//! file), and the time grids of a reverse chain with their steps ([`grid`]).

pub mod diffusers;
pub mod discrete;
pub mod grid;
pub mod schedule;
pub mod spec;

pub use grid::{Grid, Step};
