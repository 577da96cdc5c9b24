//! Every error class, produced by the simulator's fault profiles or by raw test servers.

use std::time::{Duration, Instant};

use tokenpace_client::{ErrorClass, EventKind, TimeoutPhase, derive};

use crate::support::{
    anthropic, chat, client, client_with_timeout, dead_url, label, openai, raw_server, send, sim,
    sim_rpm, sse_response,
};

#[tokio::test]
async fn unknown_model_is_a_4xx() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let ledger = send(&client(), &chat(&ep, "no-such-model", true, true)).await;
    assert_eq!(ledger.status, Some(404));
    match &ledger.outcome {
        Err(ErrorClass::Http4xx {
            status: 404,
            message,
        }) => {
            assert!(message.contains("no-such-model"), "{message}");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    assert_eq!(label(&ledger), "http_4xx");
}

#[tokio::test]
async fn rate_limited_with_retry_after_and_snapshot() {
    let sim = sim_rpm(1).await;
    let ep = openai(&sim.url());
    let client = client();
    let req = chat(&ep, "sim:tokens=3", true, true);
    let first = send(&client, &req).await;
    assert!(first.is_success(), "{:?}", first.outcome);
    assert_eq!(first.rate_limits.requests_limit, Some(1));
    assert_eq!(first.rate_limits.requests_remaining, Some(0));
    assert!(first.rate_limits.requests_reset.is_some());

    let second = send(&client, &req).await;
    assert_eq!(second.status, Some(429));
    let Err(ErrorClass::RateLimited {
        retry_after,
        message,
    }) = &second.outcome
    else {
        panic!("expected 429, got {:?}", second.outcome);
    };
    let wait = retry_after.unwrap();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    assert!(message.to_lowercase().contains("rate limit"), "{message}");
    assert_eq!(second.rate_limits.retry_after, Some(wait));
    assert_eq!(second.rate_limits.requests_limit, Some(1));
    assert_eq!(second.rate_limits.requests_remaining, Some(0));
    assert_eq!(label(&second), "rate_limited");
}

#[tokio::test]
async fn anthropic_rate_limit_resets_are_durations() {
    let sim = sim_rpm(1).await;
    let ep = anthropic(&sim.url());
    let client = client();
    let req = chat(&ep, "sim:tokens=2", true, false);
    assert!(send(&client, &req).await.is_success());
    let second = send(&client, &req).await;
    assert_eq!(label(&second), "rate_limited");
    assert_eq!(second.rate_limits.requests_limit, Some(1));
    let reset = second.rate_limits.requests_reset.unwrap();
    assert!(reset <= Duration::from_secs(61), "{reset:?}");
}

#[tokio::test]
async fn injected_500_then_success() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let client = client();
    let req = chat(&ep, "sim:tokens=3,fail_first=1", true, true);
    let failed = send(&client, &req).await;
    assert!(matches!(
        failed.outcome,
        Err(ErrorClass::Http5xx { status: 500, .. })
    ));
    let ok = send(&client, &req).await;
    assert!(ok.is_success(), "{:?}", ok.outcome);
    // The error body was read whole, so its connection served the retry.
    assert!(ok.conn.reused);
}

#[tokio::test]
async fn connection_refused() {
    let ep = openai(&dead_url());
    let ledger = send(&client(), &chat(&ep, "sim", true, true)).await;
    assert!(
        matches!(ledger.outcome, Err(ErrorClass::Connect(_))),
        "{:?}",
        ledger.outcome
    );
    assert_eq!(ledger.connected, None);
    assert_eq!(ledger.status, None);
    assert_eq!(ledger.conn.tcp, None);
    let m = derive(&ledger, "sim");
    assert_eq!(m.conn_setup, None);
    assert_eq!(m.ttft, None);
}

#[tokio::test]
async fn stall_beyond_the_timeout() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let started = Instant::now();
    let ledger = send(
        &client_with_timeout(Duration::from_millis(200)),
        &chat(&ep, "sim:stall=2s,tokens=4", true, true),
    )
    .await;
    assert_eq!(
        ledger.outcome,
        Err(ErrorClass::Timeout {
            phase: TimeoutPhase::Body
        })
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    let e2e = ledger.end - ledger.dispatched;
    assert!(
        e2e >= Duration::from_millis(195) && e2e < Duration::from_millis(600),
        "{e2e:?}"
    );
    // Headers and the role chunk came; no token did.
    assert_eq!(ledger.status, Some(200));
    assert_eq!(ledger.token_events().count(), 0);
}

#[tokio::test]
async fn reset_mid_stream() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let client = client();
    let ledger = send(
        &client,
        &chat(&ep, "sim:itl=5ms,tokens=10,reset_after=3", true, true),
    )
    .await;
    assert!(
        matches!(ledger.outcome, Err(ErrorClass::Reset(_))),
        "{:?}",
        ledger.outcome
    );
    // Normally all 3 tokens are read before the reset; a client slower than the RST
    // loses what its kernel had not handed over yet (TCP drops it), so at most 3.
    assert!(ledger.token_events().count() <= 3);
    // A broken connection is not pooled.
    assert_eq!(client.idle_connections(&ep), 0);
}

#[tokio::test]
async fn reset_of_a_non_streamed_body() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let ledger = send(
        &client(),
        &chat(&ep, "sim:tokens=6,reset_after=2", false, false),
    )
    .await;
    assert!(
        matches!(ledger.outcome, Err(ErrorClass::Reset(_))),
        "{:?}",
        ledger.outcome
    );
}

#[tokio::test]
async fn truncated_stream() {
    let sim = sim().await;
    let ep = openai(&sim.url());
    let ledger = send(
        &client(),
        &chat(&ep, "sim:tokens=10,truncate_after=3", true, true),
    )
    .await;
    assert_eq!(ledger.outcome, Err(ErrorClass::Truncated));
    assert_eq!(ledger.token_events().count(), 3);
    assert!(!ledger.events.iter().any(|e| e.kind == EventKind::Done));
}

#[tokio::test]
async fn anthropic_truncated_stream() {
    let sim = sim().await;
    let ep = anthropic(&sim.url());
    let ledger = send(
        &client(),
        &chat(&ep, "sim:tokens=10,truncate_after=2", true, false),
    )
    .await;
    assert_eq!(ledger.outcome, Err(ErrorClass::Truncated));
}

#[tokio::test]
async fn in_stream_error_is_never_a_success() {
    let url = raw_server(sse_response(&[
        r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
        r#"data: {"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#,
        "data: [DONE]",
    ]))
    .await;
    let ep = openai(&url);
    let ledger = send(&client(), &chat(&ep, "gpt-4o-mini", true, true)).await;
    assert_eq!(ledger.status, Some(200));
    match &ledger.outcome {
        Err(ErrorClass::InStreamError(message)) => {
            assert!(message.contains("server had an error"), "{message}");
        }
        other => panic!("expected an in-stream error, got {other:?}"),
    }
    assert!(ledger.events.iter().any(|e| e.kind == EventKind::Error));
    assert_eq!(label(&ledger), "in_stream_error");
}

#[tokio::test]
async fn anthropic_error_event_is_never_a_success() {
    let url = raw_server(sse_response(&[
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}",
        "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}",
    ]))
    .await;
    let ep = anthropic(&url);
    let ledger = send(&client(), &chat(&ep, "claude-x", true, false)).await;
    assert_eq!(
        ledger.outcome,
        Err(ErrorClass::InStreamError("Overloaded".into()))
    );
}

#[tokio::test]
async fn empty_stream() {
    let url = raw_server(sse_response(&[
        r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        "data: [DONE]",
    ]))
    .await;
    let ep = openai(&url);
    let ledger = send(&client(), &chat(&ep, "gpt-4o-mini", true, true)).await;
    assert_eq!(ledger.outcome, Err(ErrorClass::Empty));
    assert_eq!(ledger.events.len(), 2);
    assert_eq!(label(&ledger), "empty");
    assert_eq!(derive(&ledger, "gpt-4o-mini").ttft, None);
}

#[tokio::test]
async fn streaming_request_answered_with_plain_json() {
    let body = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    let url = raw_server(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ))
    .await;
    let ep = openai(&url);
    let ledger = send(&client(), &chat(&ep, "gpt-4o-mini", true, true)).await;
    assert!(ledger.is_success(), "{:?}", ledger.outcome);
    assert!(!ledger.streamed);
    assert_eq!(derive(&ledger, "gpt-4o-mini").ttft, None);
}
