//! Rounding of durations into rate-limit header values. The text formats themselves (Go-style
//! durations for OpenAI `x-ratelimit-reset-*`, RFC 3339 timestamps for Anthropic
//! `anthropic-ratelimit-*-reset`) are [`protocol::ratelimit`]'s.

use std::time::Duration;

const NANOS_PER_MILLI: u128 = 1_000_000;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
