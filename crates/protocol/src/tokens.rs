//! The input-token estimate tokenpace uses wherever it must count tokens before a provider
//! does: the simulator's `usage.prompt_tokens` and the gateway's TPM admission control.
//!
//! Both call these functions, so they agree exactly; the numbers are an **estimate** of
//! what a provider bills (close to OpenAI's for text chats, further off for images, audio,
//! tool schemas and other providers' tokenizers). Every count uses the `o200k_base`
//! encoding (GPT-4o and later) with special tokens treated as plain text.
//!
//! The formula for a chat, after OpenAI's cookbook:
//! - per message: 3 + tokens(role) + tokens(content text) + tokens(name) + 1 if a name is
//!   given + tokens(JSON of its tool calls) if any;
//! - plus 3 for the priming of the reply;
//! - plus tokens(JSON of the `tools` array) when tools are given.
//!
//! Anthropic requests use the same formula, with the system prompt counted as one more
//! message (role `system`) and `tool_use` inputs counted as their JSON.

use tiktoken_rs::CoreBPE;

use crate::anthropic::MessagesRequest;
use crate::openai::{ChatCompletionRequest, CompletionRequest, Prompt};

/// Tokens every message adds beyond its text (the chat template's markers).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens a message's `name` adds beyond its text.
pub const TOKENS_PER_NAME: u64 = 1;
/// Tokens that prime the assistant's reply.
pub const REPLY_PRIMING_TOKENS: u64 = 3;

/// The `o200k_base` encoder, built on first use (it takes a moment) and shared after.
///
/// tiktoken-rs keeps it in a process-wide lazy static; building it can only fail if the
/// vocabulary compiled into tiktoken-rs is corrupt, a build defect rather than an input.
pub fn o200k() -> &'static CoreBPE {
    tiktoken_rs::o200k_base_singleton()
}

/// Tokens of a plain text (special-token strings such as `<|endoftext|>` count as text).
pub fn count_text(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    len_u64(o200k().encode_ordinary(text).len())
}

/// Estimated prompt tokens of a chat request (see the module docs for the formula).
/// Content parts without text (images, audio, files) count nothing.
pub fn count_chat_input(request: &ChatCompletionRequest) -> u64 {
    let mut total = REPLY_PRIMING_TOKENS;
    for message in &request.messages {
        total += TOKENS_PER_MESSAGE + count_text(&message.role) + count_text(&message.text());
        if let Some(name) = &message.name {
            total += count_text(name) + TOKENS_PER_NAME;
        }
        if let Some(calls) = &message.tool_calls {
            total += count_json(calls);
        }
    }
    if let Some(tools) = &request.tools {
        total += count_json(tools);
    }
    total
}

/// Prompt tokens of a legacy completion request: text prompts are encoded, token-id
/// prompts count their ids; several prompts add up.
pub fn count_completion_input(request: &CompletionRequest) -> u64 {
    match &request.prompt {
        Prompt::Text(text) => count_text(text),
        Prompt::Texts(texts) => texts.iter().map(|t| count_text(t)).sum(),
        Prompt::Tokens(ids) => len_u64(ids.len()),
        Prompt::TokenBatches(batches) => batches.iter().map(|b| len_u64(b.len())).sum(),
    }
}

/// Estimated input tokens of an Anthropic Messages request (see the module docs).
pub fn count_messages_input(request: &MessagesRequest) -> u64 {
    let mut total = REPLY_PRIMING_TOKENS;
    if let Some(system) = &request.system {
        total += TOKENS_PER_MESSAGE + count_text("system") + count_text(&system.text());
    }
    for message in &request.messages {
        total += TOKENS_PER_MESSAGE + count_text(&message.role) + count_text(&message.text());
        for input in message.content.tool_use_inputs() {
            total += count_json(input);
        }
    }
    if let Some(tools) = &request.tools {
        total += count_json(tools);
    }
    total
}

/// Tokens of a value's compact JSON text.
fn count_json<T: serde::Serialize + ?Sized>(value: &T) -> u64 {
    // Serializing in-memory JSON values cannot fail (all map keys are strings).
    serde_json::to_string(value).map_or(0, |json| count_text(&json))
}

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::ChatMessage;

    #[test]
    fn empty_text_is_zero_and_words_count() {
        assert_eq!(count_text(""), 0);
        assert_eq!(count_text("hello"), 1);
        assert!(count_text("The quick brown fox jumps over the lazy dog.") >= 9);
    }

    #[test]
    fn special_token_text_is_plain_text() {
        assert!(count_text("<|endoftext|>") > 1);
    }

    #[test]
    fn chat_formula_adds_overheads() {
        let request = ChatCompletionRequest {
            model: "m".into(),
            messages: vec![ChatMessage::new("user", "hello")],
            ..Default::default()
        };
        // 3 (priming) + 3 (message) + 1 ("user") + 1 ("hello")
        assert_eq!(count_chat_input(&request), 8);
        let mut named = request.clone();
        named.messages[0].name = Some("bob".into());
        assert_eq!(count_chat_input(&named), 8 + count_text("bob") + 1);
    }
}
