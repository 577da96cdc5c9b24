//! Validation: [`RawConfig`] -> [`Config`], with errors that name the field and the fix.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use client::{Api, Endpoint, Target};

use crate::admission::Limits;
use crate::pick::Strategy;
use crate::retry::RetryPolicy;
use protocol::ratelimit::parse_go_duration;

use super::raw::{RawConfig, SizeValue};
use super::size::parse_size;

/// An invalid configuration: the field, what is wrong, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// The field, as a path (`upstreams.openai.url`).
    pub field: String,
    /// What is wrong and the fix.
    pub problem: String,
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Which dialects an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamApi {
    /// OpenAI-compatible only.
    OpenAi,
    /// Anthropic only.
    Anthropic,
    /// Both (the simulator, some proxies).
    Both,
}

impl UpstreamApi {
    /// Whether it serves `api`.
    pub fn serves(self, api: Api) -> bool {
        matches!(
            (self, api),
            (UpstreamApi::Both, _)
                | (UpstreamApi::OpenAi, Api::OpenAi)
                | (UpstreamApi::Anthropic, Api::Anthropic)
        )
    }
}

/// A validated upstream.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Its name (routes, metrics, `x-tokenpace-upstream`).
    pub name: String,
    /// The dialects it speaks.
    pub api: UpstreamApi,
    /// The endpoint per dialect it speaks (authentication headers differ).
    pub openai: Option<Endpoint>,
    /// See `openai`.
    pub anthropic: Option<Endpoint>,
    /// Total time for one call.
    pub timeout: Duration,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Models routed to it.
    pub models: Vec<String>,
    /// Whether an API key was configured (never the key itself).
    pub has_key: bool,
    /// Configured tier limits (unset ones may be learned from headers).
    pub limits: Limits,
    /// The limits' window.
    pub window: Duration,
    /// Learn unset limits from the upstream's rate-limit headers.
    pub learn_limits: bool,
    /// Output tokens reserved when a request has no `max_tokens`.
    pub output_estimate: u64,
    /// Time to first token of a stream before failing over.
    pub ttft_timeout: Option<Duration>,
}

impl UpstreamConfig {
    /// The endpoint for `api`, if this upstream speaks it.
    pub fn endpoint(&self, api: Api) -> Option<&Endpoint> {
        match api {
            Api::OpenAi => self.openai.as_ref(),
            Api::Anthropic => self.anthropic.as_ref(),
        }
    }
}

/// Where cache entries persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStore {
    /// Only in memory: lost at exit.
    Memory,
    /// An SQLite file (the default).
    Sqlite(PathBuf),
    /// A Redis server shared by several gateways.
    Redis {
        /// `redis://...`.
        url: String,
        /// Key prefix.
        prefix: String,
    },
}

/// Validated cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Cache at all.
    pub enabled: bool,
    /// The persistent tier.
    pub store: CacheStore,
    /// Entry lifetime.
    pub ttl: Option<Duration>,
    /// Bound of the memory tier.
    pub memory_max_bytes: u64,
    /// Bound of the SQLite tier.
    pub max_bytes: u64,
    /// All tenants share entries.
    pub shared_across_tenants: bool,
    /// Only deterministic requests are cached and coalesced.
    pub deterministic_only: bool,
}

/// A gateway key and its tenant. `Debug` never shows the key.
#[derive(Clone)]
pub struct GatewayKey {
    /// The tenant.
    pub tenant: String,
    /// The key.
    pub key: String,
}

impl std::fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayKey")
            .field("tenant", &self.tenant)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Where admission ledgers live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmissionBackend {
    /// In this process.
    Local,
    /// In Redis, shared by gateway instances.
    Redis {
        /// `redis://...`.
        url: String,
        /// Key prefix.
        prefix: String,
    },
}

/// Validated admission settings.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    /// Where ledgers live.
    pub backend: AdmissionBackend,
    /// Default queue deadline.
    pub queue_timeout: Duration,
    /// Waiting requests per lane.
    pub max_queue: usize,
}

/// When a hedge is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeAfter {
    /// After a fixed time without a first token.
    Fixed(Duration),
    /// After the first target's observed p95 TTFT.
    P95,
}

/// Hedging settings of a route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgeConfig {
    /// When.
    pub after: HedgeAfter,
    /// Largest share of the route's requests that may be hedged.
    pub max_share: f64,
}

/// A validated `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The model name clients send.
    pub model: String,
    /// (index into `upstreams`, upstream model), in fallback order.
    pub targets: Vec<(usize, String)>,
    /// How to choose among them.
    pub strategy: Strategy,
    /// Hedging, when enabled.
    pub hedge: Option<HedgeConfig>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// See [`RawConfig::stream_headers_after`].
    pub stream_headers_after: Duration,
    /// See [`RawConfig::shutdown_grace`].
    pub shutdown_grace: Duration,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Coalesce identical in-flight requests.
    pub coalesce: bool,
    /// Worker threads of the server's runtime.
    pub threads: usize,
    /// Upstreams, by name order.
    pub upstreams: Vec<UpstreamConfig>,
    /// Alias -> (explicit upstream, model).
    pub aliases: BTreeMap<String, (Option<String>, String)>,
    /// The cache.
    pub cache: CacheConfig,
    /// Gateway keys (empty: one tenant, `default`, and no authentication).
    pub keys: Vec<GatewayKey>,
    /// Admission control.
    pub admission: AdmissionConfig,
    /// The retry policy.
    pub retry: RetryPolicy,
    /// Routes with several targets.
    pub routes: Vec<RouteConfig>,
    /// Where uploaded files, batch outputs and batch state live.
    pub data_dir: PathBuf,
    /// How `/v1/batches` runs batches.
    pub batches: BatchesConfig,
}

/// Validated `[batches]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchesConfig {
    /// Requests in flight at most, per batch.
    pub concurrency: usize,
    /// Largest upload, and largest batch input.
    pub max_file_bytes: u64,
    /// Time a batch has to complete before it expires.
    pub completion_window: Duration,
}

impl Default for BatchesConfig {
    fn default() -> Self {
        BatchesConfig {
            concurrency: 64,
            max_file_bytes: 200_000_000,
            completion_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// The default listen address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

fn duration(
    field: &str,
    value: Option<&String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => parse_go_duration(v.trim()).map_err(|e| {
            err(
                field,
                format!("'{v}' is not a duration ({e}); write it like 500ms, 10s or 1m30s"),
            )
        }),
    }
}

fn size(field: &str, value: Option<&SizeValue>, default: u64) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(SizeValue::Bytes(n)) => Ok(*n),
        Some(SizeValue::Text(t)) => parse_size(t).map_err(|e| err(field, e)),
    }
}

/// The default SQLite cache file: `$XDG_CACHE_HOME/tokenpace/gateway-cache.sqlite`, else
/// `~/.cache/tokenpace/...`, else `./tokenpace-gateway-cache.sqlite`.
pub fn default_cache_path(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let file = "gateway-cache.sqlite";
    if let Some(dir) = env("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("tokenpace").join(file);
    }
    if let Some(home) = env("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home)
            .join(".cache")
            .join("tokenpace")
            .join(file);
    }
    PathBuf::from("tokenpace-gateway-cache.sqlite")
}

/// The default data directory: `$XDG_DATA_HOME/tokenpace/gateway`, else
/// `~/.local/share/tokenpace/gateway`, else `./tokenpace-gateway-data`.
pub fn default_data_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = env("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("tokenpace").join("gateway");
    }
    if let Some(home) = env("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home)
            .join(".local")
            .join("share")
            .join("tokenpace")
            .join("gateway");
    }
    PathBuf::from("tokenpace-gateway-data")
}

/// The key variable conventionally used for a well-known provider host.
fn conventional_key_env(host: &str) -> Option<&'static str> {
    match host {
        "api.openai.com" => Some("OPENAI_API_KEY"),
        "api.anthropic.com" => Some("ANTHROPIC_API_KEY"),
        "api.groq.com" => Some("GROQ_API_KEY"),
        _ => None,
    }
}

fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    let t = text.trim();
    if let Some(port) = t.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| err("listen", format!("'{text}' has no valid port")))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    t.parse().map_err(|_| {
        err(
            "listen",
            format!(
                "'{text}' is not an address (write HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)"
            ),
        )
    })
}

impl RawConfig {
    /// Parses a `gateway.toml`.
    pub fn from_toml(text: &str) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let msg = e.message().to_owned();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            err("config", format!("{msg}{at}"))
        })
    }

    /// Validates into a [`Config`], reading API keys through `env`.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let listen = match &self.listen {
            Some(l) => parse_listen(l)?,
            None => DEFAULT_LISTEN,
        };
        if self.upstreams.is_empty() {
            return Err(err(
                "upstreams",
                "no upstream configured: give --upstream NAME=URL or an [upstreams.NAME] table",
            ));
        }
        let mut upstreams = Vec::new();
        let mut routed: HashMap<&str, &str> = HashMap::new();
        for (name, raw) in &self.upstreams {
            let field = |f: &str| format!("upstreams.{name}.{f}");
            if name.is_empty()
                || name.contains(['/', ':', '{', '}'])
                || name.contains(char::is_whitespace)
            {
                return Err(err(
                    format!("upstreams.{name}"),
                    "an upstream name must be non-empty, without '/', ':', braces or spaces",
                ));
            }
            let probe = Target::new(name.as_str(), raw.url.as_str(), Api::OpenAi)
                .endpoint()
                .map_err(|e| err(field("url"), e.to_string()))?;
            let api = match raw.api.as_deref().map(str::trim) {
                Some("openai") => UpstreamApi::OpenAi,
                Some("anthropic") => UpstreamApi::Anthropic,
                Some("both") => UpstreamApi::Both,
                Some(other) => {
                    return Err(err(
                        field("api"),
                        format!("'{other}' is not an API (use openai, anthropic or both)"),
                    ));
                }
                None => match probe.host() {
                    "api.anthropic.com" => UpstreamApi::Anthropic,
                    "api.openai.com" | "api.groq.com" => UpstreamApi::OpenAi,
                    _ => UpstreamApi::Both,
                },
            };
            let key = match &raw.api_key_env {
                Some(var) => match env(var) {
                    Some(k) if !k.trim().is_empty() => Some(k.trim().to_owned()),
                    _ => {
                        return Err(err(
                            field("api_key_env"),
                            format!(
                                "environment variable {var} is not set (export it, or remove api_key_env for an upstream that needs no key)"
                            ),
                        ));
                    }
                },
                None => conventional_key_env(probe.host())
                    .and_then(env)
                    .filter(|k| !k.trim().is_empty())
                    .map(|k| k.trim().to_owned()),
            };
            let endpoint = |dialect: Api| -> Result<Endpoint, ConfigError> {
                let mut t = Target::new(name.as_str(), raw.url.as_str(), dialect);
                if let Some(k) = &key {
                    t = t.with_api_key(k.as_str());
                }
                t.endpoint().map_err(|e| err(field("url"), e.to_string()))
            };
            let openai = api
                .serves(Api::OpenAi)
                .then(|| endpoint(Api::OpenAi))
                .transpose()?;
            let anthropic = api
                .serves(Api::Anthropic)
                .then(|| endpoint(Api::Anthropic))
                .transpose()?;
            for model in &raw.models {
                if let Some(other) = routed.insert(model.as_str(), name.as_str()) {
                    return Err(err(
                        field("models"),
                        format!(
                            "model '{model}' is also routed to upstream '{other}'; list it under one upstream (or address one explicitly as UPSTREAM/{model})"
                        ),
                    ));
                }
            }
            upstreams.push(UpstreamConfig {
                name: name.clone(),
                api,
                openai,
                anthropic,
                timeout: duration(
                    &field("timeout"),
                    raw.timeout.as_ref(),
                    Duration::from_secs(600),
                )?,
                connect_timeout: duration(
                    &field("connect_timeout"),
                    raw.connect_timeout.as_ref(),
                    Duration::from_secs(10),
                )?,
                models: raw.models.clone(),
                has_key: key.is_some(),
                limits: Limits {
                    requests: raw.rpm,
                    tokens: raw.tpm,
                    input_tokens: raw.itpm,
                    output_tokens: raw.otpm,
                    requests_per_day: raw.rpd,
                    tokens_per_day: raw.tpd,
                },
                window: {
                    let w = duration(
                        &field("window"),
                        raw.window.as_ref(),
                        Duration::from_secs(60),
                    )?;
                    if w.is_zero() {
                        return Err(err(
                            field("window"),
                            "the window must be longer than zero (e.g. 60s)",
                        ));
                    }
                    w
                },
                learn_limits: raw.learn_limits.unwrap_or(true),
                output_estimate: raw.output_estimate.unwrap_or(1024),
                ttft_timeout: raw
                    .ttft_timeout
                    .as_ref()
                    .map(|t| duration(&field("ttft_timeout"), Some(t), Duration::ZERO))
                    .transpose()?,
            });
        }
        let mut aliases = BTreeMap::new();
        for (alias, target) in &self.aliases {
            let field = format!("aliases.{alias}");
            let (up, model) = match target.split_once('/') {
                Some((up, model)) if self.upstreams.contains_key(up) => {
                    (Some(up.to_owned()), model.to_owned())
                }
                _ => (None, target.clone()),
            };
            if model.is_empty() {
                return Err(err(field, "the alias names no model"));
            }
            if up.is_none() && upstreams.len() > 1 && !routed.contains_key(model.as_str()) {
                return Err(err(
                    field,
                    format!(
                        "'{target}' is not routed to any upstream; write it as UPSTREAM/{model} or list '{model}' in an upstream's models"
                    ),
                ));
            }
            aliases.insert(alias.clone(), (up, model));
        }
        let c = &self.cache;
        let store = match c.store.as_deref().map(str::trim) {
            None | Some("sqlite") => CacheStore::Sqlite(match &c.path {
                Some(p) if !p.trim().is_empty() => PathBuf::from(p.trim()),
                _ => default_cache_path(env),
            }),
            Some("memory") => CacheStore::Memory,
            Some("redis") => match &c.redis_url {
                Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => {
                    CacheStore::Redis {
                        url: u.clone(),
                        prefix: c
                            .redis_prefix
                            .clone()
                            .unwrap_or_else(|| "tokenpace:cache:".to_owned()),
                    }
                }
                Some(_) => {
                    return Err(err(
                        "cache.redis_url",
                        "a Redis URL starts with redis:// (e.g. redis://127.0.0.1:6379/0)",
                    ));
                }
                None => {
                    return Err(err(
                        "cache.redis_url",
                        "store = \"redis\" needs redis_url (e.g. redis://127.0.0.1:6379/0)",
                    ));
                }
            },
            Some(other) => {
                return Err(err(
                    "cache.store",
                    format!("'{other}' is not a cache store (use sqlite, redis or memory)"),
                ));
            }
        };
        if c.redis_url.is_some() && !matches!(store, CacheStore::Redis { .. }) {
            return Err(err(
                "cache.redis_url",
                "redis_url is set but store is not \"redis\"; add store = \"redis\"",
            ));
        }
        let cache = CacheConfig {
            enabled: c.enabled.unwrap_or(true),
            store,
            ttl: c
                .ttl
                .as_ref()
                .map(|t| duration("cache.ttl", Some(t), Duration::ZERO))
                .transpose()?,
            memory_max_bytes: size(
                "cache.memory_max_bytes",
                c.memory_max_bytes.as_ref(),
                64 << 20,
            )?,
            max_bytes: size("cache.max_bytes", c.max_bytes.as_ref(), 1 << 30)?,
            shared_across_tenants: c.shared_across_tenants.unwrap_or(false),
            deterministic_only: c.deterministic_only.unwrap_or(false),
        };
        let mut keys: Vec<GatewayKey> = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let field = format!("keys[{i}]");
            let key = match (&k.key, &k.key_env) {
                (Some(key), None) => key.trim().to_owned(),
                (None, Some(var)) => env(var).map(|v| v.trim().to_owned()).unwrap_or_default(),
                _ => {
                    return Err(err(
                        field,
                        "give exactly one of key or key_env (key_env keeps the key out of the file)",
                    ));
                }
            };
            if key.is_empty() {
                return Err(err(
                    field,
                    match &k.key_env {
                        Some(var) => format!("environment variable {var} is not set or empty"),
                        None => "the key is empty".to_owned(),
                    },
                ));
            }
            if keys.iter().any(|o| o.key == key) {
                return Err(err(field, "the same key is given twice"));
            }
            keys.push(GatewayKey {
                tenant: k.tenant.clone().unwrap_or_else(|| format!("key-{}", i + 1)),
                key,
            });
        }
        if !listen.ip().is_loopback()
            && keys.is_empty()
            && !self.allow_unauthenticated.unwrap_or(false)
        {
            return Err(err(
                "listen",
                format!(
                    "{listen} is reachable from other machines and no gateway keys are configured: add [[keys]], or pass --allow-unauthenticated if that is really meant"
                ),
            ));
        }
        let max_request_bytes = size(
            "max_request_bytes",
            self.max_request_bytes.as_ref(),
            32 << 20,
        )?;
        let a = &self.admission;
        let backend = match a.backend.as_deref().map(str::trim) {
            None | Some("local") => {
                if a.redis_url.is_some() {
                    return Err(err(
                        "admission.redis_url",
                        "redis_url is set but backend is not \"redis\"; add backend = \"redis\"",
                    ));
                }
                AdmissionBackend::Local
            }
            Some("redis") => match &a.redis_url {
                Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => {
                    AdmissionBackend::Redis {
                        url: u.clone(),
                        prefix: a
                            .redis_prefix
                            .clone()
                            .unwrap_or_else(|| "tokenpace:limits:".to_owned()),
                    }
                }
                _ => {
                    return Err(err(
                        "admission.redis_url",
                        "backend = \"redis\" needs redis_url = \"redis://HOST:PORT/DB\"",
                    ));
                }
            },
            Some(other) => {
                return Err(err(
                    "admission.backend",
                    format!("'{other}' is not a backend (use local or redis)"),
                ));
            }
        };
        let admission = AdmissionConfig {
            backend,
            queue_timeout: duration(
                "admission.queue_timeout",
                a.queue_timeout.as_ref(),
                Duration::from_secs(30),
            )?,
            max_queue: a.max_queue.unwrap_or(1000),
        };
        let r = &self.retry;
        let defaults = RetryPolicy::default();
        let retry = RetryPolicy {
            max_attempts: match r.max_attempts {
                Some(0) => return Err(err("retry.max_attempts", "at least 1 (1 = no retries)")),
                Some(n) => n,
                None => defaults.max_attempts,
            },
            max_elapsed: duration(
                "retry.max_elapsed",
                r.max_elapsed.as_ref(),
                defaults.max_elapsed,
            )?,
            base: duration("retry.base", r.base.as_ref(), defaults.base)?,
            cap: duration("retry.cap", r.cap.as_ref(), defaults.cap)?,
        };
        let mut routes: Vec<RouteConfig> = Vec::new();
        for (i, raw) in self.routes.iter().enumerate() {
            let field = |f: &str| format!("routes[{i}].{f}");
            if raw.model.trim().is_empty() {
                return Err(err(field("model"), "name the model clients send"));
            }
            if raw.targets.is_empty() {
                return Err(err(
                    field("targets"),
                    "list at least one UPSTREAM/model target",
                ));
            }
            let mut targets = Vec::new();
            for t in &raw.targets {
                let Some((up, model)) = t.split_once('/') else {
                    return Err(err(
                        field("targets"),
                        format!("'{t}' must be UPSTREAM/model"),
                    ));
                };
                let Some(idx) = upstreams.iter().position(|u| u.name == up) else {
                    return Err(err(
                        field("targets"),
                        format!("'{t}' names no configured upstream '{up}'"),
                    ));
                };
                if model.is_empty() {
                    return Err(err(field("targets"), format!("'{t}' names no model")));
                }
                targets.push((idx, model.to_owned()));
            }
            let strategy = match raw.strategy.as_deref().map(str::trim) {
                None | Some("ordered") => Strategy::Ordered,
                Some("latency") => Strategy::Latency,
                Some("weighted") => {
                    if raw.weights.len() != targets.len() {
                        return Err(err(
                            field("weights"),
                            format!("give one weight per target ({} targets)", targets.len()),
                        ));
                    }
                    Strategy::Weighted(raw.weights.clone())
                }
                Some(other) => {
                    return Err(err(
                        field("strategy"),
                        format!("'{other}' is not a strategy (use ordered, weighted or latency)"),
                    ));
                }
            };
            let hedge = match raw.hedge_after.as_deref().map(str::trim) {
                None => None,
                Some(h) => {
                    let after = if h == "p95" {
                        HedgeAfter::P95
                    } else {
                        HedgeAfter::Fixed(duration(
                            &field("hedge_after"),
                            Some(&h.to_owned()),
                            Duration::ZERO,
                        )?)
                    };
                    let max_share = raw.hedge_max_share.unwrap_or(0.1);
                    if !(0.0..=1.0).contains(&max_share) {
                        return Err(err(
                            field("hedge_max_share"),
                            "a share between 0 and 1 (e.g. 0.1)",
                        ));
                    }
                    if targets.len() < 2 {
                        return Err(err(
                            field("hedge_after"),
                            "hedging needs at least two targets",
                        ));
                    }
                    Some(HedgeConfig { after, max_share })
                }
            };
            if routes.iter().any(|r| r.model == raw.model) {
                return Err(err(
                    field("model"),
                    format!("'{}' has two routes", raw.model),
                ));
            }
            routes.push(RouteConfig {
                model: raw.model.clone(),
                targets,
                strategy,
                hedge,
            });
        }
        let data_dir = match self.data_dir.as_deref().map(str::trim) {
            None => default_data_dir(env),
            Some("") => {
                return Err(err(
                    "data_dir",
                    "is empty: give a directory, or leave it out for the default",
                ));
            }
            Some(d) => PathBuf::from(d),
        };
        let defaults = BatchesConfig::default();
        let batches = BatchesConfig {
            concurrency: match self.batches.concurrency {
                Some(0) => return Err(err("batches.concurrency", "at least 1")),
                Some(n) => n,
                None => defaults.concurrency,
            },
            max_file_bytes: match size(
                "batches.max_file_bytes",
                self.batches.max_file_bytes.as_ref(),
                defaults.max_file_bytes,
            )? {
                0 => return Err(err("batches.max_file_bytes", "at least 1 byte")),
                n => n,
            },
            completion_window: match duration(
                "batches.completion_window",
                self.batches.completion_window.as_ref(),
                defaults.completion_window,
            )? {
                d if d < Duration::from_secs(1) => {
                    return Err(err(
                        "batches.completion_window",
                        "at least 1s (default 24h)",
                    ));
                }
                d => d,
            },
        };
        Ok(Config {
            listen,
            stream_headers_after: duration(
                "stream_headers_after",
                self.stream_headers_after.as_ref(),
                Duration::from_secs(10),
            )?,
            shutdown_grace: duration(
                "shutdown_grace",
                self.shutdown_grace.as_ref(),
                Duration::from_secs(30),
            )?,
            max_request_bytes: usize::try_from(max_request_bytes).unwrap_or(usize::MAX),
            coalesce: self.coalesce.unwrap_or(true),
            threads: match self.threads {
                Some(0) => return Err(err("threads", "at least 1")),
                Some(n) => n,
                None => std::thread::available_parallelism().map_or(2, |n| n.get()),
            },
            upstreams,
            aliases,
            cache,
            keys,
            admission,
            retry,
            routes,
            data_dir,
            batches,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn resolve(toml: &str) -> Result<Config, ConfigError> {
        RawConfig::from_toml(toml)?.resolve(&no_env)
    }

    #[test]
    fn data_dir_and_batches() {
        let c = resolve("[upstreams.sim]\nurl = \"http://127.0.0.1:9\"\n").unwrap();
        assert_eq!(c.data_dir, PathBuf::from("tokenpace-gateway-data"));
        assert_eq!(c.batches, BatchesConfig::default());
        assert_eq!(c.batches.max_file_bytes, 200_000_000);
        let xdg = |v: &str| (v == "XDG_DATA_HOME").then(|| "/xdg".to_owned());
        assert_eq!(
            default_data_dir(&xdg),
            PathBuf::from("/xdg/tokenpace/gateway")
        );
        let home = |v: &str| (v == "HOME").then(|| "/home/u".to_owned());
        assert_eq!(
            default_data_dir(&home),
            PathBuf::from("/home/u/.local/share/tokenpace/gateway")
        );
        let c = resolve(
            "data_dir = \"/srv/tp\"\n[batches]\nconcurrency = 4\nmax_file_bytes = \"1MiB\"\n[upstreams.sim]\nurl = \"http://127.0.0.1:9\"\n",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/tp"));
        assert_eq!(c.batches.concurrency, 4);
        assert_eq!(c.batches.max_file_bytes, 1 << 20);
        let e = resolve("[batches]\nconcurrency = 0\n[upstreams.sim]\nurl = \"http://x\"\n")
            .unwrap_err();
        assert_eq!(e.field, "batches.concurrency");
        let e = resolve("data_dir = \" \"\n[upstreams.sim]\nurl = \"http://x\"\n").unwrap_err();
        assert_eq!(e.field, "data_dir");
    }

    #[test]
    fn minimal_config() {
        let c = resolve("[upstreams.sim]\nurl = \"http://127.0.0.1:9\"\n").unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.upstreams[0].api, UpstreamApi::Both);
        assert!(c.upstreams[0].openai.is_some() && c.upstreams[0].anthropic.is_some());
        assert!(c.cache.enabled);
        assert!(matches!(c.cache.store, CacheStore::Sqlite(_)));
        assert_eq!(c.stream_headers_after, Duration::from_secs(10));
    }

    #[test]
    fn errors_name_the_field_and_fix() {
        let e = resolve("[upstreams.sim]\nurl = \"127.0.0.1:9\"\n").unwrap_err();
        assert_eq!(e.field, "upstreams.sim.url");
        let e = resolve("[upstreams.sim]\nurl = \"http://x\"\ntimeout = \"ten\"\n").unwrap_err();
        assert_eq!(e.field, "upstreams.sim.timeout");
        assert!(e.problem.contains("10s"), "{e}");
        let e = resolve("[upstreams.sim]\nurl = \"http://x\"\ncolour = 1\n").unwrap_err();
        assert!(e.problem.contains("colour"), "{e}");
        let e = resolve("[upstreams.sim]\nurl = \"http://x\"\napi_key_env = \"TP_NOPE\"\n")
            .unwrap_err();
        assert!(e.problem.contains("TP_NOPE is not set"), "{e}");
        let e = resolve("").unwrap_err();
        assert!(e.problem.contains("--upstream"), "{e}");
        let e = resolve("[upstreams.sim]\nurl = \"http://x\"\n[cache]\nstore = \"disk\"\n")
            .unwrap_err();
        assert_eq!(e.field, "cache.store");
    }

    #[test]
    fn public_listen_needs_keys_or_consent() {
        let base = "[upstreams.sim]\nurl = \"http://x\"\n";
        let e = resolve(&format!("listen = \"0.0.0.0:8080\"\n{base}")).unwrap_err();
        assert!(e.problem.contains("--allow-unauthenticated"), "{e}");
        resolve(&format!(
            "listen = \"0.0.0.0:8080\"\nallow_unauthenticated = true\n{base}"
        ))
        .unwrap();
        resolve(&format!(
            "listen = \"0.0.0.0:8080\"\n{base}[[keys]]\ntenant = \"a\"\nkey = \"k1\"\n"
        ))
        .unwrap();
    }

    #[test]
    fn model_routed_twice_is_an_error() {
        let e = resolve(
            "[upstreams.a]\nurl = \"http://x\"\nmodels = [\"m\"]\n[upstreams.b]\nurl = \"http://y\"\nmodels = [\"m\"]\n",
        )
        .unwrap_err();
        assert!(e.problem.contains("also routed"), "{e}");
    }

    #[test]
    fn keys_come_from_env_and_conventional_vars() {
        let env = |v: &str| match v {
            "OPENAI_API_KEY" => Some("sk-up".to_owned()),
            "TENANT_KEY" => Some("gw-1".to_owned()),
            _ => None,
        };
        let raw = RawConfig::from_toml(
            "[upstreams.openai]\nurl = \"https://api.openai.com/v1\"\n[[keys]]\ntenant = \"t\"\nkey_env = \"TENANT_KEY\"\n",
        )
        .unwrap();
        let c = raw.resolve(&env).unwrap();
        assert!(c.upstreams[0].has_key);
        assert_eq!(c.upstreams[0].api, UpstreamApi::OpenAi);
        assert_eq!(c.keys[0].key, "gw-1");
        assert!(!format!("{c:?}").contains("gw-1"));
        assert!(!format!("{c:?}").contains("sk-up"));
    }

    #[test]
    fn pacing_settings() {
        let c = resolve(
            "[upstreams.a]\nurl = \"http://x\"\nrpm = 500\ntpm = 200000\nwindow = \"2s\"\nttft_timeout = \"3s\"\n\
             [upstreams.b]\nurl = \"http://y\"\n\
             [admission]\nqueue_timeout = \"5s\"\nmax_queue = 10\n\
             [retry]\nmax_attempts = 5\n\
             [[routes]]\nmodel = \"chat\"\ntargets = [\"a/m1\", \"b/m2\"]\nstrategy = \"latency\"\nhedge_after = \"p95\"\n",
        )
        .unwrap();
        let a = &c.upstreams[0];
        assert_eq!(a.limits.requests, Some(500));
        assert_eq!(a.limits.tokens, Some(200_000));
        assert_eq!(a.window, Duration::from_secs(2));
        assert_eq!(a.ttft_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.upstreams[1].window, Duration::from_secs(60));
        assert_eq!(c.admission.queue_timeout, Duration::from_secs(5));
        assert_eq!(c.admission.max_queue, 10);
        assert_eq!(c.admission.backend, AdmissionBackend::Local);
        assert_eq!(c.retry.max_attempts, 5);
        assert_eq!(
            c.routes[0].targets,
            vec![(0, "m1".to_owned()), (1, "m2".to_owned())]
        );
        assert_eq!(c.routes[0].strategy, Strategy::Latency);
        assert_eq!(c.routes[0].hedge.unwrap().after, HedgeAfter::P95);
    }

    #[test]
    fn pacing_errors_name_the_field() {
        let base = "[upstreams.a]\nurl = \"http://x\"\n";
        let e = resolve(&format!(
            "{base}[[routes]]\nmodel = \"m\"\ntargets = [\"z/m\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e.field, "routes[0].targets");
        let e = resolve(&format!(
            "{base}[[routes]]\nmodel = \"m\"\ntargets = [\"a/m\"]\nhedge_after = \"1s\"\n"
        ))
        .unwrap_err();
        assert!(e.problem.contains("two targets"), "{e}");
        let e = resolve(&format!("{base}[admission]\nbackend = \"redis\"\n")).unwrap_err();
        assert_eq!(e.field, "admission.redis_url");
        let e = resolve(&format!("{base}[retry]\nmax_attempts = 0\n")).unwrap_err();
        assert_eq!(e.field, "retry.max_attempts");
        let e = resolve("[upstreams.a]\nurl = \"http://x\"\nwindow = \"0s\"\n").unwrap_err();
        assert_eq!(e.field, "upstreams.a.window");
    }
}
