//! The per-series accumulator a worker records into: histograms (via `metrics::Recorder`),
//! throughput buckets, in-flight spans, SLO verdicts, cost, rate-limit headroom and the
//! counters behind the report's warnings. Each worker owns one and they are merged at the
//! end (STYLE.md habit 7), so the hot path takes no lock.
//!
//! Memory is bounded: histograms and per-second buckets, never per-request samples.

use std::time::{Duration, Instant};

use client::{ErrorClass, Ledger, RequestMetrics};
use metrics::cost::{BillableTokens, Cost, CostTally, Price};
use metrics::recorder::{
    FailureClass, MetricKind, Recorder, RequestTokens, TokenSource, TokenTotals,
};
use metrics::slo::{Attainment, Slo, SloMetric, Verdict};
use metrics::throughput::{Completion, InFlightTracker, ThroughputTracker};

/// What the recorder needs to know besides the ledger.
#[derive(Debug, Clone, Copy)]
pub struct BookCtx<'a> {
    /// When the series' measured phase started (offsets are relative to it).
    pub start: Instant,
    /// The SLO, if any.
    pub slo: Option<&'a Slo>,
    /// The price of the model, if known.
    pub price: Option<&'a Price>,
}

/// One request's facts that are not in its ledger.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts {
    /// Position in the run (0 = first measured request).
    pub index: u64,
    /// Fixed-length workloads: the output length asked for.
    pub expected_output: Option<u32>,
}

/// Rate-limit headroom seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headroom {
    /// 429 responses.
    pub responses_429: u64,
    /// Largest retry-after.
    pub max_retry_after: Option<Duration>,
    /// Reported request limit.
    pub requests_limit: Option<u64>,
    /// Smallest remaining requests.
    pub min_requests_remaining: Option<u64>,
    /// Reported token limit.
    pub tokens_limit: Option<u64>,
    /// Smallest remaining tokens.
    pub min_tokens_remaining: Option<u64>,
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Headroom {
    fn merge(&mut self, o: &Headroom) {
        self.responses_429 += o.responses_429;
        self.max_retry_after = self.max_retry_after.max(o.max_retry_after);
        self.requests_limit = self.requests_limit.or(o.requests_limit);
        self.tokens_limit = self.tokens_limit.or(o.tokens_limit);
        self.min_requests_remaining =
            min_opt(self.min_requests_remaining, o.min_requests_remaining);
        self.min_tokens_remaining = min_opt(self.min_tokens_remaining, o.min_tokens_remaining);
    }
}

/// The result of booking one request, for the live progress display.
#[derive(Debug, Clone, Copy)]
pub struct Booked {
    /// The request succeeded.
    pub ok: bool,
    /// Its TTFT, if streamed and successful.
    pub ttft: Option<Duration>,
}

/// Everything recorded for one series by one worker.
#[derive(Debug, Clone)]
pub struct SeriesRecord {
    /// Histograms and counters.
    pub recorder: Recorder,
    /// Throughput buckets.
    pub throughput: ThroughputTracker,
    /// In-flight spans.
    pub in_flight: InFlightTracker,
    /// SLO verdicts.
    pub attainment: Attainment,
    /// Standard cost.
    pub cost: CostTally,
    /// Batch-price cost.
    pub batch_cost: Option<Cost>,
    /// Rate-limit headroom.
    pub headroom: Headroom,
    /// Responses from a cache.
    pub cache_hits: u64,
    /// Server and tokenizer counts differ by more than 10%.
    pub count_mismatches: u64,
    /// Fixed-length output not matched.
    pub length_mismatches: u64,
    /// E2E of the first three measured requests (by index).
    pub first_e2e: Vec<(u64, Duration)>,
    /// Measured requests sent.
    pub total: u64,
}

impl SeriesRecord {
    /// An empty record.
    pub fn new() -> Self {
        SeriesRecord {
            recorder: Recorder::new(),
            throughput: ThroughputTracker::new(),
            in_flight: InFlightTracker::new(),
            attainment: Attainment::default(),
            cost: CostTally::default(),
            batch_cost: Some(Cost(0)),
            headroom: Headroom::default(),
            cache_hits: 0,
            count_mismatches: 0,
            length_mismatches: 0,
            first_e2e: Vec::new(),
            total: 0,
        }
    }

    /// Records a request cancelled because the run ended.
    pub fn incomplete(&mut self) {
        self.total += 1;
        self.recorder.record_incomplete();
        self.attainment.add_incomplete();
    }

    /// Records one finished request.
    pub fn book(
        &mut self,
        ctx: &BookCtx<'_>,
        facts: RequestFacts,
        ledger: &Ledger,
        m: &RequestMetrics,
    ) -> Booked {
        self.total += 1;
        let offset = |t: Instant| t.saturating_duration_since(ctx.start);
        let dispatched = offset(ledger.dispatched);
        let ended = offset(ledger.end);
        self.throughput.dispatched(dispatched);
        self.in_flight.span(dispatched, ended);
        self.recorder.record_connection(!m.new_connection);
        self.record_headroom(ledger);
        self.recorder
            .record(MetricKind::ScheduleLag, m.schedule_lag);

        let ok = ledger.outcome.is_ok();
        if !ok {
            if let Err(e) = &ledger.outcome {
                self.recorder.record_failure(failure_class(e));
            }
            self.throughput.ended_without_success(ended);
            if let Some(slo) = ctx.slo {
                let verdict = slo.judge(&|_| None, false);
                self.attainment.add(verdict, 0);
            }
            return Booked {
                ok: false,
                ttft: None,
            };
        }

        self.recorder.record_success();
        let r = &mut self.recorder;
        let mut put = |kind: MetricKind, v: Option<Duration>| {
            if let Some(v) = v {
                r.record(kind, v);
            }
        };
        put(MetricKind::Ttft, m.ttft);
        put(MetricKind::Ttfc, m.ttfc);
        put(MetricKind::Ttlt, m.ttlt);
        put(MetricKind::E2e, Some(m.e2e));
        put(MetricKind::ConnSetup, m.conn_setup);
        put(MetricKind::TimeToHeaders, m.time_to_headers);
        put(MetricKind::TimeToFirstByte, m.time_to_first_byte);
        put(MetricKind::QueueInclusiveTtft, m.ttft_queue_inclusive);
        put(MetricKind::QueueInclusiveE2e, Some(m.e2e_queue_inclusive));
        put(MetricKind::Network, m.network);
        put(MetricKind::ServerQueue, m.server_queue);
        put(MetricKind::Processing, m.processing);
        for gap in &m.icl {
            r.record(MetricKind::Icl, *gap);
        }
        for gap in &m.itl {
            r.record(MetricKind::Itl, *gap);
        }
        if let Some(decode) = m.decode {
            r.record_decode(decode, m.output_tokens.0);
        }
        if let Some(tps) = m.output_tps {
            r.record_output_rate(tps);
        }
        r.record_coalesced_gaps(m.coalesced_gaps as u64);
        let (output, output_source) = m.output_tokens;
        let (input, input_source) = m.input_tokens.unwrap_or((0, client::TokenSource::Chunks));
        let cached = m.cached_input_tokens.unwrap_or(0);
        r.record_tokens(&RequestTokens {
            counts: TokenTotals {
                input,
                output,
                cached_input: cached,
                reasoning: m.reasoning_tokens.unwrap_or(0),
            },
            input_source: source(input_source),
            output_source: source(output_source),
        });

        if m.cache_hit {
            self.cache_hits += 1;
        }
        if m.count_mismatch.is_some_and(|x| x.abs() > 0.10) {
            self.count_mismatches += 1;
        }
        if facts
            .expected_output
            .is_some_and(|n| u64::from(n) != output)
        {
            self.length_mismatches += 1;
        }
        if facts.index < 3 {
            self.first_e2e.push((facts.index, m.e2e));
        }

        let token_span = {
            let mut tokens = ledger.token_events();
            let first = tokens.next().map(|e| offset(e.at));
            let last = ledger.token_events().last().map(|e| offset(e.at));
            first.zip(last).filter(|_| ledger.streamed)
        };
        self.throughput.book(&Completion {
            end: ended,
            token_span,
            input_tokens: input,
            output_tokens: output,
        });

        if let Some(price) = ctx.price {
            let usage = ledger.usage.unwrap_or_default();
            let billable = match ledger.api {
                client::Api::Anthropic => BillableTokens::anthropic(
                    usage.input,
                    usage.cache_write,
                    usage.cached_input,
                    output,
                ),
                client::Api::OpenAi => BillableTokens::openai(input, cached, output),
            };
            self.cost.add(price.cost(&billable), output);
            self.batch_cost = match (self.batch_cost, price.batch_cost(&billable)) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }

        if let Some(slo) = ctx.slo {
            let values = |metric: SloMetric| match metric {
                SloMetric::Ttft => m.ttft,
                SloMetric::Ttfc => m.ttfc,
                SloMetric::Tpot => m.tpot,
                SloMetric::Ttlt => m.ttlt,
                SloMetric::E2e => Some(m.e2e),
                SloMetric::QueueTtft => m.ttft_queue_inclusive,
                SloMetric::QueueE2e => Some(m.e2e_queue_inclusive),
            };
            let verdict: Verdict = slo.judge(&values, true);
            self.attainment.add(verdict, output);
        }
        Booked {
            ok: true,
            ttft: m.ttft,
        }
    }

    fn record_headroom(&mut self, ledger: &Ledger) {
        let rl = &ledger.rate_limits;
        let h = &mut self.headroom;
        if ledger.status == Some(429) {
            h.responses_429 += 1;
            h.max_retry_after = h.max_retry_after.max(rl.retry_after);
        }
        h.requests_limit = rl.requests_limit.or(h.requests_limit);
        h.tokens_limit = rl.tokens_limit.or(rl.input_tokens_limit).or(h.tokens_limit);
        h.min_requests_remaining = min_opt(h.min_requests_remaining, rl.requests_remaining);
        h.min_tokens_remaining = min_opt(
            h.min_tokens_remaining,
            rl.tokens_remaining.or(rl.input_tokens_remaining),
        );
    }

    /// Adds another worker's record.
    pub fn merge(&mut self, o: &SeriesRecord) {
        self.recorder.merge(&o.recorder);
        self.throughput.merge(&o.throughput);
        self.in_flight.merge(&o.in_flight);
        self.attainment.merge(&o.attainment);
        self.cost.merge(&o.cost);
        self.batch_cost = match (self.batch_cost, o.batch_cost) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        self.headroom.merge(&o.headroom);
        self.cache_hits += o.cache_hits;
        self.count_mismatches += o.count_mismatches;
        self.length_mismatches += o.length_mismatches;
        self.first_e2e.extend_from_slice(&o.first_e2e);
        self.first_e2e.sort();
        self.first_e2e.truncate(3);
        self.total += o.total;
    }
}

impl Default for SeriesRecord {
    fn default() -> Self {
        SeriesRecord::new()
    }
}

/// The report's failure class of a client error.
pub fn failure_class(e: &ErrorClass) -> FailureClass {
    match e {
        ErrorClass::Http4xx { .. } => FailureClass::Http4xx,
        ErrorClass::RateLimited { .. } => FailureClass::RateLimited,
        ErrorClass::Http5xx { .. } => FailureClass::Http5xx,
        ErrorClass::Connect(_) => FailureClass::Connect,
        ErrorClass::Tls(_) => FailureClass::Tls,
        ErrorClass::Reset(_) => FailureClass::Reset,
        ErrorClass::Timeout { .. } => FailureClass::Timeout,
        ErrorClass::InStreamError(_) => FailureClass::InStreamError,
        ErrorClass::Empty => FailureClass::Empty,
        ErrorClass::Truncated => FailureClass::Truncated,
        ErrorClass::Protocol(_) => FailureClass::Protocol,
    }
}

fn source(s: client::TokenSource) -> TokenSource {
    match s {
        client::TokenSource::Usage => TokenSource::Usage,
        client::TokenSource::Tokenizer => TokenSource::Tokenizer,
        client::TokenSource::Chunks => TokenSource::Chunks,
    }
}
