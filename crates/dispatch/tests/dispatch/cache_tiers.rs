//! The cache tiers against real stores: two gateways sharing one `redis-server`
//! (started per test by testkit, on its own port), Redis dying mid-way (the cache fails
//! open, fast), and the SQLite file surviving a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use testkit::RedisServer;
use tokenpace_dispatch::cache::entry::{Body, Entry, RecordedEvent};
use tokenpace_dispatch::cache::key::CacheKey;
use tokenpace_dispatch::cache::memory::MemoryTier;
use tokenpace_dispatch::cache::redis::RedisTier;
use tokenpace_dispatch::cache::sqlite::SqliteTier;
use tokenpace_dispatch::cache::tiered::{Cache, Persistent, Tier, unix_now_ms};
use tokenpace_dispatch::kind::Kind;

fn entry() -> Arc<Entry> {
    Arc::new(Entry {
        kind: Kind::Chat,
        created_unix_ms: unix_now_ms(),
        upstream: "sim".into(),
        model: "sim-small".into(),
        input_tokens: 9,
        output_tokens: 2,
        ttft: Some(Duration::from_millis(40)),
        e2e: Duration::from_millis(90),
        body: Body::Sse(vec![
            RecordedEvent {
                at: Duration::from_millis(40),
                data: Bytes::from_static(b"data: {\"choices\":[]}\n\n"),
            },
            RecordedEvent {
                at: Duration::from_millis(90),
                data: Bytes::from_static(b"data: [DONE]\n\n"),
            },
        ]),
    })
}

/// A gateway's cache on the shared Redis (a fresh prefix per test keeps tests apart
/// even if they ever share a server).
fn redis_gateway(redis: &RedisServer, prefix: &str, ttl: Option<Duration>) -> Cache {
    let tier = RedisTier::new(&redis.url(), prefix, ttl).unwrap();
    Cache::new(MemoryTier::new(1 << 20), Some(Persistent::Redis(tier)), ttl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_entry_put_by_one_gateway_is_a_hit_in_another() {
    let redis = RedisServer::start().unwrap();
    let a = redis_gateway(&redis, "share:", None);
    let b = redis_gateway(&redis, "share:", None);
    let key = CacheKey([1; 32]);
    let stored = entry();

    assert!(b.get(&key, None).await.is_none());
    a.put(key, Arc::clone(&stored));
    a.flush().await;
    assert_eq!(a.stats().persistent_stores, 1);

    let hit = b.get(&key, None).await.unwrap();
    assert_eq!(hit.tier, Tier::Redis);
    assert_eq!(*hit.entry, *stored);
    // Promoted: the next lookup stays in process.
    assert_eq!(b.get(&key, None).await.unwrap().tier, Tier::Memory);
    let stats = b.stats();
    assert_eq!(
        (stats.hits_redis, stats.hits_memory, stats.misses),
        (1, 1, 1)
    );
    assert_eq!(stats.store_errors_redis, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_entries_expire_after_the_ttl() {
    let redis = RedisServer::start().unwrap();
    let ttl = Duration::from_millis(600);
    let a = redis_gateway(&redis, "ttl:", Some(ttl));
    let b = redis_gateway(&redis, "ttl:", Some(ttl));
    let key = CacheKey([2; 32]);
    a.put(key, entry());
    a.flush().await;
    // Fresh in both (unless the loaded machine already took the whole TTL).
    let written = Instant::now();
    let hit = b.get(&key, None).await;
    if written.elapsed() < ttl / 2 {
        assert_eq!(hit.map(|h| h.tier), Some(Tier::Redis));
    }

    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    // Gone by age in memory (a), by Redis's PX and by age in Redis (b).
    assert!(a.get(&key, None).await.is_none());
    assert!(b.get(&key, None).await.is_none());
    assert_eq!(
        a.stats().store_errors_redis + b.stats().store_errors_redis,
        0
    );

    // A request's own max_age is stricter than the TTL.
    let key = CacheKey([3; 32]);
    let mut old = (*entry()).clone();
    old.created_unix_ms -= 300;
    a.put(key, Arc::new(old));
    a.flush().await;
    assert!(
        b.get(&key, Some(Duration::from_millis(100)))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_way_fails_open_quickly() {
    let mut redis = RedisServer::start().unwrap();
    let a = redis_gateway(&redis, "down:", None);
    let key = CacheKey([4; 32]);
    a.put(key, entry());
    a.flush().await;
    assert_eq!(a.stats().store_errors_redis, 0);

    redis.stop();

    // Memory still answers what this gateway stored.
    assert_eq!(a.get(&key, None).await.unwrap().tier, Tier::Memory);
    // A miss in memory goes to the dead Redis: an error, counted, served as a miss.
    for n in 10..20 {
        let started = Instant::now();
        assert!(a.get(&CacheKey([n; 32]), None).await.is_none());
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "lookup {n} took {took:?}");
    }
    let started = Instant::now();
    a.put(CacheKey([5; 32]), entry());
    assert!(started.elapsed() < Duration::from_secs(1), "put waited");
    a.flush().await;

    let stats = a.stats();
    assert!(stats.store_errors_redis >= 11, "{stats:?}");
    assert_eq!(stats.misses, 10);
    assert!(
        a.get(&CacheKey([5; 32]), None).await.is_some(),
        "stored in memory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_does_not_stop_the_cache() {
    // A port nothing listens on: the tier is built without contacting it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tier = RedisTier::new(&format!("redis://:hunter2@127.0.0.1:{port}/"), "x:", None).unwrap();
    let cache = Cache::new(
        MemoryTier::new(1 << 20),
        Some(Persistent::Redis(tier)),
        None,
    );
    let started = Instant::now();
    assert!(cache.get(&CacheKey([6; 32]), None).await.is_none());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(cache.stats().store_errors_redis, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_entry_survives_dropping_and_reopening_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/cache.db");
    let key = CacheKey([7; 32]);
    let stored = entry();
    {
        let sqlite = SqliteTier::open(&path, 1 << 20).unwrap();
        let cache = Cache::new(
            MemoryTier::new(1 << 20),
            Some(Persistent::Sqlite(sqlite)),
            None,
        );
        cache.put(key, Arc::clone(&stored));
        cache.flush().await;
        assert!(cache.stats().sqlite_bytes > 0);
    }
    let sqlite = SqliteTier::open(&path, 1 << 20).unwrap();
    let cache = Cache::new(
        MemoryTier::new(1 << 20),
        Some(Persistent::Sqlite(sqlite)),
        None,
    );
    let hit = cache.get(&key, None).await.unwrap();
    assert_eq!(hit.tier, Tier::Sqlite);
    assert_eq!(*hit.entry, *stored);
    assert_eq!(cache.stats().hits_sqlite, 1);
}
