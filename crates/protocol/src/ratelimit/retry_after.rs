//! `retry-after` (seconds) and `retry-after-ms` (milliseconds) header values.
//!
//! Only the numeric forms; the HTTP-date form of `retry-after` needs a clock, which this
//! crate does not read, so it yields `None` and callers fall back to their backoff.

use std::time::Duration;

/// Parses `retry-after` as seconds, integer or fractional (`46`, `0.5`). Returns `None`
/// for anything else (negative, not a number, an HTTP date).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_scaled(value, 1.0)
}

/// Parses `retry-after-ms` as milliseconds, integer or fractional (`45190`).
pub fn parse_retry_after_ms(value: &str) -> Option<Duration> {
    parse_scaled(value, 1e-3)
}

fn parse_scaled(value: &str, to_seconds: f64) -> Option<Duration> {
    let value = value.trim();
    // Rust's float parser also accepts `inf`, `NaN` and exponents; only plain decimals
    // are header values.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let number: f64 = value.parse().ok()?;
    Duration::try_from_secs_f64(number * to_seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_integer_and_float() {
        assert_eq!(parse_retry_after("46"), Some(Duration::from_secs(46)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
    }

    #[test]
    fn milliseconds() {
        assert_eq!(
            parse_retry_after_ms("45190"),
            Some(Duration::from_millis(45190))
        );
        assert_eq!(
            parse_retry_after_ms("1.5"),
            Some(Duration::from_micros(1500))
        );
    }

    #[test]
    fn rejects_non_numbers() {
        for bad in [
            "",
            "-1",
            "inf",
            "NaN",
            "1e3",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            ".",
        ] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
            assert_eq!(parse_retry_after_ms(bad), None, "{bad:?}");
        }
    }
}
