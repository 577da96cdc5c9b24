//! Property tests of the rate-limit header formats.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use protocol::ratelimit::{
    ANTHROPIC_RATELIMIT_INPUT_TOKENS_RESET, X_RATELIMIT_RESET_TOKENS, format_go_duration,
    format_rfc3339, parse_go_duration, parse_retry_after, parse_rfc3339,
};

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in Unix seconds.
const YEAR_1: i64 = -62_135_596_800;
const YEAR_9999_END: i64 = 253_402_300_799;

fn time_at(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

proptest! {
    #[test]
    fn go_duration_format_parses_back(nanos in 0u64..=u64::MAX / 2) {
        let duration = Duration::from_nanos(nanos);
        let text = format_go_duration(duration);
        prop_assert_eq!(parse_go_duration(&text), Ok(duration), "{}", text);
    }

    #[test]
    fn go_duration_compounds(h in 0u64..1000, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
        let text = format!("{h}h{m}m{s}.{ms:03}s");
        let expected = Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms);
        prop_assert_eq!(parse_go_duration(&text), Ok(expected));
    }

    #[test]
    fn rfc3339_format_parses_back(secs in YEAR_1..=YEAR_9999_END, nanos in 0u32..1_000_000_000) {
        let whole = time_at(secs);
        let text = format_rfc3339(whole + Duration::from_nanos(u64::from(nanos)));
        prop_assert_eq!(text.len(), 20);
        prop_assert_eq!(parse_rfc3339(&text), Ok(whole), "{}", text);
    }

    #[test]
    fn parsers_never_panic(input in "\\PC{0,40}") {
        let _ = parse_go_duration(&input);
        let _ = parse_rfc3339(&input);
        let _ = parse_retry_after(&input);
    }

    #[test]
    fn rfc3339_shaped_garbage_never_panics(input in "[0-9T:+\\-.Zz ]{18,32}") {
        if let Ok(time) = parse_rfc3339(&input) {
            // Whatever parses formats to a valid timestamp again.
            prop_assert!(parse_rfc3339(&format_rfc3339(time)).is_ok());
        }
    }
}

#[test]
fn header_names_are_lowercase() {
    assert_eq!(X_RATELIMIT_RESET_TOKENS, "x-ratelimit-reset-tokens");
    assert_eq!(
        ANTHROPIC_RATELIMIT_INPUT_TOKENS_RESET,
        "anthropic-ratelimit-input-tokens-reset"
    );
}

#[test]
fn values_from_a_real_429() {
    // retry-after: 46, retry-after-ms: 45190, x-ratelimit-reset-tokens: 51.189s (§1.6)
    assert_eq!(parse_retry_after("46"), Some(Duration::from_secs(46)));
    assert_eq!(
        protocol::ratelimit::parse_retry_after_ms("45190"),
        Some(Duration::from_millis(45_190))
    );
    assert_eq!(
        parse_go_duration("51.189s"),
        Ok(Duration::from_millis(51_189))
    );
    assert_eq!(
        parse_rfc3339("2025-08-21T12:40:59Z").map(format_rfc3339),
        Ok("2025-08-21T12:40:59Z".to_owned())
    );
}
