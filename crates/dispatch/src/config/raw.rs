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
