//! Handlers through `Router::oneshot` (no listener, no upstream call): request errors in
//! both dialects, authentication, routing errors, limits, and the admin routes.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tokenpace_gateway::router;
use tower::ServiceExt as _;

use super::support::*;

/// An upstream URL nothing listens on: these tests never reach an upstream.
const NOWHERE: &str = "http://127.0.0.1:9";

fn one_upstream(extra: &str) -> String {
    format!("[upstreams.sim]\nurl = \"{NOWHERE}\"\n\n[cache]\nstore = \"memory\"\n\n{extra}")
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

async fn send(toml: &str, req: Request<Body>) -> Answer {
    let resp = router(state(config(toml))).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::builder().uri(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn malformed_json_is_an_openai_400_naming_the_problem() {
    let a = send(
        &one_upstream(""),
        post("/v1/chat/completions", r#"{"model": "sim", "messages": ["#),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let j = a.json();
    assert_eq!(j["error"]["type"], "invalid_request_error", "{j}");
    let message = j["error"]["message"].as_str().unwrap();
    assert!(message.contains("not valid JSON"), "{message}");
    assert_eq!(
        a.headers.get("content-type").unwrap(),
        "application/json",
        "errors are JSON"
    );
}

#[tokio::test]
async fn wrong_field_type_names_the_param() {
    let body = r#"{"model": "sim", "messages": [], "temperature": "hot"}"#;
    let a = send(&one_upstream(""), post("/v1/chat/completions", body)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let j = a.json();
    assert_eq!(j["error"]["param"], "temperature", "{j}");
    assert_eq!(j["error"]["type"], "invalid_request_error");
    assert!(
        j["error"]["message"].as_str().unwrap().contains("number"),
        "{j}"
    );
}

#[tokio::test]
async fn messages_route_errors_are_anthropic_shaped() {
    let toml = one_upstream("");
    let a = send(&toml, post("/v1/messages", "{not json")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let j = a.json();
    assert_eq!(j["type"], "error", "{j}");
    assert_eq!(j["error"]["type"], "invalid_request_error");
    assert!(j["error"]["message"].as_str().unwrap().contains("JSON"));
    assert!(j.get("param").is_none() && j["error"].get("param").is_none());

    // A missing max_tokens (the Messages API requires it), still Anthropic-shaped.
    let a = send(
        &toml,
        post("/v1/messages", r#"{"model": "sim", "messages": []}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let j = a.json();
    assert_eq!(j["type"], "error");
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{j}"
    );

    // Wrong method under /v1/messages: Anthropic-shaped too.
    let a = send(&toml, get("/v1/messages")).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.json()["type"], "error");
}

#[tokio::test]
async fn gateway_keys_are_required_when_configured() {
    // Listed models: /v1/models answers from the config, not the (absent) upstream.
    let toml = format!(
        "[upstreams.sim]\nurl = \"{NOWHERE}\"\nmodels = [\"m\"]\n\n[cache]\nstore = \"memory\"\n\n\
         [[keys]]\ntenant = \"alice\"\nkey = \"gw-alice\"\n\n\
         [[keys]]\ntenant = \"bob\"\nkey = \"gw-bob\"\n"
    );
    // The body is broken on purpose: a 400 shows authentication passed without any
    // upstream call.
    let with = |name: &str, value: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/v1/chat/completions")
            .header(name, value)
            .body(Body::from("{"))
            .unwrap()
    };

    let a = send(&toml, post("/v1/chat/completions", "{")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "no key: {}", a.text);
    assert_eq!(a.json()["error"]["type"], "authentication_error");
    assert_eq!(a.headers.get("www-authenticate").unwrap(), "Bearer");

    let a = send(&toml, with("authorization", "Bearer gw-wrong")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json()["error"]["code"], "invalid_api_key");
    assert!(
        !a.text.contains("gw-alice") && !a.text.contains("gw-bob"),
        "{}",
        a.text
    );

    let a = send(&toml, with("authorization", "Bearer gw-alice")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    let a = send(&toml, with("x-api-key", "gw-bob")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    let a = send(&toml, with("x-api-key", "gw-nope")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // The Anthropic route answers in its own dialect.
    let a = send(&toml, post("/v1/messages", "{")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let j = a.json();
    assert_eq!(j["type"], "error");
    assert_eq!(j["error"]["type"], "authentication_error");

    // /v1/models needs a key too; /health does not.
    assert_eq!(
        send(&toml, get("/v1/models")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let models = Request::builder()
        .uri("/v1/models")
        .header("x-api-key", "gw-alice")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&toml, models).await.status, StatusCode::OK);
    assert_eq!(send(&toml, get("/health")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unrouted_model_with_several_upstreams_is_model_not_found() {
    let toml = format!(
        "[upstreams.a]\nurl = \"{NOWHERE}\"\nmodels = [\"gpt-x\"]\n\n\
         [upstreams.b]\nurl = \"http://127.0.0.1:10\"\nmodels = [\"claude-y\"]\n\n\
         [cache]\nstore = \"memory\"\n"
    );
    let a = send(
        &toml,
        post(
            "/v1/chat/completions",
            r#"{"model": "mystery", "messages": [{"role": "user", "content": "hi"}]}"#,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let j = a.json();
    assert_eq!(j["error"]["code"], "model_not_found", "{j}");
    let message = j["error"]["message"].as_str().unwrap();
    assert!(message.contains("mystery"), "{message}");
    assert!(message.contains("a, b"), "lists the upstreams: {message}");

    let a = send(
        &toml,
        post(
            "/v1/messages",
            r#"{"model": "mystery", "max_tokens": 5, "messages": []}"#,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let toml = format!("max_request_bytes = 200\n{}", one_upstream(""));
    let big = format!(
        r#"{{"model": "sim", "messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "x".repeat(400)
    );
    // Without a content-length: caught while reading the body.
    let a = send(&toml, post("/v1/chat/completions", big.clone())).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
    assert!(a.text.contains("max_request_bytes"), "{}", a.text);
    // With a content-length: caught before reading.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/messages")
        .header("content-length", big.len())
        .body(Body::from(big))
        .unwrap();
    let a = send(&toml, req).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.json()["error"]["type"], "request_too_large");
    // Just under the limit is read (and then fails validation, not the size check).
    let small = r#"{"model": "sim", "messages": "no"}"#;
    let a = send(&toml, post("/v1/chat/completions", small)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
}

#[tokio::test]
async fn wrong_method_and_unknown_route() {
    let toml = one_upstream("");
    let a = send(&toml, get("/v1/chat/completions")).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let j = a.json();
    assert_eq!(j["error"]["type"], "invalid_request_error");
    assert!(j["error"]["message"].as_str().unwrap().contains("GET"));

    let a = send(&toml, post("/v1/embeddings", "{}")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let j = a.json();
    assert_eq!(j["error"]["code"], "unknown_url");
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/embeddings")
    );
}

#[tokio::test]
async fn health_metrics_and_models() {
    let toml = format!(
        "[upstreams.a]\nurl = \"{NOWHERE}\"\nmodels = [\"gpt-x\", \"gpt-z\"]\n\n\
         [upstreams.b]\nurl = \"http://127.0.0.1:10\"\nmodels = [\"claude-y\"]\n\n\
         [aliases]\nfast = \"a/gpt-mini\"\nsmart = \"claude-y\"\n\n\
         [cache]\nstore = \"memory\"\n"
    );
    let a = send(&toml, get("/health")).await;
    assert_eq!(a.status, StatusCode::OK);
    let j = a.json();
    assert_eq!(j["status"], "ok");
    assert_eq!(j["upstreams"], serde_json::json!(["a", "b"]));

    let a = send(&toml, get("/metrics")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        a.headers
    );
    assert!(
        a.text.contains("# TYPE tokenpace_requests_total counter"),
        "{}",
        a.text
    );
    assert!(a.text.contains("# HELP tokenpace_requests_total "));

    let a = send(&toml, get("/v1/models")).await;
    assert_eq!(a.status, StatusCode::OK);
    let j = a.json();
    assert_eq!(j["object"], "list");
    let listed: Vec<(String, String)> = j["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                m["owned_by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("claude-y", "b"),
        ("fast", "a"),
        ("gpt-x", "a"),
        ("gpt-z", "a"),
        ("smart", "b"),
    ]
    .iter()
    .map(|(m, u)| ((*m).to_owned(), (*u).to_owned()))
    .collect();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn requests_are_counted_in_metrics() {
    // One state for both requests: the counter lives in its dispatcher.
    let st = state(config(&one_upstream("")));
    let resp = router(st.clone())
        .oneshot(post("/v1/chat/completions", "{"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    drop(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap(),
    );
    let resp = router(st).oneshot(get("/metrics")).await.unwrap();
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert_eq!(
        metric(
            &text,
            "tokenpace_requests_total{route=\"/v1/chat/completions\",model=\"\",status=\"400\",cache=\"bypass\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn bad_cache_directives_are_400() {
    let toml = one_upstream("");
    let body = r#"{"model": "sim", "messages": []}"#;
    for (name, value, named) in [
        ("tokenpace-cache", "sometimes", "'sometimes'"),
        ("tokenpace-replay", "slowly", "'slowly'"),
        ("cache-control", "max-age=soon", "'soon'"),
    ] {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/v1/chat/completions")
            .header(name, value)
            .body(Body::from(body))
            .unwrap();
        let a = send(&toml, req).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{name}: {value}");
        let j = a.json();
        assert_eq!(j["error"]["param"], name, "{j}");
        assert!(
            j["error"]["message"].as_str().unwrap().contains(named),
            "{j}"
        );
    }
}
