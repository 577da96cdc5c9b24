//! Tests of the sliding-window limiter, kept apart from the limiter itself by size:
//! unit cases, and property tests with a simulated clock against a reference model.

use super::*;
use proptest::prelude::*;

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

// ---- Property tests against a reference model on a simulated clock ----

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Admit {
        key: usize,
        model: usize,
        charge: Charge,
    },
    Settle {
        pick: usize,
        percent: [u8; 3],
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u64..1_500).prop_map(Op::Advance),
        4 => (0usize..2, 0usize..2, 0u64..3, 0u64..120, 0u64..60).prop_map(
            |(key, model, requests, input, output)| Op::Admit {
                key,
                model,
                charge: Charge { requests, input_tokens: input, output_tokens: output },
            }
        ),
        2 => (any::<usize>(), [0u8..=150, 0u8..=150, 0u8..=150])
            .prop_map(|(pick, percent)| Op::Settle { pick, percent }),
    ]
}

fn limits() -> impl Strategy<Value = TierLimits> {
    (
        proptest::option::of(1u64..8),
        proptest::option::of(50u64..300),
        proptest::option::of(40u64..200),
        proptest::option::of(20u64..100),
    )
        .prop_map(|(rpm, tpm, itpm, otpm)| TierLimits {
            rpm,
            tpm,
            itpm,
            otpm,
        })
}

/// An admitted request as the model sees it: where, when (ms), and its settled charge.
struct Admitted {
    pair: (usize, usize),
    at_ms: u64,
    charge: Charge,
    admission: Admission,
}

fn scale(value: u64, percent: u8) -> u64 {
    value * u64::from(percent) / 100
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn admitted_charges_never_exceed_a_limit_and_retry_after_is_exact(
        window_ms in 1_000u64..5_000,
        limits in limits(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let window = Duration::from_millis(window_ms);
        let limiter = Limiter::new(window);
        let t0 = Instant::now();
        let mut now_ms = 0u64;
        let mut admitted: Vec<Admitted> = Vec::new();
        let keys = ["key-a", "key-b"];
        let models = ["model-x", "model-y"];

        for op in ops {
            match op {
                Op::Advance(ms) => now_ms += ms,
                Op::Settle { pick, percent } => {
                    if admitted.is_empty() {
                        continue;
                    }
                    let index = pick % admitted.len();
                    let entry = &mut admitted[index];
                    let actual = Charge {
                        requests: scale(entry.charge.requests, percent[0]),
                        input_tokens: scale(entry.charge.input_tokens, percent[1]),
                        output_tokens: scale(entry.charge.output_tokens, percent[2]),
                    };
                    limiter.settle(&entry.admission, actual, t0 + Duration::from_millis(now_ms));
                    // Charges that left the window are no longer tracked; settling them
                    // cannot matter to any window containing `now`, but the model must not
                    // pretend they shrank inside earlier windows either.
                    if now_ms < entry.at_ms + window_ms {
                        entry.charge = entry.charge.min(actual);
                    }
                }
                Op::Admit { key, model, charge } => {
                    let now = t0 + Duration::from_millis(now_ms);
                    let pair = (key, model);
                    // The model: what counts at `now` for this pair.
                    let in_window: Vec<&Admitted> = admitted
                        .iter()
                        .filter(|a| a.pair == pair && now_ms < a.at_ms + window_ms)
                        .collect();
                    let fits = LimitKind::ALL.iter().all(|&kind| {
                        kind.limit(&limits).is_none_or(|limit| {
                            let used: u128 =
                                in_window.iter().map(|a| kind.amount(a.charge)).sum();
                            used + kind.amount(charge) <= u128::from(limit)
                        })
                    });
                    let snapshot = limiter.clone();
                    match limiter.try_admit(keys[key], models[model], &limits, charge, now) {
                        Ok(admission) => {
                            prop_assert!(fits, "admitted a charge the model rejects");
                            for kind in LimitKind::ALL {
                                let Some(limit) = kind.limit(&limits) else { continue };
                                let used: u128 = in_window
                                    .iter()
                                    .map(|a| kind.amount(a.charge))
                                    .sum::<u128>()
                                    + kind.amount(charge);
                                let state = admission.state.get(kind).unwrap();
                                prop_assert_eq!(
                                    u128::from(state.remaining),
                                    u128::from(limit) - used
                                );
                            }
                            admitted.push(Admitted { pair, at_ms: now_ms, charge, admission });
                        }
                        Err(rejection) => {
                            prop_assert!(!fits, "rejected a charge the model admits");
                            let limit = rejection.kind.limit(&limits).unwrap();
                            prop_assert_eq!(rejection.limit, limit);
                            let own = rejection.kind.amount(charge);
                            match rejection.retry_after {
                                None => prop_assert!(own > u128::from(limit)),
                                Some(wait) => {
                                    let each_fits = LimitKind::ALL.iter().all(|&k| {
                                        k.limit(&limits)
                                            .is_none_or(|l| k.amount(charge) <= u128::from(l))
                                    });
                                    prop_assert!(each_fits);
                                    prop_assert!(wait > Duration::ZERO && wait <= window);
                                    prop_assert_eq!(wait.subsec_nanos() % 1_000_000, 0);
                                    let later = snapshot.clone();
                                    prop_assert!(later
                                        .try_admit(keys[key], models[model], &limits, charge, now + wait)
                                        .is_ok());
                                    let early = snapshot.clone();
                                    prop_assert!(early
                                        .try_admit(keys[key], models[model], &limits, charge, now + wait - MS)
                                        .is_err());
                                }
                            }
                        }
                    }
                }
            }

            // The invariant: in every half-open interval of one window, the settled
            // charges admitted in it stay within every limit, per (key, model). Intervals
            // starting at an admission time cover all cases.
            for start in &admitted {
                for kind in LimitKind::ALL {
                    let Some(limit) = kind.limit(&limits) else { continue };
                    let sum: u128 = admitted
                        .iter()
                        .filter(|a| {
                            a.pair == start.pair
                                && a.at_ms >= start.at_ms
                                && a.at_ms < start.at_ms + window_ms
                        })
                        .map(|a| kind.amount(a.charge))
                        .sum();
                    prop_assert!(sum <= u128::from(limit), "{kind:?}: {sum} > {limit}");
                }
            }
            // Memory: nothing older than one window is tracked after a call on its pair
            // (other pairs are swept periodically).
            prop_assert!(limiter.tracked_charges() <= admitted.len());
        }
    }

    #[test]
    fn state_matches_the_model(
        charges in proptest::collection::vec((0u64..200, 0u64..50, 0u64..50), 1..40),
    ) {
        let window = secs(3);
        let limiter = Limiter::new(window);
        let limits = TierLimits { rpm: Some(1_000), tpm: Some(1_000_000), itpm: None, otpm: None };
        let t0 = Instant::now();
        let mut log: Vec<(u64, u64)> = Vec::new();
        let mut now_ms = 0;
        for (advance, input, output) in charges {
            now_ms += advance * 10;
            let now = t0 + Duration::from_millis(now_ms);
            limiter.try_admit("k", "m", &limits, req(input, output), now).unwrap();
            log.push((now_ms, input + output));
            let live: Vec<&(u64, u64)> = log.iter().filter(|(at, _)| now_ms < at + 3_000).collect();
            let state = limiter.state("k", "m", &limits, now);
            let tokens = state.tokens.unwrap();
            prop_assert_eq!(tokens.remaining, 1_000_000 - live.iter().map(|(_, t)| t).sum::<u64>());
            let last_nonzero = live.iter().rev().find(|(_, t)| *t > 0);
            let want = last_nonzero.map_or(Duration::ZERO, |(at, _)| {
                Duration::from_millis(at + 3_000 - now_ms)
            });
            prop_assert_eq!(tokens.reset, want);
            prop_assert_eq!(state.requests.unwrap().remaining, 1_000 - live.len() as u64);
            prop_assert_eq!(limiter.tracked_charges(), live.len());
        }
    }
}
