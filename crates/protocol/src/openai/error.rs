//! The OpenAI error body `{"error": {message, type, param, code}}` (api-formats §1.6),
//! used both as an HTTP error response and as a mid-stream `data:` event (§1.5.6).
//!
//! Owns the shape and constructors for the errors tokenpace itself produces. Which HTTP
//! status goes with which error is decided by the gateway and the simulator.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `type` of a malformed-request error (HTTP 400, also used for 404 unknown model).
pub const INVALID_REQUEST_ERROR: &str = "invalid_request_error";
/// `type` of a server-side failure (HTTP 500).
pub const SERVER_ERROR: &str = "server_error";
/// `code` of a 429 caused by a rate limit (worth retrying).
pub const RATE_LIMIT_EXCEEDED: &str = "rate_limit_exceeded";
/// `type` and `code` of a 429 caused by exhausted quota (not worth retrying).
pub const INSUFFICIENT_QUOTA: &str = "insufficient_quota";
/// `code` of a 404 for an unknown model.
pub const MODEL_NOT_FOUND: &str = "model_not_found";

/// An OpenAI-style error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// The `error` object. All four keys are always serialized (`param` and `code` as `null`
/// when unset), as the OpenAI spec requires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Human-readable message.
    pub message: String,
    /// Error class: `invalid_request_error`, `server_error`, `tokens`, `requests`, ...
    #[serde(rename = "type", default)]
    pub r#type: String,
    /// The offending request parameter, if any.
    #[serde(default)]
    pub param: Option<String>,
    /// Machine-readable code. A string (or `null`) for OpenAI; vLLM and llama.cpp send the
    /// HTTP status as an integer, hence a raw JSON value.
    #[serde(default)]
    pub code: Option<Value>,
}

impl ErrorBody {
    /// An error with the given message, type and optional string code; `param` is `null`.
    pub fn new(message: impl Into<String>, r#type: impl Into<String>, code: Option<&str>) -> Self {
        Self {
            error: ErrorDetail {
                message: message.into(),
                r#type: r#type.into(),
                param: None,
                code: code.map(|c| Value::String(c.to_owned())),
            },
        }
    }

    /// A 400-style `invalid_request_error` without code.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(message, INVALID_REQUEST_ERROR, None)
    }

    /// The 404 body for an unknown model: `invalid_request_error` / `model_not_found`, worded
    /// as OpenAI words it.
    pub fn not_found_model(model: &str) -> Self {
        Self::new(
            format!("The model `{model}` does not exist or you do not have access to it."),
            INVALID_REQUEST_ERROR,
            Some(MODEL_NOT_FOUND),
        )
    }

    /// A 429 rate-limit body: `kind` is the error type, `tokens` for a TPM limit or
    /// `requests` for an RPM limit; the code is `rate_limit_exceeded`.
    pub fn rate_limit(message: impl Into<String>, kind: impl Into<String>) -> Self {
        Self::new(message, kind, Some(RATE_LIMIT_EXCEEDED))
    }

    /// A 429 quota body (`insufficient_quota`), which clients must not retry.
    pub fn insufficient_quota(message: impl Into<String>) -> Self {
        Self::new(message, INSUFFICIENT_QUOTA, Some(INSUFFICIENT_QUOTA))
    }

    /// A 500-style `server_error` without code.
    pub fn server_error(message: impl Into<String>) -> Self {
        Self::new(message, SERVER_ERROR, None)
    }

    /// Sets `param`.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.error.param = Some(param.into());
        self
    }

    /// The code when it is a string (`None` for `null` or an integer code).
    pub fn code_str(&self) -> Option<&str> {
        self.error.code.as_ref().and_then(Value::as_str)
    }
}
