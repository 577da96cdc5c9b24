//! Property tests with a simulated clock: any sequence of operations keeps every
//! window within every limit, and every `RetryIn` is exact.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Advance(Duration),
    Reserve(Charge),
    /// Settle the `n % len`-th unsettled reservation to `per_mille` of each field.
    Settle(usize, u64),
    Cancel(usize),
    Pause(Duration),
    Calibrate(Observed),
}

fn advance() -> impl Strategy<Value = Duration> {
    prop_oneof![
        6 => (0u64..2_000).prop_map(Duration::from_millis),
        1 => (0u64..1_000).prop_map(Duration::from_nanos),
        1 => (0u64..30).prop_map(|h| Duration::from_secs(h * 3600)),
    ]
}

fn charge() -> impl Strategy<Value = Charge> {
    (0u64..=2, 0u64..80, 0u64..80).prop_map(|(requests, input, output)| Charge {
        requests,
        input,
        output,
    })
}

fn observed() -> impl Strategy<Value = Observed> {
    let remaining = proptest::option::of(0u64..100);
    let reset = proptest::option::of((0u64..20_000).prop_map(Duration::from_millis));
    (
        remaining.clone(),
        remaining.clone(),
        remaining.clone(),
        remaining,
        reset.clone(),
        reset,
    )
        .prop_map(|(r, t, i, o, rr, rt)| Observed {
            remaining_requests: r,
            remaining_tokens: t,
            remaining_input_tokens: i,
            remaining_output_tokens: o,
            reset_requests: rr,
            reset_tokens: rt,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => advance().prop_map(Op::Advance),
        8 => charge().prop_map(Op::Reserve),
        3 => (any::<usize>(), 0u64..=1_000).prop_map(|(n, m)| Op::Settle(n, m)),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => (0u64..5_000).prop_map(|ms| Op::Pause(Duration::from_millis(ms))),
        1 => observed().prop_map(Op::Calibrate),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        proptest::option::of(1u64..6),
        proptest::option::of(80u64..300),
        proptest::option::of(80u64..200),
        proptest::option::of(80u64..200),
        proptest::option::of(3u64..30),
        proptest::option::of(200u64..2_000),
    )
        .prop_map(|(r, t, i, o, rpd, tpd)| Limits {
            requests: r,
            tokens: t,
            input_tokens: i,
            output_tokens: o,
            requests_per_day: rpd,
            tokens_per_day: tpd,
        })
}

/// One admission as the test saw it: offset from the start, and its final charge.
struct Admitted {
    at: Duration,
    charge: Charge,
}

fn check_windows(admitted: &[Admitted], kind: Kind, limit: u64, window: Duration) {
    for end in admitted {
        let total: u128 = admitted
            .iter()
            .filter(|a| a.at <= end.at && end.at - a.at < window)
            .map(|a| kind.amount(a.charge))
            .sum();
        assert!(
            total <= u128::from(limit),
            "{kind:?}: {total} > {limit} in the window ending at {:?}",
            end.at
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn windows_stay_within_limits_and_waits_are_exact(
        limits in limits(),
        window_ms in 1u64..10_000,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let window = Duration::from_millis(window_ms);
        let start = Instant::now();
        let mut offset = Duration::ZERO;
        let mut ledger = Ledger::new(limits, window);
        let mut admitted: Vec<Admitted> = Vec::new();
        // (id, index into `admitted`) of reservations not yet settled or cancelled.
        let mut open: Vec<(u64, usize)> = Vec::new();

        for op in ops {
            let now = start + offset;
            match op {
                Op::Advance(by) => offset += by,
                Op::Reserve(charge) => match ledger.try_reserve(now, charge) {
                    Ok(id) => {
                        open.push((id, admitted.len()));
                        admitted.push(Admitted { at: offset, charge });
                    }
                    Err(NotNow::Never(_)) => {
                        prop_assert!(never_fits(&limits, charge, window).is_some());
                    }
                    Err(NotNow::RetryIn(wait)) => {
                        prop_assert!(never_fits(&limits, charge, window).is_none());
                        prop_assert!(!wait.is_zero());
                        let mut early = ledger.clone();
                        prop_assert!(
                            matches!(
                                early.try_reserve(now + wait - Duration::from_nanos(1), charge),
                                Err(NotNow::RetryIn(_))
                            ),
                            "fits before the reported wait {:?}", wait
                        );
                        let mut on_time = ledger.clone();
                        prop_assert!(
                            on_time.try_reserve(now + wait, charge).is_ok(),
                            "does not fit after the reported wait {:?}", wait
                        );
                    }
                },
                Op::Settle(n, per_mille) => {
                    if !open.is_empty() {
                        let (id, index) = open.swap_remove(n % open.len());
                        let reserved = admitted[index].charge;
                        let scale = |x: u64| x * per_mille / 1_000;
                        let actual = Charge {
                            requests: scale(reserved.requests),
                            input: scale(reserved.input),
                            output: scale(reserved.output),
                        };
                        ledger.settle(now, id, actual);
                        admitted[index].charge = actual;
                    }
                }
                Op::Cancel(n) => {
                    if !open.is_empty() {
                        let (id, index) = open.swap_remove(n % open.len());
                        ledger.cancel(id);
                        admitted[index].charge = Charge::default();
                    }
                }
                Op::Pause(after) => ledger.pause(now, after),
                Op::Calibrate(observed) => ledger.calibrate(now, observed),
            }

            // `usage` agrees with a brute-force count of the window.
            let now = start + offset;
            let mut expected = Sums::default();
            for a in admitted.iter().filter(|a| offset - a.at < window) {
                expected.add(a.charge);
            }
            prop_assert_eq!(ledger.usage(now), expected.charge());
        }

        for kind in Kind::ALL {
            if let Some(limit) = kind.limit(&limits) {
                let horizon = if kind.per_day() { DAY } else { window };
                check_windows(&admitted, kind, limit, horizon);
            }
        }
    }
}
