//! Wire formats tokenpace speaks, with no I/O.
//!
//! This crate owns:
//! - [`openai`] and [`anthropic`]: typed request, response, streaming and error payloads
//!   that keep unknown keys, so a gateway can pass them through unchanged;
//! - [`sse`]: Server-Sent Events framing (an incremental decoder and an encoder);
//! - [`ratelimit`]: the formats of rate-limit and retry headers (Go durations,
//!   RFC 3339 timestamps, `retry-after`);
//! - [`tokens`]: the shared input-token estimate (o200k_base);
//! - [`fmt`]: numbers as people read them (`30,000`), as provider messages write them.
//!
//! It leaves sockets, clocks, retries and policy to the crates that use it: the client
//! and bench measure, the gateway and dispatch decide, the simulator serves.

pub mod anthropic;
pub mod fmt;
mod nullable;
pub mod openai;
pub mod ratelimit;
pub mod sse;
pub mod tokens;
