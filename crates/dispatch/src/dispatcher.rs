//! The [`Dispatcher`]: one request from parsed body to answer — route, cache lookup,
//! coalescing, the upstream call, the cache write — and the owner of every task that
//! makes an upstream call.
//!
//! Order of a call: resolve the route (404 before anything else), decide the cache policy
//! (request directives, `deterministic_only`), compute the key, look the cache up, join an
//! identical call in flight or start one. The upstream call runs in its own task so that it
//! survives its first requester leaving while others still wait; it is cancelled when no
//! one waits any more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client::{Api, Client, ClientOptions};
use http::{HeaderMap, HeaderName};
use metrics::cost::{BillableTokens, PriceTable};
use serde_json::Value;
use tokio_util::task::TaskTracker;

use crate::admission::local::LocalBackend;
use crate::admission::queue::{Admission, Priority};
use crate::admission::redis::RedisBackend;
use crate::admission::{Backend, Lane, Limits};
use crate::cache::entry::Entry;
use crate::cache::key::{self, CacheKey};
use crate::cache::memory::MemoryTier;
use crate::cache::redis::RedisTier;
use crate::cache::sqlite::SqliteTier;
use crate::cache::tiered::{Cache, Persistent, Tier};
use crate::config::AdmissionBackend;
use crate::config::{CacheStore, Config};
use crate::error::{DispatchError, ErrorKind};
use crate::flight::{Flight, Subscription};
use crate::job::{Job, Prepared};
use crate::kind::Kind;
use crate::pick::Picker;
use crate::route::Routes;
use crate::telemetry::Telemetry;

/// What a request allows the cache to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Look entries up.
    pub read: bool,
    /// Write the response.
    pub write: bool,
    /// Accept only entries at most this old (`Cache-Control: max-age`).
    pub max_age: Option<Duration>,
}

impl CachePolicy {
    /// Read and write.
    pub const ON: CachePolicy = CachePolicy {
        read: true,
        write: true,
        max_age: None,
    };
    /// Neither (and no coalescing).
    pub const OFF: CachePolicy = CachePolicy {
        read: false,
        write: false,
        max_age: None,
    };

    /// Whether the request skips the cache and coalescing entirely.
    pub fn bypass(&self) -> bool {
        !self.read && !self.write
    }
}

/// How the cache treated a request (`x-tokenpace-cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Looked up (or written) but served live.
    Miss,
    /// Not involved.
    Bypass,
}

impl CacheStatus {
    /// `hit`, `miss` or `bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// One request to dispatch.
#[derive(Debug, Clone)]
pub struct Call {
    /// The operation.
    pub kind: Kind,
    /// The tenant (gateway key), `default` without keys.
    pub tenant: String,
    /// The parsed request body.
    pub body: Value,
    /// What the cache may do.
    pub policy: CachePolicy,
    /// Request headers passed on to the upstream (`anthropic-version`, `anthropic-beta`).
    pub headers: HeaderMap,
    /// Its class in the queue for tier capacity.
    pub priority: Priority,
    /// Its queue deadline (`tokenpace-queue-timeout`); the config's default otherwise.
    pub queue_timeout: Option<Duration>,
}

/// What a request gets.
#[derive(Debug)]
pub enum Answer {
    /// A cache hit.
    Hit {
        /// The entry.
        entry: Arc<Entry>,
        /// Its age.
        age: Duration,
        /// The tier that had it.
        tier: Tier,
        /// Whether the client asked for a stream.
        stream: bool,
        /// Whether a streamed client asked for the usage chunk.
        include_usage: bool,
        /// Time the lookup took.
        lookup: Duration,
    },
    /// A live upstream call (started by this request, or joined).
    Live {
        /// The call.
        sub: Subscription,
        /// `miss` or `bypass`.
        cache: CacheStatus,
        /// Whether the client asked for a stream.
        stream: bool,
        /// Time the cache lookup took (zero when there was none).
        lookup: Duration,
    },
}

struct Inner {
    config: Config,
    routes: Routes,
    client: Client,
    cache: Option<Cache>,
    flights: Mutex<HashMap<CacheKey, Arc<Flight>>>,
    tasks: TaskTracker,
    telemetry: Arc<Telemetry>,
    prices: PriceTable,
    admission: Admission,
    picker: Picker,
    /// Limits learned from upstream headers, per lane.
    learned: Mutex<HashMap<Lane, Limits>>,
    /// Per route: (requests, hedged requests), for the hedge share cap.
    hedges: Mutex<HashMap<String, (u64, u64)>>,
}

/// The dispatch engine. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").finish_non_exhaustive()
    }
}

/// Upstream response headers worth passing to the client.
pub(crate) fn passed_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "content-type"
            | "x-request-id"
            | "request-id"
            | "openai-processing-ms"
            | "openai-version"
            | "retry-after"
            | "retry-after-ms"
    ) || n.starts_with("x-ratelimit-")
        || n.starts_with("anthropic-ratelimit-")
}

pub(crate) fn is_sse(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Dispatcher {
    /// A dispatcher for `config`. A persistent cache tier that cannot be opened is
    /// reported in the returned warnings and left out (the gateway runs on without it).
    pub fn new(config: Config) -> Result<(Dispatcher, Vec<String>), DispatchError> {
        let mut warnings = Vec::new();
        let client = Client::new(ClientOptions {
            timeout: Duration::from_secs(24 * 3600),
            connect_timeout: config
                .upstreams
                .iter()
                .map(|u| u.connect_timeout)
                .max()
                .unwrap_or(Duration::from_secs(10)),
            max_idle_per_host: 1024,
            ..ClientOptions::default()
        })
        .map_err(|e| DispatchError::new(ErrorKind::Upstream, e.to_string()))?;
        let cache = if config.cache.enabled {
            let memory = MemoryTier::new(config.cache.memory_max_bytes);
            let persistent = match &config.cache.store {
                CacheStore::Memory => None,
                CacheStore::Sqlite(path) => match SqliteTier::open(path, config.cache.max_bytes) {
                    Ok(t) => Some(Persistent::Sqlite(t)),
                    Err(e) => {
                        warnings.push(format!(
                            "the cache file cannot be used, running with the in-memory cache only: {e}"
                        ));
                        None
                    }
                },
                CacheStore::Redis { url, prefix } => {
                    match RedisTier::new(url, prefix, config.cache.ttl) {
                        Ok(t) => Some(Persistent::Redis(t)),
                        Err(e) => {
                            warnings.push(format!(
                                "the Redis cache cannot be used, running with the in-memory cache only: {e}"
                            ));
                            None
                        }
                    }
                }
            };
            Some(Cache::new(memory, persistent, config.cache.ttl))
        } else {
            None
        };
        let routes = Routes::new(&config);
        let backend: Arc<dyn Backend> = match &config.admission.backend {
            AdmissionBackend::Local => Arc::new(LocalBackend::new()),
            AdmissionBackend::Redis { url, prefix } => match RedisBackend::new(url, prefix) {
                Ok(b) => Arc::new(b),
                Err(e) => {
                    return Err(DispatchError::new(
                        ErrorKind::Upstream,
                        format!("admission.redis_url: {e}"),
                    ));
                }
            },
        };
        let admission = Admission::new(backend, config.admission.max_queue);
        Ok((
            Dispatcher {
                inner: Arc::new(Inner {
                    routes,
                    client,
                    cache,
                    flights: Mutex::new(HashMap::new()),
                    tasks: TaskTracker::new(),
                    telemetry: Arc::new(Telemetry::new()),
                    prices: PriceTable::builtin(),
                    admission,
                    picker: Picker::new(),
                    learned: Mutex::new(HashMap::new()),
                    hedges: Mutex::new(HashMap::new()),
                    config,
                }),
            },
            warnings,
        ))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The routing table.
    pub fn routes(&self) -> &Routes {
        &self.inner.routes
    }

    /// The shared upstream client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The metrics registry.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.inner.telemetry
    }

    /// The cache, when enabled.
    pub fn cache(&self) -> Option<&Cache> {
        self.inner.cache.as_ref()
    }

    /// Calls in flight (coalescable ones).
    pub fn flights(&self) -> usize {
        self.inner
            .flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Dispatches one call.
    pub async fn call(&self, call: Call) -> Result<Answer, DispatchError> {
        let inner = &self.inner;
        let kind = call.kind;
        let Some(obj) = call.body.as_object() else {
            return Err(DispatchError::new(
                ErrorKind::InvalidRequest,
                "the request body must be a JSON object",
            ));
        };
        let model = match obj.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(DispatchError::invalid(
                    "model",
                    "'model' is required: name the model to call",
                ));
            }
            Some(_) => return Err(DispatchError::invalid("model", "'model' must be a string")),
        };
        let stream = match obj.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(DispatchError::invalid(
                    "stream",
                    "'stream' must be a boolean",
                ));
            }
        };
        let include_usage = match kind.api() {
            Api::Anthropic => true,
            Api::OpenAi => obj
                .get("stream_options")
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        let route = inner.routes.resolve(kind.api(), &model)?;
        let upstream = &inner.config.upstreams[route.upstream];
        let mut policy = call.policy;
        if inner.config.cache.deterministic_only && !key::deterministic(kind, &call.body) {
            policy = CachePolicy::OFF;
        }
        // Prefixed, so no tenant name can collide with the shared scope.
        let scope = if inner.config.cache.shared_across_tenants {
            "shared".to_owned()
        } else {
            format!("tenant:{}", call.tenant)
        };
        // A route with several targets keys on the route: any of its targets' answers
        // serves it.
        let (key_upstream, key_model) = match &route.named {
            Some(name) => (format!("route:{name}"), name.as_str()),
            None => (upstream.name.clone(), route.model.as_str()),
        };
        let key = key::cache_key(kind, &call.body, &key_upstream, key_model, &scope)
            .map_err(|e| DispatchError::new(ErrorKind::InvalidRequest, e.to_string()))?;

        let mut lookup = Duration::ZERO;
        if policy.read
            && let Some(cache) = &inner.cache
        {
            let started = Instant::now();
            let hit = cache.get(&key, policy.max_age).await;
            lookup = started.elapsed();
            if let Some(hit) = hit {
                self.count_hit(&hit.entry, hit.tier);
                return Ok(Answer::Hit {
                    entry: hit.entry,
                    age: hit.age,
                    tier: hit.tier,
                    stream,
                    include_usage,
                    lookup,
                });
            }
            inner.telemetry.inc("tokenpace_cache_misses_total", &[]);
        }
        let status = if policy.bypass() || inner.cache.is_none() {
            inner.telemetry.inc("tokenpace_cache_bypass_total", &[]);
            CacheStatus::Bypass
        } else {
            CacheStatus::Miss
        };
        let coalesce = inner.config.coalesce && !policy.bypass();

        // Targets in the order to try them (the route's strategy picks the first).
        let names: Vec<String> = route
            .targets
            .iter()
            .map(|t| format!("{}/{}", inner.config.upstreams[t.upstream].name, t.model))
            .collect();
        let mut jitter = crate::retry::Jitter::new(inner.tasks.len() as u64);
        let order = inner.picker.order(&route.strategy, &names, &mut jitter);
        let mut targets = Vec::with_capacity(order.len());
        for i in order {
            let t = &route.targets[i];
            let u = &inner.config.upstreams[t.upstream];
            let Some(endpoint) = u.endpoint(kind.api()).cloned() else {
                continue;
            };
            targets.push(Prepared {
                upstream: t.upstream,
                name: Arc::from(u.name.as_str()),
                model: t.model.clone(),
                endpoint,
                timeout: u.timeout,
                ttft_timeout: u.ttft_timeout,
                lane: Lane {
                    upstream: u.name.clone(),
                    model: t.model.clone(),
                },
                output_estimate: u.output_estimate,
            });
        }
        let Some(first) = targets.first() else {
            return Err(DispatchError::new(
                ErrorKind::NotFound,
                "no endpoint for this API",
            ));
        };
        let route_name = route.named.clone().unwrap_or_else(|| names[0].clone());
        if route.hedge.is_some() {
            self.count_request(&route_name);
        }

        let (flight, sub) = {
            let mut flights = inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            if coalesce
                && let Some(existing) = flights.get(&key)
                && let Some(sub) = existing.subscribe(include_usage, true)
            {
                inner
                    .telemetry
                    .inc("tokenpace_coalesced_requests_total", &[]);
                existing.update(|s| s.followers += 1);
                return Ok(Answer::Live {
                    sub,
                    cache: status,
                    stream,
                    lookup,
                });
            }
            let flight = Flight::new(kind, first.name.clone());
            let sub = flight.subscribe(include_usage, false);
            if coalesce {
                flights.insert(key, flight.clone());
            }
            (flight, sub)
        };
        let Some(sub) = sub else {
            return Err(DispatchError::new(
                ErrorKind::Unavailable,
                "the call was cancelled",
            ));
        };
        let write = (policy.write && inner.cache.is_some()).then_some(key);
        let job = Job {
            dispatcher: self.clone(),
            flight,
            key: coalesce.then_some(key),
            write,
            kind,
            stream,
            body: call.body,
            headers: call.headers,
            targets,
            route: route_name,
            hedge: route.hedge,
            tenant: call.tenant,
            priority: call.priority,
            queue_deadline: Instant::now()
                + call
                    .queue_timeout
                    .unwrap_or(inner.config.admission.queue_timeout),
        };
        inner.tasks.spawn(job.run());
        Ok(Answer::Live {
            sub,
            cache: status,
            stream,
            lookup,
        })
    }

    /// The admission queue.
    pub fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    /// Upstream health (TTFT averages, errors).
    pub fn picker(&self) -> &Picker {
        &self.inner.picker
    }

    /// Limits learned from `lane`'s headers.
    pub(crate) fn learned_limits(&self, lane: &Lane) -> Option<Limits> {
        self.inner
            .learned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(lane)
            .copied()
    }

    /// Records limits an upstream announced (only the ones it sent).
    pub(crate) fn learn_limits(&self, lane: &Lane, seen: Limits) {
        if seen.is_unlimited() {
            return;
        }
        let mut all = self.inner.learned.lock().unwrap_or_else(|p| p.into_inner());
        let e = all.entry(lane.clone()).or_default();
        e.requests = seen.requests.or(e.requests);
        e.tokens = seen.tokens.or(e.tokens);
        e.input_tokens = seen.input_tokens.or(e.input_tokens);
        e.output_tokens = seen.output_tokens.or(e.output_tokens);
    }

    fn count_request(&self, route: &str) {
        let mut all = self.inner.hedges.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(route.to_owned()).or_default().0 += 1;
    }

    /// Whether one more hedge keeps `route` within its share.
    pub(crate) fn hedge_budget(&self, route: &str, share: f64) -> bool {
        let all = self.inner.hedges.lock().unwrap_or_else(|p| p.into_inner());
        let (requests, hedged) = all.get(route).copied().unwrap_or_default();
        (hedged + 1) as f64 <= share * requests as f64
    }

    pub(crate) fn count_hedge(&self, route: &str) {
        let mut all = self.inner.hedges.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(route.to_owned()).or_default().1 += 1;
    }

    /// Removes `flight` from the coalescing map if it is still the one under `key`.
    pub(crate) fn remove_flight(&self, key: &CacheKey, flight: &Arc<Flight>) {
        let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
        if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            flights.remove(key);
        }
    }

    pub(crate) fn price_usd(&self, model: &str, api: Api, input: u64, output: u64) -> f64 {
        let Some(price) = self.inner.prices.lookup(model) else {
            return 0.0;
        };
        let tokens = match api {
            Api::OpenAi => BillableTokens::openai(input, 0, output),
            Api::Anthropic => BillableTokens::anthropic(input, 0, 0, output),
        };
        price.cost(&tokens).usd()
    }

    fn count_hit(&self, entry: &Entry, tier: Tier) {
        let t = &self.inner.telemetry;
        t.inc("tokenpace_cache_hits_total", &[("tier", tier.as_str())]);
        let (i, o) = (entry.input_tokens, entry.output_tokens);
        t.add(
            "tokenpace_tokens_total",
            &[("direction", "input"), ("source", "cache")],
            i as f64,
        );
        t.add(
            "tokenpace_tokens_total",
            &[("direction", "output"), ("source", "cache")],
            o as f64,
        );
        t.add("tokenpace_saved_tokens_total", &[], (i + o) as f64);
        t.add(
            "tokenpace_saved_usd_total",
            &[],
            self.price_usd(&entry.model, entry.kind.api(), i, o),
        );
    }

    /// Stops taking calls and waits up to `grace` for calls in flight; then cancels the
    /// rest and flushes the cache's persistent tier.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.tasks.close();
        if tokio::time::timeout(grace, inner.tasks.wait())
            .await
            .is_err()
        {
            let flights: Vec<Arc<Flight>> = inner
                .flights
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            for f in flights {
                f.cancel.cancel();
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), inner.tasks.wait()).await;
        }
        if let Some(cache) = &inner.cache {
            cache.flush().await;
        }
    }

    /// Updates gauges read at scrape time (cache bytes and tier counters).
    pub fn refresh_gauges(&self) {
        if let Some(cache) = &self.inner.cache {
            let s = cache.stats();
            let t = &self.inner.telemetry;
            t.set("tokenpace_cache_bytes", &[], s.memory_bytes as f64);
            t.set(
                "tokenpace_cache_evictions_total",
                &[("tier", "memory")],
                s.evictions_memory as f64,
            );
            t.set(
                "tokenpace_cache_evictions_total",
                &[("tier", "sqlite")],
                s.evictions_sqlite as f64,
            );
            t.set("tokenpace_cache_stores_total", &[], s.stores as f64);
            t.set(
                "tokenpace_cache_store_errors_total",
                &[("tier", "sqlite")],
                s.store_errors_sqlite as f64,
            );
            t.set(
                "tokenpace_cache_store_errors_total",
                &[("tier", "redis")],
                s.store_errors_redis as f64,
            );
        }
    }
}
