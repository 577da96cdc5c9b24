//! Go `time.Duration` text, the format of OpenAI's `x-ratelimit-reset-*` headers
//! (`1s`, `6m0s`, `12ms`, `51.189s`, `1h2m3s`).
//!
//! Parsing follows Go's `time.ParseDuration` grammar (a sequence of decimal numbers, each
//! with an optional fraction and a unit) in exact integer arithmetic; formatting follows
//! `Duration.String()`. Negative durations have no `std::time::Duration` and are rejected.

use std::time::Duration;

use super::RateLimitParseError;

const NANOS_PER_SEC: u128 = 1_000_000_000;
/// Fraction digits beyond this are below a nanosecond for every unit and are ignored
/// (the bound also keeps `fraction * unit` inside `u128`).
const MAX_FRACTION_DIGITS: u32 = 24;

/// Parses a Go duration: units `h`, `m`, `s`, `ms`, `us`/`µs`/`μs`, `ns`, fractional values
/// and compounds (`1h2m3.5s`); a bare `0` is also accepted, as in Go. Surrounding
/// whitespace is ignored. Fractions below a nanosecond are truncated.
pub fn parse_go_duration(input: &str) -> Result<Duration, RateLimitParseError> {
    let err = |reason| RateLimitParseError::InvalidDuration {
        input: input.to_owned(),
        reason,
    };
    let mut rest = input.trim();
    let negative = if let Some(r) = rest.strip_prefix('-') {
        rest = r;
        true
    } else {
        if let Some(r) = rest.strip_prefix('+') {
            rest = r;
        }
        false
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(err("expected a number"));
        }
        let unit_len = after_number
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_number.len());
        let (unit, tail) = after_number.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3_600 * NANOS_PER_SEC,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        let mut int_value: u128 = 0;
        for d in int_digits.bytes() {
            int_value = int_value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u128::from(d - b'0')))
                .ok_or_else(|| err("too large"))?;
        }
        let mut frac_value: u128 = 0;
        let mut scale: u128 = 1;
        for d in frac_digits.bytes().take(MAX_FRACTION_DIGITS as usize) {
            frac_value = frac_value * 10 + u128::from(d - b'0');
            scale *= 10;
        }
        let part = int_value
            .checked_mul(unit_nanos)
            .and_then(|v| v.checked_add(frac_value * unit_nanos / scale))
            .ok_or_else(|| err("too large"))?;
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
        rest = tail;
    }
    if negative && total != 0 {
        return Err(err("negative"));
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| err("too large"))?;
    // `total % NANOS_PER_SEC` is below 10^9 and always fits.
    let nanos = u32::try_from(total % NANOS_PER_SEC).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// Formats like Go's `Duration.String()`: `0s`, `999ns`, `1.5µs`, `12ms`, `51.189s`,
/// `6m0s`, `1h2m3s`. Durations under a second use the largest unit below a second
/// (`ns`, `µs` or `ms`) with a fraction; longer ones are `[h]h[m]m<seconds>s`.
pub fn format_go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}\u{b5}s", fixed_point(nanos, 3));
    }
    if nanos < NANOS_PER_SEC {
        return format!("{}ms", fixed_point(nanos, 6));
    }
    let total_secs = nanos / NANOS_PER_SEC;
    let sub = nanos % NANOS_PER_SEC;
    let hours = total_secs / 3_600;
    let minutes = (total_secs % 3_600) / 60;
    let seconds = fixed_point((total_secs % 60) * NANOS_PER_SEC + sub, 9);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// `value / 10^digits` as a decimal with trailing fraction zeros (and a bare dot) removed.
fn fixed_point(value: u128, digits: u32) -> String {
    let scale = 10u128.pow(digits);
    let (int, frac) = (value / scale, value % scale);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:0width$}", width = digits as usize);
    format!("{int}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn parses_values_seen_in_the_wild() {
        assert_eq!(parse_go_duration("1s").unwrap(), ms(1000));
        assert_eq!(parse_go_duration("6m0s").unwrap(), ms(360_000));
        assert_eq!(parse_go_duration("12ms").unwrap(), ms(12));
        assert_eq!(parse_go_duration("9ms").unwrap(), ms(9));
        assert_eq!(parse_go_duration("51.189s").unwrap(), ms(51_189));
        assert_eq!(parse_go_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn parses_compounds_and_small_units() {
        assert_eq!(
            parse_go_duration("1h2m3s").unwrap(),
            Duration::from_secs(3723)
        );
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(parse_go_duration("2us").unwrap(), Duration::from_micros(2));
        assert_eq!(parse_go_duration("2µs").unwrap(), Duration::from_micros(2));
        assert_eq!(parse_go_duration("2μs").unwrap(), Duration::from_micros(2));
        assert_eq!(parse_go_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse_go_duration(".5s").unwrap(), ms(500));
        assert_eq!(parse_go_duration("1.s").unwrap(), ms(1000));
        assert_eq!(parse_go_duration("1m0.5s").unwrap(), ms(60_500));
        assert_eq!(parse_go_duration(" +3s ").unwrap(), ms(3000));
        assert_eq!(parse_go_duration("-0s").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_go_duration("0.000000001s").unwrap(),
            Duration::from_nanos(1)
        );
        assert_eq!(
            parse_go_duration("1.0000000000000000000000000009s").unwrap(),
            ms(1000)
        );
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "s",
            "1",
            "1x",
            "1.5",
            "-1s",
            ".s",
            "1s2",
            "1ss",
            "h1",
            "abc",
            "1 s",
            "99999999999999999999999999999999999999999h",
        ] {
            let err = parse_go_duration(bad).unwrap_err();
            assert!(
                matches!(err, RateLimitParseError::InvalidDuration { .. }),
                "{bad:?}"
            );
            assert!(err.to_string().contains("Go duration"), "{err}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(format_go_duration(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(format_go_duration(ms(12)), "12ms");
        assert_eq!(
            format_go_duration(Duration::from_micros(12_345)),
            "12.345ms"
        );
        assert_eq!(format_go_duration(ms(1000)), "1s");
        assert_eq!(format_go_duration(ms(51_189)), "51.189s");
        assert_eq!(format_go_duration(ms(360_000)), "6m0s");
        assert_eq!(format_go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go_duration(Duration::new(61, 5)), "1m1.000000005s");
    }
}
