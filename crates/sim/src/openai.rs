//! The OpenAI dialect of the simulator: chat completion and legacy completion bodies,
//! stream chunks in OpenAI's exact sequence (role chunk, content chunks, an empty-delta
//! finish chunk, the `choices: []` usage chunk when `include_usage`, `data: [DONE]`), the
//! `obfuscation` padding OpenAI adds by default, and error bodies.
//!
//! Chunks are written from pre-rendered JSON prefixes rather than built as `Value`s: the
//! per-token path is the simulator's hot path and its ceiling is what later benchmarks are
//! judged against. Tests parse every shape back with the `protocol` types.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::emit::{Collected, Counts, Dialect, Kind};
use crate::plan::Finish;

/// Marks every response as simulated.
pub const FINGERPRINT: &str = "fp_tokenpace_sim";

/// The `finish_reason` of a plan's end.
pub fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

/// The `usage` object.
pub fn usage(c: Counts) -> Value {
    json!({
        "prompt_tokens": c.input,
        "completion_tokens": c.output,
        "total_tokens": c.input + c.output,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": c.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

/// An OpenAI error body.
pub fn error_body(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn js(s: &str) -> String {
    // Serialising a &str cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Stream options that shape every chunk.
#[derive(Debug, Clone, Copy)]
pub struct StreamShape {
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `stream_options.include_obfuscation` (default true, as OpenAI).
    pub obfuscation: bool,
}

const PAD: &[u8] = b"r4N7vQ2mp9K3xYa8Zt6WcL1bHs5dJf0G";

/// Padding that evens out chunk sizes to a multiple of 16 bytes of content, like OpenAI's
/// `obfuscation` field (clients must ignore it).
fn obfuscation(content_len: usize, salt: usize) -> String {
    let n = 16 - content_len % 16;
    (0..n)
        .map(|i| PAD[(i + salt) % PAD.len()] as char)
        .collect()
}

/// Chat completion chunks.
pub struct ChatDialect {
    prefix: String,
    shape: StreamShape,
    chunks: usize,
}

impl ChatDialect {
    /// A dialect for one stream.
    pub fn new(id: &str, created: u64, model: &str, shape: StreamShape) -> Self {
        let prefix = format!(
            "data: {{\"id\":{},\"object\":\"chat.completion.chunk\",\"created\":{created},\"model\":{},\"service_tier\":\"default\",\"system_fingerprint\":\"{FINGERPRINT}\",\"choices\":[",
            js(id),
            js(model)
        );
        ChatDialect {
            prefix,
            shape,
            chunks: 0,
        }
    }

    fn chunk(&mut self, choice: &str, pad_basis: usize) -> Bytes {
        self.chunks += 1;
        let mut s = String::with_capacity(self.prefix.len() + choice.len() + 64);
        s.push_str(&self.prefix);
        s.push_str(choice);
        s.push(']');
        if self.shape.include_usage {
            s.push_str(",\"usage\":null");
        }
        if self.shape.obfuscation {
            s.push_str(",\"obfuscation\":\"");
            s.push_str(&obfuscation(pad_basis, self.chunks));
            s.push('"');
        }
        s.push_str("}\n\n");
        Bytes::from(s)
    }
}

impl Dialect for ChatDialect {
    fn open(&mut self) -> Bytes {
        self.chunk(
            "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}",
            0,
        )
    }

    fn tokens(&mut self, kind: Kind, text: &str) -> Bytes {
        let field = match kind {
            Kind::Reasoning => "reasoning_content",
            Kind::Content => "content",
        };
        let choice = format!(
            "{{\"index\":0,\"delta\":{{\"{field}\":{}}},\"logprobs\":null,\"finish_reason\":null}}",
            js(text)
        );
        self.chunk(&choice, text.len())
    }

    fn close(&mut self, finish: Finish, counts: Counts) -> Bytes {
        let choice = format!(
            "{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"{}\"}}",
            finish_reason(finish)
        );
        let mut out = self.chunk(&choice, 0).to_vec();
        if self.shape.include_usage {
            let mut s = self.prefix.clone();
            s.push_str("],\"usage\":");
            s.push_str(&usage(counts).to_string());
            if self.shape.obfuscation {
                s.push_str(",\"obfuscation\":\"");
                s.push_str(&obfuscation(0, self.chunks + 1));
                s.push('"');
            }
            s.push_str("}\n\n");
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        Bytes::from(out)
    }

    fn error(&mut self) -> Bytes {
        stream_error()
    }
}

/// The error event of an injected in-stream failure (api-formats.md §1.5.6): a data event
/// whose JSON has a top-level `error`, then the stream closes without `[DONE]`.
fn stream_error() -> Bytes {
    let body = error_body(
        "The server had an error while processing your request. (simulated in-stream error)",
        "server_error",
        None,
    );
    Bytes::from(format!("data: {body}\n\n"))
}

/// The non-streamed chat completion.
pub fn chat_response(
    id: &str,
    created: u64,
    model: &str,
    out: &Collected,
    finish: Finish,
) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": out.content,
        "refusal": null,
        "annotations": []
    });
    if !out.reasoning.is_empty() {
        message["reasoning_content"] = Value::String(out.reasoning.clone());
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(finish)
        }],
        "usage": usage(out.counts),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT
    })
}

/// Legacy completion chunks (`object: "text_completion"`). Reasoning tokens, a chat
/// concept, are sent as ordinary text here.
pub struct CompletionDialect {
    prefix: String,
    include_usage: bool,
}

impl CompletionDialect {
    /// A dialect for one stream.
    pub fn new(id: &str, created: u64, model: &str, include_usage: bool) -> Self {
        let prefix = format!(
            "data: {{\"id\":{},\"object\":\"text_completion\",\"created\":{created},\"model\":{},\"system_fingerprint\":\"{FINGERPRINT}\",\"choices\":[",
            js(id),
            js(model)
        );
        CompletionDialect {
            prefix,
            include_usage,
        }
    }

    fn chunk(&self, text: &str, finish: Option<Finish>) -> String {
        let finish = match finish {
            Some(f) => format!("\"{}\"", finish_reason(f)),
            None => "null".into(),
        };
        let usage = if self.include_usage {
            ",\"usage\":null"
        } else {
            ""
        };
        format!(
            "{}{{\"text\":{},\"index\":0,\"logprobs\":null,\"finish_reason\":{finish}}}]{usage}}}\n\n",
            self.prefix,
            js(text)
        )
    }
}

impl Dialect for CompletionDialect {
    fn open(&mut self) -> Bytes {
        Bytes::new()
    }

    fn tokens(&mut self, _kind: Kind, text: &str) -> Bytes {
        Bytes::from(self.chunk(text, None))
    }

    fn close(&mut self, finish: Finish, counts: Counts) -> Bytes {
        let mut s = self.chunk("", Some(finish));
        if self.include_usage {
            s.push_str(&self.prefix);
            s.push_str("],\"usage\":");
            s.push_str(&usage(counts).to_string());
            s.push_str("}\n\n");
        }
        s.push_str("data: [DONE]\n\n");
        Bytes::from(s)
    }

    fn error(&mut self) -> Bytes {
        stream_error()
    }
}

/// The non-streamed legacy completion.
pub fn completion_response(
    id: &str,
    created: u64,
    model: &str,
    out: &Collected,
    finish: Finish,
) -> Value {
    let text = format!("{}{}", out.reasoning, out.content);
    json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish_reason(finish)}],
        "usage": usage(out.counts)
    })
}
