//! Text formats of rate-limit header values: Go-style durations (OpenAI `x-ratelimit-reset-*`)
//! and RFC 3339 UTC timestamps (Anthropic `anthropic-ratelimit-*-reset`), with the civil-date
//! arithmetic written out here rather than borrowed from a date library.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NANOS_PER_MICRO: u128 = 1_000;
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Formats `d` exactly as Go's `time.Duration.String` does: `0s`, `999ns`, `1.5µs`, `12ms`,
/// `1s`, `51.189s`, `6m0s`, `1h2m3.5s`. Fractions are printed without trailing zeros.
///
/// Sub-millisecond values use the micro sign (`µs`), which is not valid in an HTTP header
/// value; the header methods round to whole milliseconds first, so they never use it.
#[must_use]
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < NANOS_PER_MICRO {
        return format!("{nanos}ns");
    }
    if nanos < NANOS_PER_MILLI {
        let mut out = fraction(nanos / NANOS_PER_MICRO, nanos % NANOS_PER_MICRO, 3);
        out.push_str("µs");
        return out;
    }
    if nanos < NANOS_PER_SEC {
        let mut out = fraction(nanos / NANOS_PER_MILLI, nanos % NANOS_PER_MILLI, 6);
        out.push_str("ms");
        return out;
    }
    let whole_secs = nanos / NANOS_PER_SEC;
    let sub_nanos = nanos % NANOS_PER_SEC;
    let hours = whole_secs / 3600;
    let minutes = (whole_secs % 3600) / 60;
    let secs = whole_secs % 60;
    let mut out = String::new();
    if hours > 0 {
        // Writing to a String cannot fail.
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    out.push_str(&fraction(secs, sub_nanos, 9));
    out.push('s');
    out
}

/// `whole` followed by `.` and the `digits`-wide zero-padded `rem` with trailing zeros removed
/// (nothing at all when `rem` is zero).
fn fraction(whole: u128, rem: u128, digits: usize) -> String {
    if rem == 0 {
        return whole.to_string();
    }
    let padded = format!("{rem:0digits$}");
    format!("{whole}.{}", padded.trim_end_matches('0'))
}

/// `d` rounded up to a whole number of milliseconds (saturating at `Duration::MAX`'s whole
/// milliseconds).
#[must_use]
pub(crate) fn round_up_to_millis(d: Duration) -> Duration {
    let sub = d.subsec_nanos() % 1_000_000;
    if sub == 0 {
        return d;
    }
    d.checked_add(Duration::from_nanos(u64::from(1_000_000 - sub)))
        .unwrap_or(Duration::from_millis(u64::MAX))
}

/// Whole milliseconds in `d`, rounded up, saturating at `u64::MAX`.
#[must_use]
pub(crate) fn ceil_millis(d: Duration) -> u64 {
    let millis = d.as_nanos().div_ceil(NANOS_PER_MILLI);
    u64::try_from(millis).unwrap_or(u64::MAX)
}

/// Whole seconds in `d`, rounded up.
#[must_use]
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    if d.subsec_nanos() == 0 {
        d.as_secs()
    } else {
        d.as_secs().saturating_add(1)
    }
}

/// Formats `t` as an RFC 3339 UTC timestamp with whole seconds, e.g. `2025-08-21T12:40:59Z`.
/// Sub-second parts are truncated; instants before the Unix epoch print as the epoch.
#[must_use]
pub fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        (of_day % 3600) / 60,
        of_day % 60
    )
}

/// Days in a Gregorian 400-year cycle (146,097: 400 × 365 + 97 leap days).
const DAYS_PER_400_YEARS: u64 = 146_097;

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_year(year: u64) -> u64 {
    if is_leap(year) { 366 } else { 365 }
}

fn days_in_month(year: u64, month: u32) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The (year, month 1–12, day 1–31) of the civil date `days` days after 1970-01-01.
///
/// Whole 400-year cycles are skipped arithmetically (each has the same length, and 1970 is
/// a fixed offset into one); the rest is walked year by year and month by month, so the loop
/// runs at most 400 + 12 times.
pub(crate) fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let cycles = days / DAYS_PER_400_YEARS;
    let mut rest = days % DAYS_PER_400_YEARS;
    let mut year = 1970 + cycles.saturating_mul(400);
    loop {
        let len = days_in_year(year);
        if rest < len {
            break;
        }
        rest -= len;
        year = year.saturating_add(1);
    }
    let mut month = 1;
    while month < 12 {
        let len = days_in_month(year, month);
        if rest < len {
            break;
        }
        rest -= len;
        month += 1;
    }
    // `rest` < 31 here, so the conversion is lossless.
    let day = u32::try_from(rest).unwrap_or(0) + 1;
    (year, month, day)
}

/// Inverse of [`civil_from_days`] for dates on or after 1970-01-01 (used by tests to check it).
#[cfg(test)]
pub(crate) fn days_from_civil(year: u64, month: u32, day: u32) -> u64 {
    let mut days = 0;
    let mut y = 1970;
    let cycles = (year - 1970) / 400;
    days += cycles * DAYS_PER_400_YEARS;
    y += cycles * 400;
    while y < year {
        days += days_in_year(y);
        y += 1;
    }
    for m in 1..month {
        days += days_in_month(year, m);
    }
    days + u64::from(day) - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn go_durations_match_observed_header_values() {
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(go_duration(Duration::from_millis(51_189)), "51.189s");
        assert_eq!(go_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(go_duration(Duration::from_millis(9)), "9ms");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(45_190)), "45.19s");
    }

    #[test]
    fn go_durations_follow_go_rules_at_every_scale() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(1)), "1ns");
        assert_eq!(go_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(go_duration(Duration::from_nanos(1_000)), "1µs");
        assert_eq!(go_duration(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(go_duration(Duration::from_nanos(1_500_000)), "1.5ms");
        assert_eq!(
            go_duration(Duration::from_nanos(999_999_999)),
            "999.999999ms"
        );
        assert_eq!(
            go_duration(Duration::from_nanos(1_000_000_001)),
            "1.000000001s"
        );
        assert_eq!(go_duration(Duration::from_secs(59)), "59s");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_millis(61_500)), "1m1.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(go_duration(Duration::from_secs(100 * 3600 + 1)), "100h0m1s");
        // No panic at the extreme.
        assert!(go_duration(Duration::MAX).ends_with('s'));
    }

    #[test]
    fn rounding_helpers_round_up() {
        assert_eq!(
            round_up_to_millis(Duration::from_nanos(1)),
            Duration::from_millis(1)
        );
        assert_eq!(
            round_up_to_millis(Duration::from_millis(7)),
            Duration::from_millis(7)
        );
        assert_eq!(
            round_up_to_millis(Duration::from_micros(45_189_001)),
            Duration::from_millis(45_190)
        );
        assert_eq!(round_up_to_millis(Duration::ZERO), Duration::ZERO);
        // Saturates instead of overflowing.
        let _ = round_up_to_millis(Duration::MAX);
        assert_eq!(ceil_millis(Duration::from_micros(1)), 1);
        assert_eq!(ceil_millis(Duration::from_millis(45_190)), 45_190);
        assert_eq!(ceil_millis(Duration::MAX), u64::MAX);
        assert_eq!(ceil_secs(Duration::from_millis(45_190)), 46);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(rfc3339_utc(at(1_755_780_059)), "2025-08-21T12:40:59Z");
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(at(951_868_800)), "2000-03-01T00:00:00Z");
        assert_eq!(rfc3339_utc(at(1_709_251_199)), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339_utc(at(4_107_542_400)), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339_utc(at(253_402_300_799)), "9999-12-31T23:59:59Z");
        // Sub-second parts truncate; pre-epoch clamps.
        assert_eq!(
            rfc3339_utc(at(1_755_780_059) + Duration::from_millis(999)),
            "2025-08-21T12:40:59Z"
        );
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH - Duration::from_secs(10)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn civil_dates_skip_the_1900_and_2100_leap_rule_correctly() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        // 2100 is not a leap year: Feb 28 is followed by Mar 1.
        let feb28 = days_from_civil(2100, 2, 28);
        assert_eq!(civil_from_days(feb28 + 1), (2100, 3, 1));
        // 2000 is: Feb 29 exists.
        let feb28 = days_from_civil(2000, 2, 28);
        assert_eq!(civil_from_days(feb28 + 1), (2000, 2, 29));
        // One full cycle later the calendar repeats.
        assert_eq!(civil_from_days(DAYS_PER_400_YEARS), (2370, 1, 1));
        // No panic at the extreme.
        let _ = civil_from_days(u64::MAX);
    }

    proptest! {
        #[test]
        fn civil_round_trips_and_advances_one_day_at_a_time(days in 0u64..5_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!((1..=12).contains(&m));
            prop_assert!(d >= 1 && u64::from(d) <= days_in_month(y, m));
            prop_assert_eq!(days_from_civil(y, m, d), days);
            let (y2, m2, d2) = civil_from_days(days + 1);
            let next = if u64::from(d) < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            prop_assert_eq!((y2, m2, d2), next);
        }

        #[test]
        fn go_duration_round_trips_through_a_parser(nanos in 0u64..10_000_000_000_000) {
            let text = go_duration(Duration::from_nanos(nanos));
            prop_assert_eq!(parse_go(&text), Some(u128::from(nanos)), "{}", text);
        }
    }

    /// A small Go-duration parser for the round-trip property (units h, m, s, ms, µs, ns).
    fn parse_go(text: &str) -> Option<u128> {
        let mut total = 0u128;
        let mut rest = text;
        while !rest.is_empty() {
            let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
            let (num, tail) = rest.split_at(num_len);
            let (unit_len, scale) = if tail.starts_with("ms") {
                (2, NANOS_PER_MILLI)
            } else if tail.starts_with("µs") {
                ("µs".len(), NANOS_PER_MICRO)
            } else if tail.starts_with("ns") {
                (2, 1)
            } else if tail.starts_with('h') {
                (1, 3600 * NANOS_PER_SEC)
            } else if tail.starts_with('m') {
                (1, 60 * NANOS_PER_SEC)
            } else if tail.starts_with('s') {
                (1, NANOS_PER_SEC)
            } else {
                return None;
            };
            let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
            let mut value = whole.parse::<u128>().ok()? * scale;
            let mut place = scale;
            for c in frac.chars() {
                place /= 10;
                value += u128::from(c.to_digit(10)?) * place;
            }
            total += value;
            rest = &tail[unit_len..];
        }
        Some(total)
    }
}
