//! The per-worker tally of a run: one [`LatencyHistogram`] per [`MetricKind`], value
//! distributions for per-request token counts and rates, token totals with their
//! provenance ([`TokenSource`]), and outcome counters.
//!
//! This module owns the *names* of the per-request metrics (their report keys) and how a
//! worker's tally merges into the run's. It does not derive a metric from timestamps: the
//! client turns a request's event ledger into durations and counts, and the bench engine
//! decides which requests are measured (warm-up excluded) and calls [`Recorder::record`].
//! A `Recorder` allocates nothing until it records, so each worker keeps its own and merges
//! it at intervals (STYLE habit 7).

use std::time::Duration;

use crate::hist::{LatencyHistogram, ValueHistogram};

/// The per-request latency metrics tokenpace reports (definitions in docs/metrics.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricKind {
    /// Time to first token: first token-bearing event (reasoning, content or tool) − dispatch.
    Ttft,
    /// Time to first content: first content or tool event − dispatch.
    Ttfc,
    /// Time to last token: last token-bearing event − dispatch.
    Ttlt,
    /// End-to-end: terminal event (or EOF) − dispatch.
    E2e,
    /// Decode time: last token − first token.
    Decode,
    /// Time per output token: decode time ÷ (N_out − 1), defined for N_out ≥ 2.
    Tpot,
    /// Inter-chunk latency: gaps between consecutive token-bearing events (pooled samples).
    Icl,
    /// Inter-token latency: each gap split evenly over the tokens of its event (pooled).
    Itl,
    /// Connection setup: DNS + TCP + TLS, 0 on a reused connection.
    ConnSetup,
    /// Response headers received − dispatch.
    TimeToHeaders,
    /// First body byte − dispatch.
    TimeToFirstByte,
    /// Dispatch − intended send time (open loop) or slot-free time (closed loop).
    ScheduleLag,
    /// TTFT measured from the intended send time instead of dispatch.
    QueueInclusiveTtft,
    /// E2E measured from the intended send time instead of dispatch.
    QueueInclusiveE2e,
    /// The lesson's "network" term: connection setup + one round trip (the connection's TCP
    /// connect time), as the client measures it.
    Network,
    /// The server's reported queue wait (`server-timing: queue;dur=`).
    ServerQueue,
    /// The lesson's "processing" term: TTFT (E2E when not streamed) − network − server queue.
    Processing,
}

impl MetricKind {
    /// Number of kinds.
    pub const COUNT: usize = 17;

    /// Every kind, in report order.
    pub const ALL: [MetricKind; Self::COUNT] = [
        MetricKind::Ttft,
        MetricKind::Ttfc,
        MetricKind::Ttlt,
        MetricKind::E2e,
        MetricKind::Decode,
        MetricKind::Tpot,
        MetricKind::Icl,
        MetricKind::Itl,
        MetricKind::ConnSetup,
        MetricKind::TimeToHeaders,
        MetricKind::TimeToFirstByte,
        MetricKind::ScheduleLag,
        MetricKind::QueueInclusiveTtft,
        MetricKind::QueueInclusiveE2e,
        MetricKind::Network,
        MetricKind::ServerQueue,
        MetricKind::Processing,
    ];

    /// The snake_case name, e.g. `"ttft"`.
    pub const fn name(self) -> &'static str {
        match self {
            MetricKind::Ttft => "ttft",
            MetricKind::Ttfc => "ttfc",
            MetricKind::Ttlt => "ttlt",
            MetricKind::E2e => "e2e",
            MetricKind::Decode => "decode",
            MetricKind::Tpot => "tpot",
            MetricKind::Icl => "icl",
            MetricKind::Itl => "itl",
            MetricKind::ConnSetup => "conn_setup",
            MetricKind::TimeToHeaders => "time_to_headers",
            MetricKind::TimeToFirstByte => "time_to_first_byte",
            MetricKind::ScheduleLag => "schedule_lag",
            MetricKind::QueueInclusiveTtft => "queue_inclusive_ttft",
            MetricKind::QueueInclusiveE2e => "queue_inclusive_e2e",
            MetricKind::Network => "network",
            MetricKind::ServerQueue => "server_queue",
            MetricKind::Processing => "processing",
        }
    }

    /// The report's JSON key for the summary in milliseconds, e.g. `"ttft_ms"`.
    pub const fn json_key(self) -> &'static str {
        match self {
            MetricKind::Ttft => "ttft_ms",
            MetricKind::Ttfc => "ttfc_ms",
            MetricKind::Ttlt => "ttlt_ms",
            MetricKind::E2e => "e2e_ms",
            MetricKind::Decode => "decode_ms",
            MetricKind::Tpot => "tpot_ms",
            MetricKind::Icl => "icl_ms",
            MetricKind::Itl => "itl_ms",
            MetricKind::ConnSetup => "conn_setup_ms",
            MetricKind::TimeToHeaders => "time_to_headers_ms",
            MetricKind::TimeToFirstByte => "time_to_first_byte_ms",
            MetricKind::ScheduleLag => "schedule_lag_ms",
            MetricKind::QueueInclusiveTtft => "queue_inclusive_ttft_ms",
            MetricKind::QueueInclusiveE2e => "queue_inclusive_e2e_ms",
            MetricKind::Network => "network_ms",
            MetricKind::ServerQueue => "server_queue_ms",
            MetricKind::Processing => "processing_ms",
        }
    }

    /// Parses a [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<MetricKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// True for the kinds whose samples are pooled gaps (many per request) rather than one
    /// value per request: ICL and ITL.
    pub const fn is_pooled(self) -> bool {
        matches!(self, MetricKind::Icl | MetricKind::Itl)
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Where a token count came from, in order of preference (docs/metrics.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenSource {
    /// The server's usage report.
    Usage,
    /// The client tokenizer on the reconstructed full text.
    Tokenizer,
    /// A count of token-bearing stream events: chunks, not tokens.
    Chunks,
}

impl TokenSource {
    /// Every source, in order of preference.
    pub const ALL: [TokenSource; 3] = [
        TokenSource::Usage,
        TokenSource::Tokenizer,
        TokenSource::Chunks,
    ];

    /// `"usage"`, `"tokenizer"` or `"chunks"`.
    pub const fn label(self) -> &'static str {
        match self {
            TokenSource::Usage => "usage",
            TokenSource::Tokenizer => "tokenizer",
            TokenSource::Chunks => "chunks",
        }
    }
}

/// Token totals over many requests, normalised: `input` includes cached input (for
/// Anthropic: input + cache creation + cache read), `output` includes reasoning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenTotals {
    /// Input (prompt) tokens, cached ones included.
    pub input: u64,
    /// Output (completion) tokens, reasoning included.
    pub output: u64,
    /// The part of `input` served from the provider's prompt cache.
    pub cached_input: u64,
    /// The part of `output` spent on reasoning.
    pub reasoning: u64,
}

impl TokenTotals {
    /// Adds another total field by field (saturating).
    pub fn add(&mut self, other: &TokenTotals) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cached_input = self.cached_input.saturating_add(other.cached_input);
        self.reasoning = self.reasoning.saturating_add(other.reasoning);
    }
}

/// How many requests took their count from each [`TokenSource`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Requests counted from server usage.
    pub usage: u64,
    /// Requests counted with the client tokenizer.
    pub tokenizer: u64,
    /// Requests counted in chunks.
    pub chunks: u64,
}

impl SourceCounts {
    /// Counts one request from `source`.
    pub fn add(&mut self, source: TokenSource) {
        let slot = match source {
            TokenSource::Usage => &mut self.usage,
            TokenSource::Tokenizer => &mut self.tokenizer,
            TokenSource::Chunks => &mut self.chunks,
        };
        *slot = slot.saturating_add(1);
    }

    /// The count for one source.
    pub fn get(&self, source: TokenSource) -> u64 {
        match source {
            TokenSource::Usage => self.usage,
            TokenSource::Tokenizer => self.tokenizer,
            TokenSource::Chunks => self.chunks,
        }
    }

    fn merge(&mut self, other: &SourceCounts) {
        self.usage = self.usage.saturating_add(other.usage);
        self.tokenizer = self.tokenizer.saturating_add(other.tokenizer);
        self.chunks = self.chunks.saturating_add(other.chunks);
    }
}

/// One request's token counts and where they came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestTokens {
    /// The counts (normalised as in [`TokenTotals`]).
    pub counts: TokenTotals,
    /// Source of the input count (never `Chunks`).
    pub input_source: TokenSource,
    /// Source of the output count.
    pub output_source: TokenSource,
}

/// Why a request failed (docs/metrics.md §8). The client's error classes map one to one
/// onto these (same labels), so reports can count them without depending on the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// HTTP 4xx other than 429.
    Http4xx,
    /// HTTP 429 rate-limited.
    RateLimited,
    /// HTTP 5xx (Anthropic's 529 included).
    Http5xx,
    /// DNS or TCP connect failure.
    Connect,
    /// TLS handshake failure.
    Tls,
    /// Connection closed or reset before the response was complete.
    Reset,
    /// The request's timeout expired.
    Timeout,
    /// An error event inside a 200 stream (or an error object in a 200 body).
    InStreamError,
    /// The stream ended without a single token.
    Empty,
    /// The stream ended without its terminal event.
    Truncated,
    /// The response broke the API's format (bad SSE framing, unexpected JSON or status).
    Protocol,
}

impl FailureClass {
    /// Number of classes.
    pub const COUNT: usize = 11;

    /// Every class, in report order.
    pub const ALL: [FailureClass; Self::COUNT] = [
        FailureClass::Http4xx,
        FailureClass::RateLimited,
        FailureClass::Http5xx,
        FailureClass::Connect,
        FailureClass::Tls,
        FailureClass::Reset,
        FailureClass::Timeout,
        FailureClass::InStreamError,
        FailureClass::Empty,
        FailureClass::Truncated,
        FailureClass::Protocol,
    ];

    /// The snake_case label used in reports (the client's labels).
    pub const fn label(self) -> &'static str {
        match self {
            FailureClass::Http4xx => "http_4xx",
            FailureClass::RateLimited => "rate_limited",
            FailureClass::Http5xx => "http_5xx",
            FailureClass::Connect => "connect",
            FailureClass::Tls => "tls",
            FailureClass::Reset => "reset",
            FailureClass::Timeout => "timeout",
            FailureClass::InStreamError => "in_stream_error",
            FailureClass::Empty => "empty",
            FailureClass::Truncated => "truncated",
            FailureClass::Protocol => "protocol",
        }
    }

    /// Parses a [`label`](Self::label).
    pub fn from_label(label: &str) -> Option<FailureClass> {
        Self::ALL.into_iter().find(|c| c.label() == label)
    }

    /// True for the transport group of metrics.md (connect, TLS, reset, timeout).
    pub const fn is_transport(self) -> bool {
        matches!(
            self,
            FailureClass::Connect | FailureClass::Tls | FailureClass::Reset | FailureClass::Timeout
        )
    }
}

/// Outcome and connection counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests that succeeded.
    pub succeeded: u64,
    /// Failed requests, indexed like [`FailureClass::ALL`].
    pub failed: [u64; FailureClass::COUNT],
    /// Requests cancelled because the run ended (neither success nor failure).
    pub incomplete: u64,
    /// Requests that opened a new connection.
    pub new_connections: u64,
    /// Requests that reused a pooled connection.
    pub reused_connections: u64,
    /// ICL gaps whose event arrived in the same socket read as the previous one.
    pub coalesced_gaps: u64,
}

impl Counters {
    /// Total failed requests over all classes.
    pub fn failed_total(&self) -> u64 {
        self.failed.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Failed requests of one class.
    pub fn failed(&self, class: FailureClass) -> u64 {
        self.failed[class as usize]
    }

    fn merge(&mut self, o: &Counters) {
        self.succeeded = self.succeeded.saturating_add(o.succeeded);
        for (a, b) in self.failed.iter_mut().zip(o.failed) {
            *a = a.saturating_add(b);
        }
        self.incomplete = self.incomplete.saturating_add(o.incomplete);
        self.new_connections = self.new_connections.saturating_add(o.new_connections);
        self.reused_connections = self.reused_connections.saturating_add(o.reused_connections);
        self.coalesced_gaps = self.coalesced_gaps.saturating_add(o.coalesced_gaps);
    }
}

/// A worker's (or the run's) tally. Cheap to create: nothing is allocated until a sample
/// arrives.
#[derive(Clone, Debug)]
pub struct Recorder {
    latency: [LatencyHistogram; MetricKind::COUNT],
    output_tokens_per_s: ValueHistogram,
    input_tokens: ValueHistogram,
    output_tokens: ValueHistogram,
    totals: TokenTotals,
    input_sources: SourceCounts,
    output_sources: SourceCounts,
    counters: Counters,
    /// Σ decode time over requests with N_out ≥ 2, for the token-weighted TPOT.
    decode_ns: u128,
    /// Σ (N_out − 1) over the same requests.
    decode_gaps: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Recorder {
            latency: std::array::from_fn(|_| LatencyHistogram::new()),
            output_tokens_per_s: ValueHistogram::new(),
            input_tokens: ValueHistogram::new(),
            output_tokens: ValueHistogram::new(),
            totals: TokenTotals::default(),
            input_sources: SourceCounts::default(),
            output_sources: SourceCounts::default(),
            counters: Counters::default(),
            decode_ns: 0,
            decode_gaps: 0,
        }
    }

    /// Records one sample of `kind`. Only successful requests belong in the latency
    /// distributions; call it only for them.
    pub fn record(&mut self, kind: MetricKind, d: Duration) {
        self.latency[kind.index()].record(d);
    }

    /// Records `count` equal samples of `kind` (ITL's apportioned gaps).
    pub fn record_n(&mut self, kind: MetricKind, d: Duration, count: u64) {
        self.latency[kind.index()].record_n(d, count);
    }

    /// Records a request's decode phase: `Decode` always, and when `output_tokens ≥ 2` also
    /// `Tpot = decode ÷ (output_tokens − 1)` and the sums behind the token-weighted TPOT.
    /// Do not record `Decode` or `Tpot` by hand as well.
    pub fn record_decode(&mut self, decode: Duration, output_tokens: u64) {
        self.record(MetricKind::Decode, decode);
        if output_tokens >= 2 {
            let gaps = output_tokens - 1;
            let ns = decode.as_nanos();
            let tpot = u64::try_from(ns / u128::from(gaps)).unwrap_or(u64::MAX);
            self.record(MetricKind::Tpot, Duration::from_nanos(tpot));
            self.decode_ns = self.decode_ns.saturating_add(ns);
            self.decode_gaps = self.decode_gaps.saturating_add(gaps);
        }
    }

    /// Records a successful request's token counts: totals, provenance and the per-request
    /// `input_tokens` / `output_tokens` distributions.
    pub fn record_tokens(&mut self, t: &RequestTokens) {
        self.totals.add(&t.counts);
        self.input_sources.add(t.input_source);
        self.output_sources.add(t.output_source);
        self.input_tokens.record_count(t.counts.input);
        self.output_tokens.record_count(t.counts.output);
    }

    /// Records a request's output rate N_out ÷ E2E (tokens/s).
    pub fn record_output_rate(&mut self, tokens_per_s: f64) {
        self.output_tokens_per_s.record(tokens_per_s);
    }

    /// Counts a successful request.
    pub fn record_success(&mut self) {
        self.counters.succeeded = self.counters.succeeded.saturating_add(1);
    }

    /// Counts a failed request.
    pub fn record_failure(&mut self, class: FailureClass) {
        let slot = &mut self.counters.failed[class as usize];
        *slot = slot.saturating_add(1);
    }

    /// Counts a request cancelled because the run ended.
    pub fn record_incomplete(&mut self) {
        self.counters.incomplete = self.counters.incomplete.saturating_add(1);
    }

    /// Counts whether a request opened a new connection or reused one.
    pub fn record_connection(&mut self, reused: bool) {
        let slot = if reused {
            &mut self.counters.reused_connections
        } else {
            &mut self.counters.new_connections
        };
        *slot = slot.saturating_add(1);
    }

    /// Counts ICL gaps that were coalesced (same socket read as the previous event).
    pub fn record_coalesced_gaps(&mut self, n: u64) {
        self.counters.coalesced_gaps = self.counters.coalesced_gaps.saturating_add(n);
    }

    /// Adds everything `other` holds.
    pub fn merge(&mut self, other: &Recorder) {
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            a.merge(b);
        }
        self.output_tokens_per_s.merge(&other.output_tokens_per_s);
        self.input_tokens.merge(&other.input_tokens);
        self.output_tokens.merge(&other.output_tokens);
        self.totals.add(&other.totals);
        self.input_sources.merge(&other.input_sources);
        self.output_sources.merge(&other.output_sources);
        self.counters.merge(&other.counters);
        self.decode_ns = self.decode_ns.saturating_add(other.decode_ns);
        self.decode_gaps = self.decode_gaps.saturating_add(other.decode_gaps);
    }

    /// Moves the contents out, leaving this recorder empty: merge-and-reset for a worker
    /// that publishes at intervals.
    pub fn take(&mut self) -> Recorder {
        std::mem::take(self)
    }

    /// The distribution of one kind.
    pub fn histogram(&self, kind: MetricKind) -> &LatencyHistogram {
        &self.latency[kind.index()]
    }

    /// Per-request output rate N_out ÷ E2E, tokens/s.
    pub fn output_tokens_per_s(&self) -> &ValueHistogram {
        &self.output_tokens_per_s
    }

    /// Per-request input token counts.
    pub fn input_tokens(&self) -> &ValueHistogram {
        &self.input_tokens
    }

    /// Per-request output token counts.
    pub fn output_tokens(&self) -> &ValueHistogram {
        &self.output_tokens
    }

    /// Token totals over recorded requests.
    pub fn totals(&self) -> TokenTotals {
        self.totals
    }

    /// How many requests took their input count from each source.
    pub fn input_sources(&self) -> SourceCounts {
        self.input_sources
    }

    /// How many requests took their output count from each source.
    pub fn output_sources(&self) -> SourceCounts {
        self.output_sources
    }

    /// Outcome and connection counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Token-weighted TPOT = Σ decode time ÷ Σ (N_out − 1), `None` without a request of
    /// two or more output tokens.
    pub fn token_weighted_tpot(&self) -> Option<Duration> {
        if self.decode_gaps == 0 {
            return None;
        }
        let ns = self.decode_ns / u128::from(self.decode_gaps);
        Some(Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn names_and_keys_are_unique_and_consistent() {
        let mut names: Vec<&str> = MetricKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MetricKind::COUNT);
        for (i, k) in MetricKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i, "ALL must follow declaration order");
            assert_eq!(k.json_key(), format!("{}_ms", k.name()));
            assert_eq!(MetricKind::from_name(k.name()), Some(k));
        }
        assert_eq!(MetricKind::Ttft.json_key(), "ttft_ms");
        assert_eq!(MetricKind::from_name("nope"), None);
        for (i, c) in FailureClass::ALL.into_iter().enumerate() {
            assert_eq!(c as usize, i);
            assert_eq!(FailureClass::from_label(c.label()), Some(c));
        }
        let transport: Vec<&str> = FailureClass::ALL
            .into_iter()
            .filter(|c| c.is_transport())
            .map(FailureClass::label)
            .collect();
        assert_eq!(transport, ["connect", "tls", "reset", "timeout"]);
    }

    #[test]
    fn records_into_the_right_histogram() {
        let mut r = Recorder::new();
        r.record(MetricKind::Ttft, ms(100));
        r.record(MetricKind::E2e, ms(900));
        r.record_n(MetricKind::Itl, ms(10), 4);
        assert_eq!(r.histogram(MetricKind::Ttft).len(), 1);
        assert_eq!(r.histogram(MetricKind::Itl).len(), 4);
        assert!(r.histogram(MetricKind::Ttfc).is_empty());
        assert_eq!(r.histogram(MetricKind::E2e).summary().unwrap().max, ms(900));
    }

    #[test]
    fn decode_feeds_tpot_and_token_weighted_mean() {
        let mut r = Recorder::new();
        r.record_decode(ms(90), 10); // TPOT 10 ms over 9 gaps
        r.record_decode(ms(10), 2); // TPOT 10 ms over 1 gap
        r.record_decode(ms(0), 1); // TPOT undefined
        r.record_decode(ms(300), 4); // TPOT 100 ms over 3 gaps
        assert_eq!(r.histogram(MetricKind::Decode).len(), 4);
        let tpot = r.histogram(MetricKind::Tpot).summary().unwrap();
        assert_eq!(tpot.n, 3);
        assert_eq!(tpot.mean, ms(40)); // request-weighted: (10 + 10 + 100) / 3
        // Token-weighted: 400 ms / 13 gaps.
        assert_eq!(
            r.token_weighted_tpot(),
            Some(Duration::from_nanos(400_000_000 / 13))
        );
        assert_eq!(Recorder::new().token_weighted_tpot(), None);
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = Recorder::new();
        a.record(MetricKind::Ttft, ms(1));
        a.record_success();
        a.record_failure(FailureClass::RateLimited);
        a.record_connection(false);
        a.record_tokens(&RequestTokens {
            counts: TokenTotals {
                input: 100,
                output: 20,
                cached_input: 50,
                reasoning: 5,
            },
            input_source: TokenSource::Usage,
            output_source: TokenSource::Usage,
        });
        a.record_decode(ms(19), 20);
        let mut b = Recorder::new();
        b.record(MetricKind::Ttft, ms(3));
        b.record_success();
        b.record_incomplete();
        b.record_failure(FailureClass::RateLimited);
        b.record_failure(FailureClass::Reset);
        b.record_connection(true);
        b.record_coalesced_gaps(2);
        b.record_output_rate(50.0);
        b.record_tokens(&RequestTokens {
            counts: TokenTotals {
                input: 10,
                output: 7,
                cached_input: 0,
                reasoning: 0,
            },
            input_source: TokenSource::Tokenizer,
            output_source: TokenSource::Chunks,
        });
        b.record_decode(ms(1), 2);
        let mut w = b.clone();
        w.merge(&a);
        a.merge(&b);
        for r in [&a, &w] {
            assert_eq!(r.histogram(MetricKind::Ttft).summary().unwrap().mean, ms(2));
            let c = r.counters();
            assert_eq!(c.succeeded, 2);
            assert_eq!(c.failed(FailureClass::RateLimited), 2);
            assert_eq!(c.failed_total(), 3);
            assert_eq!(c.incomplete, 1);
            assert_eq!(
                (c.new_connections, c.reused_connections, c.coalesced_gaps),
                (1, 1, 2)
            );
            assert_eq!(
                r.totals(),
                TokenTotals {
                    input: 110,
                    output: 27,
                    cached_input: 50,
                    reasoning: 5
                }
            );
            assert_eq!(r.output_sources().get(TokenSource::Chunks), 1);
            assert_eq!(r.output_sources().get(TokenSource::Usage), 1);
            assert_eq!(r.input_sources().tokenizer, 1);
            assert_eq!(r.output_tokens().summary().unwrap().max, 20.0);
            assert_eq!(r.output_tokens_per_s().len(), 1);
            // (19 + 1) ms over (19 + 1) gaps.
            assert_eq!(r.token_weighted_tpot(), Some(ms(1)));
        }
    }

    #[test]
    fn take_leaves_an_empty_recorder() {
        let mut r = Recorder::new();
        r.record(MetricKind::E2e, ms(5));
        r.record_success();
        let taken = r.take();
        assert_eq!(taken.histogram(MetricKind::E2e).len(), 1);
        assert!(r.histogram(MetricKind::E2e).is_empty());
        assert_eq!(r.counters(), Counters::default());
    }

    #[test]
    fn source_labels() {
        let labels: Vec<&str> = TokenSource::ALL.iter().map(|s| s.label()).collect();
        assert_eq!(labels, ["usage", "tokenizer", "chunks"]);
    }
}
