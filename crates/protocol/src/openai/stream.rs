//! Classifying one SSE `data:` payload of an OpenAI-style stream: a chunk, an in-band
//! error, or the `[DONE]` sentinel (api-formats §1.5.1, §1.5.6).
//!
//! The SSE framing itself is [`crate::sse`]'s job; this module only decides what a payload
//! is, the same way the official SDK does.

use serde::de::DeserializeOwned;

use super::error::ErrorBody;
use crate::sse::DONE;

/// What one `data:` payload of an OpenAI-style stream holds.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamData<T> {
    /// A regular chunk (`ChatCompletionChunk` or `CompletionChunk`).
    Item(T),
    /// An in-band error: a top-level `error` object sent after the `200` went out.
    Error(ErrorBody),
    /// The `[DONE]` sentinel that ends the stream.
    Done,
}

impl<T: DeserializeOwned> StreamData<T> {
    /// Classifies a payload. Like the official SDK, a payload starting with `[DONE]` ends
    /// the stream and a payload with a top-level `error` object is an error; anything else
    /// must parse as `T`.
    pub fn parse(data: &str) -> Result<Self, serde_json::Error> {
        let trimmed = data.trim_start();
        if trimmed.starts_with(DONE) {
            return Ok(StreamData::Done);
        }
        // Cheap pre-check keeps the hot path to a single parse for ordinary chunks.
        if trimmed.contains("\"error\"")
            && let Ok(err) = serde_json::from_str::<ErrorBody>(trimmed)
        {
            return Ok(StreamData::Error(err));
        }
        serde_json::from_str(trimmed).map(StreamData::Item)
    }
}
