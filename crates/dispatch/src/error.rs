//! The one error type of a dispatched request: it knows its HTTP status, whether a retry
//! could help, how loudly to log it, and how to render itself as OpenAI or Anthropic error
//! JSON (STYLE habit 3); and [`json_type`], how a message names the JSON type it found.
//! Upstream error responses are not converted into this: they pass through with the
//! upstream's own status and body.

use bytes::Bytes;
use client::{Api, ErrorClass};
use http::StatusCode;
use serde_json::{Value, json};

/// The JSON type of `value` as an error message names it: `null`, `a boolean`, `a number`,
/// `a string`, `an array` or `an object` (as in "'model' must be a string, not a number").
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What went wrong, in the vocabulary both APIs share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed JSON, wrong types, bad headers (400).
    InvalidRequest,
    /// Missing or wrong gateway key (401).
    Authentication,
    /// Unknown model or route (404).
    NotFound,
    /// Request body too large (413).
    TooLarge,
    /// Wrong method on a known route (405).
    MethodNotAllowed,
    /// Over a limit (429).
    RateLimit,
    /// The upstream could not be reached or broke the response (502).
    Upstream,
    /// The upstream did not answer in time (504).
    Timeout,
    /// The gateway is shutting down (503).
    Unavailable,
    /// The gateway itself failed: its data directory could not be read or written (500).
    Internal,
}

/// A request that could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DispatchError {
    /// The class.
    pub kind: ErrorKind,
    /// A message that names the problem and the fix. Never contains a key.
    pub message: String,
    /// The offending request field, when there is one.
    pub param: Option<String>,
    /// A machine-readable code (OpenAI's `code`), e.g. `model_not_found`.
    pub code: Option<&'static str>,
    /// When a retry could succeed (`retry-after`), for rate-limit rejections.
    pub retry_after: Option<std::time::Duration>,
}

impl DispatchError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        DispatchError {
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// Sets `retry_after`.
    pub fn with_retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// A 400 about `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        DispatchError {
            kind: ErrorKind::InvalidRequest,
            message: message.into(),
            param: Some(param.into()),
            code: None,
            retry_after: None,
        }
    }

    /// Sets the code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The error for an upstream call that failed below HTTP (no response to pass on).
    pub fn upstream(upstream: &str, class: &ErrorClass) -> Self {
        match class {
            ErrorClass::Timeout { phase } => DispatchError::new(
                ErrorKind::Timeout,
                format!("upstream '{upstream}' timed out ({phase:?}); raise its timeout in the gateway config if it is just slow"),
            )
            .with_code("upstream_timeout"),
            other => DispatchError::new(
                ErrorKind::Upstream,
                format!("upstream '{upstream}' failed: {other}"),
            )
            .with_code("upstream_unreachable"),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::RateLimit => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the same request might succeed later.
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::RateLimit
                | ErrorKind::Upstream
                | ErrorKind::Timeout
                | ErrorKind::Unavailable
        )
    }

    /// Client mistakes are logged at debug, gateway or upstream failures at warn.
    pub fn log_level(&self) -> tracing::Level {
        if self.status().is_client_error() {
            tracing::Level::DEBUG
        } else {
            tracing::Level::WARN
        }
    }

    /// OpenAI's `error.type`.
    fn openai_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::InvalidRequest
            | ErrorKind::NotFound
            | ErrorKind::TooLarge
            | ErrorKind::MethodNotAllowed => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Upstream
            | ErrorKind::Timeout
            | ErrorKind::Unavailable
            | ErrorKind::Internal => "api_error",
        }
    }

    /// Anthropic's `error.type`.
    fn anthropic_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::InvalidRequest | ErrorKind::MethodNotAllowed => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::TooLarge => "request_too_large",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Unavailable => "overloaded_error",
            ErrorKind::Upstream | ErrorKind::Timeout | ErrorKind::Internal => "api_error",
        }
    }

    /// The error as the JSON object each API uses.
    pub fn json(&self, api: Api) -> serde_json::Value {
        match api {
            Api::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.openai_type(),
                "param": self.param,
                "code": self.code,
            }}),
            Api::Anthropic => json!({"type": "error", "error": {
                "type": self.anthropic_type(),
                "message": self.message,
            }}),
        }
    }

    /// The JSON body.
    pub fn body(&self, api: Api) -> Bytes {
        Bytes::from(self.json(api).to_string())
    }

    /// The error as one SSE event, for a stream already under way (STYLE habit 10).
    pub fn sse_event(&self, api: Api) -> Bytes {
        let data = self.json(api).to_string();
        match api {
            Api::OpenAi => protocol::sse::encode_data(&data),
            Api::Anthropic => protocol::sse::encode_named("error", &data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_dialects() {
        let e = DispatchError::new(ErrorKind::NotFound, "model 'x' is not routed")
            .with_code("model_not_found");
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        let o = e.json(Api::OpenAi);
        assert_eq!(o["error"]["type"], "invalid_request_error");
        assert_eq!(o["error"]["code"], "model_not_found");
        assert!(o["error"]["param"].is_null());
        let a = e.json(Api::Anthropic);
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "not_found_error");
        assert!(
            String::from_utf8_lossy(&e.sse_event(Api::Anthropic)).starts_with("event: error\n")
        );
    }
}
