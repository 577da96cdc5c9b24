//! The simulator's HTTP face: routes, request parsing and validation, tier admission,
//! injected error statuses, the queue, and the response headers. Timing of the body is
//! `emit`'s job; the bodies' shapes are `openai`'s and `anthropic`'s.
//!
//! Order of a request (the lesson's latency equation, left to right):
//! 1. parse and validate (bad input gets a 4xx at once, naming the problem);
//! 2. tier admission per (API key, model), reserving input + `max_tokens`;
//! 3. network delay (`net`), before the first byte of any answer, 429s included;
//! 4. injected error status (`fail_first`, `fail_rate`);
//! 5. queue: wait FIFO for a slot (`server-timing: queue;dur=MS`);
//! 6. headers go out; prefill; tokens at their prescribed times; terminal events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::emit::{self, Emission, EmitCtx, SlotPool, Timing};
use crate::plan::Plan;
use crate::profile::Profile;
use crate::request::{Parsed, parse};
use crate::stats::Stats;
use crate::text::{SplitMix64, fnv1a};
use crate::tier::{Charge, Limiter, Rejection, TierLimits};
use crate::timer::PreciseTimer;
use crate::{SimConfig, SimError, anthropic, openai};

/// Which API a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Chat,
    Completion,
    Messages,
}

impl Api {
    fn anthropic(self) -> bool {
        self == Api::Messages
    }
}

/// An error answer in the dialect of the route.
pub(crate) struct ApiError {
    status: u16,
    kind: &'static str,
    message: String,
    code: Option<&'static str>,
    param: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            code: None,
            param: None,
            headers: vec![],
        }
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(400, "invalid_request_error", message)
    }
    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    pub(crate) fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }
}

struct AppState {
    config: SimConfig,
    stats: Arc<Stats>,
    limiter: Arc<Limiter>,
    timer: PreciseTimer,
    pools: Mutex<HashMap<(String, u32), Arc<SlotPool>>>,
    attempts: Mutex<HashMap<String, u64>>,
    ids: AtomicU64,
}

/// A configured simulator, ready to serve.
#[derive(Clone)]
pub struct Simulator {
    state: Arc<AppState>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("config", &self.state.config)
            .finish()
    }
}

/// A simulator serving in the background (tests, benchmarks, `bench`'s embedded target).
/// Dropping it stops the server.
#[derive(Debug)]
pub struct RunningSim {
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningSim {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits until the server has closed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Simulator {
    /// Builds a simulator (starts its timer thread).
    pub fn new(config: SimConfig) -> Result<Simulator, SimError> {
        // Build the tokenizer now: its first use takes a noticeable time, which must not
        // land inside the first request's measured TTFT.
        let _ = protocol::tokens::o200k();
        let timer = PreciseTimer::start().map_err(|source| SimError::Io {
            context: "starting the timer thread".into(),
            source,
        })?;
        Ok(Simulator {
            state: Arc::new(AppState {
                limiter: Arc::new(Limiter::new(config.window)),
                config,
                stats: Arc::new(Stats::new()),
                timer,
                pools: Mutex::new(HashMap::new()),
                attempts: Mutex::new(HashMap::new()),
                ids: AtomicU64::new(1),
            }),
        })
    }

    /// The recorder behind `/stats`.
    pub fn stats(&self) -> Arc<Stats> {
        self.state.stats.clone()
    }

    /// The routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/completions", post(completion))
            .route("/v1/messages", post(messages))
            .route("/v1/models", get(models))
            .route("/v1/models/{id}", get(model))
            .route("/health", get(health))
            .route("/stats", get(stats))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` is cancelled. Every accepted socket gets
    /// TCP_NODELAY: without it Nagle's algorithm and delayed ACKs hold small SSE chunks
    /// for up to 40 ms.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }

    /// Binds `addr` and serves in the background.
    pub async fn spawn(self, addr: SocketAddr) -> Result<RunningSim, SimError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Io {
                context: format!("binding {addr}"),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Io {
            context: "reading the bound address".into(),
            source,
        })?;
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = self.serve(listener, token).await {
                tracing::error!("simulator stopped: {e}");
            }
        });
        Ok(RunningSim {
            addr,
            shutdown,
            task: Some(task),
        })
    }
}

async fn chat(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    st.handle(Api::Chat, headers, body).await
}

async fn completion(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    st.handle(Api::Completion, headers, body).await
}

async fn messages(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    st.handle(Api::Messages, headers, body).await
}

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1_735_689_600u64, "owned_by": "tokenpace-sim"})
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    let data: Vec<Value> = st
        .config
        .profiles
        .names()
        .iter()
        .map(|n| model_object(n))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn model(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match st.config.profiles.resolve(&id) {
        Ok(_) => axum::Json(model_object(&id)).into_response(),
        Err(e) => render_openai(
            ApiError::new(404, "invalid_request_error", e.to_string()).code("model_not_found"),
        ),
    }
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok", "simulated": true})).into_response()
}

async fn stats(State(st): State<Arc<AppState>>) -> Response {
    axum::Json(st.stats.snapshot()).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    render_openai(
        ApiError::invalid(format!(
            "Unknown request URL: {method} {}. The simulator serves POST /v1/chat/completions, POST /v1/completions, POST /v1/messages, GET /v1/models, GET /health and GET /stats.",
            uri.path()
        ))
        .code("unknown_url")
        .with_status(404),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    render_openai(
        ApiError::invalid(format!(
            "Method {method} is not allowed on {}; see the route list in docs/sim.md.",
            uri.path()
        ))
        .code("method_not_allowed")
        .with_status(405),
    )
}

impl ApiError {
    fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn with_headers(mut resp: Response, headers: &[(&'static str, String)]) -> Response {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(HeaderName::from_static(name), v);
        }
    }
    resp
}

fn render_openai(e: ApiError) -> Response {
    let mut body = openai::error_body(&e.message, e.kind, e.code);
    if let Some(p) = e.param {
        body["error"]["param"] = Value::String(p.into());
    }
    let resp = (status_code(e.status), axum::Json(body)).into_response();
    with_headers(resp, &e.headers)
}

fn render_anthropic(e: ApiError, request_id: &str) -> Response {
    let body = anthropic::error_body(anthropic::error_type(e.status), &e.message, request_id);
    let mut resp = (status_code(e.status), axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("request-id", v);
    }
    with_headers(resp, &e.headers)
}

fn api_key(headers: &HeaderMap) -> String {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let x_api_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty());
    bearer.or(x_api_key).unwrap_or("anonymous").to_string()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn rejection_error(api: Api, model: &str, r: &Rejection) -> ApiError {
    let mut headers = Vec::new();
    if let Some(v) = r.retry_after_header() {
        headers.push(("retry-after", v));
    }
    if let Some(v) = r.retry_after_ms_header() {
        headers.push(("retry-after-ms", v));
    }
    let (kind, message) = if api.anthropic() {
        headers.extend(r.state.anthropic_headers(SystemTime::now()));
        ("rate_limit_error", r.anthropic_message(model))
    } else {
        headers.extend(r.state.openai_headers());
        (r.openai_error_type(), r.openai_message(model))
    };
    let mut e = ApiError::new(429, kind, message).code("rate_limit_exceeded");
    e.headers = headers;
    e
}

fn fault_error(api: Api, status: u16) -> ApiError {
    let mut e = match status {
        429 => {
            let mut e = ApiError::new(
                429,
                "requests",
                "Rate limit reached (simulated fault). Please try again in 1s.",
            )
            .code("rate_limit_exceeded");
            e.headers.push(("retry-after", "1".into()));
            e
        }
        503 => ApiError::new(
            503,
            "server_error",
            "The engine is currently overloaded, please try again later. (simulated fault)",
        ),
        529 => ApiError::new(529, "overloaded_error", "Overloaded (simulated fault)"),
        s if s >= 500 => ApiError::new(
            s,
            "server_error",
            "The server had an error while processing your request. (simulated fault)",
        ),
        s => ApiError::new(
            s,
            "invalid_request_error",
            "Simulated client error (fault injection)",
        ),
    };
    if api.anthropic() {
        e.kind = anthropic::error_type(status);
    }
    e
}

impl AppState {
    async fn handle(self: Arc<Self>, api: Api, headers: HeaderMap, body: Body) -> Response {
        let received = Instant::now();
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("req_sim{n:016x}");
        let (model, result) = self.handle_inner(api, &headers, body, received, n).await;
        let resp = match result {
            Ok(resp) => resp,
            Err(e) if api.anthropic() => render_anthropic(e, &request_id),
            Err(e) => render_openai(e),
        };
        self.stats.status(model.as_deref(), resp.status().as_u16());
        let mut resp = resp;
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            let name = if api.anthropic() {
                "request-id"
            } else {
                "x-request-id"
            };
            resp.headers_mut().insert(name, v);
        }
        resp.headers_mut()
            .insert("x-simulated", HeaderValue::from_static("true"));
        resp
    }

    fn pool(&self, profile: &Profile) -> Arc<SlotPool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools
            .entry((profile.name.clone(), profile.slots))
            .or_insert_with(|| Arc::new(SlotPool::new(profile.slots)))
            .clone()
    }

    /// The attempt number of this exact model string (0 for the first request).
    fn attempt(&self, model: &str) -> u64 {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let slot = attempts.entry(model.to_string()).or_insert(0);
        let n = *slot;
        *slot += 1;
        n
    }

    async fn handle_inner(
        &self,
        api: Api,
        headers: &HeaderMap,
        body: Body,
        received: Instant,
        n: u64,
    ) -> (Option<String>, Result<Response, ApiError>) {
        let limit = self.config.max_body_bytes;
        let too_large = || {
            ApiError::new(413, "invalid_request_error", format!("The request body is larger than the simulator's limit of {limit} bytes; send a smaller request or start the simulator with a larger --max-body-bytes."))
                .code("request_too_large")
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|d| d > limit as u64) {
            self.stats.request(None);
            return (None, Err(too_large()));
        }
        let bytes = match axum::body::to_bytes(body, limit).await {
            Ok(b) => b,
            Err(_) => {
                self.stats.request(None);
                return (None, Err(too_large()));
            }
        };
        let parsed = match parse(api, &bytes) {
            Ok(p) => p,
            Err(e) => {
                self.stats.request(None);
                return (None, Err(e));
            }
        };
        let model = parsed.model.clone();
        self.stats.request(Some(&model));
        let result = self.respond(api, headers, parsed, received, n).await;
        (Some(model), result)
    }

    async fn respond(
        &self,
        api: Api,
        headers: &HeaderMap,
        p: Parsed,
        received: Instant,
        n: u64,
    ) -> Result<Response, ApiError> {
        let profile = self
            .config
            .profiles
            .resolve(&p.model)
            .map_err(|e| match e {
                SimError::UnknownModel(_) if api.anthropic() => {
                    ApiError::new(404, "not_found_error", format!("model: {}", e))
                }
                SimError::UnknownModel(_) => {
                    ApiError::new(404, "invalid_request_error", e.to_string())
                        .code("model_not_found")
                        .param("model")
                }
                other => ApiError::invalid(other.to_string()).param("model"),
            })?;

        // 2. Tier admission.
        let key = api_key(headers);
        let limits: TierLimits = self.config.limits_for(&key);
        let reserve_output = u64::from(p.asked.cap.unwrap_or_else(|| profile.max_output()));
        let charge = Charge {
            requests: 1,
            input_tokens: p.input_tokens,
            output_tokens: reserve_output,
        };
        let admission = if limits.is_unlimited() {
            None
        } else {
            match self
                .limiter
                .try_admit(&key, &p.model, &limits, charge, Instant::now())
            {
                Ok(a) => Some(a),
                Err(r) => {
                    self.timer.sleep_until(received + profile.net).await;
                    return Err(rejection_error(api, &p.model, &r));
                }
            }
        };
        let rate_headers = admission
            .as_ref()
            .map(|a| {
                if api.anthropic() {
                    a.state.anthropic_headers(SystemTime::now())
                } else {
                    a.state.openai_headers()
                }
            })
            .unwrap_or_default();

        // 3. Network delay.
        self.timer.sleep_until(received + profile.net).await;

        // 4. Injected error statuses.
        let attempt = self.attempt(&p.model);
        let mut rng =
            SplitMix64::new(profile.seed ^ fnv1a(p.model.as_bytes()) ^ attempt.rotate_left(32));
        if attempt < u64::from(profile.faults.fail_first) || rng.chance(profile.faults.fail_rate) {
            self.stats.fault(&p.model);
            if let Some(a) = &admission {
                // A failed request still counts one request, but no tokens.
                self.limiter.settle(
                    a,
                    Charge {
                        requests: 1,
                        input_tokens: 0,
                        output_tokens: 0,
                    },
                    Instant::now(),
                );
            }
            let mut e = fault_error(api, profile.faults.fail_status);
            e.headers.extend(rate_headers);
            return Err(e);
        }

        let plan = Plan::draw(&profile, p.asked, p.hash);
        for _ in 0..plan.fault_count() {
            self.stats.fault(&p.model);
        }
        self.stats.input_tokens(&p.model, p.input_tokens);

        // 5. Queue.
        let queued = Instant::now();
        let slot = self.pool(&profile).acquire().await;
        let admitted = Instant::now();
        let queue = admitted - queued;

        // 6. Prefill, then decode.
        let prefill = profile.prefill_base
            + profile
                .prefill_per_token
                .saturating_mul(u32::try_from(p.input_tokens).unwrap_or(u32::MAX));
        let timing = Timing {
            received,
            first_due: admitted + prefill + plan.stall,
            itl: profile.itl,
            batch_slowdown: profile.batch_slowdown,
            chunk_tokens: profile.chunk_tokens.max(1),
        };
        let ctx = EmitCtx {
            timer: self.timer.clone(),
            stats: self.stats.clone(),
            limiter: self.limiter.clone(),
        };
        let thinking_first = plan.reasoning_tokens > 0;
        let emission = Emission::new(
            ctx,
            p.model.clone(),
            plan,
            timing,
            slot,
            admission,
            p.input_tokens,
        );

        let mut headers = rate_headers;
        headers.push((
            "server-timing",
            format!("queue;dur={:.3}", queue.as_secs_f64() * 1000.0),
        ));
        let id_prefix = match api {
            Api::Chat => "chatcmpl-sim",
            Api::Completion => "cmpl-sim",
            Api::Messages => "msg_sim",
        };
        let id = format!("{id_prefix}{n:016x}");
        let created = unix_now();

        if p.stream {
            let dialect: Box<dyn emit::Dialect> = match api {
                Api::Chat => Box::new(openai::ChatDialect::new(
                    &id,
                    created,
                    &p.model,
                    openai::StreamShape {
                        include_usage: p.include_usage,
                        obfuscation: p.obfuscation,
                    },
                )),
                Api::Completion => Box::new(openai::CompletionDialect::new(
                    &id,
                    created,
                    &p.model,
                    p.include_usage,
                )),
                Api::Messages => Box::new(anthropic::MessagesDialect::new(
                    &id,
                    &p.model,
                    p.input_tokens,
                    thinking_first,
                )),
            };
            let resp = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(emit::sse_body(emission, dialect))
                .map_err(|e| {
                    ApiError::new(500, "server_error", format!("building the response: {e}"))
                })?;
            return Ok(with_headers(resp, &headers));
        }

        let out = emit::collect(emission).await;
        if out.errored {
            // A non-streamed request cannot carry an error event: the error becomes the
            // response.
            return Err(fault_error(api, 500));
        }
        let Some(finish) = out.finish else {
            // Injected reset or truncation of a non-streamed response: the connection
            // drops before the body is complete.
            let resp = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(emit::broken_body())
                .map_err(|e| {
                    ApiError::new(500, "server_error", format!("building the response: {e}"))
                })?;
            return Ok(resp);
        };
        let body = match api {
            Api::Chat => openai::chat_response(&id, created, &p.model, &out, finish),
            Api::Completion => openai::completion_response(&id, created, &p.model, &out, finish),
            Api::Messages => anthropic::message_response(&id, &p.model, &out, finish),
        };
        let resp = (StatusCode::OK, axum::Json(body)).into_response();
        Ok(with_headers(resp, &headers))
    }
}
