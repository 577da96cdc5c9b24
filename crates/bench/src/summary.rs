//! Turns a series' raw record into its [`SeriesReport`]: summaries, windows, rates, cost,
//! SLO, headroom and the warnings with advice. Pure: no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use metrics::cost::PriceTable;
use metrics::recorder::{FailureClass, MetricKind, TokenSource};
use metrics::slo::Slo;
use metrics::throughput::{Window, littles_law_mismatch};

use crate::engine::SeriesRun;
use crate::plan::Load;
use crate::report::{
    ClientReport, CostReport, PerSecondReport, RateLimitReport, RateReport, Rates, RequestCounts,
    SeriesReport, SloReport, Throughput, Tokens, Warning,
};

/// Below this many successful requests, p99 is essentially the maximum.
const FEW_SAMPLES: u64 = 100;

fn rates(r: metrics::throughput::Rates) -> Rates {
    Rates {
        window_start_s: r.window.start.as_secs_f64(),
        window_end_s: r.window.end.as_secs_f64(),
        requests_per_s: r.requests_per_s,
        output_tokens_per_s: r.output_tokens_per_s,
        total_tokens_per_s: r.total_tokens_per_s,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Builds the report of one series.
pub fn summarize(run: &SeriesRun, prices: &PriceTable, slo: Option<&Slo>) -> SeriesReport {
    let rec = &run.record;
    let r = &rec.recorder;
    let counters = r.counters();
    let mut failed_by_class = BTreeMap::new();
    for class in FailureClass::ALL {
        let n = counters.failed(class);
        if n > 0 {
            failed_by_class.insert(class.label().to_string(), n);
        }
    }
    let requests = RequestCounts {
        total: rec.total,
        succeeded: counters.succeeded,
        failed: counters.failed_total(),
        failed_by_class,
        incomplete: counters.incomplete,
        warmup: run.warmup,
        new_connections: counters.new_connections,
    };

    let mut latency_ms = BTreeMap::new();
    for kind in MetricKind::ALL {
        if kind == MetricKind::ScheduleLag {
            continue;
        }
        if let Some(s) = r.histogram(kind).summary() {
            latency_ms.insert(kind.json_key().to_string(), s.ms());
        }
    }
    let schedule_lag = r.histogram(MetricKind::ScheduleLag).summary();

    let totals = r.totals();
    let sources = |s: metrics::recorder::SourceCounts| {
        TokenSource::ALL
            .iter()
            .filter(|t| s.get(**t) > 0)
            .map(|t| (t.label().to_string(), s.get(*t)))
            .collect::<BTreeMap<_, _>>()
    };
    let tokens = Tokens {
        input: totals.input,
        output: totals.output,
        cached_input: totals.cached_input,
        reasoning: totals.reasoning,
        output_source: sources(r.output_sources()),
        input_source: sources(r.input_sources()),
        count_mismatches: rec.count_mismatches,
        length_mismatches: rec.length_mismatches,
    };

    let tp = &rec.throughput;
    let headline = tp.headline_window();
    let throughput = Throughput {
        headline_window: headline.map(|(_, k)| k.label().to_string()),
        steady: tp.steady_window().and_then(|w| tp.rates(w)).map(rates),
        full: tp.full_window().and_then(|w| tp.rates(w)).map(rates),
        output_tokens_per_s_by_second: headline.and_then(|(w, _)| tp.per_second_output(w)).map(
            |p| PerSecondReport {
                seconds: p.seconds,
                p50: p.p50,
                p99: p.p99,
                peak: p.peak,
            },
        ),
    };
    let window: Option<Window> = headline.map(|(w, _)| w);
    let achieved_concurrency = window.and_then(|w| rec.in_flight.mean_concurrency(w));
    let e2e_mean = r.histogram(MetricKind::E2e).mean();
    let littles = match (
        achieved_concurrency,
        window.and_then(|w| tp.rates(w)),
        e2e_mean,
    ) {
        (Some(c), Some(rt), Some(e2e)) => littles_law_mismatch(c, rt.requests_per_s, e2e),
        _ => None,
    };

    let wall = run.wall.as_secs_f64();
    let rate = match run.load {
        Load::Open { rate, .. } if wall > 0.0 => Some(RateReport {
            offered_per_s: rate,
            // (n - 1) gaps over the span from the first dispatch to the last.
            dispatched_per_s: match run.dispatch_span {
                Some(span) if run.dispatched >= 2 && !span.is_zero() => {
                    (run.dispatched - 1) as f64 / span.as_secs_f64()
                }
                _ => run.dispatched as f64 / wall,
            },
            completed_per_s: (rec.total - counters.incomplete) as f64 / wall,
        }),
        _ => None,
    };

    let cost = prices
        .resolve(&run.series.model)
        .map(|(name, price)| CostReport {
            price_model: name.to_string(),
            simulated: price.simulated,
            source: match (&price.source, &price.checked) {
                (Some(s), Some(c)) => Some(format!("{s} (checked {c})")),
                (Some(s), None) => Some(s.clone()),
                _ => None,
            },
            total_usd: rec.cost.total.usd(),
            per_request_usd: rec.cost.per_request().map(|c| c.usd()),
            per_million_output_tokens_usd: rec.cost.per_million_output().map(|c| c.usd()),
            batch_total_usd: rec.batch_cost.map(|c| c.usd()),
        });

    let slo_report = slo.map(|slo| SloReport {
        spec: slo.to_string(),
        good: rec.attainment.good,
        bad: rec.attainment.bad,
        failed: rec.attainment.failed,
        attainment: rec.attainment.attainment(),
        goodput_requests_per_s: window.and_then(|w| rec.attainment.goodput(w)),
        goodput_tokens_per_s: window.and_then(|w| rec.attainment.good_token_goodput(w)),
    });

    let h = &rec.headroom;
    let provider_limited = h.responses_429 > 0
        || h.min_requests_remaining == Some(0)
        || h.min_tokens_remaining == Some(0);
    let rate_limits = RateLimitReport {
        responses_429: h.responses_429,
        max_retry_after_s: h.max_retry_after.map(|d| d.as_secs_f64()),
        requests_limit: h.requests_limit,
        min_requests_remaining: h.min_requests_remaining,
        tokens_limit: h.tokens_limit,
        min_tokens_remaining: h.min_tokens_remaining,
        provider_limited,
    };

    let cores = crate::cpu::cores();
    let client = ClientReport {
        cpu_s: run.cpu.map(|c| c.as_secs_f64()),
        cpu_share: run
            .cpu
            .filter(|_| wall > 0.0)
            .map(|c| c.as_secs_f64() / (wall * cores as f64)),
        schedule_lag_ms: schedule_lag.map(|s| s.ms()),
    };

    let mut report = SeriesReport {
        label: run.series.label.clone(),
        model: run.series.model.clone(),
        endpoint: run.series.endpoint.url(),
        api: run.series.endpoint.api().label().to_string(),
        simulated: run.series.simulated,
        load: run.load.describe(),
        requests,
        latency_ms,
        tpot_token_weighted_ms: r.token_weighted_tpot().map(ms),
        output_tokens_per_s_per_request: r.output_tokens_per_s().summary(),
        tokens,
        throughput,
        achieved_concurrency,
        littles_law_mismatch: littles,
        rate,
        cost,
        slo: slo_report,
        rate_limits,
        cache_hits: rec.cache_hits,
        client,
        wall_s: wall,
        warnings: Vec::new(),
    };
    report.warnings = warnings(&report, run);
    report
}

/// The warnings of a series, each with advice.
fn warnings(s: &SeriesReport, run: &SeriesRun) -> Vec<Warning> {
    let mut w = Vec::new();
    let n = s.requests.succeeded;
    if s.requests.total > 0 && n == 0 {
        w.push(Warning::new(
            "all_failed",
            format!(
                "all {} requests failed ({:?})",
                s.requests.total, s.requests.failed_by_class
            ),
            "check the base URL, the model name and the API key; run with -v for details",
        ));
    }
    if n > 0 && n < FEW_SAMPLES {
        w.push(Warning::new(
            "few_samples",
            format!("only {n} successful requests: p99 and p99.9 are close to the maximum"),
            "run more requests (e.g. --requests 200) for tail percentiles",
        ));
    }
    if let Some(share) = s.client.cpu_share
        && share > 0.8
    {
        w.push(Warning::new(
            "client_saturated",
            format!("tokenpace used {:.0}% of this machine's CPU", share * 100.0),
            "the client may have been the bottleneck: lower the load, or run the client on another machine",
        ));
    }
    if let Some(lag) = &s.client.schedule_lag_ms
        && matches!(run.load, Load::Open { .. })
        && lag.p99 > 5.0
    {
        w.push(Warning::new(
            "schedule_lag",
            format!("requests left up to {:.1} ms (p99) after their scheduled time", lag.p99),
            "latencies are also reported from the intended send time (queue_inclusive_*); lower --rate or raise the in-flight limit",
        ));
    }
    if let Some(rate) = &s.rate
        && rate.dispatched_per_s < rate.offered_per_s * 0.99
    {
        w.push(Warning::new(
            "rate_shortfall",
            format!(
                "dispatched {:.1} req/s of the {:.1} req/s offered",
                rate.dispatched_per_s, rate.offered_per_s
            ),
            "the client could not keep the schedule; see schedule_lag",
        ));
    }
    if s.tokens.count_mismatches > 0 {
        w.push(Warning::new(
            "token_count_mismatch",
            format!(
                "{} requests: the server's output token count and the tokenizer's differ by more than 10%",
                s.tokens.count_mismatches
            ),
            "the model may use another tokenizer than tiktoken's for its family; trust the server's usage",
        ));
    }
    if s.tokens.length_mismatches > 0 {
        w.push(Warning::new(
            "length_mismatch",
            format!("{} requests received a different output length than max_tokens asked for", s.tokens.length_mismatches),
            "the server stopped early or ignored max_tokens; vLLM honours ignore_eos and min_tokens for fixed lengths",
        ));
    }
    if s.rate_limits.provider_limited {
        w.push(Warning::new(
            "rate_limited",
            format!(
                "the provider's rate limit was reached ({} responses were 429)",
                s.rate_limits.responses_429
            ),
            "the tier, not the model, limited this run: lower the load or use a higher tier",
        ));
    }
    if s.cache_hits > 0 {
        w.push(Warning::new(
            "cache_hits",
            format!("{} responses came from a cache", s.cache_hits),
            "cached responses do not show the model's latency; vary the prompts to measure the model",
        ));
    }
    if let (Some(first), Some(p50)) = (run.record.first_e2e.first(), s.latency_ms.get("e2e_ms"))
        && first.0 == 0
        && n >= 5
        && ms(first.1) > 2.0 * p50.p50
    {
        w.push(Warning::new(
            "slow_first_requests",
            format!(
                "the first request took {:.1} ms, the median {:.1} ms",
                ms(first.1),
                p50.p50
            ),
            "a cold connection or server: use --warmup N to exclude the first requests",
        ));
    }
    if let Some(m) = s.littles_law_mismatch
        && m.abs() > metrics::throughput::LITTLES_LAW_TOLERANCE
        && n >= FEW_SAMPLES
    {
        w.push(Warning::new(
            "littles_law",
            format!(
                "achieved concurrency and rate x latency disagree by {:.0}%",
                m * 100.0
            ),
            "the run may be too short for a steady state; run longer (--duration 30s)",
        ));
    }
    w
}
