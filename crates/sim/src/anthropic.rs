//! The Anthropic dialect of the simulator: the Messages response, the streaming event
//! sequence (`message_start`, `content_block_start`, `ping`, `content_block_delta`,
//! `content_block_stop`, `message_delta` with cumulative usage, `message_stop`), thinking
//! blocks for reasoning tokens, and Anthropic's error body.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::emit::{Collected, Counts, Dialect, Kind};
use crate::plan::Finish;

/// The `stop_reason` of a plan's end.
pub fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
    }
}

/// An Anthropic error body.
pub fn error_body(kind: &str, message: &str, request_id: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id})
}

/// The error `type` Anthropic uses for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

fn usage(c: Counts, output: u64) -> Value {
    json!({
        "input_tokens": c.input,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output,
        "service_tier": "standard"
    })
}

/// A fixed signature for simulated thinking blocks (clients pass it back verbatim).
const SIGNATURE: &str = "c2ltdWxhdGVkLXRoaW5raW5nLXNpZ25hdHVyZQ==";

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The streaming event sequence of one message.
pub struct MessagesDialect {
    id: String,
    model: String,
    input_tokens: u64,
    thinking_first: bool,
    /// Index and kind of the open content block.
    open_block: Option<(u32, Kind)>,
    next_index: u32,
}

impl MessagesDialect {
    /// A dialect for one stream; `thinking_first` when the plan has reasoning tokens.
    pub fn new(id: &str, model: &str, input_tokens: u64, thinking_first: bool) -> Self {
        MessagesDialect {
            id: id.into(),
            model: model.into(),
            input_tokens,
            thinking_first,
            open_block: None,
            next_index: 0,
        }
    }

    fn start_block(&mut self, kind: Kind, out: &mut String) {
        let index = self.next_index;
        self.next_index += 1;
        let block = match kind {
            Kind::Reasoning => json!({"type": "thinking", "thinking": "", "signature": ""}),
            Kind::Content => json!({"type": "text", "text": ""}),
        };
        out.push_str(&event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        self.open_block = Some((index, kind));
    }

    fn stop_block(&mut self, out: &mut String) {
        if let Some((index, kind)) = self.open_block.take() {
            if kind == Kind::Reasoning {
                out.push_str(&event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                            "delta": {"type": "signature_delta", "signature": SIGNATURE}}),
                ));
            }
            out.push_str(&event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }
}

impl Dialect for MessagesDialect {
    fn open(&mut self) -> Bytes {
        let message = json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage(Counts { input: self.input_tokens, ..Counts::default() }, 1)
        });
        let mut out = event(
            "message_start",
            &json!({"type": "message_start", "message": message}),
        );
        let first = if self.thinking_first {
            Kind::Reasoning
        } else {
            Kind::Content
        };
        self.start_block(first, &mut out);
        out.push_str(&event("ping", &json!({"type": "ping"})));
        Bytes::from(out)
    }

    fn tokens(&mut self, kind: Kind, text: &str) -> Bytes {
        let mut out = String::new();
        if self.open_block.map(|(_, k)| k) != Some(kind) {
            self.stop_block(&mut out);
            self.start_block(kind, &mut out);
        }
        let index = self.open_block.map(|(i, _)| i).unwrap_or(0);
        let delta = match kind {
            Kind::Reasoning => json!({"type": "thinking_delta", "thinking": text}),
            Kind::Content => json!({"type": "text_delta", "text": text}),
        };
        out.push_str(&event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
        Bytes::from(out)
    }

    fn close(&mut self, finish: Finish, counts: Counts) -> Bytes {
        let mut out = String::new();
        self.stop_block(&mut out);
        out.push_str(&event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(finish), "stop_sequence": null},
                "usage": {
                    "input_tokens": counts.input,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": counts.output
                }
            }),
        ));
        out.push_str(&event("message_stop", &json!({"type": "message_stop"})));
        Bytes::from(out)
    }

    fn error(&mut self) -> Bytes {
        Bytes::from(event(
            "error",
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded (simulated in-stream error)"}}),
        ))
    }
}

/// The non-streamed message.
pub fn message_response(id: &str, model: &str, out: &Collected, finish: Finish) -> Value {
    let mut content = Vec::new();
    if !out.reasoning.is_empty() {
        content
            .push(json!({"type": "thinking", "thinking": out.reasoning, "signature": SIGNATURE}));
    }
    if !out.content.is_empty() || content.is_empty() {
        content.push(json!({"type": "text", "text": out.content}));
    }
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": null,
        "usage": usage(out.counts, out.counts.output)
    })
}
