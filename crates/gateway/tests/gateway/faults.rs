//! Upstream faults as a client of the gateway sees them: an unreachable upstream, and one
//! so slow to answer that the gateway commits to the stream before it does.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502_upstream_unreachable() {
    let port = closed_port();
    let gw = gateway(config(&format!(
        "[upstreams.down]\nurl = \"http://127.0.0.1:{port}\"\nconnect_timeout = \"2s\"\n\n\
         [cache]\nstore = \"memory\"\n\n[retry]\nmax_attempts = 1\n"
    )))
    .await;
    let c = client();
    for stream in [false, true] {
        let r = post_chat(&c, &gw, &chat("any", stream), &[]).await;
        assert_eq!(r.status(), 502, "stream={stream}");
        assert_eq!(
            header(&r, "content-type").as_deref(),
            Some("application/json")
        );
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["error"]["code"], "upstream_unreachable", "{err}");
        assert_eq!(err["error"]["type"], "api_error");
        assert!(
            err["error"]["message"].as_str().unwrap().contains("'down'"),
            "names the upstream: {err}"
        );
    }
    // Anthropic dialect on /v1/messages.
    let r = post_with(&c, &gw, "/v1/messages", &messages("any", false), &[]).await;
    assert_eq!(r.status(), 502);
    let err: Value = r.json().await.unwrap();
    assert_eq!(
        (err["type"].as_str(), err["error"]["type"].as_str()),
        (Some("error"), Some("api_error"))
    );
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "tokenpace_upstream_requests_total{upstream=\"down\",status=\"0\"}"
        ),
        Some(3.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_head_is_committed_after_stream_headers_after() {
    let sim = sim().await;
    let gw = gateway(config(&sim_toml(
        &sim,
        "stream_headers_after = \"200ms\"",
        "[cache]\nstore = \"memory\"\n",
    )))
    .await;
    let c = client();
    // The simulator's network delay holds back its response head for 1.5 s.
    let body = chat("sim:net=1500ms,tokens=5", true);
    let started = Instant::now();
    let r = post_chat(&c, &gw, &body, &[]).await;
    let head = started.elapsed();
    assert_eq!(r.status(), 200);
    assert!(head < Duration::from_millis(1000), "head after {head:?}");
    assert!(
        header(&r, "content-type").is_some_and(|t| t.starts_with("text/event-stream")),
        "{:?}",
        r.headers()
    );
    assert_eq!(cache_status(&r), "miss");
    let s = testkit::read_sse(r).await.unwrap();
    let total = started.elapsed();
    assert!(ends_with_done(&s), "{:?}", s.data());
    assert_eq!(content_chunks(&s), 5);
    assert!(
        total >= Duration::from_millis(1400),
        "the whole took {total:?}"
    );

    // A slow first token behind a prompt head: the head is relayed at once.
    let started = Instant::now();
    let r = post_chat(&c, &gw, &chat("sim:ttft=1500ms,tokens=3", true), &[]).await;
    let head = started.elapsed();
    assert_eq!(r.status(), 200);
    assert!(head < Duration::from_millis(1000), "head after {head:?}");
    let s = testkit::read_sse(r).await.unwrap();
    assert!(ends_with_done(&s), "{:?}", s.data());
    assert!(started.elapsed() >= Duration::from_millis(1400));

    // The completed slow stream was cached like any other.
    let hit = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(cache_status(&hit), "hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_failing_after_the_commit_ends_with_an_error_event() {
    let sim = sim().await;
    let gw = gateway(config(&sim_toml(
        &sim,
        "stream_headers_after = \"100ms\"",
        "[cache]\nstore = \"memory\"\n\n[retry]\nmax_attempts = 1\n",
    )))
    .await;
    let c = client();
    let model = "sim:net=600ms,tokens=3,fail_first=1,fail_status=503";
    let r = post_chat(&c, &gw, &chat(model, true), &[]).await;
    assert_eq!(r.status(), 200, "committed before the upstream answered");
    let s = testkit::read_sse(r).await.unwrap();
    assert!(s.transport_error.is_none());
    let last: Value = serde_json::from_str(s.data().last().unwrap()).unwrap();
    let message = last["error"]["message"].as_str().unwrap();
    assert!(message.contains("503"), "{message}");
    assert!(!s.data().contains(&"[DONE]"));
    // Not cached: the next request is a new call (which succeeds).
    let r = post_chat(&c, &gw, &chat(model, true), &[]).await;
    assert_eq!(cache_status(&r), "miss");
    assert!(ends_with_done(&testkit::read_sse(r).await.unwrap()));
    assert_eq!(upstream_requests(&sim, model).await, 2);
}
