//! The shared admission ledger against a real `redis-server` (started per test by
//! testkit): the sliding-window rule and its exact `RetryIn`, settle, cancel, pause,
//! calibration, daily limits, two gateways hammering one lane concurrently without ever
//! exceeding it together, and Redis going away (fail open to the in-process fallback, fast)
//! and coming back (the fallback's charges carried over).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testkit::RedisServer;
use tokenpace_dispatch::admission::redis::{Admitted, Ledger, RedisBackend};
use tokenpace_dispatch::admission::{Backend, Charge, Lane, Limits, NotNow, Observed};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

fn lane() -> Lane {
    Lane {
        upstream: "openai".into(),
        model: "gpt-4o-mini".into(),
    }
}

fn charge(input: u64, output: u64) -> Charge {
    Charge {
        requests: 1,
        input,
        output,
    }
}

/// A gateway's backend. The timeout is generous: these tests are about the rule, and the
/// machine may be loaded; the outage tests set their own.
fn gateway(redis: &RedisServer, prefix: &str) -> RedisBackend {
    RedisBackend::new(&redis.url(), prefix)
        .unwrap()
        .with_timeout(Duration::from_secs(2))
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

async fn admit(backend: &RedisBackend, limits: Limits, window: Duration, c: Charge) -> Admitted {
    let admitted = backend.reserve(&lane(), limits, window, c).await.unwrap();
    assert_eq!(admitted.ledger, Ledger::Redis);
    admitted
}

async fn refused(backend: &RedisBackend, limits: Limits, window: Duration, c: Charge) -> Duration {
    match backend.reserve(&lane(), limits, window, c).await {
        Err(NotNow::RetryIn(wait)) => wait,
        other => panic!("expected RetryIn, got {other:?}"),
    }
}

/// Asserts that `wait` is exactly "until `expires` on the Redis clock", read between
/// `before` and `after` (same host, same clock; 2 ms for rounding to µs).
fn assert_wait_until(wait: Duration, expires: Duration, before: Duration, after: Duration) {
    let slack = Duration::from_millis(2);
    let shortest = expires.saturating_sub(after).saturating_sub(slack);
    let longest = expires.saturating_sub(before) + slack;
    assert!(
        shortest <= wait && wait <= longest,
        "wait {wait:?} not in [{shortest:?}, {longest:?}]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_admits_to_the_limit_and_retry_in_is_exact() {
    let redis = RedisServer::start().unwrap();
    let backend = gateway(&redis, "exact:");
    let window = Duration::from_secs(2);
    let limits = Limits {
        requests: Some(3),
        tokens: Some(1_000),
        ..Limits::default()
    };
    let first = admit(&backend, limits, window, charge(400, 0)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = admit(&backend, limits, window, charge(0, 400)).await;
    assert!(second.at_unix >= first.at_unix + Duration::from_millis(300));
    assert_ne!(first.reservation.id, second.reservation.id);

    // 800 + 300 > 1000: the first charge must leave, and no more than it.
    let before = unix_now();
    let wait = refused(&backend, limits, window, charge(300, 0)).await;
    assert_wait_until(wait, first.at_unix + window, before, unix_now());
    // 800 + 700: both must leave; the second leaves 300 ms later.
    let before = unix_now();
    let wait = refused(&backend, limits, window, charge(0, 700)).await;
    assert_wait_until(wait, second.at_unix + window, before, unix_now());

    // The third request fits the tokens; a fourth waits for the first to leave.
    admit(&backend, limits, window, charge(100, 100)).await;
    let before = unix_now();
    let wait = refused(&backend, limits, window, charge(0, 0)).await;
    assert_wait_until(wait, first.at_unix + window, before, unix_now());

    // Retrying early is refused with the rest of the wait; retrying on time is admitted.
    tokio::time::sleep(wait / 2).await;
    let rest = refused(&backend, limits, window, charge(1, 0)).await;
    assert!(rest < wait, "{rest:?} >= {wait:?}");
    tokio::time::sleep(rest).await;
    admit(&backend, limits, window, charge(200, 0)).await;
    assert_eq!(backend.errors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_settle_gives_capacity_back_across_instances() {
    let redis = RedisServer::start().unwrap();
    let a = gateway(&redis, "settle:");
    let b = gateway(&redis, "settle:");
    let window = Duration::from_secs(5);
    let limits = Limits {
        tokens: Some(1_000),
        ..Limits::default()
    };
    let big = admit(&a, limits, window, charge(100, 700)).await;
    refused(&b, limits, window, charge(100, 400)).await;
    // Used 150 of the 800 reserved: the rest is free at once, on every instance.
    Backend::settle(&a, &big.reservation, charge(100, 50)).await;
    let other = admit(&b, limits, window, charge(100, 400)).await;
    // Usage beyond the reservation is counted too.
    Backend::settle(&b, &other.reservation, charge(100, 800)).await;
    let wait = refused(&a, limits, window, charge(1, 0)).await;
    assert!(wait > Duration::from_secs(3), "{wait:?}");
    assert_eq!(a.errors() + b.errors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cancel_removes_the_charge() {
    let redis = RedisServer::start().unwrap();
    let backend = gateway(&redis, "cancel:");
    let window = Duration::from_secs(5);
    let limits = Limits {
        requests: Some(1),
        ..Limits::default()
    };
    let only = admit(&backend, limits, window, charge(10, 10)).await;
    refused(&backend, limits, window, charge(10, 10)).await;
    Backend::cancel(&backend, &only.reservation).await;
    admit(&backend, limits, window, charge(10, 10)).await;
    // Cancelling twice, or settling a cancelled charge, changes nothing.
    Backend::cancel(&backend, &only.reservation).await;
    Backend::settle(&backend, &only.reservation, charge(1, 1)).await;
    refused(&backend, limits, window, charge(10, 10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pause_blocks_every_instance_until_its_time() {
    let redis = RedisServer::start().unwrap();
    let a = gateway(&redis, "pause:");
    let b = gateway(&redis, "pause:");
    let window = Duration::from_secs(5);
    let limits = Limits {
        requests: Some(100),
        ..Limits::default()
    };
    let paused_at = Instant::now();
    Backend::pause(&a, &lane(), Duration::from_millis(800)).await;
    // A shorter pause does not shorten it.
    Backend::pause(&b, &lane(), Duration::from_millis(100)).await;
    let wait = refused(&b, limits, window, charge(1, 1)).await;
    let longest = Duration::from_millis(800);
    let shortest = longest.saturating_sub(paused_at.elapsed() + Duration::from_millis(5));
    assert!(
        shortest <= wait && wait <= longest,
        "{wait:?} not in [{shortest:?}, {longest:?}]"
    );
    tokio::time::sleep(wait).await;
    admit(&b, limits, window, charge(1, 1)).await;
    admit(&a, limits, window, charge(1, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_an_oversized_charge_is_never() {
    let redis = RedisServer::start().unwrap();
    let backend = gateway(&redis, "never:");
    let limits = Limits {
        tokens: Some(1_000),
        ..Limits::default()
    };
    let result = backend
        .reserve(&lane(), limits, Duration::from_secs(60), charge(900, 200))
        .await;
    let Err(NotNow::Never(message)) = result else {
        panic!("expected Never, got {result:?}");
    };
    assert!(
        message.contains("1,100") && message.contains("1,000") && message.contains("60s"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_calibration_holds_the_upstreams_deficit_until_its_reset() {
    let redis = RedisServer::start().unwrap();
    let backend = gateway(&redis, "calibrate:");
    let window = Duration::from_secs(5);
    let limits = Limits {
        requests: Some(10),
        tokens: Some(1_000),
        ..Limits::default()
    };
    admit(&backend, limits, window, charge(100, 0)).await;
    // The upstream has 500 tokens left where the ledger computes 900.
    let observed_at = Instant::now();
    let reset = Duration::from_secs(1);
    let observed = Observed {
        remaining_tokens: Some(500),
        reset_tokens: Some(reset),
        ..Observed::default()
    };
    Backend::calibrate(&backend, &lane(), limits, window, observed).await;
    admit(&backend, limits, window, charge(250, 250)).await;
    // Full; the deficit leaves at the upstream's reset, well before the real charges.
    let wait = refused(&backend, limits, window, charge(1, 0)).await;
    assert!(
        wait <= reset && wait + observed_at.elapsed() + Duration::from_millis(5) >= reset,
        "{wait:?}"
    );
    // Reporting more left than the ledger computes changes nothing.
    let loose = Observed {
        remaining_tokens: Some(1_000),
        remaining_requests: Some(10),
        ..Observed::default()
    };
    Backend::calibrate(&backend, &lane(), limits, window, loose).await;
    refused(&backend, limits, window, charge(1, 0)).await;
    tokio::time::sleep(reset).await;
    admit(&backend, limits, window, charge(1, 0)).await;
    assert_eq!(backend.errors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_daily_limits_hold_for_a_day_in_their_own_keys() {
    let redis = RedisServer::start().unwrap();
    let backend = gateway(&redis, "daily:");
    let window = Duration::from_secs(1);
    let daily = Limits {
        requests_per_day: Some(2),
        ..Limits::default()
    };
    admit(&backend, daily, window, charge(1, 1)).await;
    admit(&backend, daily, window, charge(1, 1)).await;
    let wait = refused(&backend, daily, window, charge(1, 1)).await;
    assert!(wait > Duration::from_secs(23 * 3600), "{wait:?}");

    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let base = backend.lane_prefix(&lane());
    let day_ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{base}dw"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(day_ttl > 23 * 3600 * 1000, "{day_ttl}");

    // Without a daily limit the minute path keeps no daily tally.
    let other = Lane {
        upstream: "anthropic".into(),
        model: "claude".into(),
    };
    backend
        .reserve(&other, Limits::default(), window, charge(1, 1))
        .await
        .unwrap();
    let base = backend.lane_prefix(&other);
    let exists: u64 = redis::cmd("EXISTS")
        .arg(format!("{base}dw"))
        .arg(format!("{base}dc"))
        .arg(format!("{base}ds"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{base}w"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(0 < ttl && ttl <= 2_000, "{ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_idle_lanes_vanish() {
    let redis = RedisServer::start().unwrap();
    let backend = gateway(&redis, "idle:");
    let window = Duration::from_millis(200);
    let limits = Limits {
        requests: Some(5),
        tokens: Some(1_000),
        ..Limits::default()
    };
    let admitted = admit(&backend, limits, window, charge(10, 10)).await;
    Backend::settle(&backend, &admitted.reservation, charge(5, 5)).await;
    admit(&backend, limits, window, charge(10, 10)).await;

    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = || redis::cmd("KEYS").arg("idle:*").clone();
    let held: Vec<String> = keys().query_async(&mut conn).await.unwrap();
    assert!(!held.is_empty());
    // Window (200 ms) plus the 1 s slack, plus room for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let held: Vec<String> = keys().query_async(&mut conn).await.unwrap();
        if held.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still held: {held:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A vanished lane starts over cleanly, with ids above the old ones.
    let again = admit(&backend, limits, window, charge(10, 10)).await;
    assert!(again.reservation.id > admitted.reservation.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_scripts_are_reloaded_after_a_flush() {
    let redis = RedisServer::start().unwrap();
    let backend = gateway(&redis, "flush:");
    let limits = Limits {
        requests: Some(5),
        ..Limits::default()
    };
    let window = Duration::from_secs(5);
    admit(&backend, limits, window, charge(1, 1)).await;
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    admit(&backend, limits, window, charge(1, 1)).await;
    assert_eq!(backend.errors(), 0);
}

/// A tiny deterministic generator, so the hammering is reproducible per seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The key property: two gateways on one Redis, many tasks each, never admit more than
/// the limits in any window-long interval (checked on the admission times the script
/// returns, which are the Redis clock's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_gateways_never_exceed_the_limits_together() {
    let redis = RedisServer::start().unwrap();
    let gateways = [
        Arc::new(gateway(&redis, "shared:")),
        Arc::new(gateway(&redis, "shared:")),
    ];
    let window = Duration::from_secs(1);
    let limits = Limits {
        requests: Some(20),
        tokens: Some(2_000),
        ..Limits::default()
    };
    let deadline = Instant::now() + 3 * window + Duration::from_millis(200);
    let mut tasks = JoinSet::new();
    for task in 0..16u64 {
        let backend = Arc::clone(&gateways[usize::from(task % 2 == 1)]);
        tasks.spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (task + 1).wrapping_mul(0x2545_f491));
            // (gateway, admission time, final charge)
            let mut admitted = Vec::new();
            while Instant::now() < deadline {
                let reserved = charge(1 + rng.below(150), 1 + rng.below(100));
                match backend.reserve(&lane(), limits, window, reserved).await {
                    Ok(a) => {
                        assert_eq!(a.ledger, Ledger::Redis);
                        // Some requests use less than reserved, some are never sent.
                        let settled = match rng.below(4) {
                            0 => {
                                Backend::cancel(&*backend, &a.reservation).await;
                                Charge::default()
                            }
                            1 => {
                                let used = charge(reserved.input, reserved.output / 2);
                                Backend::settle(&*backend, &a.reservation, used).await;
                                used
                            }
                            _ => reserved,
                        };
                        admitted.push((task % 2, a.at_unix, settled));
                    }
                    Err(NotNow::RetryIn(wait)) => {
                        // Retry sooner than told, to keep the lane contended.
                        let nap = Duration::from_millis(rng.below(30));
                        tokio::time::sleep(wait.min(nap)).await;
                    }
                    Err(NotNow::Never(message)) => panic!("{message}"),
                }
            }
            admitted
        });
    }
    let mut admitted = Vec::new();
    while let Some(log) = tasks.join_next().await {
        admitted.extend(log.unwrap());
    }
    admitted.sort_by_key(|&(_, at, _)| at);

    for &(_, end, _) in &admitted {
        let (mut requests, mut tokens) = (0, 0);
        for &(_, at, c) in &admitted {
            // The interval (end - window, end]: what counted when `end` was admitted.
            if at + window > end && at <= end {
                requests += c.requests;
                tokens += c.input + c.output;
            }
        }
        assert!(
            requests <= 20 && tokens <= 2_000,
            "{requests} requests, {tokens} tokens in the window ending at {end:?}"
        );
    }
    // The test only means something if the lane was busy on both gateways.
    let by_first = admitted.iter().filter(|&&(g, _, _)| g == 0).count();
    assert!(admitted.len() >= 30, "{} admitted", admitted.len());
    assert!(
        by_first > 0 && by_first < admitted.len(),
        "{by_first} of {}",
        admitted.len()
    );
    assert_eq!(gateways[0].errors() + gateways[1].errors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_falls_back_at_once_and_counts_errors() {
    let mut redis = RedisServer::start().unwrap();
    let backend = RedisBackend::new(&redis.url(), "down:").unwrap();
    let window = Duration::from_secs(5);
    let limits = Limits {
        requests: Some(3),
        ..Limits::default()
    };
    admit(&backend, limits, window, charge(1, 1)).await;
    redis.stop();

    let timed = |started: Instant| {
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "took {took:?}");
    };
    // Fail open: the fallback enforces the limits on its own (it cannot see the charge
    // held in the unreachable Redis).
    let mut held = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let a = backend
            .reserve(&lane(), limits, window, charge(1, 1))
            .await
            .unwrap();
        timed(started);
        assert_eq!(a.ledger, Ledger::Fallback);
        held.push(a);
    }
    let started = Instant::now();
    let wait = refused(&backend, limits, window, charge(1, 1)).await;
    timed(started);
    assert!(wait > Duration::from_secs(4), "{wait:?}");
    for op in 0..4 {
        let started = Instant::now();
        match op {
            0 => Backend::settle(&backend, &held[0].reservation, charge(1, 0)).await,
            1 => Backend::cancel(&backend, &held[1].reservation).await,
            2 => Backend::pause(&backend, &lane(), Duration::from_millis(10)).await,
            _ => {
                let observed = Observed {
                    remaining_requests: Some(0),
                    ..Observed::default()
                };
                Backend::calibrate(&backend, &lane(), limits, window, observed).await;
            }
        }
        timed(started);
    }
    assert!(backend.errors() >= 6, "{}", backend.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_silent_server_costs_at_most_the_timeout() {
    // Accepts connections (the kernel completes the handshake) but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    let backend = RedisBackend::new(&url, "silent:")
        .unwrap()
        .with_timeout(Duration::from_millis(100));
    let limits = Limits {
        requests: Some(1),
        ..Limits::default()
    };
    for _ in 0..3 {
        let started = Instant::now();
        let _ = backend
            .reserve(&lane(), limits, Duration::from_secs(1), charge(1, 1))
            .await;
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    assert_eq!(backend.errors(), 3);
}

/// A TCP forwarder to Redis that can be cut (connections dropped, new ones closed at
/// once) and restored, to take Redis away from one gateway and give it back.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<tokio::sync::watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::watch::channel(0u64).0);
        let task = tokio::spawn({
            let (up, cut) = (Arc::clone(&up), Arc::clone(&cut));
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let mut cut = cut.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            }
        });
        Proxy {
            addr,
            up,
            cut,
            task,
        }
    }

    fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_recovery_carries_the_fallbacks_charges_over() {
    let redis = RedisServer::start().unwrap();
    let proxy = Proxy::start(redis.port()).await;
    let a = RedisBackend::new(&proxy.url(), "recover:")
        .unwrap()
        .with_timeout(Duration::from_secs(1))
        .with_reconnect_backoff(Duration::from_millis(100));
    let b = gateway(&redis, "recover:");
    let window = Duration::from_secs(10);
    let limits = Limits {
        requests: Some(5),
        ..Limits::default()
    };
    admit(&a, limits, window, charge(1, 1)).await;
    admit(&a, limits, window, charge(1, 1)).await;

    proxy.cut();
    let mut during = Vec::new();
    loop {
        match a.reserve(&lane(), limits, window, charge(1, 1)).await {
            Ok(admitted) => {
                assert_eq!(admitted.ledger, Ledger::Fallback);
                during.push(admitted.reservation);
            }
            Err(NotNow::RetryIn(_)) => break,
            Err(NotNow::Never(message)) => panic!("{message}"),
        }
        assert!(during.len() <= 5, "the fallback enforces the limits too");
    }
    assert_eq!(during.len(), 5);
    // Cancelled during the outage: stays in process, never reaches Redis.
    Backend::cancel(&a, &during[4]).await;
    assert!(a.errors() > 0);

    proxy.restore();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Redis held 2 and the fallback 4: after the carry-over, 6 of 5, for everyone.
    refused(&a, limits, window, charge(1, 1)).await;
    refused(&b, limits, window, charge(1, 1)).await;
    // Reservations admitted by the fallback are followed into Redis.
    Backend::cancel(&a, &during[0]).await;
    Backend::cancel(&a, &during[1]).await;
    admit(&b, limits, window, charge(1, 1)).await;
    refused(&b, limits, window, charge(1, 1)).await;
    assert_eq!(b.errors(), 0);
}
