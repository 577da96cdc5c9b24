//! Legacy OpenAI text completions (`POST /v1/completions`, api-formats §1.7): request,
//! response and streaming chunk.
//!
//! Same conventions as the chat types: unknown keys are kept in `extra`, and the streaming
//! chunk's `usage` is three-state. Still served by vLLM, llama.cpp and Ollama.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::chat::{Stop, StreamOptions};
use super::usage::Usage;

/// `object` of legacy completion responses and of their streamed chunks.
pub const TEXT_COMPLETION_OBJECT: &str = "text_completion";

/// The `max_tokens` OpenAI applies to a legacy completion that does not set it.
pub const DEFAULT_COMPLETION_MAX_TOKENS: u32 = 16;

/// Body of `POST /v1/completions`.
///
/// Round-trips like [`super::ChatCompletionRequest`]: unknown keys (`logit_bias`, penalties,
/// ...) are kept in `extra`; a known optional field sent as `null` is dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// Model name.
    pub model: String,
    /// The prompt in any of its four forms.
    pub prompt: Prompt,
    /// Cap on generated tokens; OpenAI's default is 16 ([`DEFAULT_COMPLETION_MAX_TOKENS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Whether to stream the answer as SSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Number of choices per prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Best-effort determinism seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Echo the prompt before the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    /// Text that comes after the completion (insert mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Number of most likely tokens to return log probabilities for (0–5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    /// Candidates generated server-side per returned choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<u32>,
    /// End-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
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

impl CompletionRequest {
    /// A request for one text prompt with no options set.
    pub fn new(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            prompt: Prompt::Text(prompt.into()),
            max_tokens: None,
            stream: None,
            stream_options: None,
            temperature: None,
            top_p: None,
            n: None,
            stop: None,
            seed: None,
            echo: None,
            suffix: None,
            logprobs: None,
            best_of: None,
            user: None,
            ignore_eos: None,
            min_tokens: None,
            extra: Map::new(),
        }
    }

    /// The cap on generated tokens, with OpenAI's default of 16 applied.
    pub fn output_cap(&self) -> u32 {
        self.max_tokens.unwrap_or(DEFAULT_COMPLETION_MAX_TOKENS)
    }

    /// Whether the client asked for an SSE stream.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether a streamed answer must end with a usage chunk (`stream: true` and
    /// `stream_options.include_usage: true`).
    pub fn include_usage(&self) -> bool {
        self.is_stream()
            && self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage == Some(true))
    }
}

/// The `prompt` of a legacy completion request.
///
/// Variant order matters for the untagged match: an empty array reads as `Texts(vec![])`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// One text prompt.
    Text(String),
    /// Several text prompts (one completion each).
    Texts(Vec<String>),
    /// One prompt given as token ids.
    Tokens(Vec<u32>),
    /// Several prompts given as token ids.
    TokenBatches(Vec<Vec<u32>>),
}

impl Prompt {
    /// Number of separate prompts (each gets its own `n` choices).
    pub fn len(&self) -> usize {
        match self {
            Prompt::Text(_) | Prompt::Tokens(_) => 1,
            Prompt::Texts(v) => v.len(),
            Prompt::TokenBatches(v) => v.len(),
        }
    }

    /// Whether there is no prompt at all (an empty array).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Non-streaming legacy completion response (`object: "text_completion"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    /// `cmpl-...`.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// One entry per prompt × `n`.
    pub choices: Vec<CompletionChoice>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Backend fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Keys this crate does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One choice of a legacy completion response or chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionChoice {
    /// Generated text (a fragment in a streamed chunk).
    pub text: String,
    /// Position of the choice.
    pub index: u32,
    /// `null`, or `{tokens, token_logprobs, top_logprobs, text_offset}` (always serialized).
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// `stop`, `length` or `content_filter`; `null` until the end (always serialized).
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// One streamed legacy completion chunk (`object` is also `text_completion`).
///
/// `usage` is three-state exactly like [`super::ChatCompletionChunk::usage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChunk {
    /// Same for every chunk of a stream.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answers.
    pub model: String,
    /// Text fragments; empty in the final usage chunk.
    pub choices: Vec<CompletionChoice>,
    /// Three-state usage: absent, `null`, or the value.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::nullable"
    )]
    pub usage: Option<Option<Usage>>,
    /// Backend fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Keys this crate does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CompletionChunk {
    /// The usage if this chunk carries one (absent and `null` both give `None`).
    pub fn reported_usage(&self) -> Option<&Usage> {
        self.usage.as_ref().and_then(Option::as_ref)
    }

    /// Whether any choice carries a non-empty text fragment.
    pub fn has_token(&self) -> bool {
        self.choices.iter().any(|c| !c.text.is_empty())
    }
}
