//! Everything between a request and its upstream.
//!
//! - [`kind`]: which operation a request is (chat, completions, messages);
//! - [`config`]: `gateway.toml` and flags, raw -> resolved;
//! - [`route`]: which upstream serves a model;
//! - [`pick`]: choosing among equivalent upstreams (order, weights, latency) and their health;
//! - [`retry`]: the one retry policy (which failures, how long to wait);
//! - [`admission`]: admission control against tier limits (ledger, backends, queue);
//! - [`cache`]: the exact response cache (key, entries, shapes, tiers);
//! - [`redis_conn`]: the one Redis connection handling (lazy connect, timeouts, back-off,
//!   redaction) behind the cache's and the admission ledger's Redis tiers;
//! - [`flight`]: one upstream call and its subscribers (coalescing);
//! - [`dispatcher`]: a request from parsed body to answer, and the tasks that call upstreams;
//! - `job`: one upstream call: admission, retries, fallbacks, hedging, relay, settlement;
//! - [`error`]: the one error type, rendered as OpenAI or Anthropic JSON;
//! - [`telemetry`]: counters and histograms for `/metrics`;
//!
//! It leaves HTTP ingress (routes, auth, `/metrics` rendering, shutdown) to `gateway`,
//! and the upstream connections themselves to `client`.

pub mod admission;
pub mod cache;
pub mod config;
pub mod dispatcher;
pub mod error;
pub mod flight;
mod job;
pub mod kind;
pub mod pick;
pub mod redis_conn;
pub mod retry;
pub mod route;
pub mod telemetry;

pub use dispatcher::{Answer, CachePolicy, CacheStatus, Call, Dispatcher};
pub use error::{DispatchError, ErrorKind};
pub use kind::Kind;
