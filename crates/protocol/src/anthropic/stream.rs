//! Anthropic streaming events (api-formats §4.4): the JSON carried by each SSE event of a
//! `stream: true` Messages response.
//!
//! Owns the event and delta shapes plus the predicates every consumer needs (the SSE
//! `event:` name, whether a delta carries a token). Framing is [`crate::sse`]'s job.
//! Unknown event and delta types parse into `Unknown` variants instead of failing, as
//! Anthropic's versioning policy requires; their payload is not kept.

use serde::{Deserialize, Serialize};

use super::error::AnthropicErrorDetail;
use super::messages::{ContentBlock, MessagesResponse};
use crate::sse::SseEvent;

/// One streaming event, tagged by `type` (which equals the SSE `event:` name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "events are short-lived values handled one at a time; boxing the message would \
              only make constructing message_start clumsier"
)]
pub enum StreamEvent {
    /// First event: the message with empty content and input usage.
    MessageStart {
        /// The message so far.
        message: MessagesResponse,
    },
    /// A content block opens.
    ContentBlockStart {
        /// Position of the block in the final `content`.
        index: u32,
        /// The block's initial state (empty text, `{}` tool input, ...).
        content_block: ContentBlock,
    },
    /// Keep-alive; may appear anywhere.
    Ping,
    /// A fragment of a content block.
    ContentBlockDelta {
        /// Position of the block.
        index: u32,
        /// The fragment.
        delta: BlockDelta,
    },
    /// A content block is complete.
    ContentBlockStop {
        /// Position of the block.
        index: u32,
    },
    /// Top-level changes near the end: stop reason and cumulative usage.
    MessageDelta {
        /// Stop reason and sequence.
        delta: MessageDeltaBody,
        /// Cumulative usage.
        usage: MessageDeltaUsage,
    },
    /// Last event of a successful stream (there is no `[DONE]`).
    MessageStop,
    /// An error inside an HTTP 200 stream.
    Error {
        /// The error.
        error: AnthropicErrorDetail,
    },
    /// Any event type this crate does not know; consumers must ignore it.
    #[serde(other)]
    Unknown,
}

impl StreamEvent {
    /// The SSE `event:` name of this event (`unknown` for [`StreamEvent::Unknown`], whose
    /// real name is only on the SSE `event:` line).
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::Ping => "ping",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Error { .. } => "error",
            StreamEvent::Unknown => "unknown",
        }
    }

    /// Whether this event carries a generated token (a delta with
    /// [`BlockDelta::has_token`]); `message_start`, `content_block_start` and `ping` never do.
    pub fn has_token(&self) -> bool {
        matches!(self, StreamEvent::ContentBlockDelta { delta, .. } if delta.has_token())
    }

    /// Whether this event ends the stream (`message_stop` or `error`).
    pub fn is_terminal(&self) -> bool {
        matches!(self, StreamEvent::MessageStop | StreamEvent::Error { .. })
    }

    /// The event framed for the wire: `event: <name>` plus its JSON as `data:`.
    pub fn to_sse(&self) -> Result<SseEvent, serde_json::Error> {
        Ok(SseEvent::named(self.name(), serde_json::to_string(self)?))
    }
}

/// The `delta` of a `content_block_delta` event, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    /// Text fragment.
    TextDelta {
        /// The fragment.
        text: String,
    },
    /// Thinking fragment.
    ThinkingDelta {
        /// The fragment.
        thinking: String,
    },
    /// Tool-input fragment; the fragments of a block join into its JSON `input`.
    InputJsonDelta {
        /// The fragment (may be empty).
        partial_json: String,
    },
    /// The thinking block's signature, sent just before `content_block_stop`.
    SignatureDelta {
        /// The signature.
        signature: String,
    },
    /// A citation attached to the current text block.
    CitationsDelta {
        /// The citation, kept as raw JSON.
        citation: serde_json::Value,
    },
    /// Any delta type this crate does not know.
    #[serde(other)]
    Unknown,
}

impl BlockDelta {
    /// Whether this fragment carries generated output: non-empty text, thinking or tool
    /// input. Signatures, citations and unknown deltas never count.
    pub fn has_token(&self) -> bool {
        match self {
            BlockDelta::TextDelta { text } => !text.is_empty(),
            BlockDelta::ThinkingDelta { thinking } => !thinking.is_empty(),
            BlockDelta::InputJsonDelta { partial_json } => !partial_json.is_empty(),
            BlockDelta::SignatureDelta { .. }
            | BlockDelta::CitationsDelta { .. }
            | BlockDelta::Unknown => false,
        }
    }
}

/// The `delta` of a `message_delta` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageDeltaBody {
    /// Why generation stopped (always serialized).
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// The custom stop sequence that matched, or `null` (always serialized).
    #[serde(default)]
    pub stop_sequence: Option<String>,
}

/// The `usage` of a `message_delta` event. Counts are **cumulative**; older streams send
/// only `output_tokens`, so take input counts from `message_start` when these are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeltaUsage {
    /// Generated tokens so far.
    pub output_tokens: u64,
    /// Uncached input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Input tokens written to the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}
