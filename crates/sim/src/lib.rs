//! The provider simulator behind `tokenpace sim`: a local OpenAI- and Anthropic-compatible
//! provider with a latency model (network + queue + prefill + decode), tier limits that
//! answer with real 429s and rate-limit headers, and seeded faults. It is the embedded
//! default target of `bench` and the test double of every other part of tokenpace.
//!
//! Modules, by what they own:
//! - [`profile`]: what a simulated model is (latency parameters, faults) and the
//!   `PROFILE[:k=v,...]` model-name syntax;
//! - [`tier`]: sliding-window tier limits and their headers;
//! - [`config`]: raw CLI/TOML settings resolved into a [`config::SimConfig`];
//! - [`timer`]: sub-millisecond deadlines for the emit schedule;
//! - [`text`]: deterministic output text and the seeded random source;
//! - [`stats`]: the `/stats` counters and the recorded emit times (the ground truth);
//! - `plan`, `emit`, `openai`, `anthropic`, `server` (private): one request's plan, the
//!   timed token stream, the two wire dialects and the HTTP routes.

pub mod config;
pub mod profile;
pub mod stats;
pub mod text;
pub mod tier;
pub mod timer;

mod anthropic;
mod emit;
mod error;
mod openai;
mod plan;
mod request;
mod server;

pub use config::SimConfig;
pub use error::SimError;
pub use server::{RunningSim, Simulator};
/// Re-exported so callers of [`Simulator::serve`] need no tokio-util dependency.
pub use tokio_util::sync::CancellationToken;
