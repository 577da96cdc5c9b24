//! Injected faults: error statuses, resets, truncations, stalls.

use std::time::Instant;

use serde_json::json;

use super::*;

#[tokio::test]
async fn fail_first_then_succeed() {
    let sim = start_default().await;
    let model = "sim:tokens=2,fail_first=2";
    for _ in 0..2 {
        let resp = post(&sim, "/v1/chat/completions", &chat(model, false)).await;
        assert_eq!(resp.status(), 500);
        let body: protocol::openai::ErrorBody = resp.json().await.unwrap();
        assert_eq!(body.error.r#type, "server_error");
    }
    let resp = post(&sim, "/v1/chat/completions", &chat(model, false)).await;
    assert_eq!(resp.status(), 200);
    let s = stats(&sim).await;
    assert_eq!(
        s["by_model"][model]["responses_by_status"],
        json!({"500": 2, "200": 1})
    );
    assert_eq!(s["by_model"][model]["faults_injected"], 2);
    // Another model string has its own counter.
    let resp = post(
        &sim,
        "/v1/chat/completions",
        &chat("sim:tokens=3,fail_first=2", false),
    )
    .await;
    assert_eq!(resp.status(), 500);
}

#[tokio::test]
async fn fault_429_carries_retry_after() {
    let sim = start_default().await;
    let resp = post(
        &sim,
        "/v1/chat/completions",
        &chat("sim:fail_first=1,fail_status=429", false),
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("1"));
}

#[tokio::test]
async fn fail_rate_is_seeded_and_roughly_right() {
    let sim = start_default().await;
    let model = "sim:tokens=1,fail_rate=0.3,fail_status=503";
    let mut failures = 0;
    for _ in 0..200 {
        let resp = post(&sim, "/v1/chat/completions", &chat(model, false)).await;
        match resp.status().as_u16() {
            200 => {}
            503 => failures += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        (30..=90).contains(&failures),
        "{failures} of 200 at rate 0.3"
    );
}

#[tokio::test]
async fn reset_mid_stream_is_a_transport_error() {
    let sim = start_default().await;
    let resp = post(
        &sim,
        "/v1/chat/completions",
        &chat("sim:tokens=10,reset_after=3", true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let stream = testkit::read_sse(resp).await.unwrap();
    assert!(stream.transport_error.is_some(), "the connection dropped");
    let contents = stream
        .json()
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .count();
    assert_eq!(contents, 3);
    assert!(!stream.data().contains(&"[DONE]"));
    // The non-streamed variant drops the connection before a complete body.
    let result = client()
        .post(format!("{}/v1/chat/completions", sim.url()))
        .json(&chat("sim:tokens=10,reset_after=3", false))
        .send()
        .await;
    match result {
        Ok(resp) => assert!(resp.bytes().await.is_err()),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
}

#[tokio::test]
async fn truncated_stream_has_no_terminal_event() {
    let sim = start_default().await;
    let stream = testkit::read_sse(
        post(
            &sim,
            "/v1/messages",
            &json!({"model": "sim:tokens=10,truncate_after=4", "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi"}], "stream": true}),
        )
        .await,
    )
    .await
    .unwrap();
    assert!(
        stream.transport_error.is_none(),
        "the HTTP body ends cleanly"
    );
    let names: Vec<_> = stream
        .events
        .iter()
        .filter_map(|e| e.event.event.clone())
        .collect();
    assert!(!names.contains(&"message_stop".to_string()));
    assert_eq!(
        names.iter().filter(|n| *n == "content_block_delta").count(),
        4
    );
    let s = stats(&sim).await;
    assert_eq!(s["faults_injected"], 1);
}

#[tokio::test]
async fn stall_delays_the_first_token() {
    let sim = start_default().await;
    let start = Instant::now();
    let stream = testkit::read_sse(
        post(
            &sim,
            "/v1/chat/completions",
            &chat("sim:tokens=2,stall=150ms", true),
        )
        .await,
    )
    .await
    .unwrap();
    let first_token = stream
        .events
        .iter()
        .find(|e| {
            e.event.data.contains("\"content\":\"") && !e.event.data.contains("\"content\":\"\"")
        })
        .unwrap();
    assert!(first_token.at - start >= Duration::from_millis(150));
}

#[tokio::test]
async fn in_stream_error_event_then_close() {
    let sim = start_default().await;
    let stream = testkit::read_sse(
        post(
            &sim,
            "/v1/chat/completions",
            &chat("sim:tokens=8,error_after=3", true),
        )
        .await,
    )
    .await
    .unwrap();
    assert!(stream.transport_error.is_none());
    let data = stream.data();
    assert!(!data.contains(&"[DONE]"));
    let last: protocol::openai::ErrorBody = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last.error.r#type, "server_error");
    let tokens = stream
        .json()
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert_eq!(tokens, 3);

    let stream = testkit::read_sse(
        post(
            &sim,
            "/v1/messages",
            &json!({"model": "sim:tokens=8,error_after=2", "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi"}], "stream": true}),
        )
        .await,
    )
    .await
    .unwrap();
    let last = stream.events.last().unwrap();
    assert_eq!(last.event.event.as_deref(), Some("error"));
    let parsed: protocol::anthropic::StreamEvent = serde_json::from_str(&last.event.data).unwrap();
    assert_eq!(parsed.name(), "error");

    // Not streamed: the error becomes the response.
    let resp = post(
        &sim,
        "/v1/chat/completions",
        &chat("sim:tokens=8,error_after=2", false),
    )
    .await;
    assert_eq!(resp.status(), 500);
}

#[tokio::test]
async fn zero_tokens_is_an_empty_response() {
    let sim = start_default().await;
    let mut req = chat("sim:tokens=0", true);
    req["stream_options"] = json!({"include_usage": true});
    let stream = testkit::read_sse(post(&sim, "/v1/chat/completions", &req).await)
        .await
        .unwrap();
    let json = stream.json();
    assert!(
        json.iter().all(|c| c["choices"]
            .as_array()
            .is_none_or(|ch| ch
                .iter()
                .all(|x| x["delta"]["content"].as_str().unwrap_or("").is_empty())))
    );
    assert_eq!(json.last().unwrap()["usage"]["completion_tokens"], 0);
    assert_eq!(*stream.data().last().unwrap(), "[DONE]");
}
