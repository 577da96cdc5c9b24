//! Tests of the sliding-window limiter, kept apart from the limiter itself by size:
//! unit cases, and property tests with a simulated clock against a reference model.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn builtin(name: &str) -> TierLimits {
    TierLimits::builtin(name).unwrap()
}

fn req(input: u64, output: u64) -> Charge {
    Charge::request(input, output)
}

#[test]
fn limiter_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Limiter>();
    check::<Admission>();
    check::<Rejection>();
}

#[test]
fn free_tier_admits_three_requests_per_minute() {
    let limiter = Limiter::new(DEFAULT_WINDOW);
    let free = builtin("free");
    let t0 = Instant::now();
    for i in 0..3u64 {
        let a = limiter
            .try_admit("k", "gpt-4o-mini", &free, req(10, 10), t0 + secs(i))
            .unwrap();
        let requests = a.state.requests.unwrap();
        assert_eq!(requests.limit, 3);
        assert_eq!(requests.remaining, 2 - i);
        assert_eq!(requests.reset, secs(60));
        assert_eq!(a.state.tokens.unwrap().remaining, 40_000 - 20 * (i + 1));
    }
    let r = limiter
        .try_admit("k", "gpt-4o-mini", &free, req(10, 10), t0 + secs(10))
        .unwrap_err();
    assert_eq!(r.kind, LimitKind::Requests);
    assert_eq!((r.limit, r.used, r.requested), (3, 3, 1));
    // The first request (t0) expires at t0 + 60 s.
    assert_eq!(r.retry_after, Some(secs(50)));
    assert_eq!(r.state.requests.unwrap().remaining, 0);
    assert_eq!(r.state.requests.unwrap().reset, secs(52));
    assert_eq!(r.openai_error_type(), "requests");
    assert!(
        limiter
            .try_admit("k", "gpt-4o-mini", &free, req(1, 1), t0 + secs(60) - MS)
            .is_err()
    );
    assert!(
        limiter
            .try_admit("k", "gpt-4o-mini", &free, req(1, 1), t0 + secs(60))
            .is_ok()
    );
}

#[test]
fn tier_1_limits_tokens_including_max_tokens() {
    let limiter = Limiter::default();
    let tier = builtin("tier-1");
    let t0 = Instant::now();
    limiter
        .try_admit("k", "m", &tier, req(100_000, 50_000), t0)
        .unwrap();
    let a = limiter
        .try_admit("k", "m", &tier, req(20_000, 30_000), t0 + secs(5))
        .unwrap();
    assert_eq!(a.state.tokens.unwrap().remaining, 0);
    assert_eq!(a.state.requests.unwrap().remaining, 498);
    let r = limiter
        .try_admit("k", "m", &tier, req(1, 0), t0 + secs(6))
        .unwrap_err();
    assert_eq!(r.kind, LimitKind::Tokens);
    assert_eq!((r.limit, r.used, r.requested), (200_000, 200_000, 1));
    assert_eq!(r.retry_after, Some(secs(54)));
    assert_eq!(r.openai_error_type(), "tokens");
    // Needing more than the first entry frees waits for the second as well.
    let r = limiter
        .try_admit("k", "m", &tier, req(150_001, 0), t0 + secs(6))
        .unwrap_err();
    assert_eq!(r.retry_after, Some(secs(59)));
    let r = limiter
        .try_admit("k", "m", &tier, req(200_001, 0), t0 + secs(6))
        .unwrap_err();
    assert_eq!(r.retry_after, None);
    assert_eq!(r.retry_after_header(), None);
}

#[test]
fn tier_5_allows_ten_thousand_requests() {
    let limiter = Limiter::default();
    let tier = builtin("tier-5");
    let t0 = Instant::now();
    for i in 0..10_000u32 {
        let at = t0 + Duration::from_micros(u64::from(i));
        limiter
            .try_admit("k", "m", &tier, req(1_000, 2_000), at)
            .unwrap();
    }
    let r = limiter
        .try_admit("k", "m", &tier, req(1, 1), t0 + secs(1))
        .unwrap_err();
    assert_eq!(r.kind, LimitKind::Requests);
    assert_eq!(r.retry_after, Some(secs(59)));
    assert_eq!(limiter.tracked_charges(), 10_000);
    let s = limiter.state("k", "m", &tier, t0 + secs(1));
    assert_eq!(s.tokens.unwrap().remaining, 30_000_000 - 10_000 * 3_000);
    // A request of exactly the limit fits an empty window.
    assert!(
        limiter
            .try_admit("k2", "m", &tier, req(29_000_000, 1_000_000), t0)
            .is_ok()
    );
}

#[test]
fn anthropic_tiers_charge_input_and_output_separately() {
    let limiter = Limiter::default();
    let tier = builtin("anthropic-tier-1");
    let t0 = Instant::now();
    // 30,000 input alone fits; input and output are not added together.
    let a = limiter
        .try_admit("k", "claude", &tier, req(30_000, 8_000), t0)
        .unwrap();
    assert_eq!(a.state.input_tokens.unwrap().remaining, 0);
    assert_eq!(a.state.output_tokens.unwrap().remaining, 0);
    assert_eq!(a.state.tokens, None);
    // Settling frees unused output for another request; input stays exhausted.
    limiter.settle(&a, req(30_000, 1_000), t0 + secs(1));
    let r = limiter
        .try_admit("k", "claude", &tier, req(1, 100), t0 + secs(2))
        .unwrap_err();
    assert_eq!(r.kind, LimitKind::InputTokens);
    assert_eq!(r.retry_after, Some(secs(58)));
    assert!(
        limiter
            .try_admit("k", "claude", &tier, req(0, 7_000), t0 + secs(2))
            .is_ok()
    );
    let r = limiter
        .try_admit("k", "claude", &tier, req(0, 1), t0 + secs(3))
        .unwrap_err();
    assert_eq!(r.kind, LimitKind::OutputTokens);
    // The first charge expires at 60 s; its 1,000 output tokens make room.
    assert_eq!(r.retry_after, Some(secs(57)));
    let r = limiter
        .try_admit("k", "claude", &tier, req(0, 8_001), t0 + secs(3))
        .unwrap_err();
    assert_eq!((r.kind, r.retry_after), (LimitKind::OutputTokens, None));
    assert!(
        r.anthropic_message("claude")
            .contains("8,000 output tokens per minute")
    );
}

#[test]
fn anthropic_free_and_higher_tiers() {
    let limiter = Limiter::default();
    let t0 = Instant::now();
    let free = builtin("anthropic-free");
    for _ in 0..5 {
        limiter.try_admit("k", "m", &free, req(1, 1), t0).unwrap();
    }
    let r = limiter
        .try_admit("k", "m", &free, req(1, 1), t0)
        .unwrap_err();
    assert_eq!((r.kind, r.limit), (LimitKind::Requests, 5));
    let r = limiter
        .try_admit("k2", "m", &free, req(20_000, 20_001), t0)
        .unwrap_err();
    assert_eq!(
        (r.kind, r.limit, r.retry_after),
        (LimitKind::Tokens, 40_000, None)
    );
    for (name, rpm, itpm, otpm) in [
        ("anthropic-tier-2", 1_000, 450_000, 90_000),
        ("anthropic-tier-3", 2_000, 800_000, 160_000),
        ("anthropic-tier-4", 4_000, 2_000_000, 400_000),
    ] {
        let tier = builtin(name);
        let a = limiter
            .try_admit(name, "m", &tier, req(itpm, otpm), t0)
            .unwrap();
        assert_eq!(a.state.requests.unwrap().remaining, rpm - 1, "{name}");
        let r = limiter
            .try_admit(name, "m", &tier, req(1, 0), t0)
            .unwrap_err();
        assert_eq!((r.kind, r.limit), (LimitKind::InputTokens, itpm), "{name}");
        let r = limiter
            .try_admit(name, "m", &tier, req(0, 1), t0)
            .unwrap_err();
        assert_eq!((r.kind, r.limit), (LimitKind::OutputTokens, otpm), "{name}");
    }
}

#[test]
fn combined_tpm_applies_alongside_split_limits() {
    let limiter = Limiter::new(secs(10));
    let tier = TierLimits {
        rpm: None,
        tpm: Some(100),
        itpm: Some(80),
        otpm: Some(50),
    };
    let t0 = Instant::now();
    limiter.try_admit("k", "m", &tier, req(60, 40), t0).unwrap();
    let r = limiter
        .try_admit("k", "m", &tier, req(0, 1), t0)
        .unwrap_err();
    assert_eq!(r.kind, LimitKind::Tokens);
    let r = limiter
        .try_admit("k", "m", &tier, req(30, 11), t0 + secs(1))
        .unwrap_err();
    // Combined (100 + 41 > 100), input (60 + 30 > 80) and output (40 + 11 > 50) all wait
    // for the first entry: equal waits, so the first in order binds.
    assert_eq!((r.kind, r.retry_after), (LimitKind::Tokens, Some(secs(9))));
    let r = limiter
        .try_admit("k", "m", &tier, req(60, 41), t0 + secs(1))
        .unwrap_err();
    // 101 tokens can never fit a combined 100, whatever the other limits say.
    assert_eq!((r.kind, r.retry_after), (LimitKind::Tokens, None));
}

#[test]
fn never_fitting_limit_beats_a_wait() {
    let limiter = Limiter::new(secs(10));
    let tier = TierLimits {
        rpm: Some(1),
        itpm: Some(10),
        ..Default::default()
    };
    let t0 = Instant::now();
    limiter.try_admit("k", "m", &tier, req(1, 0), t0).unwrap();
    let r = limiter
        .try_admit("k", "m", &tier, req(11, 0), t0)
        .unwrap_err();
    assert_eq!((r.kind, r.retry_after), (LimitKind::InputTokens, None));
    assert_eq!((r.used, r.requested), (1, 11));
}

#[test]
fn longest_wait_binds() {
    let limiter = Limiter::new(secs(10));
    let tier = TierLimits {
        rpm: Some(2),
        tpm: Some(100),
        ..Default::default()
    };
    let t0 = Instant::now();
    limiter.try_admit("k", "m", &tier, req(10, 0), t0).unwrap();
    limiter
        .try_admit("k", "m", &tier, req(85, 0), t0 + secs(4))
        .unwrap();
    // Requests free at 10 s (6 s from now); tokens need both entries gone (14 s).
    let r = limiter
        .try_admit("k", "m", &tier, req(20, 0), t0 + secs(4))
        .unwrap_err();
    assert_eq!((r.kind, r.retry_after), (LimitKind::Tokens, Some(secs(10))));
    assert_eq!(r.state.requests.unwrap().remaining, 0);
    assert_eq!(r.state.tokens.unwrap().remaining, 5);
    assert_eq!(r.state.tokens.unwrap().reset, secs(10));
}

#[test]
fn settle_only_ever_reduces() {
    let limiter = Limiter::new(secs(10));
    let tier = TierLimits {
        tpm: Some(100),
        ..Default::default()
    };
    let t0 = Instant::now();
    let a = limiter.try_admit("k", "m", &tier, req(10, 90), t0).unwrap();
    assert_eq!(a.charge(), req(10, 90));
    assert_eq!((a.key(), a.model()), ("k", "m"));
    limiter.settle(&a, req(50, 500), t0);
    assert_eq!(
        limiter.state("k", "m", &tier, t0).tokens.unwrap().remaining,
        0
    );
    limiter.settle(&a, req(10, 20), t0 + secs(1));
    assert_eq!(
        limiter
            .state("k", "m", &tier, t0 + secs(1))
            .tokens
            .unwrap()
            .remaining,
        70
    );
    // Settling to more again does not restore the reservation.
    limiter.settle(&a, req(10, 90), t0 + secs(1));
    assert_eq!(
        limiter
            .state("k", "m", &tier, t0 + secs(1))
            .tokens
            .unwrap()
            .remaining,
        70
    );
    assert!(
        limiter
            .try_admit("k", "m", &tier, req(70, 0), t0 + secs(1))
            .is_ok()
    );
    // Settling after expiry, or on another limiter, is harmless.
    limiter.settle(&a, Charge::default(), t0 + secs(30));
    let other = Limiter::new(secs(10));
    other.settle(&a, Charge::default(), t0);
    assert_eq!(other.tracked_charges(), 0);
}

#[test]
fn keys_and_models_are_independent() {
    let limiter = Limiter::default();
    let free = builtin("free");
    let t0 = Instant::now();
    for _ in 0..3 {
        limiter
            .try_admit("alice", "gpt-4o", &free, req(1, 1), t0)
            .unwrap();
    }
    assert!(
        limiter
            .try_admit("alice", "gpt-4o", &free, req(1, 1), t0)
            .is_err()
    );
    assert!(
        limiter
            .try_admit("alice", "gpt-4o-mini", &free, req(1, 1), t0)
            .is_ok()
    );
    assert!(
        limiter
            .try_admit("bob", "gpt-4o", &free, req(1, 1), t0)
            .is_ok()
    );
    // No accidental joining of key and model strings.
    assert!(
        limiter
            .try_admit("alicegpt-4o", "", &free, req(1, 1), t0)
            .is_ok()
    );
    assert_eq!(
        limiter
            .state("bob", "gpt-4o", &free, t0)
            .requests
            .unwrap()
            .remaining,
        2
    );
    assert_eq!(
        limiter
            .state("carol", "gpt-4o", &free, t0)
            .requests
            .unwrap()
            .remaining,
        3
    );
}

#[test]
fn unlimited_tiers_admit_everything_and_record_nothing() {
    let limiter = Limiter::default();
    let t0 = Instant::now();
    let unlimited = builtin("unlimited");
    for _ in 0..1_000 {
        let a = limiter
            .try_admit("k", "m", &unlimited, req(u64::MAX, u64::MAX), t0)
            .unwrap();
        assert_eq!(a.state, LimitState::default());
        limiter.settle(&a, Charge::default(), t0);
    }
    assert_eq!(limiter.tracked_charges(), 0);
    assert!(
        limiter
            .state("k", "m", &unlimited, t0)
            .openai_headers()
            .is_empty()
    );
}

#[test]
fn memory_is_bounded_by_one_window() {
    let limiter = Limiter::new(secs(1));
    let tier = TierLimits {
        rpm: Some(1_000_000),
        ..Default::default()
    };
    let t0 = Instant::now();
    for i in 0..5_000u64 {
        let key = format!("key-{}", i % 500);
        let at = t0 + Duration::from_millis(i);
        limiter.try_admit(&key, "m", &tier, req(1, 1), at).unwrap();
        // At most one window's worth (1,000 ms at one per ms) plus what one sweep
        // interval can leave behind.
        assert!(
            limiter.tracked_charges() <= 1_000 + 2 * 500,
            "{}",
            limiter.tracked_charges()
        );
    }
    // Long after, any call on any pair sweeps everything away in due course.
    for i in 0..MIN_SWEEP_INTERVAL as u64 * 20 {
        let _ = limiter.state(
            "other",
            "m",
            &tier,
            t0 + secs(100) + Duration::from_millis(i),
        );
    }
    assert_eq!(limiter.tracked_charges(), 0);
    assert!(limiter.lock().ledgers.is_empty());
    // The pair just used is dropped as soon as it is empty.
    let a = limiter
        .try_admit("k", "m", &tier, req(1, 1), t0 + secs(200))
        .unwrap();
    assert_eq!(limiter.tracked_charges(), 1);
    limiter.settle(&a, Charge::default(), t0 + secs(202));
    assert!(limiter.lock().ledgers.is_empty());
}

#[test]
fn time_going_backwards_is_treated_as_the_latest_time() {
    let limiter = Limiter::new(secs(10));
    let tier = TierLimits {
        rpm: Some(1),
        ..Default::default()
    };
    let t0 = Instant::now();
    limiter
        .try_admit("k", "m", &tier, req(0, 0), t0 + secs(5))
        .unwrap();
    let r = limiter
        .try_admit("k", "m", &tier, req(0, 0), t0)
        .unwrap_err();
    assert_eq!(r.retry_after, Some(secs(10)));
    assert!(
        limiter
            .try_admit("k", "m", &tier, req(0, 0), t0 + secs(15))
            .is_ok()
    );
}

#[test]
fn zero_window_and_zero_limits() {
    let limiter = Limiter::new(Duration::ZERO);
    assert_eq!(limiter.window(), Duration::ZERO);
    let tier = TierLimits {
        rpm: Some(1),
        tpm: Some(10),
        ..Default::default()
    };
    let t0 = Instant::now();
    for _ in 0..10 {
        assert!(limiter.try_admit("k", "m", &tier, req(5, 5), t0).is_ok());
    }
    assert_eq!(
        limiter
            .try_admit("k", "m", &tier, req(5, 6), t0)
            .unwrap_err()
            .retry_after,
        None
    );
    let closed = TierLimits {
        rpm: Some(0),
        ..Default::default()
    };
    let r = Limiter::default()
        .try_admit("k", "m", &closed, req(0, 0), t0)
        .unwrap_err();
    assert_eq!((r.kind, r.retry_after), (LimitKind::Requests, None));
    assert!(r.openai_message("m").contains("No request can be admitted"));
    // A charge of nothing fits even a zero limit.
    let nothing = Charge::default();
    assert!(
        Limiter::default()
            .try_admit("k", "m", &closed, nothing, t0)
            .is_ok()
    );
}

#[test]
fn lowered_limits_wait_for_the_excess_to_expire() {
    let limiter = Limiter::new(secs(10));
    let t0 = Instant::now();
    let wide = TierLimits {
        tpm: Some(100),
        ..Default::default()
    };
    limiter.try_admit("k", "m", &wide, req(50, 0), t0).unwrap();
    limiter
        .try_admit("k", "m", &wide, req(50, 0), t0 + secs(2))
        .unwrap();
    let narrow = TierLimits {
        tpm: Some(40),
        ..Default::default()
    };
    let s = limiter.state("k", "m", &narrow, t0 + secs(3));
    assert_eq!(s.tokens.unwrap().remaining, 0);
    let r = limiter
        .try_admit("k", "m", &narrow, Charge::default(), t0 + secs(3))
        .unwrap_err();
    assert_eq!(r.retry_after, Some(secs(9)));
}

#[test]
fn success_headers_come_from_the_admission_state() {
    let limiter = Limiter::default();
    let t0 = Instant::now();
    let a = limiter
        .try_admit("k", "m", &builtin("tier-1"), req(10, 6), t0)
        .unwrap();
    let headers = a.state.openai_headers();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("x-ratelimit-limit-requests"), Some("500"));
    assert_eq!(get("x-ratelimit-remaining-requests"), Some("499"));
    assert_eq!(get("x-ratelimit-remaining-tokens"), Some("199984"));
    assert_eq!(get("x-ratelimit-reset-tokens"), Some("1m0s"));
    let a = limiter
        .try_admit(
            "k",
            "claude",
            &builtin("anthropic-tier-1"),
            req(3_000, 4_000),
            t0,
        )
        .unwrap();
    let headers = a
        .state
        .anthropic_headers(std::time::UNIX_EPOCH + secs(1_755_779_999));
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        get("anthropic-ratelimit-input-tokens-remaining"),
        Some("27000")
    );
    assert_eq!(
        get("anthropic-ratelimit-output-tokens-remaining"),
        Some("4000")
    );
    assert_eq!(get("anthropic-ratelimit-tokens-limit"), Some("8000"));
    assert_eq!(
        get("anthropic-ratelimit-requests-reset"),
        Some("2025-08-21T12:40:59Z")
    );
}

#[test]
fn clones_are_independent_snapshots() {
    let limiter = Limiter::new(secs(5));
    let tier = TierLimits {
        rpm: Some(1),
        ..Default::default()
    };
    let t0 = Instant::now();
    let snapshot = limiter.clone();
    limiter.try_admit("k", "m", &tier, req(0, 0), t0).unwrap();
    assert!(snapshot.try_admit("k", "m", &tier, req(0, 0), t0).is_ok());
    assert_eq!(snapshot.window(), secs(5));
}

#[test]
fn concurrent_admissions_never_exceed_the_limit() {
    let limiter = std::sync::Arc::new(Limiter::default());
    let tier = TierLimits {
        rpm: Some(100),
        ..Default::default()
    };
    let t0 = Instant::now();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let limiter = limiter.clone();
            std::thread::spawn(move || {
                (0..50)
                    .filter(|_| limiter.try_admit("k", "m", &tier, req(0, 0), t0).is_ok())
                    .count()
            })
        })
        .collect();
    let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(admitted, 100);
}
