//! Formats of the rate-limit and retry headers providers send (api-formats §1.6, §2.1,
//! §4.6): OpenAI's Go-style durations (`x-ratelimit-reset-tokens: 6m0s`), Anthropic's
//! RFC 3339 reset timestamps, and `retry-after` / `retry-after-ms`.
//!
//! Owns parsing and formatting of header *values* and the header names. Reading headers
//! off a response and deciding whether to wait or retry belong to the client and dispatch
//! crates; producing them is the simulator's and gateway's job.

mod go_duration;
mod headers;
mod retry_after;
mod rfc3339;

pub use go_duration::{format_go_duration, parse_go_duration};
pub use headers::*;
pub use retry_after::{parse_retry_after, parse_retry_after_ms};
pub use rfc3339::{format_rfc3339, parse_rfc3339};

/// Why a rate-limit header value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitParseError {
    /// Not a Go duration such as `1s`, `6m0s`, `51.189s` or `1h2m3s`.
    #[error(
        "invalid duration {input:?}: {reason} (expected a Go duration such as 6m0s or 51.189s)"
    )]
    InvalidDuration {
        /// The rejected value.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not an RFC 3339 timestamp such as `2025-08-21T12:40:59Z`.
    #[error(
        "invalid timestamp {input:?}: {reason} (expected RFC 3339 such as 2025-08-21T12:40:59Z)"
    )]
    InvalidTimestamp {
        /// The rejected value.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}
