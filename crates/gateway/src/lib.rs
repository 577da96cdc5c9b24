//! The HTTP face of dispatch: an OpenAI- and Anthropic-compatible gateway.
//!
//! - [`router`]: the routes (`/v1/chat/completions`, `/v1/completions`, `/v1/messages`,
//!   `/v1/models`, `/health`, `/metrics`), with OpenAI-style errors for unknown routes and
//!   wrong methods;
//! - `calls`: the model-calling handler (auth, directives, validation, cache hits,
//!   relayed streams);
//! - `auth`: gateway keys and tenants; `directives`: per-request cache and replay
//!   headers; `validate`: body checks that name the field; `log`: one line per request;
//! - [`serve`] and [`RunningGateway`]: listening with TCP_NODELAY and graceful shutdown
//!   (stop accepting, let streams finish up to the grace period, flush the cache).
//!
//! Caching, coalescing and the upstream calls are `dispatch`'s.

mod admin;
mod auth;
mod calls;
mod directives;
mod log;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
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
}

impl AppState {
    /// State for `dispatcher`, with its configured keys.
    pub fn new(dispatcher: Dispatcher) -> Arc<AppState> {
        let keys = Keys::new(&dispatcher.config().keys);
        Arc::new(AppState { dispatcher, keys })
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
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(admin::models))
        .route("/health", get(admin::health))
        .route("/metrics", get(admin::metrics))
        .fallback(admin::not_found)
        .method_not_allowed_fallback(admin::method_not_allowed)
        .with_state(state)
}

/// Serves on `listener` until `shutdown` is cancelled, then stops accepting, lets open
/// responses finish for up to the configured grace period, and flushes the cache.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let grace = state.dispatcher.config().shutdown_grace;
    let dispatcher = state.dispatcher.clone();
    // Small SSE writes must not wait for Nagle's algorithm (up to 40 ms with delayed ACKs).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let signal = shutdown.clone();
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { signal.cancelled().await });
    let mut server = std::pin::pin!(server.into_future());
    // Shutdown phases: 1. the signal stops the accept loop (inside axum::serve);
    // 2. open connections finish, up to `grace`; 3. upstream calls still running are
    // cancelled and the cache's persistent tier is flushed.
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
