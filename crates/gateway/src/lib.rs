//! The HTTP face of dispatch: an OpenAI- and Anthropic-compatible gateway.
//!
//! - [`router`]: the routes (`/v1/chat/completions`, `/v1/completions`, `/v1/messages`,
//!   `/v1/models`, `/v1/files`, `/v1/batches`, `/health`, `/metrics`), with OpenAI-style
//!   errors for unknown routes and wrong methods;
//! - `calls`: the model-calling handler (auth, directives, validation, cache hits,
//!   relayed streams);
//! - `files`, `batches`: OpenAI's Files and Batch APIs; `jobs`: the batches running inside
//!   the gateway (through the `batch` crate's runner); `store`: the data directory and its
//!   SQLite store of files and batches; `listing`: list queries and list objects;
//! - `auth`: gateway keys and tenants; `directives`: per-request cache and replay
//!   headers; `validate`: body checks that name the field; `log`: one line per request;
//! - [`serve`] and [`RunningGateway`]: listening with TCP_NODELAY and graceful shutdown
//!   (stop accepting, let streams finish up to the grace period, flush the cache).
//!
//! Caching, coalescing and the upstream calls are `dispatch`'s.

mod admin;
mod auth;
mod batches;
mod calls;
mod directives;
mod files;
mod jobs;
mod listing;
mod log;
mod store;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use dispatch::{Dispatcher, Kind};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::{DEFAULT_TENANT, Keys};
pub use directives::Replay;

/// Shared by every handler.
#[derive(Debug)]
pub struct AppState {
    /// The engine.
    pub dispatcher: Dispatcher,
    /// Gateway keys.
    pub keys: Keys,
    /// Files and batches (`/v1/files`, `/v1/batches`).
    pub(crate) batches: jobs::Batches,
}

impl AppState {
    /// State for `dispatcher`, with its configured keys. Touches no disk: the data
    /// directory is opened by [`serve`] when it holds batches to resume, else by the first
    /// `/v1/files` or `/v1/batches` request.
    pub fn new(dispatcher: Dispatcher) -> Arc<AppState> {
        let keys = Keys::new(&dispatcher.config().keys);
        let batches = jobs::Batches::new(&dispatcher);
        Arc::new(AppState {
            dispatcher,
            keys,
            batches,
        })
    }
}

async fn chat(State(st): State<Arc<AppState>>, req: Request<Body>) -> Response {
    calls::handle(st, Kind::Chat, req).await
}

async fn completions(State(st): State<Arc<AppState>>, req: Request<Body>) -> Response {
    calls::handle(st, Kind::Completions, req).await
}

async fn messages(State(st): State<Arc<AppState>>, req: Request<Body>) -> Response {
    calls::handle(st, Kind::Messages, req).await
}

/// The gateway's routes.
pub fn router(state: Arc<AppState>) -> Router {
    // An upload is bounded by the file limit (checked as it streams), not the JSON one.
    let upload_limit = state
        .batches
        .max_file_bytes()
        .saturating_add(files::FORM_OVERHEAD);
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(admin::models))
        .route(
            "/v1/files",
            post(files::upload)
                .layer(DefaultBodyLimit::max(
                    usize::try_from(upload_limit).unwrap_or(usize::MAX),
                ))
                .get(files::list),
        )
        .route("/v1/files/{id}", get(files::retrieve).delete(files::delete))
        .route("/v1/files/{id}/content", get(files::content))
        .route("/v1/batches", post(batches::create).get(batches::list))
        .route("/v1/batches/{id}", get(batches::retrieve))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .route("/health", get(admin::health))
        .route("/metrics", get(admin::metrics))
        .fallback(admin::not_found)
        .method_not_allowed_fallback(admin::method_not_allowed)
        .with_state(state)
}

/// Serves on `listener` until `shutdown` is cancelled, then stops accepting, lets open
/// responses finish for up to the configured grace period, stops the batches running in
/// the gateway (they resume on the next start), and flushes the cache. Batches left
/// unfinished by an earlier run resume when it starts.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let grace = state.dispatcher.config().shutdown_grace;
    let dispatcher = state.dispatcher.clone();
    let batches = state.batches.clone();
    batches.start().await;
    // Small SSE writes must not wait for Nagle's algorithm (up to 40 ms with delayed ACKs).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let signal = shutdown.clone();
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { signal.cancelled().await });
    let mut server = std::pin::pin!(server.into_future());
    // Shutdown phases: 1. the signal stops the accept loop (inside axum::serve);
    // 2. open connections finish, up to `grace`; 3. batches stop taking lines and their
    // lines in flight finish, up to `grace` (`jobs`' own phases); 4. upstream calls still
    // running are cancelled and the cache's persistent tier is flushed.
    let result = tokio::select! {
        r = &mut server => r,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("shutdown: open responses did not finish within {grace:?}; closing them");
            Ok(())
        }
    };
    batches.shutdown(grace).await;
    dispatcher.shutdown(Duration::from_millis(100)).await;
    result
}

/// A gateway serving in the background (tests, benchmarks). Dropping it stops it.
#[derive(Debug)]
pub struct RunningGateway {
    /// The bound address.
    pub addr: SocketAddr,
    /// The state (dispatcher, telemetry).
    pub state: Arc<AppState>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningGateway {
    /// Binds `addr` and serves `state` in the background.
    pub async fn spawn(addr: SocketAddr, state: Arc<AppState>) -> std::io::Result<RunningGateway> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, state.clone(), shutdown.clone()));
        Ok(RunningGateway {
            addr,
            state,
            shutdown,
            task: Some(task),
        })
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts the graceful shutdown and waits for it.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
