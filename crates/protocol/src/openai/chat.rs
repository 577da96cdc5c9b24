//! OpenAI Chat Completions (`POST /v1/chat/completions`): the request, the non-streaming
//! response and the streaming chunk (api-formats §1.2–§1.5).
//!
//! Every struct keeps the keys it does not model in a flattened `extra` map, so a request
//! or response read by a gateway is written back out unchanged (see
//! [`ChatCompletionRequest`] for the one normalisation: explicit `null` on a known optional
//! request field is dropped). Timing and accounting logic belongs to the callers; this module
//! only offers the small predicates they all need (`has_token`, `output_cap`, ...).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::usage::Usage;

/// `object` of a non-streaming chat response.
pub const CHAT_COMPLETION_OBJECT: &str = "chat.completion";
/// `object` of a streaming chat chunk.
pub const CHAT_COMPLETION_CHUNK_OBJECT: &str = "chat.completion.chunk";
/// The role of every generated message.
pub const ASSISTANT_ROLE: &str = "assistant";

/// Body of `POST /v1/chat/completions`.
///
/// Every documented field of api-formats §1.2 is modelled (all optional except `model` and
/// `messages`), plus the vLLM extensions `ignore_eos` and `min_tokens`; anything else lands in
/// `extra`. Deserializing and serializing again yields the same JSON object, with two
/// normalisations that no API documented here distinguishes: a known optional field sent as
/// `null` is dropped, and numbers read into `f64` fields are written back as floats
/// (`1` becomes `1.0`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// Model name, for example `gpt-4o-mini`.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Deprecated cap on generated tokens; still read by vLLM, llama.cpp and Ollama.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Current cap on generated tokens, reasoning tokens included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature, 0–2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Number of choices (1–128, default 1); each one is billed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Best-effort determinism seed (deprecated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Whether to stream the answer as SSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options; only meaningful with `stream: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Tool definitions, kept as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `"none"`, `"auto"`, `"required"` or an object naming a tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Whether the model may call several tools in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `{"type":"text"}`, `{"type":"json_object"}` or `{"type":"json_schema",...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// End-user id (deprecated in favour of `safety_identifier` and `prompt_cache_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Prompt-cache bucketing hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
    /// Stable end-user id for abuse detection (≤ 64 chars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
    /// Whether to return log probabilities of the output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Number of most likely alternatives per position (0–20; needs `logprobs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// Map of token id (as a string) to a bias in −100..100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<Map<String, Value>>,
    /// Frequency penalty, −2..2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Presence penalty, −2..2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Up to 16 string pairs attached to the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Whether OpenAI stores the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// `auto`, `default`, `flex`, `scale`, `priority` or `fast`; echoed in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// Reasoning effort for reasoning models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Answer verbosity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<String>,
    /// Output modalities, for example `["text", "audio"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modalities: Option<Vec<String>>,
    /// Audio output parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Value>,
    /// Predicted output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Value>,
    /// Web search options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_search_options: Option<Value>,
    /// Prompt-cache options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_options: Option<Value>,
    /// Moderation options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderation: Option<Value>,
    /// Deprecated function definitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<Value>>,
    /// Deprecated function-call choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<Value>,
    /// vLLM extension: keep generating past the end-of-sequence token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// vLLM extension: minimum number of generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u32>,
    /// Keys this crate does not model, passed through unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatCompletionRequest {
    /// The cap on generated tokens: `max_completion_tokens`, else `max_tokens`, else `None`
    /// (no explicit cap: the model's own limit applies).
    pub fn output_cap(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Whether the client asked for an SSE stream (`stream: true`).
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether a streamed answer must end with a usage chunk: `stream: true` and
    /// `stream_options.include_usage: true`. Always false for non-streaming requests, whose
    /// responses carry usage anyway.
    pub fn include_usage(&self) -> bool {
        self.is_stream()
            && self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage == Some(true))
    }

    /// Number of choices requested (`n`, default 1).
    pub fn choice_count(&self) -> u32 {
        self.n.unwrap_or(1)
    }
}

/// `stream_options` of a chat or legacy completion request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a final `choices: []` chunk with the usage of the whole request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Add the random `obfuscation` padding to chunks (OpenAI default: on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_obfuscation: Option<bool>,
    /// Keys this crate does not model (for example vLLM's `continuous_usage_stats`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stop`: one stop sequence or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// A single stop sequence.
    One(String),
    /// Up to 4 stop sequences.
    Many(Vec<String>),
}

impl Stop {
    /// The stop sequences as a list.
    pub fn sequences(&self) -> Vec<&str> {
        match self {
            Stop::One(s) => vec![s.as_str()],
            Stop::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// One message of `messages[]` (any role).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `developer`, `system`, `user`, `assistant`, `tool` or `function`.
    pub role: String,
    /// The content; absent (or `null`) for an assistant message that only calls tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by an assistant message, kept as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Keys this crate does not model (`refusal`, `audio`, `function_call`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatMessage {
    /// A message with a plain-text content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: Some(MessageContent::Text(content.into())),
            ..Self::default()
        }
    }

    /// The text of the content (see [`MessageContent::text`]); empty when there is none.
    pub fn text(&self) -> String {
        self.content
            .as_ref()
            .map(MessageContent::text)
            .unwrap_or_default()
    }
}

/// Message content: a string or an array of content parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Typed parts (`text`, `image_url`, `input_audio`, `file`, ...).
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// The text: the string itself, or the `text` of every part that has one, concatenated
    /// in order without separator. Images, audio and files contribute nothing.
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(s) => s.clone(),
            MessageContent::Parts(parts) => {
                parts.iter().filter_map(|p| p.text.as_deref()).collect()
            }
        }
    }
}

/// One element of an array-form message content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// Part type: `text`, `image_url`, `input_audio`, `file`, `refusal`, ...
    #[serde(rename = "type")]
    pub r#type: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The other keys of the part (`image_url`, `file`, `cache_control`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ContentPart {
    /// A `text` part.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            r#type: "text".to_owned(),
            text: Some(text.into()),
            extra: Map::new(),
        }
    }
}

/// Non-streaming chat response (`object: "chat.completion"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionResponse {
    /// `chatcmpl-...`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered, usually a dated snapshot.
    pub model: String,
    /// One entry per requested choice.
    pub choices: Vec<ChatChoice>,
    /// Token usage; always sent by OpenAI for non-streaming responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Service tier that served the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// Backend fingerprint (`fp_...`; `fp_ollama` for Ollama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Keys this crate does not model (llama.cpp `timings`, `metadata`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatCompletionResponse {
    /// A response with `object: "chat.completion"` and no usage or optional fields.
    pub fn new(
        id: impl Into<String>,
        created: u64,
        model: impl Into<String>,
        choices: Vec<ChatChoice>,
    ) -> Self {
        Self {
            id: id.into(),
            object: CHAT_COMPLETION_OBJECT.to_owned(),
            created,
            model: model.into(),
            choices,
            usage: None,
            service_tier: None,
            system_fingerprint: None,
            extra: Map::new(),
        }
    }
}

/// One choice of a non-streaming chat response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    /// Position of the choice.
    pub index: u32,
    /// The generated message.
    pub message: AssistantMessage,
    /// Log probabilities, `null` unless requested (always serialized).
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// `stop`, `length`, `tool_calls`, `content_filter` or `function_call` (always serialized).
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The `message` of a non-streaming choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// Generated text; `null` when the model only called tools (always serialized).
    #[serde(default)]
    pub content: Option<String>,
    /// Refusal text, or `null` (always serialized).
    #[serde(default)]
    pub refusal: Option<String>,
    /// Reasoning text of compatible servers (vLLM, DeepSeek style).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool calls, kept as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    /// Keys this crate does not model (`annotations`, `audio`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for AssistantMessage {
    fn default() -> Self {
        Self {
            role: ASSISTANT_ROLE.to_owned(),
            content: None,
            refusal: None,
            reasoning_content: None,
            tool_calls: None,
            extra: Map::new(),
        }
    }
}

impl AssistantMessage {
    /// An assistant message with the given text.
    pub fn new(content: impl Into<String>) -> Self {
        Self {
            content: Some(content.into()),
            ..Self::default()
        }
    }
}

/// One streamed chunk (`object: "chat.completion.chunk"`).
///
/// `usage` has three states, mapped by `Option<Option<Usage>>`:
/// `None` = key absent (vLLM, llama.cpp, Ollama, or OpenAI without `include_usage`),
/// `Some(None)` = `"usage": null` (OpenAI on every non-final chunk when usage was requested),
/// `Some(Some(u))` = the usage (the final `choices: []` chunk). Use
/// [`ChatCompletionChunk::reported_usage`] when only the value matters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Same for every chunk of a stream.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds; same for every chunk of a stream.
    pub created: u64,
    /// The model that answers.
    pub model: String,
    /// Usually one entry; empty in the final usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Three-state usage, see the type documentation.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::nullable"
    )]
    pub usage: Option<Option<Usage>>,
    /// Service tier that serves the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// Backend fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Random padding against size side channels; clients ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obfuscation: Option<String>,
    /// Keys this crate does not model (llama.cpp `timings`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatCompletionChunk {
    /// A chunk with `object: "chat.completion.chunk"` and no usage or optional fields.
    pub fn new(
        id: impl Into<String>,
        created: u64,
        model: impl Into<String>,
        choices: Vec<ChunkChoice>,
    ) -> Self {
        Self {
            id: id.into(),
            object: CHAT_COMPLETION_CHUNK_OBJECT.to_owned(),
            created,
            model: model.into(),
            choices,
            usage: None,
            service_tier: None,
            system_fingerprint: None,
            obfuscation: None,
            extra: Map::new(),
        }
    }

    /// The usage if this chunk carries one (absent and `null` both give `None`).
    pub fn reported_usage(&self) -> Option<&Usage> {
        self.usage.as_ref().and_then(Option::as_ref)
    }

    /// Whether any choice of this chunk carries a generated token (see
    /// [`ChunkDelta::has_token`]).
    pub fn has_token(&self) -> bool {
        self.choices.iter().any(|c| c.delta.has_token())
    }
}

/// One choice of a streamed chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Position of the choice.
    pub index: u32,
    /// What this chunk adds to the choice.
    pub delta: ChunkDelta,
    /// Log probabilities, `null` unless requested (always serialized).
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// `null` until the choice ends (always serialized).
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The `delta` of a streamed choice.
///
/// `content` and `refusal` are three-state like [`ChatCompletionChunk::usage`]: `None` =
/// absent, `Some(None)` = `null` (llama.cpp's role chunk; OpenAI's `"refusal": null`),
/// `Some(Some(s))` = a string, possibly empty (OpenAI's role chunk has `"content": ""`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkDelta {
    /// `assistant`, normally only in the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Text fragment (three-state).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::nullable"
    )]
    pub content: Option<Option<String>>,
    /// Reasoning fragment of compatible servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Refusal fragment (three-state).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::nullable"
    )]
    pub refusal: Option<Option<String>>,
    /// Tool-call fragments, joined by the client by their `index`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    /// Keys this crate does not model (Ollama's `reasoning`, `function_call`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChunkDelta {
    /// The opening delta OpenAI sends: `{"role":"assistant","content":""}`.
    pub fn assistant_role() -> Self {
        Self {
            role: Some(ASSISTANT_ROLE.to_owned()),
            content: Some(Some(String::new())),
            ..Self::default()
        }
    }

    /// A delta carrying a text fragment.
    pub fn with_content(text: impl Into<String>) -> Self {
        Self {
            content: Some(Some(text.into())),
            ..Self::default()
        }
    }

    /// The text fragment, if any (absent and `null` both give `None`).
    pub fn content_str(&self) -> Option<&str> {
        self.content.as_ref().and_then(|c| c.as_deref())
    }

    /// Whether this delta carries generated output, the event TTFT is measured to: a
    /// non-empty `content`, `reasoning_content` or `refusal`, a non-empty `reasoning` string
    /// (Ollama and newer vLLM spell it so), or at least one tool-call fragment. A role-only
    /// chunk, `"content": ""`, `"content": null` and an empty delta never count.
    pub fn has_token(&self) -> bool {
        carries_token(
            self.content_str(),
            self.reasoning_content.as_deref(),
            self.refusal.as_ref().and_then(|r| r.as_deref()),
            self.extra.get("reasoning").and_then(Value::as_str),
            self.tool_calls.as_deref(),
        )
    }
}

/// The one rule for "this delta carries a generated token", shared by [`ChunkDelta`] and
/// [`DeltaView`].
fn carries_token(
    content: Option<&str>,
    reasoning_content: Option<&str>,
    refusal: Option<&str>,
    reasoning: Option<&str>,
    tool_calls: Option<&[Value]>,
) -> bool {
    let non_empty = |s: Option<&str>| s.is_some_and(|s| !s.is_empty());
    non_empty(content)
        || non_empty(reasoning_content)
        || non_empty(refusal)
        || non_empty(reasoning)
        || tool_calls.is_some_and(|t| !t.is_empty())
}

/// A borrowed view of a chunk's `delta` for hot paths (a measuring client reads one per
/// token): only the fields that decide whether it carries a token and what text it adds,
/// borrowed from the event's JSON where no unescaping is needed, with no catch-all map.
/// `null` and absent read alike (`None`); [`DeltaView::has_token`] applies the same rule as
/// [`ChunkDelta::has_token`].
#[derive(Debug, Default, Deserialize)]
pub struct DeltaView<'a> {
    /// Visible text.
    #[serde(borrow, default)]
    pub content: Option<std::borrow::Cow<'a, str>>,
    /// Reasoning text (vLLM, DeepSeek).
    #[serde(borrow, default)]
    pub reasoning_content: Option<std::borrow::Cow<'a, str>>,
    /// Reasoning text (Ollama, newer vLLM).
    #[serde(borrow, default)]
    pub reasoning: Option<std::borrow::Cow<'a, str>>,
    /// A refusal.
    #[serde(borrow, default)]
    pub refusal: Option<std::borrow::Cow<'a, str>>,
    /// Tool-call fragments.
    #[serde(default)]
    pub tool_calls: Option<Vec<Value>>,
}

impl DeltaView<'_> {
    /// Whether this delta carries generated output (see [`ChunkDelta::has_token`]).
    pub fn has_token(&self) -> bool {
        carries_token(
            self.content.as_deref(),
            self.reasoning_content.as_deref(),
            self.refusal.as_deref(),
            self.reasoning.as_deref(),
            self.tool_calls.as_deref(),
        )
    }
}

#[cfg(test)]
mod delta_view_tests {
    use super::*;

    #[test]
    fn the_view_and_the_full_delta_agree() {
        let cases = [
            (r#"{"role":"assistant","content":"","refusal":null}"#, false),
            (r#"{"role":"assistant","content":null}"#, false),
            (r#"{}"#, false),
            (r#"{"content":"Hi"}"#, true),
            (r#"{"content":"a \"quoted\" word"}"#, true),
            (r#"{"reasoning_content":"think"}"#, true),
            (r#"{"reasoning":"think"}"#, true),
            (r#"{"refusal":"no"}"#, true),
            (
                r#"{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}"#,
                true,
            ),
            (r#"{"tool_calls":[]}"#, false),
            (r#"{"content":"","unknown":1}"#, false),
        ];
        for (json, expected) in cases {
            let full: ChunkDelta = serde_json::from_str(json).unwrap();
            let view: DeltaView<'_> = serde_json::from_str(json).unwrap();
            assert_eq!(full.has_token(), expected, "{json}");
            assert_eq!(view.has_token(), expected, "{json}");
        }
        let view: DeltaView<'_> = serde_json::from_str(r#"{"content":"a \"q\""}"#).unwrap();
        assert_eq!(
            view.content.as_deref(),
            Some("a \"q\""),
            "escapes are decoded"
        );
    }
}
