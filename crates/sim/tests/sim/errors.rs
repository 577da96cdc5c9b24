//! Bad input: every case gets a clear 4xx in the route's dialect, never a panic or a hang.

use serde_json::json;

use super::*;

#[tokio::test]
async fn malformed_json_and_schema_errors() {
    let sim = start_default().await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", sim.url()))
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: protocol::openai::ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.r#type, "invalid_request_error");
    assert!(
        body.error.message.contains("not valid JSON"),
        "{}",
        body.error.message
    );

    let resp = post(&sim, "/v1/chat/completions", &json!({"model": "sim"})).await;
    assert_eq!(resp.status(), 400);
    let body: protocol::openai::ErrorBody = resp.json().await.unwrap();
    assert!(
        body.error.message.contains("messages"),
        "{}",
        body.error.message
    );

    let resp = post(
        &sim,
        "/v1/chat/completions",
        &json!({"model": "sim", "messages": []}),
    )
    .await;
    assert_eq!(resp.status(), 400);

    let mut req = chat("sim", false);
    req["n"] = json!(3);
    let resp = post(&sim, "/v1/chat/completions", &req).await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn unknown_model_and_bad_options() {
    let sim = start_default().await;
    let resp = post(&sim, "/v1/chat/completions", &chat("gpt-4o", false)).await;
    assert_eq!(resp.status(), 404);
    let body: protocol::openai::ErrorBody = resp.json().await.unwrap();
    assert_eq!(
        body.error.code.as_ref().and_then(|c| c.as_str()),
        Some("model_not_found")
    );

    let resp = post(
        &sim,
        "/v1/chat/completions",
        &chat("sim:ttft=1ms,bogus=2", false),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: protocol::openai::ErrorBody = resp.json().await.unwrap();
    assert!(
        body.error.message.contains("bogus"),
        "{}",
        body.error.message
    );
}

#[tokio::test]
async fn wrong_method_unknown_route_and_large_body() {
    let sim = start(SimConfig {
        max_body_bytes: 1024,
        ..SimConfig::default()
    })
    .await;
    let resp = client()
        .get(format!("{}/v1/chat/completions", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let body: protocol::openai::ErrorBody = resp.json().await.unwrap();
    assert!(body.error.message.contains("GET"));

    let resp = client()
        .get(format!("{}/v1/nothing", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let _: protocol::openai::ErrorBody = resp.json().await.unwrap();

    let mut req = chat("sim", false);
    req["messages"][0]["content"] = json!("x".repeat(4000));
    let resp = post(&sim, "/v1/chat/completions", &req).await;
    assert_eq!(resp.status(), 413);
    let body: protocol::openai::ErrorBody = resp.json().await.unwrap();
    assert!(body.error.message.contains("--max-body-bytes"));

    // Still serving after all of that.
    let resp = post(&sim, "/v1/chat/completions", &chat("sim:tokens=1", false)).await;
    assert_eq!(resp.status(), 200);
}
