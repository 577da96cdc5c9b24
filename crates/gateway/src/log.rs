//! One structured log line per request, written when the request is over — for a stream,
//! when its last event went out or its client left — and the request counters.
//!
//! The line carries the route, model, tenant, upstream, cache result, status and every
//! timing stage; never a key or a prompt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use dispatch::CacheStatus;
use http_body::Frame;

use crate::AppState;

/// What is known about a request, logged on drop.
pub(crate) struct RequestLog {
    state: Arc<AppState>,
    route: &'static str,
    received: Instant,
    pub(crate) model: String,
    pub(crate) tenant: String,
    pub(crate) upstream: String,
    pub(crate) cache: CacheStatus,
    pub(crate) tier: Option<&'static str>,
    pub(crate) coalesced: bool,
    pub(crate) status: u16,
    pub(crate) error: Option<String>,
    pub(crate) level: tracing::Level,
    pub(crate) upstream_wait: Duration,
    pub(crate) observe_overhead: bool,
    pub(crate) head_sent: Option<Duration>,
    bytes: u64,
}

impl RequestLog {
    pub(crate) fn new(state: Arc<AppState>, route: &'static str, received: Instant) -> Self {
        state
            .dispatcher
            .telemetry()
            .add("tokenpace_in_flight_requests", &[], 1.0);
        RequestLog {
            state,
            route,
            received,
            model: String::new(),
            tenant: String::new(),
            upstream: String::new(),
            cache: CacheStatus::Bypass,
            tier: None,
            coalesced: false,
            status: 0,
            error: None,
            level: tracing::Level::INFO,
            upstream_wait: Duration::ZERO,
            observe_overhead: false,
            head_sent: None,
            bytes: 0,
        }
    }

    /// The response of a handler that is not a model call (files, batches): an error is
    /// rendered as OpenAI error JSON and logged once, on this line.
    pub(crate) fn respond(mut self, result: Result<Response, dispatch::DispatchError>) -> Response {
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                self.error = Some(e.message.clone());
                self.level = e.log_level();
                crate::calls::error_response(client::Api::OpenAi, &e)
            }
        };
        self.status = response.status().as_u16();
        self.head_sent = Some(self.received.elapsed());
        self.attach(response)
    }

    /// Moves the log into the response body, so it is written when the body ends.
    pub(crate) fn attach(self, response: Response) -> Response {
        let (parts, body) = response.into_parts();
        Response::from_parts(
            parts,
            Body::new(LoggedBody {
                inner: body,
                log: self,
            }),
        )
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        let t = self.state.dispatcher.telemetry();
        t.add("tokenpace_in_flight_requests", &[], -1.0);
        let status = self.status.to_string();
        t.inc(
            "tokenpace_requests_total",
            &[
                ("route", self.route),
                ("model", &self.model),
                ("status", &status),
                ("cache", self.cache.as_str()),
            ],
        );
        let total = self.received.elapsed();
        let head = self.head_sent.unwrap_or(total);
        macro_rules! line {
            ($lvl:expr) => {
                tracing::event!(
                    target: "tokenpace::request",
                    $lvl,
                    route = self.route,
                    model = %self.model,
                    tenant = %self.tenant,
                    upstream = %self.upstream,
                    cache = self.cache.as_str(),
                    tier = self.tier.unwrap_or("-"),
                    coalesced = self.coalesced,
                    status = self.status,
                    head_ms = head.as_secs_f64() * 1000.0,
                    upstream_ms = self.upstream_wait.as_secs_f64() * 1000.0,
                    total_ms = total.as_secs_f64() * 1000.0,
                    bytes = self.bytes,
                    error = self.error.as_deref().unwrap_or(""),
                )
            };
        }
        match self.level {
            tracing::Level::WARN | tracing::Level::ERROR => line!(tracing::Level::WARN),
            tracing::Level::DEBUG | tracing::Level::TRACE if self.status >= 400 => {
                line!(tracing::Level::DEBUG)
            }
            _ => line!(tracing::Level::INFO),
        }
    }
}

/// A response body that counts its bytes and drops the log at its end.
struct LoggedBody {
    inner: Body,
    log: RequestLog,
}

impl http_body::Body for LoggedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.log.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
