//! Property tests of the sliding-window limiter against a reference model on a simulated
//! clock: no window ever admits more than a limit, and `retry_after` is exact.

use super::*;
use proptest::prelude::*;

const MS: Duration = Duration::from_millis(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn req(input: u64, output: u64) -> Charge {
    Charge::request(input, output)
}

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
