//! `ledger`'s tests (kept out of the module so it stays readable).

use super::*;

const WINDOW: Duration = Duration::from_secs(60);
const NS: Duration = Duration::from_nanos(1);

fn request(input: u64, output: u64) -> Charge {
    Charge {
        requests: 1,
        input,
        output,
    }
}

fn rpm(requests: u64) -> Limits {
    Limits {
        requests: Some(requests),
        ..Limits::default()
    }
}

fn tpm(tokens: u64) -> Limits {
    Limits {
        tokens: Some(tokens),
        ..Limits::default()
    }
}

fn retry_in(result: Result<u64, NotNow>) -> Duration {
    match result {
        Err(NotNow::RetryIn(wait)) => wait,
        other => panic!("expected RetryIn, got {other:?}"),
    }
}

#[test]
fn admits_within_limits_and_refuses_beyond() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(rpm(2), WINDOW);
    assert_eq!(ledger.try_reserve(t0, request(1, 1)), Ok(0));
    assert_eq!(ledger.try_reserve(t0, request(1, 1)), Ok(1));
    assert_eq!(
        retry_in(ledger.try_reserve(t0 + Duration::from_secs(10), request(1, 1))),
        Duration::from_secs(50)
    );
}

#[test]
fn retry_in_is_exact() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(tpm(100), WINDOW);
    ledger.try_reserve(t0, request(30, 30)).unwrap();
    let t1 = t0 + Duration::from_millis(1500);
    ledger.try_reserve(t1, request(20, 0)).unwrap();
    // 80 held; 60 more needs the first charge (60 tokens) gone: at t0 + 60s.
    let now = t0 + Duration::from_secs(7);
    let wait = retry_in(ledger.try_reserve(now, request(60, 0)));
    assert_eq!(now + wait, t0 + WINDOW);
    let mut early = ledger.clone();
    assert!(early.try_reserve(now + wait - NS, request(60, 0)).is_err());
    assert!(ledger.try_reserve(now + wait, request(60, 0)).is_ok());
}

#[test]
fn unlimited_admits_everything() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(Limits::default(), WINDOW);
    for _ in 0..1000 {
        assert!(ledger.try_reserve(t0, request(u64::MAX, u64::MAX)).is_ok());
    }
}

#[test]
fn a_charge_above_a_limit_is_never_and_says_which() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(tpm(200_000), WINDOW);
    assert_eq!(
        ledger.try_reserve(t0, request(50_000, 200_000)),
        Err(NotNow::Never(
            "this request needs 250,000 tokens but the tier allows 200,000 per 60s; \
             lower max_tokens"
                .to_owned()
        ))
    );
    let input = Limits {
        input_tokens: Some(1_000),
        ..Limits::default()
    };
    let Err(NotNow::Never(message)) =
        Ledger::new(input, Duration::from_millis(1500)).try_reserve(t0, request(1_001, 0))
    else {
        panic!("expected Never");
    };
    assert_eq!(
        message,
        "this request needs 1,001 input tokens but the tier allows 1,000 per 1500ms; \
         shorten the prompt"
    );
    let daily = Limits {
        requests_per_day: Some(0),
        ..Limits::default()
    };
    let Err(NotNow::Never(message)) = Ledger::new(daily, WINDOW).try_reserve(t0, request(1, 1))
    else {
        panic!("expected Never");
    };
    assert!(message.contains("needs 1 request but the tier allows 0 per day"));
}

#[test]
fn settle_down_gives_capacity_back_immediately() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(tpm(1_000), WINDOW);
    let id = ledger.try_reserve(t0, request(100, 900)).unwrap();
    assert!(ledger.try_reserve(t0, request(500, 0)).is_err());
    ledger.settle(t0 + NS, id, request(100, 50));
    assert_eq!(ledger.usage(t0 + NS), request(100, 50));
    assert!(ledger.try_reserve(t0 + NS, request(500, 0)).is_ok());
}

#[test]
fn settle_up_is_recorded_and_later_requests_wait_longer() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(tpm(1_000), WINDOW);
    let first = ledger.try_reserve(t0, request(100, 100)).unwrap();
    let t1 = t0 + Duration::from_secs(30);
    ledger.try_reserve(t1, request(100, 100)).unwrap();
    // The first used far more than reserved: the window is now over the limit.
    ledger.settle(t1, first, request(100, 900));
    assert_eq!(ledger.usage(t1).output, 1_000);
    // 100 more fits once the first (1,000) has gone, at t0 + 60s, not before.
    let wait = retry_in(ledger.try_reserve(t1, request(100, 0)));
    assert_eq!(t1 + wait, t0 + WINDOW);
    // Settling keeps the admission time: the first charge still expires at t0 + 60s.
    assert!(ledger.try_reserve(t0 + WINDOW, request(100, 0)).is_ok());
}

#[test]
fn settling_an_expired_or_unknown_id_changes_nothing() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(tpm(1_000), WINDOW);
    let id = ledger.try_reserve(t0, request(100, 100)).unwrap();
    let later = t0 + WINDOW;
    ledger.settle(later, id, request(900, 0));
    ledger.settle(later, 42, request(900, 0));
    ledger.cancel(42);
    assert_eq!(ledger.usage(later), Charge::default());
    assert_eq!(ledger.held(), 0);
}

#[test]
fn cancel_frees_the_whole_charge() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(rpm(1), WINDOW);
    let id = ledger.try_reserve(t0, request(1, 1)).unwrap();
    assert!(ledger.try_reserve(t0, request(1, 1)).is_err());
    ledger.cancel(id);
    assert_eq!(ledger.usage(t0), Charge::default());
    assert!(ledger.try_reserve(t0, request(1, 1)).is_ok());
}

#[test]
fn pause_blocks_until_it_ends_exactly() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(rpm(10), WINDOW);
    ledger.pause(t0, Duration::from_secs(5));
    // A shorter pause does not shorten the one in force.
    ledger.pause(t0, Duration::from_secs(1));
    let wait = retry_in(ledger.try_reserve(t0 + Duration::from_secs(2), request(1, 1)));
    assert_eq!(wait, Duration::from_secs(3));
    assert!(
        ledger
            .try_reserve(t0 + Duration::from_secs(5) - NS, request(1, 1))
            .is_err()
    );
    assert!(
        ledger
            .try_reserve(t0 + Duration::from_secs(5), request(1, 1))
            .is_ok()
    );
}

#[test]
fn pause_and_window_wait_take_the_later() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(rpm(1), WINDOW);
    ledger.try_reserve(t0, request(1, 1)).unwrap();
    ledger.pause(t0, Duration::from_secs(5));
    assert_eq!(retry_in(ledger.try_reserve(t0, request(1, 1))), WINDOW);
    let mut ledger = Ledger::new(rpm(1), Duration::from_secs(2));
    ledger.try_reserve(t0, request(1, 1)).unwrap();
    ledger.pause(t0, Duration::from_secs(5));
    assert_eq!(
        retry_in(ledger.try_reserve(t0, request(1, 1))),
        Duration::from_secs(5)
    );
}

#[test]
fn calibrate_charges_the_shortfall_until_the_upstream_resets() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(tpm(1_000), WINDOW);
    ledger.try_reserve(t0, request(100, 100)).unwrap();
    // We think 800 are left; the upstream says 300, resetting in 10 s.
    ledger.calibrate(
        t0,
        Observed {
            remaining_tokens: Some(300),
            reset_tokens: Some(Duration::from_secs(10)),
            ..Observed::default()
        },
    );
    assert!(ledger.try_reserve(t0, request(300, 0)).is_ok());
    // The synthetic charge is not any request's usage.
    let usage = Charge {
        requests: 2,
        input: 400,
        output: 100,
    };
    assert_eq!(ledger.usage(t0), usage);
    let wait = retry_in(ledger.try_reserve(t0, request(1, 0)));
    assert_eq!(wait, Duration::from_secs(10));
    assert!(
        ledger
            .try_reserve(t0 + Duration::from_secs(10), request(200, 0))
            .is_ok()
    );
}

#[test]
fn calibrate_never_loosens() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(rpm(3), WINDOW);
    ledger.try_reserve(t0, request(1, 1)).unwrap();
    ledger.try_reserve(t0, request(1, 1)).unwrap();
    ledger.calibrate(
        t0,
        Observed {
            remaining_requests: Some(50),
            reset_requests: Some(Duration::ZERO),
            ..Observed::default()
        },
    );
    assert!(ledger.try_reserve(t0, request(1, 1)).is_ok());
    assert!(ledger.try_reserve(t0, request(1, 1)).is_err());
}

#[test]
fn calibrating_tokens_does_not_charge_input_or_output_limits() {
    let t0 = Instant::now();
    let limits = Limits {
        tokens: Some(1_000),
        input_tokens: Some(500),
        ..Limits::default()
    };
    let mut ledger = Ledger::new(limits, WINDOW);
    ledger.calibrate(
        t0,
        Observed {
            remaining_tokens: Some(500),
            ..Observed::default()
        },
    );
    assert!(ledger.try_reserve(t0, request(500, 0)).is_ok());
    // No reset given: the shortfall is held for a full window.
    assert_eq!(retry_in(ledger.try_reserve(t0, request(0, 1))), WINDOW);
}

#[test]
fn per_day_limits_slide_over_24_hours() {
    let t0 = Instant::now();
    let limits = Limits {
        requests: Some(10),
        requests_per_day: Some(2),
        ..Limits::default()
    };
    let mut ledger = Ledger::new(limits, WINDOW);
    ledger.try_reserve(t0, request(1, 1)).unwrap();
    let t1 = t0 + Duration::from_secs(3600);
    ledger.try_reserve(t1, request(1, 1)).unwrap();
    let now = t0 + Duration::from_secs(7200);
    let wait = retry_in(ledger.try_reserve(now, request(1, 1)));
    assert_eq!(now + wait, t0 + DAY);
    assert!(ledger.try_reserve(t0 + DAY, request(1, 1)).is_ok());
    assert_eq!(ledger.usage(t0 + DAY), request(1, 1));
}

#[test]
fn an_earlier_now_is_treated_as_the_latest() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(rpm(1), WINDOW);
    let late = t0 + Duration::from_secs(100);
    ledger.try_reserve(late, request(1, 1)).unwrap();
    // `t0` is raised to `late`, so the wait is the full window, not 160 s.
    assert_eq!(retry_in(ledger.try_reserve(t0, request(1, 1))), WINDOW);
}

#[test]
fn memory_is_bounded_by_one_window() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(rpm(1_000_000), Duration::from_secs(1));
    for i in 0..10_000u32 {
        let now = t0 + Duration::from_millis(u64::from(i));
        ledger.try_reserve(now, request(1, 1)).unwrap();
        assert!(ledger.held() <= 1_000);
    }
}

#[test]
fn set_limits_applies_to_held_charges() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(rpm(5), WINDOW);
    for _ in 0..3 {
        ledger.try_reserve(t0, request(1, 1)).unwrap();
    }
    ledger.set_limits(rpm(3));
    assert!(ledger.try_reserve(t0, request(1, 1)).is_err());
    // Switching on a per-day limit counts what the ledger still holds.
    ledger.set_limits(Limits {
        requests_per_day: Some(4),
        ..Limits::default()
    });
    ledger.try_reserve(t0, request(1, 1)).unwrap();
    let wait = retry_in(ledger.try_reserve(t0 + WINDOW, request(1, 1)));
    assert_eq!(wait, DAY - WINDOW);
}

#[test]
fn ids_increase() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(Limits::default(), WINDOW);
    let ids: Vec<u64> = (0..5)
        .map(|i| ledger.try_reserve(t0 + WINDOW * i, request(1, 1)).unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
}
