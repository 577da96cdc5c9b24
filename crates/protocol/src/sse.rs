//! Server-Sent Events framing, both directions: an incremental decoder that turns bytes in
//! any split into events (WHATWG `text/event-stream` rules), and an encoder.
//!
//! Owns only the framing. What a `data:` payload means (an OpenAI chunk, `[DONE]`, an
//! Anthropic event) is decided by [`crate::openai`] and [`crate::anthropic`]; reading the
//! bytes off a socket and stamping arrival times is the client's job.

mod decoder;
mod encoder;

pub use decoder::{DEFAULT_MAX_EVENT_BYTES, SseDecoder, SseError};
pub use encoder::{DONE, encode_comment, encode_data, encode_done, encode_named};

/// One dispatched SSE event.
///
/// `id` and `retry` are the values given in this event's own block (they are not carried
/// over from earlier events; [`SseDecoder::last_event_id`] tracks the WHATWG "last event
/// ID"). An `event:` line with an empty value counts as no event name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name, if any (Anthropic names every event; OpenAI names none).
    pub event: Option<String>,
    /// The `data:` lines of the event, joined with `\n`.
    pub data: String,
    /// The `id:` value, if the block had one.
    pub id: Option<String>,
    /// The `retry:` value in milliseconds, if the block had a valid one.
    pub retry: Option<u64>,
}
