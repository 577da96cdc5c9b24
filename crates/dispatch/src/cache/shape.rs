//! Serving a cached entry in the shape it was not recorded in, and reading recorded stream
//! events cheaply.
//!
//! An entry holds what the upstream sent: a JSON body or the SSE events of a stream
//! ([`super::entry::Body`]). A later request may want the other shape, so this module owns
//! the conversions: [`assemble`] turns a recorded stream into the equivalent non-streamed
//! body (the same fields a client would build by folding the deltas, as the official SDKs
//! do), and [`synthesize`] turns a body into an equivalent stream. `assemble(synthesize(x))`
//! gives back `x`'s id, created, model, fingerprint, service tier, choices (role, content,
//! refusal, reasoning, tool calls, logprobs, finish reason) or content blocks, stop reason
//! and usage. Fields a stream cannot carry (OpenAI's `annotations`) are not kept.
//!
//! It also owns the per-event questions the gateway asks while relaying a stream:
//! [`classify`] (terminal, usage-only, error or other) and the usage readers [`usage`] and
//! [`usage_json`]. `classify` runs once per streamed event, so it decides from byte
//! searches and parses JSON only when those say the event might be usage-only or an error.
//!
//! Pacing a replay, choosing which shape to serve and dropping the usage chunk for clients
//! that did not ask for it are the gateway's decisions; SSE framing is `protocol::sse`'s.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use bytes::Bytes;
use memchr::memmem::Finder;
use protocol::anthropic::MESSAGE_TYPE;
use protocol::openai::{
    ASSISTANT_ROLE, CHAT_COMPLETION_CHUNK_OBJECT, CHAT_COMPLETION_OBJECT, TEXT_COMPLETION_OBJECT,
};
use protocol::sse::{DONE, SseDecoder, SseError, SseEvent, encode_data, encode_done, encode_named};
use serde_json::{Map, Value, json};

use super::entry::RecordedEvent;
use crate::kind::Kind;

/// Why an entry cannot be served in the other shape.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// The recorded stream has no terminal event: it was cut short, and an assembled body
    /// would pass a truncated answer off as complete.
    #[error("the recorded stream ends without its terminal event ({expected})")]
    Incomplete {
        /// The terminal event that was expected (`data: [DONE]` or `message_stop`).
        expected: &'static str,
    },
    /// The recorded stream carries an error event (such a stream should never be cached).
    #[error("the recorded stream carries an upstream error: {message}")]
    Upstream {
        /// The error's message (or its type when it has none).
        message: String,
    },
    /// The recorded bytes are not valid SSE.
    #[error("the recorded stream is not valid SSE: {0}")]
    Sse(#[from] SseError),
    /// A payload is not JSON.
    #[error("{what} is not valid JSON: {source}")]
    Json {
        /// What was being read.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Valid JSON without the structure the dialect requires.
    #[error("{0}")]
    Malformed(String),
}

/// What one recorded event means to the gateway relaying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    /// The end of a successful stream: `data: [DONE]` (OpenAI) or `event: message_stop`
    /// (Anthropic).
    Terminal,
    /// An OpenAI chunk with `choices: []` and a non-null `usage`: the gateway always asks
    /// upstream for usage and drops this chunk for clients that did not ask.
    UsageOnly,
    /// An error event: Anthropic `event: error`, or an OpenAI-style payload with a top-level
    /// `error` object (or vLLM's older `"object": "error"`).
    Error,
    /// Anything else: content, role, finish and structural events, pings, comments.
    Other,
}

/// The non-streamed JSON body equivalent to a recorded stream.
///
/// Fails when the stream lacks its terminal event, carries an error event, or is not the
/// dialect of `kind`.
pub fn assemble(kind: Kind, events: &[RecordedEvent]) -> Result<Bytes, ShapeError> {
    let events = decode(events)?;
    let body = match kind {
        Kind::Chat | Kind::Completions => assemble_openai(kind, &events)?,
        Kind::Messages => assemble_anthropic(&events)?,
    };
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|source| ShapeError::Json {
            what: "the assembled body",
            source,
        })
}

/// The encoded SSE events (each a whole event ending in a blank line) equivalent to a
/// non-streamed body, terminal event included.
///
/// Text is cut into pieces of a few words (never splitting a character), so a replay looks
/// like a real stream; the pieces of each field concatenate to exactly the original.
pub fn synthesize(kind: Kind, json: &[u8]) -> Result<Vec<Bytes>, ShapeError> {
    let body: Value = serde_json::from_slice(json).map_err(|source| ShapeError::Json {
        what: "the cached body",
        source,
    })?;
    let Value::Object(body) = body else {
        return Err(malformed("the cached body is not a JSON object"));
    };
    match kind {
        Kind::Chat => synthesize_chat(&body),
        Kind::Completions => synthesize_completions(&body),
        Kind::Messages => synthesize_anthropic(body),
    }
}

/// Classifies one encoded event as stored in [`RecordedEvent::data`].
///
/// Cheap on the common path: byte searches decide for every ordinary content event; the
/// event is decoded and its JSON parsed only when it might be usage-only, an error, or a
/// `[DONE]` (once per stream).
pub fn classify(kind: Kind, event: &[u8]) -> EventClass {
    match kind {
        Kind::Chat | Kind::Completions => classify_openai(event),
        Kind::Messages => classify_anthropic(event),
    }
}

/// `(input, output)` tokens a recorded stream reports, `(0, 0)` when it reports none.
///
/// Input is the total input: OpenAI's `prompt_tokens` (cached tokens included) or
/// Anthropic's `input_tokens + cache_creation_input_tokens + cache_read_input_tokens`, as
/// `client::UsageCounts` counts it. OpenAI: the last non-null `usage` of any chunk (the
/// usage-only chunk, or the last chunk of servers that attach usage to it).
/// Anthropic: `message_start`'s usage, overridden by the cumulative `message_delta` counts.
pub fn usage(kind: Kind, events: &[RecordedEvent]) -> (u64, u64) {
    match kind {
        Kind::Chat | Kind::Completions => events
            .iter()
            .rev()
            .filter(|e| usage_may_be_set(&e.data))
            .find_map(|e| {
                let usage = parse_event(&e.data)?.get_mut("usage")?.take();
                (!usage.is_null()).then(|| openai_usage(&usage))
            })
            .unwrap_or((0, 0)),
        Kind::Messages => {
            let mut acc = UsageTally::default();
            for event in events {
                let name = event_name(&event.data);
                if !matches!(name, Some(b"message_start" | b"message_delta") | None) {
                    continue;
                }
                let Some(data) = parse_event(&event.data) else {
                    continue;
                };
                match data.get("type").and_then(Value::as_str) {
                    Some("message_start") => {
                        if let Some(u) = data.get("message").and_then(|m| m.get("usage")) {
                            acc.merge(u);
                        }
                    }
                    Some("message_delta") => {
                        if let Some(u) = data.get("usage") {
                            acc.merge(u);
                        }
                    }
                    _ => {}
                }
            }
            acc.totals()
        }
    }
}

/// `(input, output)` tokens a non-streamed body reports, `(0, 0)` when it reports none or
/// is not JSON. Input is counted as in [`usage`].
pub fn usage_json(kind: Kind, json: &[u8]) -> (u64, u64) {
    let Ok(body) = serde_json::from_slice::<Value>(json) else {
        return (0, 0);
    };
    let Some(u) = body.get("usage").filter(|u| !u.is_null()) else {
        return (0, 0);
    };
    match kind {
        Kind::Chat | Kind::Completions => openai_usage(u),
        Kind::Messages => {
            let mut acc = UsageTally::default();
            acc.merge(u);
            acc.totals()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared helpers

fn malformed(what: impl Into<String>) -> ShapeError {
    ShapeError::Malformed(what.into())
}

/// Decodes recorded events with one decoder, so an event split oddly across records (or a
/// record holding two events) still decodes as the client saw it.
fn decode(events: &[RecordedEvent]) -> Result<Vec<SseEvent>, ShapeError> {
    let mut decoder = SseDecoder::default();
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        decoder.push_into(&event.data, &mut out)?;
    }
    out.extend(decoder.finish()?);
    Ok(out)
}

/// The first event in one encoded event's bytes.
fn decode_one(event: &[u8]) -> Option<SseEvent> {
    let mut decoder = SseDecoder::default();
    let mut events = decoder.push(event).ok()?;
    if events.is_empty() {
        return decoder.finish().ok().flatten();
    }
    Some(events.swap_remove(0))
}

/// The JSON object carried by one encoded event.
fn parse_event(event: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_str(&decode_one(event)?.data) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn parse_data(event: &SseEvent) -> Result<Value, ShapeError> {
    serde_json::from_str(&event.data).map_err(|source| ShapeError::Json {
        what: "a recorded event",
        source,
    })
}

// Searchers for the per-event byte checks, built once: `memmem::find` would build one per
// call, that is several per relayed event.
static EVENT_FIELD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"event:"));
static DONE_MARK: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(DONE.as_bytes()));
static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
static CHOICES_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"choices\""));
static MESSAGE_STOP: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"message_stop\""));

/// The value of the `event:` field, when the event has one. Only a line start counts: a
/// `data:` value cannot hold a line break, so `event:` inside the JSON never matches.
fn event_name(event: &[u8]) -> Option<&[u8]> {
    EVENT_FIELD
        .find_iter(event)
        .find(|&at| at == 0 || matches!(event[at - 1], b'\n' | b'\r'))
        .map(|at| {
            let rest = &event[at + b"event:".len()..];
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            let end = memchr::memchr2(b'\n', b'\r', rest).unwrap_or(rest.len());
            &rest[..end]
        })
}

fn trim_ws(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// The bytes after `"key":` for every occurrence of the quoted key as an object key. A
/// quoted word inside a JSON string has escaped quotes (`\"usage\"`), so it never matches.
fn values_of<'a>(
    event: &'a [u8],
    quoted_key: &'static Finder<'static>,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    let len = quoted_key.needle().len();
    quoted_key.find_iter(event).filter_map(move |at| {
        let rest = trim_ws(&event[at + len..]);
        rest.strip_prefix(b":").map(trim_ws)
    })
}

/// Byte-level pre-check: some `"usage"` key has a value other than `null`. False
/// negatives are impossible; false positives are settled by parsing.
fn usage_may_be_set(event: &[u8]) -> bool {
    values_of(event, &USAGE_KEY).any(|v| !v.starts_with(b"null"))
}

/// Byte-level pre-check: some `"choices"` key is an empty array.
fn choices_may_be_empty(event: &[u8]) -> bool {
    values_of(event, &CHOICES_KEY).any(|v| {
        v.strip_prefix(b"[")
            .is_some_and(|v| trim_ws(v).starts_with(b"]"))
    })
}

/// A payload's top-level error, as the OpenAI SDK reads it (a truthy `error` key), or
/// vLLM's older flat `{"object": "error", "message": ...}`.
fn openai_error(chunk: &Map<String, Value>) -> Option<String> {
    if let Some(error) = chunk.get("error").filter(|e| truthy(e)) {
        return Some(error_message(error));
    }
    (chunk.get("object").and_then(Value::as_str) == Some("error"))
        .then(|| error_message(&Value::Object(chunk.clone())))
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

fn error_message(error: &Value) -> String {
    ["message", "type"]
        .iter()
        .find_map(|k| {
            error
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .or_else(|| error.as_str())
        .unwrap_or("unknown error")
        .to_owned()
}

fn openai_usage(usage: &Value) -> (u64, u64) {
    let count = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
    (count("prompt_tokens"), count("completion_tokens"))
}

/// Anthropic usage as it accumulates over a stream (later counts are cumulative and win).
#[derive(Default)]
struct UsageTally {
    uncached: u64,
    write: u64,
    read: u64,
    output: u64,
}

impl UsageTally {
    fn merge(&mut self, usage: &Value) {
        for (key, slot) in [
            ("input_tokens", &mut self.uncached),
            ("cache_creation_input_tokens", &mut self.write),
            ("cache_read_input_tokens", &mut self.read),
            ("output_tokens", &mut self.output),
        ] {
            if let Some(n) = usage.get(key).and_then(Value::as_u64) {
                *slot = n;
            }
        }
    }

    fn totals(&self) -> (u64, u64) {
        (
            self.uncached
                .saturating_add(self.write)
                .saturating_add(self.read),
            self.output,
        )
    }
}

fn append_str(map: &mut Map<String, Value>, key: &str, piece: &str) {
    match map.get_mut(key) {
        Some(Value::String(s)) => s.push_str(piece),
        _ => {
            map.insert(key.to_owned(), Value::String(piece.to_owned()));
        }
    }
}

/// Folds streamed logprobs: arrays (`content`, `refusal`; `tokens`, `token_logprobs`, ...)
/// are concatenated, the first non-null value of anything else is kept.
fn merge_logprobs(acc: &mut Value, new: &Value) {
    match (acc, new) {
        (_, Value::Null) => {}
        (acc @ Value::Null, new) => *acc = new.clone(),
        (Value::Object(acc), Value::Object(new)) => {
            for (key, value) in new {
                match (acc.get_mut(key), value) {
                    (Some(Value::Array(a)), Value::Array(b)) => a.extend(b.iter().cloned()),
                    (Some(slot @ Value::Null), value) => *slot = value.clone(),
                    (None, value) => {
                        acc.insert(key.clone(), value.clone());
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Words per synthesized piece: a few, like the tokens a real stream carries.
const WORDS_PER_PIECE: usize = 3;
/// Cap on a piece, for text without spaces (CJK, JSON, code).
const MAX_PIECE_BYTES: usize = 24;

/// Cuts `text` into pieces of a few words each (a word's leading whitespace goes with it,
/// as tokenizers do), never longer than [`MAX_PIECE_BYTES`] unless one character is, and
/// never splitting a character. The pieces concatenate to `text`; none is empty.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::with_capacity(text.len() / 12 + 1);
    let mut start = 0;
    let mut words = 0;
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if i > start {
            let word_ends = space && !prev_space;
            if word_ends {
                words += 1;
            }
            if (word_ends && words == WORDS_PER_PIECE) || i - start >= MAX_PIECE_BYTES {
                out.push(&text[start..i]);
                start = i;
                words = 0;
            }
        }
        prev_space = space;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

// ---------------------------------------------------------------------------------------
// OpenAI: chat completions and legacy completions

#[derive(Default)]
struct ToolCallAcc {
    id: Option<Value>,
    kind: Option<Value>,
    name: String,
    arguments: String,
}

#[derive(Default)]
struct ChoiceAcc {
    role: Option<String>,
    /// `Some` once any delta carried a string (even `""`): `null` content stays `null`.
    content: Option<String>,
    refusal: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    tool_calls: BTreeMap<u64, ToolCallAcc>,
    /// Legacy completions' `text`.
    text: String,
    logprobs: Value,
    finish_reason: Value,
}

fn fold_str(slot: &mut Option<String>, delta: &Map<String, Value>, key: &str) {
    if let Some(piece) = delta.get(key).and_then(Value::as_str) {
        slot.get_or_insert_with(String::new).push_str(piece);
    }
}

impl ChoiceAcc {
    fn fold_delta(&mut self, delta: &Map<String, Value>) {
        if let Some(role) = delta.get("role").and_then(Value::as_str) {
            self.role = Some(role.to_owned());
        }
        fold_str(&mut self.content, delta, "content");
        fold_str(&mut self.refusal, delta, "refusal");
        fold_str(&mut self.reasoning_content, delta, "reasoning_content");
        fold_str(&mut self.reasoning, delta, "reasoning");
        let calls = delta.get("tool_calls").and_then(Value::as_array);
        for (position, call) in calls.into_iter().flatten().enumerate() {
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64);
            let acc = self.tool_calls.entry(index).or_default();
            // Like the official SDKs: `id` and `type` are set once, name and arguments are
            // concatenated fragments.
            if let Some(id) = call.get("id").filter(|v| !v.is_null()) {
                acc.id.get_or_insert_with(|| id.clone());
            }
            if let Some(kind) = call.get("type").filter(|v| !v.is_null()) {
                acc.kind.get_or_insert_with(|| kind.clone());
            }
            if let Some(function) = call.get("function") {
                if let Some(name) = function.get("name").and_then(Value::as_str) {
                    acc.name.push_str(name);
                }
                if let Some(arguments) = function.get("arguments").and_then(Value::as_str) {
                    acc.arguments.push_str(arguments);
                }
            }
        }
    }

    fn into_chat_choice(self, index: u64) -> Value {
        let mut message = Map::new();
        message.insert(
            "role".into(),
            Value::String(self.role.unwrap_or_else(|| ASSISTANT_ROLE.to_owned())),
        );
        message.insert(
            "content".into(),
            self.content.map_or(Value::Null, Value::String),
        );
        message.insert(
            "refusal".into(),
            self.refusal.map_or(Value::Null, Value::String),
        );
        if let Some(reasoning) = self.reasoning_content {
            message.insert("reasoning_content".into(), Value::String(reasoning));
        }
        if let Some(reasoning) = self.reasoning {
            message.insert("reasoning".into(), Value::String(reasoning));
        }
        if !self.tool_calls.is_empty() {
            let calls = self
                .tool_calls
                .into_values()
                .map(|call| {
                    json!({
                        "id": call.id.unwrap_or(Value::Null),
                        "type": call.kind.unwrap_or_else(|| Value::from("function")),
                        "function": {"name": call.name, "arguments": call.arguments},
                    })
                })
                .collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        let mut choice = Map::new();
        choice.insert("index".into(), Value::from(index));
        choice.insert("message".into(), Value::Object(message));
        choice.insert("logprobs".into(), self.logprobs);
        choice.insert("finish_reason".into(), self.finish_reason);
        Value::Object(choice)
    }

    fn into_completion_choice(self, index: u64) -> Value {
        let mut choice = Map::new();
        choice.insert("text".into(), Value::String(self.text));
        choice.insert("index".into(), Value::from(index));
        choice.insert("logprobs".into(), self.logprobs);
        choice.insert("finish_reason".into(), self.finish_reason);
        Value::Object(choice)
    }
}

fn assemble_openai(kind: Kind, events: &[SseEvent]) -> Result<Value, ShapeError> {
    let mut head: Option<Map<String, Value>> = None;
    let mut service_tier = None;
    let mut fingerprint = None;
    let mut usage = None;
    let mut choices: BTreeMap<u64, ChoiceAcc> = BTreeMap::new();
    let mut done = false;
    for event in events {
        if event.data.trim_start().starts_with(DONE) {
            done = true;
            break;
        }
        let data = parse_data(event)?;
        let Value::Object(chunk) = data else {
            return Err(malformed("a stream chunk is not a JSON object"));
        };
        if let Some(message) = openai_error(&chunk) {
            return Err(ShapeError::Upstream { message });
        }
        if event.event.as_deref() == Some("error") {
            return Err(ShapeError::Upstream {
                message: error_message(chunk.get("error").unwrap_or(&Value::Null)),
            });
        }
        if head.is_none() {
            head = Some(
                ["id", "created", "model"]
                    .into_iter()
                    .filter_map(|k| chunk.get(k).map(|v| (k.to_owned(), v.clone())))
                    .collect(),
            );
        }
        if let Some(tier) = chunk.get("service_tier").filter(|v| !v.is_null()) {
            service_tier = Some(tier.clone());
        }
        if let Some(fp) = chunk.get("system_fingerprint").filter(|v| !v.is_null()) {
            fingerprint = Some(fp.clone());
        }
        if let Some(u) = chunk.get("usage").filter(|v| !v.is_null()) {
            usage = Some(u.clone());
        }
        let listed = chunk.get("choices").and_then(Value::as_array);
        for (position, choice) in listed.into_iter().flatten().enumerate() {
            let index = choice
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64);
            let acc = choices.entry(index).or_default();
            match kind {
                Kind::Completions => {
                    if let Some(text) = choice.get("text").and_then(Value::as_str) {
                        acc.text.push_str(text);
                    }
                }
                _ => {
                    if let Some(Value::Object(delta)) = choice.get("delta") {
                        acc.fold_delta(delta);
                    }
                }
            }
            if let Some(logprobs) = choice.get("logprobs") {
                merge_logprobs(&mut acc.logprobs, logprobs);
            }
            if let Some(reason) = choice.get("finish_reason").filter(|v| !v.is_null()) {
                acc.finish_reason = reason.clone();
            }
        }
    }
    if !done {
        return Err(ShapeError::Incomplete {
            expected: "data: [DONE]",
        });
    }
    let Some(head) = head else {
        return Err(malformed("the recorded stream has no chunk before [DONE]"));
    };
    let object = match kind {
        Kind::Completions => TEXT_COMPLETION_OBJECT,
        _ => CHAT_COMPLETION_OBJECT,
    };
    let mut body = Map::new();
    for key in ["id", "object", "created", "model"] {
        if key == "object" {
            body.insert(key.into(), Value::from(object));
        } else if let Some(value) = head.get(key) {
            body.insert(key.into(), value.clone());
        }
    }
    let choices = choices
        .into_iter()
        .map(|(index, acc)| match kind {
            Kind::Completions => acc.into_completion_choice(index),
            _ => acc.into_chat_choice(index),
        })
        .collect();
    body.insert("choices".into(), Value::Array(choices));
    if let Some(usage) = usage {
        body.insert("usage".into(), usage);
    }
    if let Some(tier) = service_tier {
        body.insert("service_tier".into(), tier);
    }
    if let Some(fp) = fingerprint {
        body.insert("system_fingerprint".into(), fp);
    }
    Ok(Value::Object(body))
}

/// The fields every chunk of a synthesized stream repeats.
fn chunk_head(body: &Map<String, Value>, object: &str) -> Map<String, Value> {
    let mut head = Map::new();
    for key in [
        "id",
        "object",
        "created",
        "model",
        "service_tier",
        "system_fingerprint",
    ] {
        if key == "object" {
            head.insert(key.into(), Value::from(object));
        } else if let Some(value) = body.get(key).filter(|v| !v.is_null()) {
            head.insert(key.into(), value.clone());
        }
    }
    head
}

fn chunk_event(head: &Map<String, Value>, choices: Value, usage: Option<&Value>) -> Bytes {
    let mut chunk = head.clone();
    chunk.insert("choices".into(), choices);
    if let Some(usage) = usage {
        chunk.insert("usage".into(), usage.clone());
    }
    encode_data(&Value::Object(chunk).to_string())
}

fn listed_choices(body: &Map<String, Value>) -> Result<&Vec<Value>, ShapeError> {
    body.get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("the cached body has no `choices` array"))
}

/// The usage chunk (when the body had usage) and `data: [DONE]`.
fn openai_tail(out: &mut Vec<Bytes>, head: &Map<String, Value>, body: &Map<String, Value>) {
    if let Some(usage) = body.get("usage").filter(|u| !u.is_null()) {
        out.push(chunk_event(head, json!([]), Some(usage)));
    }
    out.push(encode_done());
}

fn synthesize_chat(body: &Map<String, Value>) -> Result<Vec<Bytes>, ShapeError> {
    let head = chunk_head(body, CHAT_COMPLETION_CHUNK_OBJECT);
    let mut out = Vec::new();
    for (position, choice) in listed_choices(body)?.iter().enumerate() {
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let message = choice.get("message").and_then(Value::as_object);
        let empty = Map::new();
        let message = message.unwrap_or(&empty);
        let mut push = |delta: Value| {
            let choice =
                json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": null}]);
            out.push(chunk_event(&head, choice, None));
        };
        // The opening chunk, as OpenAI sends it: the role, `""` content when there will be
        // text and `null` when there will not (a tool-call-only answer).
        let role = message
            .get("role")
            .cloned()
            .unwrap_or_else(|| Value::from(ASSISTANT_ROLE));
        let opening_content = match message.get("content") {
            Some(Value::String(_)) => Value::from(""),
            _ => Value::Null,
        };
        push(json!({"role": role, "content": opening_content, "refusal": null}));
        for field in ["reasoning_content", "reasoning", "content", "refusal"] {
            let Some(text) = message.get(field).and_then(Value::as_str) else {
                continue;
            };
            if text.is_empty() && field != "content" {
                // An empty string is still a string (not `null`), so it gets one delta.
                push(json!({ field: "" }));
            }
            for piece in pieces(text) {
                push(json!({ field: piece }));
            }
        }
        let calls = message.get("tool_calls").and_then(Value::as_array);
        for (call_index, call) in calls.into_iter().flatten().enumerate() {
            let function = call.get("function");
            let name = function.and_then(|f| f.get("name")).cloned();
            let arguments = function
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .unwrap_or("");
            push(json!({"tool_calls": [{
                "index": call_index,
                "id": call.get("id").cloned().unwrap_or(Value::Null),
                "type": call.get("type").cloned().unwrap_or_else(|| Value::from("function")),
                "function": {"name": name.unwrap_or_else(|| Value::from("")), "arguments": ""},
            }]}));
            for piece in pieces(arguments) {
                push(
                    json!({"tool_calls": [{"index": call_index, "function": {"arguments": piece}}]}),
                );
            }
        }
        let finish = json!([{
            "index": index,
            "delta": {},
            "logprobs": choice.get("logprobs").cloned().unwrap_or(Value::Null),
            "finish_reason": choice.get("finish_reason").cloned().unwrap_or(Value::Null),
        }]);
        out.push(chunk_event(&head, finish, None));
    }
    openai_tail(&mut out, &head, body);
    Ok(out)
}

fn synthesize_completions(body: &Map<String, Value>) -> Result<Vec<Bytes>, ShapeError> {
    let head = chunk_head(body, TEXT_COMPLETION_OBJECT);
    let mut out = Vec::new();
    for (position, choice) in listed_choices(body)?.iter().enumerate() {
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let text = choice.get("text").and_then(Value::as_str).unwrap_or("");
        let mut parts = pieces(text);
        if parts.is_empty() {
            parts.push("");
        }
        let last = parts.len() - 1;
        for (i, piece) in parts.into_iter().enumerate() {
            // Like OpenAI, the last text chunk carries the finish reason.
            let (logprobs, finish_reason) = if i == last {
                (
                    choice.get("logprobs").cloned().unwrap_or(Value::Null),
                    choice.get("finish_reason").cloned().unwrap_or(Value::Null),
                )
            } else {
                (Value::Null, Value::Null)
            };
            let choice = json!([{
                "text": piece,
                "index": index,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }]);
            out.push(chunk_event(&head, choice, None));
        }
    }
    openai_tail(&mut out, &head, body);
    Ok(out)
}

fn classify_openai(event: &[u8]) -> EventClass {
    if matches!(event_name(event), Some(b"error")) {
        return EventClass::Error;
    }
    if DONE_MARK.find(event).is_some()
        && decode_one(event).is_some_and(|e| e.data.trim_start().starts_with(DONE))
    {
        return EventClass::Terminal;
    }
    let maybe_error = ERROR_KEY.find(event).is_some();
    let maybe_usage = usage_may_be_set(event) && choices_may_be_empty(event);
    if !maybe_error && !maybe_usage {
        return EventClass::Other;
    }
    let Some(chunk) = parse_event(event) else {
        return EventClass::Other;
    };
    if maybe_error && openai_error(&chunk).is_some() {
        return EventClass::Error;
    }
    let no_choices = chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty);
    let has_usage = chunk.get("usage").is_some_and(|u| !u.is_null());
    if no_choices && has_usage {
        EventClass::UsageOnly
    } else {
        EventClass::Other
    }
}

// ---------------------------------------------------------------------------------------
// Anthropic messages

struct BlockAcc {
    block: Map<String, Value>,
    /// The concatenated `input_json_delta` fragments, when the block had any.
    json: Option<String>,
}

fn assemble_anthropic(events: &[SseEvent]) -> Result<Value, ShapeError> {
    let mut message: Option<Map<String, Value>> = None;
    let mut blocks: BTreeMap<u64, BlockAcc> = BTreeMap::new();
    let mut done = false;
    for event in events {
        let mut data = parse_data(event)?;
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or("")
            .to_owned();
        let index = data.get("index").and_then(Value::as_u64);
        match kind.as_str() {
            "message_start" => match data.get_mut("message").map(Value::take) {
                Some(Value::Object(start)) => message = Some(start),
                _ => return Err(malformed("`message_start` without a message object")),
            },
            "content_block_start" => {
                let (Some(index), Some(Value::Object(block))) =
                    (index, data.get_mut("content_block").map(Value::take))
                else {
                    return Err(malformed("`content_block_start` without index or block"));
                };
                blocks.insert(index, BlockAcc { block, json: None });
            }
            "content_block_delta" => {
                let Some(acc) = index.and_then(|i| blocks.get_mut(&i)) else {
                    return Err(malformed(
                        "`content_block_delta` for a block that never started",
                    ));
                };
                let delta = data.get("delta").unwrap_or(&Value::Null);
                let text = |key: &str| delta.get(key).and_then(Value::as_str).unwrap_or("");
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => append_str(&mut acc.block, "text", text("text")),
                    Some("thinking_delta") => {
                        append_str(&mut acc.block, "thinking", text("thinking"));
                    }
                    Some("signature_delta") => {
                        append_str(&mut acc.block, "signature", text("signature"));
                    }
                    Some("input_json_delta") => acc
                        .json
                        .get_or_insert_with(String::new)
                        .push_str(text("partial_json")),
                    Some("citations_delta") => {
                        let citation = delta.get("citation").cloned().unwrap_or(Value::Null);
                        match acc.block.get_mut("citations") {
                            Some(Value::Array(list)) => list.push(citation),
                            _ => {
                                acc.block.insert("citations".into(), json!([citation]));
                            }
                        }
                    }
                    // Unknown delta types carry nothing we can fold; clients ignore them.
                    _ => {}
                }
            }
            "message_delta" => {
                let Some(message) = message.as_mut() else {
                    return Err(malformed("`message_delta` before `message_start`"));
                };
                if let Some(Value::Object(delta)) = data.get("delta") {
                    for (key, value) in delta {
                        message.insert(key.clone(), value.clone());
                    }
                }
                if let Some(Value::Object(counts)) = data.get("usage") {
                    let usage = message
                        .entry("usage")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(usage) = usage {
                        // Counts are cumulative: the later value wins; a null adds nothing.
                        for (key, value) in counts.iter().filter(|(_, v)| !v.is_null()) {
                            usage.insert(key.clone(), value.clone());
                        }
                    }
                }
            }
            "message_stop" => {
                done = true;
                break;
            }
            "error" => {
                return Err(ShapeError::Upstream {
                    message: error_message(data.get("error").unwrap_or(&Value::Null)),
                });
            }
            // `ping`, `content_block_stop` and event types newer than this code.
            _ => {}
        }
    }
    if !done {
        return Err(ShapeError::Incomplete {
            expected: "event: message_stop",
        });
    }
    let Some(mut message) = message else {
        return Err(malformed("the recorded stream has no `message_start`"));
    };
    let mut content = Vec::with_capacity(blocks.len());
    for acc in blocks.into_values() {
        let mut block = acc.block;
        if let Some(json) = acc.json {
            let input = if json.trim().is_empty() {
                Value::Object(Map::new())
            } else {
                serde_json::from_str(&json).map_err(|source| ShapeError::Json {
                    what: "a tool_use block's streamed input",
                    source,
                })?
            };
            block.insert("input".into(), input);
        }
        content.push(Value::Object(block));
    }
    message.insert("content".into(), Value::Array(content));
    Ok(Value::Object(message))
}

fn anthropic_event(out: &mut Vec<Bytes>, name: &str, payload: Value) {
    out.push(encode_named(name, &payload.to_string()));
}

fn synthesize_anthropic(mut body: Map<String, Value>) -> Result<Vec<Bytes>, ShapeError> {
    if body.get("type").and_then(Value::as_str) != Some(MESSAGE_TYPE) {
        return Err(malformed("the cached body is not an Anthropic `message`"));
    }
    let Some(Value::Array(content)) = body.insert("content".into(), json!([])) else {
        return Err(malformed("the cached message has no `content` array"));
    };
    let stop_reason = body.insert("stop_reason".into(), Value::Null);
    let stop_sequence = body.insert("stop_sequence".into(), Value::Null);
    let output_tokens = body
        .get("usage")
        .and_then(|u| u.get("output_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    // A real `message_start` reports the few output tokens produced so far; the total
    // arrives in `message_delta`.
    match body.get_mut("usage") {
        Some(Value::Object(usage)) => {
            usage.insert("output_tokens".into(), Value::from(output_tokens.min(1)));
        }
        _ => {
            body.insert(
                "usage".into(),
                json!({"input_tokens": 0, "output_tokens": 0}),
            );
        }
    }
    let mut out = Vec::new();
    let mut start = Map::new();
    start.insert("type".into(), Value::from("message_start"));
    start.insert("message".into(), Value::Object(body));
    anthropic_event(&mut out, "message_start", Value::Object(start));
    for (index, block) in content.into_iter().enumerate() {
        let Value::Object(mut block) = block else {
            return Err(malformed("a content block is not an object"));
        };
        let mut deltas: Vec<Value> = Vec::new();
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(Value::String(text)) = block.insert("text".into(), Value::from("")) {
                    deltas.extend(
                        pieces(&text)
                            .into_iter()
                            .map(|p| json!({"type": "text_delta", "text": p})),
                    );
                }
                if matches!(block.get("citations"), Some(Value::Array(_)))
                    && let Some(Value::Array(citations)) = block.remove("citations")
                {
                    deltas.extend(
                        citations
                            .into_iter()
                            .map(|c| json!({"type": "citations_delta", "citation": c})),
                    );
                }
            }
            Some("thinking") => {
                if let Some(Value::String(thinking)) =
                    block.insert("thinking".into(), Value::from(""))
                {
                    deltas.extend(
                        pieces(&thinking)
                            .into_iter()
                            .map(|p| json!({"type": "thinking_delta", "thinking": p})),
                    );
                }
                if let Some(Value::String(signature)) = block.remove("signature") {
                    deltas.push(json!({"type": "signature_delta", "signature": signature}));
                }
            }
            // `tool_use`, `server_tool_use`, `mcp_tool_use`: the input streams as JSON text.
            _ if block.contains_key("input") => {
                if let Some(input) = block.insert("input".into(), json!({})) {
                    let text = input.to_string();
                    deltas.extend(
                        pieces(&text)
                            .into_iter()
                            .map(|p| json!({"type": "input_json_delta", "partial_json": p})),
                    );
                }
            }
            // Anything else (redacted thinking, tool results) arrives whole in the start.
            _ => {}
        }
        anthropic_event(
            &mut out,
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        for delta in deltas {
            anthropic_event(
                &mut out,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            );
        }
        anthropic_event(
            &mut out,
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
    }
    anthropic_event(
        &mut out,
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": {
                "stop_reason": stop_reason.unwrap_or(Value::Null),
                "stop_sequence": stop_sequence.unwrap_or(Value::Null),
            },
            "usage": {"output_tokens": output_tokens},
        }),
    );
    anthropic_event(&mut out, "message_stop", json!({"type": "message_stop"}));
    Ok(out)
}

fn classify_anthropic(event: &[u8]) -> EventClass {
    match event_name(event) {
        Some(b"message_stop") => EventClass::Terminal,
        Some(b"error") => EventClass::Error,
        Some(_) => EventClass::Other,
        // No `event:` line (a lenient compatible server): the JSON `type` decides, parsed
        // only when the bytes mention one of the two types that matter.
        None => {
            if MESSAGE_STOP.find(event).is_none() && ERROR_KEY.find(event).is_none() {
                return EventClass::Other;
            }
            match parse_event(event)
                .as_ref()
                .and_then(|data| data.get("type"))
                .and_then(Value::as_str)
            {
                Some("message_stop") => EventClass::Terminal,
                Some("error") => EventClass::Error,
                _ => EventClass::Other,
            }
        }
    }
}

#[cfg(test)]
mod tests;
