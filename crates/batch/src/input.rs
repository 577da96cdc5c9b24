//! One input line in the OpenAI Batch format:
//! `{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`.
//!
//! It owns what a line must say to be sent — a non-empty string `custom_id`, `method`
//! `POST`, one of the three model-calling `url`s, a `body` object naming its `model` and not
//! asking for a stream — and the [`Request`] a valid line becomes. Uniqueness of ids and the
//! file's limits need the whole file and are [`crate::validate`]'s.

use dispatch::Kind;
use dispatch::error::json_type;
use serde_json::{Map, Value};

/// The limits of one input file (OpenAI's Batch API: 50,000 requests, 200 MB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request lines (blank lines do not count).
    pub max_lines: u64,
    /// Bytes of the file.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_lines: 50_000,
            max_bytes: 200_000_000,
        }
    }
}

/// A valid line, ready to dispatch.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The caller's id for the line.
    pub custom_id: String,
    /// The operation its `url` names.
    pub kind: Kind,
    /// The request body, as written.
    pub body: Value,
}

/// The result of checking one line on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The line's `custom_id` when it has a usable one (even if the line is invalid
    /// otherwise), for duplicate detection and for its error line.
    pub custom_id: Option<String>,
    /// The request, or every problem of the line joined into one message.
    pub result: Result<Request, String>,
}

/// Whether a raw line is blank (whitespace only): blank lines are skipped, not requests.
pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The operation of a batch `url`.
pub fn kind_of_url(url: &str) -> Option<Kind> {
    [Kind::Chat, Kind::Completions, Kind::Messages]
        .into_iter()
        .find(|k| k.route() == url)
}

/// Checks one line (without its line terminator).
pub fn check(line: &[u8]) -> Checked {
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Checked {
                custom_id: None,
                result: Err(format!("is not JSON ({e})")),
            };
        }
    };
    let Value::Object(mut obj) = value else {
        return Checked {
            custom_id: None,
            result: Err(format!("is {}, not a JSON object", json_type(&value))),
        };
    };
    let mut problems: Vec<String> = Vec::new();
    let custom_id = match obj.get("custom_id") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::String(_)) => {
            problems.push("custom_id is empty".to_owned());
            None
        }
        None | Some(Value::Null) => {
            problems.push("has no custom_id (every line needs a unique one)".to_owned());
            None
        }
        Some(other) => {
            problems.push(format!(
                "custom_id must be a string, not {}",
                json_type(other)
            ));
            None
        }
    };
    match obj.get("method") {
        Some(Value::String(m)) if m == "POST" => {}
        Some(Value::String(m)) => {
            problems.push(format!("method '{m}' is not supported (use POST)"))
        }
        None | Some(Value::Null) => problems.push("has no method (use \"POST\")".to_owned()),
        Some(other) => problems.push(format!("method must be \"POST\", not {}", json_type(other))),
    }
    let supported = "use /v1/chat/completions, /v1/completions or /v1/messages";
    let kind = match obj.get("url") {
        Some(Value::String(u)) => {
            let kind = kind_of_url(u);
            if kind.is_none() {
                problems.push(format!("url '{u}' is not supported ({supported})"));
            }
            kind
        }
        None | Some(Value::Null) => {
            problems.push(format!("has no url ({supported})"));
            None
        }
        Some(other) => {
            problems.push(format!("url must be a string, not {}", json_type(other)));
            None
        }
    };
    let body = match obj.remove("body") {
        Some(Value::Object(body)) => {
            check_body(&body, &mut problems);
            Some(Value::Object(body))
        }
        None | Some(Value::Null) => {
            problems.push("has no body (the request to send)".to_owned());
            None
        }
        Some(other) => {
            problems.push(format!(
                "body must be a JSON object, not {}",
                json_type(&other)
            ));
            None
        }
    };
    let result = match (problems.is_empty(), &custom_id, kind, body) {
        (true, Some(id), Some(kind), Some(body)) => Ok(Request {
            custom_id: id.clone(),
            kind,
            body,
        }),
        _ => Err(problems.join("; ")),
    };
    Checked { custom_id, result }
}

fn check_body(body: &Map<String, Value>, problems: &mut Vec<String>) {
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        Some(Value::String(_)) | None | Some(Value::Null) => {
            problems.push("body.model is missing: name the model to call".to_owned());
        }
        Some(other) => problems.push(format!(
            "body.model must be a string, not {}",
            json_type(other)
        )),
    }
    if body
        .get("stream")
        .is_some_and(|s| s != &Value::Bool(false) && !s.is_null())
    {
        problems.push(
            "body.stream is set: a batch line is answered as one JSON body, remove \"stream\""
                .to_owned(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_line_becomes_a_request() {
        let c = check(
            br#"{"custom_id":"a","method":"POST","url":"/v1/messages","body":{"model":"m","max_tokens":5}}"#,
        );
        let r = c.result.unwrap();
        assert_eq!(r.custom_id, "a");
        assert_eq!(r.kind, Kind::Messages);
        assert_eq!(r.body["max_tokens"], 5);
    }

    #[test]
    fn every_problem_of_a_line_is_named() {
        let c = check(br#"{"custom_id":"x","method":"GET","url":"/v1/embeddings","body":{}}"#);
        assert_eq!(c.custom_id.as_deref(), Some("x"));
        let msg = c.result.unwrap_err();
        assert!(msg.contains("method 'GET'"), "{msg}");
        assert!(msg.contains("/v1/embeddings"), "{msg}");
        assert!(msg.contains("body.model"), "{msg}");

        let msg = check(b"{not json").result.unwrap_err();
        assert!(msg.starts_with("is not JSON"), "{msg}");
        let msg = check(b"[1]").result.unwrap_err();
        assert_eq!(msg, "is an array, not a JSON object");
        let c = check(br#"{"custom_id":7,"method":"POST","url":"/v1/completions","body":{"model":"m","stream":true}}"#);
        assert_eq!(c.custom_id, None);
        let msg = c.result.unwrap_err();
        assert!(
            msg.contains("custom_id must be a string, not a number"),
            "{msg}"
        );
        assert!(msg.contains("body.stream"), "{msg}");
    }

    #[test]
    fn blank_lines_are_not_requests() {
        assert!(is_blank(b""));
        assert!(is_blank(b"  \t\r"));
        assert!(!is_blank(b" {}"));
    }
}
