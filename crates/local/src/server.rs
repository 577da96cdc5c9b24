//! `tokenpace serve-local`: the OpenAI-compatible HTTP surface of one loaded model.
//!
//! Owns the routes (`POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`,
//! `GET /v1/models/{model}`, `GET /health`), the body limit, the error answers, the
//! `server-timing` header and the shutdown phases. Requests are checked and tokenized here,
//! then wait in a bounded FIFO queue for the one thread that owns the model (`queue`); the
//! response head goes out when that thread starts the job, so `server-timing: queue;dur=MS`
//! tells a client exactly how long it waited. Parsing and refusing requests is `request`'s
//! job, the wire shapes of answers are `wire`'s, and generation is the engine's.

mod queue;
mod request;
mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use futures_util::Stream;
use protocol::openai::{
    ErrorBody, INVALID_REQUEST_ERROR, MODEL_NOT_FOUND, ModelList, SERVER_ERROR,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::LocalError;
use crate::catalog::LOCAL_PREFIX;
use crate::engine::{Finish, Generation, Model, Prompter};
use queue::{Event, Refusal, Worker};
use request::Api;
use wire::{Head, StreamWriter};

/// The address `serve-local` listens on by default (the simulator has 8090).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8091";
/// Jobs that may wait behind the running one by default; more get `503 overloaded`.
pub const DEFAULT_QUEUE_LIMIT: usize = 64;
/// The largest request body accepted; larger ones get `413`. Far more than any prompt that
/// fits a small model's context.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How long shutdown lets the running job go on before cancelling it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// `owned_by` of the served model in `/v1/models`.
pub const OWNED_BY: &str = "tokenpace-local";

/// How to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Jobs that may wait behind the running one (0: none wait; busy means 503).
    pub queue_limit: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8091)),
            queue_limit: DEFAULT_QUEUE_LIMIT,
        }
    }
}

/// An error answer in OpenAI's shape, with its HTTP status.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    param: Option<String>,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            code: None,
            param: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A 400 `invalid_request_error`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, INVALID_REQUEST_ERROR, message)
    }

    /// A 500 `server_error`.
    fn server(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, SERVER_ERROR, message)
    }

    /// The 404 for a model this server does not serve, naming the one it does.
    pub(crate) fn model_not_found(model: &str, served: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST_ERROR,
            format!(
                "The model `{model}` does not exist on this server: it serves `{served}` (also accepted as `{LOCAL_PREFIX}{served}`)."
            ),
        )
        .code(MODEL_NOT_FOUND)
        .param("model")
    }

    /// Sets `code`.
    pub(crate) fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Sets `param`.
    pub(crate) fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    fn body(&self) -> ErrorBody {
        let body = ErrorBody::new(self.message.clone(), self.kind, self.code);
        match &self.param {
            Some(p) => body.with_param(p.clone()),
            None => body,
        }
    }

    fn shutting_down() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            SERVER_ERROR,
            "The server is shutting down; retry once serve-local has restarted.",
        )
        .code("shutting_down")
    }

    fn worker_stopped() -> Self {
        ApiError::server(
            "The model's worker thread has stopped, so no request can be served; restart tokenpace serve-local (the log on its stderr says why).",
        )
    }

    fn from_refusal(r: Refusal) -> Self {
        match r {
            Refusal::Full { limit, retry_after } => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    SERVER_ERROR,
                    format!(
                        "The local model is overloaded: {limit} requests are already waiting (--queue-limit {limit}). Retry later, send fewer requests at once, or restart serve-local with a larger --queue-limit."
                    ),
                )
                .code("overloaded");
                e.retry_after = Some(retry_after.as_secs_f64().ceil().clamp(1.0, 60.0) as u64);
                e
            }
            Refusal::Closing => ApiError::shutting_down(),
            Refusal::Stopped => ApiError::worker_stopped(),
        }
    }

    fn from_engine(e: LocalError) -> Self {
        match e {
            LocalError::Invalid(message) => ApiError::invalid(message),
            other => ApiError::server(format!(
                "The model failed while generating: {other}. The server goes on serving; retry the request."
            )),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), "{}", self.message);
        }
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

struct AppState {
    prompter: Arc<Prompter>,
    worker: Worker,
    /// Counter behind ids and default seeds.
    next: AtomicU64,
    /// Differs per process, so ids and default seeds do not repeat across restarts.
    salt: u64,
    /// Unix seconds of the start, the `created` of the served model.
    started: u64,
}

/// A model and a bound listener, ready to serve: [`LocalServer::serve_until`] for a process
/// that serves until a signal, [`LocalServer::spawn`] for a server in the background.
pub struct LocalServer {
    state: Arc<AppState>,
    listener: TcpListener,
    addr: SocketAddr,
}

impl std::fmt::Debug for LocalServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalServer")
            .field("addr", &self.addr)
            .field("model", &self.state.prompter.name())
            .field("worker", &self.state.worker)
            .finish()
    }
}

impl LocalServer {
    /// Binds `opts.listen` and starts the thread that owns `model`.
    pub async fn bind(model: Model, opts: ServeOptions) -> Result<LocalServer, LocalError> {
        let listener = TcpListener::bind(opts.listen).await.map_err(|e| {
            LocalError::Invalid(format!(
                "cannot listen on {}: {e}; choose another --listen address (port 0 picks a free one)",
                opts.listen
            ))
        })?;
        let addr = listener.local_addr().map_err(|e| {
            LocalError::Invalid(format!(
                "reading the address bound for {}: {e}",
                opts.listen
            ))
        })?;
        let prompter = model.prompter();
        let worker = Worker::start(model, opts.queue_limit)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(LocalServer {
            state: Arc::new(AppState {
                prompter,
                worker,
                next: AtomicU64::new(1),
                salt: splitmix64(now.as_nanos() as u64 ^ u64::from(std::process::id())),
                started: now.as_secs(),
            }),
            listener,
            addr,
        })
    }

    /// Binds and serves in the background until [`RunningLocal::stop`] (or drop).
    pub async fn spawn(model: Model, opts: ServeOptions) -> Result<RunningLocal, LocalError> {
        let server = LocalServer::bind(model, opts).await?;
        let addr = server.addr;
        let model_name = server.model_name().to_owned();
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone().cancelled_owned();
        let task = tokio::spawn(server.serve_until(signal));
        Ok(RunningLocal {
            addr,
            model_name,
            shutdown,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The served model's name (requests may also say `local:NAME`).
    pub fn model_name(&self) -> &str {
        self.state.prompter.name()
    }

    /// Serves until `shutdown` completes, then shuts down in phases and returns once the
    /// model's thread has ended.
    pub async fn serve_until<F>(self, shutdown: F) -> Result<(), LocalError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let LocalServer {
            state,
            listener,
            addr,
        } = self;
        // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs hold a small SSE chunk for
        // up to 40 ms: every token would arrive late.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let stopping = CancellationToken::new();
        // Shutdown phases:
        // 1. `shutdown` completes: axum stops accepting and closes idle connections;
        // 2. the queue closes: waiting jobs and new requests get 503 `shutting_down`;
        // 3. after SHUTDOWN_GRACE the running job is cancelled (a stream ends with an error
        //    event, a non-streamed request gets 503);
        // 4. once the last connection has closed, the worker thread is joined, which frees
        //    the model.
        let grace = tokio::spawn({
            let state = state.clone();
            let stopping = stopping.clone();
            async move {
                stopping.cancelled().await;
                state.worker.close();
                tokio::time::sleep(SHUTDOWN_GRACE).await;
                state.worker.cancel_running();
            }
        });
        let signal = {
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                stopping.cancel();
            }
        };
        let served = axum::serve(listener, router(state.clone()))
            .with_graceful_shutdown(signal)
            .await;
        stopping.cancel();
        grace.abort();
        let joining = state.clone();
        let _ = tokio::task::spawn_blocking(move || joining.worker.join()).await;
        served.map_err(|e| LocalError::Invalid(format!("serving on {addr}: {e}")))
    }
}

/// A [`LocalServer`] serving in the background (tests, `bench --model local:...`). Dropping
/// it starts the shutdown without waiting for it.
#[derive(Debug)]
pub struct RunningLocal {
    addr: SocketAddr,
    model_name: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), LocalError>>>,
}

impl RunningLocal {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The served model's name.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// Shuts down (see [`LocalServer::serve_until`]) and waits until the model is freed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Err(e)) => tracing::warn!("serve-local stopped with an error: {e}"),
                Err(e) => tracing::warn!("serve-local's task failed: {e}"),
                Ok(Ok(())) => {}
            }
        }
    }
}

impl Drop for RunningLocal {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completion))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn chat(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    st.handle(Api::Chat, headers, body).await
}

async fn completion(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    st.handle(Api::Completion, headers, body).await
}

fn model_entry(st: &AppState) -> protocol::openai::Model {
    protocol::openai::Model::new(st.prompter.name(), st.started, OWNED_BY)
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    axum::Json(ModelList::new(vec![model_entry(&st)])).into_response()
}

async fn model(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match request::check_model(&id, st.prompter.name()) {
        Ok(()) => axum::Json(model_entry(&st)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let worker = &st.worker;
    let (status, code) = if !worker.alive() {
        ("stopped", StatusCode::SERVICE_UNAVAILABLE)
    } else if worker.closing() {
        ("shutting_down", StatusCode::SERVICE_UNAVAILABLE)
    } else {
        ("ok", StatusCode::OK)
    };
    let body = serde_json::json!({
        "status": status,
        "model": st.prompter.name(),
        "context_length": st.prompter.context_length(),
        "busy": worker.busy(),
        "queued": worker.queued(),
    });
    (code, axum::Json(body)).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    let mut e = ApiError::invalid(format!(
        "Unknown request URL: {method} {}. serve-local serves POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /v1/models/{{model}} and GET /health.",
        uri.path()
    ))
    .code("unknown_url");
    e.status = StatusCode::NOT_FOUND;
    e.into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let mut e = ApiError::invalid(format!(
        "Method {method} is not allowed on {}: the completion routes take POST, the others GET.",
        uri.path()
    ))
    .code("method_not_allowed");
    e.status = StatusCode::METHOD_NOT_ALLOWED;
    e.into_response()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds with three decimals, as `server-timing` takes them.
fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// SplitMix64's output function: spreads a counter into well-mixed bits.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl AppState {
    async fn handle(self: Arc<Self>, api: Api, headers: HeaderMap, body: Body) -> Response {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut resp = match self.respond(api, &headers, body, n).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        };
        if let Ok(v) =
            HeaderValue::from_str(&format!("req_local{:016x}", splitmix64(self.salt ^ n)))
        {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }

    async fn respond(
        &self,
        api: Api,
        headers: &HeaderMap,
        body: Body,
        n: u64,
    ) -> Result<Response, ApiError> {
        // 1. The body, within the limit.
        let too_large = || {
            let mut e = ApiError::invalid(format!(
                "The request body is larger than serve-local's limit of {MAX_BODY_BYTES} bytes (4 MiB); send a shorter prompt."
            ))
            .code("request_too_large");
            e.status = StatusCode::PAYLOAD_TOO_LARGE;
            e
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|d| d > MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| too_large())?;

        // 2. Parse, check and tokenize, off the async threads: a long prompt is real CPU work.
        let prompter = self.prompter.clone();
        let seed = splitmix64(self.salt.rotate_left(17) ^ n);
        let parsed =
            tokio::task::spawn_blocking(move || request::parse(api, &bytes, &prompter, seed))
                .await
                .map_err(|e| ApiError::server(format!("parsing the request failed: {e}")))??;

        // 3. Queue, and wait until the worker starts the job: the head goes out then, with
        //    the wait in server-timing.
        let mut events = self
            .worker
            .submit(parsed.prompt, parsed.params)
            .map_err(ApiError::from_refusal)?;
        let queue = match events.recv().await {
            Some(Event::Started { queue }) => queue,
            Some(_) => {
                return Err(ApiError::server(
                    "the model's worker answered out of order; retry the request",
                ));
            }
            None => return Err(self.lost_job()),
        };
        let head = Head {
            api,
            id: match api {
                Api::Chat => format!("chatcmpl-{:016x}{n:08x}", splitmix64(self.salt ^ n)),
                Api::Completion => format!("cmpl-{:016x}{n:08x}", splitmix64(self.salt ^ n)),
            },
            created: unix_now(),
            model: self.prompter.name().to_owned(),
        };
        let queue_timing = format!("queue;dur={}", ms(queue));

        if parsed.stream {
            let writer = StreamWriter::new(head, parsed.include_usage);
            return Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
                .header(header::CACHE_CONTROL, "no-cache")
                .header("server-timing", queue_timing)
                .body(Body::from_stream(sse_events(writer, events)))
                .map_err(|e| ApiError::server(format!("building the response: {e}")));
        }

        // 4. Not streamed: the whole answer at once, with the engine's own split of the time.
        let generation = loop {
            match events.recv().await {
                Some(Event::Done(result)) => break result.map_err(ApiError::from_engine)?,
                Some(_) => continue,
                None => return Err(self.lost_job()),
            }
        };
        if generation.finish == Finish::Cancelled {
            return Err(ApiError::shutting_down());
        }
        let timing = format!(
            "{queue_timing}, prefill;dur={}, decode;dur={}",
            ms(generation.prefill),
            ms(generation.decode)
        );
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header("server-timing", timing)
            .body(Body::from(wire::response(&head, &generation)))
            .map_err(|e| ApiError::server(format!("building the response: {e}")))
    }

    /// The error for a job whose channel closed without an outcome.
    fn lost_job(&self) -> ApiError {
        if self.worker.closing() {
            ApiError::shutting_down()
        } else {
            ApiError::worker_stopped()
        }
    }
}

/// Where a streamed answer is.
enum Phase {
    Opening,
    Streaming,
    Ended,
}

/// The SSE body: one event per text piece, as soon as the worker hands it over. Dropping it
/// (the client left) drops the receiver, which cancels the job at its next piece.
fn sse_events(
    writer: StreamWriter,
    events: UnboundedReceiver<Event>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures_util::stream::unfold(
        (writer, events, Phase::Opening),
        |(writer, mut events, phase)| async move {
            match phase {
                Phase::Ended => return None,
                Phase::Opening => {
                    if let Some(first) = writer.open() {
                        return Some((Ok(first), (writer, events, Phase::Streaming)));
                    }
                }
                Phase::Streaming => {}
            }
            let last = loop {
                match events.recv().await {
                    Some(Event::Text(text)) => {
                        let chunk = writer.text(&text);
                        return Some((Ok(chunk), (writer, events, Phase::Streaming)));
                    }
                    Some(Event::Started { .. }) => continue,
                    Some(Event::Done(Ok(g))) => break closing(&writer, &g),
                    Some(Event::Done(Err(e))) => {
                        let e = ApiError::from_engine(e);
                        tracing::warn!("stream ended by an engine error: {}", e.message);
                        break writer.error(&e.body());
                    }
                    None => break writer.error(&ApiError::worker_stopped().body()),
                }
            };
            Some((Ok(last), (writer, events, Phase::Ended)))
        },
    )
}

fn closing(writer: &StreamWriter, g: &Generation) -> Bytes {
    if g.finish == Finish::Cancelled {
        // Only shutdown cancels a job whose client is still reading.
        writer.error(&ApiError::shutting_down().body())
    } else {
        writer.close(g)
    }
}
