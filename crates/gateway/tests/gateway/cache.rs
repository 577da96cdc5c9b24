//! The exact cache through a real gateway in front of the simulator: hits and misses in
//! both shapes and both dialects, replay pacing, the per-request directives, what is never
//! cached (errors, truncated streams), tenants, `deterministic_only`, and the savings
//! counters. The simulator's `/stats` counts what really reached the upstream.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streamed_miss_then_hit_with_identical_body() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();
    let model = "sim:tokens=8,seed=1";
    let body = chat(model, false);

    let first = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(first.status(), 200);
    assert_eq!(cache_status(&first), "miss");
    assert_eq!(
        header(&first, "x-tokenpace-upstream").as_deref(),
        Some("sim")
    );
    assert!(header(&first, "age").is_none(), "a miss has no age");
    assert!(
        header(&first, "server-timing").is_some_and(|t| t.contains("upstream;dur=")),
        "{:?}",
        first.headers()
    );
    let first_bytes = first.bytes().await.unwrap();

    let second = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(second.status(), 200);
    assert_eq!(cache_status(&second), "hit");
    assert_eq!(
        header(&second, "x-tokenpace-upstream").as_deref(),
        Some("sim")
    );
    let age: u64 = header(&second, "age").unwrap().parse().unwrap();
    assert!(age < 60, "age {age}");
    assert!(
        header(&second, "server-timing").is_some_and(|t| t.contains("cache;dur=")),
        "{:?}",
        second.headers()
    );
    assert_eq!(
        header(&second, "content-type").as_deref(),
        Some("application/json")
    );
    let second_bytes = second.bytes().await.unwrap();
    assert_eq!(first_bytes, second_bytes, "the hit is the recorded body");
    let v: Value = serde_json::from_slice(&second_bytes).unwrap();
    assert!(!body_text(&v).is_empty(), "{v}");
    assert_eq!(upstream_requests(&sim, model).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_miss_then_streamed_hit() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();
    let model = "sim:tokens=12,itl=2ms";
    let body = chat(model, true);

    let first = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(first.status(), 200);
    assert_eq!(cache_status(&first), "miss");
    assert!(
        header(&first, "content-type").is_some_and(|t| t.starts_with("text/event-stream")),
        "{:?}",
        first.headers()
    );
    let live = testkit::read_sse(first).await.unwrap();
    assert!(ends_with_done(&live), "{:?}", live.data());

    let second = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(cache_status(&second), "hit");
    assert!(header(&second, "age").is_some());
    assert!(header(&second, "content-type").is_some_and(|t| t.starts_with("text/event-stream")));
    let replay = testkit::read_sse(second).await.unwrap();
    assert!(ends_with_done(&replay), "{:?}", replay.data());
    let text = stream_text(&live);
    assert!(!text.is_empty());
    assert_eq!(stream_text(&replay), text);
    assert_eq!(replay.data(), live.data(), "the same events, in order");
    assert_eq!(upstream_requests(&sim, model).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_serves_the_other_shape() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();

    // Recorded as JSON, served as a stream.
    let model = "sim:tokens=9,seed=2";
    let json_first = post_chat(&c, &gw, &chat(model, false), &[]).await;
    assert_eq!(cache_status(&json_first), "miss");
    let recorded: Value = json_first.json().await.unwrap();
    let streamed = post_chat(&c, &gw, &chat(model, true), &[]).await;
    assert_eq!(cache_status(&streamed), "hit");
    let streamed = testkit::read_sse(streamed).await.unwrap();
    assert!(ends_with_done(&streamed), "{:?}", streamed.data());
    assert!(!body_text(&recorded).is_empty());
    assert_eq!(stream_text(&streamed), body_text(&recorded));
    assert_eq!(upstream_requests(&sim, model).await, 1);

    // Recorded as a stream, served as JSON.
    let model = "sim:tokens=7,seed=3";
    let stream_first = post_chat(&c, &gw, &chat(model, true), &[]).await;
    assert_eq!(cache_status(&stream_first), "miss");
    let recorded = testkit::read_sse(stream_first).await.unwrap();
    assert!(ends_with_done(&recorded));
    let as_json = post_chat(&c, &gw, &chat(model, false), &[]).await;
    assert_eq!(cache_status(&as_json), "hit");
    assert_eq!(
        header(&as_json, "content-type").as_deref(),
        Some("application/json")
    );
    let as_json: Value = as_json.json().await.unwrap();
    assert_eq!(as_json["object"], "chat.completion", "{as_json}");
    assert_eq!(body_text(&as_json), stream_text(&recorded));
    assert_eq!(
        as_json["usage"]["completion_tokens"], 7,
        "usage survives the reshaping: {as_json}"
    );
    assert_eq!(upstream_requests(&sim, model).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_chunk_only_for_clients_that_asked() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();
    let model = "sim:tokens=5";
    let plain = chat(model, true);
    let mut with_usage = plain.clone();
    with_usage["stream_options"] = json!({"include_usage": true});

    // Live: the gateway asked upstream for usage, but this client did not.
    let live = post_chat(&c, &gw, &plain, &[]).await;
    assert_eq!(cache_status(&live), "miss");
    let live = testkit::read_sse(live).await.unwrap();
    assert!(ends_with_done(&live));
    assert!(usage_chunks(&live).is_empty(), "{:?}", live.data());

    // Hits of the same entry, with and without the option.
    let asked = post_chat(&c, &gw, &with_usage, &[]).await;
    assert_eq!(
        cache_status(&asked),
        "hit",
        "stream_options is not in the key"
    );
    let asked = testkit::read_sse(asked).await.unwrap();
    let usage = usage_chunks(&asked);
    assert_eq!(usage.len(), 1, "{:?}", asked.data());
    assert_eq!(usage[0]["usage"]["completion_tokens"], 5);
    assert!(ends_with_done(&asked));

    let not_asked = post_chat(&c, &gw, &plain, &[]).await;
    assert_eq!(cache_status(&not_asked), "hit");
    let not_asked = testkit::read_sse(not_asked).await.unwrap();
    assert!(
        usage_chunks(&not_asked).is_empty(),
        "{:?}",
        not_asked.data()
    );
    assert_eq!(stream_text(&not_asked), stream_text(&asked));

    // A live stream for a client that asked carries it.
    let mut other = with_usage.clone();
    other["model"] = json!("sim:tokens=6");
    let live_asked = testkit::read_sse(post_chat(&c, &gw, &other, &[]).await)
        .await
        .unwrap();
    assert_eq!(
        usage_chunks(&live_asked).len(),
        1,
        "{:?}",
        live_asked.data()
    );
    assert_eq!(upstream_requests(&sim, model).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_messages_miss_and_hit_in_both_shapes() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();
    let model = "sim:tokens=6,seed=4";

    let first = post_with(&c, &gw, "/v1/messages", &messages(model, true), &[]).await;
    assert_eq!(first.status(), 200);
    assert_eq!(cache_status(&first), "miss");
    let live = testkit::read_sse(first).await.unwrap();
    let last = live.events.last().unwrap();
    assert_eq!(last.event.event.as_deref(), Some("message_stop"));

    let second = post_with(&c, &gw, "/v1/messages", &messages(model, true), &[]).await;
    assert_eq!(cache_status(&second), "hit");
    let replay = testkit::read_sse(second).await.unwrap();
    assert_eq!(
        replay.events.last().unwrap().event.event.as_deref(),
        Some("message_stop")
    );
    let text = stream_text(&live);
    assert!(!text.is_empty());
    assert_eq!(stream_text(&replay), text);

    // The same entry as a non-streamed message.
    let third = post_with(&c, &gw, "/v1/messages", &messages(model, false), &[]).await;
    assert_eq!(cache_status(&third), "hit");
    let msg: Value = third.json().await.unwrap();
    assert_eq!(msg["type"], "message", "{msg}");
    assert_eq!(body_text(&msg), text);
    assert_eq!(upstream_requests(&sim, model).await, 1);

    // Non-streamed first: miss then an identical hit.
    let model = "sim:tokens=4,seed=5";
    let a = post_with(&c, &gw, "/v1/messages", &messages(model, false), &[]).await;
    assert_eq!(cache_status(&a), "miss");
    let a = a.bytes().await.unwrap();
    let b = post_with(&c, &gw, "/v1/messages", &messages(model, false), &[]).await;
    assert_eq!(cache_status(&b), "hit");
    assert_eq!(b.bytes().await.unwrap(), a);
    assert_eq!(upstream_requests(&sim, model).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_replay_keeps_the_recorded_timing_and_instant_does_not() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();
    let body = chat("sim:ttft=150ms,itl=30ms,tokens=10", true);

    let started = Instant::now();
    let live = testkit::read_sse(post_chat(&c, &gw, &body, &[]).await)
        .await
        .unwrap();
    let original = started.elapsed();
    assert!(ends_with_done(&live));
    assert!(
        original >= Duration::from_millis(400),
        "the original took {original:?}"
    );

    let started = Instant::now();
    let paced = post_chat(&c, &gw, &body, &[("tokenpace-replay", "paced")]).await;
    assert_eq!(cache_status(&paced), "hit");
    let paced_stream = testkit::read_sse(paced).await.unwrap();
    let paced = started.elapsed();
    assert!(ends_with_done(&paced_stream));
    assert!(
        paced >= original.mul_f64(0.6),
        "paced replay took {paced:?}, the original {original:?}"
    );
    // The pacing is spread over the stream, not one wait at the start.
    let events = &paced_stream.events;
    let spread = events.last().unwrap().at - events.first().unwrap().at;
    assert!(
        spread >= Duration::from_millis(150),
        "first to last event {spread:?}"
    );

    let started = Instant::now();
    let instant = post_chat(&c, &gw, &body, &[("tokenpace-replay", "instant")]).await;
    assert_eq!(cache_status(&instant), "hit");
    let instant_stream = testkit::read_sse(instant).await.unwrap();
    let instant = started.elapsed();
    assert!(ends_with_done(&instant_stream));
    assert!(
        instant < Duration::from_millis(100),
        "instant replay took {instant:?}"
    );
    assert_eq!(stream_text(&instant_stream), stream_text(&paced_stream));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_store_bypasses_and_writes_nothing() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();
    let model = "sim:tokens=3";
    let body = chat(model, false);

    let r = post_chat(&c, &gw, &body, &[("cache-control", "no-store")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(cache_status(&r), "bypass");
    let r = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(cache_status(&r), "miss", "no-store wrote nothing");
    // An entry exists now; no-store does not read it either.
    let r = post_chat(&c, &gw, &body, &[("cache-control", "no-store")]).await;
    assert_eq!(cache_status(&r), "bypass");
    let r = post_chat(&c, &gw, &body, &[("tokenpace-cache", "off")]).await;
    assert_eq!(cache_status(&r), "bypass");
    assert_eq!(upstream_requests(&sim, model).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cache_skips_the_read_but_writes() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();
    let model = "sim:tokens=3";
    let body = chat(model, false);

    let r = post_chat(&c, &gw, &body, &[("cache-control", "no-cache")]).await;
    assert_eq!(cache_status(&r), "miss");
    let r = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(cache_status(&r), "hit", "no-cache stored its response");
    let r = post_chat(&c, &gw, &body, &[("cache-control", "no-cache")]).await;
    assert_eq!(cache_status(&r), "miss", "no-cache never serves an entry");
    assert_eq!(upstream_requests(&sim, model).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_bounds_the_entry_age() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();
    let model = "sim:tokens=3";
    let body = chat(model, false);

    assert_eq!(cache_status(&post_chat(&c, &gw, &body, &[]).await), "miss");
    tokio::time::sleep(Duration::from_millis(30)).await;
    let r = post_chat(&c, &gw, &body, &[("cache-control", "max-age=0")]).await;
    assert_eq!(cache_status(&r), "miss", "the entry is older than 0 s");
    let r = post_chat(&c, &gw, &body, &[("cache-control", "max-age=3600")]).await;
    assert_eq!(cache_status(&r), "hit");
    assert_eq!(upstream_requests(&sim, model).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_never_writes_and_write_only_never_reads() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();
    let read_only = [("tokenpace-cache", "read-only")];
    let write_only = [("tokenpace-cache", "write-only")];

    let model = "sim:tokens=3,seed=1";
    let body = chat(model, false);
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &body, &read_only).await),
        "miss"
    );
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &body, &read_only).await),
        "miss",
        "the first read-only request wrote nothing"
    );
    assert_eq!(cache_status(&post_chat(&c, &gw, &body, &[]).await), "miss");
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &body, &read_only).await),
        "hit",
        "read-only reads"
    );
    assert_eq!(upstream_requests(&sim, model).await, 3);

    let model = "sim:tokens=3,seed=2";
    let body = chat(model, false);
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &body, &write_only).await),
        "miss"
    );
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &body, &write_only).await),
        "miss",
        "write-only never reads the entry it wrote"
    );
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &body, &[]).await),
        "hit",
        "write-only wrote"
    );
    assert_eq!(upstream_requests(&sim, model).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_error_passes_through_and_is_not_cached() {
    let sim = sim().await;
    let gw = memory_gateway_no_retries(&sim).await;
    let c = client();
    let model = "sim:tokens=4,fail_first=1,fail_status=500";
    let body = chat(model, false);

    let failed = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(failed.status(), 500);
    assert_eq!(cache_status(&failed), "miss");
    let err: Value = failed.json().await.unwrap();
    assert_eq!(
        err["error"]["type"], "server_error",
        "the upstream's own body: {err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("simulated fault")
    );

    let ok = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(cache_status(&ok), "miss", "the error was not cached");
    let ok = ok.bytes().await.unwrap();
    let hit = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(hit.status(), 200);
    assert_eq!(cache_status(&hit), "hit");
    assert_eq!(hit.bytes().await.unwrap(), ok);
    assert_eq!(upstream_requests(&sim, model).await, 2);

    // The same for a streamed request: the error status passes through as JSON.
    let model = "sim:tokens=4,fail_first=1,fail_status=503";
    let failed = post_chat(&c, &gw, &chat(model, true), &[]).await;
    assert_eq!(failed.status(), 503);
    assert!(
        header(&failed, "content-type").is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        failed.headers()
    );
    let ok = post_chat(&c, &gw, &chat(model, true), &[]).await;
    assert_eq!(
        (ok.status().as_u16(), cache_status(&ok).as_str()),
        (200, "miss")
    );
    assert!(ends_with_done(&testkit::read_sse(ok).await.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_stream_ends_with_an_error_event_and_is_not_cached() {
    let sim = sim().await;
    let gw = memory_gateway_no_retries(&sim).await;
    let c = client();
    let model = "sim:tokens=10,truncate_after=3";
    let body = chat(model, true);

    let r = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(r.status(), 200, "the stream had started");
    assert_eq!(cache_status(&r), "miss");
    let s = testkit::read_sse(r).await.unwrap();
    assert!(!s.data().contains(&"[DONE]"), "{:?}", s.data());
    let last: Value = serde_json::from_str(s.data().last().unwrap()).unwrap();
    assert!(
        last["error"]["message"].is_string(),
        "ends with an error event: {last}"
    );
    assert_eq!(content_chunks(&s), 3, "the first tokens were relayed");

    let again = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(cache_status(&again), "miss", "nothing was cached");
    drop(testkit::read_sse(again).await.unwrap());
    // Asked without a stream, the truncated answer is an error too, never a short body.
    let as_json = post_chat(&c, &gw, &chat(model, false), &[]).await;
    assert_eq!(as_json.status(), 502);
    let err: Value = as_json.json().await.unwrap();
    assert_eq!(err["error"]["type"], "api_error", "{err}");
    assert_eq!(upstream_requests(&sim, model).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_have_their_own_entries_unless_shared() {
    let keys = "[[keys]]\ntenant = \"alice\"\nkey = \"gw-alice\"\n\n\
                [[keys]]\ntenant = \"bob\"\nkey = \"gw-bob\"\n";
    let alice = [("authorization", "Bearer gw-alice")];
    let bob = [("x-api-key", "gw-bob")];
    let c = client();

    let separate = sim().await;
    let gw = gateway(config(&sim_toml(
        &separate,
        "",
        &format!("[cache]\nstore = \"memory\"\n\n{keys}"),
    )))
    .await;
    let model = "sim:tokens=3";
    let body = chat(model, false);
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &body, &alice).await),
        "miss"
    );
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &body, &bob).await),
        "miss",
        "bob never sees alice's entry"
    );
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &body, &alice).await),
        "hit"
    );
    assert_eq!(cache_status(&post_chat(&c, &gw, &body, &bob).await), "hit");
    assert_eq!(upstream_requests(&separate, model).await, 2);

    let shared = sim().await;
    let gw = gateway(config(&sim_toml(
        &shared,
        "",
        &format!("[cache]\nstore = \"memory\"\nshared_across_tenants = true\n\n{keys}"),
    )))
    .await;
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &body, &alice).await),
        "miss"
    );
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &body, &bob).await),
        "hit",
        "shared across tenants"
    );
    assert_eq!(upstream_requests(&shared, model).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deterministic_only_caches_greedy_requests_only() {
    let sim = sim().await;
    let gw = gateway(config(&sim_toml(
        &sim,
        "",
        "[cache]\nstore = \"memory\"\ndeterministic_only = true\n",
    )))
    .await;
    let c = client();

    let greedy_model = "sim:tokens=3,seed=1";
    let mut greedy = chat(greedy_model, false);
    greedy["temperature"] = json!(0);
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &greedy, &[]).await),
        "miss"
    );
    assert_eq!(cache_status(&post_chat(&c, &gw, &greedy, &[]).await), "hit");
    assert_eq!(upstream_requests(&sim, greedy_model).await, 1);

    let sampled_model = "sim:tokens=3,seed=2";
    let sampled = chat(sampled_model, false);
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &sampled, &[]).await),
        "bypass"
    );
    assert_eq!(
        cache_status(&post_chat(&c, &gw, &sampled, &[]).await),
        "bypass"
    );
    assert_eq!(upstream_requests(&sim, sampled_model).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_are_counted_as_savings_in_metrics() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();
    let body = chat("sim:tokens=10", false);

    assert_eq!(cache_status(&post_chat(&c, &gw, &body, &[]).await), "miss");
    let before = metrics(&gw).await;
    assert_eq!(metric(&before, "tokenpace_cache_misses_total"), Some(1.0));
    assert!(
        metric(&before, "tokenpace_saved_tokens_total").unwrap_or(0.0) == 0.0,
        "nothing saved yet: {before}"
    );

    let hit = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(cache_status(&hit), "hit");
    drop(hit.bytes().await.unwrap());
    let after = metrics(&gw).await;
    assert_eq!(
        metric(&after, "tokenpace_cache_hits_total{tier=\"memory\"}"),
        Some(1.0),
        "{after}"
    );
    let saved = metric(&after, "tokenpace_saved_tokens_total").unwrap();
    assert!(saved >= 10.0, "saved {saved} tokens: {after}");
    assert_eq!(
        metric(
            &after,
            "tokenpace_tokens_total{direction=\"output\",source=\"cache\"}"
        ),
        Some(10.0)
    );
}
