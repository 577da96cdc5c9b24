//! `RunReport`: the plain data a run returns (STYLE.md habit 5: engines return data,
//! renderers in the `report` crate present it). Field names are snake_case and carry their
//! unit (`_ms`, `_s`, `_per_s`, `_usd`); the JSON rendering adds nothing but
//! `schema_version`, so this file is the schema's source (docs/report-schema.json).

use std::collections::BTreeMap;

use metrics::hist::{SummaryMs, ValueSummary};
use serde::Serialize;

/// The version of the JSON report's shape; bump it on any change to these types.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Shape version of this document.
    pub schema_version: u32,
    /// `tokenpace` and its version.
    pub tool: String,
    /// Wall-clock start (RFC 3339, UTC): the only wall-clock reading of the run.
    pub started_at: String,
    /// Load shape ("sequential", "concurrency 4", "rate 100/s poisson").
    pub load: String,
    /// Stop condition ("5 requests", "30s").
    pub stop: String,
    /// Whether responses were streamed.
    pub stream: bool,
    /// The SLO spec, if any.
    pub slo: Option<String>,
    /// True when any series ran on the simulator.
    pub simulated: bool,
    /// One entry per series (target x model), in the order measured.
    pub series: Vec<SeriesReport>,
    /// Relative comparisons against the fastest series.
    pub comparisons: Vec<Comparison>,
    /// A concurrency sweep's table, when one ran.
    pub sweep: Vec<SweepRow>,
    /// Sequential vs parallel, when asked.
    pub speedup: Option<Speedup>,
    /// Run-wide warnings.
    pub warnings: Vec<Warning>,
    /// Set when the run was interrupted (ctrl-c): the figures are partial.
    pub interrupted: bool,
}

/// One series.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesReport {
    /// Label (model, or target/model).
    pub label: String,
    /// Model sent.
    pub model: String,
    /// Endpoint URL.
    pub endpoint: String,
    /// API kind (`openai` or `anthropic`).
    pub api: String,
    /// True on the simulator.
    pub simulated: bool,
    /// Load shape of this series.
    pub load: String,
    /// Outcome counts.
    pub requests: RequestCounts,
    /// Latency distributions in milliseconds, keyed by metric (`ttft_ms`, `tpot_ms`, ...);
    /// a metric without samples (TTFT when not streaming) is absent.
    pub latency_ms: BTreeMap<String, SummaryMs>,
    /// Token-weighted mean TPOT: total decode time / total (N - 1).
    pub tpot_token_weighted_ms: Option<f64>,
    /// Per-request output tokens per second.
    pub output_tokens_per_s_per_request: Option<ValueSummary>,
    /// Token totals and where the counts came from.
    pub tokens: Tokens,
    /// Throughput over the steady window and the full run.
    pub throughput: Throughput,
    /// Time-weighted mean requests in flight.
    pub achieved_concurrency: Option<f64>,
    /// Relative mismatch of Little's law (concurrency vs rate x mean E2E).
    pub littles_law_mismatch: Option<f64>,
    /// Offered / dispatched / completed rates (open loop).
    pub rate: Option<RateReport>,
    /// Cost.
    pub cost: Option<CostReport>,
    /// SLO attainment and goodput.
    pub slo: Option<SloReport>,
    /// Rate-limit headroom seen in response headers.
    pub rate_limits: RateLimitReport,
    /// Responses served from a cache (not the model's latency).
    pub cache_hits: u64,
    /// The client's own load: CPU and schedule lag.
    pub client: ClientReport,
    /// Measured wall time of the series.
    pub wall_s: f64,
    /// Warnings with advice.
    pub warnings: Vec<Warning>,
}

/// Outcome counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestCounts {
    /// Measured requests sent.
    pub total: u64,
    /// Succeeded.
    pub succeeded: u64,
    /// Failed, all classes.
    pub failed: u64,
    /// Failed, by class (`http_4xx`, `rate_limited`, `http_5xx`, `transport`, `in_stream`,
    /// `empty`, `truncated`).
    pub failed_by_class: BTreeMap<String, u64>,
    /// Cancelled because the run ended.
    pub incomplete: u64,
    /// Warm-up requests (excluded from everything else).
    pub warmup: u64,
    /// Requests that opened a new connection.
    pub new_connections: u64,
}

/// Token totals with provenance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tokens {
    /// Input tokens of successful requests.
    pub input: u64,
    /// Output tokens (reasoning included).
    pub output: u64,
    /// Cached input tokens reported by the server.
    pub cached_input: u64,
    /// Reasoning tokens reported by the server.
    pub reasoning: u64,
    /// Requests whose output count came from server usage / the tokenizer / chunk counting.
    pub output_source: BTreeMap<String, u64>,
    /// The same for input counts.
    pub input_source: BTreeMap<String, u64>,
    /// Requests whose server count and tokenizer count differ by more than 10%.
    pub count_mismatches: u64,
    /// Fixed-length workloads: requests whose output length differs from max_tokens.
    pub length_mismatches: u64,
}

/// Throughput figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Throughput {
    /// Which window the headline uses (`steady` or `full`).
    pub headline_window: Option<String>,
    /// Over the steady window.
    pub steady: Option<Rates>,
    /// Over the full run.
    pub full: Option<Rates>,
    /// Per-second output tokens over the headline window.
    pub output_tokens_per_s_by_second: Option<PerSecondReport>,
}

/// Rates over one window.
#[derive(Debug, Clone, Serialize)]
pub struct Rates {
    /// Window start, seconds after the series started.
    pub window_start_s: f64,
    /// Window end.
    pub window_end_s: f64,
    /// Successful requests per second.
    pub requests_per_s: f64,
    /// Output tokens per second.
    pub output_tokens_per_s: f64,
    /// Input + output tokens per second.
    pub total_tokens_per_s: f64,
}

/// Distribution of per-second output token throughput.
#[derive(Debug, Clone, Serialize)]
pub struct PerSecondReport {
    /// Seconds in the window.
    pub seconds: u64,
    /// Median second.
    pub p50: f64,
    /// 99th percentile second.
    pub p99: f64,
    /// Peak second.
    pub peak: f64,
}

/// Open-loop rates.
#[derive(Debug, Clone, Serialize)]
pub struct RateReport {
    /// Requests per second the schedule offered.
    pub offered_per_s: f64,
    /// Requests per second actually dispatched.
    pub dispatched_per_s: f64,
    /// Requests per second completed (any outcome).
    pub completed_per_s: f64,
}

/// Cost of a series.
#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    /// The price entry used.
    pub price_model: String,
    /// True for the simulator's notional prices.
    pub simulated: bool,
    /// Where the price comes from and when it was checked.
    pub source: Option<String>,
    /// Total of the measured requests.
    pub total_usd: f64,
    /// Mean per successful request.
    pub per_request_usd: Option<f64>,
    /// Per one million output tokens.
    pub per_million_output_tokens_usd: Option<f64>,
    /// The same requests at Batch API prices.
    pub batch_total_usd: Option<f64>,
}

/// SLO attainment.
#[derive(Debug, Clone, Serialize)]
pub struct SloReport {
    /// The thresholds.
    pub spec: String,
    /// Succeeded and met every applicable threshold.
    pub good: u64,
    /// Succeeded but missed a threshold.
    pub bad: u64,
    /// Failed (counts against attainment).
    pub failed: u64,
    /// good / (succeeded + failed).
    pub attainment: Option<f64>,
    /// Good requests per second over the headline window.
    pub goodput_requests_per_s: Option<f64>,
    /// Output tokens of good requests per second.
    pub goodput_tokens_per_s: Option<f64>,
}

/// Rate-limit headroom.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RateLimitReport {
    /// 429 responses.
    pub responses_429: u64,
    /// Largest `retry-after` seen, seconds.
    pub max_retry_after_s: Option<f64>,
    /// Request limit the provider reported.
    pub requests_limit: Option<u64>,
    /// Smallest remaining requests seen.
    pub min_requests_remaining: Option<u64>,
    /// Token limit the provider reported.
    pub tokens_limit: Option<u64>,
    /// Smallest remaining tokens seen.
    pub min_tokens_remaining: Option<u64>,
    /// True when the provider's limits, not the model, capped the run.
    pub provider_limited: bool,
}

/// The client's own load.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientReport {
    /// CPU time of the tokenpace process during the series, seconds.
    pub cpu_s: Option<f64>,
    /// CPU time as a share of the machine's cores over the wall time (0..1).
    pub cpu_share: Option<f64>,
    /// Dispatch minus intended send time.
    pub schedule_lag_ms: Option<SummaryMs>,
}

/// A relative comparison line.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Metric compared (`ttft`, `e2e`, ...), at p50.
    pub metric: String,
    /// The faster series.
    pub faster: String,
    /// The slower series.
    pub slower: String,
    /// slower / faster.
    pub ratio: f64,
    /// Propagated uncertainty of the ratio.
    pub ratio_stddev: f64,
    /// "sim-mini: TTFT p50 3.1 ± 0.2 × faster than sim-large".
    pub text: String,
}

/// One level of a concurrency sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    /// Series label.
    pub label: String,
    /// Concurrency level.
    pub concurrency: u32,
    /// Successful requests per second (headline window).
    pub requests_per_s: Option<f64>,
    /// Output tokens per second.
    pub output_tokens_per_s: Option<f64>,
    /// TTFT p50, ms.
    pub ttft_p50_ms: Option<f64>,
    /// TTFT p99, ms.
    pub ttft_p99_ms: Option<f64>,
    /// TPOT p50, ms.
    pub tpot_p50_ms: Option<f64>,
    /// E2E p50, ms.
    pub e2e_p50_ms: Option<f64>,
    /// E2E p99, ms.
    pub e2e_p99_ms: Option<f64>,
    /// Failed requests.
    pub failed: u64,
}

/// Sequential vs parallel wall time for the same prompts (the lesson's Part 3).
#[derive(Debug, Clone, Serialize)]
pub struct Speedup {
    /// Series label.
    pub label: String,
    /// Requests in each run.
    pub requests: u64,
    /// Concurrency of the parallel run.
    pub concurrency: u32,
    /// Wall time sequentially, seconds.
    pub sequential_s: f64,
    /// Wall time in parallel, seconds.
    pub parallel_s: f64,
    /// sequential / parallel.
    pub speedup: f64,
}

/// A warning with advice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    /// Stable code (`client_saturated`, `schedule_lag`, `token_count_mismatch`,
    /// `few_samples`, `slow_first_requests`, `length_mismatch`, `rate_limited`,
    /// `cache_hits`, `rate_shortfall`, `littles_law`, `all_failed`).
    pub code: String,
    /// What happened.
    pub message: String,
    /// What to do about it.
    pub advice: String,
}

impl Warning {
    /// A warning.
    pub fn new(code: &str, message: impl Into<String>, advice: impl Into<String>) -> Self {
        Warning {
            code: code.into(),
            message: message.into(),
            advice: advice.into(),
        }
    }
}
