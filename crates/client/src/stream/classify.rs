//! Decoding stream events in each dialect: what kind of event it is (metrics.md §1.1), the
//! text it adds, its usage, and, at the end, the request's outcome.
//!
//! OpenAI-style chunks are read leniently: only `choices[].delta`, `choices[].text`,
//! `finish_reason`, `usage` and `error` matter, so compatible servers that leave out `id`,
//! `created` or `object` still count; whether a delta carries a token is
//! [`DeltaView::has_token`]'s decision, the rule the whole project shares with
//! `ChunkDelta::has_token`.
//! Anthropic events use [`protocol::anthropic::StreamEvent`], whose `Unknown` variant
//! absorbs new event types as Anthropic's versioning policy requires.

use protocol::anthropic::{BlockDelta, StreamEvent};
use protocol::openai::{DeltaView, Usage};
use protocol::sse::{DONE, SseEvent};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ErrorClass;
use crate::ledger::{Completion, EventKind, UsageCounts};
use crate::request::WireDialect;

/// The parts of an OpenAI chat or legacy completion chunk that measurement needs.
#[derive(Deserialize)]
struct LenientChunk<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<LenientChoice<'a>>>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
    /// vLLM's older flat error shape: `{"object": "error", "message": ...}`.
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct LenientChoice<'a> {
    #[serde(borrow, default)]
    delta: Option<DeltaView<'a>>,
    /// Legacy completions carry `text` instead of a delta.
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// OpenAI usage in the normalised form.
pub(crate) fn openai_usage(u: &Usage) -> UsageCounts {
    UsageCounts {
        input: u.prompt_tokens,
        output: u.completion_tokens,
        cached_input: u.cached_tokens(),
        cache_write: u
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cache_write_tokens)
            .unwrap_or(0),
        reasoning: u.reasoning_tokens(),
    }
}

/// Anthropic usage parts, normalised: total input = uncached + cache writes + cache reads.
pub(crate) fn anthropic_usage(
    uncached: u64,
    cache_write: u64,
    cache_read: u64,
    output: u64,
) -> UsageCounts {
    UsageCounts {
        input: uncached
            .saturating_add(cache_write)
            .saturating_add(cache_read),
        output,
        cached_input: cache_read,
        cache_write,
        reasoning: 0,
    }
}

/// The message of an error object (`{"message": ...}`) or error string.
pub(crate) fn error_text(error: &Value) -> String {
    match error {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| error.to_string()),
        other => other.to_string(),
    }
}

/// Tool-call argument fragments of an OpenAI delta or message, appended to `text`.
pub(crate) fn push_tool_arguments(calls: &[Value], text: &mut String) {
    for call in calls {
        if let Some(args) = call
            .get("function")
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
        {
            text.push_str(args);
        }
    }
}

/// The decoding state of one stream.
pub(crate) struct StreamState {
    dialect: WireDialect,
    /// Reasoning, visible text and tool arguments, in arrival order.
    pub(crate) text: String,
    finish_reason: Option<String>,
    error: Option<String>,
    terminal: bool,
    token_events: usize,
    openai_usage: Option<UsageCounts>,
    /// Whether the first token event carried cumulative usage (vLLM
    /// `continuous_usage_stats`), making per-event token counts exact.
    continuous_usage: Option<bool>,
    last_cumulative: u64,
    /// Anthropic `message_start` input parts: uncached, cache writes, cache reads.
    anthropic_input: (u64, u64, u64),
    /// Anthropic cumulative output from the last `message_delta`.
    anthropic_output: Option<u64>,
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

impl StreamState {
    pub(crate) fn new(dialect: WireDialect) -> Self {
        StreamState {
            dialect,
            text: String::new(),
            finish_reason: None,
            error: None,
            terminal: false,
            token_events: 0,
            openai_usage: None,
            continuous_usage: None,
            last_cumulative: 0,
            anthropic_input: (0, 0, 0),
            anthropic_output: None,
        }
    }

    /// Whether the terminal event (`[DONE]`, `message_stop`) has been seen.
    pub(crate) fn terminal(&self) -> bool {
        self.terminal
    }

    /// Whether an error event has been seen.
    pub(crate) fn errored(&self) -> bool {
        self.error.is_some()
    }

    /// Decodes one event: its kind and, when the server says exactly, its token count.
    pub(crate) fn classify(&mut self, event: &SseEvent) -> (EventKind, Option<u32>) {
        let (kind, tokens) = if event.event.as_deref() == Some("error") {
            self.error = Some(
                serde_json::from_str::<Value>(&event.data)
                    .ok()
                    .map(|v| error_text(v.get("error").unwrap_or(&v)))
                    .unwrap_or_else(|| event.data.clone()),
            );
            (EventKind::Error, None)
        } else {
            match self.dialect {
                WireDialect::OpenAiChat | WireDialect::OpenAiCompletion => self.openai(&event.data),
                WireDialect::AnthropicMessages => (self.anthropic(&event.data), None),
            }
        };
        if kind.is_token() {
            self.token_events += 1;
        }
        (kind, tokens)
    }

    fn openai(&mut self, data: &str) -> (EventKind, Option<u32>) {
        if data.trim_start().starts_with(DONE) {
            self.terminal = true;
            return (EventKind::Done, None);
        }
        let Ok(chunk) = serde_json::from_str::<LenientChunk>(data) else {
            return (EventKind::Other, None);
        };
        if let Some(error) = chunk.error.as_ref().filter(|e| !e.is_null()) {
            self.error = Some(error_text(error));
            return (EventKind::Error, None);
        }
        if chunk.object.as_deref() == Some("error") {
            self.error = Some(chunk.message.unwrap_or_else(|| data.to_owned()));
            return (EventKind::Error, None);
        }
        let mut kind = EventKind::Structural;
        let choices = chunk.choices.unwrap_or_default();
        for choice in &choices {
            if let Some(delta) = &choice.delta {
                kind = rank(kind, self.delta(delta));
            }
            if let Some(text) = choice.text.as_deref().filter(|t| !t.is_empty()) {
                self.text.push_str(text);
                kind = rank(kind, EventKind::Content);
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish_reason = Some(reason.clone());
            }
        }
        let mut tokens = None;
        if let Some(usage) = chunk
            .usage
            .and_then(|u| serde_json::from_value::<Usage>(u).ok())
        {
            if kind.is_token() {
                if self.continuous_usage.is_none() {
                    self.continuous_usage = Some(true);
                }
                if self.continuous_usage == Some(true) {
                    let n = usage.completion_tokens.saturating_sub(self.last_cumulative);
                    tokens = Some(u32::try_from(n).unwrap_or(u32::MAX));
                }
            }
            self.last_cumulative = usage.completion_tokens;
            self.openai_usage = Some(openai_usage(&usage));
            if kind == EventKind::Structural && choices.is_empty() {
                kind = EventKind::Usage;
            }
        }
        if kind.is_token() && self.continuous_usage.is_none() {
            self.continuous_usage = Some(false);
        }
        (kind, tokens)
    }

    /// The kind of one chat delta, appending its text.
    fn delta(&mut self, delta: &DeltaView<'_>) -> EventKind {
        if !delta.has_token() {
            return EventKind::Structural;
        }
        let mut kind = EventKind::Structural;
        let reasoning = non_empty(delta.reasoning_content.as_deref())
            .or_else(|| non_empty(delta.reasoning.as_deref()));
        if let Some(r) = reasoning {
            self.text.push_str(r);
            kind = EventKind::Reasoning;
        }
        let refusal = non_empty(delta.refusal.as_deref());
        for visible in [non_empty(delta.content.as_deref()), refusal]
            .into_iter()
            .flatten()
        {
            self.text.push_str(visible);
            kind = rank(kind, EventKind::Content);
        }
        if let Some(calls) = delta.tool_calls.as_deref().filter(|c| !c.is_empty()) {
            push_tool_arguments(calls, &mut self.text);
            kind = rank(kind, EventKind::Tool);
        }
        // A token `has_token` sees but none of the above names still counts, as content.
        if kind.is_token() {
            kind
        } else {
            EventKind::Content
        }
    }

    fn anthropic(&mut self, data: &str) -> EventKind {
        let Ok(event) = serde_json::from_str::<StreamEvent>(data) else {
            return EventKind::Other;
        };
        match event {
            StreamEvent::MessageStart { message } => {
                let u = &message.usage;
                self.anthropic_input = (
                    u.input_tokens,
                    u.cache_creation_input_tokens.unwrap_or(0),
                    u.cache_read_input_tokens.unwrap_or(0),
                );
                EventKind::Structural
            }
            StreamEvent::ContentBlockStart { .. } | StreamEvent::ContentBlockStop { .. } => {
                EventKind::Structural
            }
            StreamEvent::Ping => EventKind::Ping,
            StreamEvent::ContentBlockDelta { delta, .. } => match delta {
                BlockDelta::TextDelta { text } if !text.is_empty() => {
                    self.text.push_str(&text);
                    EventKind::Content
                }
                BlockDelta::ThinkingDelta { thinking } if !thinking.is_empty() => {
                    self.text.push_str(&thinking);
                    EventKind::Reasoning
                }
                BlockDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => {
                    self.text.push_str(&partial_json);
                    EventKind::Tool
                }
                _ => EventKind::Structural,
            },
            StreamEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.finish_reason = delta.stop_reason;
                }
                // Newer streams repeat the (cumulative) input counts here.
                let (uncached, write, read) = self.anthropic_input;
                self.anthropic_input = (
                    usage.input_tokens.unwrap_or(uncached),
                    usage.cache_creation_input_tokens.unwrap_or(write),
                    usage.cache_read_input_tokens.unwrap_or(read),
                );
                self.anthropic_output = Some(usage.output_tokens);
                EventKind::Usage
            }
            StreamEvent::MessageStop => {
                self.terminal = true;
                EventKind::Done
            }
            StreamEvent::Error { error } => {
                self.error = Some(if error.message.is_empty() {
                    error.r#type
                } else {
                    error.message
                });
                EventKind::Error
            }
            StreamEvent::Unknown => EventKind::Other,
        }
    }

    /// The server's usage: OpenAI's last reported usage; Anthropic's `message_start` input
    /// with the last `message_delta` output (none when no `message_delta` came, since
    /// `message_start`'s output count is only a placeholder).
    pub(crate) fn usage(&self) -> Option<UsageCounts> {
        match self.dialect {
            WireDialect::OpenAiChat | WireDialect::OpenAiCompletion => self.openai_usage,
            WireDialect::AnthropicMessages => self.anthropic_output.map(|output| {
                let (uncached, write, read) = self.anthropic_input;
                anthropic_usage(uncached, write, read, output)
            }),
        }
    }

    /// The outcome of a stream that ended: an error event wins, then a missing terminal
    /// event, then the absence of any token.
    pub(crate) fn outcome(&self) -> Result<Completion, ErrorClass> {
        if let Some(message) = &self.error {
            return Err(ErrorClass::InStreamError(message.clone()));
        }
        if !self.terminal {
            return Err(ErrorClass::Truncated);
        }
        if self.token_events == 0 {
            return Err(ErrorClass::Empty);
        }
        Ok(Completion {
            finish_reason: self.finish_reason.clone(),
        })
    }
}

/// The stronger of two kinds for one chunk: tool > content > reasoning > structural.
fn rank(a: EventKind, b: EventKind) -> EventKind {
    let weight = |k: EventKind| match k {
        EventKind::Tool => 3,
        EventKind::Content => 2,
        EventKind::Reasoning => 1,
        _ => 0,
    };
    if weight(b) > weight(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            data: data.into(),
            ..SseEvent::default()
        }
    }

    fn named(name: &str, data: &str) -> SseEvent {
        SseEvent {
            event: Some(name.into()),
            data: data.into(),
            ..SseEvent::default()
        }
    }

    #[test]
    fn openai_kinds() {
        let mut s = StreamState::new(WireDialect::OpenAiChat);
        let role = r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}],"usage":null}"#;
        assert_eq!(s.classify(&ev(role)).0, EventKind::Structural);
        // Lenient: no id/object/created.
        let reasoning = r#"{"choices":[{"delta":{"reasoning_content":"hm"}}]}"#;
        assert_eq!(s.classify(&ev(reasoning)).0, EventKind::Reasoning);
        let ollama_reasoning = r#"{"choices":[{"delta":{"reasoning":"so"}}]}"#;
        assert_eq!(s.classify(&ev(ollama_reasoning)).0, EventKind::Reasoning);
        let content = r#"{"choices":[{"delta":{"content":"Hi"}}]}"#;
        assert_eq!(s.classify(&ev(content)).0, EventKind::Content);
        let tool = r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\""}}]}}]}"#;
        assert_eq!(s.classify(&ev(tool)).0, EventKind::Tool);
        let finish = r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#;
        assert_eq!(s.classify(&ev(finish)).0, EventKind::Structural);
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
        assert_eq!(s.classify(&ev(usage)), (EventKind::Usage, None));
        assert_eq!(s.classify(&ev("[DONE]")).0, EventKind::Done);
        assert_eq!(s.classify(&ev("not json")).0, EventKind::Other);
        assert_eq!(s.text, "hmsoHi{\"");
        assert_eq!(
            s.usage(),
            Some(UsageCounts {
                input: 5,
                output: 4,
                cached_input: 2,
                cache_write: 0,
                reasoning: 2
            })
        );
        assert_eq!(
            s.outcome(),
            Ok(Completion {
                finish_reason: Some("stop".into())
            })
        );
    }

    #[test]
    fn openai_errors() {
        for data in [
            r#"{"error":{"message":"boom","type":"server_error","param":null,"code":null}}"#,
            r#"{"object":"error","message":"boom","type":"x","code":500}"#,
        ] {
            let mut s = StreamState::new(WireDialect::OpenAiChat);
            s.classify(&ev(r#"{"choices":[{"delta":{"content":"a"}}]}"#));
            assert_eq!(s.classify(&ev(data)).0, EventKind::Error);
            s.classify(&ev("[DONE]"));
            assert_eq!(s.outcome(), Err(ErrorClass::InStreamError("boom".into())));
        }
        let mut s = StreamState::new(WireDialect::OpenAiChat);
        assert_eq!(
            s.classify(&named("error", r#"{"error":{"message":"bad"}}"#))
                .0,
            EventKind::Error
        );
        assert!(s.errored());
    }

    #[test]
    fn empty_and_truncated() {
        let mut s = StreamState::new(WireDialect::OpenAiChat);
        s.classify(&ev(
            r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
        ));
        assert_eq!(s.outcome(), Err(ErrorClass::Truncated));
        s.classify(&ev("[DONE]"));
        assert_eq!(s.outcome(), Err(ErrorClass::Empty));
    }

    #[test]
    fn continuous_usage_gives_exact_tokens_per_event() {
        let mut s = StreamState::new(WireDialect::OpenAiChat);
        let chunk = |content: &str, n: u64| {
            ev(&format!(
                r#"{{"choices":[{{"delta":{{"content":"{content}"}}}}],"usage":{{"prompt_tokens":3,"completion_tokens":{n},"total_tokens":0}}}}"#
            ))
        };
        assert_eq!(s.classify(&chunk("", 0)), (EventKind::Structural, None));
        assert_eq!(s.classify(&chunk("ab", 2)), (EventKind::Content, Some(2)));
        assert_eq!(s.classify(&chunk("c", 3)), (EventKind::Content, Some(1)));
        // Usage only on the last content chunk (not continuous): not per-event exact.
        let mut s = StreamState::new(WireDialect::OpenAiChat);
        assert_eq!(
            s.classify(&ev(r#"{"choices":[{"delta":{"content":"a"}}]}"#)),
            (EventKind::Content, None)
        );
        assert_eq!(s.classify(&chunk("b", 2)), (EventKind::Content, None));
    }

    #[test]
    fn legacy_completion_text() {
        let mut s = StreamState::new(WireDialect::OpenAiCompletion);
        let c = r#"{"id":"c","object":"text_completion","created":1,"model":"m","choices":[{"text":"Hel","index":0,"logprobs":null,"finish_reason":null}]}"#;
        assert_eq!(s.classify(&ev(c)).0, EventKind::Content);
        let f = r#"{"choices":[{"text":"","index":0,"finish_reason":"length"}]}"#;
        assert_eq!(s.classify(&ev(f)).0, EventKind::Structural);
        s.classify(&ev("[DONE]"));
        assert_eq!(s.text, "Hel");
        assert_eq!(
            s.outcome().unwrap().finish_reason.as_deref(),
            Some("length")
        );
    }

    #[test]
    fn anthropic_sequence() {
        let mut s = StreamState::new(WireDialect::AnthropicMessages);
        let events = [
            (
                "message_start",
                r#"{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"c","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":16,"cache_creation_input_tokens":4,"cache_read_input_tokens":8,"output_tokens":1}}}"#,
                EventKind::Structural,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
                EventKind::Structural,
            ),
            ("ping", r#"{"type": "ping"}"#, EventKind::Ping),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me"}}"#,
                EventKind::Reasoning,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}"#,
                EventKind::Structural,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hello"}}"#,
                EventKind::Content,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
                EventKind::Tool,
            ),
            (
                "future_event",
                r#"{"type":"future_event"}"#,
                EventKind::Other,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
                EventKind::Usage,
            ),
            (
                "message_stop",
                r#"{"type":"message_stop"}"#,
                EventKind::Done,
            ),
        ];
        for (name, data, kind) in events {
            assert_eq!(s.classify(&named(name, data)).0, kind, "{name}");
        }
        assert_eq!(s.text, "Let meHello{}");
        assert_eq!(
            s.usage(),
            Some(UsageCounts {
                input: 28,
                output: 15,
                cached_input: 8,
                cache_write: 4,
                reasoning: 0
            })
        );
        assert_eq!(
            s.outcome().unwrap().finish_reason.as_deref(),
            Some("end_turn")
        );
    }

    #[test]
    fn anthropic_error_event_and_missing_delta_usage() {
        let mut s = StreamState::new(WireDialect::AnthropicMessages);
        s.classify(&named(
            "message_start",
            r#"{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"c","content":[],"usage":{"input_tokens":3,"output_tokens":1}}}"#,
        ));
        assert_eq!(s.usage(), None);
        let (kind, _) = s.classify(&named(
            "error",
            r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
        ));
        assert_eq!(kind, EventKind::Error);
        assert_eq!(
            s.outcome(),
            Err(ErrorClass::InStreamError("Overloaded".into()))
        );
    }
}
