//! Requests ready to send: [`PreparedRequest`] holds the endpoint, the path, the headers and
//! the body already serialized to [`Bytes`], so sending it (possibly thousands of times)
//! costs no JSON work. [`RequestBuilder`] builds the OpenAI chat body or the Anthropic
//! messages body from one description; [`RequestBuilder::from_body`] takes a whole request
//! body as written in a prompt file.
//!
//! The input-token estimate ([`protocol::tokens`]) is computed here too, once, so the
//! metrics can fall back to it when the server reports no usage.

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use protocol::openai::{ChatMessage, MessageContent};
use serde_json::{Map, Value};

use crate::error::ClientError;
use crate::target::{Api, Endpoint};

/// The `max_tokens` sent to Anthropic when none is given (the API requires the field).
pub const DEFAULT_ANTHROPIC_MAX_TOKENS: u32 = 1024;

/// The wire format of a request and its response, which decides how the response is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireDialect {
    /// OpenAI `POST /v1/chat/completions`.
    OpenAiChat,
    /// OpenAI legacy `POST /v1/completions`.
    OpenAiCompletion,
    /// Anthropic `POST /v1/messages`.
    AnthropicMessages,
}

impl WireDialect {
    /// The dialect a path implies, with the endpoint's API deciding unknown paths.
    fn for_path(path: &str, api: Api) -> WireDialect {
        let path = path.trim_end_matches('/');
        if path.ends_with("/messages") {
            WireDialect::AnthropicMessages
        } else if path.ends_with("/chat/completions") {
            WireDialect::OpenAiChat
        } else if path.ends_with("/completions") {
            WireDialect::OpenAiCompletion
        } else {
            match api {
                Api::OpenAi => WireDialect::OpenAiChat,
                Api::Anthropic => WireDialect::AnthropicMessages,
            }
        }
    }
}

/// One request, ready to be sent any number of times with [`crate::Client::send`].
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    endpoint: Endpoint,
    dialect: WireDialect,
    path: String,
    model: String,
    stream: bool,
    headers: HeaderMap,
    body: Bytes,
    input_estimate: Option<u64>,
}

impl PreparedRequest {
    /// The endpoint it goes to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The wire format.
    pub fn dialect(&self) -> WireDialect {
        self.dialect
    }

    /// The full request path, e.g. `/v1/chat/completions`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `model` of the body.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the body asks for a stream (`"stream": true`).
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// The serialized JSON body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// All request headers (the endpoint's plus `accept`).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The client-side input-token estimate ([`protocol::tokens`], o200k_base), when the
    /// body could be read as a chat, completion or messages request.
    pub fn input_estimate(&self) -> Option<u64> {
        self.input_estimate
    }

    /// The request as hyper sends it. Cheap: the headers are copied, the body is shared.
    pub(crate) fn to_http(&self) -> Result<hyper::Request<http_body_util::Full<Bytes>>, String> {
        let mut req = hyper::Request::post(self.path.as_str())
            .body(http_body_util::Full::new(self.body.clone()))
            .map_err(|e| format!("request for {}: {e}", self.path))?;
        *req.headers_mut() = self.headers.clone();
        Ok(req)
    }
}

/// Builds a [`PreparedRequest`] for a chat: the OpenAI chat body or the Anthropic messages
/// body, from the same description.
///
/// ```
/// # use tokenpace_client::{Api, RequestBuilder, Target};
/// # use protocol::openai::ChatMessage;
/// let endpoint = Target::new("sim", "http://127.0.0.1:8090", Api::OpenAi).endpoint()?;
/// let req = RequestBuilder::chat(&endpoint, "sim", vec![ChatMessage::new("user", "Hi")])
///     .max_tokens(64)
///     .stream(true)
///     .include_usage(true)
///     .build()?;
/// assert_eq!(req.path(), "/v1/chat/completions");
/// # Ok::<(), tokenpace_client::ClientError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    endpoint: Endpoint,
    model: String,
    messages: Vec<ChatMessage>,
    system: Option<String>,
    max_tokens: Option<u32>,
    stream: bool,
    include_usage: bool,
    extra: Map<String, Value>,
}

impl RequestBuilder {
    /// A chat with the given messages; not streamed, no cap, no extra fields.
    pub fn chat(endpoint: &Endpoint, model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        RequestBuilder {
            endpoint: endpoint.clone(),
            model: model.into(),
            messages,
            system: None,
            max_tokens: None,
            stream: false,
            include_usage: false,
            extra: Map::new(),
        }
    }

    /// A system prompt: the first message for OpenAI, the top-level `system` for Anthropic.
    pub fn system(mut self, system: Option<String>) -> Self {
        self.system = system;
        self
    }

    /// The cap on generated tokens (`max_tokens`). Anthropic requires one: when `None`,
    /// [`DEFAULT_ANTHROPIC_MAX_TOKENS`] is sent.
    pub fn max_tokens(mut self, max_tokens: impl Into<Option<u32>>) -> Self {
        self.max_tokens = max_tokens.into();
        self
    }

    /// Asks for an SSE stream.
    pub fn stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// OpenAI only: `stream_options.include_usage` when streaming, so the stream ends with
    /// a usage chunk. (Anthropic streams always carry usage.)
    pub fn include_usage(mut self, include_usage: bool) -> Self {
        self.include_usage = include_usage;
        self
    }

    /// Extra top-level body fields (`temperature`, `seed`, ...). They are written last and
    /// replace a standard field of the same name.
    pub fn extra(mut self, extra: Map<String, Value>) -> Self {
        self.extra = extra;
        self
    }

    /// Serializes the body and builds the request.
    pub fn build(self) -> Result<PreparedRequest, ClientError> {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(self.model.clone()));
        let path = match self.endpoint.api() {
            Api::OpenAi => {
                let mut messages = Vec::with_capacity(self.messages.len() + 1);
                if let Some(system) = &self.system {
                    messages.push(to_value(&ChatMessage::new("system", system.as_str()))?);
                }
                for m in &self.messages {
                    messages.push(to_value(m)?);
                }
                body.insert("messages".into(), Value::Array(messages));
                if let Some(max) = self.max_tokens {
                    body.insert("max_tokens".into(), Value::from(max));
                }
                if self.stream {
                    body.insert("stream".into(), Value::Bool(true));
                    if self.include_usage {
                        let mut options = Map::new();
                        options.insert("include_usage".into(), Value::Bool(true));
                        body.insert("stream_options".into(), Value::Object(options));
                    }
                }
                "/chat/completions"
            }
            Api::Anthropic => {
                // Anthropic has no system role: system messages join the top-level prompt.
                let mut system: Vec<String> = self.system.iter().cloned().collect();
                let mut messages = Vec::with_capacity(self.messages.len());
                for m in &self.messages {
                    if m.role == "system" || m.role == "developer" {
                        system.push(m.text());
                        continue;
                    }
                    let content = match &m.content {
                        Some(MessageContent::Text(t)) => Value::String(t.clone()),
                        // Text parts have the same shape in both APIs; other parts are
                        // passed through for the server to judge.
                        Some(MessageContent::Parts(parts)) => to_value(parts)?,
                        None => Value::String(String::new()),
                    };
                    let mut msg = Map::new();
                    msg.insert("role".into(), Value::String(m.role.clone()));
                    msg.insert("content".into(), content);
                    messages.push(Value::Object(msg));
                }
                body.insert(
                    "max_tokens".into(),
                    Value::from(self.max_tokens.unwrap_or(DEFAULT_ANTHROPIC_MAX_TOKENS)),
                );
                body.insert("messages".into(), Value::Array(messages));
                if !system.is_empty() {
                    body.insert("system".into(), Value::String(system.join("\n\n")));
                }
                if self.stream {
                    body.insert("stream".into(), Value::Bool(true));
                }
                "/messages"
            }
        };
        for (k, v) in self.extra {
            body.insert(k, v);
        }
        Self::from_body(&self.endpoint, path, Value::Object(body))
    }

    /// A request from a whole JSON body, as prompt files hold them. `path` is relative to
    /// the endpoint's base path (`/chat/completions`, `/completions`, `/messages`; a path
    /// that already starts with the base path is kept). The dialect follows the path.
    pub fn from_body(
        endpoint: &Endpoint,
        path: &str,
        body: Value,
    ) -> Result<PreparedRequest, ClientError> {
        let Value::Object(map) = &body else {
            return Err(ClientError::Request(
                "the body must be a JSON object (a whole chat or messages request)".into(),
            ));
        };
        let model = match map.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => {
                return Err(ClientError::Request(
                    "the body has no \"model\" string; add e.g. \"model\": \"gpt-4o-mini\"".into(),
                ));
            }
        };
        let stream = map.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let full_path = endpoint.join(path);
        let dialect = WireDialect::for_path(&full_path, endpoint.api());
        let input_estimate = estimate_input(dialect, &body);
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| ClientError::Request(format!("serializing the body: {e}")))?;
        let mut headers = endpoint.headers().clone();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(if stream {
                "text/event-stream"
            } else {
                "application/json"
            }),
        );
        Ok(PreparedRequest {
            endpoint: endpoint.clone(),
            dialect,
            path: full_path,
            model,
            stream,
            headers,
            body: Bytes::from(bytes),
            input_estimate,
        })
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ClientError> {
    serde_json::to_value(v).map_err(|e| ClientError::Request(format!("serializing a message: {e}")))
}

/// The shared input-token estimate, when the body reads as a request of its dialect.
fn estimate_input(dialect: WireDialect, body: &Value) -> Option<u64> {
    use protocol::tokens;
    match dialect {
        WireDialect::OpenAiChat => serde_json::from_value(body.clone())
            .ok()
            .map(|r| tokens::count_chat_input(&r)),
        WireDialect::OpenAiCompletion => serde_json::from_value(body.clone())
            .ok()
            .map(|r| tokens::count_completion_input(&r)),
        WireDialect::AnthropicMessages => serde_json::from_value(body.clone())
            .ok()
            .map(|r| tokens::count_messages_input(&r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;

    fn body(req: &PreparedRequest) -> Value {
        serde_json::from_slice(req.body()).unwrap()
    }

    #[test]
    fn openai_chat_body_with_usage() {
        let ep = Target::new("t", "http://h:1", Api::OpenAi)
            .endpoint()
            .unwrap();
        let mut extra = Map::new();
        extra.insert("temperature".into(), Value::from(0.5));
        let req = RequestBuilder::chat(&ep, "gpt-4o-mini", vec![ChatMessage::new("user", "Hi")])
            .system(Some("Be brief.".into()))
            .max_tokens(16)
            .stream(true)
            .include_usage(true)
            .extra(extra)
            .build()
            .unwrap();
        let b = body(&req);
        assert_eq!(b["messages"][0]["role"], "system");
        assert_eq!(b["messages"][1]["content"], "Hi");
        assert_eq!(b["max_tokens"], 16);
        assert_eq!(b["stream"], true);
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["temperature"], 0.5);
        assert_eq!(req.path(), "/v1/chat/completions");
        assert_eq!(req.dialect(), WireDialect::OpenAiChat);
        assert_eq!(req.headers()[header::ACCEPT], "text/event-stream");
        assert!(req.input_estimate().unwrap() > 0);
    }

    #[test]
    fn openai_without_stream_has_no_stream_options() {
        let ep = Target::new("t", "http://h:1", Api::OpenAi)
            .endpoint()
            .unwrap();
        let req = RequestBuilder::chat(&ep, "m", vec![ChatMessage::new("user", "Hi")])
            .include_usage(true)
            .build()
            .unwrap();
        let b = body(&req);
        assert!(b.get("stream").is_none());
        assert!(b.get("stream_options").is_none());
        assert!(b.get("max_tokens").is_none());
        assert!(!req.stream());
    }

    #[test]
    fn anthropic_body_has_top_level_system_and_default_max_tokens() {
        let ep = Target::new("a", "https://api.anthropic.com", Api::Anthropic)
            .with_api_key("k")
            .endpoint()
            .unwrap();
        let req = RequestBuilder::chat(
            &ep,
            "claude-x",
            vec![
                ChatMessage::new("system", "Rule two."),
                ChatMessage::new("user", "Hi"),
            ],
        )
        .system(Some("Rule one.".into()))
        .stream(true)
        .include_usage(true)
        .build()
        .unwrap();
        let b = body(&req);
        assert_eq!(b["system"], "Rule one.\n\nRule two.");
        assert_eq!(b["max_tokens"], DEFAULT_ANTHROPIC_MAX_TOKENS);
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
        assert!(b.get("stream_options").is_none());
        assert_eq!(req.path(), "/v1/messages");
        assert_eq!(req.dialect(), WireDialect::AnthropicMessages);
        assert_eq!(req.headers()["anthropic-version"], "2023-06-01");
        assert_eq!(req.headers()["x-api-key"], "k");
    }

    #[test]
    fn from_body_reads_model_stream_and_dialect() {
        let ep = Target::new("t", "http://h:1/v1", Api::OpenAi)
            .endpoint()
            .unwrap();
        let req = RequestBuilder::from_body(
            &ep,
            "/v1/completions",
            serde_json::json!({"model": "m", "prompt": "x", "stream": true}),
        )
        .unwrap();
        assert_eq!(req.dialect(), WireDialect::OpenAiCompletion);
        assert_eq!(req.path(), "/v1/completions");
        assert!(req.stream());
        assert_eq!(req.model(), "m");
        let err = RequestBuilder::from_body(&ep, "/chat/completions", serde_json::json!([1]))
            .unwrap_err();
        assert!(err.to_string().contains("JSON object"));
        let err =
            RequestBuilder::from_body(&ep, "/chat/completions", serde_json::json!({})).unwrap_err();
        assert!(err.to_string().contains("\"model\""));
    }
}
