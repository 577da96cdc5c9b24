//! The one retry policy (STYLE habit 9): which failures are worth another attempt, and how
//! long to wait before it.
//!
//! Exponential backoff with full jitter (a uniformly random wait between zero and
//! `base * 2^attempt`, capped), except that an upstream's `retry-after` / `retry-after-ms`
//! is honoured as a floor: waiting less would only earn another 429. Attempts and total
//! time are both capped. The caller never retries after the first data event of a stream
//! has reached a client (STYLE habit 10); this module only decides the wait.

use std::time::Duration;

use client::ErrorClass;

/// Retry settings (validated from the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Total time for all attempts and waits, from the first attempt.
    pub max_elapsed: Duration,
    /// The first backoff's upper bound.
    pub base: Duration,
    /// The largest backoff (before `retry-after`).
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            max_elapsed: Duration::from_secs(60),
            base: Duration::from_millis(250),
            cap: Duration::from_secs(10),
        }
    }
}

/// Statuses worth retrying: rate limited, and the transient server errors (529 is
/// Anthropic's "overloaded").
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504 | 529)
}

/// Transport failures worth retrying: the request may not have reached the server, or the
/// server dropped it.
pub fn retryable_error(class: &ErrorClass) -> bool {
    matches!(
        class,
        ErrorClass::Connect(_) | ErrorClass::Reset(_) | ErrorClass::Timeout { .. }
    )
}

/// A small, fast generator for jitter (SplitMix64): no dependency, and jitter needs no
/// cryptographic quality.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock and a per-call salt.
    pub fn new(salt: u64) -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Jitter(t ^ salt.rotate_left(17))
    }

    /// A fixed seed (tests).
    pub fn seeded(seed: u64) -> Jitter {
        Jitter(seed)
    }

    /// The next number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl RetryPolicy {
    /// The wait before attempt number `next` (1 = the first retry), or `None` when the
    /// policy allows no further attempt: too many attempts, or the wait would end past
    /// `max_elapsed` (`elapsed` = time since the first attempt started).
    pub fn backoff(
        &self,
        next: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
        jitter: &mut Jitter,
    ) -> Option<Duration> {
        if next >= self.max_attempts {
            return None;
        }
        let exp = self
            .base
            .saturating_mul(1u32 << (next.saturating_sub(1)).min(20))
            .min(self.cap);
        let mut wait = exp.mul_f64(jitter.unit());
        if let Some(ra) = retry_after {
            wait = wait.max(ra);
        }
        (elapsed + wait <= self.max_elapsed).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_errors() {
        for s in [429, 500, 502, 503, 504, 529] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 413, 422] {
            assert!(!retryable_status(s), "{s}");
        }
        assert!(retryable_error(&ErrorClass::Connect("refused".into())));
        assert!(!retryable_error(&ErrorClass::Protocol("bad".into())));
    }

    #[test]
    fn full_jitter_stays_within_the_exponential_bound() {
        let p = RetryPolicy {
            max_attempts: 10,
            max_elapsed: Duration::from_secs(3600),
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let mut j = Jitter::seeded(7);
        for next in 1..10u32 {
            let bound =
                (Duration::from_millis(100) * 2u32.pow(next - 1)).min(Duration::from_secs(1));
            let mut seen_low = false;
            for _ in 0..200 {
                let w = p.backoff(next, Duration::ZERO, None, &mut j).unwrap();
                assert!(w <= bound, "attempt {next}: {w:?} > {bound:?}");
                seen_low |= w < bound / 2;
            }
            assert!(seen_low, "jitter must spread waits below the bound");
        }
    }

    #[test]
    fn retry_after_is_a_floor_and_caps_apply() {
        let p = RetryPolicy::default();
        let mut j = Jitter::seeded(1);
        let w = p
            .backoff(1, Duration::ZERO, Some(Duration::from_secs(2)), &mut j)
            .unwrap();
        assert!(w >= Duration::from_secs(2));
        assert_eq!(
            p.backoff(3, Duration::ZERO, None, &mut j),
            None,
            "3 attempts in all"
        );
        assert_eq!(
            p.backoff(
                1,
                Duration::from_secs(59),
                Some(Duration::from_secs(5)),
                &mut j
            ),
            None,
            "the wait would end past max_elapsed"
        );
    }
}
