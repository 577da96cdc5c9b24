//! Tier limits over HTTP: real 429s with truthful retry-after and rate-limit headers,
//! per-key tiers, reservation of max_tokens and settlement to actual usage.

use std::time::Duration;

use serde_json::json;
use sim::config::RawSimArgs;

use super::*;

#[tokio::test]
async fn rpm_limit_gives_429_with_headers_then_recovers() {
    let args = RawSimArgs {
        rpm: Some(2),
        window: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let sim = start_with(args, None).await;
    let body = chat("sim:tokens=1", false);
    let ok = post_key(&sim, "/v1/chat/completions", "sk-a", &body).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        header(&ok, "x-ratelimit-limit-requests").as_deref(),
        Some("2")
    );
    assert_eq!(
        header(&ok, "x-ratelimit-remaining-requests").as_deref(),
        Some("1")
    );
    assert_eq!(
        post_key(&sim, "/v1/chat/completions", "sk-a", &body)
            .await
            .status(),
        200
    );
    let limited = post_key(&sim, "/v1/chat/completions", "sk-a", &body).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = header(&limited, "retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let retry_ms: u64 = header(&limited, "retry-after-ms").unwrap().parse().unwrap();
    assert!(retry_ms <= 1000);
    assert_eq!(
        header(&limited, "x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );
    let reset = header(&limited, "x-ratelimit-reset-requests").unwrap();
    assert!(
        protocol::ratelimit::parse_go_duration(&reset).is_ok(),
        "{reset}"
    );
    let err: protocol::openai::ErrorBody = limited.json().await.unwrap();
    assert_eq!(err.error.r#type, "requests");
    assert_eq!(
        err.error.code.as_ref().and_then(|c| c.as_str()),
        Some("rate_limit_exceeded")
    );

    // Another key has its own budget.
    assert_eq!(
        post_key(&sim, "/v1/chat/completions", "sk-b", &body)
            .await
            .status(),
        200
    );
    // After retry-after-ms the same key is admitted again.
    tokio::time::sleep(Duration::from_millis(retry_ms + 20)).await;
    assert_eq!(
        post_key(&sim, "/v1/chat/completions", "sk-a", &body)
            .await
            .status(),
        200
    );
    let s = stats(&sim).await;
    assert_eq!(s["responses_by_status"]["429"], 1);
}

#[tokio::test]
async fn tokens_are_reserved_then_settled() {
    let args = RawSimArgs {
        tpm: Some(100),
        ..Default::default()
    };
    let sim = start_with(args, None).await;
    let mut slow = chat("sim:tokens=3,ttft=300ms", false);
    slow["max_tokens"] = json!(60);
    // Limits are per (key, model): the same model string for both.
    let mut quick = chat("sim:tokens=3,ttft=300ms", false);
    quick["max_tokens"] = json!(60);
    let url = sim.url();
    let in_flight = tokio::spawn(async move {
        client()
            .post(format!("{url}/v1/chat/completions"))
            .json(&slow)
            .send()
            .await
            .unwrap()
            .status()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While the first holds input + 60 reserved, a second reservation of input + 60 exceeds 100.
    let limited = post(&sim, "/v1/chat/completions", &quick).await;
    assert_eq!(limited.status(), 429);
    let err: protocol::openai::ErrorBody = limited.json().await.unwrap();
    assert_eq!(err.error.r#type, "tokens");
    assert_eq!(in_flight.await.unwrap(), 200);
    // Settled to input + 3 actual: now there is room.
    let ok = post(&sim, "/v1/chat/completions", &quick).await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn request_larger_than_the_limit_never_fits() {
    let args = RawSimArgs {
        tpm: Some(50),
        ..Default::default()
    };
    let sim = start_with(args, None).await;
    let mut req = chat("sim:tokens=1", false);
    req["max_tokens"] = json!(500);
    let resp = post(&sim, "/v1/chat/completions", &req).await;
    assert_eq!(resp.status(), 429);
    assert!(
        header(&resp, "retry-after").is_none(),
        "waiting would not help"
    );
}

#[tokio::test]
async fn per_key_tiers_and_anthropic_headers() {
    let file =
        "[keys.\"sk-free\"]\ntier = \"free\"\n\n[keys.\"sk-ant\"]\ntier = \"anthropic-tier-1\"\n";
    let sim = start_with(RawSimArgs::default(), Some(file)).await;
    let body = chat("sim:tokens=1", false);
    let resp = post_key(&sim, "/v1/chat/completions", "sk-free", &body).await;
    assert_eq!(
        header(&resp, "x-ratelimit-limit-requests").as_deref(),
        Some("3")
    );
    assert_eq!(
        header(&resp, "x-ratelimit-limit-tokens").as_deref(),
        Some("40000")
    );
    // No entry: unlimited, no headers.
    let resp = post_key(&sim, "/v1/chat/completions", "sk-other", &body).await;
    assert!(header(&resp, "x-ratelimit-limit-requests").is_none());

    let msg = json!({"model": "sim:tokens=2", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let resp = client()
        .post(format!("{}/v1/messages", sim.url()))
        .header("x-api-key", "sk-ant")
        .json(&msg)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "anthropic-ratelimit-requests-limit").as_deref(),
        Some("50")
    );
    assert_eq!(
        header(&resp, "anthropic-ratelimit-input-tokens-limit").as_deref(),
        Some("30000")
    );
    assert_eq!(
        header(&resp, "anthropic-ratelimit-output-tokens-limit").as_deref(),
        Some("8000")
    );
    let reset = header(&resp, "anthropic-ratelimit-requests-reset").unwrap();
    assert!(
        protocol::ratelimit::parse_rfc3339(&reset).is_ok(),
        "{reset}"
    );
}

#[tokio::test]
async fn anthropic_429_body() {
    let args = RawSimArgs {
        rpm: Some(1),
        ..Default::default()
    };
    let sim = start_with(args, None).await;
    let msg = json!({"model": "sim:tokens=1", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(post(&sim, "/v1/messages", &msg).await.status(), 200);
    let resp = post(&sim, "/v1/messages", &msg).await;
    assert_eq!(resp.status(), 429);
    assert!(header(&resp, "retry-after").is_some());
    let body: protocol::anthropic::AnthropicErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.r#type, "rate_limit_error");
}
