//! The forward process: noise schedules (names, parsing, builders) and the time grids of a
//! reverse chain ([`schedule`]).

pub mod schedule;
