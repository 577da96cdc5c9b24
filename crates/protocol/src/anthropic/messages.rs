//! Anthropic Messages API (`POST /v1/messages`, api-formats §4.2–§4.3): the request, the
//! non-streaming response, content blocks and usage.
//!
//! Conventions match the OpenAI types: keys this crate does not model are kept in `extra`
//! and passed through unchanged. Content blocks tokenpace does not know (server-tool
//! blocks, future types) are kept as raw JSON in [`ContentBlock::Unknown`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `type` of a non-streaming Messages response.
pub const MESSAGE_TYPE: &str = "message";

/// Body of `POST /v1/messages`.
///
/// Deserializing and serializing again yields the same JSON object, except that a known
/// optional field sent as `null` is dropped and numbers read into `f64` fields come back
/// as floats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// Model name, for example `claude-sonnet-4-20250514`.
    pub model: String,
    /// Cap on generated tokens. **Required by the API**; an `Option` here only so that a
    /// request without it can be parsed and then rejected with Anthropic's own error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The conversation; the last message may be an assistant prefill.
    pub messages: Vec<AnthropicMessage>,
    /// Top-level system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemPrompt>,
    /// Whether to stream the answer as SSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Custom stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Sampling temperature, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Tool definitions, kept as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `{"type":"auto"|"any"|"tool"|"none", ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// `{"user_id": "..."}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Extended thinking: `{"type":"enabled","budget_tokens":N}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
    /// `auto` or `standard_only`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// Keys this crate does not model (`cache_control`, `container`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MessagesRequest {
    /// Whether the client asked for an SSE stream.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// The cap on generated tokens (`max_tokens`, which the API requires).
    pub fn output_cap(&self) -> Option<u32> {
        self.max_tokens
    }
}

/// The top-level `system` field: a string or an array of text blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SystemPrompt {
    /// Plain text.
    Text(String),
    /// `{"type":"text","text":...,"cache_control"?}` blocks, kept as raw JSON.
    Blocks(Vec<Value>),
}

impl SystemPrompt {
    /// The text: the string, or the `text` of every block concatenated in order.
    pub fn text(&self) -> String {
        match self {
            SystemPrompt::Text(s) => s.clone(),
            SystemPrompt::Blocks(blocks) => {
                let mut out = String::new();
                for block in blocks {
                    push_block_text(block, &mut out);
                }
                out
            }
        }
    }
}

/// One message of `messages[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnthropicMessage {
    /// `user` or `assistant` (newer APIs also allow `system`).
    pub role: String,
    /// A string or an array of content blocks.
    pub content: AnthropicContent,
    /// Keys this crate does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AnthropicMessage {
    /// A message with a plain-text content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: AnthropicContent::Text(content.into()),
            extra: Map::new(),
        }
    }

    /// The text of the content, see [`AnthropicContent::text`].
    pub fn text(&self) -> String {
        self.content.text()
    }
}

/// Message content: a string or an array of blocks (`text`, `image`, `tool_use`,
/// `tool_result`, ...), the blocks kept as raw JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AnthropicContent {
    /// Plain text.
    Text(String),
    /// Content blocks.
    Blocks(Vec<Value>),
}

impl AnthropicContent {
    /// The text, concatenated in order without separator: the string itself, the `text`
    /// of `text` blocks, and the content of `tool_result` blocks (a string or nested text
    /// blocks). Images, documents and `tool_use` inputs contribute nothing.
    pub fn text(&self) -> String {
        match self {
            AnthropicContent::Text(s) => s.clone(),
            AnthropicContent::Blocks(blocks) => {
                let mut out = String::new();
                for block in blocks {
                    push_block_text(block, &mut out);
                }
                out
            }
        }
    }

    /// The raw `input` objects of the `tool_use` blocks (for token estimates).
    pub fn tool_use_inputs(&self) -> impl Iterator<Item = &Value> {
        let blocks: &[Value] = match self {
            AnthropicContent::Text(_) => &[],
            AnthropicContent::Blocks(blocks) => blocks,
        };
        blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
            .filter_map(|b| b.get("input"))
    }
}

/// Appends the text of one request block: `text` blocks and `tool_result` contents.
fn push_block_text(block: &Value, out: &mut String) {
    match block.get("type").and_then(Value::as_str) {
        Some("text") => {
            if let Some(text) = block.get("text").and_then(Value::as_str) {
                out.push_str(text);
            }
        }
        Some("tool_result") => match block.get("content") {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Array(inner)) => {
                for b in inner {
                    push_block_text(b, out);
                }
            }
            _ => {}
        },
        _ => {}
    }
}

/// Non-streaming Messages response (`type: "message"`), also the `message` of a
/// `message_start` event (then with empty `content` and `null` `stop_reason`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    /// `msg_...`.
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type")]
    pub r#type: String,
    /// Always `assistant`.
    pub role: String,
    /// The model that answered.
    pub model: String,
    /// Generated content blocks.
    pub content: Vec<ContentBlock>,
    /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, `pause_turn`, `refusal`, ...;
    /// `null` only in `message_start` (always serialized).
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// The custom stop sequence that matched, or `null` (always serialized).
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Token usage.
    pub usage: AnthropicUsage,
    /// Keys this crate does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MessagesResponse {
    /// A response with `type: "message"`, `role: "assistant"` and no stop reason yet.
    pub fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        content: Vec<ContentBlock>,
        usage: AnthropicUsage,
    ) -> Self {
        Self {
            id: id.into(),
            r#type: MESSAGE_TYPE.to_owned(),
            role: "assistant".to_owned(),
            model: model.into(),
            content,
            stop_reason: None,
            stop_sequence: None,
            usage,
            extra: Map::new(),
        }
    }

    /// The text of all `text` blocks, concatenated.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A response content block, tagged by `type`.
///
/// Block types this crate does not model (server-tool blocks, future additions), and known
/// types whose body does not match, are kept verbatim in `Unknown` and serialized back
/// unchanged. A `text` block's optional `citations` are not modelled and are dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Generated text.
    Text {
        /// The text.
        text: String,
    },
    /// Extended-thinking text.
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// Integrity signature. `content_block_start` leaves it out (it arrives later as a
        /// `signature_delta`), so an empty signature is read from and written as no key.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        signature: String,
    },
    /// Thinking the API returns encrypted.
    RedactedThinking {
        /// Opaque data.
        data: String,
    },
    /// A tool call.
    ToolUse {
        /// `toolu_...`.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments as a JSON object (`{}` in `content_block_start`).
        input: Value,
    },
    /// Any other block, kept as raw JSON (including its `type`).
    #[serde(untagged)]
    Unknown(Value),
}

/// Anthropic usage.
///
/// Total input is `input_tokens + cache_creation_input_tokens + cache_read_input_tokens`
/// (unlike OpenAI, where cached tokens are a subset of the prompt tokens).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnthropicUsage {
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    /// Cache writes by TTL (`ephemeral_5m_input_tokens`, `ephemeral_1h_input_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation: Option<Value>,
    /// Generated tokens (never 0 in a final response).
    pub output_tokens: u64,
    /// `standard`, `priority` or `batch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// Keys this crate does not model (`server_tool_use`, `inference_geo`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AnthropicUsage {
    /// Usage with the given input and output counts and nothing else.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            ..Self::default()
        }
    }

    /// All input tokens: uncached + cache writes + cache reads.
    pub fn total_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
            .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
    }
}
