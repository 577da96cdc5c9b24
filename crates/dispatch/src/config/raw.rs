//! The configuration as written: `gateway.toml` (and the `serve` flags, which fill the
//! same structure). Every table rejects unknown fields, so a typo is an error at start
//! rather than a setting silently ignored.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `HOST:PORT` to listen on (default `127.0.0.1:8080`; port 0 picks a free port).
    pub listen: Option<String>,
    /// Allow listening on a non-loopback address without gateway keys.
    pub allow_unauthenticated: Option<bool>,
    /// For a streamed request whose upstream is slow to answer: after this long, send the
    /// client `200` and SSE keep-alive comments while waiting (Go duration, default `10s`).
    pub stream_headers_after: Option<String>,
    /// How long shutdown waits for open streams (default `30s`).
    pub shutdown_grace: Option<String>,
    /// Largest request body accepted (default `32MiB`).
    pub max_request_bytes: Option<SizeValue>,
    /// Identical in-flight requests share one upstream call (default true).
    pub coalesce: Option<bool>,
    /// Worker threads (default: the number of CPUs; 1 runs everything on one thread,
    /// which has the lowest latency on a small machine).
    pub threads: Option<usize>,
    /// Upstreams by name.
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    /// Model aliases: `alias = "model"` or `alias = "upstream/model"`.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// The response cache.
    #[serde(default)]
    pub cache: RawCache,
    /// Gateway keys: each is a tenant.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Admission control (queueing against tier limits).
    #[serde(default)]
    pub admission: RawAdmission,
    /// The retry policy.
    #[serde(default)]
    pub retry: RawRetry,
    /// Routes with several targets (fallbacks, latency routing, hedging).
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Where the gateway keeps uploaded files, batch outputs and batch state (default
    /// `$XDG_DATA_HOME/tokenpace/gateway`). Created on the first `/v1/files` or
    /// `/v1/batches` request.
    pub data_dir: Option<String>,
    /// How `/v1/batches` runs batches.
    #[serde(default)]
    pub batches: RawBatches,
}

/// The `[batches]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatches {
    /// Requests in flight at most, per batch (default 64).
    pub concurrency: Option<usize>,
    /// Largest file `POST /v1/files` accepts, and largest batch input (default `200MB`,
    /// the Batch API's limit).
    pub max_file_bytes: Option<SizeValue>,
    /// How long a batch has to complete before it expires (default `24h`, the Batch API's
    /// completion window; shorter in tests).
    pub completion_window: Option<String>,
}

/// The `[admission]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmission {
    /// `local` (in-process, the default) or `redis` (shared by gateway instances).
    pub backend: Option<String>,
    /// The Redis URL for `backend = "redis"`.
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys (default `tokenpace:limits:`).
    pub redis_prefix: Option<String>,
    /// How long a request may wait for capacity (default `30s`); the request header
    /// `tokenpace-queue-timeout` overrides it per request.
    pub queue_timeout: Option<String>,
    /// Requests waiting per (upstream, model) before new ones get 429 (default 1000).
    pub max_queue: Option<usize>,
}

/// The `[retry]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Attempts in all, the first included (default 3; 1 = no retries).
    pub max_attempts: Option<u32>,
    /// Time for all attempts and waits (default `60s`).
    pub max_elapsed: Option<String>,
    /// First backoff bound (default `250ms`).
    pub base: Option<String>,
    /// Largest backoff (default `10s`).
    pub cap: Option<String>,
}

/// One `[[routes]]` entry: a model name served by several targets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// The model name clients send.
    pub model: String,
    /// `UPSTREAM/model` targets, in fallback order.
    pub targets: Vec<String>,
    /// `ordered` (default), `weighted` or `latency`.
    pub strategy: Option<String>,
    /// Weights for `weighted`, one per target.
    #[serde(default)]
    pub weights: Vec<u32>,
    /// Hedge: if no first token by then, also try the next target (`2s`, or `p95`).
    pub hedge_after: Option<String>,
    /// Largest share of requests that may be hedged (default 0.1).
    pub hedge_max_share: Option<f64>,
}

/// One upstream provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Base URL, with or without `/v1`.
    pub url: String,
    /// `openai`, `anthropic`, or `both` (a server that speaks both, like the simulator).
    /// Default: from the host (`api.anthropic.com` -> anthropic, `api.openai.com` ->
    /// openai), else `both`.
    pub api: Option<String>,
    /// The environment variable holding this upstream's API key.
    pub api_key_env: Option<String>,
    /// Total time for one upstream call (default `600s`).
    pub timeout: Option<String>,
    /// Time to connect (default `10s`).
    pub connect_timeout: Option<String>,
    /// The models routed to this upstream (needed when there are several upstreams).
    #[serde(default)]
    pub models: Vec<String>,
    /// Time to the first token of a stream (default: none); past it the attempt fails
    /// over to the next target.
    pub ttft_timeout: Option<String>,
    /// Requests per window (the tier's RPM).
    pub rpm: Option<u64>,
    /// Input + output tokens per window (TPM).
    pub tpm: Option<u64>,
    /// Input tokens per window (Anthropic's ITPM).
    pub itpm: Option<u64>,
    /// Output tokens per window (Anthropic's OTPM).
    pub otpm: Option<u64>,
    /// Requests per day.
    pub rpd: Option<u64>,
    /// Tokens per day.
    pub tpd: Option<u64>,
    /// The limits' window (default `60s`; shorter in tests).
    pub window: Option<String>,
    /// Learn limits from the upstream's rate-limit headers when not configured (default true).
    pub learn_limits: Option<bool>,
    /// Output tokens reserved for a request without `max_tokens` (default 1024).
    pub output_estimate: Option<u64>,
}

/// A size: bytes as an integer, or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    /// Bytes.
    Bytes(u64),
    /// `64MiB` and the like.
    Text(String),
}

/// The cache table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Cache responses at all (default true).
    pub enabled: Option<bool>,
    /// `sqlite` (default), `redis` or `memory`.
    pub store: Option<String>,
    /// The SQLite file (default: `$XDG_CACHE_HOME/tokenpace/gateway-cache.sqlite`).
    pub path: Option<String>,
    /// The Redis URL (`redis://host:port/db`), for `store = "redis"`.
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys (default `tokenpace:cache:`).
    pub redis_prefix: Option<String>,
    /// Entries expire after this long (Go duration; default: never).
    pub ttl: Option<String>,
    /// Bound of the in-memory tier (default `64MiB`).
    pub memory_max_bytes: Option<SizeValue>,
    /// Bound of the SQLite file's entries (default `1GiB`).
    pub max_bytes: Option<SizeValue>,
    /// Let all tenants share entries (default false: every tenant has its own).
    pub shared_across_tenants: Option<bool>,
    /// Cache and coalesce only deterministic requests (temperature 0 or a seed).
    pub deterministic_only: Option<bool>,
}

/// One gateway key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// The tenant this key is (default: `key-N`, its position).
    pub tenant: Option<String>,
    /// The key itself (prefer `key_env`, which keeps it out of the file).
    pub key: Option<String>,
    /// The environment variable that holds the key.
    pub key_env: Option<String>,
}
