//! The output and error lines, in the OpenAI Batch format (`BatchRequestOutput`):
//!
//! ```json
//! {"id":"batch_req_…","custom_id":"a","response":{"status_code":200,"request_id":"req_…","body":{…}},"error":null}
//! {"id":"batch_req_…","custom_id":"b","response":null,"error":{"code":"upstream_error","message":"…"}}
//! ```
//!
//! An error line for an input line that failed validation also carries `error.line`, its
//! line number in the input (OpenAI's batch `errors` objects have the same field): such a
//! line may have no usable `custom_id`, so the line number is what identifies it.
//!
//! It owns writing a line (always one JSON object and one `\n`: JSON escapes every newline
//! inside strings, so a line can never be split) and reading back which input line a
//! written line answers ([`key_of`]), which the checkpoint's reconciliation needs.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which input line a result answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A valid line, by its `custom_id` (unique within a valid input).
    Id(String),
    /// A line that failed validation, by its line number.
    Line(u64),
}

/// Which file a result line goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dest {
    /// The output file: successful responses.
    Output,
    /// The error file: everything else.
    Errors,
}

impl Dest {
    /// The store's code for it.
    pub fn code(self) -> i64 {
        match self {
            Dest::Output => 0,
            Dest::Errors => 1,
        }
    }
}

#[derive(Serialize)]
struct Out<'a> {
    id: String,
    custom_id: Option<&'a str>,
    response: Option<ResponsePart<'a>>,
    error: Option<ErrorPart<'a>>,
}

#[derive(Serialize)]
struct ResponsePart<'a> {
    status_code: u16,
    request_id: &'a str,
    body: &'a Value,
}

#[derive(Serialize)]
struct ErrorPart<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
}

fn finish(out: &Out<'_>) -> Vec<u8> {
    // Serializing a struct of strings and a `Value` cannot fail; should it ever, the line
    // still says which request it answers.
    let mut bytes = serde_json::to_vec(out).unwrap_or_else(|e| {
        format!(
            "{{\"id\":\"{}\",\"custom_id\":{},\"response\":null,\"error\":{{\"code\":\"internal_error\",\"message\":{}}}}}",
            out.id,
            serde_json::to_string(&out.custom_id).unwrap_or_else(|_| "null".into()),
            serde_json::to_string(&e.to_string()).unwrap_or_else(|_| "\"\"".into()),
        )
        .into_bytes()
    });
    bytes.push(b'\n');
    bytes
}

/// A response line (a 2xx from the upstream or the cache), with its `\n`.
pub fn response(custom_id: &str, status_code: u16, request_id: &str, body: &Value) -> Vec<u8> {
    finish(&Out {
        id: new_id("batch_req_"),
        custom_id: Some(custom_id),
        response: Some(ResponsePart {
            status_code,
            request_id,
            body,
        }),
        error: None,
    })
}

/// An error line, with its `\n`. `line` is set for lines that failed validation.
pub fn error(custom_id: Option<&str>, code: &str, message: &str, line: Option<u64>) -> Vec<u8> {
    finish(&Out {
        id: new_id("batch_req_"),
        custom_id,
        response: None,
        error: Some(ErrorPart {
            code,
            message,
            line,
        }),
    })
}

#[derive(Deserialize)]
struct Written {
    custom_id: Option<String>,
    error: Option<WrittenError>,
}

#[derive(Deserialize)]
struct WrittenError {
    line: Option<u64>,
}

/// Which input line a written line (without its `\n`) answers; `None` when it is not a
/// result line.
pub fn key_of(line: &[u8]) -> Option<Key> {
    let w: Written = serde_json::from_slice(line).ok()?;
    match (w.error.and_then(|e| e.line), w.custom_id) {
        (Some(n), _) => Some(Key::Line(n)),
        (None, Some(id)) => Some(Key::Id(id)),
        (None, None) => None,
    }
}

/// SplitMix64: a small mixer for ids (no dependency; ids need uniqueness, not secrecy).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fresh id: `prefix` and 24 hex digits, unique within a process and, with the clock
/// and process id in the seed, across runs.
pub fn new_id(prefix: &str) -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        mix(nanos ^ (u64::from(std::process::id()) << 32))
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let a = mix(seed ^ n);
    let b = mix(a ^ seed.rotate_left(17));
    format!("{prefix}{a:016x}{:08x}", b >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_batch_shape_and_read_back() {
        let body = serde_json::json!({"id": "chatcmpl-1", "choices": []});
        let line = response("a", 200, "req_1", &body);
        assert!(line.ends_with(b"\n"));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert!(v["id"].as_str().unwrap().starts_with("batch_req_"));
        assert_eq!(v["custom_id"], "a");
        assert_eq!(v["response"]["status_code"], 200);
        assert_eq!(v["response"]["request_id"], "req_1");
        assert_eq!(v["response"]["body"], body);
        assert!(v["error"].is_null());
        assert_eq!(key_of(&line[..line.len() - 1]), Some(Key::Id("a".into())));

        let line = error(Some("b"), "upstream_error", "boom\nsecond line", None);
        assert_eq!(line.iter().filter(|&&c| c == b'\n').count(), 1);
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert!(v["response"].is_null());
        assert_eq!(v["error"]["code"], "upstream_error");
        assert!(v["error"].get("line").is_none());
        assert_eq!(key_of(&line), Some(Key::Id("b".into())));

        let line = error(None, "invalid_request", "is not JSON", Some(7));
        assert_eq!(key_of(&line), Some(Key::Line(7)));
        assert_eq!(key_of(b"{\"x\":1}"), None);
        assert_eq!(key_of(b"{\"custom_id\":\"tor"), None);
    }

    #[test]
    fn ids_are_unique() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id("x_")).collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!(new_id("batch_req_").len(), "batch_req_".len() + 24);
    }
}
