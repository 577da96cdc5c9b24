//! OpenAI wire types: Chat Completions, legacy Completions, model listing, error bodies
//! and usage, as documented in api-formats §1 and as compatible servers (vLLM, llama.cpp,
//! Ollama) actually send them (§6).
//!
//! Types model what tokenpace reads or writes and keep every other key in a flattened
//! `extra` map, so a gateway can pass payloads through unchanged. Sending, timing and
//! retrying them belong to the client and gateway crates.

mod chat;
mod completions;
mod error;
mod models;
mod stream;
mod usage;

pub use chat::{
    ASSISTANT_ROLE, AssistantMessage, CHAT_COMPLETION_CHUNK_OBJECT, CHAT_COMPLETION_OBJECT,
    ChatChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage,
    ChunkChoice, ChunkDelta, ContentPart, DeltaView, MessageContent, Stop, StreamOptions,
};
pub use completions::{
    CompletionChoice, CompletionChunk, CompletionRequest, CompletionResponse,
    DEFAULT_COMPLETION_MAX_TOKENS, Prompt, TEXT_COMPLETION_OBJECT,
};
pub use error::{
    ErrorBody, ErrorDetail, INSUFFICIENT_QUOTA, INVALID_REQUEST_ERROR, MODEL_NOT_FOUND,
    RATE_LIMIT_EXCEEDED, SERVER_ERROR,
};
pub use models::{Model, ModelList};
pub use stream::StreamData;
pub use usage::{CompletionTokensDetails, PromptTokensDetails, Usage};
