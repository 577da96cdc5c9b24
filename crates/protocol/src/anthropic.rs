//! Anthropic Messages API wire types (api-formats §4): request, response, streaming events
//! and error bodies.
//!
//! Like [`crate::openai`], types keep unmodelled keys so payloads pass through unchanged;
//! sending and timing them belongs to other crates.

mod error;
mod messages;
mod stream;

pub use error::{
    API_ERROR, AnthropicErrorBody, AnthropicErrorDetail, INVALID_REQUEST_ERROR, NOT_FOUND_ERROR,
    OVERLOADED_ERROR, RATE_LIMIT_ERROR,
};
pub use messages::{
    AnthropicContent, AnthropicMessage, AnthropicUsage, ContentBlock, MESSAGE_TYPE,
    MessagesRequest, MessagesResponse, SystemPrompt,
};
pub use stream::{BlockDelta, MessageDeltaBody, MessageDeltaUsage, StreamEvent};
