//! The numerical core against closed forms, independent routes and fitted rates: one test
//! binary (each module was a test file of its own; one binary links covlab once).

#[path = "../common/mod.rs"]
mod common;

mod drift_rules;
mod guidance;
mod lanczos_bound;
mod local_error;
mod lowrank;
mod metrics;
mod optimal_grid;
mod path_kl_ddim;
mod path_kl_gaussian;
mod path_kl_invariants;
mod path_kl_rates;
mod path_kl_routes;
mod samplers;
mod studies;
mod trust_core;
