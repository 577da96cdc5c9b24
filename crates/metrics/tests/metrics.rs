//! The crate as the bench engine will use it: per-worker recorders and trackers, merged,
//! then windows, rates, Little's law, SLO attainment and cost over a synthetic closed loop
//! whose true answers are known.

use std::time::Duration;

use tokenpace_metrics as metrics;

use metrics::cost::Cost;
use metrics::slo::Verdict;
use metrics::throughput::WindowKind;
use metrics::{
    Attainment, BillableTokens, Completion, CostTally, InFlightTracker, MetricKind, Price,
    PriceTable, Recorder, RequestTokens, Slo, SloMetric, ThroughputTracker, TokenSource,
    TokenTotals, littles_law_mismatch,
};

const WORKERS: u64 = 4;
const TTFT: Duration = Duration::from_millis(200);
const ITL: Duration = Duration::from_millis(10);
const TOKENS: u64 = 20;
/// TTFT + 19 gaps + 10 ms from the last token to `[DONE]`.
const E2E: Duration = Duration::from_millis(400);
const RUN: Duration = Duration::from_secs(20);

struct Worker {
    rec: Recorder,
    tput: ThroughputTracker,
    flight: InFlightTracker,
    chatbot: Attainment,
    strict: Attainment,
    cost: CostTally,
}

fn run_worker(offset: Duration, chatbot: &Slo, strict: &Slo, price: &Price) -> Worker {
    let mut w = Worker {
        rec: Recorder::new(),
        tput: ThroughputTracker::new(),
        flight: InFlightTracker::new(),
        chatbot: Attainment::default(),
        strict: Attainment::default(),
        cost: CostTally::default(),
    };
    let mut t = offset;
    while t + E2E <= RUN {
        let first = t + TTFT;
        let last = first + ITL * (TOKENS as u32 - 1);
        let end = t + E2E;
        w.tput.dispatched(t);
        w.flight.span(t, end);
        w.rec.record(MetricKind::Ttft, TTFT);
        w.rec.record(MetricKind::Ttlt, last - t);
        w.rec.record(MetricKind::E2e, E2E);
        w.rec.record_decode(last - first, TOKENS);
        w.rec.record_n(MetricKind::Icl, ITL, TOKENS - 1);
        w.rec.record_success();
        w.rec.record_tokens(&RequestTokens {
            counts: TokenTotals {
                input: 1000,
                output: TOKENS,
                cached_input: 0,
                reasoning: 0,
            },
            input_source: TokenSource::Usage,
            output_source: TokenSource::Usage,
        });
        w.tput.book(&Completion {
            end,
            token_span: Some((first, last)),
            input_tokens: 1000,
            output_tokens: TOKENS,
        });
        let values = |m: SloMetric| match m {
            SloMetric::Ttft => Some(TTFT),
            SloMetric::E2e => Some(E2E),
            _ => None,
        };
        w.chatbot.add(chatbot.judge(&values, true), TOKENS);
        w.strict.add(strict.judge(&values, true), TOKENS);
        w.cost
            .add(price.cost(&BillableTokens::openai(1000, 0, TOKENS)), TOKENS);
        t = end;
    }
    w
}

#[test]
fn closed_loop_end_to_end() {
    let prices = PriceTable::builtin();
    let price = prices.lookup("sim-mini:ttft=200ms,itl=10ms").unwrap();
    let chatbot = Slo::parse("chatbot").unwrap();
    // TTFT is exactly 200 ms: the strict comparison makes every request bad.
    let strict = Slo::parse("ttft=200ms").unwrap();
    let mut run = run_worker(Duration::ZERO, &chatbot, &strict, price);
    for i in 1..WORKERS {
        let w = run_worker(Duration::from_millis(97 * i), &chatbot, &strict, price);
        run.rec.merge(&w.rec);
        run.tput.merge(&w.tput);
        run.flight.merge(&w.flight);
        run.chatbot.merge(&w.chatbot);
        run.strict.merge(&w.strict);
        run.cost.merge(&w.cost);
    }

    let requests = run.rec.counters().succeeded;
    assert_eq!(
        requests,
        50 + 3 * 49,
        "400 ms requests in 20 s: 50 from t = 0, 49 when offset"
    );
    let ttft = run.rec.histogram(MetricKind::Ttft).summary().unwrap();
    assert_eq!((ttft.n, ttft.min, ttft.max), (requests, TTFT, TTFT));
    assert_eq!(ttft.ms().p99, 200.0);
    let tpot = run.rec.histogram(MetricKind::Tpot).summary().unwrap();
    assert_eq!(tpot.mean, ITL);
    assert_eq!(run.rec.token_weighted_tpot(), Some(ITL));
    assert_eq!(
        run.rec.histogram(MetricKind::Icl).len(),
        requests * (TOKENS - 1)
    );

    let (window, kind) = run.tput.headline_window().unwrap();
    assert_eq!(kind, WindowKind::Steady);
    // First completion at 0.4 s; last dispatch at 19.6 s (worker 0's 50th request).
    assert_eq!(window.start, Duration::from_millis(400));
    assert_eq!(window.end, Duration::from_millis(19_600));
    let rates = run.tput.rates(window).unwrap();
    // True rates: 4 workers / 0.4 s = 10 req/s, 200 output tok/s, 10 200 total tok/s.
    assert!((rates.requests_per_s - 10.0).abs() < 0.3, "{rates:?}");
    assert!((rates.output_tokens_per_s - 200.0).abs() < 6.0, "{rates:?}");
    assert!(
        (rates.total_tokens_per_s - 10_200.0).abs() < 300.0,
        "{rates:?}"
    );
    let full = run.tput.rates(run.tput.full_window().unwrap()).unwrap();
    assert!(
        (full.requests - requests as f64).abs() < 1e-9,
        "full run counts every request"
    );
    let per_s = run.tput.per_second_output(window).unwrap();
    assert!(per_s.p50 >= 150.0 && per_s.peak <= 250.0, "{per_s:?}");

    let concurrency = run.flight.mean_concurrency(window).unwrap();
    assert!((concurrency - 4.0).abs() < 0.05, "{concurrency}");
    let mean_e2e = run.rec.histogram(MetricKind::E2e).mean().unwrap();
    let mismatch = littles_law_mismatch(concurrency, rates.requests_per_s, mean_e2e).unwrap();
    assert!(
        mismatch < metrics::throughput::LITTLES_LAW_TOLERANCE,
        "{mismatch}"
    );

    assert_eq!(run.chatbot.attainment(), Some(1.0));
    assert_eq!(run.strict.attainment(), Some(0.0));
    assert_eq!(run.strict.bad, requests);
    let full_window = run.tput.full_window().unwrap();
    let goodput = run.chatbot.goodput(full_window).unwrap();
    assert!((goodput - requests as f64 / full_window.len().as_secs_f64()).abs() < 1e-9);
    assert_eq!(
        strict.judge(&|_| None, false),
        Verdict::Failed,
        "a failed request is never good"
    );

    // sim-mini is priced like gpt-4o-mini: 1000 × 0.15 + 20 × 0.60 = 162 µ$ per request.
    assert_eq!(run.cost.per_request(), Some(Cost(162_000_000)));
    assert_eq!(run.cost.total, Cost(162_000_000 * u128::from(requests)));
    assert_eq!(run.cost.per_million_output().unwrap().usd(), 8.1);
}
