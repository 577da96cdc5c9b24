//! One upstream call from start to end, run in its own task: admission against the tier
//! limits, attempts with the one retry policy, fallbacks to the route's other targets,
//! hedging, calibration from the upstream's rate-limit headers, then the relay of the
//! winning response into the [`Flight`], the cache write and the settlement of what was
//! reserved.
//!
//! An attempt runs up to its commit point — the first SSE event of a stream, or the whole
//! body otherwise — before anything is published to the subscribers, so a failure before
//! that point (a 429, a 5xx, a reset, a TTFT timeout) can still be retried or fall back to
//! another target; after it, a failure is an error event (STYLE habit 10).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{Api, Endpoint, ErrorClass, ForwardBody, ForwardRequest};
use http::{HeaderMap, Method, StatusCode};
use protocol::sse::{SseDecoder, SseEvent};
use serde_json::Value;

use crate::admission::ledger::never_fits;
use crate::admission::queue::{AdmitRequest, Priority, Rejected};
use crate::admission::{Charge, Lane, Limits, Observed, Reservation};
use crate::cache::entry::{Body, Entry, RecordedEvent};
use crate::cache::key::CacheKey;
use crate::cache::shape::{self, EventClass};
use crate::config::{HedgeAfter, HedgeConfig};
use crate::dispatcher::{Dispatcher, is_sse, now_unix_ms, passed_header};
use crate::error::{DispatchError, ErrorKind};
use crate::flight::{Flight, Head};
use crate::kind::Kind;
use crate::retry::{Jitter, retryable_error, retryable_status};

/// The largest non-streamed upstream body relayed.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;
/// The largest error body read from a failed attempt.
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// One target of the call, ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) upstream: usize,
    pub(crate) name: Arc<str>,
    pub(crate) model: String,
    pub(crate) endpoint: Endpoint,
    pub(crate) timeout: Duration,
    pub(crate) ttft_timeout: Option<Duration>,
    pub(crate) lane: Lane,
    pub(crate) output_estimate: u64,
}

impl Prepared {
    fn key(&self) -> String {
        format!("{}/{}", self.name, self.model)
    }
}

/// Everything the task needs.
pub(crate) struct Job {
    pub(crate) dispatcher: Dispatcher,
    pub(crate) flight: Arc<Flight>,
    /// The coalescing map entry to remove at the end.
    pub(crate) key: Option<CacheKey>,
    /// Where to write the response, when it may be cached.
    pub(crate) write: Option<CacheKey>,
    pub(crate) kind: Kind,
    pub(crate) stream: bool,
    /// The request body as the client sent it (the model is replaced per target).
    pub(crate) body: Value,
    pub(crate) headers: HeaderMap,
    /// Targets in the order to try them.
    pub(crate) targets: Vec<Prepared>,
    pub(crate) route: String,
    pub(crate) hedge: Option<HedgeConfig>,
    pub(crate) tenant: String,
    pub(crate) priority: Priority,
    pub(crate) queue_deadline: Instant,
}

/// An attempt that reached its commit point. Built once per call and moved once, so the
/// size difference between the variants costs nothing worth a box.
#[expect(clippy::large_enum_variant, reason = "one per call, moved once")]
enum Ready {
    /// A stream whose first events arrived.
    Stream {
        body: ForwardBody,
        decoder: SseDecoder,
        first: Vec<SseEvent>,
        first_at: Duration,
    },
    /// A whole body (success, or an error not worth retrying).
    Body(Bytes),
}

/// The attempt that won.
struct Won {
    ready: Ready,
    head: Head,
    target: usize,
    reservation: Option<Reservation>,
}

/// Why an attempt did not reach its commit point.
enum Failure {
    /// Admission refused it (queue deadline, queue full, or too large for the tier).
    Admission(DispatchError),
    /// The upstream answered with a retryable status.
    Status {
        head: Head,
        body: Bytes,
        retry_after: Option<Duration>,
    },
    /// Below HTTP, or a TTFT timeout.
    Transport {
        error: DispatchError,
        retryable: bool,
    },
    /// Every client left.
    Cancelled,
}

impl Failure {
    fn retryable(&self) -> bool {
        match self {
            Failure::Admission(_) | Failure::Cancelled => false,
            Failure::Status { head, .. } => retryable_status(head.status.as_u16()),
            Failure::Transport { retryable, .. } => *retryable,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Failure::Admission(_) => "admission",
            Failure::Status { head, .. } if head.status == StatusCode::TOO_MANY_REQUESTS => "429",
            Failure::Status { .. } => "5xx",
            Failure::Transport { .. } => "transport",
            Failure::Cancelled => "cancelled",
        }
    }
}

/// Appends decoded events to the flight; returns whether a terminal and an error event
/// were among them.
fn record(
    kind: Kind,
    s: &mut crate::flight::State,
    events: &mut Vec<SseEvent>,
    at: Duration,
) -> (bool, bool) {
    let (mut terminal, mut errored) = (false, false);
    for ev in events.drain(..) {
        let bytes = ev.encode();
        let class = shape::classify(kind, &bytes);
        match class {
            EventClass::Terminal => terminal = true,
            EventClass::Error => errored = true,
            _ => {}
        }
        s.events.push(RecordedEvent { at, data: bytes });
        s.classes.push(class);
    }
    (terminal, errored)
}

/// Whether `ev` commits a stream to its upstream: it carries output (a token, a tool call,
/// a finish) or ends or breaks the stream. Preamble events — OpenAI's role-only first chunk,
/// Anthropic's `message_start`, `content_block_start` and `ping` — arrive before the first
/// token on real providers, so committing on them would make a slow first token impossible
/// to fail over from.
fn commits(kind: Kind, ev: &SseEvent) -> bool {
    let data = ev.data.trim();
    if data == "[DONE]" {
        return true;
    }
    if kind == Kind::Messages {
        return !matches!(
            ev.event.as_deref(),
            Some("message_start" | "content_block_start" | "ping")
        );
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return true;
    };
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return true;
    }
    let Some(choices) = v.get("choices").and_then(Value::as_array) else {
        return true;
    };
    if choices.is_empty() {
        return true; // the usage chunk
    }
    let non_empty = |x: Option<&Value>| match x {
        Some(Value::String(t)) => !t.is_empty(),
        Some(Value::Null) | None => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    };
    choices.iter().any(|c| {
        non_empty(c.get("finish_reason"))
            || non_empty(c.get("text"))
            || c.get("delta").is_some_and(|d| {
                non_empty(d.get("content"))
                    || non_empty(d.get("reasoning_content"))
                    || non_empty(d.get("reasoning"))
                    || non_empty(d.get("refusal"))
                    || non_empty(d.get("tool_calls"))
                    || non_empty(d.get("function_call"))
            })
    })
}

/// A margin added to the provider's window: a request admitted the instant an old one
/// leaves the gateway's window can still reach the provider a little sooner after that
/// old one than it left the gateway (network jitter), and land inside the provider's
/// window. 2% of the window, at most 250 ms: under 0.5% of a minute's capacity.
fn window_guard(window: Duration) -> Duration {
    (window / 50).min(Duration::from_millis(250))
}

fn cancelled() -> DispatchError {
    DispatchError::new(ErrorKind::Unavailable, "the request was cancelled")
}

/// The output tokens a request may produce: its cap times its number of choices, or the
/// configured estimate when it sets no cap.
fn output_reserve(kind: Kind, body: &Value, estimate: u64) -> u64 {
    let cap = match kind {
        Kind::Chat => body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64),
        Kind::Completions | Kind::Messages => body.get("max_tokens").and_then(Value::as_u64),
    };
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    cap.unwrap_or(estimate).saturating_mul(n)
}

/// Input tokens of a request: counted with o200k (the tokenizer of OpenAI's current
/// models and the simulator); for other models it is an estimate, documented as such.
fn input_tokens(kind: Kind, body: &Value) -> u64 {
    use protocol::tokens;
    let parsed = match kind {
        Kind::Chat => serde_json::from_value(body.clone())
            .ok()
            .map(|r| tokens::count_chat_input(&r)),
        Kind::Completions => serde_json::from_value(body.clone())
            .ok()
            .map(|r| tokens::count_completion_input(&r)),
        Kind::Messages => serde_json::from_value(body.clone())
            .ok()
            .map(|r| tokens::count_messages_input(&r)),
    };
    // A body the typed parser rejects is still counted: its text, roughly.
    parsed.unwrap_or_else(|| tokens::count_text(&body.to_string()))
}

impl Job {
    fn telemetry(&self) -> &crate::telemetry::Telemetry {
        self.dispatcher.telemetry()
    }

    /// The body for `target`: its model name, and for OpenAI streams always the usage
    /// chunk (so a cached stream can answer a non-streamed request with usage, and the
    /// settlement knows the actual output); it is dropped again for clients that did not
    /// ask.
    fn body_for(&self, target: &Prepared) -> Bytes {
        let mut body = self.body.clone();
        if let Some(obj) = body.as_object_mut() {
            obj.insert("model".into(), Value::String(target.model.clone()));
            if self.stream && self.kind.api() == Api::OpenAi {
                let opts = obj
                    .entry("stream_options")
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if let Some(o) = opts.as_object_mut() {
                    o.insert("include_usage".into(), Value::Bool(true));
                } else {
                    *opts = serde_json::json!({"include_usage": true});
                }
            }
        }
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    pub(crate) async fn run(self) {
        let started = Instant::now();
        let mut jitter = Jitter::new(Arc::as_ptr(&self.flight) as usize as u64);
        let policy = self.dispatcher.config().retry;
        let n = self.targets.len();
        let mut i = 0usize;
        let mut attempt = 0u32;
        let mut queued_total = Duration::ZERO;
        let won = loop {
            if self.flight.cancel.is_cancelled() {
                self.fail(Failure::Cancelled);
                return;
            }
            let (result, queued) = match self.hedge {
                Some(h) if attempt == 0 && n > 1 => self.hedged(i, h).await,
                _ => self.try_target(i).await,
            };
            queued_total += queued;
            match result {
                Ok(w) => break w,
                Err(f) => {
                    if !f.retryable() {
                        self.fail(f);
                        return;
                    }
                    attempt += 1;
                    let Some(wait) =
                        policy.backoff(attempt, started.elapsed(), f.retry_after(), &mut jitter)
                    else {
                        self.fail(f);
                        return;
                    };
                    let failed = self.targets[i].name.clone();
                    self.telemetry().inc(
                        "tokenpace_retries_total",
                        &[("upstream", &failed), ("reason", f.reason())],
                    );
                    let next = (i + 1) % n;
                    if next != i {
                        // Another target is not subject to this one's backoff.
                        self.telemetry()
                            .inc("tokenpace_fallbacks_total", &[("route", &self.route)]);
                        i = next;
                    } else {
                        tokio::select! {
                            () = self.flight.cancel.cancelled() => {
                                self.fail(Failure::Cancelled);
                                return;
                            }
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        };
        let mut head = won.head.clone();
        head.queued = queued_total;
        self.relay(won, head).await;
    }

    /// Publishes a final failure: an upstream error response passes through as it came;
    /// anything else is the gateway's own error.
    fn fail(&self, f: Failure) {
        // Out of the coalescing map before anyone learns the end: a client that read this
        // failure and asks again must start a new call, not join the finished one.
        self.finish();
        match f {
            Failure::Status { head, body, .. } => {
                self.flight.set_upstream(head.upstream.clone());
                self.flight.update(|s| {
                    s.head = Some(Ok(head));
                    s.chunks.push(body);
                    s.end = Some(Ok(()));
                });
            }
            Failure::Admission(e) | Failure::Transport { error: e, .. } => {
                self.flight.update(|s| {
                    s.head = Some(Err(e.clone()));
                    s.end = Some(Err(e));
                });
            }
            Failure::Cancelled => {
                let e = cancelled();
                self.flight.update(|s| {
                    s.head = Some(Err(e.clone()));
                    s.end = Some(Err(e));
                });
            }
        }
    }

    /// Effective limits of a target: configured ones, else those learned from headers.
    fn limits(&self, t: &Prepared) -> (Limits, Duration) {
        let u = &self.dispatcher.config().upstreams[t.upstream];
        let mut limits = u.limits;
        if u.learn_limits
            && let Some(learned) = self.dispatcher.learned_limits(&t.lane)
        {
            limits.requests = limits.requests.or(learned.requests);
            limits.tokens = limits.tokens.or(learned.tokens);
            limits.input_tokens = limits.input_tokens.or(learned.input_tokens);
            limits.output_tokens = limits.output_tokens.or(learned.output_tokens);
        }
        (limits, u.window + window_guard(u.window))
    }

    /// Admission, then one attempt up to its commit point.
    async fn try_target(&self, i: usize) -> (Result<Won, Failure>, Duration) {
        let mut queued = Duration::ZERO;
        let r = self.try_target_inner(i, &mut queued).await;
        (r, queued)
    }

    async fn try_target_inner(
        &self,
        i: usize,
        queued_total: &mut Duration,
    ) -> Result<Won, Failure> {
        let t = &self.targets[i];
        self.flight.set_upstream(t.name.clone());
        let (limits, window) = self.limits(t);
        let mut reservation = None;
        if !limits.is_unlimited() {
            let charge = Charge {
                requests: 1,
                input: input_tokens(self.kind, &self.body),
                output: output_reserve(self.kind, &self.body, t.output_estimate),
            };
            let admission = self.dispatcher.admission();
            let req = AdmitRequest {
                lane: t.lane.clone(),
                limits,
                window,
                charge,
                tenant: self.tenant.clone(),
                priority: self.priority,
                deadline: self.queue_deadline,
            };
            let admitted = tokio::select! {
                () = self.flight.cancel.cancelled() => return Err(Failure::Cancelled),
                a = admission.admit(req) => a,
            };
            self.telemetry()
                .set("tokenpace_queue_depth", &[], admission.total_depth() as f64);
            match admitted {
                Ok(a) => {
                    *queued_total += a.queued;
                    self.telemetry().observe(
                        "tokenpace_queue_wait_seconds",
                        &[("upstream", &t.name)],
                        a.queued,
                    );
                    let result = if a.queued > Duration::ZERO {
                        "queued"
                    } else {
                        "admitted"
                    };
                    self.telemetry().inc(
                        "tokenpace_admission_total",
                        &[("upstream", &t.name), ("result", result)],
                    );
                    reservation = Some(a.reservation);
                }
                Err(rejected) => {
                    self.telemetry().inc(
                        "tokenpace_admission_total",
                        &[("upstream", &t.name), ("result", "rejected")],
                    );
                    let e = match rejected {
                        Rejected::Never(msg) => {
                            // Admission ran on the guarded window; the client is told the
                            // tier's own ("per 2s", not "per 2040ms").
                            let tier_window = self.dispatcher.config().upstreams[t.upstream].window;
                            let msg = never_fits(&limits, charge, tier_window).unwrap_or(msg);
                            DispatchError::invalid("max_tokens", msg)
                                .with_code("request_too_large_for_tier")
                        }
                        Rejected::QueueFull { retry_after } => DispatchError::new(
                            ErrorKind::RateLimit,
                            format!(
                                "the gateway's queue for upstream '{}' model '{}' is full; retry after {retry_after:?}",
                                t.name, t.model
                            ),
                        )
                        .with_retry_after(retry_after)
                        .with_code("rate_limit_exceeded"),
                        Rejected::Deadline { retry_after } => DispatchError::new(
                            ErrorKind::RateLimit,
                            format!(
                                "no capacity within the queue deadline on upstream '{}' model '{}' (raise tokenpace-queue-timeout, or retry after {retry_after:?})",
                                t.name, t.model
                            ),
                        )
                        .with_retry_after(retry_after)
                        .with_code("rate_limit_exceeded"),
                    };
                    return Err(Failure::Admission(e));
                }
            }
        }
        let result = self.attempt(t, limits, window).await;
        match &result {
            Ok(ready) => {
                let ttft = match &ready.0 {
                    Ready::Stream { first_at, .. } => *first_at,
                    Ready::Body(_) => ready.1.sent_at.elapsed(),
                };
                self.dispatcher.picker().observe(&t.key(), ttft);
            }
            Err(f) => {
                self.dispatcher.picker().observe_error(&t.key());
                if let Some(r) = &reservation {
                    // The upstream did not produce output: keep the request (it may have
                    // counted it) and give the tokens back.
                    let admission = self.dispatcher.admission();
                    admission
                        .settle(
                            r,
                            Charge {
                                requests: 1,
                                input: 0,
                                output: 0,
                            },
                        )
                        .await;
                }
                if let Failure::Status {
                    head,
                    retry_after: Some(after),
                    ..
                } = f
                    && head.status == StatusCode::TOO_MANY_REQUESTS
                {
                    self.dispatcher.admission().pause(&t.lane, *after).await;
                    self.telemetry()
                        .inc("tokenpace_upstream_pauses_total", &[("upstream", &t.name)]);
                }
            }
        }
        result.map(|(ready, head)| Won {
            ready,
            head,
            target: i,
            reservation,
        })
    }

    /// The first attempt, and a second on the next target if the first has no first
    /// token by the threshold; the first to reach its commit point wins.
    async fn hedged(&self, i: usize, h: HedgeConfig) -> (Result<Won, Failure>, Duration) {
        let first_key = self.targets[i].key();
        let threshold = match h.after {
            HedgeAfter::Fixed(d) => Some(d),
            HedgeAfter::P95 => self.dispatcher.picker().p95(&first_key),
        };
        let allowed = threshold.is_some() && self.dispatcher.hedge_budget(&self.route, h.max_share);
        let a = self.try_target(i);
        tokio::pin!(a);
        let Some(threshold) = threshold.filter(|_| allowed) else {
            return a.await;
        };
        tokio::select! {
            r = &mut a => return r,
            () = tokio::time::sleep(threshold) => {}
        }
        self.dispatcher.count_hedge(&self.route);
        self.telemetry().inc(
            "tokenpace_hedges_total",
            &[("route", &self.route), ("result", "sent")],
        );
        let j = (i + 1) % self.targets.len();
        let b = self.try_target(j);
        tokio::pin!(b);
        let (won, queued) = tokio::select! {
            (r, q) = &mut a => match r {
                Ok(w) => (Ok(w), q),
                Err(_) => {
                    let (r, q2) = (&mut b).await;
                    if r.is_ok() {
                        self.hedge_won();
                    }
                    (r, q.max(q2))
                }
            },
            (r, q) = &mut b => match r {
                Ok(w) => {
                    self.hedge_won();
                    (Ok(w), q)
                }
                Err(_) => {
                    let (r, q1) = (&mut a).await;
                    (r, q.max(q1))
                }
            },
        };
        if let Ok(w) = &won {
            self.flight
                .set_upstream(self.targets[w.target].name.clone());
        }
        (won, queued)
    }

    fn hedge_won(&self) {
        self.telemetry().inc(
            "tokenpace_hedges_total",
            &[("route", &self.route), ("result", "won")],
        );
    }

    /// One request to `t`, up to its commit point.
    async fn attempt(
        &self,
        t: &Prepared,
        limits: Limits,
        window: Duration,
    ) -> Result<(Ready, Head), Failure> {
        let req = ForwardRequest {
            method: Method::POST,
            path: self.kind.path().to_owned(),
            headers: self.headers.clone(),
            body: self.body_for(t),
            deadline: Instant::now() + t.timeout,
        };
        let client = self.dispatcher.client();
        let started = Instant::now();
        // For a stream, the TTFT timeout also bounds the wait for the response head.
        let head_deadline = t
            .ttft_timeout
            .filter(|_| self.stream)
            .map_or(req.deadline, |d| req.deadline.min(started + d));
        let ttft_expired = || Failure::Transport {
            retryable: true,
            error: DispatchError::new(
                ErrorKind::Timeout,
                format!(
                    "upstream '{}' sent no first token within its ttft_timeout of {:?}",
                    t.name,
                    t.ttft_timeout.unwrap_or_default()
                ),
            )
            .with_code("upstream_timeout"),
        };
        let forwarded = tokio::select! {
            () = self.flight.cancel.cancelled() => return Err(Failure::Cancelled),
            () = tokio::time::sleep_until(head_deadline.into()), if head_deadline < req.deadline => {
                return Err(ttft_expired());
            }
            r = client.forward(&t.endpoint, req) => r,
        };
        let mut fwd = match forwarded {
            Ok(f) => f,
            Err(class) => {
                self.telemetry().inc(
                    "tokenpace_upstream_requests_total",
                    &[("upstream", &t.name), ("status", "0")],
                );
                return Err(Failure::Transport {
                    retryable: retryable_error(&class),
                    error: DispatchError::upstream(&t.name, &class),
                });
            }
        };
        let status = fwd.status;
        self.telemetry().inc(
            "tokenpace_upstream_requests_total",
            &[("upstream", &t.name), ("status", status.as_str())],
        );
        let snapshot =
            client::headers::rate_limit_snapshot(&fwd.headers, std::time::SystemTime::now());
        self.observe_limits(t, limits, window, &snapshot).await;
        let streamed = status.is_success() && is_sse(&fwd.headers);
        let mut headers = HeaderMap::new();
        for (name, value) in &fwd.headers {
            if passed_header(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let sent_at = fwd.sent_at;
        let head = Head {
            status,
            headers,
            streamed,
            sent_at,
            upstream_headers: fwd.headers_at.saturating_duration_since(sent_at),
            upstream: t.name.clone(),
            queued: Duration::ZERO,
        };
        if !status.is_success() {
            let body = tokio::select! {
                () = self.flight.cancel.cancelled() => return Err(Failure::Cancelled),
                b = fwd.body.collect(MAX_ERROR_BODY) => b.unwrap_or_default(),
            };
            if retryable_status(status.as_u16()) {
                return Err(Failure::Status {
                    head,
                    body,
                    retry_after: snapshot.retry_after,
                });
            }
            return Ok((Ready::Body(body), head));
        }
        if !streamed {
            let body = tokio::select! {
                () = self.flight.cancel.cancelled() => return Err(Failure::Cancelled),
                b = fwd.body.collect(MAX_UPSTREAM_BODY) => b,
            };
            return match body {
                Ok(b) => Ok((Ready::Body(b), head)),
                Err(class) => Err(Failure::Transport {
                    retryable: retryable_error(&class),
                    error: DispatchError::upstream(&t.name, &class),
                }),
            };
        }
        // A stream: its status and headers can go to streamed clients now; the call is
        // committed to this upstream only at its first event.
        // Only with a single target: a fallback would answer from another upstream than
        // the early head's `x-tokenpace-upstream` says (retries reuse the same upstream).
        if self.targets.len() == 1 {
            self.flight.update(|s| {
                if s.early.is_none() {
                    s.early = Some(head.clone());
                }
            });
        }
        // Read up to the first event, within the TTFT timeout if one is set.
        let mut decoder = SseDecoder::default();
        let mut first = Vec::new();
        let ttft_deadline = t.ttft_timeout.map(|d| started + d);
        let sleep = tokio::time::sleep_until(
            ttft_deadline
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600))
                .into(),
        );
        tokio::pin!(sleep);
        let mut body = fwd.body;
        loop {
            let chunk = tokio::select! {
                biased;
                () = self.flight.cancel.cancelled() => return Err(Failure::Cancelled),
                () = &mut sleep => return Err(ttft_expired()),
                c = body.next() => c,
            };
            match chunk {
                None => {
                    return Err(Failure::Transport {
                        retryable: true,
                        error: DispatchError::new(
                            ErrorKind::Upstream,
                            format!(
                                "upstream '{}' ended the stream before its first event",
                                t.name
                            ),
                        )
                        .with_code("upstream_unreachable"),
                    });
                }
                Some(Err(class)) => {
                    return Err(Failure::Transport {
                        retryable: retryable_error(&class)
                            || matches!(class, ErrorClass::Protocol(_)),
                        error: DispatchError::upstream(&t.name, &class),
                    });
                }
                Some(Ok(data)) => {
                    if let Err(e) = decoder.push_into(&data, &mut first) {
                        return Err(Failure::Transport {
                            retryable: false,
                            error: DispatchError::new(
                                ErrorKind::Upstream,
                                format!("upstream '{}' sent an invalid stream: {e}", t.name),
                            ),
                        });
                    }
                    if first.iter().any(|ev| commits(self.kind, ev)) {
                        let first_at = sent_at.elapsed();
                        return Ok((
                            Ready::Stream {
                                body,
                                decoder,
                                first,
                                first_at,
                            },
                            head,
                        ));
                    }
                }
            }
        }
    }

    /// Learns limits and calibrates the lane from an upstream's rate-limit headers.
    async fn observe_limits(
        &self,
        t: &Prepared,
        limits: Limits,
        window: Duration,
        s: &client::RateLimitSnapshot,
    ) {
        if s.is_empty() {
            return;
        }
        let u = &self.dispatcher.config().upstreams[t.upstream];
        if u.learn_limits {
            self.dispatcher.learn_limits(
                &t.lane,
                Limits {
                    requests: s.requests_limit,
                    tokens: s.tokens_limit,
                    input_tokens: s.input_tokens_limit,
                    output_tokens: s.output_tokens_limit,
                    requests_per_day: None,
                    tokens_per_day: None,
                },
            );
        }
        // Limits just learned apply at once: the calibration below then records what the
        // upstream already counted (requests sent before the limits were known).
        let (limits, window) = if limits.is_unlimited() {
            self.limits(t)
        } else {
            (limits, window)
        };
        if limits.is_unlimited() {
            return;
        }
        let observed = Observed {
            remaining_requests: s.requests_remaining,
            remaining_tokens: s.tokens_remaining,
            remaining_input_tokens: s.input_tokens_remaining,
            remaining_output_tokens: s.output_tokens_remaining,
            reset_requests: s.requests_reset,
            reset_tokens: s.tokens_reset,
        };
        self.dispatcher
            .admission()
            .calibrate(&t.lane, limits, window, observed)
            .await;
    }

    /// Relays the winner into the flight, writes the cache, settles the reservation.
    async fn relay(&self, won: Won, head: Head) {
        let flight = &self.flight;
        let kind = self.kind;
        let t = &self.targets[won.target];
        let upstream = t.name.clone();
        flight.set_upstream(upstream.clone());
        let status = head.status;
        let streamed = head.streamed;
        let sent_at = head.sent_at;
        let ttft;
        let complete;
        let end: Result<(), DispatchError>;
        let mut drain: Option<ForwardBody> = None;
        match won.ready {
            Ready::Body(bytes) => {
                ttft = Some(sent_at.elapsed());
                complete = status.is_success()
                    && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
                flight.update(|s| {
                    s.head = Some(Ok(head));
                    s.chunks.push(bytes);
                });
                end = Ok(());
            }
            Ready::Stream {
                mut body,
                mut decoder,
                first,
                first_at,
            } => {
                ttft = Some(first_at);
                let mut terminal = false;
                let mut errored = false;
                let mut decoded = first;
                flight.update(|s| {
                    s.head = Some(Ok(head));
                    let (t, e) = record(kind, s, &mut decoded, first_at);
                    terminal |= t;
                    errored |= e;
                });
                // The end (or failure) of the body, seen while draining ready chunks.
                let mut pending_end: Option<Option<Result<Bytes, ErrorClass>>> = None;
                let ended: Result<(), DispatchError> = loop {
                    if terminal {
                        break Ok(());
                    }
                    let chunk = match pending_end.take() {
                        Some(end) => end,
                        None => tokio::select! {
                            biased;
                            () = flight.cancel.cancelled() => break Err(cancelled()),
                            c = body.next() => c,
                        },
                    };
                    let at = sent_at.elapsed();
                    let data = match chunk {
                        None => {
                            break if errored {
                                Ok(())
                            } else {
                                Err(DispatchError::new(
                                    ErrorKind::Upstream,
                                    format!(
                                        "upstream '{upstream}' ended the stream before its terminal event"
                                    ),
                                ))
                            };
                        }
                        Some(Err(class)) => break Err(DispatchError::upstream(&upstream, &class)),
                        Some(Ok(data)) => data,
                    };
                    if let Err(e) = decoder.push_into(&data, &mut decoded) {
                        break Err(DispatchError::new(
                            ErrorKind::Upstream,
                            format!("upstream '{upstream}' sent an invalid stream: {e}"),
                        ));
                    }
                    // Take every chunk that is already here before waking anyone: an
                    // upstream that writes one HTTP chunk per event hands several over per
                    // socket read, and one wake and one client write for all of them costs
                    // a fraction of one per event. Nothing waits: only ready chunks.
                    let mut broken = None;
                    while let Some(more) = futures_util::FutureExt::now_or_never(body.next()) {
                        match more {
                            Some(Ok(more)) => {
                                if let Err(e) = decoder.push_into(&more, &mut decoded) {
                                    broken = Some(DispatchError::new(
                                        ErrorKind::Upstream,
                                        format!(
                                            "upstream '{upstream}' sent an invalid stream: {e}"
                                        ),
                                    ));
                                    break;
                                }
                            }
                            // The end or a failure: the next loop turn sees it again.
                            _ => {
                                pending_end = Some(more);
                                break;
                            }
                        }
                    }
                    if let Some(e) = broken {
                        break Err(e);
                    }
                    if decoded.is_empty() {
                        continue;
                    }
                    flight.update(|s| {
                        let (t, e) = record(kind, s, &mut decoded, at);
                        terminal |= t;
                        errored |= e;
                    });
                };
                complete = ended.is_ok() && terminal && !errored;
                end = ended;
                if terminal {
                    drain = Some(body);
                }
            }
        }
        let e2e = sent_at.elapsed();
        let telemetry = self.telemetry();
        if let Some(t) = ttft {
            telemetry.observe(
                "tokenpace_upstream_ttft_seconds",
                &[("upstream", &upstream)],
                t,
            );
        }
        telemetry.observe(
            "tokenpace_upstream_e2e_seconds",
            &[("upstream", &upstream)],
            e2e,
        );

        let (body, followers) = {
            let s = flight.lock();
            let body = if streamed {
                Body::Sse(s.events.clone())
            } else {
                // A copy: the chunk may be a slice of hyper's read buffer (8 KiB and
                // more), which a long-lived cache entry would otherwise keep alive whole.
                Body::Json(Bytes::copy_from_slice(&crate::flight::concat(&s.chunks)))
            };
            (body, s.followers)
        };
        let (input, output) = if status.is_success() {
            match &body {
                Body::Sse(events) => shape::usage(kind, events),
                Body::Json(json) => shape::usage_json(kind, json),
            }
        } else {
            (0, 0)
        };
        if let Some(r) = &won.reservation {
            // Give back what was reserved and not used (or take what was used beyond it).
            let actual = Charge {
                requests: 1,
                input: if input > 0 { input } else { r.charge.input },
                output,
            };
            self.dispatcher.admission().settle(r, actual).await;
        }
        if complete {
            let api = kind.api();
            telemetry.add(
                "tokenpace_tokens_total",
                &[("direction", "input"), ("source", "upstream")],
                input as f64,
            );
            telemetry.add(
                "tokenpace_tokens_total",
                &[("direction", "output"), ("source", "upstream")],
                output as f64,
            );
            let usd = self.dispatcher.price_usd(&t.model, api, input, output);
            telemetry.add("tokenpace_cost_usd_total", &[("upstream", &upstream)], usd);
            if followers > 0 {
                telemetry.add(
                    "tokenpace_saved_tokens_total",
                    &[],
                    ((input + output) * followers) as f64,
                );
                telemetry.add("tokenpace_saved_usd_total", &[], usd * followers as f64);
            }
            if let (Some(key), Some(cache)) = (self.write, self.dispatcher.cache()) {
                let entry = Entry {
                    kind,
                    created_unix_ms: now_unix_ms(),
                    upstream: upstream.to_string(),
                    model: t.model.clone(),
                    input_tokens: input,
                    output_tokens: output,
                    ttft: if streamed { ttft } else { None },
                    e2e,
                    body,
                };
                cache.put(key, Arc::new(entry));
            }
        }
        // The entry is written before the end is published: a client that read the whole
        // response and asks again must find the entry, not a finished flight.
        // Likewise out of the coalescing map first: a request arriving from now on finds the
        // entry (written above) or starts a new call, never this finished one.
        self.finish();
        flight.update(|s| s.end = Some(end));
        if let Some(mut body) = drain {
            // Drain so the connection can be reused (bounded); nobody waits for this.
            let _ = tokio::time::timeout(Duration::from_millis(250), async {
                while let Some(Ok(_)) = body.next().await {}
            })
            .await;
        }
    }

    /// Removes the flight from the coalescing map (if it is still the one there).
    fn finish(&self) {
        if let Some(key) = &self.key {
            self.dispatcher.remove_flight(key, &self.flight);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            id: None,
            retry: None,
        }
    }

    #[test]
    fn only_output_commits_a_stream() {
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        let token = r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        let finish = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        assert!(!commits(Kind::Chat, &ev(None, role)));
        assert!(commits(Kind::Chat, &ev(None, token)));
        assert!(commits(Kind::Chat, &ev(None, finish)));
        assert!(commits(Kind::Chat, &ev(None, "[DONE]")));
        assert!(commits(
            Kind::Chat,
            &ev(None, r#"{"error":{"message":"x"}}"#)
        ));
        assert!(!commits(
            Kind::Completions,
            &ev(None, r#"{"choices":[{"text":"","finish_reason":null}]}"#)
        ));
        assert!(commits(
            Kind::Completions,
            &ev(None, r#"{"choices":[{"text":" a","finish_reason":null}]}"#)
        ));
        assert!(!commits(Kind::Messages, &ev(Some("message_start"), "{}")));
        assert!(!commits(Kind::Messages, &ev(Some("ping"), "{}")));
        assert!(commits(
            Kind::Messages,
            &ev(Some("content_block_delta"), "{}")
        ));
        assert!(commits(Kind::Messages, &ev(Some("error"), "{}")));
    }

    #[test]
    fn reserves_and_guards() {
        let body = serde_json::json!({"max_tokens": 100, "n": 2});
        assert_eq!(output_reserve(Kind::Chat, &body, 1024), 200);
        assert_eq!(
            output_reserve(Kind::Chat, &serde_json::json!({}), 1024),
            1024
        );
        assert_eq!(
            output_reserve(
                Kind::Chat,
                &serde_json::json!({"max_completion_tokens": 7}),
                1024
            ),
            7
        );
        assert_eq!(
            window_guard(Duration::from_secs(2)),
            Duration::from_millis(40)
        );
        assert_eq!(
            window_guard(Duration::from_secs(60)),
            Duration::from_millis(250)
        );
    }
}
