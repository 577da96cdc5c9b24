//! Test fixtures: a fully populated [`RunReport`] (every `Option` is `Some`, every `Vec` and
//! map non-empty) and a sparse one (every `Option` `None`, every collection empty). Shared
//! by the unit tests and, through `#[path]`, by `tests/report.rs`, so both pin the same data.

use std::collections::BTreeMap;

use bench::report::{
    ClientReport, Comparison, CostReport, PerSecondReport, RateLimitReport, RateReport, Rates,
    RequestCounts, RunReport, SeriesReport, SloReport, Speedup, SweepRow, Throughput, Tokens,
    Warning,
};
use metrics::hist::{SummaryMs, ValueSummary};

/// The label with a comma, a double quote and a pipe, to exercise CSV and Markdown escaping.
pub const AWKWARD_LABEL: &str = "acme/gpt, \"mini\" | v2";

/// A summary whose percentiles are spread around `p50`.
pub fn summary(p50: f64) -> SummaryMs {
    SummaryMs {
        n: 50,
        mean: p50 * 1.02,
        stddev: p50 * 0.05,
        min: p50 * 0.9,
        p50,
        p90: p50 * 1.1,
        p95: p50 * 1.15,
        p99: p50 * 1.3,
        p999: p50 * 1.4,
        max: p50 * 1.5,
    }
}

fn value_summary(p50: f64) -> ValueSummary {
    let s = summary(p50);
    ValueSummary {
        n: s.n,
        mean: s.mean,
        stddev: s.stddev,
        min: s.min,
        p50: s.p50,
        p90: s.p90,
        p95: s.p95,
        p99: s.p99,
        p999: s.p999,
        max: s.max,
    }
}

fn rates(start: f64, end: f64) -> Rates {
    Rates {
        window_start_s: start,
        window_end_s: end,
        requests_per_s: 4.9,
        output_tokens_per_s: 412.3,
        total_tokens_per_s: 600.1,
    }
}

fn warning(code: &str) -> Warning {
    Warning::new(
        code,
        format!("{code} happened"),
        format!("do something about {code}"),
    )
}

/// Every latency key the recorder can produce, with plausible medians.
const LATENCIES: [(&str, f64); 16] = [
    ("ttft_ms", 101.6),
    ("ttfc_ms", 101.7),
    ("ttlt_ms", 840.0),
    ("e2e_ms", 842.5),
    ("decode_ms", 738.4),
    ("tpot_ms", 7.46),
    ("icl_ms", 7.5),
    ("itl_ms", 7.4),
    ("conn_setup_ms", 0.42),
    ("time_to_headers_ms", 2.1),
    ("time_to_first_byte_ms", 2.3),
    ("queue_inclusive_ttft_ms", 101.9),
    ("queue_inclusive_e2e_ms", 842.8),
    ("network_ms", 0.4),
    ("server_queue_ms", 0.0),
    ("processing_ms", 101.2),
];

/// A series with every field populated; `output_source` names `source`.
pub fn full_series(label: &str, source: &str) -> SeriesReport {
    SeriesReport {
        label: label.to_string(),
        model: "sim-mini".to_string(),
        endpoint: "http://127.0.0.1:4000/v1".to_string(),
        api: "openai".to_string(),
        simulated: true,
        load: "concurrency 4".to_string(),
        requests: RequestCounts {
            total: 52,
            succeeded: 50,
            failed: 2,
            failed_by_class: BTreeMap::from([("http_5xx".to_string(), 1), ("timeout".into(), 1)]),
            incomplete: 1,
            warmup: 2,
            new_connections: 4,
        },
        latency_ms: LATENCIES
            .iter()
            .map(|(k, p50)| ((*k).to_string(), summary(*p50)))
            .collect(),
        tpot_token_weighted_ms: Some(7.45),
        output_tokens_per_s_per_request: Some(value_summary(134.2)),
        tokens: Tokens {
            input: 5_000,
            output: 12_345,
            cached_input: 1_024,
            reasoning: 64,
            output_source: BTreeMap::from([(source.to_string(), 50)]),
            input_source: BTreeMap::from([("tokenizer".to_string(), 50)]),
            count_mismatches: 1,
            length_mismatches: 2,
        },
        throughput: Throughput {
            headline_window: Some("steady".to_string()),
            steady: Some(rates(2.0, 10.0)),
            full: Some(rates(0.0, 12.3)),
            output_tokens_per_s_by_second: Some(PerSecondReport {
                seconds: 8,
                p50: 410.0,
                p99: 450.0,
                peak: 455.0,
            }),
        },
        achieved_concurrency: Some(3.9),
        littles_law_mismatch: Some(0.02),
        rate: Some(RateReport {
            offered_per_s: 5.0,
            dispatched_per_s: 4.95,
            completed_per_s: 4.9,
        }),
        cost: Some(CostReport {
            price_model: "sim-mini".to_string(),
            simulated: true,
            source: Some("tokenpace sim notional prices (checked 2025-01-01)".to_string()),
            total_usd: 0.0123,
            per_request_usd: Some(0.000_246),
            per_million_output_tokens_usd: Some(0.99),
            batch_total_usd: Some(0.006_15),
        }),
        slo: Some(SloReport {
            spec: "ttft<=200ms,e2e<=1s".to_string(),
            good: 47,
            bad: 3,
            failed: 2,
            attainment: Some(47.0 / 52.0),
            goodput_requests_per_s: Some(4.6),
            goodput_tokens_per_s: Some(388.0),
        }),
        rate_limits: RateLimitReport {
            responses_429: 3,
            max_retry_after_s: Some(2.0),
            requests_limit: Some(500),
            min_requests_remaining: Some(12),
            tokens_limit: Some(200_000),
            min_tokens_remaining: Some(1_500),
            provider_limited: true,
        },
        cache_hits: 3,
        client: ClientReport {
            cpu_s: Some(0.8),
            cpu_share: Some(0.012),
            schedule_lag_ms: Some(summary(0.05)),
        },
        wall_s: 12.3,
        warnings: vec![warning("few_samples")],
    }
}

/// A fully populated, simulated, streamed, interrupted run with two series: one counted by
/// server usage, one (with [`AWKWARD_LABEL`]) by stream chunks.
pub fn full() -> RunReport {
    RunReport {
        schema_version: bench::report::SCHEMA_VERSION,
        tool: "tokenpace 0.1.0".to_string(),
        started_at: "2025-01-01T00:00:00Z".to_string(),
        load: "concurrency 4".to_string(),
        stop: "50 requests".to_string(),
        stream: true,
        slo: Some("ttft<=200ms,e2e<=1s".to_string()),
        simulated: true,
        series: vec![
            full_series("sim-mini", "usage"),
            full_series(AWKWARD_LABEL, "chunks"),
        ],
        comparisons: vec![Comparison {
            metric: "ttft".to_string(),
            faster: "sim-mini".to_string(),
            slower: AWKWARD_LABEL.to_string(),
            ratio: 3.1,
            ratio_stddev: 0.2,
            text: "sim-mini: TTFT p50 3.1 ± 0.2 × faster than sim-large".to_string(),
        }],
        sweep: vec![sweep_row(1, Some(1.2)), sweep_row(8, Some(7.9))],
        speedup: Some(Speedup {
            label: "sim-mini".to_string(),
            requests: 8,
            concurrency: 4,
            sequential_s: 5.2,
            parallel_s: 1.4,
            speedup: 5.2 / 1.4,
        }),
        warnings: vec![warning("client_saturated")],
        interrupted: true,
    }
}

/// A sweep row; `None` makes the level one where nothing succeeded.
pub fn sweep_row(concurrency: u32, rps: Option<f64>) -> SweepRow {
    SweepRow {
        label: "sim-mini".to_string(),
        concurrency,
        requests_per_s: rps,
        output_tokens_per_s: rps.map(|r| r * 84.0),
        ttft_p50_ms: rps.map(|_| 101.0),
        ttft_p99_ms: rps.map(|_| 130.0),
        tpot_p50_ms: rps.map(|_| 7.4),
        e2e_p50_ms: rps.map(|_| 840.0),
        e2e_p99_ms: rps.map(|_| 990.0),
        failed: if rps.is_some() { 0 } else { 64 },
    }
}

/// A sparse, real (not simulated), non-streamed run: every `Option` is `None`, every
/// collection empty, except one series with only an E2E summary.
pub fn sparse() -> RunReport {
    let series = SeriesReport {
        label: "gpt-4o-mini".to_string(),
        model: "gpt-4o-mini".to_string(),
        endpoint: "https://api.openai.com/v1".to_string(),
        api: "openai".to_string(),
        simulated: false,
        load: "sequential".to_string(),
        requests: RequestCounts {
            total: 5,
            succeeded: 5,
            ..RequestCounts::default()
        },
        latency_ms: BTreeMap::from([("e2e_ms".to_string(), summary(900.0))]),
        tpot_token_weighted_ms: None,
        output_tokens_per_s_per_request: None,
        tokens: Tokens::default(),
        throughput: Throughput::default(),
        achieved_concurrency: None,
        littles_law_mismatch: None,
        rate: None,
        cost: None,
        slo: None,
        rate_limits: RateLimitReport::default(),
        cache_hits: 0,
        client: ClientReport::default(),
        wall_s: 4.6,
        warnings: Vec::new(),
    };
    RunReport {
        schema_version: bench::report::SCHEMA_VERSION,
        tool: "tokenpace 0.1.0".to_string(),
        started_at: "2025-01-01T00:00:00Z".to_string(),
        load: "sequential".to_string(),
        stop: "5 requests".to_string(),
        stream: false,
        slo: None,
        simulated: false,
        series: vec![series],
        comparisons: Vec::new(),
        sweep: Vec::new(),
        speedup: None,
        warnings: Vec::new(),
        interrupted: false,
    }
}
