//! RFC 3339 timestamps, the format of Anthropic's `anthropic-ratelimit-*-reset` headers
//! (`2025-08-21T12:40:59Z`) and of Anthropic batch timestamps.
//!
//! Owns the conversion between `SystemTime` and the text, with the proleptic Gregorian
//! calendar arithmetic written out here (days since 1970-01-01 <-> year, month, day,
//! computed over 400-year eras of 146 097 days, which is exact for any year).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::RateLimitParseError;

const SECS_PER_DAY: i64 = 86_400;
/// Days from 0000-03-01 (the start of era 0 in a March-based year) to 1970-01-01.
const DAYS_0000_03_01_TO_EPOCH: i64 = 719_468;
const DAYS_PER_ERA: i64 = 146_097;

/// Formats a time as RFC 3339 in UTC with second precision (`2025-08-21T12:40:59Z`).
/// Sub-second parts are truncated towards the past.
pub fn format_rfc3339(time: SystemTime) -> String {
    let secs: i64 = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            // Floor: 0.5 s before the epoch is 23:59:59 of the day before.
            -whole - i64::from(before.subsec_nanos() > 0)
        }
    };
    let days = secs.div_euclid(SECS_PER_DAY);
    let second_of_day = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3_600,
        (second_of_day % 3_600) / 60,
        second_of_day % 60
    )
}

/// Parses an RFC 3339 timestamp: `YYYY-MM-DD`, `T` (or `t` or a space), `HH:MM:SS`, an
/// optional fraction of any length (kept to the nanosecond), then `Z` or an offset
/// `±HH:MM`. A leap second (`:60`) is accepted and lands on the next second.
pub fn parse_rfc3339(input: &str) -> Result<SystemTime, RateLimitParseError> {
    let err = |reason| RateLimitParseError::InvalidTimestamp {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim().as_bytes();
    if s.len() < 20 {
        return Err(err("too short"));
    }
    let year = digits(&s[0..4]).ok_or_else(|| err("bad year"))?;
    let month = digits(&s[5..7]).ok_or_else(|| err("bad month"))?;
    let day = digits(&s[8..10]).ok_or_else(|| err("bad day"))?;
    let hour = digits(&s[11..13]).ok_or_else(|| err("bad hour"))?;
    let minute = digits(&s[14..16]).ok_or_else(|| err("bad minute"))?;
    let second = digits(&s[17..19]).ok_or_else(|| err("bad second"))?;
    if s[4] != b'-' || s[7] != b'-' || s[13] != b':' || s[16] != b':' {
        return Err(err("bad separator"));
    }
    if !matches!(s[10], b'T' | b't' | b' ') {
        return Err(err("expected T between date and time"));
    }
    if !(1..=12).contains(&month) {
        return Err(err("month out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(err("day out of range"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(err("time out of range"));
    }

    let mut rest = &s[19..];
    let mut nanos: u32 = 0;
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let len = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return Err(err("empty fraction"));
        }
        let mut scale = 100_000_000;
        for &d in after_dot.iter().take(len.min(9)) {
            nanos += u32::from(d - b'0') * scale;
            scale /= 10;
        }
        rest = &after_dot[len..];
    }
    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2]).ok_or_else(|| err("bad offset"))?;
            let m = digits(&[*m1, *m2]).ok_or_else(|| err("bad offset"))?;
            if h > 23 || m > 59 {
                return Err(err("offset out of range"));
            }
            let magnitude = h * 3_600 + m * 60;
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return Err(err("expected Z or an offset like +02:00")),
    };

    let secs =
        days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3_600 + minute * 60 + second
            - offset_secs;
    let time = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    };
    time.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
        .ok_or_else(|| err("out of the platform's time range"))
}

/// Parses a fixed-width run of ASCII digits.
fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date. Years are counted from March so
/// that the leap day is the last day of the year, which makes month lengths a linear
/// formula: month `mp` (March = 0) starts on day `(153 * mp + 2) / 5` of that year.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - DAYS_0000_03_01_TO_EPOCH
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + DAYS_0000_03_01_TO_EPOCH;
    let era = shifted.div_euclid(DAYS_PER_ERA);
    let day_of_era = shifted.rem_euclid(DAYS_PER_ERA);
    // Remove the extra leap days (every 4 years, not every 100, again every 400) to
    // count whole 365-day years.
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524
        - day_of_era / (DAYS_PER_ERA - 1))
        / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(at(1_755_780_059)), "2025-08-21T12:40:59Z");
        assert_eq!(format_rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(
            format_rfc3339(UNIX_EPOCH - Duration::from_millis(500)),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(
            format_rfc3339(at(1_755_780_059) + Duration::from_millis(999)),
            "2025-08-21T12:40:59Z"
        );
    }

    #[test]
    fn parses_z_fraction_and_offsets() {
        assert_eq!(
            parse_rfc3339("2025-08-21T12:40:59Z").unwrap(),
            at(1_755_780_059)
        );
        assert_eq!(
            parse_rfc3339("2024-08-20T18:37:24.100435Z").unwrap(),
            at(1_724_179_044) + Duration::from_nanos(100_435_000)
        );
        assert_eq!(
            parse_rfc3339("2025-08-21T14:40:59+02:00").unwrap(),
            at(1_755_780_059)
        );
        assert_eq!(
            parse_rfc3339("2025-08-21t07:10:59-05:30").unwrap(),
            at(1_755_780_059)
        );
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00.1234567891234Z").unwrap(),
            UNIX_EPOCH + Duration::from_nanos(123_456_789)
        );
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59Z").unwrap(),
            UNIX_EPOCH - Duration::from_secs(1)
        );
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for bad in [
            "",
            "2025-08-21",
            "2025-08-21T12:40:59",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-08-21T24:00:00Z",
            "2025-08-21T12:40:59.Z",
            "2025-08-21T12:40:59+2:00",
            "2025/08/21T12:40:59Z",
            "2025-08-21X12:40:59Z",
            "2025-08-21T12:40:59Zjunk",
            "２０２５-08-21T12:40:59Z",
        ] {
            let err = parse_rfc3339(bad).unwrap_err();
            assert!(
                matches!(err, RateLimitParseError::InvalidTimestamp { .. }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn civil_conversion_round_trips_over_many_eras() {
        // Every day from year -1000 to 3000 maps back to itself, and consecutive days
        // are consecutive dates.
        let start = days_from_civil(-1000, 1, 1);
        let end = days_from_civil(3000, 12, 31);
        let mut previous = civil_from_days(start - 1);
        for days in start..=end {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(d >= 1 && d <= days_in_month(y, m));
            let (py, pm, pd) = previous;
            let next_in_month = y == py && m == pm && d == pd + 1;
            let next_month = d == 1 && ((y == py && m == pm + 1) || (y == py + 1 && m == 1));
            assert!(
                next_in_month || next_month,
                "{previous:?} -> {:?}",
                (y, m, d)
            );
            previous = (y, m, d);
        }
    }
}
