//! Reading the response headers that matter for measurement: rate limits (OpenAI
//! `x-ratelimit-*`, Anthropic `anthropic-ratelimit-*`), `retry-after(-ms)`, the server's
//! own queue time (`server-timing: queue;dur=MS`), cache hits and the request id.
//!
//! Value formats (Go durations, RFC 3339, retry-after) are [`protocol::ratelimit`]'s; this
//! module only finds the headers and fills a [`RateLimitSnapshot`]. Unparseable values are
//! skipped: a header we cannot read must not fail a request.

use std::time::{Duration, SystemTime};

use hyper::header::HeaderMap;
use protocol::ratelimit::{self as rl, parse_go_duration, parse_rfc3339};

use crate::ledger::RateLimitSnapshot;

/// The response header a tokenpace gateway sets on cache hits.
pub const X_TOKENPACE_CACHE: &str = "x-tokenpace-cache";

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    text(headers, name).and_then(|v| v.parse().ok())
}

fn go_duration(headers: &HeaderMap, name: &str) -> Option<Duration> {
    text(headers, name).and_then(|v| parse_go_duration(v).ok())
}

/// An RFC 3339 reset time as the time left after `now` (zero when already past).
fn reset_in(headers: &HeaderMap, name: &str, now: SystemTime) -> Option<Duration> {
    let at = parse_rfc3339(text(headers, name)?).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The rate-limit snapshot of a response. `now` is the wall-clock time the response
/// arrived, used only to turn Anthropic's absolute reset times into durations.
pub fn rate_limit_snapshot(headers: &HeaderMap, now: SystemTime) -> RateLimitSnapshot {
    let retry_after = text(headers, rl::RETRY_AFTER_MS)
        .and_then(rl::parse_retry_after_ms)
        .or_else(|| text(headers, rl::RETRY_AFTER).and_then(rl::parse_retry_after));
    let openai = RateLimitSnapshot {
        requests_limit: number(headers, rl::X_RATELIMIT_LIMIT_REQUESTS),
        requests_remaining: number(headers, rl::X_RATELIMIT_REMAINING_REQUESTS),
        requests_reset: go_duration(headers, rl::X_RATELIMIT_RESET_REQUESTS),
        tokens_limit: number(headers, rl::X_RATELIMIT_LIMIT_TOKENS),
        tokens_remaining: number(headers, rl::X_RATELIMIT_REMAINING_TOKENS),
        tokens_reset: go_duration(headers, rl::X_RATELIMIT_RESET_TOKENS),
        retry_after,
        ..RateLimitSnapshot::default()
    };
    // Anthropic's names fill whatever OpenAI's did not (a server sends one family).
    RateLimitSnapshot {
        requests_limit: openai
            .requests_limit
            .or_else(|| number(headers, rl::ANTHROPIC_RATELIMIT_REQUESTS_LIMIT)),
        requests_remaining: openai
            .requests_remaining
            .or_else(|| number(headers, rl::ANTHROPIC_RATELIMIT_REQUESTS_REMAINING)),
        requests_reset: openai
            .requests_reset
            .or_else(|| reset_in(headers, rl::ANTHROPIC_RATELIMIT_REQUESTS_RESET, now)),
        tokens_limit: openai
            .tokens_limit
            .or_else(|| number(headers, rl::ANTHROPIC_RATELIMIT_TOKENS_LIMIT)),
        tokens_remaining: openai
            .tokens_remaining
            .or_else(|| number(headers, rl::ANTHROPIC_RATELIMIT_TOKENS_REMAINING)),
        tokens_reset: openai
            .tokens_reset
            .or_else(|| reset_in(headers, rl::ANTHROPIC_RATELIMIT_TOKENS_RESET, now)),
        input_tokens_limit: number(headers, rl::ANTHROPIC_RATELIMIT_INPUT_TOKENS_LIMIT),
        input_tokens_remaining: number(headers, rl::ANTHROPIC_RATELIMIT_INPUT_TOKENS_REMAINING),
        input_tokens_reset: reset_in(headers, rl::ANTHROPIC_RATELIMIT_INPUT_TOKENS_RESET, now),
        output_tokens_limit: number(headers, rl::ANTHROPIC_RATELIMIT_OUTPUT_TOKENS_LIMIT),
        output_tokens_remaining: number(headers, rl::ANTHROPIC_RATELIMIT_OUTPUT_TOKENS_REMAINING),
        output_tokens_reset: reset_in(headers, rl::ANTHROPIC_RATELIMIT_OUTPUT_TOKENS_RESET, now),
        retry_after,
    }
}

/// The `queue` metric's `dur` (milliseconds) from every `server-timing` header.
pub fn server_queue(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("server-timing")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_server_timing_queue)
}

/// Parses one `server-timing` value (`queue;dur=12.5, db;dur=3`) for the `queue` metric.
/// Per the Server-Timing syntax, metrics are comma-separated and parameters
/// semicolon-separated; `dur` is in milliseconds and may be fractional or quoted.
pub fn parse_server_timing_queue(value: &str) -> Option<Duration> {
    value.split(',').find_map(|metric| {
        let mut parts = metric.split(';').map(str::trim);
        if !parts.next()?.eq_ignore_ascii_case("queue") {
            return None;
        }
        parts.find_map(|param| {
            let (name, v) = param.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("dur") {
                return None;
            }
            let ms: f64 = v.trim().trim_matches('"').parse().ok()?;
            if !ms.is_finite() || ms < 0.0 {
                return None;
            }
            Duration::try_from_secs_f64(ms / 1000.0).ok()
        })
    })
}

/// Whether the response says it was served from a cache (`x-tokenpace-cache: hit`).
pub fn cache_hit_header(headers: &HeaderMap) -> bool {
    text(headers, X_TOKENPACE_CACHE).is_some_and(|v| v.eq_ignore_ascii_case("hit"))
}

/// The provider's request id: `x-request-id` (OpenAI) or `request-id` (Anthropic).
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    text(headers, "x-request-id")
        .or_else(|| text(headers, "request-id"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn server_timing_queue() {
        assert_eq!(
            parse_server_timing_queue("queue;dur=12.5"),
            Some(Duration::from_micros(12_500))
        );
        assert_eq!(
            parse_server_timing_queue("db;dur=3, Queue;desc=\"wait\";dur=\"7\""),
            Some(Duration::from_millis(7))
        );
        assert_eq!(parse_server_timing_queue("queue"), None);
        assert_eq!(parse_server_timing_queue("queue;dur=-1"), None);
        assert_eq!(parse_server_timing_queue("queued;dur=1"), None);
        assert_eq!(parse_server_timing_queue("queue;dur=NaN"), None);
        let h = map(&[
            ("server-timing", "db;dur=1"),
            ("server-timing", "queue;dur=0.000"),
        ]);
        assert_eq!(server_queue(&h), Some(Duration::ZERO));
    }

    #[test]
    fn openai_snapshot() {
        let h = map(&[
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-remaining-requests", "59"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-limit-tokens", "150000"),
            ("x-ratelimit-remaining-tokens", "149984"),
            ("x-ratelimit-reset-tokens", "6m0s"),
            ("retry-after", "46"),
            ("retry-after-ms", "45190"),
        ]);
        let s = rate_limit_snapshot(&h, SystemTime::now());
        assert_eq!(s.requests_limit, Some(60));
        assert_eq!(s.requests_remaining, Some(59));
        assert_eq!(s.requests_reset, Some(Duration::from_secs(1)));
        assert_eq!(s.tokens_limit, Some(150_000));
        assert_eq!(s.tokens_remaining, Some(149_984));
        assert_eq!(s.tokens_reset, Some(Duration::from_secs(360)));
        // retry-after-ms wins over retry-after.
        assert_eq!(s.retry_after, Some(Duration::from_millis(45_190)));
        assert_eq!(s.input_tokens_limit, None);
        assert!(!s.is_empty());
    }

    #[test]
    fn anthropic_resets_become_durations_from_now() {
        let now = parse_rfc3339("2025-08-21T12:40:00Z").unwrap();
        let h = map(&[
            ("anthropic-ratelimit-requests-limit", "1000"),
            ("anthropic-ratelimit-requests-remaining", "999"),
            ("anthropic-ratelimit-requests-reset", "2025-08-21T12:40:59Z"),
            ("anthropic-ratelimit-tokens-limit", "96000"),
            (
                "anthropic-ratelimit-tokens-reset",
                "2025-08-21T12:40:00.500Z",
            ),
            ("anthropic-ratelimit-input-tokens-limit", "80000"),
            ("anthropic-ratelimit-input-tokens-remaining", "79000"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2025-08-21T12:39:00Z",
            ),
            ("anthropic-ratelimit-output-tokens-limit", "16000"),
            ("anthropic-ratelimit-output-tokens-reset", "not a time"),
            ("retry-after", "3"),
        ]);
        let s = rate_limit_snapshot(&h, now);
        assert_eq!(s.requests_limit, Some(1000));
        assert_eq!(s.requests_remaining, Some(999));
        assert_eq!(s.requests_reset, Some(Duration::from_secs(59)));
        assert_eq!(s.tokens_limit, Some(96_000));
        assert_eq!(s.tokens_reset, Some(Duration::from_millis(500)));
        assert_eq!(s.input_tokens_limit, Some(80_000));
        assert_eq!(s.input_tokens_remaining, Some(79_000));
        // A reset in the past is zero, not an error.
        assert_eq!(s.input_tokens_reset, Some(Duration::ZERO));
        assert_eq!(s.output_tokens_limit, Some(16_000));
        assert_eq!(s.output_tokens_reset, None);
        assert_eq!(s.retry_after, Some(Duration::from_secs(3)));
    }

    #[test]
    fn no_headers_is_empty_and_garbage_is_skipped() {
        assert!(rate_limit_snapshot(&HeaderMap::new(), SystemTime::now()).is_empty());
        let h = map(&[
            ("x-ratelimit-limit-requests", "lots"),
            ("x-ratelimit-reset-tokens", "soon"),
            ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ]);
        assert!(rate_limit_snapshot(&h, SystemTime::now()).is_empty());
    }

    #[test]
    fn cache_and_request_id() {
        let h = map(&[("x-tokenpace-cache", "HIT"), ("request-id", "req_1")]);
        assert!(cache_hit_header(&h));
        assert_eq!(request_id(&h).as_deref(), Some("req_1"));
        assert!(!cache_hit_header(&map(&[("x-tokenpace-cache", "miss")])));
    }
}
