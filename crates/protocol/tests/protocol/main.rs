//! Integration tests of the wire formats: every fixture under `tests/fixtures/` is decoded
//! with the SSE decoder and the typed structs, plus property tests of the framing and the
//! header formats. One test binary, split into modules by what they exercise.

// Clippy's `allow-unwrap-in-tests` covers `#[test]` functions, not the shared helpers of
// an integration-test binary; in both, a failed unwrap is exactly a failed test.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

// Other crates see this one as `protocol` (the workspace renames it); use the same name.
extern crate tokenpace_protocol as protocol;

mod anthropic_fixtures;
mod compat_servers;
mod openai_fixtures;
mod ratelimit_props;
mod requests;
mod sse_props;

use protocol::sse::{SseDecoder, SseEvent};
use serde_json::Value;

/// The text of a fixture file.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Decodes a byte stream fed in chunks of `chunk` bytes.
pub fn decode_in_chunks(bytes: &[u8], chunk: usize) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::default();
    let mut events = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        events.extend(decoder.push(piece).unwrap());
    }
    events.extend(decoder.finish().unwrap());
    events
}

/// Decodes an SSE fixture, checking on the way that feeding it whole, byte by byte, in
/// 7-byte chunks and with `\r\n` or `\r` line endings all give the same events.
pub fn sse_fixture(name: &str) -> Vec<SseEvent> {
    let text = fixture(name);
    let whole = decode_in_chunks(text.as_bytes(), text.len());
    assert!(!whole.is_empty(), "{name} decodes to no events");
    assert_eq!(
        decode_in_chunks(text.as_bytes(), 1),
        whole,
        "{name} byte by byte"
    );
    assert_eq!(
        decode_in_chunks(text.as_bytes(), 7),
        whole,
        "{name} in 7-byte chunks"
    );
    let crlf = text.replace('\n', "\r\n");
    assert_eq!(
        decode_in_chunks(crlf.as_bytes(), 1),
        whole,
        "{name} with CRLF"
    );
    let cr = text.replace('\n', "\r");
    assert_eq!(decode_in_chunks(cr.as_bytes(), 3), whole, "{name} with CR");
    whole
}

/// Parses a JSON text into a `Value` (for comparing re-serialized payloads).
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Asserts that `T` reads `text` and writes back an equal JSON value.
pub fn assert_round_trip<T>(text: &str) -> T
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let typed: T = serde_json::from_str(text).unwrap();
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        json(text),
        "round trip of {text}"
    );
    typed
}
