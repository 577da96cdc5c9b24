//! The exact response cache as the request path sees it: the [`MemoryTier`] in front of
//! an optional persistent tier ([`SqliteTier`] or [`RedisTier`]), with expiry, promotion,
//! background write-through and counters.
//!
//! It owns the policy between the tiers: lookups go memory first, then the persistent
//! tier, whose hits are promoted into memory; stores go to memory at once and to the
//! persistent tier in a background task this cache owns, so a request never waits for a
//! disk or a network. The persistent tier is an optimisation: its errors never fail a
//! request; they are counted and logged at most once per [`WARN_INTERVAL`] per tier, so a
//! dead Redis does not flood the log. It leaves the key to [`key`](super::key), the
//! entry's encoding to [`entry`](super::entry) and `/metrics` rendering to the gateway,
//! which reads [`Cache::stats`].
//!
//! Ages use the wall clock against [`Entry::created_unix_ms`]: the one place wall time
//! is right, since an entry's age crosses processes (a restart, another gateway).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::entry::Entry;
use super::key::CacheKey;
use super::memory::MemoryTier;
use super::redis::RedisTier;
use super::sqlite::SqliteTier;

/// At most one warning per tier per this interval; the rest are counted.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Background writes in flight beyond which further writes are skipped (and counted):
/// a slow persistent tier must not turn into unbounded memory of queued entries.
const MAX_PENDING_WRITES: usize = 1024;

/// What a persistent tier can fail with. Messages name the file or the (redacted) URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The cache file's directory could not be created.
    #[error("creating the cache directory '{}': {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cache file could not be opened: not a SQLite database, corrupt, unreadable.
    #[error(
        "opening the cache database '{}': {source} (delete the file to start an empty cache)",
        path.display()
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The cache file was written by a newer build with another layout.
    #[error(
        "the cache database '{}' has schema version {found}; this build reads version {expected} \
         (use another file, or delete this one)",
        path.display()
    )]
    Schema {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The version this build writes.
        expected: i64,
    },
    /// The thread serving the cache file could not be started.
    #[error("starting the thread for the cache database '{}': {source}", path.display())]
    Thread {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A statement on the cache file failed.
    #[error("cache database '{}': {source}", path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The thread serving the cache file has stopped.
    #[error("the cache database '{}' is closed", path.display())]
    Closed {
        /// The file.
        path: PathBuf,
    },
    /// The Redis URL did not parse.
    #[error("invalid Redis URL '{url}': {reason}")]
    RedisUrl {
        /// The URL, credentials redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// A Redis operation failed.
    #[error("Redis {op} on {url}: {message}")]
    Redis {
        /// The URL, credentials redacted.
        url: String,
        /// The operation (`connect`, `GET`, `SET`, ...).
        op: &'static str,
        /// The driver's or server's message, password scrubbed.
        message: String,
    },
    /// A Redis operation took longer than the tier's timeout.
    #[error("Redis {op} on {url} timed out after {after:?}")]
    RedisTimeout {
        /// The URL, credentials redacted.
        url: String,
        /// The operation.
        op: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// Connecting failed recently; operations fail at once until the back-off passes.
    #[error("Redis on {url} is unavailable (connecting failed {since:?} ago)")]
    RedisUnavailable {
        /// The URL, credentials redacted.
        url: String,
        /// Since the failed connect.
        since: Duration,
    },
}

/// The persistent tier behind memory.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "built once per cache and never moved on a hot path; boxing would only add a hop"
)]
pub enum Persistent {
    /// An embedded SQLite file (one gateway).
    Sqlite(SqliteTier),
    /// A Redis shared by several gateways.
    Redis(RedisTier),
}

impl Persistent {
    /// Which tier this is.
    pub fn tier(&self) -> Tier {
        match self {
            Persistent::Sqlite(_) => Tier::Sqlite,
            Persistent::Redis(_) => Tier::Redis,
        }
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Entry>, StoreError> {
        match self {
            Persistent::Sqlite(t) => t.get(key).await,
            Persistent::Redis(t) => t.get(key).await,
        }
    }

    /// Stores; returns the rows evicted to make room (Redis evicts by its own policy).
    async fn put(&self, key: CacheKey, entry: &Entry) -> Result<u64, StoreError> {
        match self {
            Persistent::Sqlite(t) => t.put(key, entry).await,
            Persistent::Redis(t) => t.put(key, entry).await.map(|()| 0),
        }
    }
}

/// Where a hit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// The in-process LRU.
    Memory,
    /// The SQLite file.
    Sqlite,
    /// The shared Redis.
    Redis,
}

impl Tier {
    /// The label metrics and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Sqlite => "sqlite",
            Tier::Redis => "redis",
        }
    }
}

/// A cache hit.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The entry.
    pub entry: Arc<Entry>,
    /// The tier that had it.
    pub tier: Tier,
    /// How long ago it was created (wall clock; zero if created "in the future" by a
    /// gateway whose clock runs ahead).
    pub age: Duration,
}

/// Live counters; read them through [`Cache::stats`].
#[derive(Debug, Default)]
struct CacheStats {
    hits_memory: AtomicU64,
    hits_sqlite: AtomicU64,
    hits_redis: AtomicU64,
    misses: AtomicU64,
    expired: AtomicU64,
    stores: AtomicU64,
    persistent_stores: AtomicU64,
    writes_skipped: AtomicU64,
    evictions_memory: AtomicU64,
    evictions_sqlite: AtomicU64,
    errors_sqlite: AtomicU64,
    errors_redis: AtomicU64,
}

/// The counters at one moment. Counters only grow; `memory_bytes`, `memory_entries` and
/// `sqlite_bytes` are levels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStatsSnapshot {
    /// Hits served from memory.
    pub hits_memory: u64,
    /// Hits served from SQLite (then promoted into memory).
    pub hits_sqlite: u64,
    /// Hits served from Redis (then promoted into memory).
    pub hits_redis: u64,
    /// Lookups that found nothing fresh enough (expired ones included).
    pub misses: u64,
    /// Lookups that found an entry older than the TTL (a subset of `misses`).
    pub expired: u64,
    /// Entries stored (into memory, and queued for the persistent tier).
    pub stores: u64,
    /// Background writes the persistent tier completed.
    pub persistent_stores: u64,
    /// Background writes skipped because too many were already in flight.
    pub writes_skipped: u64,
    /// Entries evicted from memory to make room.
    pub evictions_memory: u64,
    /// Rows evicted from SQLite to make room.
    pub evictions_sqlite: u64,
    /// Bytes held in memory.
    pub memory_bytes: u64,
    /// Entries held in memory.
    pub memory_entries: u64,
    /// Encoded bytes in the SQLite file (0 without one).
    pub sqlite_bytes: u64,
    /// SQLite operations that failed.
    pub store_errors_sqlite: u64,
    /// Redis operations that failed (timeouts and fast failures while down included).
    pub store_errors_redis: u64,
}

impl CacheStatsSnapshot {
    /// All hits.
    pub fn hits(&self) -> u64 {
        self.hits_memory + self.hits_sqlite + self.hits_redis
    }
}

/// Rate-limits the warnings of one tier.
#[derive(Debug, Default)]
struct WarnGate {
    /// Milliseconds after the cache's start of the last warning, plus one (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl WarnGate {
    /// Whether to log now; if so, how many warnings were suppressed since the last one.
    fn admit(&self, started: Instant) -> Option<u64> {
        let now = u64::try_from(started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        let interval = WARN_INTERVAL.as_millis() as u64;
        if (last == 0 || now.saturating_sub(last) >= interval)
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

struct Inner {
    memory: MemoryTier,
    persistent: Option<Persistent>,
    ttl: Option<Duration>,
    stats: CacheStats,
    started: Instant,
    warn_sqlite: WarnGate,
    warn_redis: WarnGate,
    write_slots: Arc<Semaphore>,
}

/// The tiered exact response cache.
pub struct Cache {
    inner: Arc<Inner>,
    /// Owns the background writes to the persistent tier (STYLE: every task has an
    /// owner); [`Cache::flush`] waits for them.
    writes: TaskTracker,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("memory_max_bytes", &self.inner.memory.max_bytes())
            .field("persistent", &self.inner.persistent)
            .field("ttl", &self.inner.ttl)
            .field("pending_writes", &self.writes.len())
            .finish()
    }
}

impl Cache {
    /// A cache of `memory` in front of `persistent`, treating entries older than `ttl`
    /// as absent.
    pub fn new(memory: MemoryTier, persistent: Option<Persistent>, ttl: Option<Duration>) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                memory,
                persistent,
                ttl,
                stats: CacheStats::default(),
                started: Instant::now(),
                warn_sqlite: WarnGate::default(),
                warn_redis: WarnGate::default(),
                write_slots: Arc::new(Semaphore::new(MAX_PENDING_WRITES)),
            }),
            writes: TaskTracker::new(),
        }
    }

    /// The freshest entry under `key` no older than the TTL and `max_age`: memory first,
    /// then the persistent tier (a hit there is promoted into memory). A persistent-tier
    /// error is a miss (counted and logged).
    pub async fn get(&self, key: &CacheKey, max_age: Option<Duration>) -> Option<Hit> {
        let inner = &self.inner;
        let now = unix_now_ms();
        let mut expired = false;
        if let Some(entry) = inner.memory.get(key) {
            let age = age_of(&entry, now);
            if inner.outlived_ttl(age) {
                inner.memory.remove(key);
                expired = true;
            } else if within(max_age, age) {
                inner.stats.hits_memory.fetch_add(1, Ordering::Relaxed);
                return Some(Hit {
                    entry,
                    tier: Tier::Memory,
                    age,
                });
            }
            // Only this process writes the SQLite file, and every write lands in memory
            // too, so its copy is no fresher than this one; a shared Redis may hold a
            // newer one from another gateway.
            if let Some(Persistent::Sqlite(_)) = &inner.persistent {
                if expired {
                    self.remove_in_background(*key);
                }
                return inner.miss(expired);
            }
        }
        let Some(persistent) = &inner.persistent else {
            return inner.miss(expired);
        };
        let tier = persistent.tier();
        match persistent.get(key).await {
            Ok(Some(entry)) => {
                let age = age_of(&entry, now);
                if inner.outlived_ttl(age) {
                    expired = true;
                    if tier == Tier::Sqlite {
                        self.remove_in_background(*key);
                    }
                } else if within(max_age, age) {
                    let entry = Arc::new(entry);
                    let evicted = inner.memory.put(*key, Arc::clone(&entry));
                    inner
                        .stats
                        .evictions_memory
                        .fetch_add(evicted, Ordering::Relaxed);
                    inner.stats.hit(tier).fetch_add(1, Ordering::Relaxed);
                    return Some(Hit { entry, tier, age });
                }
            }
            Ok(None) => {}
            Err(e) => inner.store_error(tier, "reading", &e),
        }
        inner.miss(expired)
    }

    /// Stores `entry`: into memory now, into the persistent tier in the background (the
    /// caller never waits for it; a failure is counted and logged). Needs a tokio runtime
    /// for the background write; without one only memory is written.
    pub fn put(&self, key: CacheKey, entry: Arc<Entry>) {
        let inner = &self.inner;
        inner.stats.stores.fetch_add(1, Ordering::Relaxed);
        let evicted = inner.memory.put(key, Arc::clone(&entry));
        inner
            .stats
            .evictions_memory
            .fetch_add(evicted, Ordering::Relaxed);
        if inner.persistent.is_none() {
            return;
        }
        let Ok(permit) = Arc::clone(&inner.write_slots).try_acquire_owned() else {
            inner.stats.writes_skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            inner.stats.writes_skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let inner = Arc::clone(inner);
        self.writes.spawn_on(
            async move {
                let _permit = permit;
                inner.write_through(key, &entry).await;
            },
            &runtime,
        );
    }

    /// Waits for the background writes queued so far, then checkpoints SQLite. Called at
    /// shutdown (phase: after the listener stops accepting and in-flight requests end,
    /// before the process exits), so what was cached survives the restart.
    pub async fn flush(&self) {
        self.writes.close();
        self.writes.wait().await;
        self.writes.reopen();
        if let Some(Persistent::Sqlite(sqlite)) = &self.inner.persistent
            && let Err(e) = sqlite.flush().await
        {
            self.inner.store_error(Tier::Sqlite, "flushing", &e);
        }
    }

    /// The counters now.
    pub fn stats(&self) -> CacheStatsSnapshot {
        let s = &self.inner.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStatsSnapshot {
            hits_memory: load(&s.hits_memory),
            hits_sqlite: load(&s.hits_sqlite),
            hits_redis: load(&s.hits_redis),
            misses: load(&s.misses),
            expired: load(&s.expired),
            stores: load(&s.stores),
            persistent_stores: load(&s.persistent_stores),
            writes_skipped: load(&s.writes_skipped),
            evictions_memory: load(&s.evictions_memory),
            evictions_sqlite: load(&s.evictions_sqlite),
            memory_bytes: self.inner.memory.bytes(),
            memory_entries: self.inner.memory.len() as u64,
            sqlite_bytes: match &self.inner.persistent {
                Some(Persistent::Sqlite(sqlite)) => sqlite.bytes(),
                _ => 0,
            },
            store_errors_sqlite: load(&s.errors_sqlite),
            store_errors_redis: load(&s.errors_redis),
        }
    }

    /// The persistent tier, if any.
    pub fn persistent(&self) -> Option<&Persistent> {
        self.inner.persistent.as_ref()
    }

    /// Deletes an expired SQLite row off the request path.
    fn remove_in_background(&self, key: CacheKey) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        self.writes.spawn_on(
            async move {
                if let Some(Persistent::Sqlite(sqlite)) = &inner.persistent
                    && let Err(e) = sqlite.remove(&key).await
                {
                    inner.store_error(Tier::Sqlite, "removing an expired entry from", &e);
                }
            },
            &runtime,
        );
    }
}

impl Inner {
    /// Counts a miss (and whether an expired entry caused it); always `None`.
    fn miss(&self, expired: bool) -> Option<Hit> {
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        if expired {
            self.stats.expired.fetch_add(1, Ordering::Relaxed);
        }
        None
    }

    fn outlived_ttl(&self, age: Duration) -> bool {
        self.ttl.is_some_and(|ttl| age > ttl)
    }

    async fn write_through(&self, key: CacheKey, entry: &Entry) {
        let Some(persistent) = &self.persistent else {
            return;
        };
        match persistent.put(key, entry).await {
            Ok(evicted) => {
                self.stats.persistent_stores.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .evictions_sqlite
                    .fetch_add(evicted, Ordering::Relaxed);
            }
            Err(e) => self.store_error(persistent.tier(), "writing", &e),
        }
    }

    fn store_error(&self, tier: Tier, doing: &str, error: &StoreError) {
        let (counter, gate) = match tier {
            Tier::Redis => (&self.stats.errors_redis, &self.warn_redis),
            Tier::Sqlite | Tier::Memory => (&self.stats.errors_sqlite, &self.warn_sqlite),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = gate.admit(self.started) {
            tracing::warn!(
                tier = tier.as_str(),
                suppressed,
                "cache: {doing} the {} tier failed, serving without it: {error}",
                tier.as_str()
            );
        }
    }
}

impl CacheStats {
    fn hit(&self, tier: Tier) -> &AtomicU64 {
        match tier {
            Tier::Memory => &self.hits_memory,
            Tier::Sqlite => &self.hits_sqlite,
            Tier::Redis => &self.hits_redis,
        }
    }
}

/// Milliseconds since the Unix epoch by the wall clock: the time to stamp
/// [`Entry::created_unix_ms`] with.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn age_of(entry: &Entry, now_ms: u64) -> Duration {
    Duration::from_millis(now_ms.saturating_sub(entry.created_unix_ms))
}

fn within(max_age: Option<Duration>, age: Duration) -> bool {
    max_age.is_none_or(|max| age <= max)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::entry::Body;
    use crate::kind::Kind;

    fn entry(created_unix_ms: u64) -> Arc<Entry> {
        Arc::new(Entry {
            kind: Kind::Chat,
            created_unix_ms,
            upstream: "sim".into(),
            model: "m".into(),
            input_tokens: 1,
            output_tokens: 2,
            ttft: None,
            e2e: Duration::from_millis(3),
            body: Body::Json(Bytes::from_static(b"{}")),
        })
    }

    #[tokio::test]
    async fn memory_only_hits_and_misses() {
        let cache = Cache::new(MemoryTier::new(1 << 20), None, None);
        let key = CacheKey([1; 32]);
        assert!(cache.get(&key, None).await.is_none());
        cache.put(key, entry(unix_now_ms()));
        let hit = cache.get(&key, None).await.unwrap();
        assert_eq!(hit.tier, Tier::Memory);
        assert!(hit.age < Duration::from_secs(60));
        let stats = cache.stats();
        assert_eq!((stats.hits(), stats.misses, stats.stores), (1, 1, 1));
        assert!(stats.memory_bytes > 0);
        assert_eq!(stats.memory_entries, 1);
    }

    #[tokio::test]
    async fn old_entries_are_misses_by_ttl_and_by_max_age() {
        let cache = Cache::new(
            MemoryTier::new(1 << 20),
            None,
            Some(Duration::from_secs(60)),
        );
        let (old, young) = (CacheKey([1; 32]), CacheKey([2; 32]));
        cache.put(old, entry(unix_now_ms() - 120_000));
        cache.put(young, entry(unix_now_ms() - 10_000));
        assert!(cache.get(&old, None).await.is_none(), "older than the TTL");
        assert_eq!(cache.stats().memory_entries, 1, "expired entry dropped");
        assert!(
            cache
                .get(&young, Some(Duration::from_secs(5)))
                .await
                .is_none()
        );
        assert!(
            cache
                .get(&young, Some(Duration::from_secs(30)))
                .await
                .is_some()
        );
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.expired, stats.hits()), (2, 1, 1));
    }

    #[tokio::test]
    async fn a_sqlite_hit_is_promoted_into_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        let key = CacheKey([7; 32]);
        {
            let sqlite = SqliteTier::open(&path, 1 << 20).unwrap();
            let cache = Cache::new(
                MemoryTier::new(1 << 20),
                Some(Persistent::Sqlite(sqlite)),
                None,
            );
            cache.put(key, entry(unix_now_ms()));
            cache.flush().await;
            assert_eq!(cache.stats().persistent_stores, 1);
        }
        let sqlite = SqliteTier::open(&path, 1 << 20).unwrap();
        let cache = Cache::new(
            MemoryTier::new(1 << 20),
            Some(Persistent::Sqlite(sqlite)),
            None,
        );
        assert_eq!(cache.get(&key, None).await.unwrap().tier, Tier::Sqlite);
        assert_eq!(cache.get(&key, None).await.unwrap().tier, Tier::Memory);
    }

    #[test]
    fn warnings_are_rate_limited() {
        let gate = WarnGate::default();
        let started = Instant::now();
        assert_eq!(gate.admit(started), Some(0));
        assert_eq!(gate.admit(started), None);
        assert_eq!(gate.admit(started), None);
        // Pretend the last warning was long ago.
        gate.last.store(1, Ordering::Relaxed);
        let long_ago = Instant::now() - WARN_INTERVAL - Duration::from_secs(1);
        assert_eq!(gate.admit(long_ago), Some(2));
    }
}
