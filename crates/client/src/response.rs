//! Whole (non-streamed) response bodies: the success body of each dialect (text, usage,
//! finish reason, outcome) and error bodies (the provider's message and the error class of
//! the status).

use std::time::Duration;

use protocol::anthropic::{ContentBlock, MessagesResponse};
use protocol::openai::{ChatCompletionResponse, CompletionResponse};
use serde_json::Value;

use crate::error::ErrorClass;
use crate::ledger::{Completion, UsageCounts};
use crate::request::WireDialect;
use crate::stream::classify::{anthropic_usage, error_text, openai_usage, push_tool_arguments};

/// What a whole success body says.
pub(crate) struct DecodedBody {
    pub(crate) text: String,
    pub(crate) usage: Option<UsageCounts>,
    pub(crate) outcome: Result<Completion, ErrorClass>,
}

impl DecodedBody {
    fn failed(class: ErrorClass) -> Self {
        DecodedBody {
            text: String::new(),
            usage: None,
            outcome: Err(class),
        }
    }
}

/// Decodes a complete 2xx JSON body in `dialect`.
pub(crate) fn decode_body(dialect: WireDialect, bytes: &[u8]) -> DecodedBody {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        // A body that stops mid-JSON was cut short.
        Err(e) if e.is_eof() => return DecodedBody::failed(ErrorClass::Truncated),
        Err(e) => {
            return DecodedBody::failed(ErrorClass::Protocol(format!(
                "the response body is not JSON ({e}): {}",
                preview(bytes)
            )));
        }
    };
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return DecodedBody::failed(ErrorClass::InStreamError(error_text(error)));
    }
    let mut text = String::new();
    let (usage, finish_reason) = match dialect {
        WireDialect::OpenAiChat => {
            let r: ChatCompletionResponse = match serde_json::from_value(value) {
                Ok(r) => r,
                Err(e) => return shape_error("chat completion", &e),
            };
            let mut finish = None;
            for choice in &r.choices {
                let m = &choice.message;
                for part in [&m.reasoning_content, &m.content, &m.refusal] {
                    text.push_str(part.as_deref().unwrap_or_default());
                }
                if let Some(calls) = &m.tool_calls {
                    push_tool_arguments(calls, &mut text);
                }
                finish = finish.or_else(|| choice.finish_reason.clone());
            }
            (r.usage.as_ref().map(openai_usage), finish)
        }
        WireDialect::OpenAiCompletion => {
            let r: CompletionResponse = match serde_json::from_value(value) {
                Ok(r) => r,
                Err(e) => return shape_error("text completion", &e),
            };
            let mut finish = None;
            for choice in &r.choices {
                text.push_str(&choice.text);
                finish = finish.or_else(|| choice.finish_reason.clone());
            }
            (r.usage.as_ref().map(openai_usage), finish)
        }
        WireDialect::AnthropicMessages => {
            let r: MessagesResponse = match serde_json::from_value(value) {
                Ok(r) => r,
                Err(e) => return shape_error("Anthropic message", &e),
            };
            for block in &r.content {
                match block {
                    ContentBlock::Text { text: t } => text.push_str(t),
                    ContentBlock::Thinking { thinking, .. } => text.push_str(thinking),
                    ContentBlock::ToolUse { input, .. } => text.push_str(&input.to_string()),
                    ContentBlock::RedactedThinking { .. } | ContentBlock::Unknown(_) => {}
                }
            }
            let u = &r.usage;
            let usage = anthropic_usage(
                u.input_tokens,
                u.cache_creation_input_tokens.unwrap_or(0),
                u.cache_read_input_tokens.unwrap_or(0),
                u.output_tokens,
            );
            (Some(usage), r.stop_reason.clone())
        }
    };
    let outcome = if text.is_empty() {
        Err(ErrorClass::Empty)
    } else {
        Ok(Completion { finish_reason })
    };
    DecodedBody {
        text,
        usage,
        outcome,
    }
}

fn shape_error(what: &str, e: &serde_json::Error) -> DecodedBody {
    DecodedBody::failed(ErrorClass::Protocol(format!(
        "the response body is JSON but not a {what} ({e})"
    )))
}

/// The first 300 characters of a body, for messages.
pub(crate) fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The message of an error body: OpenAI and Anthropic `error.message`, vLLM's flat
/// `message`, FastAPI's `detail`, or the start of the raw body.
pub(crate) fn error_message(bytes: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        let found = v
            .get("error")
            .filter(|e| !e.is_null())
            .map(error_text)
            .or_else(|| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .or_else(|| {
                v.get("detail")
                    .map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_owned))
            });
        if let Some(message) = found {
            return message;
        }
    }
    let text = preview(bytes);
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text
    }
}

/// The error class of a non-2xx status.
pub(crate) fn status_error(
    status: u16,
    message: String,
    retry_after: Option<Duration>,
) -> ErrorClass {
    match status {
        429 => ErrorClass::RateLimited {
            retry_after,
            message,
        },
        400..=499 => ErrorClass::Http4xx { status, message },
        500..=599 => ErrorClass::Http5xx { status, message },
        _ => ErrorClass::Protocol(format!("unexpected HTTP status {status}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_body() {
        let body = br#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","reasoning_content":"hm"},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}}"#;
        let d = decode_body(WireDialect::OpenAiChat, body);
        assert_eq!(d.text, "hmHi");
        assert_eq!(d.usage.unwrap().output, 3);
        assert_eq!(d.outcome.unwrap().finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn anthropic_body_totals_input() {
        let body = br#"{"id":"m","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":20,"output_tokens":2}}"#;
        let d = decode_body(WireDialect::AnthropicMessages, body);
        let u = d.usage.unwrap();
        assert_eq!(
            (u.input, u.cached_input, u.cache_write, u.output),
            (35, 20, 5, 2)
        );
        assert_eq!(
            d.outcome.unwrap().finish_reason.as_deref(),
            Some("end_turn")
        );
    }

    #[test]
    fn cut_bodies_errors_and_garbage() {
        let d = decode_body(WireDialect::OpenAiChat, br#"{"id":"c","choi"#);
        assert_eq!(d.outcome, Err(ErrorClass::Truncated));
        let d = decode_body(WireDialect::OpenAiChat, b"<html>");
        assert!(matches!(d.outcome, Err(ErrorClass::Protocol(_))));
        let d = decode_body(WireDialect::OpenAiChat, br#"{"x":1}"#);
        assert!(matches!(d.outcome, Err(ErrorClass::Protocol(m)) if m.contains("chat completion")));
        let d = decode_body(WireDialect::OpenAiChat, br#"{"error":{"message":"nope"}}"#);
        assert_eq!(d.outcome, Err(ErrorClass::InStreamError("nope".into())));
        let empty = br#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"stop"}]}"#;
        assert_eq!(
            decode_body(WireDialect::OpenAiChat, empty).outcome,
            Err(ErrorClass::Empty)
        );
    }

    #[test]
    fn error_messages_and_classes() {
        assert_eq!(
            error_message(br#"{"error":{"message":"m1","type":"t"}}"#),
            "m1"
        );
        assert_eq!(
            error_message(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            "Overloaded"
        );
        assert_eq!(error_message(br#"{"object":"error","message":"m2"}"#), "m2");
        assert_eq!(error_message(br#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(error_message(b"  Bad Gateway \n"), "Bad Gateway");
        assert_eq!(error_message(b""), "(empty body)");
        assert!(matches!(
            status_error(429, "x".into(), None),
            ErrorClass::RateLimited { .. }
        ));
        assert!(matches!(
            status_error(404, "x".into(), None),
            ErrorClass::Http4xx { status: 404, .. }
        ));
        assert!(matches!(
            status_error(529, "x".into(), None),
            ErrorClass::Http5xx { status: 529, .. }
        ));
        assert!(matches!(
            status_error(302, "x".into(), None),
            ErrorClass::Protocol(_)
        ));
    }
}
