//! Per-request metrics from a [`Ledger`], exactly as metrics.md §1.2–§1.3 define them. Pure:
//! the same ledger always gives the same numbers, so a run can be re-derived from stored
//! ledgers.
//!
//! Conventions worth knowing (each also on its field):
//! - Every latency is measured from `t_dispatch`; the `*_queue_inclusive` variants from
//!   `t_sched` (coordinated-omission correction).
//! - Token events are events of kind reasoning, content or tool; an event's time is the
//!   arrival of its first byte.
//! - Undefined is `None`, never 0: TTFT of a non-streamed response, TPOT with fewer than
//!   two output tokens or fewer than two token events.
//! - Output tokens come, in order of preference, from the server's usage, the client
//!   tokenizer (OpenAI-family models only), or the count of token events ("chunks").
//! - Tokens the server counts but never streamed (hidden reasoning of OpenAI o-series
//!   models: usage reports `reasoning_tokens` but no reasoning event arrived) are left out
//!   of TPOT, ITL apportioning and the tokenizer comparison, since they were generated
//!   before the first visible token.

use std::time::{Duration, Instant};

use tiktoken_rs::CoreBPE;

use crate::ledger::{EventKind, EventStamp, Ledger};

/// More apportioned ITL samples than this for one request means the token count is not
/// believable; the request then gets one sample per gap, like ICL.
const MAX_ITL_SAMPLES: u64 = 1_000_000;

/// Where a token count came from (metrics.md §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenSource {
    /// The server's usage report.
    Usage,
    /// The client tokenizer on the reconstructed text (or the request, for input).
    Tokenizer,
    /// The number of token-bearing events: chunks, not tokens.
    Chunks,
}

impl TokenSource {
    /// Short name for reports: `usage`, `tokenizer`, `chunks`.
    pub fn label(self) -> &'static str {
        match self {
            TokenSource::Usage => "usage",
            TokenSource::Tokenizer => "tokenizer",
            TokenSource::Chunks => "chunks",
        }
    }
}

/// The metrics of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMetrics {
    /// Time to first token of any kind (reasoning, content, tool); `None` when not
    /// streamed or no token arrived.
    pub ttft: Option<Duration>,
    /// Time to first content or tool-call token.
    pub ttfc: Option<Duration>,
    /// Time to the last token event.
    pub ttlt: Option<Duration>,
    /// Dispatch to `t_end` (terminal event, body end, or failure).
    pub e2e: Duration,
    /// Last token event minus first; `None` with fewer than two token events.
    pub decode: Option<Duration>,
    /// `decode / (N_out - 1)`; `None` when `N_out < 2`, with fewer than two token events,
    /// or when all tokens arrived at once (zero decode time).
    pub tpot: Option<Duration>,
    /// Inter-chunk latency: gaps between consecutive token events.
    pub icl: Vec<Duration>,
    /// How many [`RequestMetrics::icl`] gaps end in a coalesced event (same read as the
    /// previous event): those gaps measure the client's read batching, not the server.
    pub coalesced_gaps: usize,
    /// Token-apportioned inter-token latency: gap `i` contributes `tokens_i` samples of
    /// `gap_i / tokens_i`. `tokens_i` is the event's exact count when every token event has
    /// one; else the streamed output tokens `N` spread evenly over the `E` token events
    /// (event `j` gets `floor((j+1)N/E) - floor(jN/E)`, so the counts sum to `N`; a gap
    /// whose event gets 0 contributes nothing); else (chunk counts) one per event, making
    /// ITL equal to ICL.
    pub itl: Vec<Duration>,
    /// Output tokens and where the count came from.
    pub output_tokens: (u64, TokenSource),
    /// Input tokens: the server's usage, else the client estimate of the request.
    pub input_tokens: Option<(u64, TokenSource)>,
    /// The client tokenizer's count of the reconstructed text, for OpenAI-family models
    /// (o200k_base for gpt-4o, gpt-4.1, o1/o3/o4, gpt-5 and the simulator's `sim*` models;
    /// cl100k_base for gpt-4 and gpt-3.5); `None` for other families.
    pub tokenizer_output_tokens: Option<u64>,
    /// `(tokenizer - server) / server` when both counts exist (positive: the tokenizer
    /// counts more).
    pub count_mismatch: Option<f64>,
    /// Per-request output rate in tokens/s: `N_out / TTLT` when streamed, `N_out / E2E`
    /// when not (AIPerf's and LLMPerf's per-request output throughput use E2E; TTLT leaves
    /// out the trailing usage chunk and `[DONE]`).
    pub output_tps: Option<f64>,
    /// Whether the request opened a new connection.
    pub new_connection: bool,
    /// DNS + TCP + TLS; zero when the connection was reused; `None` without a connection.
    pub conn_setup: Option<Duration>,
    /// Dispatch to response headers.
    pub time_to_headers: Option<Duration>,
    /// Dispatch to the first body byte.
    pub time_to_first_byte: Option<Duration>,
    /// `t_dispatch - t_sched`.
    pub schedule_lag: Duration,
    /// TTFT from `t_sched` instead of `t_dispatch`.
    pub ttft_queue_inclusive: Option<Duration>,
    /// E2E from `t_sched`.
    pub e2e_queue_inclusive: Duration,
    /// Latency-equation network share: connection setup + one round trip (the
    /// connection's TCP connect time).
    pub network: Option<Duration>,
    /// The server's own queue time (`server-timing: queue;dur=`).
    pub server_queue: Option<Duration>,
    /// What remains of TTFT (E2E when not streamed) after network and server queue,
    /// saturating at zero: prefill plus whatever the server did not itemise.
    pub processing: Option<Duration>,
    /// Reasoning tokens as the server reported them (Anthropic reports none: 0).
    pub reasoning_tokens: Option<u64>,
    /// Cached input tokens as the server reported them.
    pub cached_input_tokens: Option<u64>,
    /// The response came from a cache.
    pub cache_hit: bool,
}

/// The tokenizer for a model family, if it is an OpenAI one.
pub fn tokenizer_for(model: &str) -> Option<&'static CoreBPE> {
    let name = model.trim().to_ascii_lowercase();
    // Routers prefix the vendor: `openai/gpt-4o`.
    let name = name.rsplit('/').next().unwrap_or(&name);
    const O200K: &[&str] = &[
        "gpt-4o",
        "chatgpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "o1",
        "o3",
        "o4",
        "gpt-oss",
        "sim",
    ];
    if O200K.iter().any(|p| name.starts_with(p)) {
        return Some(protocol::tokens::o200k());
    }
    if name.starts_with("gpt-4") || name.starts_with("gpt-3.5") {
        return Some(tiktoken_rs::cl100k_base_singleton());
    }
    None
}

fn since(from: Instant, to: Instant) -> Duration {
    to.saturating_duration_since(from)
}

/// Derives the metrics of one request. `model` chooses the tokenizer (see
/// [`tokenizer_for`]).
///
/// The one costly step is tokenizing the reconstructed text for OpenAI-family models
/// (roughly a millisecond per few thousand tokens): call it after a request, never while
/// a stream is being read.
pub fn derive(ledger: &Ledger, model: &str) -> RequestMetrics {
    derive_with(ledger, model, true)
}

/// [`derive()`], choosing whether to run the tokenizer when the server reported usage.
///
/// Without usage the tokenizer is the count (it always runs then); with usage it only
/// cross-checks the server (`count_mismatch`). That check costs far more CPU than the rest
/// of a request's bookkeeping, and on a loaded client CPU spent here delays the arrival
/// stamps of every other stream, so a load generator checks a sample of requests
/// (`check_with_tokenizer = false` for the others).
pub fn derive_with(ledger: &Ledger, model: &str, check_with_tokenizer: bool) -> RequestMetrics {
    let d = ledger.dispatched;
    let tokens: Vec<&EventStamp> = ledger.token_events().collect();
    let streamed = ledger.streamed;
    let first = tokens.first().filter(|_| streamed);
    let last = tokens.last().filter(|_| streamed);
    let ttft = first.map(|e| since(d, e.at));
    let ttfc = ledger
        .events
        .iter()
        .find(|e| e.kind.is_content())
        .filter(|_| streamed)
        .map(|e| since(d, e.at));
    let ttlt = last.map(|e| since(d, e.at));
    let e2e = since(d, ledger.end);
    let decode = match (first, last) {
        (Some(f), Some(l)) if tokens.len() >= 2 => Some(since(f.at, l.at)),
        _ => None,
    };

    // Token counts.
    let bpe = tokenizer_for(model).filter(|_| check_with_tokenizer || ledger.usage.is_none());
    let tokenizer_output_tokens = bpe.map(|b| {
        if ledger.text.is_empty() {
            0
        } else {
            u64::try_from(b.encode_ordinary(&ledger.text).len()).unwrap_or(u64::MAX)
        }
    });
    let chunk_count = if streamed {
        tokens.len() as u64
    } else {
        u64::from(!ledger.text.is_empty())
    };
    let output_tokens = match (ledger.usage, tokenizer_output_tokens) {
        (Some(u), _) => (u.output, TokenSource::Usage),
        (None, Some(n)) => (n, TokenSource::Tokenizer),
        (None, None) => (chunk_count, TokenSource::Chunks),
    };
    // A whole body cannot tell hidden reasoning from shown: only streams are adjusted.
    let reasoning_streamed = !streamed || tokens.iter().any(|e| e.kind == EventKind::Reasoning);
    let hidden = match ledger.usage {
        Some(u) if output_tokens.1 == TokenSource::Usage && !reasoning_streamed => {
            u.reasoning.min(u.output)
        }
        _ => 0,
    };
    // Output tokens that arrived as events (or in the body).
    let visible = output_tokens.0 - hidden;
    let count_mismatch = match (ledger.usage, tokenizer_output_tokens) {
        (Some(_), Some(tok)) if visible > 0 => Some((tok as f64 - visible as f64) / visible as f64),
        _ => None,
    };

    let tpot = match decode {
        Some(dec) if visible >= 2 && !dec.is_zero() => {
            let nanos = dec.as_nanos() / u128::from(visible - 1);
            Some(Duration::from_nanos(
                u64::try_from(nanos).unwrap_or(u64::MAX),
            ))
        }
        _ => None,
    };

    let mut icl = Vec::with_capacity(tokens.len().saturating_sub(1));
    let mut coalesced_gaps = 0;
    for pair in tokens.windows(2) {
        icl.push(since(pair[0].at, pair[1].at));
        coalesced_gaps += usize::from(pair[1].coalesced);
    }
    let itl = if streamed {
        apportioned_itl(&tokens, &icl, visible, output_tokens.1)
    } else {
        Vec::new()
    };

    let output_tps = {
        let denominator = if streamed { ttlt } else { Some(e2e) };
        denominator
            .filter(|t| !t.is_zero())
            .map(|t| output_tokens.0 as f64 / t.as_secs_f64())
    };

    let input_tokens = ledger
        .usage
        .map(|u| (u.input, TokenSource::Usage))
        .or_else(|| ledger.input_estimate.map(|n| (n, TokenSource::Tokenizer)));

    let conn_setup = ledger.connected.map(|_| ledger.conn.setup());
    let network = match (conn_setup, ledger.conn.rtt_estimate) {
        (Some(setup), Some(rtt)) => Some(setup + rtt),
        _ => None,
    };
    let processing_base = if streamed { ttft } else { Some(e2e) };
    let processing = processing_base.map(|base| {
        base.saturating_sub(network.unwrap_or_default())
            .saturating_sub(ledger.server_queue.unwrap_or_default())
    });

    RequestMetrics {
        ttft,
        ttfc,
        ttlt,
        e2e,
        decode,
        tpot,
        icl,
        coalesced_gaps,
        itl,
        output_tokens,
        input_tokens,
        tokenizer_output_tokens,
        count_mismatch,
        output_tps,
        new_connection: ledger.connected.is_some() && !ledger.conn.reused,
        conn_setup,
        time_to_headers: ledger.headers_at.map(|t| since(d, t)),
        time_to_first_byte: ledger.first_byte.map(|t| since(d, t)),
        schedule_lag: since(ledger.intended, d),
        ttft_queue_inclusive: first.map(|e| since(ledger.intended, e.at)),
        e2e_queue_inclusive: since(ledger.intended, ledger.end),
        network,
        server_queue: ledger.server_queue,
        processing,
        reasoning_tokens: ledger.usage.map(|u| u.reasoning),
        cached_input_tokens: ledger.usage.map(|u| u.cached_input),
        cache_hit: ledger.cache_hit,
    }
}

/// ITL samples: each gap split into as many samples as its closing event has tokens.
fn apportioned_itl(
    events: &[&EventStamp],
    gaps: &[Duration],
    visible: u64,
    source: TokenSource,
) -> Vec<Duration> {
    let e = events.len() as u64;
    let exact: Option<Vec<u64>> = events.iter().map(|ev| ev.tokens.map(u64::from)).collect();
    let per_event: Vec<u64> = match exact {
        Some(counts) if counts.iter().sum::<u64>() <= MAX_ITL_SAMPLES => counts,
        _ if source != TokenSource::Chunks && e > 0 && visible <= MAX_ITL_SAMPLES => (0..e)
            .map(|j| (j + 1) * visible / e - j * visible / e)
            .collect(),
        _ => vec![1; events.len()],
    };
    let mut itl =
        Vec::with_capacity(usize::try_from(per_event.iter().skip(1).sum::<u64>()).unwrap_or(0));
    for (gap, &k) in gaps.iter().zip(per_event.iter().skip(1)) {
        if k == 0 {
            continue;
        }
        let sample =
            Duration::from_nanos(u64::try_from(gap.as_nanos() / u128::from(k)).unwrap_or(u64::MAX));
        itl.extend(std::iter::repeat_n(sample, usize::try_from(k).unwrap_or(0)));
    }
    itl
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{ConnTiming, UsageCounts};
    use crate::target::Api;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A streamed ledger with events at the given offsets (ms after dispatch).
    fn ledger(events: &[(u64, EventKind, Option<u32>, bool)]) -> Ledger {
        let t0 = Instant::now();
        let mut l = Ledger::new(Api::OpenAi, t0, t0 + ms(5));
        let d = l.dispatched;
        l.streamed = true;
        l.connected = Some(d + ms(1));
        l.conn = ConnTiming {
            reused: false,
            dns: None,
            tcp: Some(ms(1)),
            tls: None,
            rtt_estimate: Some(ms(1)),
        };
        l.headers_at = Some(d + ms(2));
        l.first_byte = Some(d + ms(2));
        for &(at, kind, tokens, coalesced) in events {
            l.events.push(EventStamp {
                at: d + ms(at),
                done_at: d + ms(at),
                kind,
                tokens,
                coalesced,
            });
        }
        l.end = d + ms(events.last().map_or(0, |e| e.0) + 1);
        l
    }

    fn usage(output: u64) -> UsageCounts {
        UsageCounts {
            input: 10,
            output,
            ..UsageCounts::default()
        }
    }

    #[test]
    fn role_chunk_is_not_a_token_and_anchors_are_from_dispatch() {
        let mut l = ledger(&[
            (2, EventKind::Structural, None, false),
            (50, EventKind::Content, None, false),
            (60, EventKind::Content, None, false),
            (70, EventKind::Content, None, false),
            (71, EventKind::Usage, None, false),
            (71, EventKind::Done, None, true),
        ]);
        l.usage = Some(usage(3));
        l.server_queue = Some(ms(4));
        let m = derive(&l, "some-model");
        assert_eq!(m.ttft, Some(ms(50)));
        assert_eq!(m.ttfc, Some(ms(50)));
        assert_eq!(m.ttlt, Some(ms(70)));
        assert_eq!(m.e2e, ms(72));
        assert_eq!(m.decode, Some(ms(20)));
        assert_eq!(m.tpot, Some(ms(10)));
        assert_eq!(m.icl, vec![ms(10), ms(10)]);
        assert_eq!(m.itl, vec![ms(10), ms(10)]);
        assert_eq!(m.output_tokens, (3, TokenSource::Usage));
        assert_eq!(m.input_tokens, Some((10, TokenSource::Usage)));
        assert_eq!(m.tokenizer_output_tokens, None);
        assert_eq!(m.schedule_lag, ms(5));
        assert_eq!(m.ttft_queue_inclusive, Some(ms(55)));
        assert_eq!(m.e2e_queue_inclusive, ms(77));
        assert_eq!(m.conn_setup, Some(ms(1)));
        assert_eq!(m.network, Some(ms(2)));
        assert_eq!(m.processing, Some(ms(44)));
        assert!(m.new_connection);
        assert_eq!(m.time_to_headers, Some(ms(2)));
        let tps = m.output_tps.unwrap();
        assert!((tps - 3.0 / 0.070).abs() < 1e-9);
    }

    #[test]
    fn tpot_is_undefined_for_zero_and_one_token() {
        let mut l = ledger(&[(2, EventKind::Structural, None, false)]);
        l.usage = Some(usage(0));
        let m = derive(&l, "m");
        assert_eq!((m.ttft, m.tpot, m.decode), (None, None, None));
        assert!(m.icl.is_empty() && m.itl.is_empty());

        let mut l = ledger(&[(30, EventKind::Content, None, false)]);
        l.usage = Some(usage(1));
        let m = derive(&l, "m");
        assert_eq!(m.ttft, Some(ms(30)));
        assert_eq!(m.tpot, None);
        assert_eq!(m.decode, None);

        // Many tokens in one event: no decode span, so no TPOT (never 0).
        let mut l = ledger(&[(30, EventKind::Content, None, false)]);
        l.usage = Some(usage(8));
        assert_eq!(derive(&l, "m").tpot, None);
    }

    #[test]
    fn reasoning_counts_for_ttft_but_not_ttfc() {
        let l = ledger(&[
            (10, EventKind::Reasoning, None, false),
            (20, EventKind::Reasoning, None, false),
            (40, EventKind::Tool, None, false),
        ]);
        let m = derive(&l, "m");
        assert_eq!(m.ttft, Some(ms(10)));
        assert_eq!(m.ttfc, Some(ms(40)));
        assert_eq!(m.output_tokens, (3, TokenSource::Chunks));
    }

    #[test]
    fn apportioned_itl_from_usage_and_from_exact_counts() {
        // 3 events carrying 12 tokens (4 each by even split): gaps of 40 ms -> 4 x 10 ms.
        let mut l = ledger(&[
            (10, EventKind::Content, None, false),
            (50, EventKind::Content, None, false),
            (90, EventKind::Content, None, false),
        ]);
        l.usage = Some(usage(12));
        let m = derive(&l, "m");
        assert_eq!(m.icl, vec![ms(40), ms(40)]);
        assert_eq!(m.itl, vec![ms(10); 8]);
        assert_eq!(m.tpot, Some(Duration::from_nanos(80_000_000 / 11)));

        // Exact per-event counts win over the even split.
        let l = ledger(&[
            (10, EventKind::Content, Some(1), false),
            (30, EventKind::Content, Some(2), false),
            (60, EventKind::Content, Some(3), false),
        ]);
        let m = derive(&l, "m");
        assert_eq!(m.itl, vec![ms(10), ms(10), ms(10), ms(10), ms(10)]);

        // Fewer tokens than events: some events get 0 and their gap adds no sample.
        let mut l = ledger(&[
            (10, EventKind::Content, None, false),
            (20, EventKind::Content, None, false),
            (40, EventKind::Content, None, false),
            (80, EventKind::Content, None, false),
        ]);
        l.usage = Some(usage(2));
        let m = derive(&l, "m");
        assert_eq!(m.icl.len(), 3);
        // 2 over 4 events: 0, 1, 0, 1.
        assert_eq!(m.itl, vec![ms(10), ms(40)]);
    }

    #[test]
    fn coalesced_gaps_are_counted() {
        let l = ledger(&[
            (10, EventKind::Content, None, false),
            (10, EventKind::Content, None, true),
            (20, EventKind::Content, None, false),
        ]);
        let m = derive(&l, "m");
        assert_eq!(m.icl, vec![Duration::ZERO, ms(10)]);
        assert_eq!(m.coalesced_gaps, 1);
        // Chunk counting: one ITL sample per gap, identical to ICL.
        assert_eq!(m.itl, m.icl);
        assert_eq!(m.output_tokens, (3, TokenSource::Chunks));
    }

    #[test]
    fn token_source_preference() {
        let mut l = ledger(&[
            (10, EventKind::Content, None, false),
            (20, EventKind::Content, None, false),
        ]);
        l.text = "Hello there, world".into();
        // OpenAI family without usage: the tokenizer.
        let m = derive(&l, "gpt-4o-mini");
        let n = m.tokenizer_output_tokens.unwrap();
        assert!(n > 0);
        assert_eq!(m.output_tokens, (n, TokenSource::Tokenizer));
        assert_eq!(m.count_mismatch, None);
        // Unknown family: chunks.
        let m = derive(&l, "claude-sonnet-4");
        assert_eq!(m.tokenizer_output_tokens, None);
        assert_eq!(m.output_tokens, (2, TokenSource::Chunks));
        // Usage beats both, and the mismatch is reported.
        l.usage = Some(usage(n * 2));
        let m = derive(&l, "gpt-4o");
        assert_eq!(m.output_tokens, (n * 2, TokenSource::Usage));
        assert_eq!(m.count_mismatch, Some(-0.5));
    }

    #[test]
    fn hidden_reasoning_is_left_out_of_tpot() {
        let mut l = ledger(&[
            (100, EventKind::Content, None, false),
            (110, EventKind::Content, None, false),
            (120, EventKind::Content, None, false),
        ]);
        l.usage = Some(UsageCounts {
            output: 103,
            reasoning: 100,
            ..UsageCounts::default()
        });
        let m = derive(&l, "o3-mini");
        assert_eq!(m.output_tokens, (103, TokenSource::Usage));
        assert_eq!(m.tpot, Some(ms(10)));
        assert_eq!(m.itl, vec![ms(10), ms(10)]);
        assert_eq!(m.reasoning_tokens, Some(100));
    }

    #[test]
    fn non_streamed_has_no_ttft_and_uses_e2e() {
        let t0 = Instant::now();
        let mut l = Ledger::new(Api::Anthropic, t0, t0);
        l.connected = Some(t0);
        l.conn.reused = true;
        l.conn.rtt_estimate = Some(ms(1));
        l.end = t0 + ms(200);
        l.text = "Hi".into();
        l.usage = Some(usage(20));
        let m = derive(&l, "claude-x");
        assert_eq!((m.ttft, m.ttfc, m.ttlt, m.tpot), (None, None, None, None));
        assert!(m.itl.is_empty());
        assert_eq!(m.conn_setup, Some(Duration::ZERO));
        assert!(!m.new_connection);
        assert_eq!(m.processing, Some(ms(199)));
        assert!((m.output_tps.unwrap() - 100.0).abs() < 1e-9);
        // No usage, no tokenizer: one chunk (the body).
        l.usage = None;
        assert_eq!(
            derive(&l, "claude-x").output_tokens,
            (1, TokenSource::Chunks)
        );
    }

    #[test]
    fn tokenizer_families() {
        let o200k = protocol::tokens::o200k() as *const CoreBPE;
        for m in [
            "gpt-4o-mini",
            "openai/gpt-4.1",
            "o3-mini",
            "gpt-5",
            "sim:ttft=1ms",
            "O1",
        ] {
            assert_eq!(
                tokenizer_for(m).map(|b| b as *const CoreBPE),
                Some(o200k),
                "{m}"
            );
        }
        for m in ["gpt-4", "gpt-4-turbo", "gpt-3.5-turbo"] {
            let b = tokenizer_for(m).unwrap() as *const CoreBPE;
            assert_ne!(b, o200k, "{m}");
        }
        for m in ["claude-3-5-haiku", "llama-3.1-8b", "mistral"] {
            assert!(tokenizer_for(m).is_none(), "{m}");
        }
    }
}
