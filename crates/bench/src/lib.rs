//! The load engine behind `tokenpace bench`: it sends the planned requests through the
//! `client` crate, records each worker's results with the `metrics` crate, and returns a
//! [`report::RunReport`] of plain data (renderers live in the `report` crate).
//!
//! - [`plan`]: the resolved plan (series, load shape, stop condition, workload, settings);
//! - [`arrival`]: open-loop schedules (constant, Poisson);
//! - [`workload`]: prompts (text, prompts file, synthetic token targets);
//! - [`engine`]: workers for one series (closed loop, open loop), warm-up, cancellation;
//! - [`record`]: the per-worker accumulator; [`summary`]: record -> series report with
//!   warnings; [`run`]: series, sweeps, speedup and comparisons;
//! - [`progress`]: counters for the live display; [`cpu`]: the client's own CPU time;
//!   [`requests_out`]: per-request JSONL.

pub mod arrival;
pub mod cpu;
pub mod engine;
pub mod plan;
pub mod progress;
pub mod record;
pub mod report;
pub mod requests_out;
pub mod run;
pub mod summary;
pub mod workload;
