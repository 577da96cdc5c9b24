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

use bytes::Bytes;
use client::{Api, Client, ClientOptions, Endpoint, ForwardRequest};
use http::{HeaderMap, HeaderName, Method};
use metrics::cost::{BillableTokens, PriceTable};
use protocol::sse::SseDecoder;
use serde_json::Value;
use tokio_util::task::TaskTracker;

use crate::cache::entry::{Body, Entry, RecordedEvent};
use crate::cache::key::{self, CacheKey};
use crate::cache::memory::MemoryTier;
use crate::cache::redis::RedisTier;
use crate::cache::shape::{self, EventClass};
use crate::cache::sqlite::SqliteTier;
use crate::cache::tiered::{Cache, Persistent, Tier};
use crate::config::{CacheStore, Config};
use crate::error::{DispatchError, ErrorKind};
use crate::flight::{Flight, Head, Subscription};
use crate::kind::Kind;
use crate::route::Routes;
use crate::telemetry::Telemetry;

/// The largest non-streamed upstream body relayed.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

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
fn passed_header(name: &HeaderName) -> bool {
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

fn is_sse(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

fn now_unix_ms() -> u64 {
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
        let Some(endpoint) = upstream.endpoint(kind.api()).cloned() else {
            return Err(DispatchError::new(
                ErrorKind::NotFound,
                "no endpoint for this API",
            ));
        };
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
        let key = key::cache_key(kind, &call.body, &upstream.name, &route.model, &scope)
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

        let upstream_name: Arc<str> = Arc::from(upstream.name.as_str());
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
            let flight = Flight::new(kind, upstream_name);
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

        // The upstream body: the routed model name, and for OpenAI streams always the
        // usage chunk (so a cached stream can answer a non-streamed request with usage,
        // and savings are counted); it is dropped again for clients that did not ask.
        let mut body = call.body;
        if let Some(obj) = body.as_object_mut() {
            if route.model != model {
                obj.insert("model".into(), Value::String(route.model.clone()));
            }
            if stream && kind.api() == Api::OpenAi && !include_usage {
                let opts = obj
                    .entry("stream_options")
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if let Some(o) = opts.as_object_mut() {
                    o.insert("include_usage".into(), Value::Bool(true));
                } else {
                    *opts = serde_json::json!({"include_usage": true});
                }
            }
        }
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let req = ForwardRequest {
            method: Method::POST,
            path: kind.path().to_owned(),
            headers: call.headers,
            body: bytes,
            deadline: Instant::now() + upstream.timeout,
        };
        let write = (policy.write && inner.cache.is_some()).then_some(key);
        let job = Job {
            dispatcher: self.clone(),
            flight,
            key: coalesce.then_some(key),
            write,
            endpoint,
            model: route.model,
        };
        inner.tasks.spawn(job.run(req));
        Ok(Answer::Live {
            sub,
            cache: status,
            stream,
            lookup,
        })
    }

    fn price_usd(&self, model: &str, api: Api, input: u64, output: u64) -> f64 {
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

/// One upstream call, run in its own task.
struct Job {
    dispatcher: Dispatcher,
    flight: Arc<Flight>,
    /// The coalescing map entry to remove at the end.
    key: Option<CacheKey>,
    /// Where to write the response, when it may be cached.
    write: Option<CacheKey>,
    endpoint: Endpoint,
    model: String,
}

impl Job {
    async fn run(self, req: ForwardRequest) {
        let flight = self.flight.clone();
        let kind = flight.kind;
        let upstream = flight.upstream.clone();
        let telemetry = self.dispatcher.inner.telemetry.clone();
        let client = self.dispatcher.inner.client.clone();
        let cancelled = || DispatchError::new(ErrorKind::Unavailable, "the request was cancelled");
        let forwarded = tokio::select! {
            () = flight.cancel.cancelled() => Err(None),
            r = client.forward(&self.endpoint, req) => r.map_err(Some),
        };
        let mut fwd = match forwarded {
            Ok(f) => f,
            Err(class) => {
                let e = match class {
                    Some(class) => {
                        telemetry.inc(
                            "tokenpace_upstream_requests_total",
                            &[("upstream", &upstream), ("status", "0")],
                        );
                        DispatchError::upstream(&upstream, &class)
                    }
                    None => cancelled(),
                };
                flight.update(|s| {
                    s.head = Some(Err(e.clone()));
                    s.end = Some(Err(e));
                });
                self.finish();
                return;
            }
        };
        let status = fwd.status;
        telemetry.inc(
            "tokenpace_upstream_requests_total",
            &[("upstream", &upstream), ("status", status.as_str())],
        );
        let streamed = status.is_success() && is_sse(&fwd.headers);
        let mut headers = HeaderMap::new();
        for (name, value) in &fwd.headers {
            if passed_header(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let sent_at = fwd.sent_at;
        let head = Head {
            status,
            headers,
            streamed,
            sent_at,
            upstream_headers: fwd.headers_at.saturating_duration_since(sent_at),
        };
        flight.update(|s| s.head = Some(Ok(head)));

        let mut ttft = None;
        let mut complete = false;
        // How the body ended. It is published to the subscribers only after the cache
        // write below: a client that has read the whole response and asks again must find
        // the entry, not a finished flight (which it would join as a coalesced miss).
        let end: Result<(), DispatchError>;
        let mut drain = false;
        if streamed {
            let mut decoder = SseDecoder::default();
            let mut decoded = Vec::new();
            let mut terminal = false;
            let mut errored = false;
            let ended: Result<(), DispatchError> = loop {
                let chunk = tokio::select! {
                    biased;
                    () = flight.cancel.cancelled() => break Err(cancelled()),
                    c = fwd.body.next() => c,
                };
                let at = sent_at.elapsed();
                let data = match chunk {
                    None => {
                        break if terminal || errored {
                            Ok(())
                        } else {
                            Err(DispatchError::new(
                                ErrorKind::Upstream,
                                format!(
                                    "upstream '{upstream}' ended the stream before its terminal event"
                                ),
                            ))
                        };
                    }
                    Some(Err(class)) => break Err(DispatchError::upstream(&upstream, &class)),
                    Some(Ok(data)) => data,
                };
                if let Err(e) = decoder.push_into(&data, &mut decoded) {
                    break Err(DispatchError::new(
                        ErrorKind::Upstream,
                        format!("upstream '{upstream}' sent an invalid stream: {e}"),
                    ));
                }
                if decoded.is_empty() {
                    continue;
                }
                ttft.get_or_insert(at);
                flight.update(|s| {
                    for ev in decoded.drain(..) {
                        let bytes = ev.encode();
                        let class = shape::classify(kind, &bytes);
                        match class {
                            EventClass::Terminal => terminal = true,
                            EventClass::Error => errored = true,
                            _ => {}
                        }
                        s.events.push(RecordedEvent { at, data: bytes });
                        s.classes.push(class);
                    }
                });
                if terminal {
                    // Anything after the terminal event is not relayed; the connection
                    // goes back to the pool when its body ends.
                    break Ok(());
                }
            };
            complete = ended.is_ok() && terminal && !errored;
            end = ended;
            drain = terminal;
        } else {
            let body = tokio::select! {
                () = flight.cancel.cancelled() => Err(None),
                b = fwd.body.collect(MAX_UPSTREAM_BODY) => b.map_err(Some),
            };
            ttft = Some(sent_at.elapsed());
            end = match body {
                Ok(bytes) => {
                    complete = status.is_success()
                        && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
                    flight.lock().chunks.push(bytes);
                    Ok(())
                }
                Err(class) => Err(match class {
                    Some(c) => DispatchError::upstream(&upstream, &c),
                    None => cancelled(),
                }),
            };
        }
        let e2e = sent_at.elapsed();
        if let Some(t) = ttft {
            telemetry.observe(
                "tokenpace_upstream_ttft_seconds",
                &[("upstream", &upstream)],
                t,
            );
        }
        telemetry.observe(
            "tokenpace_upstream_e2e_seconds",
            &[("upstream", &upstream)],
            e2e,
        );

        if complete {
            let (body, followers) = {
                let s = flight.lock();
                let body = if streamed {
                    Body::Sse(s.events.clone())
                } else {
                    Body::Json(crate::flight::concat(&s.chunks))
                };
                (body, s.followers)
            };
            let (input, output) = match &body {
                Body::Sse(events) => shape::usage(kind, events),
                Body::Json(json) => shape::usage_json(kind, json),
            };
            let api = kind.api();
            telemetry.add(
                "tokenpace_tokens_total",
                &[("direction", "input"), ("source", "upstream")],
                input as f64,
            );
            telemetry.add(
                "tokenpace_tokens_total",
                &[("direction", "output"), ("source", "upstream")],
                output as f64,
            );
            let usd = self.dispatcher.price_usd(&self.model, api, input, output);
            telemetry.add("tokenpace_cost_usd_total", &[("upstream", &upstream)], usd);
            if followers > 0 {
                telemetry.add(
                    "tokenpace_saved_tokens_total",
                    &[],
                    ((input + output) * followers) as f64,
                );
                telemetry.add("tokenpace_saved_usd_total", &[], usd * followers as f64);
            }
            if let (Some(key), Some(cache)) = (self.write, &self.dispatcher.inner.cache) {
                let entry = Entry {
                    kind,
                    created_unix_ms: now_unix_ms(),
                    upstream: upstream.to_string(),
                    model: self.model.clone(),
                    input_tokens: input,
                    output_tokens: output,
                    ttft: if streamed { ttft } else { None },
                    e2e,
                    body,
                };
                cache.put(key, Arc::new(entry));
            }
        }
        flight.update(|s| s.end = Some(end));
        self.finish();
        if drain {
            // Drain so the connection can be reused (bounded); nobody waits for this.
            let _ = tokio::time::timeout(Duration::from_millis(250), async {
                while let Some(Ok(_)) = fwd.body.next().await {}
            })
            .await;
        }
    }

    /// Removes the flight from the coalescing map (if it is still the one there).
    fn finish(&self) {
        if let Some(key) = &self.key {
            let mut flights = self
                .dispatcher
                .inner
                .flights
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if flights
                .get(key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                flights.remove(key);
            }
        }
    }
}
