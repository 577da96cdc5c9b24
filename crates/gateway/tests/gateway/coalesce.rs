//! Coalescing through a real gateway: identical requests in flight share one upstream
//! call (counted by the simulator's `/stats`), whatever shape each client asked for; a
//! leaving client does not stop the others; when all leave, the call is cancelled.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;

use super::support::*;

/// Sends `n` copies of `body` at once and returns the responses (heads in).
async fn concurrent(
    gw: &tokenpace_gateway::RunningGateway,
    body: &Value,
    n: usize,
) -> Vec<reqwest::Response> {
    let c = client();
    join_all((0..n).map(|_| post_chat(&c, gw, body, &[]))).await
}

fn coalesced(resp: &reqwest::Response) -> bool {
    header(resp, "x-tokenpace-coalesced").as_deref() == Some("true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_share_one_upstream_call() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let model = "sim:ttft=500ms,tokens=8";
    let responses = concurrent(&gw, &chat(model, false), 8).await;

    let joined = responses.iter().filter(|r| coalesced(r)).count();
    assert_eq!(joined, 7, "all but the leader joined");
    let mut bodies = Vec::new();
    for r in responses {
        assert_eq!(r.status(), 200);
        assert_eq!(cache_status(&r), "miss");
        bodies.push(r.bytes().await.unwrap());
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "one body for all");
    assert!(!body_text(&serde_json::from_slice(&bodies[0]).unwrap()).is_empty());
    assert_eq!(upstream_requests(&sim, model).await, 1);
    assert_eq!(
        metric(&metrics(&gw).await, "tokenpace_coalesced_requests_total"),
        Some(7.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_streams_share_one_upstream_call() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let model = "sim:ttft=500ms,itl=10ms,tokens=15";
    let responses = concurrent(&gw, &chat(model, true), 8).await;
    assert_eq!(responses.iter().filter(|r| coalesced(r)).count(), 7);

    let streams = join_all(responses.into_iter().map(testkit::read_sse)).await;
    let streams: Vec<testkit::Stream> = streams.into_iter().map(Result::unwrap).collect();
    for s in &streams {
        assert!(ends_with_done(s), "{:?}", s.data());
        assert_eq!(
            s.data(),
            streams[0].data(),
            "every client got the same events"
        );
    }
    assert_eq!(content_chunks(&streams[0]), 15);
    assert_eq!(upstream_requests(&sim, model).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_and_a_json_request_share_one_upstream_call() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();
    let model = "sim:ttft=400ms,itl=5ms,tokens=10";

    for leader_streams in [true, false] {
        let model = format!("{model},seed={}", u8::from(leader_streams));
        let (first, second) = (chat(&model, leader_streams), chat(&model, !leader_streams));
        let (leader, follower) = tokio::join!(post_chat(&c, &gw, &first, &[]), async {
            // Let the leader's call start first.
            tokio::time::sleep(Duration::from_millis(100)).await;
            post_chat(&c, &gw, &second, &[]).await
        });
        assert!(!coalesced(&leader) && coalesced(&follower));
        let (streamed, json) = if leader_streams {
            (leader, follower)
        } else {
            (follower, leader)
        };
        assert_eq!(
            header(&json, "content-type").as_deref(),
            Some("application/json")
        );
        let (s, j) = tokio::join!(testkit::read_sse(streamed), json.json::<Value>());
        let (s, j) = (s.unwrap(), j.unwrap());
        assert!(ends_with_done(&s), "{:?}", s.data());
        assert_eq!(j["object"], "chat.completion", "{j}");
        assert!(!body_text(&j).is_empty());
        assert_eq!(stream_text(&s), body_text(&j));
        assert_eq!(upstream_requests(&sim, &model).await, 1, "{model}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_leaving_does_not_stop_a_follower() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();
    let model = "sim:ttft=50ms,itl=30ms,tokens=20";
    let body = chat(model, true);

    let mut leader = post_chat(&c, &gw, &body, &[]).await;
    assert!(!coalesced(&leader));
    // The first event is in: the upstream stream is under way.
    let first = leader.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    let follower = post_chat(&c, &gw, &body, &[]).await;
    assert!(coalesced(&follower), "{:?}", follower.headers());
    drop(leader);

    let s = testkit::read_sse(follower).await.unwrap();
    assert!(ends_with_done(&s), "{:?}", s.data());
    assert_eq!(content_chunks(&s), 20, "{:?}", s.data());
    assert_eq!(upstream_requests(&sim, model).await, 1);
    // The call completed, so it was cached.
    let again = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(cache_status(&again), "hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_client_leaves_the_upstream_call_is_cancelled() {
    let sim = sim().await;
    let gw = memory_gateway(&sim).await;
    let c = client();
    let model = "sim:ttft=50ms,itl=50ms,tokens=40";
    let body = chat(model, true);

    let mut only = post_chat(&c, &gw, &body, &[]).await;
    // Read a few events (the role chunk, then tokens), so the simulator has generated
    // some tokens and counts them when its response ends.
    let mut seen = String::new();
    while seen.matches("data: ").count() < 4 {
        let chunk = only.chunk().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(gw.state.dispatcher.flights(), 1);
    drop(only);

    // The call would run for almost 2 s more; cancelled, it ends at once.
    let dispatcher = gw.state.dispatcher.clone();
    assert!(
        eventually(Duration::from_secs(1), || {
            let d = dispatcher.clone();
            async move { d.flights() == 0 }
        })
        .await,
        "the upstream call is still in flight"
    );
    // The simulator saw its client go: it generated only part of the answer.
    let mut generated = 0;
    for _ in 0..50 {
        generated = sim_stats(&sim).await["by_model"][model]["output_tokens_total"]
            .as_u64()
            .unwrap_or(0);
        if generated > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(generated > 0, "the simulator's response did not end");
    assert!(generated < 40, "generated {generated} of 40 tokens");

    let next = post_chat(&c, &gw, &body, &[]).await;
    assert_eq!(cache_status(&next), "miss", "nothing was cached");
    assert!(!coalesced(&next));
    drop(next);
    assert_eq!(upstream_requests(&sim, model).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_failure_reaches_every_waiter_once() {
    let sim = sim().await;
    let gw = memory_gateway_no_retries(&sim).await;
    // The failure comes after 400 ms of network delay, so all requests are in flight.
    let model = "sim:net=400ms,tokens=3,fail_first=1,fail_status=500";
    let c = client();
    let (json_body, stream_body) = (chat(model, false), chat(model, true));
    let (json, streams) = tokio::join!(
        join_all((0..4).map(|_| post_chat(&c, &gw, &json_body, &[]))),
        join_all((0..2).map(|_| post_chat(&c, &gw, &stream_body, &[]))),
    );
    let all: Vec<reqwest::Response> = json.into_iter().chain(streams).collect();
    assert_eq!(all.iter().filter(|r| coalesced(r)).count(), 5);
    for r in all {
        assert_eq!(r.status(), 500);
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["error"]["type"], "server_error", "{err}");
    }
    assert_eq!(upstream_requests(&sim, model).await, 1);

    // The failure was not cached; the next request makes a new call, which succeeds.
    let ok = post_chat(&c, &gw, &chat(model, false), &[]).await;
    assert_eq!(
        (ok.status().as_u16(), cache_status(&ok).as_str()),
        (200, "miss")
    );
    assert_eq!(upstream_requests(&sim, model).await, 2);
}
