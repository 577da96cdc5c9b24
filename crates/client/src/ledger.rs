//! The per-request event ledger of metrics.md §1.1: every stamp taken while one request ran,
//! on the monotonic clock, plus what the response said about itself (status, rate limits,
//! server queue time, usage, text). Plain data: [`crate::Client::send`] fills it in,
//! [`crate::derive()`] turns it into metrics, and the bench engine stores or aggregates it.
//!
//! Stamps are taken when bytes are read, before any JSON parsing; an event's kind is
//! decided after its stamps.

use std::time::{Duration, Instant};

use crate::error::ErrorClass;
use crate::target::Api;

/// The ledger of one request.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// The API dialect of the target.
    pub api: Api,
    /// `t_sched`: the intended send time (open loop), or when the slot became free
    /// (closed loop). Given by the caller.
    pub intended: Instant,
    /// `t_dispatch`: when [`crate::Client::send`] started on the request.
    pub dispatched: Instant,
    /// How the connection was obtained.
    pub conn: ConnTiming,
    /// `t_conn`: a connection was ready (pooled or new).
    pub connected: Option<Instant>,
    /// `t_sent`: the last write of the request to the socket completed.
    pub request_written: Option<Instant>,
    /// `t_headers`: the status line and headers had arrived.
    pub headers_at: Option<Instant>,
    /// `t_first_byte`: the first body byte arrived.
    pub first_byte: Option<Instant>,
    /// Whether the response was an SSE stream (`text/event-stream`). False for non-streamed
    /// requests and for servers that answered a streaming request with plain JSON.
    pub streamed: bool,
    /// Every SSE event, in arrival order.
    pub events: Vec<EventStamp>,
    /// `t_end`: the terminal event (`[DONE]`, `message_stop`) arrived, or the body ended or
    /// failed, or the request failed before a body.
    pub end: Instant,
    /// The HTTP status, when headers arrived.
    pub status: Option<u16>,
    /// Rate-limit and retry headers of the response.
    pub rate_limits: RateLimitSnapshot,
    /// `server-timing: queue;dur=MS`: how long the server says the request queued.
    pub server_queue: Option<Duration>,
    /// `x-tokenpace-cache: hit`, or the provider reported cached prompt tokens.
    pub cache_hit: bool,
    /// The provider's request id (`x-request-id` or `request-id`), for support tickets.
    pub request_id: Option<String>,
    /// Token usage as the server reported it, normalised across providers.
    pub usage: Option<UsageCounts>,
    /// The client-side input-token estimate of the request (see
    /// [`crate::PreparedRequest::input_estimate`]).
    pub input_estimate: Option<u64>,
    /// The generated text as reconstructed from the deltas or the body: reasoning, visible
    /// text and tool-call arguments in arrival order, for tokenizer counting.
    pub text: String,
    /// Success with its finish reason, or the error class.
    pub outcome: Result<Completion, ErrorClass>,
}

impl Ledger {
    /// An empty ledger: no connection, no response, no events, `end` = `dispatched`, and a
    /// successful outcome without finish reason. [`crate::Client::send`] starts from this;
    /// tests and replays fill it in by hand.
    pub fn new(api: Api, intended: Instant, dispatched: Instant) -> Ledger {
        Ledger {
            api,
            intended,
            dispatched,
            conn: ConnTiming::default(),
            connected: None,
            request_written: None,
            headers_at: None,
            first_byte: None,
            streamed: false,
            events: Vec::new(),
            end: dispatched,
            status: None,
            rate_limits: RateLimitSnapshot::default(),
            server_queue: None,
            cache_hit: false,
            request_id: None,
            usage: None,
            input_estimate: None,
            text: String::new(),
            outcome: Ok(Completion::default()),
        }
    }

    /// Whether the request succeeded.
    pub fn is_success(&self) -> bool {
        self.outcome.is_ok()
    }

    /// The events that carry generated tokens (reasoning, content, tool calls).
    pub fn token_events(&self) -> impl Iterator<Item = &EventStamp> {
        self.events.iter().filter(|e| e.kind.is_token())
    }
}

/// How the connection of a request was obtained (metrics.md §1.1 `t_conn` sub-spans).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnTiming {
    /// Taken from the pool (or opened by [`crate::Client::prewarm`]).
    pub reused: bool,
    /// Name resolution; `None` when reused or the host is an IP address.
    pub dns: Option<Duration>,
    /// TCP connect (SYN to SYN-ACK); `None` when reused.
    pub tcp: Option<Duration>,
    /// TLS handshake; `None` when reused or plain HTTP.
    pub tls: Option<Duration>,
    /// The TCP connect time of the connection, about one network round trip. Kept with
    /// pooled connections, so reused ones report it too.
    pub rtt_estimate: Option<Duration>,
}

impl ConnTiming {
    /// `dns + tcp + tls` (zero when reused).
    pub fn setup(&self) -> Duration {
        if self.reused {
            return Duration::ZERO;
        }
        self.dns.unwrap_or_default() + self.tcp.unwrap_or_default() + self.tls.unwrap_or_default()
    }
}

/// What an SSE event is, decided after its stamps were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Carries no token: OpenAI's role chunk and finish chunk, Anthropic's `message_start`,
    /// `content_block_start`/`stop`, signature deltas.
    Structural,
    /// Reasoning tokens (`reasoning_content`, `reasoning`, Anthropic `thinking_delta`).
    Reasoning,
    /// Visible text (`content`, `refusal`, legacy `text`, Anthropic `text_delta`).
    Content,
    /// Tool-call fragments (OpenAI `tool_calls`, Anthropic `input_json_delta`).
    Tool,
    /// Usage only: OpenAI's `choices: []` usage chunk, Anthropic's `message_delta`.
    Usage,
    /// Anthropic `ping`.
    Ping,
    /// An in-stream error.
    Error,
    /// The terminal event: `data: [DONE]` or `message_stop`.
    Done,
    /// Anything else (unknown event types, undecodable payloads), ignored.
    Other,
}

impl EventKind {
    /// Whether events of this kind carry generated tokens (reasoning, content, tool).
    pub fn is_token(self) -> bool {
        matches!(
            self,
            EventKind::Reasoning | EventKind::Content | EventKind::Tool
        )
    }

    /// Whether this kind counts for time to first content (content or tool).
    pub fn is_content(self) -> bool {
        matches!(self, EventKind::Content | EventKind::Tool)
    }

    /// Short snake_case name.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::Structural => "structural",
            EventKind::Reasoning => "reasoning",
            EventKind::Content => "content",
            EventKind::Tool => "tool",
            EventKind::Usage => "usage",
            EventKind::Ping => "ping",
            EventKind::Error => "error",
            EventKind::Done => "done",
            EventKind::Other => "other",
        }
    }
}

/// One SSE event of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventStamp {
    /// Arrival of the event's first byte (AIPerf's convention).
    pub at: Instant,
    /// Arrival of the blank line that ends the event.
    pub done_at: Instant,
    /// What the event is.
    pub kind: EventKind,
    /// Tokens in this event, when the server says exactly (vLLM `continuous_usage_stats`);
    /// `None` otherwise.
    pub tokens: Option<u32>,
    /// The event arrived in the same read as the previous event: its gap measures the
    /// client's read batching, not the server.
    pub coalesced: bool,
}

/// How a successful request ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// `finish_reason` (OpenAI) or `stop_reason` (Anthropic), when given.
    pub finish_reason: Option<String>,
}

/// Token usage normalised across providers (metrics.md §1.3, api-formats §7).
///
/// `input` is always the **total** input: OpenAI's `prompt_tokens` (which already includes
/// cached tokens), or Anthropic's `input_tokens + cache_creation_input_tokens +
/// cache_read_input_tokens`. `cached_input` and `cache_write` are parts of it, so the
/// uncached remainder is `input - cached_input - cache_write` for Anthropic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    /// Total input tokens, cached ones included.
    pub input: u64,
    /// Output tokens, reasoning included.
    pub output: u64,
    /// Input tokens read from the prompt cache (OpenAI `cached_tokens`, Anthropic
    /// `cache_read_input_tokens`).
    pub cached_input: u64,
    /// Input tokens written to the prompt cache (Anthropic `cache_creation_input_tokens`,
    /// OpenAI-compatible `cache_write_tokens`).
    pub cache_write: u64,
    /// Reasoning tokens among the output (OpenAI `reasoning_tokens`; Anthropic does not
    /// break them out, so 0 there).
    pub reasoning: u64,
}

/// Rate-limit and retry headers of one response (api-formats §2.1, §4.6).
///
/// OpenAI resets are Go durations; Anthropic resets are RFC 3339 timestamps, converted here
/// to the time left from when the response arrived (the one place wall-clock time is read,
/// to interpret the provider's clock, never to measure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitSnapshot {
    /// Requests allowed in the window.
    pub requests_limit: Option<u64>,
    /// Requests left.
    pub requests_remaining: Option<u64>,
    /// Time until the request budget is fully refilled.
    pub requests_reset: Option<Duration>,
    /// Tokens allowed in the window (Anthropic: the most restrictive combined limit).
    pub tokens_limit: Option<u64>,
    /// Tokens left.
    pub tokens_remaining: Option<u64>,
    /// Time until the token budget is fully refilled.
    pub tokens_reset: Option<Duration>,
    /// Anthropic input-token (ITPM) limit.
    pub input_tokens_limit: Option<u64>,
    /// Anthropic input tokens left.
    pub input_tokens_remaining: Option<u64>,
    /// Time until the input-token bucket is full.
    pub input_tokens_reset: Option<Duration>,
    /// Anthropic output-token (OTPM) limit.
    pub output_tokens_limit: Option<u64>,
    /// Anthropic output tokens left.
    pub output_tokens_remaining: Option<u64>,
    /// Time until the output-token bucket is full.
    pub output_tokens_reset: Option<Duration>,
    /// `retry-after-ms`, else `retry-after` (seconds).
    pub retry_after: Option<Duration>,
}

impl RateLimitSnapshot {
    /// Whether the response carried none of these headers.
    pub fn is_empty(&self) -> bool {
        *self == RateLimitSnapshot::default()
    }
}
