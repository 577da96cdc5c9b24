//! One cached response: what the upstream sent for a complete, successful call, in the
//! shape it came in (a JSON body or the recorded SSE events with their arrival offsets),
//! plus what is needed to serve it in the other shape, answer `age`, pace a replay and
//! count what a hit saves.
//!
//! Entries cross process boundaries (SQLite, Redis), so they have a versioned binary
//! encoding: [`Entry::encode`] and [`Entry::decode`]. Decoding never panics: a corrupt or
//! foreign value is an [`EntryError`], which the tiers treat as a miss.

use std::time::Duration;

use bytes::Bytes;

use crate::kind::Kind;

/// One SSE event as recorded from the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// When it arrived, after the upstream request was sent.
    pub at: Duration,
    /// The whole encoded event, ready to write to a client (`data: {...}\n\n`, or
    /// `event: X\ndata: {...}\n\n`).
    pub data: Bytes,
}

/// The response body in the shape it was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A non-streamed JSON body.
    Json(Bytes),
    /// A streamed body: every event, terminal event included, in order.
    Sse(Vec<RecordedEvent>),
}

/// A complete successful response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The operation.
    pub kind: Kind,
    /// When it was written, in milliseconds since the Unix epoch (for `age` and TTL).
    pub created_unix_ms: u64,
    /// The upstream that produced it.
    pub upstream: String,
    /// The upstream model name it was produced by.
    pub model: String,
    /// Input tokens the upstream reported (0 when it reported none).
    pub input_tokens: u64,
    /// Output tokens the upstream reported (0 when it reported none).
    pub output_tokens: u64,
    /// Time to the first event (streams) after the request was sent.
    pub ttft: Option<Duration>,
    /// Time to the end of the response after the request was sent.
    pub e2e: Duration,
    /// The body.
    pub body: Body,
}
