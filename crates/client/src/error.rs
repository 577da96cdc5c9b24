//! The two kinds of failure this crate knows: [`ClientError`], a mistake in what the
//! caller asked for (a bad base URL, a header that is not a header, an unreadable CA file),
//! returned as `Err` before any request goes out; and [`ErrorClass`], how one request
//! failed on the wire, which is never returned as `Err` but recorded in the request's
//! [`crate::Ledger`] so a load run counts it and carries on.
//!
//! The classes follow metrics.md §1.6: HTTP 4xx, 429 (with its retry hint), 5xx, the
//! transport failures (connect, TLS, reset, timeout), in-stream errors, empty and truncated
//! responses. Deciding whether to retry is left to the caller's retry policy.

use std::fmt;
use std::time::Duration;

/// A request that cannot be built or a client that cannot be configured.
///
/// Each message names the offending value and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The target's base URL cannot be used.
    #[error("target '{target}': base URL '{url}': {reason}; use e.g. http://127.0.0.1:8090")]
    BaseUrl {
        /// The target's name.
        target: String,
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name or value (API key, extra header) is not valid in HTTP.
    #[error("target '{target}': header '{name}': {reason}")]
    Header {
        /// The target's name.
        target: String,
        /// The header name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request cannot be built from what was given.
    #[error("building the request: {0}")]
    Request(String),
    /// The TLS configuration (the extra CA file) cannot be used.
    #[error("TLS roots: {0}")]
    Tls(String),
}

/// The phase a request was in when its total timeout expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutPhase {
    /// Resolving the host, opening the TCP connection, or waiting for a pooled one.
    Connect,
    /// The TLS handshake.
    Tls,
    /// Writing the request and waiting for the response status and headers.
    Headers,
    /// Reading the response body (before, between or after tokens).
    Body,
}

impl TimeoutPhase {
    /// Short snake_case name, for reports.
    pub fn label(self) -> &'static str {
        match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::Tls => "tls",
            TimeoutPhase::Headers => "headers",
            TimeoutPhase::Body => "body",
        }
    }
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How one request failed (metrics.md §1.6). Recorded in [`crate::Ledger::outcome`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorClass {
    /// A 4xx status other than 429.
    #[error("HTTP {status}: {message}")]
    Http4xx {
        /// The status code.
        status: u16,
        /// The provider's error message (or the start of the body).
        message: String,
    },
    /// HTTP 429, with the wait the server asked for (`retry-after-ms`, else `retry-after`).
    #[error("HTTP 429 rate limited{}: {message}", fmt_retry(*retry_after))]
    RateLimited {
        /// How long the server asked the client to wait, if it said.
        retry_after: Option<Duration>,
        /// The provider's error message.
        message: String,
    },
    /// A 5xx status, Anthropic's 529 `overloaded_error` included.
    #[error("HTTP {status}: {message}")]
    Http5xx {
        /// The status code.
        status: u16,
        /// The provider's error message (or the start of the body).
        message: String,
    },
    /// The host could not be resolved or the TCP connection could not be opened.
    #[error("connect: {0}")]
    Connect(String),
    /// The TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The connection was closed or reset before the response was complete.
    #[error("connection reset: {0}")]
    Reset(String),
    /// The request's total timeout expired.
    #[error("timed out during {phase}")]
    Timeout {
        /// Where the request was when time ran out.
        phase: TimeoutPhase,
    },
    /// An error event inside an HTTP 200 stream (OpenAI `data: {"error":...}`, Anthropic
    /// `event: error`), or an error object in a 200 body. Never a success.
    #[error("error event in the stream: {0}")]
    InStreamError(String),
    /// The stream ended properly but carried no token (no content, reasoning or tool call).
    #[error("empty response: the stream ended without a single token")]
    Empty,
    /// The stream ended without its terminal event (`[DONE]`, `message_stop`), or a
    /// non-streamed body was cut short.
    #[error("truncated response: the body ended before its terminal event")]
    Truncated,
    /// The response is not in the format the API promises (invalid SSE framing, a body that
    /// is not the expected JSON, an unexpected status such as a redirect).
    #[error("protocol: {0}")]
    Protocol(String),
}

fn fmt_retry(retry_after: Option<Duration>) -> String {
    retry_after
        .map(|d| format!(" (retry after {d:?})"))
        .unwrap_or_default()
}

impl ErrorClass {
    /// Short snake_case name of the class, for reports and counters.
    pub fn label(&self) -> &'static str {
        match self {
            ErrorClass::Http4xx { .. } => "http_4xx",
            ErrorClass::RateLimited { .. } => "rate_limited",
            ErrorClass::Http5xx { .. } => "http_5xx",
            ErrorClass::Connect(_) => "connect",
            ErrorClass::Tls(_) => "tls",
            ErrorClass::Reset(_) => "reset",
            ErrorClass::Timeout { .. } => "timeout",
            ErrorClass::InStreamError(_) => "in_stream_error",
            ErrorClass::Empty => "empty",
            ErrorClass::Truncated => "truncated",
            ErrorClass::Protocol(_) => "protocol",
        }
    }

    /// The HTTP status behind this class, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ErrorClass::Http4xx { status, .. } | ErrorClass::Http5xx { status, .. } => {
                Some(*status)
            }
            ErrorClass::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// Whether the failure happened below HTTP (connect, TLS, reset, timeout).
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            ErrorClass::Connect(_)
                | ErrorClass::Tls(_)
                | ErrorClass::Reset(_)
                | ErrorClass::Timeout { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_snake_case_and_distinct() {
        let all = [
            ErrorClass::Http4xx {
                status: 404,
                message: String::new(),
            },
            ErrorClass::RateLimited {
                retry_after: None,
                message: String::new(),
            },
            ErrorClass::Http5xx {
                status: 500,
                message: String::new(),
            },
            ErrorClass::Connect(String::new()),
            ErrorClass::Tls(String::new()),
            ErrorClass::Reset(String::new()),
            ErrorClass::Timeout {
                phase: TimeoutPhase::Body,
            },
            ErrorClass::InStreamError(String::new()),
            ErrorClass::Empty,
            ErrorClass::Truncated,
            ErrorClass::Protocol(String::new()),
        ];
        let mut labels: Vec<_> = all.iter().map(ErrorClass::label).collect();
        assert!(labels.iter().all(|l| {
            l.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        }));
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
    }

    #[test]
    fn rate_limited_message_shows_the_wait() {
        let e = ErrorClass::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
            message: "slow down".into(),
        };
        assert_eq!(
            e.to_string(),
            "HTTP 429 rate limited (retry after 2s): slow down"
        );
        assert_eq!(e.status(), Some(429));
    }
}
