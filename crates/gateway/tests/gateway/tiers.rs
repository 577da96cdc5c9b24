//! The persistent cache tiers behind a real gateway: the SQLite file across a restart
//! (and a corrupt file, which must not stop the gateway), and Redis shared by two
//! gateways (and Redis going away, which must not fail requests).

use std::time::Duration;

use dispatch::Dispatcher;
use testkit::RedisServer;
use tokenpace_gateway::{AppState, RunningGateway};

use super::support::*;

fn sqlite_toml(sim: &sim::RunningSim, path: &std::path::Path) -> String {
    sim_toml(
        sim,
        "",
        &format!(
            "[cache]\nstore = \"sqlite\"\npath = \"{}\"\n",
            path.display()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_entries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache/gateway.sqlite");
    let sim = sim().await;
    let c = client();
    let model = "sim:tokens=6,seed=9";
    let body = chat(model, false);

    let first = gateway(config(&sqlite_toml(&sim, &path))).await;
    let r = post_chat(&c, &first, &body, &[]).await;
    assert_eq!(cache_status(&r), "miss");
    let recorded = r.bytes().await.unwrap();
    first.stop().await.unwrap();
    assert!(path.exists(), "the cache file was written");

    let second = gateway(config(&sqlite_toml(&sim, &path))).await;
    let r = post_chat(&c, &second, &body, &[]).await;
    assert_eq!(cache_status(&r), "hit", "served from the file");
    assert_eq!(r.bytes().await.unwrap(), recorded);
    // And in the other shape, from the same entry.
    let r = post_chat(&c, &second, &chat(model, true), &[]).await;
    assert_eq!(cache_status(&r), "hit");
    assert!(ends_with_done(&testkit::read_sse(r).await.unwrap()));
    assert_eq!(upstream_requests(&sim, model).await, 1);
    assert_eq!(
        metric(
            &metrics(&second).await,
            "tokenpace_cache_hits_total{tier=\"sqlite\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_sqlite_file_is_a_warning_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.sqlite");
    std::fs::write(
        &path,
        b"this is not a database, just garbage bytes \x00\x01\x02\xff".repeat(64),
    )
    .unwrap();
    let sim = sim().await;
    let (dispatcher, warnings) = Dispatcher::new(config(&sqlite_toml(&sim, &path))).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&path.display().to_string()),
        "names the file: {}",
        warnings[0]
    );
    assert!(warnings[0].contains("in-memory"), "{}", warnings[0]);
    let gw = RunningGateway::spawn("127.0.0.1:0".parse().unwrap(), AppState::new(dispatcher))
        .await
        .unwrap();
    let c = client();
    let body = chat("sim:tokens=3", false);
    let r = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(
        (r.status().as_u16(), cache_status(&r).as_str()),
        (200, "miss")
    );
    let r = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(
        (r.status().as_u16(), cache_status(&r).as_str()),
        (200, "hit")
    );
    assert_eq!(
        metric(
            &metrics(&gw).await,
            "tokenpace_cache_hits_total{tier=\"memory\"}"
        ),
        Some(1.0)
    );
    gw.stop().await.unwrap();
    assert_eq!(
        &std::fs::read(&path).unwrap()[..23],
        b"this is not a database,",
        "the gateway left the file alone"
    );
}

fn redis_toml(sim: &sim::RunningSim, redis: &RedisServer) -> String {
    sim_toml(
        sim,
        "",
        &format!(
            "[cache]\nstore = \"redis\"\nredis_url = \"{}\"\nredis_prefix = \"gw-test:\"\n",
            redis.url()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_entry_written_by_one_gateway_is_a_hit_in_another() {
    let redis = RedisServer::start().unwrap();
    let sim = sim().await;
    let a = gateway(config(&redis_toml(&sim, &redis))).await;
    let b = gateway(config(&redis_toml(&sim, &redis))).await;
    let c = client();
    let model = "sim:tokens=5,seed=3";
    let body = chat(model, true);

    let r = post_chat(&c, &a, &body, &[]).await;
    assert_eq!(cache_status(&r), "miss");
    let written = testkit::read_sse(r).await.unwrap();
    assert!(ends_with_done(&written));
    // The Redis write runs in the background: wait for it.
    let cache = a.state.dispatcher.cache().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            cache.stats().persistent_stores == 1
        })
        .await,
        "{:?}",
        cache.stats()
    );

    let r = post_chat(&c, &b, &body, &[]).await;
    assert_eq!(
        cache_status(&r),
        "hit",
        "gateway B read A's entry from Redis"
    );
    let read = testkit::read_sse(r).await.unwrap();
    assert_eq!(stream_text(&read), stream_text(&written));
    assert_eq!(upstream_requests(&sim, model).await, 1);
    let text = metrics(&b).await;
    assert_eq!(
        metric(&text, "tokenpace_cache_hits_total{tier=\"redis\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "tokenpace_cache_store_errors_total{tier=\"redis\"}"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_fails_open() {
    let mut redis = RedisServer::start().unwrap();
    let sim = sim().await;
    let gw = gateway(config(&redis_toml(&sim, &redis))).await;
    let c = client();

    let r = post_chat(&c, &gw, &chat("sim:tokens=3,seed=1", false), &[]).await;
    assert_eq!(r.status(), 200);
    redis.stop();

    // A new request misses memory and asks the dead Redis: served anyway.
    let model = "sim:tokens=3,seed=2";
    let r = post_chat(&c, &gw, &chat(model, false), &[]).await;
    assert_eq!(
        (r.status().as_u16(), cache_status(&r).as_str()),
        (200, "miss")
    );
    drop(r.bytes().await.unwrap());
    // Memory still serves what this gateway stored.
    let r = post_chat(&c, &gw, &chat(model, false), &[]).await;
    assert_eq!(
        (r.status().as_u16(), cache_status(&r).as_str()),
        (200, "hit")
    );
    let cache = gw.state.dispatcher.cache().unwrap();
    let errors_counted = eventually(Duration::from_secs(5), || async {
        let text = metrics(&gw).await;
        metric(&text, "tokenpace_cache_store_errors_total{tier=\"redis\"}").unwrap_or(0.0) > 0.0
    })
    .await;
    assert!(errors_counted, "{:?}", cache.stats());
}
