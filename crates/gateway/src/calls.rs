//! The model-calling routes: `/v1/chat/completions`, `/v1/completions`, `/v1/messages`.
//!
//! One handler for all three: authenticate, read the per-request directives, read and
//! validate the body, hand it to the [`Dispatcher`](dispatch::Dispatcher), and turn its
//! answer into a response — a cache hit (JSON, or SSE replayed instantly or paced), or a
//! live upstream call relayed event by event. Status and headers of a stream go out when
//! the upstream's arrive, or after `stream_headers_after` with keep-alive comments until
//! they do.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request};
use axum::response::Response;
use bytes::Bytes;
use dispatch::cache::entry::{Body as EntryBody, Entry};
use dispatch::cache::shape::{self, EventClass};
use dispatch::flight::Subscription;
use dispatch::{Answer, CacheStatus, Call, DispatchError, ErrorKind, Kind};
use futures_util::stream;
use serde_json::Value;

use crate::AppState;
use crate::directives::{self, Replay};
use crate::log::RequestLog;
use crate::validate;

/// Request headers passed on to the upstream.
const PASSED_REQUEST_HEADERS: [&str; 3] = ["anthropic-version", "anthropic-beta", "openai-beta"];

/// How often a slow upstream's wait is covered by an SSE comment.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(5);

/// Milliseconds with three decimals, as `server-timing` wants them.
fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// The stages known when the head goes out.
#[derive(Debug, Default, Clone)]
pub(crate) struct Stages {
    parts: Vec<(&'static str, Duration)>,
}

impl Stages {
    fn push(&mut self, name: &'static str, d: Duration) {
        self.parts.push((name, d));
    }

    pub(crate) fn header(&self) -> String {
        self.parts
            .iter()
            .map(|(n, d)| format!("{n};dur={}", ms(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The error response of `e` in the route's dialect.
pub(crate) fn error_response(api: client::Api, e: &DispatchError) -> Response {
    let mut r = Response::new(Body::from(e.body(api)));
    *r.status_mut() = e.status();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(after) = e.retry_after {
        // Whole seconds, rounded up (the standard header), and the exact figure in ms.
        let secs = after.as_millis().div_ceil(1000).max(1) as u64;
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        r.headers_mut().insert(
            "retry-after-ms",
            HeaderValue::from(u64::try_from(after.as_millis()).unwrap_or(u64::MAX)),
        );
    }
    if e.kind == ErrorKind::Authentication && api == client::Api::OpenAi {
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
    }
    r
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Handles one model call.
pub(crate) async fn handle(state: Arc<AppState>, kind: Kind, req: Request<Body>) -> Response {
    let received = Instant::now();
    let api = kind.api();
    let mut log = RequestLog::new(state.clone(), kind.route(), received);
    let response = match run(&state, kind, req, received, &mut log).await {
        Ok(r) => r,
        Err(e) => {
            log.error = Some(e.message.clone());
            log.level = e.log_level();
            let mut r = error_response(api, &e);
            // An error after routing still says which upstream and cache path it took.
            if !log.upstream.is_empty() {
                r.headers_mut()
                    .insert("x-tokenpace-upstream", header_value(&log.upstream));
                r.headers_mut().insert(
                    "x-tokenpace-cache",
                    HeaderValue::from_static(log.cache.as_str()),
                );
            }
            r
        }
    };
    log.status = response.status().as_u16();
    if log.observe_overhead {
        state.dispatcher.telemetry().observe(
            "tokenpace_gateway_overhead_seconds",
            &[],
            received.elapsed().saturating_sub(log.upstream_wait),
        );
    }
    log.head_sent = Some(received.elapsed());
    log.attach(response)
}

async fn run(
    state: &Arc<AppState>,
    kind: Kind,
    req: Request<Body>,
    received: Instant,
    log: &mut RequestLog,
) -> Result<Response, DispatchError> {
    let (parts, body) = req.into_parts();
    let mut stages = Stages::default();
    let tenant = state.keys.tenant(&parts.headers)?;
    stages.push("auth", received.elapsed());
    log.tenant = tenant.clone();
    let (policy, replay) = directives::parse(&parts.headers)?;
    let pacing = directives::pacing(&parts.headers)?;
    let limit = state.dispatcher.config().max_request_bytes;
    let too_large = || {
        DispatchError::new(
            ErrorKind::TooLarge,
            format!(
                "the request body is larger than the gateway's limit of {limit} bytes (max_request_bytes in the config)"
            ),
        )
    };
    if parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
    {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if format!("{e}").contains("length limit") {
            too_large()
        } else {
            DispatchError::invalid("body", format!("reading the request body: {e}"))
        }
    })?;
    let json: Value = serde_json::from_slice(&bytes).map_err(|e| {
        DispatchError::invalid("body", format!("the request body is not valid JSON: {e}"))
    })?;
    validate::body(kind, &json)?;
    log.model = json
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut headers = HeaderMap::new();
    for name in PASSED_REQUEST_HEADERS {
        for v in parts.headers.get_all(name) {
            headers.append(name, v.clone());
        }
    }
    let answer = state
        .dispatcher
        .call(Call {
            kind,
            tenant,
            body: json,
            policy,
            headers,
            priority: pacing.priority,
            queue_timeout: pacing.queue_timeout,
        })
        .await?;
    match answer {
        Answer::Hit {
            entry,
            age,
            tier,
            stream,
            include_usage,
            lookup,
        } => {
            stages.push("cache", lookup);
            log.cache = CacheStatus::Hit;
            log.tier = Some(tier.as_str());
            log.upstream = entry.upstream.clone();
            log.observe_overhead = true;
            hit(kind, &entry, age, stream, include_usage, replay, &stages)
        }
        Answer::Live {
            sub,
            cache,
            stream,
            lookup,
        } => {
            if lookup > Duration::ZERO {
                stages.push("cache", lookup);
            }
            log.cache = cache;
            log.upstream = sub.upstream().to_string();
            log.coalesced = sub.coalesced;
            live(state, kind, sub, cache, stream, stages, log).await
        }
    }
}

/// Headers every gateway response to a model call carries.
fn our_headers(h: &mut HeaderMap, cache: CacheStatus, upstream: &str, stages: &Stages) {
    h.insert(
        "x-tokenpace-cache",
        HeaderValue::from_static(cache.as_str()),
    );
    h.insert("x-tokenpace-upstream", header_value(upstream));
    h.insert("server-timing", header_value(&stages.header()));
}

fn sse_headers(h: &mut HeaderMap) {
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// A cache hit as a response.
fn hit(
    kind: Kind,
    entry: &Entry,
    age: Duration,
    stream: bool,
    include_usage: bool,
    replay: Replay,
    stages: &Stages,
) -> Result<Response, DispatchError> {
    let broken = |e: shape::ShapeError| {
        DispatchError::new(
            ErrorKind::Upstream,
            format!("the cached response could not be served in this shape: {e}"),
        )
    };
    let mut response = if !stream {
        let body = match &entry.body {
            EntryBody::Json(b) => b.clone(),
            EntryBody::Sse(events) => shape::assemble(kind, events).map_err(broken)?,
        };
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    } else {
        let keep =
            |data: &Bytes| include_usage || shape::classify(kind, data) != EventClass::UsageOnly;
        let events: Vec<(Duration, Bytes)> = match &entry.body {
            EntryBody::Sse(events) => events
                .iter()
                .filter(|e| keep(&e.data))
                .map(|e| (e.at, e.data.clone()))
                .collect(),
            EntryBody::Json(json) => {
                // A non-streamed original has no recorded pacing: spread the events
                // evenly over its end-to-end time.
                let synthesized: Vec<Bytes> = shape::synthesize(kind, json)
                    .map_err(broken)?
                    .into_iter()
                    .filter(|d| keep(d))
                    .collect();
                let n = synthesized.len().max(1) as u32;
                synthesized
                    .into_iter()
                    .enumerate()
                    .map(|(i, d)| (entry.e2e * (i as u32 + 1) / n, d))
                    .collect()
            }
        };
        let body = match replay {
            Replay::Instant => {
                let mut all = Vec::with_capacity(events.iter().map(|(_, d)| d.len()).sum());
                for (_, d) in &events {
                    all.extend_from_slice(d);
                }
                Body::from(all)
            }
            Replay::Paced => {
                let start = tokio::time::Instant::now();
                Body::from_stream(stream::iter(events).then(move |(at, data)| async move {
                    tokio::time::sleep_until(start + at).await;
                    Ok::<Bytes, Infallible>(data)
                }))
            }
        };
        let mut r = Response::new(body);
        sse_headers(r.headers_mut());
        r
    };
    let h = response.headers_mut();
    our_headers(h, CacheStatus::Hit, &entry.upstream, stages);
    h.insert(http::header::AGE, HeaderValue::from(age.as_secs()));
    Ok(response)
}

use futures_util::StreamExt as _;

/// A live upstream call as a response.
async fn live(
    state: &Arc<AppState>,
    kind: Kind,
    mut sub: Subscription,
    cache: CacheStatus,
    stream: bool,
    mut stages: Stages,
    log: &mut RequestLog,
) -> Result<Response, DispatchError> {
    let _ = kind;
    let waited = Instant::now();
    let head = if stream {
        match tokio::time::timeout(
            state.dispatcher.config().stream_headers_after,
            sub.stream_head(),
        )
        .await
        {
            Ok(head) => Some(head?),
            Err(_) => None,
        }
    } else {
        Some(sub.head().await?)
    };
    let wait = waited.elapsed();
    log.upstream_wait = wait;
    log.observe_overhead = !sub.coalesced;
    let Some(head) = head else {
        // A very slow upstream: commit to a stream now and keep the client's connection
        // alive with comments until the upstream answers.
        stages.push("upstream", wait);
        let upstream = sub.upstream();
        let mut r = Response::new(Body::from_stream(slow_stream(sub)));
        sse_headers(r.headers_mut());
        our_headers(r.headers_mut(), cache, &upstream, &stages);
        return Ok(r);
    };
    let upstream = head.upstream.clone();
    log.upstream = upstream.to_string();
    if head.queued > Duration::ZERO {
        stages.push("queue", head.queued);
    }
    let name = if sub.coalesced {
        "coalesced"
    } else {
        "upstream"
    };
    stages.push(
        name,
        if sub.coalesced {
            wait
        } else {
            head.upstream_headers
        },
    );
    let mut headers = head.headers.clone();
    let response = if !stream || !head.status.is_success() {
        let body = sub.body().await?;
        if head.streamed {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = head.status;
        *r.headers_mut() = headers;
        r
    } else {
        let events = stream::unfold(sub, |mut sub| async move {
            sub.next_event()
                .await
                .map(|b| (Ok::<Bytes, Infallible>(b), sub))
        });
        let mut r = Response::new(Body::from_stream(events));
        *r.headers_mut() = headers;
        sse_headers(r.headers_mut());
        r
    };
    let mut response = response;
    our_headers(response.headers_mut(), cache, &upstream, &stages);
    if log.coalesced {
        response
            .headers_mut()
            .insert("x-tokenpace-coalesced", HeaderValue::from_static("true"));
    }
    Ok(response)
}

enum Slow {
    Waiting(Subscription),
    Streaming(Subscription),
    Done,
}

/// The body of a stream committed before the upstream answered: keep-alive comments
/// until the head, then the events, or an error event if the upstream failed.
fn slow_stream(sub: Subscription) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    stream::unfold(Slow::Waiting(sub), |state| async move {
        match state {
            Slow::Done => None,
            Slow::Streaming(mut sub) => sub
                .next_event()
                .await
                .map(|b| (Ok(b), Slow::Streaming(sub))),
            Slow::Waiting(mut sub) => {
                let api = sub.api();
                match tokio::time::timeout(KEEP_ALIVE_EVERY, sub.stream_head()).await {
                    Err(_) => Some((
                        Ok(protocol::sse::encode_comment("keep-alive")),
                        Slow::Waiting(sub),
                    )),
                    Ok(Err(e)) => Some((Ok(e.sse_event(api)), Slow::Done)),
                    Ok(Ok(head)) if !head.status.is_success() => {
                        let body = sub.body().await.unwrap_or_default();
                        let detail = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| {
                                v.pointer("/error/message")
                                    .and_then(Value::as_str)
                                    .map(str::to_owned)
                            })
                            .unwrap_or_default();
                        let e = DispatchError::new(
                            ErrorKind::Upstream,
                            format!(
                                "upstream '{}' answered {} after the stream had started: {detail}",
                                sub.upstream(),
                                head.status
                            ),
                        );
                        Some((Ok(e.sse_event(api)), Slow::Done))
                    }
                    Ok(Ok(_)) => sub
                        .next_event()
                        .await
                        .map(|b| (Ok(b), Slow::Streaming(sub))),
                }
            }
        }
    })
}
