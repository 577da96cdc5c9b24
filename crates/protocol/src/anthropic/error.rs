//! The Anthropic error body `{"type":"error","error":{type,message},"request_id"}`
//! (api-formats §4.5), also the payload of an in-stream `error` event.
//!
//! Owns the shape and constructors for the common error types; the HTTP status that goes
//! with each (400, 404, 429, 500, 529, ...) is chosen by the gateway or the simulator.

use serde::{Deserialize, Serialize};

/// `error.type` for a malformed request (HTTP 400).
pub const INVALID_REQUEST_ERROR: &str = "invalid_request_error";
/// `error.type` for an unknown resource (HTTP 404).
pub const NOT_FOUND_ERROR: &str = "not_found_error";
/// `error.type` for a rate limit (HTTP 429).
pub const RATE_LIMIT_ERROR: &str = "rate_limit_error";
/// `error.type` for an internal error (HTTP 500).
pub const API_ERROR: &str = "api_error";
/// `error.type` for a temporary overload (HTTP 529).
pub const OVERLOADED_ERROR: &str = "overloaded_error";

/// An Anthropic error response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnthropicErrorBody {
    /// Always `error`.
    #[serde(rename = "type")]
    pub r#type: String,
    /// The error itself.
    pub error: AnthropicErrorDetail,
    /// `req_...`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The `error` object: a type and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnthropicErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `not_found_error`,
    /// `rate_limit_error`, `api_error`, `overloaded_error`, ...
    #[serde(rename = "type")]
    pub r#type: String,
    /// Human-readable message.
    pub message: String,
}

impl AnthropicErrorBody {
    /// An error body with the given `error.type` and message, without request id.
    pub fn new(r#type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            r#type: "error".to_owned(),
            error: AnthropicErrorDetail {
                r#type: r#type.into(),
                message: message.into(),
            },
            request_id: None,
        }
    }

    /// `invalid_request_error` (HTTP 400).
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST_ERROR, message)
    }

    /// `not_found_error` (HTTP 404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(NOT_FOUND_ERROR, message)
    }

    /// `rate_limit_error` (HTTP 429).
    pub fn rate_limit(message: impl Into<String>) -> Self {
        Self::new(RATE_LIMIT_ERROR, message)
    }

    /// `api_error` (HTTP 500).
    pub fn api_error(message: impl Into<String>) -> Self {
        Self::new(API_ERROR, message)
    }

    /// `overloaded_error` (HTTP 529; Anthropic's own message is `Overloaded`).
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(OVERLOADED_ERROR, message)
    }

    /// Sets `request_id`.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }
}
